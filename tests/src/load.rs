//! A load generator for the relay: many concurrent sessions, each a streamer side replaying a real
//! H.264 desktop stream at real-time pace and a technician side timing every frame's transit.
//!
//! It drives either the relay (real TLS, WebSocket, the protocol's handshake and pairing, recording
//! as the team's policy says) or, as a baseline, [`Forwarder`]: a plain TCP forwarder that pairs two
//! connections and copies bytes, with no TLS, no protocol work and no recording. Both carry the same
//! frames from the same [`Fixture`] at the same pace, so the difference is what the relay costs.
//!
//! Latency: the streamer side stamps each frame with its send time (microseconds since the session's
//! stream began, as a real streamer stamps capture time) and the technician side, in the same process
//! and on the same clock, subtracts it from the arrival time. Both sides live in this process, so the
//! figure is the transit through the server and the loopback network, which is what the server adds.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use protocol::{
    encode, encode_to_bytes, Credential, FrameDecoder, Message, ProductVersion, Role,
    SessionTarget, VideoConfig, VideoFrame,
};
use relay_client::{Connection, Connector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The version the generated streamers and technicians report (recorded sessions need 3.5.8.0).
pub const VERSION: ProductVersion = ProductVersion::new(3, 5, 8, 0);

/// A recorded H.264 stream: its configuration and its access units in order, the first a keyframe.
/// Stored as the protocol's own frames (a `VideoConfig`, then `VideoFrame`s), back to back.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The stream's configuration.
    pub config: VideoConfig,
    /// The access units, with their capture times.
    pub frames: Vec<VideoFrame>,
}

impl Fixture {
    /// Reads a fixture written by [`Fixture::write`].
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut decoder = FrameDecoder::new();
        decoder.feed(&bytes);
        let Some(Message::VideoConfig(config)) = decoder.next_message()? else {
            bail!(
                "{} does not start with a video configuration",
                path.display()
            );
        };
        let mut frames = Vec::new();
        while let Some(m) = decoder.next_message()? {
            match m {
                Message::VideoFrame(f) => frames.push(f),
                other => bail!(
                    "{} holds a {:?}, not only frames",
                    path.display(),
                    other.kind()
                ),
            }
        }
        if decoder.buffered() > 0 {
            bail!("{} ends inside a frame", path.display());
        }
        match frames.first() {
            Some(f) if f.keyframe => Ok(Self { config, frames }),
            Some(_) => bail!("{} does not start with a keyframe", path.display()),
            None => bail!("{} holds no frame", path.display()),
        }
    }

    /// Writes the fixture.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut out = BytesMut::new();
        encode(&Message::VideoConfig(self.config), &mut out)?;
        for f in &self.frames {
            encode(&Message::VideoFrame(f.clone()), &mut out)?;
        }
        std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))
    }

    /// The time between frames at the stream's frame rate.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs(1) / u32::from(self.config.frame_rate.max(1))
    }

    /// The time from one keyframe to the next (the whole stream when it has one keyframe).
    pub fn keyframe_period(&self) -> Duration {
        let next = self.frames.iter().skip(1).position(|f| f.keyframe);
        let frames = next.map_or(self.frames.len(), |i| i + 1) as u64;
        Duration::from_secs(frames) / u32::from(self.config.frame_rate.max(1))
    }

    /// Encoded bytes a second at the stream's frame rate.
    pub fn bytes_per_second(&self) -> f64 {
        let total: usize = self.frames.iter().map(|f| f.payload.len()).sum();
        total as f64 / self.frames.len() as f64 * f64::from(self.config.frame_rate)
    }
}

