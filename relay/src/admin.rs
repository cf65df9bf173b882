//! `relay admin`: the operator's commands on the data directory. Each opens the database (the
//! relay may be running or stopped), does one thing in one transaction, audits it as the operator,
//! and returns what to print; bad input is an error that writes nothing.

use std::sync::Arc;

use anyhow::Context;

use crate::store::audit::{Action, Actor, NewEvent};
use crate::store::operator::OwnerReset;
use crate::store::Store;
use crate::{Config, SystemClock};

/// One operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A team with no member yet, and its first owner's invitation.
    CreateTeam {
        /// The team's name.
        name: String,
        /// The first owner's address.
        owner_email: String,
    },
    /// Every team.
    ListTeams,
    /// A way back in for a team's owner.
    ResetOwner {
        /// The team's id.
        team: String,
        /// A new owner's address instead.
        new_owner_email: Option<String>,
    },
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Runs `command` on `config`'s data directory; returns the text to print.
pub async fn run(config: &Config, command: &Command) -> anyhow::Result<String> {
    match &config.database_url {
        None => anyhow::ensure!(
            config.data_dir.join("relay.db").exists(),
            "{} has no relay database: give the relay's --data-dir (or --config), or start the relay once",
            config.data_dir.display()
        ),
        Some(url) => anyhow::ensure!(
            Store::exists(url).await.context("reaching the database")?,
            "{} has no relay database: give the relay's --database-url (or --config), or start the relay once",
            crate::store::redacted(url)
        ),
    }
    let store = Store::open(&config.database_url(), Arc::new(SystemClock))
        .await
        .context("opening the database")?;
    let result = run_on(&store, config, command).await;
    store.close().await;
    result
}

async fn operator_event(
    store: &Store,
    team_id: &str,
    action: Action,
    object: &str,
    detail: &str,
) -> anyhow::Result<()> {
    store
        .audit(NewEvent {
            team_id: Some(team_id),
            actor: &Actor::Operator,
            action,
            object,
            detail,
            client_addr: "",
        })
        .await?;
    Ok(())
}

async fn run_on(store: &Store, config: &Config, command: &Command) -> anyhow::Result<String> {
    let base = config
        .public_url
        .clone()
        .unwrap_or_else(|| config.default_base_url());
    let base = base.trim_end_matches('/');
    match command {
        Command::CreateTeam { name, owner_email } => {
            let ttl = ms(config.invitation_ttl_secs);
            let (team, token) = store
                .create_team_with_invitation(name, owner_email, ttl)
                .await?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            operator_event(
                store,
                &team.id,
                Action::TeamCreated,
                &team.name,
                owner_email.trim(),
            )
            .await?;
            Ok(format!(
                "Created the team {name:?} (id {id}).\n\
                 Its owner, {email}, accepts this invitation (once, within {days} days):\n  \
                 {base}/console/invitations/{token}\n\
                 Attended access key: {key}\n",
                name = team.name,
                id = team.id,
                email = owner_email.trim(),
                days = config.invitation_ttl_secs / 86_400,
                key = team.attended_key,
            ))
        }
        Command::ListTeams => {
            let teams = store.teams_overview().await?;
            let mut out = String::from("ID\tNAME\tOWNER\tMEMBERS\tDEVICES\n");
            for t in teams {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    t.id,
                    t.name,
                    t.owner_email
                        .as_deref()
                        .unwrap_or("(invited, not yet joined)"),
                    t.members,
                    t.devices
                ));
            }
            Ok(out)
        }
        Command::ResetOwner {
            team,
            new_owner_email,
        } => {
            let made = store
                .reset_owner(
                    team,
                    new_owner_email.as_deref(),
                    ms(config.password_reset_ttl_secs),
                )
                .await?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match made {
                OwnerReset::PasswordReset { email, token } => {
                    operator_event(
                        store,
                        team,
                        Action::OwnerReset,
                        &email,
                        "password-reset link",
                    )
                    .await?;
                    Ok(format!(
                        "The owner, {email}, sets a new password with this link (once; every \
                         sign-in of theirs then ends):\n  {base}/console/password-reset/{token}\n"
                    ))
                }
                OwnerReset::Invitation { email, token } => {
                    operator_event(store, team, Action::OwnerReset, &email, "new owner invited")
                        .await?;
                    Ok(format!(
                        "{email} becomes the owner by accepting this invitation (once); the \
                         current owner then becomes an admin:\n  {base}/console/invitations/{token}\n"
                    ))
                }
            }
        }
    }
}
