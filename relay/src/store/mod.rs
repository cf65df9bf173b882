//! Metadata in SQL: teams, people, credentials, devices, settings and sessions, in SQLite (the
//! default, a file in the data directory) or PostgreSQL (`database_url`), through one code path:
//! sqlx's `Any` driver, queries written in the SQL both engines share with `$n` parameters, and
//! integers for flags (`Any` reads no SQLite integer as a boolean). Each engine has its own
//! migrations folder, kept in step: the same schema in each dialect.

mod accounts;
pub mod audit;
mod device_secrets;
mod devices;
pub mod fleet;
pub mod issued;
pub mod members;
pub mod operator;
mod recordings;
mod sessions;

use std::path::Path;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::MigrateDatabase;
use sqlx::{Any, AnyPool, Executor};

use crate::clock::SharedClock;
use crate::secrets::SecretError;

pub use accounts::{
    normalize_email, Denied, DeviceRecord, NewTeam, PlaybackPolicy, SignIn, TeamRecord,
    TeamSettings, UserRecord, UserRole, MAX_FILE_MB_RANGE,
};
pub use device_secrets::{DeviceCheck, RETIRED_KEPT};
pub use devices::DeploymentCode;
pub use recordings::{ClosedFile, NewRecordingFile, RecordingFile, RecordingState};
pub(crate) use sessions::access_str;
pub use sessions::{NewSession, SessionFilter, SessionRecord};

/// A failure of the store itself (our fault), as opposed to a denied credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrating the schema failed.
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database URL names no engine the relay has.
    #[error("database_url {0:?}: the relay keeps its data in SQLite (sqlite:PATH) or PostgreSQL (postgres://...)")]
    Engine(String),
    /// No random secret could be made.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A stored value is not what the schema allows.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

/// The SQL store, shared by every connection.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    clock: SharedClock,
    engine: Engine,
    /// The relay this store writes sessions for (`""` for tools that start none).
    relay_id: std::sync::Arc<str>,
    /// Where passwords are hashed and checked: off the async workers, a few at a time.
    passwords: crate::secrets::PasswordWork,
}

/// The database engine behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite, a file on the relay's disk (one relay).
    Sqlite,
    /// PostgreSQL (one or more relays).
    Postgres,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The embedded default: `relay.db` in the data directory, as a URL (`sqlite:` with the path's
/// characters that mean something in a URL escaped).
pub fn sqlite_url(data_dir: &Path) -> String {
    let path = data_dir.join("relay.db").to_string_lossy().into_owned();
    let mut escaped = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' | '?' | '#' | ' ' => escaped.push_str(&format!("%{:02X}", c as u32)),
            c => escaped.push(c),
        }
    }
    format!("sqlite://{escaped}")
}

impl Engine {
    /// The engine a URL names.
    pub fn of(url: &str) -> Result<Self, StoreError> {
        match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            _ => Err(StoreError::Engine(redacted(url))),
        }
    }
}

/// A database URL without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A flag column (0 or 1 in both engines) as a boolean.
fn flag(row: &sqlx::any::AnyRow, column: &str) -> Result<bool, StoreError> {
    use sqlx::Row;
    Ok(row.try_get::<i64, _>(column)? != 0)
}

impl Store {
    /// Connects to the database at `url` (`sqlite://PATH` or `postgres://...`), creating it if it
    /// does not exist (a PostgreSQL role needs CREATEDB for that; a database made beforehand needs
    /// nothing more than its ownership), and brings its schema up to date.
    pub async fn open(url: &str, clock: SharedClock) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of(url)?;
        let url = match engine {
            // Read-write, created if missing.
            Engine::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        if engine == Engine::Postgres && !Any::database_exists(&url).await? {
            // Relays of a fleet starting together may race to create it: one wins, and the
            // others find it made.
            if let Err(e) = Any::create_database(&url).await {
                if !Any::database_exists(&url).await? {
                    return Err(e.into());
                }
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // Foreign keys are on and a busy database is waited for 5 s by sqlx's
                        // defaults; writes go to a write-ahead log, synced at checkpoints.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        match engine {
            Engine::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Engine::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Self {
            pool,
            clock,
            engine,
            relay_id: std::sync::Arc::from(""),
            passwords: crate::secrets::PasswordWork::default(),
        })
    }

    /// Whether the database at `url` exists (it may still be empty).
    pub async fn exists(url: &str) -> Result<bool, StoreError> {
        sqlx::any::install_default_drivers();
        Engine::of(url)?;
        Ok(Any::database_exists(url).await?)
    }

    /// This store, writing the sessions it starts as run by relay `relay_id` (a fleet's relays
    /// share one database, and each closes only its own sessions after a crash).
    pub fn for_relay(mut self, relay_id: &str) -> Self {
        self.relay_id = std::sync::Arc::from(relay_id);
        self
    }

    /// The relay this store writes sessions for.
    pub fn relay_id(&self) -> &str {
        &self.relay_id
    }

    /// The engine behind this store.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Whether the database answers a query now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_default_database_opens_in_a_directory_whose_name_means_something_in_a_url() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data #1? 100% é");
        std::fs::create_dir_all(&data).unwrap();
        let clock: SharedClock = std::sync::Arc::new(crate::SystemClock);
        let store = Store::open(&sqlite_url(&data), clock.clone())
            .await
            .unwrap();
        store.ping().await.unwrap();
        store.close().await;
        assert!(data.join("relay.db").exists());
        assert_eq!(store.engine(), Engine::Sqlite);
    }

    #[test]
    fn urls_of_other_engines_are_refused_with_their_password_hidden() {
        let e = Engine::of("mysql://root:hunter2@db/relay").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("mysql://root:***@db/relay"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(Engine::of("postgresql://db/x").unwrap(), Engine::Postgres);
    }
}