/// Where the sessions go.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // the connector holds TLS configuration, not for printing
pub enum Target {
    /// The relay: streamers connect attended with the team's key, technicians with a token and the
    /// session code.
    Relay {
        /// `host:port`.
        addr: String,
        /// Trusts the relay's CA.
        connector: Connector,
        /// A technician's sign-in token.
        token: String,
        /// The team's attended-access key.
        team_key: String,
        /// Where technicians connect, when not `addr`: another relay of a fleet, which joins
        /// each session to the streamer's relay over a peer link.
        technician_addr: Option<String>,
    },
    /// The baseline [`Forwarder`] at this address.
    Plain {
        /// `127.0.0.1:port`.
        addr: String,
    },
}

/// How much load.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Concurrent sessions.
    pub sessions: usize,
    /// How long every session streams at once (the measured window).
    pub window: Duration,
    /// Sessions being set up at the same time.
    pub setup_concurrency: usize,
}

/// What the server process was doing, sampled at the start and the end of the window.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// CPU time used so far (user and system, all threads).
    pub cpu: Duration,
    /// Resident memory now, in bytes.
    pub rss: u64,
}

impl ProcSample {
    /// Reads `/proc/PID` (Linux).
    pub fn of(pid: u32) -> Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("bad /proc stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .context("no VmRSS")?
            .parse()?;
        Ok(Self {
            cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64),
            rss: rss_kb * 1024,
        })
    }
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Sessions asked for.
    pub sessions: usize,
    /// Sessions set up and streaming through the whole window, every frame delivered.
    pub held: usize,
    /// Sessions that failed, with the first few reasons.
    pub failures: Vec<String>,
    /// Frames sent by all streamer sides.
    pub frames_sent: u64,
    /// Frames that reached the technician sides.
    pub frames_received: u64,
    /// Frame sends that started more than one frame interval late (the generator could not keep
    /// pace; a run with many is measuring the generator, not the server).
    pub late_sends: u64,
    /// Video payload bytes sent (what the server received as video).
    pub payload_bytes: u64,
    /// Transit of every frame received in the window, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// The server at the start and end of the window, when a process was given.
    pub window_start: ProcSample,
    /// See `window_start`.
    pub window_end: ProcSample,
    /// The server before any session.
    pub idle: ProcSample,
    /// This process (the generator: both sides of every session) at the start and end of the window.
    pub generator: (ProcSample, ProcSample),
    /// The window's real length.
    pub window: Duration,
    /// Time to set every session up.
    pub setup: Duration,
}

impl Report {
    /// The latency at quantile `q` (0 to 1), in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    /// Server CPU in the window, as a share of one core, per session.
    pub fn cpu_per_session(&self) -> f64 {
        let cpu = self.window_end.cpu.saturating_sub(self.window_start.cpu);
        cpu.as_secs_f64() / self.window.as_secs_f64() / self.sessions.max(1) as f64
    }

    /// The generator's CPU in the window, as a share of one core.
    pub fn generator_cpu(&self) -> f64 {
        let cpu = self.generator.1.cpu.saturating_sub(self.generator.0.cpu);
        cpu.as_secs_f64() / self.window.as_secs_f64()
    }

    /// Server memory added per session (resident at the end of the window over idle).
    pub fn memory_per_session(&self) -> f64 {
        self.window_end.rss.saturating_sub(self.idle.rss) as f64 / self.sessions.max(1) as f64
    }

    /// Frames sent and not received.
    pub fn frames_lost(&self) -> u64 {
        self.frames_sent.saturating_sub(self.frames_received)
    }
}

/// Per-session counters shared by its two sides.
#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    received: AtomicU64,
    late: AtomicU64,
    payload: AtomicU64,
    /// Set by the streamer side when it has sent its last frame.
    done_sending: AtomicBool,
    /// Set while the window runs: only then are latencies kept.
    measuring: AtomicBool,
}

/// One side's connection: the relay's (TLS, WebSocket) or the forwarder's (plain TCP).
enum Link {
    Relay(Box<Connection>),
    Plain {
        stream: TcpStream,
        decoder: FrameDecoder,
        buf: Vec<u8>,
    },
}

