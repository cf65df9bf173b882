//! The technician app's code that does not need a window: what crosses from the Rust side to the page.

pub mod wire;
