//! First start: a fresh relay creates a team and its owner so that it is usable at once.

use std::path::PathBuf;

use anyhow::Context;

use crate::store::Store;

/// What the first start created, to print for the operator.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The team's id.
    pub team_id: String,
    /// The owner's sign-in e-mail.
    pub email: String,
    /// The owner's generated password.
    pub password: String,
    /// A deployment code for the first unattended devices.
    pub deployment_code: String,
    /// The team's attended-access key.
    pub attended_key: String,
    /// Where the same facts were written (readable by the relay's user only).
    pub written_to: PathBuf,
}

/// The owner's e-mail address on a fresh relay.
pub const FIRST_OWNER_EMAIL: &str = "owner@localhost";

/// Creates the first team and owner when the store has no team; returns `None` otherwise.
pub async fn bootstrap_if_empty(
    store: &Store,
    data_dir: &std::path::Path,
    deployment_code_ttl_ms: i64,
) -> anyhow::Result<Option<Bootstrap>> {
    if store.team_count().await? > 0 {
        return Ok(None);
    }
    let password = crate::secrets::new_token()?[..20].to_owned();
    let created = store
        .create_team("My team", FIRST_OWNER_EMAIL, "Owner", &password)
        .await
        .context("creating the first team")?;
    let deployment_code = store
        .create_deployment_code(&created.team.id, deployment_code_ttl_ms)
        .await?;
    let written_to = data_dir.join("first-owner.txt");
    let text = format!(
        "Sign in to the console as {FIRST_OWNER_EMAIL} with password {password}\n\
         Deployment code for unattended devices: {deployment_code}\n\
         Attended access key: {}\n",
        created.team.attended_key
    );
    crate::tls::write_private(&written_to, &text)?;
    Ok(Some(Bootstrap {
        team_id: created.team.id.clone(),
        email: FIRST_OWNER_EMAIL.to_owned(),
        password,
        deployment_code,
        attended_key: created.team.attended_key,
        written_to,
    }))
}
