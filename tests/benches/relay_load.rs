//! Benchmark: the relay under many concurrent recorded sessions, beside a plain TCP forwarder run in
//! the same process on the same load (the baseline), and the recording's size per hour for typing,
//! scrolling and video-like content at 1920x1080.
//!
//! Run: `cargo bench -p system-tests --bench relay_load [-- --sessions N --seconds S]`
//! (defaults: 500 sessions, 30 s; `--no-content` skips the size-per-hour part). Method and results:
//! docs/PERFORMANCE.md.
//!
//! `--engines` instead runs the recording relay on the embedded defaults (SQLite, local disk),
//! then on PostgreSQL and an S3 store, then as a two-relay fleet on them (streamers on one relay,
//! technicians on the other, joined by peer links), same load, same run: `RELAY_BENCH_DATABASE_URL` names a
//! PostgreSQL server (`postgres://USER@HOST:PORT`, each run gets a database of its own),
//! `RELAY_BENCH_RECORDINGS_URL` a bucket (`s3://BUCKET`, each run gets a prefix), reached with the
//! `AWS_*` variables. `cargo xtask engines --bench [ARGS]` starts both (PostgreSQL, Ceph's RADOS
//! gateway) and runs this.
//!
//! The relay is the release binary (`target/release/relay`, built first), a child process on a fresh
//! data directory with recording on for the team; the forwarder is this program started again with
//! `--forwarder`. Each server's CPU and memory come from `/proc`. The load (both sides of every
//! session) runs in this process on two worker threads: on a 2-core machine it competes with the
//! server, which the figures include, and the report says how many frames the generator sent late.
//!
//! `--record-fixture` re-creates `tests/fixtures/typing-1080p30.h264` (the stream the sessions replay):
//! the typing content drawn at 1920x1080 and encoded by the streamer's encoder as it was before its
//! rate control (`EncoderSettings::FIXED_QUALITY`, a keyframe every 2 s), 10 s at 30 fps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use protocol::{Orientation, VideoCodec, VideoConfig, VideoFrame};
use relay_client::Connector;
use streamer_agent::capture::Frame;
use streamer_agent::encode::H264Encoder;
use system_tests::content::{draw, Content};
use system_tests::load::{
    self, relay_binary, Fixture, Forwarder, Options, ProcSample, Report, Server, Target,
};

const W: u16 = 1920;
const H: u16 = 1080;
const FPS: u16 = 30;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture_path() -> PathBuf {
    workspace().join("tests/fixtures/typing-1080p30.h264")
}

/// `seconds` of `content` encoded at 1920x1080, 30 fps, without rate control (the figures on record
/// in docs/PERFORMANCE.md were made with these streams; the streamer's own figures are in the
/// streamer_pipeline bench).
fn encode(content: Content, seconds: usize) -> Fixture {
    let mut encoder = H264Encoder::new(W, H, FPS).unwrap();
    let mut frame = Frame {
        width: W,
        height: H,
        stride: usize::from(W) * 4,
        bgra: vec![0; usize::from(W) * usize::from(H) * 4],
    };
    let mut seed = 7;
    let mut frames = Vec::new();
    for n in 0..seconds * usize::from(FPS) {
        draw(content, n, W, H, &mut seed, &mut frame.bgra);
        let e = encoder
            .encode_bgra(&frame, None, n == 0)
            .unwrap()
            .expect("without rate control no frame is skipped");
        frames.push(VideoFrame {
            keyframe: e.keyframe,
            timestamp_us: n as u64 * 1_000_000 / u64::from(FPS),
            payload: e.data.into(),
        });
    }
    Fixture {
        config: VideoConfig {
            codec: VideoCodec::H264,
            width: W,
            height: H,
            frame_rate: FPS,
            monitor_id: 0,
            orientation: Orientation::Landscape,
        },
        frames,
    }
}

/// Where a relay keeps its data: the embedded defaults in its data directory, or PostgreSQL and an
/// S3 bucket (a database and a prefix of its own in each).
#[derive(Debug, Clone)]
struct Engines {
    /// `postgres://USER@HOST:PORT`.
    database_server: String,
    /// `s3://BUCKET`.
    bucket: String,
}

