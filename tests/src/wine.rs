//! Windows programs under Wine for the Windows end-to-end tests: a fresh Wine prefix on a virtual X
//! display of its own, the test-only probe program (`tests/wine/probe.c`), and paths as Windows
//! programs see them.
//!
//! The Windows executables under test are built by `cargo xtask windows` (cross-compiled with
//! mingw-w64), which passes their paths in `STREAMER_WINDOWS_EXE` and `STREAMER_WINDOWS_MSI`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::XDisplay;

/// Debian's 64-bit Wine loader (the `wine` wrapper wants 32-bit Wine, which is not installed).
pub const WINE: &str = "/usr/lib/wine/wine64";

/// A Windows executable the xtask built, from the environment variable `var`.
pub fn built_exe(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the Windows tests through `cargo xtask windows`, which builds the Windows binaries")
    });
    assert!(path.exists(), "{var}={} does not exist", path.display());
    path
}

/// A path of this machine as a Windows program under Wine sees it (Wine maps `/` to drive `Z:`).
pub fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// A fresh Wine prefix on its own virtual display.
#[derive(Debug)]
pub struct WineDesktop {
    /// The X display Wine draws on.
    pub display: XDisplay,
    prefix: tempfile::TempDir,
    children: Vec<Child>,
}

impl WineDesktop {
    /// Starts a display of `width` x `height` and initialises a prefix on it (about 10 s).
    pub fn start(width: u16, height: u16) -> Self {
        let display = XDisplay::start(width, height);
        let prefix = tempfile::tempdir().unwrap();
        let desktop = Self {
            display,
            prefix,
            children: Vec::new(),
        };
        let status = desktop
            .command(Path::new("wineboot"))
            .arg("--init")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("wine64 runs (apt-get install wine64)");
        assert!(status.success(), "wineboot --init: {status}");
        // wineboot returns before the prefix's first services settle; a program started then (an
        // msiexec, say) can find the service manager half started. Wait until Wine is idle.
        let _ = Command::new("/usr/lib/wine/wineserver")
            .arg("-w")
            .env("WINEPREFIX", desktop.prefix.path())
            .status();
        // Wine 8 lacks bcryptprimitives.dll, which Windows 10 and later have in system32 and
        // Rust's std needs: the test-only shim goes where the real one would be, so that
        // installed programs (the MSI's service) start too.
        let system32 = desktop.prefix.path().join("drive_c/windows/system32");
        std::fs::create_dir_all(&system32).unwrap();
        let shim_source = Path::new(env!("CARGO_MANIFEST_DIR")).join("wine/bcryptprimitives");
        let status = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-O2", "-shared", "-o"])
            .arg(system32.join("bcryptprimitives.dll"))
            .arg(shim_source.with_extension("c"))
            .arg(shim_source.with_extension("def"))
            .arg("-ladvapi32")
            .status()
            .expect("mingw-w64 gcc runs (apt-get install gcc-mingw-w64-x86-64)");
        assert!(status.success(), "building the ProcessPrng shim: {status}");
        desktop
    }

    /// The Wine prefix.
    pub fn prefix(&self) -> &Path {
        self.prefix.path()
    }

    /// A command running `program` (an exe path, or a Wine builtin such as `msiexec`) under this
    /// prefix and display, with the test-only `ProcessPrng` shim beside exes that need it.
    pub fn command(&self, program: &Path) -> Command {
        let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("wine/runner.sh");
        let mut cmd = if program.extension().is_some_and(|e| e == "exe") {
            let mut c = Command::new(runner);
            c.arg(program);
            c
        } else {
            let mut c = Command::new(WINE);
            c.arg(program);
            c
        };
        cmd.env("WINEPREFIX", self.prefix.path())
            .env("DISPLAY", &self.display.name)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        cmd
    }

    /// Runs a Wine builtin (`msiexec`, `sc`, `reg`) or an exe to its end; returns its exit status
    /// and its standard output.
    pub fn run(&self, program: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
        let out = self
            .command(Path::new(program))
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("running a program under Wine");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The prefix's `C:` drive.
    pub fn drive_c(&self) -> PathBuf {
        self.prefix.path().join("drive_c")
    }

    /// Starts `cmd` and stops it (and the prefix's wineserver) when the desktop is dropped.
    pub fn spawn(&mut self, cmd: &mut Command) -> &mut Child {
        let child = cmd.spawn().expect("starting a program under Wine");
        self.children.push(child);
        self.children.last_mut().unwrap()
    }

    /// Builds the probe program (a window showing `PROBE 4217` in large type that saves its text
    /// to `out` on every change), starts it, and waits until it has saved its first text.
    pub fn start_probe(&mut self, out: &Path) {
        let dir = self.prefix.path().join("probe");
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("probe.exe");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("wine/probe.c");
        let status = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-municode", "-mwindows", "-O2", "-o"])
            .arg(&exe)
            .arg(source)
            .status()
            .expect("mingw-w64 gcc runs (apt-get install gcc-mingw-w64-x86-64)");
        assert!(status.success(), "building the probe: {status}");
        let mut cmd = self.command(&exe);
        cmd.arg(windows_path(out));
        self.spawn(&mut cmd);
        let started = Instant::now();
        while !out.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the probe never started"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for WineDesktop {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("/usr/lib/wine/wineserver")
            .arg("-k")
            .env("WINEPREFIX", self.prefix.path())
            .status();
    }
}
