//! Metadata in SQL: teams, people, credentials, devices, settings and sessions (SQLite by default).

mod accounts;
pub mod audit;
mod devices;
pub mod members;
pub mod operator;
mod recordings;
mod sessions;

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::clock::SharedClock;
use crate::secrets::SecretError;

pub use accounts::{
    Denied, DeviceRecord, NewTeam, PlaybackPolicy, SignIn, TeamRecord, TeamSettings, UserRecord,
    UserRole, MAX_FILE_MB_RANGE,
};
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
    pool: SqlitePool,
    clock: SharedClock,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating if needed) `relay.db` in `data_dir` and brings its schema up to date.
    pub async fn open(data_dir: &Path, clock: SharedClock) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(data_dir.join("relay.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, clock })
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
