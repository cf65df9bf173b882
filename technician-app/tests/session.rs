//! The technician library and command-line client against a relay in-process and a streamer peer that
//! sends real H.264: events in order, refusal codes, the CLI's output, PNG and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::*;
use relay::{Config, ManualClock, Relay};
use relay_client::{Connection, Connector};
use streamer_agent::encode::H264Encoder;
use streamer_agent::pattern::{PatternKind, TestPattern};
use technician::{Command, Event, Technician};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery staple";

struct World {
    _dir: tempfile::TempDir,
    addr: String,
    ca: std::path::PathBuf,
    store: relay::store::Store,
    team_id: String,
    shutdown: CancellationToken,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let relay = Relay::prepare(config, Arc::new(ManualClock::new(1_800_000_000_000)))
        .await
        .unwrap();
    let store = relay.store().clone();
    let team = store
        .create_team("acme", "ada@acme.example", "Ada", PASSWORD)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("localhost:{}", listener.local_addr().unwrap().port());
    let shutdown = CancellationToken::new();
    tokio::spawn(relay.serve(listener, shutdown.clone()));
    World {
        ca: dir.path().join("tls/dev-ca.pem"),
        _dir: dir,
        addr,
        store,
        team_id: team.team.id,
        shutdown,
    }
}

/// A streamer peer: registers, accepts the first offer, then sends a configuration and frames of
/// generated content encoded with the agent's encoder, until the session ends.
async fn streamer(
    w: &World,
    version: ProductVersion,
) -> (String, tokio::task::JoinHandle<Vec<Message>>) {
    streamer_pausable(w, version, Arc::new(AtomicBool::new(false))).await
}

/// [`streamer`], sending no frame while `paused` holds (a streamer that broke its promise of a
/// frame a second, or a link that lost its video).
async fn streamer_pausable(
    w: &World,
    version: ProductVersion,
    paused: Arc<AtomicBool>,
) -> (String, tokio::task::JoinHandle<Vec<Message>>) {
    let code = w
        .store
        .create_deployment_code(&w.team_id, 3_600_000)
        .await
        .unwrap();
    let mut conn: Connection = Connector::trusting_ca_file(&w.ca)
        .unwrap()
        .connect(&w.addr)
        .await
        .unwrap();
    let est = conn
        .handshake(
            Role::Streamer,
            version,
            Credential::DeploymentCode {
                code,
                device_name: "Front desk".into(),
            },
        )
        .await
        .unwrap();
    let device_id = est.registered.unwrap().0;
    // The peer returns everything it was sent, the offer first.
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        let offer = conn.recv().await;
        let Ok(Message::SessionOffer { session_id, .. }) = &offer else {
            return seen;
        };
        let session_id = session_id.clone();
        seen.push(offer.unwrap());
        conn.send(&Message::SessionAccept { session_id })
            .await
            .unwrap();
        let config = VideoConfig {
            codec: VideoCodec::H264,
            width: 320,
            height: 240,
            frame_rate: 20,
            monitor_id: 0,
            orientation: Orientation::Landscape,
        };
        conn.send(&Message::MonitorList(vec![MonitorInfo {
            id: 0,
            key: "DUMMY0".into(),
            name: "Main".into(),
            x: 0,
            y: 0,
            width: 320,
            height: 240,
            primary: true,
        }]))
        .await
        .unwrap();
        conn.send(&Message::VideoConfig(config)).await.unwrap();
        let mut encoder = H264Encoder::new(320, 240, 20).unwrap();
        let mut pattern = TestPattern::new(320, 240, PatternKind::Moving);
        for i in 0u64.. {
            if !paused.load(Ordering::Relaxed) {
                let f = encoder.encode_rgb(&pattern.next_rgb(), i == 0).unwrap();
                let frame = Message::VideoFrame(VideoFrame {
                    keyframe: f.keyframe,
                    timestamp_us: i * 50_000,
                    payload: f.data.into(),
                });
                if conn.send(&frame).await.is_err() {
                    return seen;
                }
            }
            match tokio::time::timeout(Duration::from_millis(50), conn.recv()).await {
                Ok(Ok(m @ Message::SessionEnded { .. })) => {
                    seen.push(m);
                    return seen;
                }
                Ok(Ok(m)) => seen.push(m),
                Ok(Err(_)) => return seen,
                Err(_) => {}
            }
        }
        seen
    });
    (device_id, task)
}

async fn next(s: &mut technician::Session) -> Event {
    tokio::time::timeout(Duration::from_secs(10), s.events.recv())
        .await
        .expect("an event")
        .expect("events")
}

