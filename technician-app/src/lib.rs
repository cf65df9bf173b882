//! The technician's session library: what the Tauri app and the command-line client drive.
//!
//! Only the version plumbing exists so far; sign-in, device list and sessions arrive with issue 6.

use protocol::{ProductVersion, VersionError};

/// The technician app's product version, from the workspace's one version.
pub fn product_version() -> Result<ProductVersion, VersionError> {
    ProductVersion::this_build()
}
