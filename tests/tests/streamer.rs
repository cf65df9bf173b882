//! The streamer agent on a virtual X display, through a real relay, seen by a test technician that
//! decodes what arrives: real content at the requested rate, monitor and frame-rate switches, a
//! resolution and orientation change, injected input, and reconnection after the relay restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openh264::formats::YUVSource;
use protocol::*;
use relay_client::{Connection, Connector};
use streamer_agent::agent::{self, AgentConfig, Mode, Notice, X11Platform};
use system_tests::{TestRelay, XDisplay};
use tokio_util::sync::CancellationToken;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::ConnectionExt as _;

const PASSWORD: &str = "correct horse battery staple";

struct Setup {
    relay: TestRelay,
    _data: tempfile::TempDir,
    team_id: String,
    tech: Connection,
    streamer_stop: CancellationToken,
    streamer: tokio::task::JoinHandle<anyhow::Result<()>>,
    notices: tokio::sync::mpsc::UnboundedReceiver<Notice>,
    device_id: String,
}

async fn setup(display: &XDisplay, record: bool) -> Setup {
    let data = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(data.path(), 0).await;
    let team = relay.acme(PASSWORD, false, record).await;
    let code = relay
        .store
        .create_deployment_code(&team.team.id, 3_600_000)
        .await
        .unwrap();
    let config = AgentConfig {
        relay: relay.addr.clone(),
        ca_file: relay.ca(),
        mode: Mode::Unattended {
            credential_file: data.path().join("device.credential"),
            deployment_code: Some(code),
        },
        device_name: "Test PC".into(),
        display: Some(display.name.clone()),
        frame_rate: 10,
        announced_version: None,
        downloads: None,
        chat_input: None,
    };
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let streamer_stop = CancellationToken::new();
    let platform = Arc::new(X11Platform {
        display: Some(display.name.clone()),
    });
    let streamer = tokio::spawn(agent::run(config, platform, tx, streamer_stop.clone()));
    assert_eq!(next_notice(&mut notices).await, Notice::Connected);
    let device_id = relay.store.devices(&team.team.id).await.unwrap()[0]
        .id
        .clone();
    let token = relay
        .store
        .sign_in("owner@acme.example", PASSWORD, 3_600_000)
        .await
        .unwrap()
        .unwrap()
        .token;
    let mut tech = Connector::trusting_ca_file(&relay.ca())
        .unwrap()
        .connect(&relay.addr)
        .await
        .unwrap();
    tech.handshake(
        Role::Technician,
        ProductVersion::new(3, 5, 8, 0),
        Credential::TechnicianToken { token },
    )
    .await
    .unwrap();
    Setup {
        relay,
        _data: data,
        team_id: team.team.id,
        tech,
        streamer_stop,
        streamer,
        notices,
        device_id,
    }
}

async fn next_notice(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Notice>) -> Notice {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a notice")
        .expect("the streamer is running")
}

/// The video frames that arrive within `span`.
async fn frames_within(tech: &mut Connection, span: Duration) -> usize {
    let started = Instant::now();
    let mut frames = 0;
    while let Some(left) = span.checked_sub(started.elapsed()) {
        if let Ok(Ok(Message::VideoFrame(_))) = tokio::time::timeout(left, tech.recv()).await {
            frames += 1;
        }
    }
    frames
}

async fn recv(c: &mut Connection) -> Message {
    tokio::time::timeout(Duration::from_secs(15), c.recv())
        .await
        .expect("a message within 15 s")
        .unwrap()
}

async fn start_session(s: &mut Setup) {
    start_session_with(s, ViewRequest::default()).await;
}

/// [`start_session`] asking for a frame rate and monitor to start with.
async fn start_session_with(s: &mut Setup, view: ViewRequest) {
    s.tech
        .send(&Message::SessionRequest {
            target: SessionTarget::Device {
                device_id: s.device_id.clone(),
            },
            view,
        })
        .await
        .unwrap();
    assert!(matches!(
        recv(&mut s.tech).await,
        Message::SessionStarted { .. }
    ));
    assert!(matches!(
        recv(&mut s.tech).await,
        Message::RecordingState { .. }
    ));
}