#[tokio::test]
async fn events_arrive_in_order_and_the_connection_is_reusable() {
    let w = world().await;
    let (device_id, streamer_side) = streamer(&w, ProductVersion::new(3, 5, 8, 0)).await;
    let tech = Technician::sign_in(&w.addr, &w.ca, "ada@acme.example", PASSWORD)
        .await
        .unwrap();
    assert_eq!(tech.name, "Ada");
    let mut tech = tech;
    let devices = tech.devices().await.unwrap();
    assert_eq!((devices.len(), devices[0].online), (1, true));

    let mut s = tech
        .connect(SessionTarget::Device {
            device_id: device_id.clone(),
        })
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    let Event::Started {
        device_name,
        recorded,
        ..
    } = next(&mut s).await
    else {
        panic!("Started first")
    };
    assert_eq!((device_name.as_str(), recorded), ("Front desk", false));
    assert_eq!(next(&mut s).await, Event::Recording(false));
    // The session's tools, right after the recording state: a 1.3 streamer may use all three.
    assert_eq!(
        next(&mut s).await,
        Event::Tools(vec![
            ToolGrant {
                tool: Tool::Clipboard,
                state: ToolState::Allowed
            },
            ToolGrant {
                tool: Tool::FileTransfer,
                state: ToolState::Allowed
            },
            ToolGrant {
                tool: Tool::Chat,
                state: ToolState::Allowed
            },
        ])
    );
    assert!(matches!(next(&mut s).await, Event::Monitors(m) if m.len() == 1));
    assert!(matches!(next(&mut s).await, Event::VideoConfig(c) if c.width == 320));
    let Event::Video(first) = next(&mut s).await else {
        panic!("video after its configuration")
    };
    assert!(first.keyframe);
    // Video for a second and a half: the session reports what it received (once a second).
    let watching = std::time::Instant::now();
    let mut newest = first.timestamp_us;
    while watching.elapsed() < Duration::from_millis(1500) {
        if let Event::Video(f) = next(&mut s).await {
            newest = f.timestamp_us;
        }
    }
    s.commands
        .send(Command::Key(KeyInput {
            code: "KeyA".into(),
            down: true,
            modifiers: Modifiers::default(),
        }))
        .await
        .unwrap();
    s.commands.send(Command::Leave).await.unwrap();
    loop {
        if let Event::Ended { reason, .. } = next(&mut s).await {
            assert_eq!(reason, EndReason::TechnicianLeft);
            break;
        }
    }
    let mut tech = s.task.await.unwrap().unwrap();
    // The same connection serves the next request.
    assert_eq!(tech.devices().await.unwrap().len(), 1);
    let reports: Vec<ReceiverReport> = streamer_side
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            Message::ReceiverReport(r) => Some(r),
            _ => None,
        })
        .collect();
    assert!(!reports.is_empty(), "no report reached the streamer");
    let last = reports.last().unwrap();
    assert!(
        last.frames > 0 && last.newest_timestamp_us > 0 && last.newest_timestamp_us <= newest,
        "{reports:?} (newest frame seen: {newest} us)"
    );
    // A loopback link queues nothing to speak of.
    assert!(last.queue_delay_ms < 500, "{reports:?}");
    w.shutdown.cancel();
}

#[tokio::test]
async fn refusals_carry_their_codes() {
    let w = world().await;
    let wrong = Technician::sign_in(&w.addr, &w.ca, "ada@acme.example", "nope")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some(ErrorCode::AuthenticationFailed));

    let tech = Technician::sign_in(&w.addr, &w.ca, "ada@acme.example", PASSWORD)
        .await
        .unwrap();
    let (tech, err) = tech
        .connect(SessionTarget::Device {
            device_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::DeviceNotFound));

    let mut s = w.store.team_settings(&w.team_id).await.unwrap().unwrap();
    s.record_unattended = true;
    w.store.set_team_settings(&w.team_id, &s).await.unwrap();
    let (old, _task) = streamer(&w, ProductVersion::new(3, 5, 7, 9)).await;
    let (_, err) = tech
        .connect(SessionTarget::Device { device_id: old })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::StreamerVersionUnsupported));
    assert_eq!(
        err.to_string(),
        "This computer's streamer is version 3.5.7.9. Your team records every session, which needs streamer version \
         3.5.8.0 or later. Update the streamer on that computer, then connect again."
    );
    w.shutdown.cancel();
}

fn cli(w: &World) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_technician-cli"));
    c.args(["--relay", &w.addr, "--email", "ada@acme.example"])
        .arg("--ca")
        .arg(&w.ca);
    c
}

