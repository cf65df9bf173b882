//! The streamer agent: captures and encodes the end user's screens and takes remote input.
//!
//! Only the version plumbing exists so far; capture, encoding and input arrive with issue 5. The
//! version it reports is the one the relay's recording gate checks.

use protocol::{ProductVersion, VersionError};

/// The streamer's four-part product version, from the workspace's one version.
pub fn product_version() -> Result<ProductVersion, VersionError> {
    ProductVersion::this_build()
}
