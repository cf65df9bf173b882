//! The technician app's code that does not need Tauri: what crosses from the Rust side to the page,
//! and the live view's geometry, pixels and native surface.

pub mod view;
pub mod wire;
