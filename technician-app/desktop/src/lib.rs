//! The technician app's code that does not need Tauri: what crosses from the Rust side to the page,
//! the shared clipboard and the remembered settings. The live view (geometry, pixels, native
//! surface) is its own crate, `technician-view`, re-exported here as [`view`].

pub mod clipboard;
pub mod settings;
pub use technician_view as view;
pub mod wire;
