//! The streamer agent: captures and encodes the end user's screens and takes remote input.
//!
//! `agent` signs in to the relay and serves sessions; `stream` captures (`capture`), converts and
//! encodes (`encode`) at the technician's frame rate; `input` injects the technician's mouse and keys;
//! `clipboard` carries clipboard text both ways where the team allows it;
//! `audio` streams what the computer plays live as Opus (never recorded).
//! Platform code sits behind the `ScreenSource` and `InputSink` traits (X11; on Windows DXGI, GDI
//! and SendInput, with `service` and `window`). `pattern` generates
//! content for machines without a display. The version it reports is the one the relay's recording
//! gate checks.

pub mod adapt;
pub mod agent;
pub mod audio;
pub mod capture;
pub mod clipboard;
pub mod encode;
pub mod helper;
pub mod input;
pub mod pattern;
#[cfg(windows)]
pub mod service;
pub mod settings;
pub mod stream;
pub mod window;

use protocol::{ProductVersion, VersionError};

/// The streamer's name wherever the end user or an administrator meets it: its window's title, the
/// Windows installer and service, the exe's version resource (`build.rs`), the docs.
pub const PRODUCT_NAME: &str = "Recorded Support Streamer";

/// The streamer's four-part product version, from the workspace's one version.
pub fn product_version() -> Result<ProductVersion, VersionError> {
    ProductVersion::this_build()
}
