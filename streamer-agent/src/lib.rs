//! The streamer agent: captures and encodes the end user's screens and takes remote input.
//!
//! So far: the H.264 encoder (`encode`) and generated content (`pattern`) for machines without a
//! display. Screen capture, the connection loop and input arrive with issue 5. The version it reports
//! is the one the relay's recording gate checks.

pub mod encode;
pub mod pattern;

use protocol::{ProductVersion, VersionError};

/// The streamer's four-part product version, from the workspace's one version.
pub fn product_version() -> Result<ProductVersion, VersionError> {
    ProductVersion::this_build()
}