/// Decodes video as it arrives; remembers the latest configuration.
struct Viewer {
    decoder: openh264::decoder::Decoder,
    config: Option<VideoConfig>,
    /// How many configurations arrived.
    configs: usize,
    monitors: Vec<MonitorInfo>,
    /// `AudioConfig` or `AudioUnavailable`, whichever the streamer sent.
    audio: Option<Message>,
}

impl Viewer {
    fn new() -> Self {
        Self {
            decoder: openh264::decoder::Decoder::new().unwrap(),
            config: None,
            configs: 0,
            monitors: Vec::new(),
            audio: None,
        }
    }

    /// Reads until a decoded frame; returns it as RGB with its size.
    async fn frame(&mut self, tech: &mut Connection) -> (Vec<u8>, usize, usize) {
        loop {
            match recv(tech).await {
                Message::VideoConfig(c) => {
                    self.config = Some(c);
                    self.configs += 1;
                    self.decoder = openh264::decoder::Decoder::new().unwrap();
                }
                Message::MonitorList(m) => self.monitors = m,
                m @ (Message::AudioConfig { .. } | Message::AudioUnavailable { .. }) => {
                    self.audio = Some(m)
                }
                Message::VideoFrame(f) => {
                    if let Some(image) = self.decoder.decode(&f.payload).unwrap() {
                        let (w, h) = image.dimensions();
                        let mut rgb = vec![0u8; w * h * 3];
                        image.write_rgb8(&mut rgb);
                        return (rgb, w, h);
                    }
                }
                _ => {}
            }
        }
    }

    /// Reads frames until their centre is near `rgb`, for at most `within`.
    async fn until_colour(&mut self, tech: &mut Connection, rgb: (u8, u8, u8), within: Duration) {
        let started = Instant::now();
        let mut last = (0, 0, 0);
        while started.elapsed() < within {
            let (frame, w, h) = self.frame(tech).await;
            let i = ((h / 2) * w + w / 2) * 3;
            last = (frame[i], frame[i + 1], frame[i + 2]);
            let near = |a: u8, b: u8| a.abs_diff(b) <= 12;
            if near(last.0, rgb.0) && near(last.1, rgb.1) && near(last.2, rgb.2) {
                return;
            }
        }
        panic!("the view never showed {rgb:?}; last centre pixel {last:?}");
    }
}