impl Engines {
    fn from_env() -> Result<Self> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| {
                format!("--engines needs {name} (cargo xtask engines --bench sets it)")
            })
        };
        Ok(Self {
            database_server: var("RELAY_BENCH_DATABASE_URL")?,
            bucket: var("RELAY_BENCH_RECORDINGS_URL")?,
        })
    }
}

/// What the relay's `/metrics` said about storing recordings, after the sessions ended.
#[derive(Debug, Clone, Copy, Default)]
struct Uploads {
    files: f64,
    bytes: f64,
    failures: f64,
    /// Mean time of one file's put into the store.
    mean_s: f64,
    /// The upper bound of the histogram bucket that holds the 99th percentile.
    p99_le_s: f64,
}

/// Scrapes the relay's `/metrics` (parsed with prometheus-parse) until its sessions have ended
/// and its stored files stop growing (at most 60 s), and reads the uploads off it.
async fn uploads_after_sessions(metrics: &str) -> Result<Uploads> {
    let url = format!("http://{metrics}/metrics");
    let client = system_tests::http_client();
    let mut last = -1.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = client.get(&url).send().await?.text().await?;
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
        let value = |name: &str| {
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == name)
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => 0.0,
                })
                .sum::<f64>()
        };
        let files = value("relay_recording_files_stored_total");
        let settled = value("relay_sessions") == 0.0 && files == last;
        if settled || std::time::Instant::now() > deadline {
            let mut uploads = Uploads {
                files,
                bytes: value("relay_recorded_bytes_total"),
                failures: value("relay_upload_failures_total"),
                ..Uploads::default()
            };
            if let Some(histogram) = scrape.samples.iter().find_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(h) if s.metric == "relay_upload_seconds" => {
                    Some(h.clone())
                }
                _ => None,
            }) {
                let count = histogram.iter().map(|b| b.count).fold(0.0, f64::max);
                uploads.mean_s = value("relay_upload_seconds_sum") / count.max(1.0);
                uploads.p99_le_s = histogram
                    .iter()
                    .find(|b| b.count >= 0.99 * count)
                    .map_or(f64::NAN, |b| b.less_than);
            }
            return Ok(uploads);
        }
        last = files;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

/// A relay child on a fresh data directory (and, with `engines`, its own database and bucket
/// prefix there), recording attended sessions when `record`: the sessions run, the uploads of
/// their recordings are awaited and read off `/metrics`, the relay is stopped (finishing what is
/// left), and the recorded bytes are counted.
async fn through_relay(
    binary: &Path,
    fixture: Arc<Fixture>,
    options: Options,
    record: bool,
    audit: bool,
    engines: Option<&Engines>,
) -> Result<(Report, u64, Uploads)> {
    let data = tempfile::tempdir()?;
    let name = format!(
        "bench_{}",
        relay::secrets::new_id().map_err(|e| anyhow::anyhow!("{e}"))?
    );
    let (database_url, recordings_url) = match engines {
        Some(e) => (
            format!("{}/{name}", e.database_server.trim_end_matches('/')),
            Some(format!("{}/{name}", e.bucket.trim_end_matches('/'))),
        ),
        None => (relay::store::sqlite_url(data.path()), None),
    };
    // Provision the team before the relay starts, through its own store.
    let clock: relay::clock::SharedClock = Arc::new(relay::clock::SystemClock);
    let store = relay::store::Store::open(&database_url, clock).await?;
    let (token, team_key) = load::provision(&store, record).await?;
    store.close().await;

    // The relay's log (warnings and errors) goes to a file; the report counts its lines.
    let log_path = data.path().join("relay.log");
    let mut cmd = Command::new(binary);
    cmd.args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--database-url")
        .arg(&database_url)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env("RELAY_BENCH_AUDIT_OFF", if audit { "0" } else { "1" })
        .stderr(std::fs::File::create(&log_path)?);
    if let Some(url) = &recordings_url {
        cmd.arg("--recordings-url").arg(url);
    }
    let server = Server::start(cmd, "listening on https://", true)?;
    let connector = Connector::trusting_ca_file(&data.path().join("tls/dev-ca.pem"))?;
    let target = Target::Relay {
        addr: format!("localhost:{}", server.port),
        connector,
        token,
        team_key,
        technician_addr: None,
    };
    let pid = server.pid();
    let report = load::run(target, fixture, options, || {
        ProcSample::of(pid).unwrap_or_default()
    })
    .await?;
    let uploads = match &server.metrics {
        Some(addr) if record => uploads_after_sessions(addr).await?,
        _ => Uploads::default(),
    };
    server.stop()?;
    let recorded = match recordings_url {
        None => load::dir_bytes(&data.path().join("recordings")),
        // What the relay put into the bucket (its counter; the files of a recording that a
        // shutdown finished are not in it).
        Some(_) => uploads.bytes as u64,
    };
    report_log(&log_path, &format!("recording {record}"))?;
    Ok((report, recorded, uploads))
}

