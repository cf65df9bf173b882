//! Project automation behind the README's two commands: `cargo xtask demo` and `cargo xtask test`.
//!
//! Each command first installs the Debian packages it needs (with sudo when not root, and only those
//! missing, so running it twice does nothing the second time), then runs cargo.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

mod engines;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo          run the demo of what exists (see README)
  test          install what the tests need, then run every check and test
  fuzz [SECS]   run each fuzz target for SECS seconds (default 20)
  installers    check the release workflow, build every Linux installer (relay, streamer, app),
                install, smoke-test and remove each (root; part of `test`)
  engines       run the relay's test suite on PostgreSQL and Ceph's RADOS gateway (S3), each
                started for it (part of `test`)
  engines --bench [ARGS]
                the load bench's recording relay on SQLite and local disk, then on PostgreSQL and
                the RADOS gateway, then as a two-relay fleet on them, same run (ARGS go to the
                bench: --sessions N --seconds S)
  windows       cross-build the streamer for Windows, run its tests and the app's native view's
                under Wine, build its MSI, check the app builds for Windows, and run the
                end-to-end Windows tests (part of `test`)
  macos         type-check and lint the app's native view's AppKit code for macOS (part of
                `test`; nothing for macOS links here)";

/// Debian packages every build needs: a C toolchain for crates that build C (and libFuzzer), and
/// nasm, without which openh264 builds without its assembly and runs 2.5 times slower; cmake for the
/// bundled libopus; ALSA's headers for audio capture.
const BUILD_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "nasm",
    "cmake",
    "libasound2-dev",
    // The technician app (Tauri v2): WebKitGTK and the libraries Tauri links on Linux.
    "libwebkit2gtk-4.1-dev",
    "librsvg2-dev",
];

/// Debian packages the tests need besides: a virtual X display whose resolution and monitors can be
/// changed (Xorg with the dummy driver, and xrandr).
const TEST_PACKAGES: &[&str] = &[
    // OCR: the attended windows' words, read from screens and pictures as a person reads them.
    "tesseract-ocr",
    "xserver-xorg-core",
    "xserver-xorg-video-dummy",
    "x11-xserver-utils",
    // The app's window under test: Xvfb (xvfb-run), WebKit's WebDriver, and the GStreamer plugins
    // behind WebCodecs' H.264 decoder in WebKitGTK.
    "xvfb",
    "xauth",
    "webkit2gtk-driver",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-libav",
    "gstreamer1.0-gl",
    // A real SMTP server for the relay's invitation e-mails.
    "python3-aiosmtpd",
    // The console in a real browser: Debian's Chromium, its WebDriver, and certutil to trust the
    // relay's development CA in the browser's certificate database.
    "chromium",
    "chromium-driver",
    "libnss3-tools",
    // ffprobe, which checks that recording files play (relay/tests/evidence.rs).
    "ffmpeg",
    // ip and tc: a network namespace with a kernel rate limit (technician-app/tests/adaptation.rs).
    "iproute2",
    // An X clipboard client of its own, to copy and paste on the streamer's display
    // (tests/tests/clipboard.rs) with code that is not the streamer's.
    "xclip",
];

/// The Windows target built here (with Debian's mingw-w64); the MSVC flavour is built in the
/// release workflow.
const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";
/// The macOS target whose code is type-checked here (Apple silicon; nothing for macOS links here).
const MACOS_TARGET: &str = "aarch64-apple-darwin";

/// Debian packages for the Windows build and its tests: the mingw-w64 toolchain (C and C++, for
/// openh264, libopus and ring), Wine to run the results, wixl to build the MSI, and Tesseract to
/// read the text in the pictures the end-to-end test receives.
const WINDOWS_PACKAGES: &[&str] = &[
    "gcc-mingw-w64-x86-64",
    "g++-mingw-w64-x86-64",
    "wine64",
    "wixl",
];

/// Debian packages the installers' checks need: systemd (`systemd-analyze verify`) and adduser for
/// the packages' scripts, rpm to read the app's rpm, shellcheck for the scripts, desktop-file-utils
/// for the app's desktop entry, x11-utils (xwininfo) to see the installed app's window.
const INSTALLER_PACKAGES: &[&str] = &[
    "systemd",
    "adduser",
    "rpm",
    "shellcheck",
    "desktop-file-utils",
    "x11-utils",
    "xvfb",
    "xauth",
];

