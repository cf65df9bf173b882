//! A shaped link for tests and benchmarks: a TCP proxy on 127.0.0.1 that carries one side's bytes
//! to the other at a rate, after a one-way delay, with losses, each changeable while it runs.
//!
//! The kernel here has no netem, and a TCP proxy cannot drop bytes (the TLS inside would break), so a
//! loss is what it costs a TCP stream: with the given probability per 1400-byte segment, that
//! segment and everything after it wait one retransmission timeout (`RTO`, 200 ms, Linux's floor)
//! before going on. The rate is a token bucket with a 16 KiB burst, like `tc tbf`.
//!
//! Each direction reads from its source only as fast as it can deliver, so a slow link pushes back
//! on the sender through TCP, as a real bottleneck does.
//!
//! [`Namespace`] is the kernel's version of the rate: a network namespace with a veth pair whose
//! host end `tc tbf` limits, so that a client run inside it (`ip netns exec`) crosses a real
//! interface with a real queue that drops; the proxy, listening on the pair's address, adds the
//! delay and losses.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One retransmission timeout: what a lost segment delays the stream by.
pub const RTO: Duration = Duration::from_millis(200);
const SEGMENT: usize = 1400;
const BURST: f64 = 16.0 * 1024.0;

/// How the link behaves now, the same in both directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Bits a second; `None` for no limit.
    pub rate_bps: Option<u64>,
    /// One-way delay (the round trip is twice this).
    pub delay: Duration,
    /// Probability that a segment is lost (0 to 1).
    pub loss: f64,
}

impl Shape {
    /// No limit, no delay, no loss.
    pub const OPEN: Shape = Shape {
        rate_bps: None,
        delay: Duration::ZERO,
        loss: 0.0,
    };
}

/// The proxy; dropping it stops accepting (connections already made go on until either end closes).
#[derive(Debug)]
pub struct ShapedLink {
    /// Where clients connect: `localhost:PORT` (listening on 127.0.0.1).
    pub addr: String,
    shape: Arc<Mutex<Shape>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ShapedLink {
    /// A proxy to `upstream` (`host:port`) shaped as `shape`.
    pub async fn start(upstream: &str, shape: Shape) -> std::io::Result<Self> {
        // By name: the relay's certificate is for localhost.
        Self::start_on("127.0.0.1", "localhost", upstream, shape).await
    }

    /// A link listening on address `ip` (port chosen), known to clients as `name:PORT`.
    pub async fn start_on(
        ip: &str,
        name: &str,
        upstream: &str,
        shape: Shape,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = format!("{name}:{}", listener.local_addr()?.port());
        let shape = Arc::new(Mutex::new(shape));
        let upstream = upstream.to_owned();
        let shared = shape.clone();
        let task = tokio::spawn(async move {
            let mut seed = 0x2545_f491u32;
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                tokio::spawn(carry(cr, sw, shared.clone(), seed));
                tokio::spawn(carry(sr, cw, shared.clone(), seed ^ 0x5555));
            }
        });
        Ok(Self { addr, shape, task })
    }

    /// Changes the shape from now on.
    pub fn set(&self, shape: Shape) {
        *self.shape.lock().unwrap_or_else(|e| e.into_inner()) = shape;
    }
}

/// One direction: segments read from `from`, each sent when the rate allows, `delay` after it was
/// read, later by `RTO` when lost.
async fn carry(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    shape: Arc<Mutex<Shape>>,
    mut seed: u32,
) {
    // Segments in flight (read, not yet delivered), with the time each may be written. Bounded by
    // what the rate lets through in the delay, plus one segment: the reader waits on the writer.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(64);
    let writer = tokio::spawn(async move {
        let mut to = to;
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at.into()).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut tokens = BURST;
    let mut refilled = Instant::now();
    let mut stalled_until = Instant::now();
    let mut buf = vec![0u8; SEGMENT];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now_shape = *shape.lock().unwrap_or_else(|e| e.into_inner());
        // The rate: wait until the bucket holds this segment's bits.
        if let Some(rate) = now_shape.rate_bps {
            let bits = (n * 8) as f64;
            loop {
                let now = Instant::now();
                tokens = (tokens + now.duration_since(refilled).as_secs_f64() * rate as f64 / 8.0)
                    .min(BURST);
                refilled = now;
                if tokens * 8.0 >= bits {
                    tokens -= bits / 8.0;
                    break;
                }
                let wait = (bits - tokens * 8.0) / rate as f64;
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
        }
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let roll = f64::from(seed >> 8) / f64::from(1u32 << 24);
        let now = Instant::now();
        if roll < now_shape.loss {
            stalled_until = stalled_until.max(now + RTO);
        }
        let at = (now + now_shape.delay).max(stalled_until);
        if tx.send((at, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Video frames as a technician received them: when each came, and how late, in milliseconds:
/// arrival minus capture time, less the promptest frame's, both on this side's clock (the queueing
/// a link adds, with no need for the two clocks to agree).
#[derive(Debug, Default)]
pub struct Arrivals {
    origin: Option<Instant>,
    promptest: Option<i128>,
    seen: Vec<(Instant, u64)>,
}

impl Arrivals {
    /// A frame with this `timestamp_us` arrived now.
    pub fn frame(&mut self, timestamp_us: u64) {
        let now = Instant::now();
        let origin = *self.origin.get_or_insert(now);
        let offset = now.duration_since(origin).as_micros() as i128 - i128::from(timestamp_us);
        let promptest = self.promptest.map_or(offset, |p| p.min(offset));
        self.promptest = Some(promptest);
        self.seen
            .push((now, u64::try_from((offset - promptest) / 1000).unwrap_or(0)));
    }

    /// How late each frame that arrived from `from` until `to` was, in milliseconds.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<u64> {
        self.seen
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, d)| *d)
            .collect()
    }

    /// Reads a session library's events for `span`, noting each frame; panics if it ends.
    pub async fn watch(&mut self, s: &mut technician::Session, span: Duration) {
        let until = Instant::now() + span;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, s.events.recv()).await {
                Ok(Some(technician::Event::Video(f))) => self.frame(f.timestamp_us),
                Ok(Some(technician::Event::Ended { reason, .. })) => panic!("ended: {reason:?}"),
                Ok(None) => panic!("the session stopped"),
                _ => {}
            }
        }
    }
}