/// Says how many warnings and errors a relay logged (and the first line), when it logged any.
fn report_log(log_path: &Path, which: &str) -> Result<()> {
    let log = std::fs::read_to_string(log_path)?;
    let count = |level: &str| log.lines().filter(|l| l.contains(level)).count();
    let (warnings, errors) = (count("WARN"), count("ERROR"));
    if warnings + errors > 0 {
        let first = log.lines().next().unwrap_or_default();
        println!("relay log ({which}): {warnings} warnings, {errors} errors; first: {first}");
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Two recording relays as a fleet on PostgreSQL and S3 (a database and a prefix of their own):
/// streamers connect to relay A, technicians to relay B, which joins each session to A over a
/// peer link; A records. The CPU figure is both relays' together; uploads are A's.
async fn through_fleet(
    binary: &Path,
    fixture: Arc<Fixture>,
    options: Options,
    engines: &Engines,
) -> Result<(Report, u64, Uploads)> {
    let root = tempfile::tempdir()?;
    let name = format!(
        "bench_fleet_{}",
        relay::secrets::new_id().map_err(|e| anyhow::anyhow!("{e}"))?
    );
    let database_url = format!("{}/{name}", engines.database_server.trim_end_matches('/'));
    let recordings_url = format!("{}/{name}", engines.bucket.trim_end_matches('/'));
    let clock: relay::clock::SharedClock = Arc::new(relay::clock::SystemClock);
    let store = relay::store::Store::open(&database_url, clock).await?;
    let (token, team_key) = load::provision(&store, true).await?;
    store.close().await;
    let ca = root.path().join("ca");
    relay::tls::make_fleet_ca(&ca)?;
    let start = |member: &str, agent_tls: &str| -> Result<Server> {
        let data = root.path().join(member);
        let (cert, key) = relay::tls::make_fleet_cert(&ca, &["localhost".into()], &data)?;
        let peer = free_port()?;
        let config = data.join("relay.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
                 database_url = {database_url:?}\nrecordings_url = {recordings_url:?}\n\
                 peer_listen = \"127.0.0.1:{peer}\"\nannounce_address = \"localhost:{peer}\"\n\
                 fleet_ca = {:?}\nfleet_cert = {cert:?}\nfleet_key = {key:?}\n{agent_tls}",
                ca.join("fleet-ca.pem")
            ),
        )?;
        let mut cmd = Command::new(binary);
        cmd.arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .env("RELAY_BENCH_AUDIT_OFF", "0")
            .stderr(std::fs::File::create(data.join("relay.log"))?);
        Server::start(cmd, "listening on https://", true)
    };
    let a = start("a", "")?;
    let a_tls = root.path().join("a/tls");
    let b = start(
        "b",
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            a_tls.join("server.pem"),
            a_tls.join("server-key.pem")
        ),
    )?;
    let target = Target::Relay {
        addr: format!("localhost:{}", a.port),
        connector: Connector::trusting_ca_file(&a_tls.join("dev-ca.pem"))?,
        token,
        team_key,
        technician_addr: Some(format!("localhost:{}", b.port)),
    };
    let (pid_a, pid_b) = (a.pid(), b.pid());
    let report = load::run(target, fixture, options, || {
        let (x, y) = (
            ProcSample::of(pid_a).unwrap_or_default(),
            ProcSample::of(pid_b).unwrap_or_default(),
        );
        ProcSample {
            cpu: x.cpu + y.cpu,
            rss: x.rss + y.rss,
        }
    })
    .await?;
    let uploads = match &a.metrics {
        Some(addr) => uploads_after_sessions(addr).await?,
        None => Uploads::default(),
    };
    b.stop()?;
    a.stop()?;
    for member in ["a", "b"] {
        report_log(
            &root.path().join(member).join("relay.log"),
            &format!("fleet relay {member}"),
        )?;
    }
    Ok((report, uploads.bytes as u64, uploads))
}

