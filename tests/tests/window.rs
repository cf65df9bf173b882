//! The attended streamer's window on Linux (GTK), on a virtual X display: it shows the session code
//! to read out, says "This session is recorded by the technician's team" when the relay says so, and
//! shows the technician's chat line, sends the end user's typed one, and its End session button ends
//! the session. Read as a person would: OCR of the screen, and of the
//! technician's decoded picture; the button clicked through the session, where the end user would.
//!
//! One test in its own binary: GTK opens `$DISPLAY`, which this sets for the process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::*;
use streamer_agent::agent::{self, AgentConfig, Mode, Notice, X11Platform};
use streamer_agent::capture::ScreenSource;
use streamer_agent::window;
use system_tests::ocr::{ocr, plain, save_png, View};
use system_tests::{TestRelay, XDisplay};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery staple";

/// What the display shows now, as OCR reads it.
fn screen_text(display: &str, work: &std::path::Path) -> String {
    let mut source = streamer_agent::capture::x11::X11Source::connect(Some(display)).unwrap();
    let monitor = source.monitors().unwrap().remove(0);
    let frame = source.capture(&monitor).unwrap();
    let (w, h) = (frame.width as usize, frame.height as usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in frame.bgra.chunks(frame.stride).take(h) {
        for px in row[..w * 4].chunks(4) {
            rgb.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }
    let png = work.join("screen.png");
    save_png(&rgb, w, h, &png);
    ocr(&png)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_linux_window_shows_the_code_the_recording_and_the_chat_and_ends_the_session() {
    let (width, height) = (1280u16, 720u16);
    let display = XDisplay::start(width, height);
    // Before any thread of GTK's or the agent's reads the environment.
    std::env::set_var("DISPLAY", &display.name);
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(data.path(), 0).await;
    let team = relay.acme(PASSWORD, true, false).await;

    // What the end user types on the streamer's terminal or in its window's chat line, as the
    // command line wires them.
    let (typed, chat_input) = agent::ChatInput::new();
    // The attended streamer with its window, as the command line runs them.
    let stop = CancellationToken::new();
    let shown = window::show(stop.clone(), Some(typed.clone())).expect("Linux has a window");
    let to_window = shown.notices();
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel::<Notice>();
    let (test_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<Notice>();
    tokio::spawn(async move {
        while let Some(n) = notices.recv().await {
            let _ = to_window.send(n.clone());
            let _ = test_tx.send(n);
        }
    });
    let config = AgentConfig {
        relay: relay.addr.clone(),
        ca_file: relay.ca(),
        mode: Mode::Attended {
            team_key: team.team.attended_key.clone(),
        },
        device_name: "Laptop".into(),
        display: Some(display.name.clone()),
        frame_rate: 10,
        announced_version: None,
        downloads: None,
        chat_input: Some(chat_input),
    };
    let platform = Arc::new(X11Platform {
        display: Some(display.name.clone()),
    });
    let streamer = tokio::spawn(agent::run(config, platform, tx, stop.clone()));
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Notice::SessionCode(code, _) => break code,
            Notice::Reconnecting(_, why) => panic!("{why}"),
            _ => {}
        }
    };

    // The window shows the code, in three groups as it is read out.
    let started = Instant::now();
    let mut read = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        read = screen_text(&display.name, work.path());
        if plain(&read).contains(&code) && read.contains("Read this code") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        plain(&read).contains(&code),
        "the window shows the code {code} (OCR read {read:?})"
    );

    let mut tech = relay.technician("owner@acme.example", PASSWORD).await;
    tech.send(&Message::SessionRequest {
        target: SessionTarget::Code { code },
        view: ViewRequest::default(),
    })
    .await
    .unwrap();
    // What the technician sees includes the end user's window saying the session is recorded.
    let mut view = View::default();
    let picture = view
        .until_text(
            &mut tech,
            &plain("This session is recorded by the technician's team"),
            work.path(),
        )
        .await;
    assert_eq!(picture, (width as usize, height as usize));
    assert!(
        plain(&screen_text(&display.name, work.path())).contains(&plain("Owner is connected")),
        "the window names the technician"
    );

    // Chat: the technician's line shows in the window with their name (as text, markup and all);
    // the end user's line reaches the technician.
    tech.send(&Message::ChatText {
        text: "Please open <the> printer settings".into(),
    })
    .await
    .unwrap();
    view.until_text(
        &mut tech,
        &plain("Owner: Please open <the> printer settings"),
        work.path(),
    )
    .await;
    typed.send("It is open now".into()).await.unwrap();
    let started = Instant::now();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), tech.recv())
            .await
            .expect("the end user's chat line within 10 s")
            .unwrap();
        if let Message::ChatText { text } = msg {
            assert_eq!(text, "It is open now");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    // The end user writes in the window's chat line (clicked and typed through the session, where
    // the end user would) and presses Enter: the technician gets the line. (No window manager
    // here, so no frame: the window's client area starts at its position.)
    let (x0, y0) = (
        i32::from(width) - window::WIDTH - window::MARGIN,
        i32::from(height) - window::HEIGHT - window::MARGIN,
    );
    let (ix, iy, iw, ih) = window::CHAT_INPUT;
    system_tests::click(
        &mut tech,
        (x0 + ix + iw / 2) as u16,
        (y0 + iy + ih / 2) as u16,
    )
    .await;
    tech.send(&Message::TextInput {
        text: "Printer ready".into(),
    })
    .await
    .unwrap();
    for down in [true, false] {
        tech.send(&Message::KeyInput(KeyInput {
            code: "Enter".into(),
            down,
            modifiers: Modifiers::default(),
        }))
        .await
        .unwrap();
    }
    let started = Instant::now();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), tech.recv())
            .await
            .expect("the line written in the window within 15 s")
            .unwrap();
        if let Message::ChatText { text } = msg {
            assert_eq!(text, "Printer ready");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15));
    }

    // Its End session button ends the session: clicked through the session, where it is.
    let (bx, by, bw, bh) = window::END_BUTTON;
    let (x, y) = ((x0 + bx + bw / 2) as u16, (y0 + by + bh / 2) as u16);
    system_tests::click(&mut tech, x, y).await;
    let started = Instant::now();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), tech.recv())
            .await
            .expect("the session ends within 30 s of the click")
            .unwrap();
        if let Message::SessionEnded { reason, .. } = msg {
            assert_eq!(reason, EndReason::EndUserEnded, "the end user ended it");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    tokio::time::timeout(Duration::from_secs(30), streamer)
        .await
        .expect("the attended streamer finishes")
        .unwrap()
        .unwrap();
    shown.close();
    relay.stop().await;
}
