//! The audit trail: one append-only table of who did what, when and from where.
//!
//! Every event has a time, a team (or none, for the relay itself), an actor (a user, a device, the
//! operator, or someone not signed in), an action (a fixed string, [`Action`]), the object it was
//! done to, a detail (old and new values of a setting, a reason) and the client's address. The
//! database refuses updates; [`Store::purge_audit`] deletes events past the retention period.

use sqlx::Row;

use super::{Store, StoreError};

/// What was done. The strings are part of the API (docs/openapi.json) and of CSV exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// A sign-in succeeded.
    SignIn,
    /// A sign-in was refused (wrong address or password).
    SignInFailed,
    /// A sign-out.
    SignOut,
    /// A member was invited (object: the address; detail: the role).
    MemberInvited,
    /// An invitation was accepted (object: the new member).
    MemberJoined,
    /// A member's role changed (detail: old and new).
    RoleChanged,
    /// Ownership passed to another member.
    OwnershipTransferred,
    /// An invitation not yet accepted was withdrawn (object: the address).
    InvitationWithdrawn,
    /// A member was removed.
    MemberRemoved,
    /// A member changed their own password.
    PasswordChanged,
    /// A member's password change was refused: the current password given was wrong.
    PasswordChangeFailed,
    /// A password-reset link was made for a member.
    PasswordResetIssued,
    /// A password was set through a reset link.
    PasswordReset,
    /// The team was renamed (detail: old and new).
    TeamRenamed,
    /// A team setting changed (detail: the setting, old and new).
    SettingsChanged,
    /// A device registered with a deployment code.
    DeviceRegistered,
    /// A device was revoked.
    DeviceRevoked,
    /// A secret a device had stopped using was presented: two copies of its credential exist, and
    /// the relay revoked the device (actor: the device).
    DeviceCredentialReused,
    /// A deployment code was made.
    DeploymentCodeCreated,
    /// A deployment code was revoked (object: its first characters, detail: its id).
    DeploymentCodeRevoked,
    /// A session started (object: the session).
    SessionStarted,
    /// A session ended (detail: the reason).
    SessionEnded,
    /// An owner or admin ended a live session (object: the session, detail: the device).
    SessionTerminated,
    /// The recording list of a session, or the sessions list, was viewed.
    RecordingsViewed,
    /// Play and download links were issued for a recording file.
    LinkIssued,
    /// A recording file was played.
    FilePlayed,
    /// A recording file was downloaded.
    FileDownloaded,
    /// The operator made a team.
    TeamCreated,
    /// The operator reset a team's owner.
    OwnerReset,
    /// Clipboard text went through a session (object: the session, detail: direction and size).
    ClipboardSent,
    /// Clipboard text was not forwarded (object: the session, detail: direction and code).
    ClipboardRefused,
    /// A chat line went through a session (object: the session, detail: direction and the line).
    ChatSent,
    /// A chat line was not forwarded (object: the session, detail: direction and code).
    ChatRefused,
    /// A file began to cross a session (object: the session, detail: direction, name, size, the
    /// byte it started or resumed at, and the SHA-256 its sender offered).
    TransferStarted,
    /// A file crossed a session whole and its receiver checked its SHA-256 (object: the session,
    /// detail: direction, name, size and the SHA-256).
    TransferCompleted,
    /// A file transfer stopped before its end (object: the session, detail: direction, name, why,
    /// and how far its data had gone).
    TransferStopped,
    /// A file offer or request was not forwarded (object: the session, detail: direction, what,
    /// and the code).
    TransferRefused,
    /// The technician asked the remote computer for one of its files (object: the session,
    /// detail: the path asked for), written before the request is forwarded.
    FileRequested,
    /// A file offered in a session (detail: direction, name, size, the offered SHA-256), written
    /// before the offer is forwarded, whether or not it is taken.
    FileOffered,
}

