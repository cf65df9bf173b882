//! The Windows streamer end to end, under Wine on a virtual display: the real cross-built exe
//! captures a Wine program showing known text (GDI, since Wine has no Desktop Duplication), streams
//! it through a real relay that records it, and types what the technician sends into that program;
//! its attended window says the session is recorded, and its End session button ends it. The
//! technician's decoded picture and the recording are read back with OCR. And the MSI: its service
//! retries a bad deployment code, registers with a good one, serves an unattended session through
//! its capture helper, upgrades in place, and uninstalls leaving nothing.
//!
//! Gated (ignored) because it needs the Windows build: `cargo xtask windows` (part of
//! `cargo xtask test`) builds the exe and runs these with `--ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use protocol::*;
use relay_client::Connection;
use system_tests::ocr::{ocr, plain, View};
use system_tests::wine::{built_exe, windows_path, WineDesktop};
use system_tests::TestRelay;

const PASSWORD: &str = "correct horse battery staple";

/// One Wine test at a time: two prefixes booting and capturing at once on the 2-core machine starve
/// each other (seen: a streamer killed while exiting).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn recv(c: &mut Connection) -> Message {
    tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("a message within 30 s")
        .expect("the connection is open")
}

/// Waits for the session to start: its id, device name, recording flag and access type.
/// The next session code the attended streamer prints, within 60 s.
async fn next_code(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.recv())
            .await
            .expect("the streamer prints its session code within 60 s")
            .expect("the streamer is running");
        if let Some(rest) = line.strip_prefix("Your session code is ") {
            let code: String = rest.chars().filter(char::is_ascii_digit).take(9).collect();
            assert_eq!(code.len(), 9, "a nine-digit code: {line}");
            return code;
        }
    }
}

async fn session_started(tech: &mut Connection) -> (String, String, bool, AccessType) {
    loop {
        match recv(tech).await {
            Message::SessionStarted {
                session_id,
                device_name,
                recorded,
                access,
                ..
            } => return (session_id, device_name, recorded, access),
            Message::Refused { code, message } => panic!("refused: {code:?} {message}"),
            _ => {}
        }
    }
}

/// Ctrl+Alt+Del as the app's Keys menu sends it: pressed in order, released in reverse, each key
/// with the modifiers held at that moment.
async fn send_ctrl_alt_del(tech: &mut Connection) {
    let both = Modifiers::CONTROL | Modifiers::ALT;
    for (code, down, mods) in [
        ("ControlLeft", true, Modifiers::CONTROL),
        ("AltLeft", true, both),
        ("Delete", true, both),
        ("Delete", false, both),
        ("AltLeft", false, Modifiers::CONTROL),
        ("ControlLeft", false, 0),
    ] {
        tech.send(&Message::KeyInput(KeyInput {
            code: code.into(),
            down,
            modifiers: Modifiers(mods),
        }))
        .await
        .unwrap();
    }
}