impl Link {
    async fn send(&mut self, msg: &Message) -> Result<()> {
        match self {
            Link::Relay(c) => Ok(c.send(msg).await?),
            Link::Plain { stream, .. } => Ok(stream.write_all(&encode_to_bytes(msg)?).await?),
        }
    }

    /// The next message. Cancel-safe: a message is either returned or stays to be read.
    async fn recv(&mut self) -> Result<Message> {
        match self {
            Link::Relay(c) => Ok(c.recv().await?),
            Link::Plain {
                stream,
                decoder,
                buf,
            } => loop {
                if let Some(m) = decoder.next_message()? {
                    return Ok(m);
                }
                let n = stream.read(buf).await?;
                if n == 0 {
                    bail!("the forwarder closed the connection");
                }
                decoder.feed(&buf[..n]);
            },
        }
    }

    async fn close(self) {
        match self {
            Link::Relay(c) => c.close().await,
            Link::Plain { mut stream, .. } => {
                let _ = stream.shutdown().await;
            }
        }
    }
}

/// A session whose two sides are connected and paired, ready to stream.
struct Paired {
    streamer: Link,
    technician: Link,
}

async fn pair(target: &Target, index: usize) -> Result<Paired> {
    match target {
        Target::Relay {
            addr,
            connector,
            token,
            team_key,
            technician_addr,
        } => {
            let mut streamer = connector.connect(addr).await?;
            let est = streamer
                .handshake(
                    Role::Streamer,
                    VERSION,
                    Credential::Attended {
                        team_key: team_key.clone(),
                        device_name: format!("Load {index}"),
                    },
                )
                .await?;
            let (code, _) = est.session_code.context("no session code")?;
            let mut technician = connector
                .connect(technician_addr.as_deref().unwrap_or(addr))
                .await?;
            technician
                .handshake(
                    Role::Technician,
                    VERSION,
                    Credential::TechnicianToken {
                        token: token.clone(),
                    },
                )
                .await?;
            technician
                .send(&Message::SessionRequest {
                    target: SessionTarget::Code { code },
                    view: protocol::ViewRequest::default(),
                })
                .await?;
            // A refused request never reaches the streamer: give up rather than wait for ever.
            let offer = tokio::time::timeout(Duration::from_secs(15), streamer.recv()).await;
            let session_id = match offer {
                Ok(Ok(Message::SessionOffer { session_id, .. })) => session_id,
                Ok(Ok(other)) => bail!("the streamer expected an offer, got {:?}", other.kind()),
                Ok(Err(e)) => bail!("the streamer's connection failed: {e}"),
                Err(_) => {
                    let answer =
                        tokio::time::timeout(Duration::from_secs(1), technician.recv()).await;
                    bail!("no offer within 15 s; the technician got {answer:?}")
                }
            };
            streamer
                .send(&Message::SessionAccept { session_id })
                .await?;
            loop {
                match technician.recv().await? {
                    Message::SessionStarted { .. } => break,
                    Message::SessionRefused { code, message } => {
                        bail!("session refused: {code:?} {message}")
                    }
                    _ => {}
                }
            }
            Ok(Paired {
                streamer: Link::Relay(Box::new(streamer)),
                technician: Link::Relay(Box::new(technician)),
            })
        }
        Target::Plain { addr } => {
            let id = u32::try_from(index)?;
            let mut technician = TcpStream::connect(addr).await?;
            technician.set_nodelay(true)?;
            technician
                .write_all(&forwarder_hello(id, Role::Technician))
                .await?;
            let mut streamer = TcpStream::connect(addr).await?;
            streamer.set_nodelay(true)?;
            streamer
                .write_all(&forwarder_hello(id, Role::Streamer))
                .await?;
            // The forwarder says when both halves are joined.
            let mut ack = [0u8; 1];
            streamer.read_exact(&mut ack).await?;
            let plain = |stream| Link::Plain {
                stream,
                decoder: FrameDecoder::new(),
                buf: vec![0; 64 * 1024],
            };
            Ok(Paired {
                streamer: plain(streamer),
                technician: plain(technician),
            })
        }
    }
}