async fn through_forwarder(fixture: Arc<Fixture>, options: Options) -> Result<Report> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--forwarder");
    let server = Server::start(cmd, "forwarding on ", false)?;
    let pid = server.pid();
    let target = Target::Plain {
        addr: format!("127.0.0.1:{}", server.port),
    };
    load::run(target, fixture, options, || {
        ProcSample::of(pid).unwrap_or_default()
    })
    .await
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.iter().any(|a| a == "--forwarder") {
        return runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("forwarding on {}", listener.local_addr()?);
            Forwarder::serve(listener).await
        });
    }
    if args.iter().any(|a| a == "--record-fixture") {
        let fixture = encode(Content::Typing, 10);
        fixture.write(&fixture_path())?;
        println!(
            "wrote {} ({} frames, {:.0} kbit/s)",
            fixture_path().display(),
            fixture.frames.len(),
            fixture.bytes_per_second() * 8.0 / 1000.0
        );
        return Ok(());
    }
    let sessions = usize::try_from(arg(&args, "--sessions", 500))?;
    let seconds = arg(&args, "--seconds", 30);
    let options = Options {
        sessions,
        window: Duration::from_secs(seconds),
        setup_concurrency: 16,
    };
    let binary = relay_binary()?;
    let fixture = Arc::new(Fixture::read(&fixture_path())?);
    println!(
        "relay load: {sessions} sessions, {seconds} s window, replaying {} ({}x{} at {} fps, {:.0} kbit/s)\n",
        fixture_path().strip_prefix(workspace())?.display(),
        fixture.config.width,
        fixture.config.height,
        fixture.config.frame_rate,
        fixture.bytes_per_second() * 8.0 / 1000.0
    );
    runtime.block_on(async {
        let baseline = through_forwarder(fixture.clone(), options).await?;
        if args.iter().any(|a| a == "--engines") {
            let engines = Engines::from_env()?;
            let (local, local_bytes, local_up) =
                through_relay(&binary, fixture.clone(), options, true, true, None).await?;
            let (shared, shared_bytes, shared_up) = through_relay(
                &binary,
                fixture.clone(),
                options,
                true,
                true,
                Some(&engines),
            )
            .await?;
            let (fleet, fleet_bytes, fleet_up) =
                through_fleet(&binary, fixture.clone(), options, &engines).await?;
            print_engines(
                &[
                    Column {
                        name: "SQLite + local disk",
                        report: &local,
                        bytes: local_bytes,
                        uploads: &local_up,
                    },
                    Column {
                        name: "PostgreSQL + S3 (RGW), one relay",
                        report: &shared,
                        bytes: shared_bytes,
                        uploads: &shared_up,
                    },
                    Column {
                        name: "PostgreSQL + S3 (RGW), two-relay fleet",
                        report: &fleet,
                        bytes: fleet_bytes,
                        uploads: &fleet_up,
                    },
                ],
                &baseline,
            );
            return Ok(());
        }
        let (unrecorded, _, _) =
            through_relay(&binary, fixture.clone(), options, false, true, None).await?;
        let (unaudited, _, _) =
            through_relay(&binary, fixture.clone(), options, true, false, None).await?;
        let (relay, recorded, _) =
            through_relay(&binary, fixture.clone(), options, true, true, None).await?;
        print_table(&baseline, &unrecorded, &relay, recorded);
        print_audit(&relay, &unaudited);
        if args.iter().any(|a| a == "--no-content") {
            return Ok(());
        }

        println!(
            "\nrecording size per hour at 1920x1080, 30 fps (one recorded session each, 20 s):\n"
        );
        println!("| content | stream kbit/s | recorded bytes | recorded / received | per hour |");
        println!("|---|---:|---:|---:|---:|");
        for (name, content) in Content::ALL {
            let f = Arc::new(if content == Content::Typing {
                (*fixture).clone()
            } else {
                encode(content, 10)
            });
            let one = Options {
                sessions: 1,
                window: Duration::from_secs(20),
                setup_concurrency: 1,
            };
            let (r, bytes, _) = through_relay(&binary, f.clone(), one, true, true, None).await?;
            let streamed_secs = r.frames_sent as f64 / f64::from(f.config.frame_rate);
            println!(
                "| {name} | {:.0} | {bytes} | {:.3} | {:.2} GB |",
                f.bytes_per_second() * 8.0 / 1000.0,
                bytes as f64 / r.payload_bytes as f64,
                bytes as f64 / streamed_secs * 3600.0 / 1e9
            );
        }
        anyhow::Ok(())
    })
}