fn key(code: &str, down: bool) -> Message {
    Message::KeyInput(KeyInput {
        code: code.into(),
        down,
        modifiers: Modifiers::default(),
    })
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the Windows build and Wine: cargo xtask windows runs it"]
async fn the_windows_streamer_shows_a_wine_program_types_into_it_and_is_recorded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let exe = built_exe("STREAMER_WINDOWS_EXE");
    // What Explorer would start with a double click: a GUI program (PE subsystem 2), so that no
    // console window opens beside the attended window, with a version resource naming the
    // product (Properties, Details).
    let image = std::fs::read(&exe).unwrap();
    let pe = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
    assert_eq!(&image[pe..pe + 4], b"PE\0\0");
    let subsystem = u16::from_le_bytes(image[pe + 0x5c..pe + 0x5e].try_into().unwrap());
    assert_eq!(subsystem, 2, "IMAGE_SUBSYSTEM_WINDOWS_GUI");
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    for text in [
        "ProductName".to_owned(),
        streamer_agent::PRODUCT_NAME.to_owned(),
        streamer_agent::product_version().unwrap().to_string(),
    ] {
        let wanted = utf16(&text);
        assert!(
            image.windows(wanted.len()).any(|w| w == wanted.as_slice()),
            "the version resource holds {text:?}"
        );
    }
    let mut desktop = WineDesktop::start(1280, 720);
    let work = tempfile::tempdir().unwrap();
    let typed = work.path().join("probe-text.txt");
    desktop.start_probe(&typed);

    let data = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(data.path(), 0).await;
    let team = relay.acme(PASSWORD, true, false).await;

    // The attended streamer as the team hands it out: the exe in a folder with its settings file
    // and the relay's CA, started with no settings on its command line. It prints the code.
    let folder = desktop.drive_c().join("Support");
    std::fs::create_dir_all(&folder).unwrap();
    let handed_out = folder.join("remote-support.exe");
    std::fs::copy(&exe, &handed_out).unwrap();
    std::fs::copy(relay.ca(), folder.join("team-ca.pem")).unwrap();
    std::fs::write(
        folder.join(streamer_agent::settings::FILE_NAME),
        format!(
            "relay = \"127.0.0.1:{}\"\nca = \"team-ca.pem\"\nteam_key = \"{}\"\nname = \"Wine PC\"\n",
            relay.port(),
            team.team.attended_key
        ),
    )
    .unwrap();
    let mut cmd = desktop.command(&handed_out);
    cmd.args(["--frame-rate", "10"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped());
    let streamer = desktop.spawn(&mut cmd);
    let stdout = streamer.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let code = next_code(&mut lines).await;

    let mut tech = relay.technician("owner@acme.example", PASSWORD).await;
    tech.send(&Message::SessionRequest {
        target: SessionTarget::Code { code: code.clone() },
        view: ViewRequest::default(),
    })
    .await
    .unwrap();
    let (session_id, device_name, recorded, access) = session_started(&mut tech).await;
    assert_eq!(
        (device_name.as_str(), recorded, access),
        ("Wine PC", true, AccessType::Attended)
    );

    // What the technician sees: H.264 that decodes to the probe's text, monitor keyed by device.
    let mut view = View::default();
    let picture = view
        .until_text(&mut tech, &plain("PROBE 4217"), work.path())
        .await;
    assert_eq!(picture, (1280, 720));
    let (monitors, audio) = (view.monitors.clone(), view.audio.clone());
    assert_eq!(monitors.len(), 1);
    assert!(
        monitors[0].key.starts_with(r"\\.\DISPLAY"),
        "Windows names its monitors by device: {:?}",
        monitors[0].key
    );
    // Under Wine there is no loopback device: the session goes on without audio and says why.
    assert!(
        matches!(&audio, Some(Message::AudioUnavailable { reason }) if !reason.is_empty()),
        "{audio:?}"
    );

    // Keys the technician types land in the Wine program: physical keys, then Unicode text.
    for code in ["KeyO", "KeyK", "Digit5"] {
        tech.send(&key(code, true)).await.unwrap();
        tech.send(&key(code, false)).await.unwrap();
    }
    tech.send(&Message::TextInput {
        text: " ÉTÉ".into(),
    })
    .await
    .unwrap();
    let expected = "PROBE 4217ok5 ÉTÉ";
    let started = Instant::now();
    let mut seen = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        seen = std::fs::read_to_string(&typed).unwrap_or_default();
        if seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, expected, "the typed keys reached the Wine program");
    // ... and the technician sees them there.
    view.until_text(&mut tech, &plain("PROBE 4217ok5"), work.path())
        .await;

    // The end user's window says the session is recorded (read from the technician's picture)...
    view.until_text(
        &mut tech,
        &plain("This session is recorded by the technician's team"),
        work.path(),
    )
    .await;
    // The window sits in the bottom-right corner; the offsets allow for its frame and title.
    let (x0, y0) = (
        1280 - streamer_agent::window::WIDTH - streamer_agent::window::MARGIN,
        720 - streamer_agent::window::HEIGHT - streamer_agent::window::MARGIN,
    );
    let centre = |(x, y, w, h): (i32, i32, i32, i32)| {
        ((x0 + 4 + x + w / 2) as u16, (y0 + 26 + y + h / 2) as u16)
    };
    // Chat in the Win32 window: the technician's line is read in it (from the technician's
    // picture), and the end user's answer, written in its line and sent with Send, arrives.
    tech.send(&Message::ChatText {
        text: "Please restart the printer".into(),
    })
    .await
    .unwrap();
    // The streamer has it (its terminal prints the technician's lines), then its window shows it.
    let mut printed = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("the streamer prints the technician's line; it printed {printed:#?}")
            })
            .expect("the streamer is running");
        if line.contains("Owner: Please restart the printer") {
            break;
        }
        printed.push(line);
    }
    view.until_text(
        &mut tech,
        &plain("Owner: Please restart the printer"),
        work.path(),
    )
    .await;
    let (x, y) = centre(streamer_agent::window::CHAT_INPUT);
    system_tests::click(&mut tech, x, y).await;
    tech.send(&Message::TextInput {
        text: "Done".into(),
    })
    .await
    .unwrap();
    let (x, y) = centre(streamer_agent::window::CHAT_SEND);
    system_tests::click(&mut tech, x, y).await;
    let started = Instant::now();
    loop {
        if let Message::ChatText { text } = recv(&mut tech).await {
            assert_eq!(text, "Done", "the end user's answer");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the answer written in the window did not arrive"
        );
    }
    // The technician ends this session: the streamer stays open with a new code, and a second
    // session follows on it, as a second call for help would.
    tech.send(&Message::LeaveSession).await.unwrap();
    let second = next_code(&mut lines).await;
    assert_ne!(second, code, "a code is good for one session");
    let mut tech = relay.technician("owner@acme.example", PASSWORD).await;
    tech.send(&Message::SessionRequest {
        target: SessionTarget::Code { code: second },
        view: ViewRequest::default(),
    })
    .await
    .unwrap();
    let (second_id, ..) = session_started(&mut tech).await;
    assert_ne!(second_id, session_id);
    let mut view = View::default();
    view.until_text(
        &mut tech,
        &plain("This session is recorded by the technician's team"),
        work.path(),
    )
    .await;
    // ... and its End session button ends it and the program: the technician clicks it here, as
    // the end user would.
    let (bx, by, bw, bh) = streamer_agent::window::END_BUTTON;
    let (x, y) = (
        (x0 + 4 + bx + bw / 2) as u16,
        (y0 + 26 + by + bh / 2) as u16,
    );
    system_tests::click(&mut tech, x, y).await;
    let started = Instant::now();
    loop {
        match recv(&mut tech).await {
            Message::SessionEnded { reason, .. } => {
                assert_eq!(reason, EndReason::EndUserEnded, "the end user ended it");
                break;
            }
            _ => assert!(
                started.elapsed() < Duration::from_secs(30),
                "the End session button did not end the session"
            ),
        }
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = streamer.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the streamer did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "the attended streamer exits cleanly: {status}"
    );

    // The recording holds what the technician saw: it plays, and its picture reads the same.
    let started = Instant::now();
    let files = loop {
        let files = relay.store.recording_files(&session_id).await.unwrap();
        if !files.is_empty() && files.iter().all(|f| f.state == "complete") {
            break files;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "recording files not complete: {files:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let file = data.path().join("recordings").join(&files[0].object_key);
    let frame = work.path().join("recorded.png");
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-sseof", "-1", "-i"])
        .arg(&file)
        .args(["-frames:v", "1"])
        .arg(&frame)
        .output()
        .expect("ffmpeg runs (Debian's ffmpeg)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "the recording plays: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recorded_text = ocr(&frame);
    assert!(
        plain(&recorded_text).contains(&plain("PROBE 4217ok5")),
        "the recording's last picture shows the typed text (OCR read {recorded_text:?})"
    );
    relay.stop().await;
}

/// Installs `msi` silently with `properties`, as an administrator deploying it would.
fn install(desktop: &WineDesktop, msi: &Path, properties: &[String], log: &Path) {
    let mut args = vec!["/i".to_owned(), windows_path(msi)];
    args.extend(properties.iter().cloned());
    args.extend(["/qn".into(), "/l*v".into(), windows_path(log)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _) = desktop.run("msiexec", &args);
    assert!(
        status.success(),
        "msiexec /i: {status}; log: {}",
        String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default())
            .lines()
            .filter(|l| l.contains("rror") || l.contains("eturn value 3"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn uninstall(desktop: &WineDesktop, msi: &Path) {
    let (status, _) = desktop.run("msiexec", &["/x", &windows_path(msi), "/qn"]);
    assert!(status.success(), "msiexec /x: {status}");
}

const SERVICE: &str = "RecordedSupportStreamer";
const SETTINGS: &str = r"HKLM\SOFTWARE\RecordedSupport\Streamer";

fn service_state(desktop: &WineDesktop) -> Option<String> {
    let (status, out) = desktop.run("sc", &["query", SERVICE]);
    status.success().then(|| {
        out.lines()
            .find(|l| l.contains("STATE"))
            .unwrap_or_default()
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned()
    })
}

/// Waits until `what` holds, for at most `secs`.
async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(secs), "{what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Nothing of the product is left after an uninstall: no service, no files, no settings.
fn assert_nothing_left(desktop: &WineDesktop) {
    assert_eq!(service_state(desktop), None, "the service is removed");
    let c = desktop.drive_c();
    for dir in [
        "Program Files/Recorded Support Streamer",
        "ProgramData/RecordedSupport",
    ] {
        assert!(
            !c.join(dir).exists(),
            "{dir} is removed; the service's log:\n{}",
            std::fs::read_to_string(c.join("ProgramData/RecordedSupport/Streamer/streamer.log"))
                .unwrap_or_default()
        );
    }
    let (status, out) = desktop.run("reg", &["query", SETTINGS]);
    assert!(!status.success(), "the settings key is removed: {out}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the Windows build and Wine: cargo xtask windows runs it"]
async fn the_msi_runs_the_service_which_retries_a_bad_code_registers_serves_through_its_helper_upgrades_and_uninstalls(
) {
    let _one = ONE_AT_A_TIME.lock().await;
    let msi = built_exe("STREAMER_WINDOWS_MSI");
    let upgrade_msi = built_exe("STREAMER_WINDOWS_UPGRADE_MSI");
    let mut desktop = WineDesktop::start(1024, 768);
    // A program of the signed-in user's, running throughout: Wine ends its "system", stopping
    // services, once the last ordinary program exits, which a real Windows computer does not.
    let work = tempfile::tempdir().unwrap();
    desktop.start_probe(&work.path().join("probe-text.txt"));
    let data = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(data.path(), 0).await;
    let team = relay.acme(PASSWORD, false, false).await;
    std::fs::copy(relay.ca(), desktop.drive_c().join("relay-ca.pem")).unwrap();
    let settings = |code: &str| {
        vec![
            format!("RELAY=127.0.0.1:{}", relay.port()),
            r"CA_FILE=C:\relay-ca.pem".to_owned(),
            format!("DEPLOYMENT_CODE={code}"),
        ]
    };
    let log_file = desktop
        .drive_c()
        .join("ProgramData/RecordedSupport/Streamer/streamer.log");
    let service_log = || std::fs::read_to_string(&log_file).unwrap_or_default();

    // A wrong code: the service runs on, retrying, with the relay's sentence in its log.
    install(
        &desktop,
        &msi,
        &settings("not-a-code"),
        &data.path().join("install-1.log"),
    );
    assert_eq!(service_state(&desktop).as_deref(), Some("RUNNING"));
    eventually(60, "the log names the refusal", || {
        service_log().contains("deployment code: the credential is not valid")
    })
    .await;
    eventually(60, "the service retries", || {
        service_log().matches("not connected to the relay").count() >= 2
    })
    .await;
    assert_eq!(service_state(&desktop).as_deref(), Some("RUNNING"));
    assert!(relay.store.devices(&team.team.id).await.unwrap().is_empty());
    uninstall(&desktop, &msi);
    assert_nothing_left(&desktop);

    // The right code: the device registers, is online, and the code is forgotten.
    let code = relay
        .store
        .create_deployment_code(&team.team.id, 3_600_000)
        .await
        .unwrap();
    install(
        &desktop,
        &msi,
        &settings(&code),
        &data.path().join("install-2.log"),
    );
    assert_eq!(service_state(&desktop).as_deref(), Some("RUNNING"));
    let mut tech = relay.technician("owner@acme.example", PASSWORD).await;
    let started = Instant::now();
    let device = loop {
        tech.send(&Message::ListDevices).await.unwrap();
        if let Message::DeviceStatusList(list) = recv(&mut tech).await {
            if let Some(d) = list.into_iter().find(|d| d.online) {
                break d;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the service's device never came online; its log:\n{}",
            service_log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        device.streamer_version.as_deref(),
        Some(
            streamer_agent::product_version()
                .unwrap()
                .to_string()
                .as_str()
        )
    );
    assert!(desktop
        .drive_c()
        .join("ProgramData/RecordedSupport/Streamer/device.credential")
        .exists());
    // The credential was given its SYSTEM-only DACL (Wine stores it but does not enforce reads,
    // so only that the service could set it is checked here).
    assert!(
        !service_log().contains("credential file"),
        "protecting the credential failed:\n{}",
        service_log()
    );
    // The service trusts the CA the MSI copied into its data folder, not the path it was given
    // (which an ordinary user may be able to write): the path now holds something else, and the
    // restarted service connects as before.
    let trusted = desktop
        .drive_c()
        .join("ProgramData/RecordedSupport/Streamer/relay-ca.pem");
    assert_eq!(
        std::fs::read(&trusted).unwrap(),
        std::fs::read(relay.ca()).unwrap(),
        "the MSI copied the relay's CA into the data folder"
    );
    std::fs::write(desktop.drive_c().join("relay-ca.pem"), "not a CA").unwrap();
    // "connected to the relay", not "not connected to the relay" (a retry).
    let connected = || {
        service_log()
            .lines()
            .filter(|l| l.contains("connected to the relay") && !l.contains("not connected"))
            .count()
    };
    let connections = connected();
    let (status, out) = desktop.run("sc", &["stop", SERVICE]);
    assert!(status.success(), "{out}");
    eventually(30, "the service stops", || {
        service_state(&desktop).as_deref() == Some("STOPPED")
    })
    .await;
    let (status, out) = desktop.run("sc", &["start", SERVICE]);
    assert!(status.success(), "{out}");
    eventually(
        60,
        "the restarted service connects with the CA it copied",
        || connected() > connections,
    )
    .await;
    std::fs::copy(relay.ca(), desktop.drive_c().join("relay-ca.pem")).unwrap();
    let (_, values) = desktop.run("reg", &["query", SETTINGS]);
    assert!(values.contains("Relay"), "{values}");
    eventually(10, "the used deployment code is deleted", || {
        !desktop
            .run("reg", &["query", SETTINGS])
            .1
            .contains("DeploymentCode")
    })
    .await;

    // An unattended session through the service: its helper, started in the console session,
    // captures the desktop and types into the probe; the service forwards over the pipe.
    tech.send(&Message::SessionRequest {
        target: SessionTarget::Device {
            device_id: device.id.clone(),
        },
        view: ViewRequest::default(),
    })
    .await
    .unwrap();
    let (_, _, _, access) = session_started(&mut tech).await;
    assert_eq!(access, AccessType::Unattended);
    let mut view = View::default();
    let picture = view
        .until_text(&mut tech, &plain("PROBE 4217"), work.path())
        .await;
    assert_eq!(picture, (1024, 768));
    for code in ["KeyU", "Digit7"] {
        tech.send(&key(code, true)).await.unwrap();
        tech.send(&key(code, false)).await.unwrap();
    }
    eventually(20, "the helper's keys reached the probe", || {
        std::fs::read_to_string(work.path().join("probe-text.txt")).unwrap_or_default()
            == "PROBE 4217u7"
    })
    .await;
    // Ctrl+Alt+Del as the Keys menu sends it: the service recognises it and would ask Windows for
    // the secure attention sequence, with the policy that allows it set for the call and removed
    // after, since this machine had none. Wine's SendSAS is a stub that aborts its caller, so the
    // service says so and the keys go to the desktop instead. Then an administrator's policy that
    // forbids it (0) is respected and left as it is.
    const POLICY: &str = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System";
    let policy = || desktop.run("reg", &["query", POLICY]).1;
    for (set, expected) in [
        (None, "Wine does not implement SendSAS"),
        (
            Some("0"),
            "this computer's policy SoftwareSASGeneration is 0, which does not let services",
        ),
    ] {
        if let Some(value) = set {
            let (status, out) = desktop.run(
                "reg",
                &[
                    "add",
                    POLICY,
                    "/v",
                    "SoftwareSASGeneration",
                    "/t",
                    "REG_DWORD",
                    "/d",
                    value,
                    "/f",
                ],
            );
            assert!(status.success(), "{out}");
        }
        send_ctrl_alt_del(&mut tech).await;
        let started = Instant::now();
        while !service_log().contains(expected) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the service recognises Ctrl+Alt+Del ({expected}); its log:\n{}",
                service_log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        match set {
            None => assert!(
                !policy().contains("SoftwareSASGeneration"),
                "the policy set for the call is removed: {}",
                policy()
            ),
            Some(_) => assert!(
                policy().contains("0x0"),
                "the administrator's policy stays: {}",
                policy()
            ),
        }
    }
    desktop.run(
        "reg",
        &["delete", POLICY, "/v", "SoftwareSASGeneration", "/f"],
    );
    let helper_log = || {
        std::fs::read_to_string(
            desktop
                .drive_c()
                .join("ProgramData/RecordedSupport/Streamer/helper.log"),
        )
        .unwrap_or_default()
    };
    assert!(
        service_log().contains("capture helper started"),
        "{}",
        service_log()
    );
    tech.send(&Message::LeaveSession).await.unwrap();
    loop {
        if let Message::SessionEnded { reason, .. } = recv(&mut tech).await {
            assert_eq!(reason, EndReason::TechnicianLeft);
            break;
        }
    }
    let started = Instant::now();
    while !helper_log().contains("the helper's session ended") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the helper ends with the session; its log:\n{}\nthe service's:\n{}",
            helper_log(),
            service_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // An upgrade in place (a later version, no properties given): one product, running, with the
    // installed settings kept. Not checked here: that the credential survives. On Windows the old
    // version's removal runs with UPGRADINGPRODUCTCODE set and keeps the service's data; Wine's
    // RemoveExistingProducts passes only REMOVE=ALL, so under Wine the data goes and the device
    // would need a new deployment code.
    install(
        &desktop,
        &upgrade_msi,
        &[],
        &data.path().join("upgrade.log"),
    );
    assert_eq!(service_state(&desktop).as_deref(), Some("RUNNING"));
    let (_, values) = desktop.run("reg", &["query", SETTINGS]);
    assert!(
        values.contains(&format!("127.0.0.1:{}", relay.port())) && values.contains("relay-ca.pem"),
        "the upgrade kept the relay and CA settings: {values}"
    );
    eventually(30, "the upgraded service runs on the kept settings", || {
        let log = service_log();
        log.contains("service started")
            && !log.contains("no relay is set")
            && !log.contains("no CA file")
    })
    .await;
    let (_, products) = desktop.run(
        "reg",
        &[
            "query",
            r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
            "/s",
        ],
    );
    assert_eq!(
        products.matches("Recorded Support Streamer").count(),
        1,
        "one product installed after the upgrade: {products}"
    );

    // Uninstalling stops the service (the device goes offline) and leaves nothing.
    uninstall(&desktop, &upgrade_msi);
    assert_nothing_left(&desktop);
    let started = Instant::now();
    loop {
        tech.send(&Message::ListDevices).await.unwrap();
        if let Message::DeviceStatusList(list) = recv(&mut tech).await {
            if list.iter().all(|d| !d.online) {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the device stays online"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    relay.stop().await;
}
