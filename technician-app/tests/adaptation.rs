//! The command-line client through a slow link: the real streamer on a virtual display (changing
//! content in a corner), a relay recording the session, and `technician-cli` in a network namespace
//! of the test's own, reaching the relay over a veth pair whose rate the kernel limits (`tc tbf`,
//! 300 kbit/s towards the client) through the harness's proxy for delay and loss (20 ms each way,
//! 1 %; `system_tests::link`). Typed
//! mid-session, `rate 10` changes the frame rate; once the link opens the stream comes back to
//! that chosen rate and no higher. The recording splits once, at the technician's change: the
//! adaptation's own changes of rate start no file.
//!
//! Behaviour only, with bounds far from the figures (the adaptation benchmark has those).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use system_tests::content::noise_corner;
use system_tests::link::{Namespace, Shape, ShapedLink};
use system_tests::{TestRelay, TestStreamer, XDisplay};

const PASSWORD: &str = "correct horse battery staple";

/// The client's output lines with the time each arrived.
struct Output {
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Output {
    /// Waits up to `within` for a line that `pred` accepts.
    fn wait(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((t, line)) => {
                    self.seen.push((t, line.clone()));
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no such line within {within:?}; output so far: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Frames received a second over the last `span`, from the client's "  N frames, K KB" lines.
    fn rate_over(&mut self, span: Duration) -> f64 {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        let counts: Vec<(Instant, u64)> = self
            .seen
            .iter()
            .filter_map(|(t, l)| {
                let n = l.trim().strip_suffix(" KB")?.split_once(" frames, ")?.0;
                Some((*t, n.parse().ok()?))
            })
            .collect();
        let last = *counts.last().expect("progress lines");
        let first = counts
            .iter()
            .find(|(t, _)| last.0.duration_since(*t) <= span)
            .copied()
            .unwrap();
        (last.1 - first.1) as f64 / last.0.duration_since(first.0).as_secs_f64().max(0.5)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_client_changes_rate_on_a_slow_link_and_the_recording_splits_once() {
    let (w, h) = (640, 480);
    let display = XDisplay::start(w, h);
    let stop = Arc::new(AtomicBool::new(false));
    let drawer = noise_corner(&display.name, w, h, stop.clone());
    let data = tempfile::tempdir().unwrap();
    let ns = Namespace::new().expect("a network namespace (root and iproute2 are needed)");
    ns.limit(Some("300kbit")).unwrap();
    let relay =
        TestRelay::start_with(data.path(), 0, |c| c.server_names.push(ns.host_ip.clone())).await;
    let team = relay.acme(PASSWORD, false, true).await;
    let streamer = TestStreamer::start(&relay, &team.team.id, &display.name, data.path(), 30).await;
    let link = ShapedLink::start_on(
        &ns.host_ip,
        &ns.host_ip,
        &relay.addr,
        Shape {
            rate_bps: None,
            delay: Duration::from_millis(20),
            loss: 0.01,
        },
    )
    .await
    .unwrap();

    let mut cli = ns
        .command(std::path::Path::new(env!("CARGO_BIN_EXE_technician-cli")))
        .args(["--relay", &link.addr, "--email", "owner@acme.example"])
        .args(["--password", PASSWORD, "--device", &streamer.device_id])
        .args(["--frame-rate", "30", "--watch", "60"])
        .arg("--ca")
        .arg(relay.ca())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut typed = cli.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = cli.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut out = Output {
        lines: rx,
        seen: Vec::new(),
    };
    out.wait(Duration::from_secs(20), |l| l.starts_with("RECORDING:"));
    out.wait(Duration::from_secs(10), |l| {
        l.starts_with("Video: 640x480 at 30 fps")
    });

    // Slow for 8 s, the streamer adapting to the client's reports; then the technician's choice.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let slow = out.rate_over(Duration::from_secs(4));
    writeln!(typed, "rate 10").unwrap();
    out.wait(Duration::from_secs(5), |l| l == "> rate 10");
    out.wait(Duration::from_secs(10), |l| {
        l.starts_with("Video: 640x480 at 10 fps")
    });

    // The link opens: the chosen 10 fps again within a few seconds, not the 30 of the start.
    ns.limit(None).unwrap();
    link.set(Shape::OPEN);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let open = out.rate_over(Duration::from_secs(3));
    eprintln!(
        "frames a second: {slow:.1} on the slow link at 30 chosen, {open:.1} open at 10 chosen"
    );
    assert!(
        (7.0..=12.0).contains(&open),
        "{open:.1} frames a second with the link open and 10 chosen ({slow:.1} slow at 30)"
    );

    writeln!(typed, "leave").unwrap();
    out.wait(Duration::from_secs(10), |l| l.starts_with("Session ended"));
    assert!(cli.wait().unwrap().success());

    // One split, at the technician's change: two files, at 30 then 10 fps.
    let session = relay.store.sessions(&team.team.id).await.unwrap()[0]
        .id
        .clone();
    let mut files = Vec::new();
    for _ in 0..50 {
        files = relay.store.recording_files(&session).await.unwrap();
        if files.len() == 2 && files.iter().all(|f| f.ended_at.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rates: Vec<i64> = files.iter().map(|f| f.frame_rate).collect();
    assert_eq!(rates, [30, 10], "{files:#?}");

    stop.store(true, Ordering::Relaxed);
    drawer.join().unwrap();
    streamer.stop().await;
    relay.stop().await;
}