/// Replays the fixture at its frame rate until `stop`, looping from the keyframe, and from the
/// keyframe at once when one is requested.
async fn stream(
    link: &mut Link,
    fixture: &Fixture,
    base: Instant,
    shared: &Shared,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<()> {
    link.send(&Message::VideoConfig(fixture.config)).await?;
    let interval = fixture.frame_interval();
    let mut next = 0usize;
    let mut due = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            m = link.recv() => match m? {
                Message::KeyframeRequest => next = 0,
                Message::SessionEnded { reason, message } => bail!("the session ended: {reason:?} {message}"),
                _ => {}
            },
            () = tokio::time::sleep_until(due) => {
                if stop.is_cancelled() {
                    return Ok(());
                }
                let now = tokio::time::Instant::now();
                if now.duration_since(due) > interval {
                    shared.late.fetch_add(1, Ordering::Relaxed);
                }
                let f = &fixture.frames[next];
                let frame = VideoFrame {
                    keyframe: f.keyframe,
                    timestamp_us: u64::try_from(base.elapsed().as_micros())?,
                    payload: f.payload.clone(),
                };
                let len = frame.payload.len() as u64;
                link.send(&Message::VideoFrame(frame)).await?;
                shared.sent.fetch_add(1, Ordering::Relaxed);
                shared.payload.fetch_add(len, Ordering::Relaxed);
                next = (next + 1) % fixture.frames.len();
                due += interval;
            }
        }
    }
}

/// Receives until the streamer side is done and every frame it sent has arrived (or `drain` passes
/// without progress); returns the latencies measured in the window.
async fn watch(
    link: &mut Link,
    base: Instant,
    shared: &Shared,
    drain: Duration,
) -> Result<Vec<u32>> {
    let mut latencies = Vec::new();
    loop {
        let done = shared.done_sending.load(Ordering::Acquire);
        if done && shared.received.load(Ordering::Relaxed) >= shared.sent.load(Ordering::Relaxed) {
            return Ok(latencies);
        }
        let m = match tokio::time::timeout(drain, link.recv()).await {
            Ok(m) => m?,
            Err(_) if done => return Ok(latencies),
            Err(_) => continue,
        };
        match m {
            Message::VideoFrame(f) => {
                let arrived = base.elapsed();
                shared.received.fetch_add(1, Ordering::Relaxed);
                if shared.measuring.load(Ordering::Relaxed) {
                    let sent = Duration::from_micros(f.timestamp_us);
                    let transit = arrived.saturating_sub(sent).as_micros();
                    latencies.push(u32::try_from(transit).unwrap_or(u32::MAX));
                }
            }
            Message::SessionEnded { reason, message } => {
                bail!("the session ended: {reason:?} {message}")
            }
            _ => {}
        }
    }
}