fn main() -> ExitCode {
    since_start();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("test") => test(),
        Some("engines") if args.get(1).is_some_and(|a| a == "--bench") => {
            ensure_packages(BUILD_PACKAGES).and_then(|()| engines_bench(&args[2..]))
        }
        Some("engines") => ensure_packages(BUILD_PACKAGES)
            .and_then(|()| ensure_packages(TEST_PACKAGES))
            .and_then(|()| relay_on_engines()),
        Some("installers") => ensure_packages(BUILD_PACKAGES).and_then(|()| installers()),
        Some("windows") => ensure_packages(BUILD_PACKAGES)
            .and_then(|()| ensure_packages(TEST_PACKAGES))
            .and_then(|()| windows()),
        Some("macos") => macos(),
        Some("fuzz") => match args.get(1).map(|s| s.parse::<u32>()) {
            None => fuzz(20),
            Some(Ok(secs)) => fuzz(secs),
            Some(Err(_)) => Err(anyhow::anyhow!("fuzz takes a number of seconds\n\n{USAGE}")),
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown command {other:?}\n\n{USAGE}")),
        None => Err(anyhow::anyhow!("{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Set by `test`: the workspace's builds lint as they compile (see [`workspace_cargo`]).
static LINT_WHILE_BUILDING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Cargo for the workspace's own builds. Under `test`, the workspace's crates are compiled by
/// clippy-driver with warnings denied (what `cargo clippy -- -D warnings` does, as cargo-clippy
/// itself sets it up), so that one build both lints and produces the test binaries: `cargo clippy`
/// beside `cargo test` made every dependency twice, once checked and once built (measured in a
/// cold CI run: 4.5 to 9 minutes of checking). Dependencies are compiled by rustc either way, so
/// this changes no dependency's build, and every build of the run uses it, so none is repeated.
fn workspace_cargo() -> Command {
    let mut cmd = cargo();
    if LINT_WHILE_BUILDING.load(std::sync::atomic::Ordering::Relaxed) {
        cmd.env("RUSTC_WORKSPACE_WRAPPER", "clippy-driver").env(
            "CLIPPY_ARGS",
            "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
        );
    }
    cmd
}

/// Runs `cmd`, saying when it starts and how long it took: a CI log then shows where its time goes.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: [{}] running {shown}", since_start());
    let started = std::time::Instant::now();
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    eprintln!(
        "xtask: [{}] took {:.0} s: {}",
        since_start(),
        started.elapsed().as_secs_f64(),
        shown.chars().take(160).collect::<String>()
    );
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Time since this xtask started, as `MMmSSs`.
fn since_start() -> String {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let secs = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs();
    format!("{:02}m{:02}s", secs / 60, secs % 60)
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs the Debian packages that are missing, with one `apt-get update` first.
fn ensure_packages(packages: &[&str]) -> Result<()> {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!(
            "this machine has no dpkg: install {} by hand",
            packages.join(" ")
        );
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let apt = |args: &[&str]| {
        let mut cmd = if is_root() {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        cmd
    };
    run(&mut apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    run(&mut install)
}

fn demo() -> Result<()> {
    ensure_packages(BUILD_PACKAGES)?;
    // A virtual display for machines without one.
    ensure_packages(TEST_PACKAGES)?;
    // Release: capture and H.264 at full speed. Cargo shows its progress: a cold build takes about
    // 15 minutes on two cores. The technician app is built only where there is a display to show
    // it on.
    println!("demo: building the relay, the streamer and the command-line client (release; a first build takes about 15 minutes)");
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "technician-app",
        "--bin",
        "technician-cli",
        "--package",
        "system-tests",
        "--example",
        "demo",
    ]))?;
    let mut demo = cargo();
    if std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty()) {
        println!("demo: building the technician app (a first build takes about 6 minutes more)");
        run(cargo().args(["build", "--release", "--package", "technician-desktop"]))?;
        demo.env(
            "DEMO_TECHNICIAN_APP",
            workspace_root().join("target/release/technician-app"),
        );
    }
    println!("demo: starting");
    run(demo.args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "system-tests",
        "--example",
        "demo",
    ]))?;
    Ok(())
}

fn test() -> Result<()> {
    ensure_packages(BUILD_PACKAGES)?;
    ensure_packages(TEST_PACKAGES)?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    ensure_clippy()?;
    LINT_WHILE_BUILDING.store(true, std::sync::atomic::Ordering::Relaxed);
    // Clippy over every target (benches and examples too) in the build of the tests themselves,
    // first, so that the log tells building from running and a lint fails the run early.
    run(workspace_cargo().args(["test", "--workspace", "--all-targets", "--no-run"]))?;
    ensure_cargo_tool("tauri-driver", &["tauri-driver", "--version", "2.1.0"])?;
    fuzz(20)?;
    installers()?;
    windows()?;
    macos()?;
    // A failure on the engines does not stop the workspace's tests: a red run lists them all.
    let on_engines = relay_on_engines();
    // Last, so that the test runner's summary is the last thing printed. Every suite runs even
    // after one fails, so that a red run lists every failure at once.
    let workspace = run_tests(workspace_cargo().args(["test", "--workspace", "--no-fail-fast"]));
    on_engines.and(workspace)
}

/// Clippy's driver, which rustup installs with the toolchain's clippy component.
fn ensure_clippy() -> Result<()> {
    let works = Command::new("clippy-driver")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "clippy"]))
}

