//! Windows builds with mingw-w64 link the C and C++ runtimes statically (see
//! `build-support/mingw_static_runtime.rs`). libopus as CMake builds it uses the stack protector:
//! `libssp.a` is linked after it, and libssp calls the C runtime's open/write and advapi32's
//! CryptGenRandom.

include!("../build-support/mingw_static_runtime.rs");

/// On Windows (mingw-w64): the exe's version resource, which Explorer's Properties show (product,
/// company, description, version), compiled with `windres` and linked into the binaries. The
/// version is the workspace's, with the build number from `PRODUCT_BUILD` as in every component.
/// (An MSVC build would compile the same script with `rc.exe`; not made here.)
fn version_resource() {
    use std::path::PathBuf;
    if std::env::var("TARGET").unwrap_or_default() != "x86_64-pc-windows-gnu" {
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    println!("cargo:rerun-if-env-changed=PRODUCT_BUILD");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let mut parts: Vec<u32> = version
        .split(['.', '-', '+'])
        .take(3)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    parts.resize(3, 0);
    let build: u32 = std::env::var("PRODUCT_BUILD")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    let (a, b, c) = (parts[0], parts[1], parts[2]);
    let dotted = format!("{a}.{b}.{c}.{build}");
    // PRODUCT_NAME in src/lib.rs; the build script cannot read the crate it builds.
    let name = "Recorded Support Streamer";
    let script = format!(
        "#include <winver.h>\n\
         1 VERSIONINFO\n\
         FILEVERSION {a},{b},{c},{build}\n\
         PRODUCTVERSION {a},{b},{c},{build}\n\
         FILEOS VOS_NT_WINDOWS32\n\
         FILETYPE VFT_APP\n\
         BEGIN\n\
           BLOCK \"StringFileInfo\"\n\
           BEGIN\n\
             BLOCK \"040904B0\"\n\
             BEGIN\n\
               VALUE \"CompanyName\", \"{name}\"\n\
               VALUE \"FileDescription\", \"{name}: shares this screen with your technician\"\n\
               VALUE \"FileVersion\", \"{dotted}\"\n\
               VALUE \"InternalName\", \"streamer-agent\"\n\
               VALUE \"OriginalFilename\", \"streamer-agent.exe\"\n\
               VALUE \"ProductName\", \"{name}\"\n\
               VALUE \"ProductVersion\", \"{dotted}\"\n\
             END\n\
           END\n\
           BLOCK \"VarFileInfo\"\n\
           BEGIN\n\
             VALUE \"Translation\", 0x409, 1200\n\
           END\n\
         END\n"
    );
    let rc = out.join("version.rc");
    let obj = out.join("version-resource.o");
    if let Err(e) = std::fs::write(&rc, script) {
        panic!("writing {}: {e}", rc.display());
    }
    let status = std::process::Command::new("x86_64-w64-mingw32-windres")
        .arg(&rc)
        .arg("-O")
        .arg("coff")
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| {
            panic!("running x86_64-w64-mingw32-windres (apt-get install binutils-mingw-w64-x86-64): {e}")
        });
    if !status.success() {
        panic!("x86_64-w64-mingw32-windres failed on {}", rc.display());
    }
    println!("cargo:rustc-link-arg-bins={}", obj.display());
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    version_resource();
    println!("cargo:rerun-if-changed=../build-support/mingw_static_runtime.rs");
    mingw_static_runtime(
        &[
            ("x86_64-w64-mingw32-g++", "libstdc++.a"),
            ("x86_64-w64-mingw32-gcc", "libssp.a"),
        ],
        &["ssp", "msvcrt", "advapi32"],
    );
}