/// The `q` quantile (0 to 1) of `v`, 0 when empty.
pub fn quantile(mut v: Vec<u64>, q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that echoes, and a client that sends `bytes` and reads them back: the time it took.
    async fn echo_time(shape: Shape, bytes: usize) -> Duration {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = server.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
        let link = ShapedLink::start(&upstream, shape).await.unwrap();
        let mut c = TcpStream::connect(&link.addr).await.unwrap();
        let started = Instant::now();
        let (mut r, mut w) = c.split();
        let data = vec![7u8; bytes];
        let (_, got) = tokio::join!(w.write_all(&data), async {
            let mut got = vec![0u8; bytes];
            r.read_exact(&mut got).await.unwrap();
            got
        });
        assert_eq!(got, data, "the link changes no byte");
        started.elapsed()
    }

    #[tokio::test]
    async fn delay_rate_and_loss_slow_the_stream_as_asked() {
        let open = echo_time(Shape::OPEN, 100).await;
        let delayed = echo_time(
            Shape {
                delay: Duration::from_millis(100),
                ..Shape::OPEN
            },
            100,
        )
        .await;
        // Two one-way delays for the round trip.
        assert!(
            delayed >= Duration::from_millis(200) && delayed > open,
            "{delayed:?}"
        );
        // 400 KB at 4 Mbit/s each way: at least 0.8 s (less the first burst).
        let limited = echo_time(
            Shape {
                rate_bps: Some(4_000_000),
                ..Shape::OPEN
            },
            400_000,
        )
        .await;
        assert!(limited >= Duration::from_millis(750), "{limited:?}");
        // Every segment lost: each waits a retransmission timeout.
        let lossy = echo_time(
            Shape {
                loss: 1.0,
                ..Shape::OPEN
            },
            100,
        )
        .await;
        assert!(lossy >= 2 * RTO, "{lossy:?}");
    }
}

/// A network namespace with a veth pair to this one, for traffic that crosses a real interface with
/// a kernel rate limit (`tc tbf` on the host's end: what reaches the namespace is limited), made
/// by [`Namespace::new`] and removed on drop. Addresses from a documentation range that no route
/// of this machine uses (the first of 198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24): `.1` this side,
/// `.2` the namespace's. Needs root and iproute2.
#[derive(Debug)]
pub struct Namespace {
    /// The namespace's name (`ip netns exec NAME ...`).
    pub name: String,
    /// This side's address on the pair (what a server listens on for the namespace).
    pub host_ip: String,
    host_if: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("{program} (package iproute2) is needed"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Namespace {
    /// Makes the namespace and the pair, both ends up, with no limit yet.
    pub fn new() -> anyhow::Result<Self> {
        let routes = std::process::Command::new("ip")
            .args(["-4", "route", "show", "table", "all"])
            .output()
            .map_err(|e| anyhow::anyhow!("ip (package iproute2) is needed: {e}"))?;
        let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
        let Some(net) = ["198.51.100", "203.0.113", "192.0.2"]
            .into_iter()
            .find(|net| !routes.contains(&format!("{net}.")))
        else {
            anyhow::bail!("every documentation range is in use on this machine: {routes}");
        };
        let tag = format!("{}{}", std::process::id() % 100_000, rand_tag());
        let ns = Self {
            name: format!("rst{tag}"),
            host_ip: format!("{net}.1"),
            host_if: format!("rsa{tag}"),
        };
        let peer = format!("rsb{tag}");
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns.name])?;
        ip(&["addr", "add", &format!("{net}.1/24"), "dev", &ns.host_if])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{net}.2/24"), "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Limits what this side sends into the namespace to `rate` (tc's units: `300kbit`, `4mbit`)
    /// with a token bucket (32 kbit burst, 400 ms of queue), or lifts the limit (`None`).
    pub fn limit(&self, rate: Option<&str>) -> anyhow::Result<()> {
        match rate {
            Some(rate) => run(
                "tc",
                &[
                    "qdisc",
                    "replace",
                    "dev",
                    &self.host_if,
                    "root",
                    "tbf",
                    "rate",
                    rate,
                    "burst",
                    "32kbit",
                    "latency",
                    "400ms",
                ],
            ),
            None => run("tc", &["qdisc", "del", "dev", &self.host_if, "root"]),
        }
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

fn rand_tag() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 1000)
        .unwrap_or(0)
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Removing the namespace removes its end of the pair, and with it this end.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}
