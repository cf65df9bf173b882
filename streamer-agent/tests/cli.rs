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
