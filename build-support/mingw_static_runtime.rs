// Included by the build scripts of the crates that link openh264 into Windows executables
// (`include!`): Windows builds with mingw-w64 link the C and C++ runtimes statically, so that an exe
// runs alone (no libstdc++-6.dll, libgcc_s_seh-1.dll or libssp-0.dll beside it). openh264 asks for
// `-lstdc++` in dynamic mode; a folder holding only the static archives is searched first, so the
// linker finds `libstdc++.a` there.

/// On `x86_64-pc-windows-gnu`: copies each `(compiler, archive)` the compiler knows into a folder
/// searched first, links statically from there on, and links `libs` after.
fn mingw_static_runtime(archives: &[(&str, &str)], libs: &[&str]) {
    use std::path::PathBuf;
    use std::process::Command;
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
    for &(compiler, archive) in archives {
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
    for lib in libs {
        println!("cargo:rustc-link-arg=-l{lib}");
    }
}
