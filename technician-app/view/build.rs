//! Windows builds with mingw-w64 link the C++ runtime statically, so that the view's Windows test
//! (and any exe with the view) runs without libstdc++-6.dll beside it (see
//! `build-support/mingw_static_runtime.rs`).

include!("../../build-support/mingw_static_runtime.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../build-support/mingw_static_runtime.rs");
    mingw_static_runtime(&[("x86_64-w64-mingw32-g++", "libstdc++.a")], &[]);
}