/// Runs cargo test, echoing its output, and ends with one line that adds up every test binary's
/// `test result:` line, so the total is the last thing printed.
fn run_tests(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let (counts, status) = run_counting(cmd)?;
    println!(
        "total: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    if counts.passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

/// Tests passed, failed and skipped, as test binaries report them.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs a test command (cargo test, or a test binary), echoing its output and adding up its
/// `test result:` lines.
fn run_counting(cmd: &mut Command) -> Result<(Counts, std::process::ExitStatus)> {
    use std::io::BufRead;
    let shown = format!("{cmd:?}");
    eprintln!("xtask: [{}] running {shown}", since_start());
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let stdout = child.stdout.take().context("the tests have no stdout")?;
    let mut counts = Counts::default();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading the tests' output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(['.', ';']) {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(what)) = (words.next(), words.next()) {
                    let n: u64 = n.parse().unwrap_or(0);
                    match what {
                        "passed" => counts.passed += n,
                        "failed" => counts.failed += n,
                        "ignored" => counts.ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {shown}"))?;
    eprintln!(
        "xtask: [{}] took {:.0} s: {}",
        since_start(),
        started.elapsed().as_secs_f64(),
        shown.chars().take(160).collect::<String>()
    );
    Ok((counts, status))
}

/// The load bench (`tests/benches/relay_load.rs --engines`) with PostgreSQL and the RADOS gateway
/// started for it.
fn engines_bench(bench_args: &[String]) -> Result<()> {
    ensure_packages(engines::ENGINE_PACKAGES)?;
    let postgres = engines::Postgres::start()?;
    let rgw = engines::Rgw::start()?;
    let result = run(cargo()
        .args([
            "bench",
            "-p",
            "system-tests",
            "--bench",
            "relay_load",
            "--",
            "--engines",
        ])
        .args(bench_args)
        .env("RELAY_BENCH_DATABASE_URL", &postgres.url)
        .env("RELAY_BENCH_RECORDINGS_URL", format!("s3://{}", rgw.bucket))
        .envs(rgw.aws_env()));
    drop(rgw);
    drop(postgres);
    result
}

/// The relay's whole test suite again (every test binary of the relay: its unit tests and each of
/// `relay/tests/`), on the engines of a fleet: a PostgreSQL cluster and a Ceph RADOS gateway of
/// their own. Every binary runs even after one fails.
fn relay_on_engines() -> Result<()> {
    ensure_packages(engines::ENGINE_PACKAGES)?;
    let binaries = engines::relay_test_binaries()?;
    let postgres = engines::Postgres::start()?;
    let rgw = engines::Rgw::start()?;
    let mut total = Counts::default();
    let mut failed = Vec::new();
    for binary in &binaries {
        let (counts, status) = run_counting(
            Command::new(binary)
                .current_dir(workspace_root().join("relay"))
                .env("RELAY_TEST_DATABASE_URL", &postgres.url)
                .env("RELAY_TEST_RECORDINGS_URL", format!("s3://{}", rgw.bucket))
                .envs(rgw.aws_env()),
        )?;
        total.passed += counts.passed;
        total.failed += counts.failed;
        total.ignored += counts.ignored;
        if !status.success() {
            failed.push(binary.display().to_string());
        }
    }
    drop(postgres);
    drop(rgw);
    eprintln!(
        "xtask: the relay on PostgreSQL and RGW: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.ignored
    );
    if !failed.is_empty() {
        bail!(
            "the relay's tests on PostgreSQL failed in {}",
            failed.join(", ")
        );
    }
    if total.passed == 0 {
        bail!("the relay's tests on PostgreSQL ran no test");
    }
    Ok(())
}

/// Runs every fuzz target for `secs` seconds from the committed corpus, writing new inputs to a
/// scratch directory so that the work tree stays clean.
fn fuzz(secs: u32) -> Result<()> {
    ensure_packages(BUILD_PACKAGES)?;
    ensure_cargo_tool("cargo-fuzz", &["cargo-fuzz"])?;
    let fuzz_dir = workspace_root().join("fuzz");
    let scratch = std::env::temp_dir().join(format!("fuzz-corpus-{}", std::process::id()));
    for target in ["decode", "handshake", "record"] {
        let new_inputs = scratch.join(target);
        std::fs::create_dir_all(&new_inputs).with_context(|| format!("creating {new_inputs:?}"))?;
        let corpus = fuzz_dir.join("corpus").join(target);
        // `-s none`: no sanitizer, which is what the stable toolchain can build. The decoder is
        // forbidden unsafe code, so the sanitizer would have little to add.
        let mut cmd = cargo();
        cmd.current_dir(&fuzz_dir)
            .args(["fuzz", "run", "--sanitizer", "none", target])
            .arg(&new_inputs)
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .arg("-print_final_stats=1");
        run(&mut cmd)?;
    }
    std::fs::remove_dir_all(&scratch).ok();
    Ok(())
}

/// Installs a tool from crates.io with `cargo install --locked` when `bin` is not on the PATH (or in
/// cargo's bin directory).
fn ensure_cargo_tool(bin: &str, install: &[&str]) -> Result<()> {
    let found = Command::new(bin)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if found {
        return Ok(());
    }
    run(cargo().args(["install", "--locked"]).args(install))
}

/// The release engineers' installers, as far as Linux can build them (`installers/`): checks the
/// release workflow with actionlint and the installer scripts with shellcheck; builds the relay's and
/// the streamer's Debian packages, installs them, checks their systemd units (`systemd-analyze
/// verify`), starts the installed binaries, and removes and purges them; builds the technician app's
/// deb and rpm with the Tauri bundler, installs the deb, opens the installed app's window, and purges
/// it. Installing packages needs root; elsewhere this says so and stops the run.
fn installers() -> Result<()> {
    if !is_root() {
        bail!(
            "installing the packages under test needs root: run `cargo xtask test` as root (CI \
             does), or the scripts in installers/linux/ by hand (see installers/README.md)"
        );
    }
    ensure_packages(INSTALLER_PACKAGES)?;
    ensure_npm()?;
    let root = workspace_root();
    let tools = root.join("installers/tools");
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(&tools))?;
    run(Command::new("node").arg(tools.join("lint-workflows.mjs")))?;
    let linux = root.join("installers/linux");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&linux)
        .with_context(|| format!("reading {}", linux.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    scripts.sort();
    run(Command::new("shellcheck").args(&scripts))?;
    for script in [
        "build-debs.sh",
        "smoke-test.sh",
        "build-app.sh",
        "smoke-test-app.sh",
    ] {
        run(Command::new("bash").arg(linux.join(script)))?;
    }
    Ok(())
}

/// The Windows streamer, as far as this machine can build and run it (see installers/README.md):
/// clippy for the Windows target (the streamer, and the technician app, which must keep compiling
/// for Windows); the cross-platform crates' and the streamer's tests under Wine
/// (tests/wine/runner.sh as cargo's runner); the MSI from the exe those tests built; then the
/// end-to-end Windows tests (ignored in a plain `cargo test`, since they need these builds).
fn windows() -> Result<()> {
    ensure_packages(WINDOWS_PACKAGES)?;
    run(Command::new("rustup").args(["target", "add", WINDOWS_TARGET]))?;
    let root = workspace_root();
    let runner = root.join("tests/wine/runner.sh");
    // Clippy for Windows: the technician app, which must keep compiling for Windows (its window
    // tests and bench are Linux-only; its other tests are included), and the streamer. Under
    // `test`, the streamer is linted in the build of its tests below (see `workspace_cargo`), so
    // that its dependencies are not checked as well as built.
    let linted_in_build = LINT_WHILE_BUILDING.load(std::sync::atomic::Ordering::Relaxed);
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--target",
        WINDOWS_TARGET,
        "-p",
        "technician-desktop",
    ]);
    if !linted_in_build {
        clippy.args(["-p", "streamer-agent", "-p", "technician-view"]);
    }
    run(clippy.args([
        "--lib",
        "--bins",
        "--tests",
        "--examples",
        "--",
        "-D",
        "warnings",
    ]))?;
    let cross_platform = [
        "-p",
        "protocol",
        "-p",
        "recording-fmp4",
        "-p",
        "relay-client",
        "-p",
        "streamer-agent",
        // The app's native view, drawn in a child of a Win32 window under Wine (tests/win32.rs).
        "-p",
        "technician-view",
    ];
    run_tests(
        workspace_cargo()
            .args(["test", "--target", WINDOWS_TARGET])
            .args(cross_platform)
            .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER", &runner),
    )?;
    // The streamer's integration tests built its exe (debug, as every test build here).
    let exe = root.join(format!("target/{WINDOWS_TARGET}/debug/streamer-agent.exe"));
    if !exe.exists() {
        bail!("{} was not built", exe.display());
    }
    let build_msi = |version: Option<&str>| -> Result<String> {
        let mut cmd = Command::new("bash");
        cmd.arg(root.join("installers/windows/build-msi.sh"))
            .arg(&exe);
        if let Some(v) = version {
            cmd.env("MSI_VERSION", v);
        }
        let out = cmd
            .output()
            .context("running installers/windows/build-msi.sh")?;
        if !out.status.success() {
            bail!(
                "building the MSI failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let msi = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        eprintln!("xtask: built {msi}");
        Ok(msi)
    };
    let msi = build_msi(None)?;
    // A later version of the same product, for the upgrade-in-place test.
    let upgrade_msi = build_msi(Some("99.0.0.0"))?;
    // `--workspace` so that features resolve as in the workspace's own test run, which then
    // reuses this build. One at a time: each keeps Wine, its X display and OCR busy, and the
    // attended test's steps wait on what the other's load slows (measured: run together, the
    // attended test's chat step took over 45 s; alone, the whole test 52 s).
    run_tests(
        workspace_cargo()
            .args([
                "test",
                "--workspace",
                "--test",
                "windows",
                "--",
                "--ignored",
                "--test-threads=1",
            ])
            .env("STREAMER_WINDOWS_EXE", &exe)
            .env("STREAMER_WINDOWS_MSI", &msi)
            .env("STREAMER_WINDOWS_UPGRADE_MSI", &upgrade_msi),
    )
}

/// What of the macOS code can be checked here: the app's native view's AppKit calls
/// (`technician-view-macos`), type-checked and linted for Apple silicon. Nothing for macOS links
/// here, and crates with C sources (openh264, ring) do not even build.
fn macos() -> Result<()> {
    run(Command::new("rustup").args(["target", "add", MACOS_TARGET]))?;
    run(cargo().args([
        "clippy",
        "--target",
        MACOS_TARGET,
        "-p",
        "technician-view-macos",
        "--",
        "-D",
        "warnings",
    ]))
}

/// Node.js and npm for the installers' tools. A machine that has them (from any source) keeps them;
/// otherwise Debian's packages are installed.
fn ensure_npm() -> Result<()> {
    let works = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("node") && works("npm") {
        return Ok(());
    }
    ensure_packages(&["nodejs", "npm"])
}