const ACTIONS: &[(Action, &str)] = &[
    (Action::SignIn, "sign_in"),
    (Action::SignInFailed, "sign_in_failed"),
    (Action::SignOut, "sign_out"),
    (Action::MemberInvited, "member_invited"),
    (Action::MemberJoined, "member_joined"),
    (Action::RoleChanged, "role_changed"),
    (Action::OwnershipTransferred, "ownership_transferred"),
    (Action::InvitationWithdrawn, "invitation_withdrawn"),
    (Action::MemberRemoved, "member_removed"),
    (Action::PasswordChanged, "password_changed"),
    (Action::PasswordChangeFailed, "password_change_failed"),
    (Action::PasswordResetIssued, "password_reset_issued"),
    (Action::PasswordReset, "password_reset"),
    (Action::TeamRenamed, "team_renamed"),
    (Action::SettingsChanged, "settings_changed"),
    (Action::DeviceRegistered, "device_registered"),
    (Action::DeviceRevoked, "device_revoked"),
    (Action::DeviceCredentialReused, "device_credential_reused"),
    (Action::DeploymentCodeCreated, "deployment_code_created"),
    (Action::DeploymentCodeRevoked, "deployment_code_revoked"),
    (Action::SessionStarted, "session_started"),
    (Action::SessionEnded, "session_ended"),
    (Action::SessionTerminated, "session_terminated"),
    (Action::RecordingsViewed, "recordings_viewed"),
    (Action::LinkIssued, "link_issued"),
    (Action::FilePlayed, "file_played"),
    (Action::FileDownloaded, "file_downloaded"),
    (Action::TeamCreated, "team_created"),
    (Action::OwnerReset, "owner_reset"),
    (Action::ClipboardSent, "clipboard_sent"),
    (Action::ClipboardRefused, "clipboard_refused"),
    (Action::ChatSent, "chat_sent"),
    (Action::ChatRefused, "chat_refused"),
    (Action::TransferStarted, "transfer_started"),
    (Action::TransferCompleted, "transfer_completed"),
    (Action::TransferStopped, "transfer_stopped"),
    (Action::TransferRefused, "transfer_refused"),
    (Action::FileRequested, "file_requested"),
    (Action::FileOffered, "file_offered"),
];

impl Action {
    /// Every action, in a fixed order.
    pub fn all() -> impl Iterator<Item = Action> {
        ACTIONS.iter().map(|(a, _)| *a)
    }

    /// Its name in the API and in exports.
    pub fn as_str(self) -> &'static str {
        ACTIONS
            .iter()
            .find(|(a, _)| *a == self)
            .map(|(_, s)| *s)
            .unwrap_or("unknown")
    }

    /// The action a name stands for.
    pub fn parse(s: &str) -> Option<Action> {
        ACTIONS.iter().find(|(_, n)| *n == s).map(|(a, _)| *a)
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in person: id and name.
    User(String, String),
    /// A streamer: device id and name.
    Device(String, String),
    /// The relay's operator, through `relay admin`.
    Operator,
    /// Someone not signed in (a failed sign-in: the address they gave).
    Anonymous(String),
}

impl Actor {
    fn parts(&self) -> (&'static str, Option<&str>, &str) {
        match self {
            Actor::User(id, name) => ("user", Some(id), name),
            Actor::Device(id, name) => ("device", Some(id), name),
            Actor::Operator => ("operator", None, "operator"),
            Actor::Anonymous(who) => ("anonymous", None, who),
        }
    }
}

/// One event, to be recorded.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// The team, or `None` for the relay itself.
    pub team_id: Option<&'a str>,
    /// Who.
    pub actor: &'a Actor,
    /// What.
    pub action: Action,
    /// To what (an id, an address).
    pub object: &'a str,
    /// More: old and new values, a reason.
    pub detail: &'a str,
    /// The client's address, or empty.
    pub client_addr: &'a str,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Its id: increasing, the cursor of pages.
    pub id: i64,
    /// When, Unix milliseconds.
    pub at: i64,
    /// The team, if any.
    pub team_id: Option<String>,
    /// `user`, `device`, `operator` or `anonymous`.
    pub actor_kind: String,
    /// The user's or device's id.
    pub actor_id: Option<String>,
    /// The actor's name as it was then.
    pub actor_name: String,
    /// The action's name ([`Action::as_str`]).
    pub action: String,
    /// What it was done to.
    pub object: String,
    /// More.
    pub detail: String,
    /// From where.
    pub client_addr: String,
}

