//! Windows builds with mingw-w64 link the C and C++ runtimes statically, so that the exe runs alone
//! (no libstdc++-6.dll, libgcc_s_seh-1.dll or libssp-0.dll beside it):
//! - openh264 asks for `-lstdc++` in dynamic mode; a folder holding only the static archive is
//!   searched first, so the linker finds `libstdc++.a` there.
//! - libopus as CMake builds it uses the stack protector: `libssp.a` is linked after it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-pc-windows-gnu" {
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let dir = out.join("static-runtime");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("creating {}: {e}", dir.display());
    }
    for (compiler, archive) in [
        ("x86_64-w64-mingw32-g++", "libstdc++.a"),
        ("x86_64-w64-mingw32-gcc", "libssp.a"),
    ] {
        let found = Command::new(compiler)
            .arg(format!("-print-file-name={archive}"))
            .output()
            .unwrap_or_else(|e| {
                panic!("running {compiler} (apt-get install g++-mingw-w64-x86-64): {e}")
            });
        let path = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
        if !path.is_absolute() {
            panic!("{compiler} does not know {archive}: install g++-mingw-w64-x86-64");
        }
        if let Err(e) = std::fs::copy(&path, dir.join(archive)) {
            panic!("copying {}: {e}", path.display());
        }
    }
    println!("cargo:rustc-link-arg=-L{}", dir.display());
    println!("cargo:rustc-link-arg=-Wl,-Bstatic");
    // libssp calls the C runtime's open/write and advapi32's CryptGenRandom.
    for lib in ["ssp", "msvcrt", "advapi32"] {
        println!("cargo:rustc-link-arg=-l{lib}");
    }
}
