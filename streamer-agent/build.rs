//! Windows builds with mingw-w64 link the C and C++ runtimes statically (see
//! `build-support/mingw_static_runtime.rs`). libopus as CMake builds it uses the stack protector:
//! `libssp.a` is linked after it, and libssp calls the C runtime's open/write and advapi32's
//! CryptGenRandom.

include!("../build-support/mingw_static_runtime.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../build-support/mingw_static_runtime.rs");
    mingw_static_runtime(
        &[
            ("x86_64-w64-mingw32-g++", "libstdc++.a"),
            ("x86_64-w64-mingw32-gcc", "libssp.a"),
        ],
        &["ssp", "msvcrt", "advapi32"],
    );
}