// Multi-threaded: the client runs as a child process whose output this test waits for, while the
// relay in-process must keep serving it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_client_watches_saves_a_png_and_exits_2_on_refusal() {
    let w = world().await;
    let (device_id, _streamer) = streamer(&w, ProductVersion::new(3, 5, 8, 0)).await;
    let png = w._dir.path().join("latest.png");
    let out = cli(&w)
        .args([
            "--password",
            PASSWORD,
            "--device",
            &device_id,
            "--watch",
            "2",
            "--png",
        ])
        .arg(&png)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Connected to Front desk (streamer 3.5.8.0)."),
        "{stdout}"
    );
    assert!(stdout.contains("Video: 320x240 at 20 fps"), "{stdout}");
    assert!(
        stdout.contains("Session ended (TECHNICIAN_LEFT)"),
        "{stdout}"
    );
    let image = image::open(&png).unwrap();
    assert_eq!((image.width(), image.height()), (320, 240));

    let out = cli(&w)
        .args(["--password", "wrong", "--device", &device_id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTHENTICATION_FAILED"));

    let out = cli(&w)
        .args(["--password", PASSWORD, "--code", "123 456 789"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SESSION_CODE_INVALID"));
    w.shutdown.cancel();
}

/// The command-line client sends its starting frame rate with the request, and takes typed
/// commands on standard input during the session: `rate N` and `monitor N` reach the streamer, a
/// wrong line is answered, `clipboard TEXT` sends the rest of the line, `leave` ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_client_starts_at_its_rate_and_takes_typed_commands() {
    use std::io::Write;
    let w = world().await;
    let (device_id, streamer) = streamer(&w, ProductVersion::new(3, 5, 8, 0)).await;
    let mut child = cli(&w)
        .args([
            "--password",
            PASSWORD,
            "--device",
            &device_id,
            "--watch",
            "30",
            "--frame-rate",
            "10",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut typed = child.stdin.take().unwrap();
    let too_long = format!("chat {}", "x".repeat(technician::CHAT_MAX + 1));
    let output = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        for line in [
            "rate 5",
            "monitor 1",
            "rate 500",
            "hello",
            "",
            "clipboard  two spaces, kept",
            "chat   Is the printer on?  ",
            "chat    ",
            too_long.as_str(),
            "leave",
        ] {
            writeln!(typed, "{line}").unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
        child.wait_with_output().unwrap()
    });
    let out = tokio::task::spawn_blocking(move || output.join().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for answer in [
        "> rate 5",
        "> monitor 1",
        "> rate 500: a frame rate is a number from 1 to 60",
        "> hello: unknown command",
        "Tools: clipboard allowed",
        "> clipboard  two spaces, kept",
        "chat allowed",
        "Refused chat (MESSAGE_TOO_LARGE): The chat line has 2049 bytes; at most 2048 are sent.",
        "> leave",
        "Session ended (TECHNICIAN_LEFT)",
    ] {
        assert!(
            stdout.contains(answer),
            "{answer:?} missing from:\n{stdout}"
        );
    }
    let seen = tokio::time::timeout(Duration::from_secs(10), streamer)
        .await
        .unwrap()
        .unwrap();
    let Message::SessionOffer { view, .. } = &seen[0] else {
        panic!("{seen:?}")
    };
    assert_eq!(
        *view,
        ViewRequest {
            frame_rate: Some(10),
            monitor_id: None
        },
        "the starting rate travels with the request"
    );
    let controls: Vec<&Message> = seen
        .iter()
        .filter(|m| {
            matches!(
                m,
                Message::SetFrameRate { .. } | Message::SwitchMonitor { .. }
            )
        })
        .collect();
    assert_eq!(
        controls,
        [
            &Message::SetFrameRate { frame_rate: 5 },
            &Message::SwitchMonitor { monitor_id: 1 }
        ],
        "only the typed changes, none at the start"
    );
    assert!(
        seen.contains(&Message::ClipboardText {
            text: " two spaces, kept".into()
        }),
        "the rest of the line after `clipboard ` goes onto the remote clipboard: {seen:?}"
    );
    let chats: Vec<&Message> = seen
        .iter()
        .filter(|m| matches!(m, Message::ChatText { .. }))
        .collect();
    assert_eq!(
        chats,
        [&Message::ChatText {
            text: "Is the printer on?".into()
        }],
        "a chat line is sent trimmed; an empty or too long one is not sent"
    );
    w.shutdown.cancel();
}

/// A TCP proxy in front of the relay that can freeze: while `frozen` holds it forwards nothing
/// either way and keeps the connections open, as a relay that hangs or a link that went dark.
async fn freezing_proxy(relay: &str, frozen: Arc<AtomicBool>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("localhost:{}", listener.local_addr().unwrap().port());
    let relay = relay.to_owned();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect(&relay).await else {
                continue;
            };
            let ((cr, cw), (ur, uw)) = (client.into_split(), upstream.into_split());
            for (mut from, mut to) in [(cr, uw), (ur, cw)] {
                let frozen = frozen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        while frozen.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        let n = match from.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        // What was read while freezing is held until the thaw.
                        while frozen.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    addr
}

/// Waits for an event for which `want` holds, up to `within`; gives it and the time it took.
async fn wait_for(
    s: &mut technician::Session,
    within: Duration,
    want: impl Fn(&Event) -> bool,
) -> (Event, Duration) {
    let started = Instant::now();
    loop {
        let left = within.saturating_sub(started.elapsed());
        let e = tokio::time::timeout(left, s.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no such event within {within:?}"))
            .expect("events");
        if want(&e) {
            return (e, started.elapsed());
        }
    }
}

/// A streamer that stops sending: the session says the picture stopped after 2 s and that it is
/// back when frames come, and the connection is not given up (the relay answers the session's
/// pings). Then the link stalls for 12 s (nothing crosses either way): the session goes on, and
/// its picture comes back when the link does. Then the link freezes for good: the session says
/// so after 30 s (`LINK_SILENCE`), as its last event, and its task gives the error back.
#[tokio::test]
async fn a_stopped_picture_is_told_and_a_dead_link_is_lost_within_seconds() {
    let w = world().await;
    let paused = Arc::new(AtomicBool::new(false));
    let (device_id, _streamer) =
        streamer_pausable(&w, ProductVersion::new(3, 5, 8, 0), paused.clone()).await;
    let frozen = Arc::new(AtomicBool::new(false));
    let proxy = freezing_proxy(&w.addr.replace("localhost", "127.0.0.1"), frozen.clone()).await;
    let tech = Technician::sign_in(&proxy, &w.ca, "ada@acme.example", PASSWORD)
        .await
        .unwrap();
    let mut s = tech
        .connect(SessionTarget::Device { device_id })
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    wait_for(&mut s, Duration::from_secs(10), |e| {
        matches!(e, Event::Video(_))
    })
    .await;

    paused.store(true, Ordering::Relaxed);
    let (_, after) = wait_for(&mut s, Duration::from_secs(5), |e| {
        matches!(e, Event::Picture(false))
    })
    .await;
    assert!(
        after >= Duration::from_millis(1800),
        "stopped after {after:?}"
    );
    // Six seconds without video, longer than the link's silence limit: the pongs keep it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    paused.store(false, Ordering::Relaxed);
    let (back, _) = wait_for(&mut s, Duration::from_secs(5), |e| {
        !matches!(e, Event::Video(_) | Event::Picture(false))
    })
    .await;
    assert_eq!(back, Event::Picture(true));

    // A stall of 12 s: nothing is lost, the picture says it stopped, then comes back.
    frozen.store(true, Ordering::Relaxed);
    let stalled = wait_for(&mut s, Duration::from_secs(5), |e| {
        matches!(e, Event::Picture(false) | Event::Lost { .. })
    })
    .await
    .0;
    assert_eq!(stalled, Event::Picture(false));
    tokio::time::sleep(Duration::from_secs(10)).await;
    frozen.store(false, Ordering::Relaxed);
    let (back, _) = wait_for(&mut s, Duration::from_secs(30), |e| {
        matches!(e, Event::Picture(true) | Event::Lost { .. })
    })
    .await;
    assert_eq!(back, Event::Picture(true), "the session outlived the stall");

    frozen.store(true, Ordering::Relaxed);
    let (lost, after) = wait_for(&mut s, Duration::from_secs(40), |e| {
        matches!(e, Event::Lost { .. })
    })
    .await;
    assert!(
        after >= Duration::from_secs(29) && after <= Duration::from_secs(34),
        "lost after {after:?}: {lost:?}"
    );
    let Event::Lost { code, message } = lost else {
        unreachable!()
    };
    assert_eq!(code, None);
    assert!(
        message.contains("has not answered for 30 seconds"),
        "{message}"
    );
    // The last event: the channel closes, and the task gives the error.
    assert!(s.events.recv().await.is_none());
    assert!(s.task.await.unwrap().is_err());
    w.shutdown.cancel();
}

/// An account connects again with its token, without the password, as often as needed (a
/// reconnection), until it signs out: then the token is refused with a code, which is how the app
/// knows to go back to sign-in rather than try again.
#[tokio::test]
async fn an_account_reconnects_with_its_token_until_it_signs_out() {
    let w = world().await;
    let account = technician::Account::sign_in(
        Connector::trusting_ca_file(&w.ca).unwrap(),
        &w.addr,
        "ada@acme.example",
        PASSWORD,
    )
    .await
    .unwrap();
    assert_eq!(account.relay(), w.addr);
    let mut first = account.open().await.unwrap();
    let mut again = account.open().await.unwrap();
    assert_eq!(
        first.devices().await.unwrap(),
        again.devices().await.unwrap()
    );
    account.clone().sign_out().await.unwrap();
    let refused = account.open().await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::CredentialRevoked),
        "{refused}"
    );
    w.shutdown.cancel();
}

/// Security review finding 5: a file the remote computer offers unasked (an end user is anyone
/// holding the attended key) is not written until the technician takes it: declined, its sender
/// is told and nothing lands; taken, it starts; one over the cap is refused without asking.
#[tokio::test]
async fn a_file_nobody_asked_for_waits_for_the_technician() {
    let w = world().await;
    let code = w
        .store
        .create_deployment_code(&w.team_id, 3_600_000)
        .await
        .unwrap();
    let mut conn: Connection = Connector::trusting_ca_file(&w.ca)
        .unwrap()
        .connect(&w.addr)
        .await
        .unwrap();
    let est = conn
        .handshake(
            Role::Streamer,
            ProductVersion::new(3, 5, 8, 0),
            Credential::DeploymentCode {
                code,
                device_name: "Front desk".into(),
            },
        )
        .await
        .unwrap();
    let device_id = est.registered.unwrap().0;
    let offer = |transfer_id, size| Message::FileOffer {
        transfer_id,
        size,
        sha256: [9; 32],
        name: "invoice.pdf.desktop".into(),
    };
    let peer = tokio::spawn(async move {
        let Ok(Message::SessionOffer { session_id, .. }) = conn.recv().await else {
            panic!("no offer")
        };
        conn.send(&Message::SessionAccept { session_id })
            .await
            .unwrap();
        for m in [
            offer(0x8000_0001, 33),
            offer(0x8000_0002, 10),
            offer(0x8000_0003, technician::UNASKED_FILE_MAX + 1),
        ] {
            conn.send(&m).await.unwrap();
        }
        let mut seen = Vec::new();
        while let Ok(m) = conn.recv().await {
            if matches!(m, Message::SessionEnded { .. }) {
                break;
            }
            if m.kind().is_file_transfer() {
                seen.push(m);
            }
        }
        seen
    });
    let folder = tempfile::tempdir().unwrap();
    let mut tech = Technician::sign_in(&w.addr, &w.ca, "ada@acme.example", PASSWORD)
        .await
        .unwrap();
    tech.set_files_folder(folder.path());
    let mut s = tech
        .connect(SessionTarget::Device { device_id })
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    let mut offered = Vec::new();
    let mut refused = Vec::new();
    while offered.len() < 2 || refused.is_empty() {
        match next(&mut s).await {
            Event::Transfer(technician::Transfer::Offered { id, size, .. }) => {
                offered.push((id, size))
            }
            Event::Transfer(technician::Transfer::Stopped { id, outcome, .. }) => {
                refused.push((id, outcome))
            }
            _ => {}
        }
    }
    assert_eq!(offered, [(0x8000_0001, 33), (0x8000_0002, 10)]);
    assert_eq!(refused, [(0x8000_0003, FileOutcome::TooLarge)]);
    assert_eq!(
        std::fs::read_dir(folder.path()).unwrap().count(),
        0,
        "nothing written unasked"
    );
    s.commands
        .send(Command::DeclineFile(0x8000_0001))
        .await
        .unwrap();
    s.commands
        .send(Command::TakeFile {
            transfer_id: 0x8000_0002,
            into: None,
        })
        .await
        .unwrap();
    // The take starts the file (its accept goes out once the partial file is made).
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && std::fs::read_dir(folder.path()).unwrap().count() == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.commands.send(Command::Leave).await.unwrap();
    let seen = peer.await.unwrap();
    assert!(
        seen.iter().any(|m| matches!(
            m,
            Message::FileEnd {
                transfer_id: 0x8000_0001,
                outcome: FileOutcome::Cancelled,
                ..
            }
        )),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|m| matches!(
            m,
            Message::FileAccept {
                transfer_id: 0x8000_0002,
                offset: 0
            }
        )),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|m| matches!(
            m,
            Message::FileEnd {
                transfer_id: 0x8000_0003,
                outcome: FileOutcome::TooLarge,
                ..
            }
        )),
        "{seen:?}"
    );
    w.shutdown.cancel();
}
