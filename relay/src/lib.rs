//! The relay: authenticates technicians and streamers, pairs them and forwards (and records) sessions.
//!
//! Only the version plumbing exists so far; the server arrives with issue 3 and the recorder with
//! issue 4. The wire protocol it will speak is the `protocol` crate.

use protocol::{ProductVersion, VersionError};

/// The relay's product version, from the workspace's one version.
pub fn product_version() -> Result<ProductVersion, VersionError> {
    ProductVersion::this_build()
}