/// One configuration's figures in the engines' table.
struct Column<'a> {
    name: &'a str,
    report: &'a Report,
    bytes: u64,
    uploads: &'a Uploads,
}

/// The recording relay on the embedded defaults beside the same relay on PostgreSQL and S3 and a
/// two-relay fleet on them, same run, same load (each against the first, and the plain
/// forwarder's figures for scale).
fn print_engines(columns: &[Column], base: &Report) {
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let ratios: Vec<String> = columns[1..]
        .iter()
        .map(|c| format!("{} / first", c.name))
        .collect();
    println!(
        "\n| figure | {} | {} | plain TCP forwarder |",
        names.join(" | "),
        ratios.join(" | ")
    );
    println!("|---|{}---:|", "---:|".repeat(columns.len() * 2 - 1));
    let row = |name: &str, f: &dyn Fn(&Column) -> f64, base: Option<f64>, digits: usize| {
        let first = f(&columns[0]);
        let values: Vec<String> = columns
            .iter()
            .map(|c| format!("{:.digits$}", f(c)))
            .collect();
        let ratios: Vec<String> = columns[1..]
            .iter()
            .map(|c| {
                if first > 0.0 {
                    format!("{:.2}", f(c) / first)
                } else {
                    "-".into()
                }
            })
            .collect();
        let base = base.map_or(String::new(), |b| format!("{b:.digits$}"));
        println!(
            "| {name} | {} | {} | {base} |",
            values.join(" | "),
            ratios.join(" | ")
        );
    };
    let held: Vec<String> = columns
        .iter()
        .map(|c| format!("{} / {}", c.report.held, c.report.sessions))
        .collect();
    println!(
        "| sessions held / asked | {} | {} | {} / {} |",
        held.join(" | "),
        vec![""; columns.len() - 1].join(" | "),
        base.held,
        base.sessions
    );
    let cpu = |r: &Report| r.cpu_per_session() * 100.0;
    row(
        "relay CPU per session (% of a core)",
        &|c| cpu(c.report),
        Some(cpu(base)),
        3,
    );
    let p99 = |r: &Report| r.latency_ms(0.99);
    row(
        "transit latency p99 (ms)",
        &|c| p99(c.report),
        Some(p99(base)),
        2,
    );
    let lost = |r: &Report| r.frames_lost() as f64;
    row("frames lost", &|c| lost(c.report), Some(lost(base)), 0);
    let setup = |r: &Report| r.setup.as_secs_f64();
    row(
        "setup of all sessions (s)",
        &|c| setup(c.report),
        Some(setup(base)),
        2,
    );
    row("recording files stored", &|c| c.uploads.files, None, 0);
    row(
        "upload time per file, mean (ms)",
        &|c| c.uploads.mean_s * 1000.0,
        None,
        1,
    );
    row(
        "upload time per file, p99 at most (ms)",
        &|c| c.uploads.p99_le_s * 1000.0,
        None,
        0,
    );
    row("upload failures", &|c| c.uploads.failures, None, 0);
    row(
        "bytes recorded / video bytes received",
        &|c| c.bytes as f64 / c.report.payload_bytes.max(1) as f64,
        None,
        3,
    );
    for c in columns {
        for f in c.report.failures.iter().take(5) {
            println!("{} failure: {f}", c.name);
        }
    }
}