/// Runs `options.sessions` sessions of `fixture` against `target`; `probe` samples the server.
pub async fn run(
    target: Target,
    fixture: Arc<Fixture>,
    options: Options,
    probe: impl Fn() -> ProcSample,
) -> Result<Report> {
    let idle = probe();
    let setup_started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(
        options.setup_concurrency.max(1),
    ));
    let mut pairing = tokio::task::JoinSet::new();
    for i in 0..options.sessions {
        let (target, gate) = (target.clone(), gate.clone());
        pairing.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, pair(&target, i).await)
        });
    }
    let mut report = Report {
        sessions: options.sessions,
        idle,
        ..Report::default()
    };
    let mut paired = Vec::new();
    while let Some(r) = pairing.join_next().await {
        match r? {
            (i, Ok(p)) => paired.push((i, p)),
            (i, Err(e)) => report.failures.push(format!("session {i} setup: {e:#}")),
        }
    }
    report.setup = setup_started.elapsed();

    // Stream. Sessions start spread evenly over one keyframe period, as sessions that began at
    // different times are: started together, every session's keyframes would arrive in the same
    // instant, a burst real traffic does not have. The window opens once all have streamed a second.
    let stop = tokio_util::sync::CancellationToken::new();
    let spread = fixture.keyframe_period();
    let count = u32::try_from(paired.len().max(1))?;
    let mut sessions = tokio::task::JoinSet::new();
    let mut all_shared = Vec::new();
    for (i, p) in paired {
        let shared = Arc::new(Shared::default());
        all_shared.push(shared.clone());
        let (fixture, stop) = (fixture.clone(), stop.clone());
        let offset = spread * u32::try_from(all_shared.len() - 1)? / count;
        sessions.spawn(async move {
            tokio::time::sleep(offset).await;
            let Paired {
                mut streamer,
                mut technician,
            } = p;
            let base = Instant::now();
            let streaming = {
                let shared = shared.clone();
                async move {
                    let r = stream(&mut streamer, &fixture, base, &shared, &stop).await;
                    shared.done_sending.store(true, Ordering::Release);
                    (streamer, r)
                }
            };
            let watching = watch(&mut technician, base, &shared, Duration::from_secs(5));
            let ((streamer, sent), seen) = tokio::join!(streaming, watching);
            let outcome = match (sent, seen) {
                (Ok(()), Ok(latencies)) => Ok(latencies),
                (Err(e), _) => Err(format!("session {i} streamer: {e:#}")),
                (_, Err(e)) => Err(format!("session {i} technician: {e:#}")),
            };
            if outcome.is_ok() {
                let _ = technician.send(&Message::LeaveSession).await;
            }
            technician.close().await;
            streamer.close().await;
            outcome
        });
    }
    let warm_up = spread + Duration::from_secs(1);
    tokio::time::sleep(warm_up).await;
    for s in &all_shared {
        s.measuring.store(true, Ordering::Relaxed);
    }
    let window_started = Instant::now();
    report.window_start = probe();
    let generator_start = ProcSample::of(std::process::id()).unwrap_or_default();
    tokio::time::sleep(options.window).await;
    report.window_end = probe();
    report.generator = (
        generator_start,
        ProcSample::of(std::process::id()).unwrap_or_default(),
    );
    report.window = window_started.elapsed();
    for s in &all_shared {
        s.measuring.store(false, Ordering::Relaxed);
    }
    stop.cancel();

    while let Some(r) = sessions.join_next().await {
        match r? {
            Ok(latencies) => {
                report.held += 1;
                report.latencies_us.extend(latencies);
            }
            Err(e) => report.failures.push(e),
        }
    }
    for s in &all_shared {
        report.frames_sent += s.sent.load(Ordering::Relaxed);
        report.frames_received += s.received.load(Ordering::Relaxed);
        report.late_sends += s.late.load(Ordering::Relaxed);
        report.payload_bytes += s.payload.load(Ordering::Relaxed);
    }
    report.latencies_us.sort_unstable();
    Ok(report)
}