#[tokio::test]
async fn the_technician_sees_the_real_screen_at_the_requested_rate() {
    let display = XDisplay::start(640, 480);
    let _red = display.paint(0, 0, 640, 480, (220, 30, 30));
    let mut s = setup(&display, false).await;
    start_session(&mut s).await;
    let mut view = Viewer::new();
    view.until_colour(&mut s.tech, (220, 30, 30), Duration::from_secs(10))
        .await;
    assert_eq!(view.config.unwrap().frame_rate, 10);
    assert_eq!(
        (view.config.unwrap().width, view.config.unwrap().height),
        (640, 480)
    );
    assert_eq!(view.monitors.len(), 1);
    // Live audio, or the reason there is none (this machine has no audio input device).
    let started = Instant::now();
    while view.audio.is_none() && started.elapsed() < Duration::from_secs(5) {
        view.frame(&mut s.tech).await;
    }
    match &view.audio {
        Some(Message::AudioUnavailable { reason }) => assert!(!reason.is_empty()),
        Some(Message::AudioConfig { codec, .. }) => assert_eq!(*codec, AudioCodec::Opus),
        other => panic!("the streamer said nothing about audio: {other:?}"),
    }

    // What changes on screen changes in the view.
    let _green = display.paint(0, 0, 640, 480, (30, 200, 60));
    view.until_colour(&mut s.tech, (30, 200, 60), Duration::from_secs(10))
        .await;

    // A still screen: about a frame a second (the view stays live), not one every tick.
    let still = frames_within(&mut s.tech, Duration::from_secs(3)).await;
    assert!(
        (2..=5).contains(&still),
        "{still} frames in 3 s of a still screen at 10 fps"
    );

    // The rate follows the technician's choice while the screen changes: 5 fps for 3 seconds,
    // with a window changing colour every 40 ms under it.
    s.tech
        .send(&Message::SetFrameRate { frame_rate: 5 })
        .await
        .unwrap();
    loop {
        if let Message::VideoConfig(c) = recv(&mut s.tech).await {
            assert_eq!(c.frame_rate, 5);
            break;
        }
    }
    let changing = Arc::new(AtomicBool::new(true));
    let painter = {
        let (changing, name) = (changing.clone(), display.name.clone());
        std::thread::spawn(move || {
            let (conn, screen) = x11rb::connect(Some(&name)).unwrap();
            let w = system_tests::content::top_window(
                &conn,
                screen,
                (0, 0, 64, 64),
                x11rb::protocol::xproto::CreateWindowAux::new(),
            )
            .unwrap();
            let mut n = 0u32;
            while changing.load(Ordering::Relaxed) {
                n += 1;
                let aux = x11rb::protocol::xproto::ChangeWindowAttributesAux::new()
                    .background_pixel(n.wrapping_mul(0x0010_3050));
                conn.change_window_attributes(w, &aux).unwrap();
                conn.clear_area(false, w, 0, 0, 0, 0).unwrap();
                conn.flush().unwrap();
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    let frames = frames_within(&mut s.tech, Duration::from_secs(3)).await;
    changing.store(false, Ordering::Relaxed);
    painter.join().unwrap();
    assert!(
        (12..=17).contains(&frames),
        "{frames} frames in 3 s at 5 fps"
    );
    s.streamer_stop.cancel();
    s.streamer.await.unwrap().unwrap();
    s.relay.stop().await;
}

/// The session starts at the frame rate asked for in the request (5 fps, where the streamer's own
/// default is 10): its first file is at that rate and not a one-frame sliver, and only the real
/// changes that follow (a monitor switch, a frame-rate change) start new files.
#[tokio::test]
async fn monitor_switch_and_frame_rate_change_each_start_a_recording_file() {
    let display = XDisplay::start(1280, 720);
    display.split_monitors(1280, 720);
    let _left = display.paint(0, 0, 640, 720, (220, 30, 30));
    let _right = display.paint(640, 0, 640, 720, (30, 30, 220));
    let mut s = setup(&display, true).await;
    start_session_with(
        &mut s,
        ViewRequest {
            frame_rate: Some(5),
            monitor_id: None,
        },
    )
    .await;
    let mut view = Viewer::new();
    view.until_colour(&mut s.tech, (220, 30, 30), Duration::from_secs(10))
        .await;
    assert_eq!(
        view.config.unwrap().frame_rate,
        5,
        "the first configuration"
    );
    assert_eq!(view.configs, 1, "no change right after the start");
    // Two seconds at the first rate.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        view.frame(&mut s.tech).await;
    }
    assert_eq!(view.monitors.len(), 2, "{:?}", view.monitors);
    let right = view.monitors.iter().find(|m| m.name == "right").unwrap().id;

    s.tech
        .send(&Message::SwitchMonitor { monitor_id: right })
        .await
        .unwrap();
    view.until_colour(&mut s.tech, (30, 30, 220), Duration::from_secs(10))
        .await;
    assert_eq!(view.config.unwrap().monitor_id, right);
    assert_eq!(
        (view.config.unwrap().width, view.config.unwrap().height),
        (640, 720)
    );

    s.tech
        .send(&Message::SetFrameRate { frame_rate: 15 })
        .await
        .unwrap();
    let started = Instant::now();
    while view.config.unwrap().frame_rate != 15 {
        view.frame(&mut s.tech).await;
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    for _ in 0..10 {
        view.frame(&mut s.tech).await;
    }
    s.tech.send(&Message::LeaveSession).await.unwrap();
    let session_id = s.relay.store.sessions(&s.team_id).await.unwrap()[0]
        .id
        .clone();
    let mut files = Vec::new();
    for _ in 0..200 {
        files = s.relay.store.recording_files(&session_id).await.unwrap();
        if files.len() == 3 && files.iter().all(|f| f.state == "complete") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    files.sort_by_key(|f| f.seq);
    let reasons: Vec<(&str, i64)> = files
        .iter()
        .map(|f| (f.split_reason.as_str(), f.frame_rate))
        .collect();
    assert_eq!(
        reasons,
        [("session_start", 5), ("monitor", 5), ("frame_rate", 15)],
        "{files:?}"
    );
    // Not a sliver: it covers the two seconds and more at the first rate. The screen is still
    // there, so it holds about a frame a second (the streamer sends no more for a still screen).
    assert!(
        files[0].duration_ms.unwrap() >= 2000 && files[0].frame_count.unwrap() >= 3,
        "the first file is not a sliver: {:?}",
        files[0]
    );
    s.streamer_stop.cancel();
    s.streamer.await.unwrap().unwrap();
    s.relay.stop().await;
}

#[tokio::test]
async fn a_resolution_and_orientation_change_yields_a_new_configuration() {
    let display = XDisplay::start(800, 600);
    let mut s = setup(&display, false).await;
    start_session(&mut s).await;
    let mut view = Viewer::new();
    view.frame(&mut s.tech).await;
    assert_eq!(view.config.unwrap().orientation, Orientation::Landscape);
    display.set_mode(600, 800);
    let started = Instant::now();
    loop {
        view.frame(&mut s.tech).await;
        let c = view.config.unwrap();
        if (c.width, c.height) == (600, 800) {
            assert_eq!(c.orientation, Orientation::Portrait);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still {c:?}");
    }
    s.streamer_stop.cancel();
    s.streamer.await.unwrap().unwrap();
    s.relay.stop().await;
}

#[tokio::test]
async fn injected_mouse_and_keyboard_input_lands_on_the_display() {
    let display = XDisplay::start(640, 480);
    let mut s = setup(&display, false).await;
    start_session(&mut s).await;
    let mut view = Viewer::new();
    view.frame(&mut s.tech).await; // the streamer knows which monitor is shown
    let (conn, screen) = x11rb::connect(Some(&display.name)).unwrap();
    let root = conn.setup().roots[screen].root;

    let mouse = |action, button, x, y| {
        Message::MouseInput(MouseInput {
            action,
            button,
            x,
            y,
            wheel_x: 0,
            wheel_y: 0,
        })
    };
    s.tech
        .send(&mouse(MouseAction::Move, MouseButton::None, 123, 77))
        .await
        .unwrap();
    s.tech
        .send(&mouse(MouseAction::Down, MouseButton::Left, 123, 77))
        .await
        .unwrap();
    let key = |down| {
        Message::KeyInput(KeyInput {
            code: "KeyA".into(),
            down,
            modifiers: Modifiers::default(),
        })
    };
    s.tech.send(&key(true)).await.unwrap();
    let keycode_a = {
        let setup = conn.setup();
        let map = conn
            .get_keyboard_mapping(setup.min_keycode, setup.max_keycode - setup.min_keycode + 1)
            .unwrap()
            .reply()
            .unwrap();
        let per = usize::from(map.keysyms_per_keycode);
        let i = map
            .keysyms
            .chunks(per)
            .position(|c| c.first() == Some(&0x61))
            .unwrap();
        setup.min_keycode + u8::try_from(i).unwrap()
    };
    let started = Instant::now();
    loop {
        let p = conn.query_pointer(root).unwrap().reply().unwrap();
        let keys = conn.query_keymap().unwrap().reply().unwrap().keys;
        let a_down = keys[usize::from(keycode_a / 8)] & (1 << (keycode_a % 8)) != 0;
        let left_down = u16::from(p.mask) & 0x100 != 0;
        if (p.root_x, p.root_y) == (123, 77) && left_down && a_down {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pointer {:?} left_down {left_down} a_down {a_down}",
            (p.root_x, p.root_y)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.tech
        .send(&mouse(MouseAction::Up, MouseButton::Left, 123, 77))
        .await
        .unwrap();
    s.tech.send(&key(false)).await.unwrap();
    let started = Instant::now();
    loop {
        let p = conn.query_pointer(root).unwrap().reply().unwrap();
        let keys = conn.query_keymap().unwrap().reply().unwrap().keys;
        if u16::from(p.mask) & 0x100 == 0
            && keys[usize::from(keycode_a / 8)] & (1 << (keycode_a % 8)) == 0
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "button or key still down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.streamer_stop.cancel();
    s.streamer.await.unwrap().unwrap();
    s.relay.stop().await;
}

#[tokio::test]
async fn the_streamer_reconnects_by_itself_after_the_relay_restarts() {
    let display = XDisplay::start(320, 240);
    let s = setup(&display, false).await;
    let port = s.relay.port();
    let dir = s.relay.dir.clone();
    let Setup {
        relay,
        mut notices,
        streamer_stop,
        streamer,
        device_id,
        ..
    } = s;
    relay.stop().await;
    // The streamer notices and retries with backoff.
    loop {
        if let Notice::Reconnecting(..) = next_notice(&mut notices).await {
            break;
        }
    }
    let relay = TestRelay::start(&dir, port).await;
    loop {
        if next_notice(&mut notices).await == Notice::Connected {
            break;
        }
    }
    // It signed in with the stored device credential: the same device, online again.
    let token = relay
        .store
        .sign_in("owner@acme.example", PASSWORD, 3_600_000)
        .await
        .unwrap()
        .unwrap()
        .token;
    let mut tech = Connector::trusting_ca_file(&relay.ca())
        .unwrap()
        .connect(&relay.addr)
        .await
        .unwrap();
    tech.handshake(
        Role::Technician,
        ProductVersion::new(3, 5, 8, 0),
        Credential::TechnicianToken { token },
    )
    .await
    .unwrap();
    tech.send(&Message::ListDevices).await.unwrap();
    let Message::DeviceStatusList(devices) = recv(&mut tech).await else {
        panic!()
    };
    assert_eq!(devices.len(), 1, "registered once, not again");
    assert_eq!(devices[0].id, device_id);
    assert!(devices[0].online);
    streamer_stop.cancel();
    streamer.await.unwrap().unwrap();
    relay.stop().await;
}

/// Review finding 1, the rest, with the real streamer: it stores the next secret it is handed at
/// each connection, and when a copy of its credential (taken from its file) connects, the
/// streamer is told `CONNECTED_ELSEWHERE`, says so, connects again at once, and the copy is found
/// out: the device is revoked and the streamer stops saying why.
#[tokio::test]
async fn the_streamer_renews_its_secret_and_a_stolen_copy_is_found_out() {
    let display = XDisplay::start(320, 240);
    let s = setup(&display, false).await;
    let file = s._data.path().join("device.credential");
    let Setup {
        relay,
        _data,
        team_id,
        mut notices,
        streamer,
        device_id,
        ..
    } = s;
    let stolen = std::fs::read_to_string(&file).unwrap();
    let secret_in = |text: &str| text.lines().nth(1).unwrap().to_owned();
    let copy = secret_in(&stolen);
    let as_copy = || async {
        let mut c = Connector::trusting_ca_file(&relay.ca())
            .unwrap()
            .connect(&relay.addr)
            .await
            .unwrap();
        let est = c
            .handshake(
                Role::Streamer,
                ProductVersion::new(3, 5, 8, 0),
                Credential::Device {
                    device_id: device_id.clone(),
                    secret: copy.clone(),
                },
            )
            .await;
        (c, est)
    };

    // The copy connects while the computer is connected: the computer's streamer is replaced,
    // says so, and connects again with what it holds, storing the next secret it is handed.
    let (mut thief, est) = as_copy().await;
    est.expect("the copy holds the secret the computer holds");
    let Notice::Reconnecting(_, why) = next_notice(&mut notices).await else {
        panic!("the replaced streamer says it connects again")
    };
    assert!(why.contains("another connection"), "{why}");
    assert_eq!(next_notice(&mut notices).await, Notice::Connected);
    let renewed = secret_in(&std::fs::read_to_string(&file).unwrap());
    assert_ne!(renewed, copy, "the streamer stored its next secret");
    let refusal = tokio::time::timeout(Duration::from_secs(10), thief.recv())
        .await
        .expect("the copy's connection is replaced in turn");
    assert!(
        matches!(
            refusal,
            Ok(Message::Refused {
                code: ErrorCode::ConnectedElsewhere,
                ..
            })
        ),
        "{refusal:?}"
    );

    // The copy comes back: still accepted (the computer has not used its next secret yet), and
    // it retires the computer's. The computer, replaced, connects again with that secret, which
    // reveals the copy: the device is revoked, and both are cut off.
    let (mut thief, est) = as_copy().await;
    est.expect("the current secret still works once");
    let ended = tokio::time::timeout(Duration::from_secs(30), streamer)
        .await
        .expect("the streamer stops")
        .unwrap();
    let error = format!("{:#}", ended.expect_err("the streamer stops with why"));
    assert!(error.contains("used from two places"), "{error}");
    let refusal = tokio::time::timeout(Duration::from_secs(10), thief.recv())
        .await
        .expect("the copy is cut off");
    assert!(
        matches!(
            refusal,
            Ok(Message::Refused {
                code: ErrorCode::CredentialRevoked,
                ..
            })
        ),
        "{refusal:?}"
    );
    let devices = relay.store.devices(&team_id).await.unwrap();
    assert!(devices.iter().any(|d| d.id == device_id && d.revoked));
    relay.stop().await;
}

#[tokio::test]
async fn an_attended_streamer_shows_a_session_code_and_the_technician_connects_with_it() {
    let display = XDisplay::start(320, 240);
    let data = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(data.path(), 0).await;
    let team = relay.acme(PASSWORD, false, false).await;
    let Attended {
        mut notices,
        stop,
        streamer,
    } = Attended::start(&relay, &team, &display, "Laptop", None).await;
    let Notice::SessionCode(code, ttl) = next_notice(&mut notices).await else {
        panic!("no session code")
    };
    assert_eq!(code.len(), 9);
    assert_eq!(ttl, 600);

    let mut tech = relay.technician("owner@acme.example", PASSWORD).await;
    tech.send(&Message::SessionRequest {
        target: SessionTarget::Code { code },
        view: ViewRequest::default(),
    })
    .await
    .unwrap();
    let Message::SessionStarted {
        access,
        device_name,
        ..
    } = recv(&mut tech).await
    else {
        panic!()
    };
    assert_eq!(
        (access, device_name.as_str()),
        (AccessType::Attended, "Laptop")
    );
    // The end user sees the session and who runs it.
    assert_eq!(
        next_notice(&mut notices).await,
        Notice::SessionStarted {
            technician: "Owner".into(),
            recorded: false
        }
    );
    Viewer::new().frame(&mut tech).await;
    // The end user ends it (Ctrl-C in the command line): the technician is told why.
    stop.cancel();
    loop {
        if let Message::SessionEnded { reason, .. } = recv(&mut tech).await {
            assert_eq!(reason, EndReason::EndUserEnded);
            break;
        }
    }
    streamer.await.unwrap().unwrap();
    relay.stop().await;
}

/// The streamer's option to announce another version (`--announce-version`, for support staff and
/// tests): the relay's gate treats it like any version, with the SPEC's words naming it.
#[tokio::test]
async fn a_streamer_announcing_an_older_version_is_refused_by_the_recording_gate() {
    let display = XDisplay::start(320, 240);
    let data = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(data.path(), 0).await;
    let team = relay.acme(PASSWORD, true, false).await;
    let old = ProductVersion::new(3, 5, 7, 9);
    let mut a = Attended::start(&relay, &team, &display, "Old laptop", Some(old)).await;
    let Notice::SessionCode(code, _) = next_notice(&mut a.notices).await else {
        panic!("no session code")
    };
    let mut tech = relay.technician("owner@acme.example", PASSWORD).await;
    tech.send(&Message::SessionRequest {
        target: SessionTarget::Code { code },
        view: ViewRequest::default(),
    })
    .await
    .unwrap();
    let Message::SessionRefused { code, message } = recv(&mut tech).await else {
        panic!("an attended session with a streamer announcing {old} was not refused")
    };
    assert_eq!(code, ErrorCode::StreamerVersionUnsupported);
    assert_eq!(message, streamer_version_unsupported_text(&old));
    assert!(message.contains("version 3.5.7.9."), "{message}");
    a.stop.cancel();
    a.streamer.await.unwrap().unwrap();
    relay.stop().await;
}

/// An attended streamer agent on `display`, connected (its `Connected` notice taken).
struct Attended {
    notices: tokio::sync::mpsc::UnboundedReceiver<Notice>,
    stop: CancellationToken,
    streamer: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Attended {
    async fn start(
        relay: &TestRelay,
        team: &relay::store::NewTeam,
        display: &XDisplay,
        name: &str,
        announced_version: Option<ProductVersion>,
    ) -> Self {
        let config = AgentConfig {
            relay: relay.addr.clone(),
            ca_file: relay.ca(),
            mode: Mode::Attended {
                team_key: team.team.attended_key.clone(),
            },
            device_name: name.into(),
            display: Some(display.name.clone()),
            frame_rate: 10,
            announced_version,
            downloads: None,
            chat_input: None,
        };
        let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let platform = Arc::new(X11Platform {
            display: Some(display.name.clone()),
        });
        let streamer = tokio::spawn(agent::run(config, platform, tx, stop.clone()));
        assert_eq!(next_notice(&mut notices).await, Notice::Connected);
        Self {
            notices,
            stop,
            streamer,
        }
    }
}