/// The recording relay with its audit trail (every session's start and end) beside the same relay
/// with the trail switched off, same run, same load.
fn print_audit(audited: &Report, unaudited: &Report) {
    println!("\n| figure | recording, audit on | recording, audit off | on / off |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, f: &dyn Fn(&Report) -> f64, digits: usize| {
        let (a, b) = (f(audited), f(unaudited));
        let ratio = if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "-".into()
        };
        println!("| {name} | {a:.digits$} | {b:.digits$} | {ratio} |");
    };
    println!(
        "| sessions held / asked | {} / {} | {} / {} | |",
        audited.held, audited.sessions, unaudited.held, unaudited.sessions
    );
    row(
        "server CPU per session (% of a core)",
        &|r| r.cpu_per_session() * 100.0,
        3,
    );
    row("transit latency p99 (ms)", &|r| r.latency_ms(0.99), 2);
    row("frames lost", &|r| r.frames_lost() as f64, 0);
    row(
        "server memory per session (KiB)",
        &|r| r.memory_per_session() / 1024.0,
        0,
    );
    row("setup of all sessions (s)", &|r| r.setup.as_secs_f64(), 2);
}

fn print_table(base: &Report, plain: &Report, relay: &Report, recorded: u64) {
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "-".into()
        }
    };
    let row = |name: &str, f: &dyn Fn(&Report) -> f64, digits: usize| {
        println!(
            "| {name} | {:.digits$} | {:.digits$} | {:.digits$} | {} | {} |",
            f(relay),
            f(plain),
            f(base),
            ratio(f(relay), f(plain)),
            ratio(f(relay), f(base)),
        );
    };
    println!(
        "| figure | relay, recording | relay, not recording | plain TCP forwarder | recording / not | relay recording / forwarder |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| sessions held / asked | {} / {} | {} / {} | {} / {} | | |",
        relay.held, relay.sessions, plain.held, plain.sessions, base.held, base.sessions
    );
    row(
        "server CPU per session (% of a core)",
        &|r| r.cpu_per_session() * 100.0,
        3,
    );
    row(
        "server CPU, all sessions (% of a core)",
        &|r| r.cpu_per_session() * 100.0 * r.sessions as f64,
        1,
    );
    row(
        "generator CPU, both sides (% of a core)",
        &|r| r.generator_cpu() * 100.0,
        1,
    );
    row("transit latency p50 (ms)", &|r| r.latency_ms(0.5), 2);
    row("transit latency p99 (ms)", &|r| r.latency_ms(0.99), 2);
    row("transit latency max (ms)", &|r| r.latency_ms(1.0), 2);
    row("frames sent", &|r| r.frames_sent as f64, 0);
    row("frames lost", &|r| r.frames_lost() as f64, 0);
    row(
        "generator sends late (> 1 frame)",
        &|r| r.late_sends as f64,
        0,
    );
    row(
        "server memory per session (KiB)",
        &|r| r.memory_per_session() / 1024.0,
        0,
    );
    row("setup of all sessions (s)", &|r| r.setup.as_secs_f64(), 1);
    println!(
        "\nbytes recorded / video bytes received: {recorded} / {} = {:.3}",
        relay.payload_bytes,
        recorded as f64 / relay.payload_bytes as f64
    );
    for (who, r) in [
        ("relay, recording", relay),
        ("relay, not recording", plain),
        ("forwarder", base),
    ] {
        for f in r.failures.iter().take(5) {
            println!("{who} failure: {f}");
        }
        if r.failures.len() > 5 {
            println!("{who}: {} failures in all", r.failures.len());
        }
    }
}
