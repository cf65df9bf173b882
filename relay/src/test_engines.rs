//! For test suites: the engines a test relay uses, so that the same tests run on the embedded
//! defaults and on the engines of a fleet. With `RELAY_TEST_DATABASE_URL` set to a PostgreSQL
//! server (`postgres://USER@HOST:PORT`, a role that may create databases), each test relay has a
//! database of its own there; with `RELAY_TEST_RECORDINGS_URL` set to an S3 bucket (`s3://BUCKET`,
//! reached with the usual `AWS_*` environment variables), a prefix of its own in it. Each is named
//! after the relay's data directory; unset, the defaults in that directory.

use std::path::Path;

/// FNV-1a of the data directory's whole path: tests name their data directories alike inside
/// their own temporary directories.
fn name_of(dir: &Path) -> String {
    let hash = dir
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("relay_{hash:016x}")
}

/// The database of a test relay on `dir` (the relay creates it), or none: SQLite in `dir`.
pub fn database_url(dir: &Path) -> Option<String> {
    let server = std::env::var("RELAY_TEST_DATABASE_URL").ok()?;
    Some(format!("{}/{}", server.trim_end_matches('/'), name_of(dir)))
}

/// The recordings of a test relay on `dir`, or none: `recordings/` in `dir`.
pub fn recordings_url(dir: &Path) -> Option<String> {
    let bucket = std::env::var("RELAY_TEST_RECORDINGS_URL").ok()?;
    Some(format!("{}/{}", bucket.trim_end_matches('/'), name_of(dir)))
}

/// The URL of the database a test relay on `dir` uses, whichever engine it is.
pub fn database_url_or_default(dir: &Path) -> String {
    database_url(dir).unwrap_or_else(|| crate::store::sqlite_url(dir))
}
