//! The streamer's command line: its version, and clear errors for bad settings.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn streamer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamer-agent"))
}

#[test]
fn reports_its_four_part_version() {
    let out = streamer().arg("--product-version").output().unwrap();
    assert!(out.status.success());
    let v: protocol::ProductVersion = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(v, streamer_agent::product_version().unwrap());
}

#[test]
fn refuses_missing_and_unreadable_settings_clearly() {
    let out = streamer().output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--relay"));

    let dir = tempfile::tempdir().unwrap();
    let out = streamer()
        .args(["--relay", "127.0.0.1:9", "--ca"])
        .arg(dir.path().join("missing.pem"))
        .arg("--credential-file")
        .arg(dir.path().join("device.credential"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.pem"), "{err}");

    let out = streamer()
        .args([
            "--relay",
            "127.0.0.1:9",
            "--ca",
            "x.pem",
            "--frame-rate",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("frame-rate"));
}

#[test]
fn announces_another_version_only_when_it_is_a_valid_one() {
    // A malformed version is refused before anything starts, in the version parser's words.
    let out = streamer()
        .args([
            "--relay",
            "127.0.0.1:9",
            "--ca",
            "x.pem",
            "--announce-version",
            "3.5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--announce-version"), "{err}");
    assert!(err.contains("malformed product version \"3.5\""), "{err}");

    // A valid one is what the streamer announces, and it says so (here it then stops at the
    // missing CA: the handshake itself is tests/tests/streamer.rs's).
    let dir = tempfile::tempdir().unwrap();
    let out = streamer()
        .args(["--relay", "127.0.0.1:9", "--ca"])
        .arg(dir.path().join("missing.pem"))
        .arg("--credential-file")
        .arg(dir.path().join("device.credential"))
        .args(["--deployment-code", "CODE", "--announce-version", "3.5.7.9"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("announcing version 3.5.7.9 to the relay instead of this build's"),
        "{err}"
    );
    assert!(err.contains("missing.pem"), "{err}");
}

/// Runs `exe` and waits for it; a copy still "busy" (another test's child holding it open for an
/// instant, see [`beside`]) is tried again.
fn run(exe: &std::path::Path) -> std::process::Output {
    for _ in 0..100 {
        match Command::new(exe).output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    panic!("{} stayed busy for 2 s", exe.display())
}

/// The program linked (or copied) into a folder of its own, with `settings` beside it as the
/// settings file.
fn beside(settings: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join(
        std::path::Path::new(env!("CARGO_BIN_EXE_streamer-agent"))
            .file_name()
            .unwrap(),
    );
    // A hard link where it can be: a copy is a file this process opened for writing, and a child
    // that another test forks meanwhile inherits that descriptor until it execs, so that running
    // the copy fails with "Text file busy" (ETXTBSY; CI met it). A link is never open for writing.
    if std::fs::hard_link(env!("CARGO_BIN_EXE_streamer-agent"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_streamer-agent"), &exe).unwrap();
    }
    std::fs::write(
        dir.path().join(streamer_agent::settings::FILE_NAME),
        settings,
    )
    .unwrap();
    (dir, exe)
}

#[test]
fn reads_the_settings_file_beside_it_and_names_what_is_wrong_there() {
    // Read: the CA named there is looked for beside the program, and is missing.
    let (dir, exe) = beside("relay = \"127.0.0.1:9\"\nca = \"team-ca.pem\"\nteam_key = \"k\"\n");
    let out = run(&exe);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dir.path().join("team-ca.pem").display().to_string()),
        "{err}"
    );

    // A misspelt key is refused, naming the file and the key.
    let (_dir, exe) = beside("relay = \"127.0.0.1:9\"\nteam-key = \"k\"\n");
    let out = run(&exe);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("streamer-settings.toml") && err.contains("team-key"),
        "{err}"
    );

    // No CA anywhere: says where it may be given.
    let (_dir, exe) = beside("relay = \"127.0.0.1:9\"\n");
    let out = run(&exe);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no CA certificate") && err.contains("--ca"),
        "{err}"
    );
}