/// Makes the team the generated sessions use, in a relay's store: recording attended sessions when
/// `record`. Returns a technician's token and the team's attended-access key.
pub async fn provision(store: &relay::store::Store, record: bool) -> Result<(String, String)> {
    const EMAIL: &str = "owner@load.example";
    const PASSWORD: &str = "load-test-password-1";
    let created = store.create_team("Load", EMAIL, "Owner", PASSWORD).await?;
    let mut settings = store
        .team_settings(&created.team.id)
        .await?
        .context("the new team has settings")?;
    settings.record_attended = record;
    store.set_team_settings(&created.team.id, &settings).await?;
    let token = match store.sign_in(EMAIL, PASSWORD, 86_400_000).await? {
        Ok(signed_in) => signed_in.token,
        Err(denied) => bail!("the load team's owner cannot sign in: {denied:?}"),
    };
    Ok((token, created.team.attended_key))
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn forwarder_hello(id: u32, role: Role) -> [u8; 5] {
    let mut hello = [0u8; 5];
    hello[..4].copy_from_slice(&id.to_be_bytes());
    hello[4] = match role {
        Role::Technician => 1,
        Role::Streamer => 2,
    };
    hello
}

/// The baseline: pairs connections by the 5-byte hello the generator sends (session number, role)
/// and copies bytes both ways, with no TLS, no parsing and no recording.
#[derive(Debug)]
pub struct Forwarder;

impl Forwarder {
    /// Serves `listener` until the process ends.
    pub async fn serve(listener: TcpListener) -> Result<()> {
        let waiting: Arc<tokio::sync::Mutex<HashMap<u32, (u8, TcpStream)>>> = Arc::default();
        loop {
            let (mut socket, _) = listener.accept().await?;
            let waiting = waiting.clone();
            tokio::spawn(async move {
                socket.set_nodelay(true)?;
                let mut hello = [0u8; 5];
                socket.read_exact(&mut hello).await?;
                let id = u32::from_be_bytes([hello[0], hello[1], hello[2], hello[3]]);
                let other = {
                    let mut w = waiting.lock().await;
                    match w.remove(&id) {
                        Some(other) if other.0 != hello[4] => other.1,
                        Some(other) => {
                            w.insert(id, other);
                            bail!("two connections with the same role for session {id}");
                        }
                        None => {
                            w.insert(id, (hello[4], socket));
                            return Ok(());
                        }
                    }
                };
                let (mut streamer, mut technician) = if hello[4] == 2 {
                    (socket, other)
                } else {
                    (other, socket)
                };
                streamer.write_all(&[1]).await?;
                tokio::io::copy_bidirectional(&mut streamer, &mut technician).await?;
                anyhow::Ok(())
            });
        }
    }
}

/// The workspace's root.
fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A server child process, killed when dropped.
#[derive(Debug)]
pub struct Server {
    /// The process.
    pub child: std::process::Child,
    /// Its HTTPS port on 127.0.0.1.
    pub port: u16,
    /// Where the relay serves `/metrics` (`127.0.0.1:PORT`), when it was asked to.
    pub metrics: Option<String>,
}

impl Server {
    /// Starts `cmd` and waits for the line that names its port (`...127.0.0.1:PORT`), and then for
    /// the one that names its metrics address when `metrics` (the relay prints it next).
    pub fn start(mut cmd: std::process::Command, marker: &str, metrics: bool) -> Result<Self> {
        use std::io::BufRead as _;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting")?;
        let out = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(out).lines();
        let mut port = None;
        let mut metrics_addr = None;
        while port.is_none() || (metrics && metrics_addr.is_none()) {
            let Some(line) = lines.next() else {
                bail!("the server ended before listening");
            };
            let line = line?;
            if let Some(rest) = line.split(marker).nth(1) {
                port = Some(rest.trim().trim_start_matches("127.0.0.1:").parse()?);
            } else if let Some(rest) = line.split("metrics on http://").nth(1) {
                metrics_addr = Some(rest.trim().trim_end_matches("/metrics").to_owned());
            }
        }
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            child,
            port: port.unwrap_or_default(),
            metrics: metrics_addr,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (the relay drains its sessions and finishes its recordings), then waits.
    pub fn stop(mut self) -> Result<()> {
        std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the relay's release binary (with the benchmark switches) and returns its path.
pub fn relay_binary() -> Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(workspace())
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "relay",
            "--bin",
            "relay",
            // The switch for the run with the audit trail off (benchmark builds only).
            "--features",
            "bench-switches",
        ])
        .status()?;
    if !status.success() {
        bail!("building the relay failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), std::path::PathBuf::from);
    Ok(target.join("release/relay"))
}
