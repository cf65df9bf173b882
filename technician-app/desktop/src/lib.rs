//! The technician app's code that does not need Tauri: what crosses from the Rust side to the page,
//! the live view's geometry, pixels and native surface, the shared clipboard and the remembered
//! settings.

pub mod clipboard;
pub mod settings;
pub mod view;
pub mod wire;