/// Which events to list: newest first, `limit` of them, before the `before` id.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<Action>,
    /// Only this actor (user or device id).
    pub actor_id: Option<String>,
    /// From this time on, Unix milliseconds (inclusive).
    pub from: Option<i64>,
    /// Before this time, Unix milliseconds (exclusive).
    pub until: Option<i64>,
    /// Only events older than this id (the previous page's last id).
    pub before: Option<i64>,
    /// At most this many (1 to 1000).
    pub limit: u32,
}

fn event_from_row(r: &sqlx::any::AnyRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        team_id: r.try_get("team_id")?,
        actor_kind: r.try_get("actor_kind")?,
        actor_id: r.try_get("actor_id")?,
        actor_name: r.try_get("actor_name")?,
        action: r.try_get("action")?,
        object: r.try_get("object")?,
        detail: r.try_get("detail")?,
        client_addr: r.try_get("client_addr")?,
    })
}

/// The load bench's switch (feature `bench-switches` only): the audit trail off, for the figure
/// beside it.
#[cfg(feature = "bench-switches")]
fn bench_audit_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("RELAY_BENCH_AUDIT_OFF").is_some_and(|v| v == "1"))
}

impl Store {
    /// Records an event.
    pub async fn audit(&self, event: NewEvent<'_>) -> Result<i64, StoreError> {
        #[cfg(feature = "bench-switches")]
        if bench_audit_off() {
            return Ok(0);
        }
        let (kind, actor_id, actor_name) = event.actor.parts();
        let done = sqlx::query(
            "INSERT INTO audit_events \
             (at, team_id, actor_kind, actor_id, actor_name, action, object, detail, client_addr) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(self.now())
        .bind(event.team_id)
        .bind(kind)
        .bind(actor_id)
        .bind(actor_name)
        .bind(event.action.as_str())
        .bind(event.object)
        .bind(event.detail)
        .bind(event.client_addr)
        .fetch_one(&self.pool)
        .await?;
        Ok(done.try_get("id")?)
    }

    /// A team's events, newest first, as `filter` asks.
    pub async fn audit_events(
        &self,
        team_id: &str,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, team_id, actor_kind, actor_id, actor_name, action, object, detail, \
             client_addr FROM audit_events WHERE team_id = $1 \
             AND ($2 IS NULL OR action = $3) AND ($4 IS NULL OR actor_id = $5) \
             AND ($6 IS NULL OR at >= $7) AND ($8 IS NULL OR at < $9) AND ($10 IS NULL OR id < $11) \
             ORDER BY id DESC LIMIT $12",
        )
        .bind(team_id)
        .bind(filter.action.map(Action::as_str))
        .bind(filter.action.map(Action::as_str))
        .bind(filter.actor_id.as_deref())
        .bind(filter.actor_id.as_deref())
        .bind(filter.from)
        .bind(filter.from)
        .bind(filter.until)
        .bind(filter.until)
        .bind(filter.before)
        .bind(filter.before)
        .bind(i64::from(filter.limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Who played or downloaded these files (of `team_id`), newest first, at most 1000 events.
    pub async fn file_accesses(
        &self,
        team_id: &str,
        file_ids: &[String],
    ) -> Result<Vec<AuditEvent>, StoreError> {
        if file_ids.is_empty() {
            return Ok(Vec::new());
        }
        // The files' ids as parameters $2, $3, ...: a session has tens of files, not thousands,
        // and the list is capped well below both engines' limits on parameters.
        let file_ids = &file_ids[..file_ids.len().min(1000)];
        let params: Vec<String> = (2..file_ids.len() + 2).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT id, at, team_id, actor_kind, actor_id, actor_name, action, object, detail, \
             client_addr FROM audit_events WHERE team_id = $1 \
             AND action IN ('file_played', 'file_downloaded') \
             AND object IN ({}) ORDER BY id DESC LIMIT 1000",
            params.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(team_id);
        for id in file_ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    /// What happened in a session, oldest first: the events whose object is the session (its
    /// start and end, chat lines, files, clipboard uses, who viewed or ended it), at most 10,000.
    pub async fn session_events(
        &self,
        team_id: &str,
        session_id: &str,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, team_id, actor_kind, actor_id, actor_name, action, object, detail, \
             client_addr FROM audit_events WHERE team_id = $1 AND object = $2 ORDER BY id LIMIT 10000",
        )
        .bind(team_id)
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Deletes events older than `older_than_ms` before now; returns how many.
    pub async fn purge_audit(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(self.now().saturating_sub(older_than_ms))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    async fn store() -> (tempfile::TempDir, Store, Arc<ManualClock>) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = Store::open(
            &crate::test_engines::database_url_or_default(dir.path()),
            clock.clone(),
        )
        .await
        .unwrap();
        (dir, store, clock)
    }

    fn event<'a>(team: &'a str, actor: &'a Actor, action: Action, object: &'a str) -> NewEvent<'a> {
        NewEvent {
            team_id: Some(team),
            actor,
            action,
            object,
            detail: "",
            client_addr: "127.0.0.1",
        }
    }

    #[test]
    fn every_action_has_a_distinct_name_that_parses_back() {
        let names: std::collections::HashSet<_> = Action::all().map(Action::as_str).collect();
        assert_eq!(names.len(), ACTIONS.len());
        for a in Action::all() {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("nope"), None);
    }

    #[tokio::test]
    async fn events_page_newest_first_by_cursor_and_filter_and_never_change() {
        let (_dir, store, clock) = store().await;
        let ann = Actor::User("u1".into(), "Ann".into());
        let bob = Actor::User("u2".into(), "Bob".into());
        for i in 0..5 {
            store
                .audit(event("t1", &ann, Action::FilePlayed, &format!("f{i}")))
                .await
                .unwrap();
            clock.advance(std::time::Duration::from_millis(1000));
        }
        store
            .audit(event("t1", &bob, Action::SignIn, ""))
            .await
            .unwrap();
        store
            .audit(event("t2", &bob, Action::SignIn, ""))
            .await
            .unwrap();

        let page = |f: AuditFilter| {
            let store = store.clone();
            async move { store.audit_events("t1", &f).await.unwrap() }
        };
        let first = page(AuditFilter {
            limit: 4,
            ..Default::default()
        })
        .await;
        assert_eq!(first.len(), 4);
        assert_eq!(first[0].action, "sign_in", "newest first");
        let rest = page(AuditFilter {
            limit: 4,
            before: Some(first[3].id),
            ..Default::default()
        })
        .await;
        let objects: Vec<_> = rest.iter().map(|e| e.object.as_str()).collect();
        assert_eq!(objects, ["f1", "f0"], "the next page, nothing twice");
        let played = page(AuditFilter {
            limit: 100,
            action: Some(Action::FilePlayed),
            actor_id: Some("u1".into()),
            from: Some(1_001_000),
            until: Some(1_003_000),
            ..Default::default()
        })
        .await;
        let objects: Vec<_> = played.iter().map(|e| e.object.as_str()).collect();
        assert_eq!(objects, ["f2", "f1"]);

        // The database itself refuses to change history.
        let err = sqlx::query("UPDATE audit_events SET actor_name = 'Eve'")
            .execute(&store.pool)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");

        // Past the retention period, the oldest go.
        clock.advance(std::time::Duration::from_millis(10_000));
        let gone = store.purge_audit(13_500).await.unwrap();
        assert_eq!(gone, 2, "f0 and f1 are older than 13.5 s");
    }
}
