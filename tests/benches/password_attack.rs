//! Benchmark: one team's API latency while the relay is attacked with password work, against the
//! same team's latency on an idle relay, in one run (the ratio is the figure: this machine is
//! shared and noisy).
//!
//! Run: `cargo bench -p system-tests --bench password_attack [-- --rounds R --seconds S
//! --addresses N]` (defaults: 4 rounds of 5 s idle then 5 s attacked, 200 client addresses).
//! Method and results: docs/PERFORMANCE.md, "API latency while another team is attacked".
//!
//! The relay is the release binary (`target/release/relay`), a child process on a fresh data
//! directory (SQLite, local disk) with two teams. Team A's owner asks `GET /api/v1/team` one
//! request after another over one kept-alive connection, in rounds that alternate an idle phase
//! (the attack paused, 2 s to settle) and an attacked phase, so that both see the same noise on
//! this shared machine; the samples of each kind are pooled. The attack:
//! - team B's member sends `PUT /api/v1/me/password` with wrong current passwords on 8
//!   connections at once (security review finding 7: each was an argon2 check on the relay's
//!   async workers, unthrottled);
//! - unauthenticated clients sign in with made-up addresses from `--addresses` client addresses
//!   (127.0.x.y, each under the per-address limit), 16 at a time: each is an argon2 check of the
//!   dummy hash, and an audit row.
//!
//! The attack's clients run in this process on a runtime of their own (two threads), team A's
//! client on another; the relay runs argon2 on threads of its own, half the cores, at a lower
//! priority.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use system_tests::load::{relay_binary, Server};

const PASSWORD: &str = "bench-password-correct-1";

struct Args {
    rounds: u32,
    seconds: u64,
    addresses: u16,
}

fn args() -> Args {
    let mut out = Args {
        rounds: 4,
        seconds: 5,
        addresses: 200,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        match (argv[i].as_str(), argv.get(i + 1)) {
            ("--rounds", Some(v)) => out.rounds = v.parse().expect("--rounds N"),
            ("--seconds", Some(v)) => out.seconds = v.parse().expect("--seconds N"),
            ("--addresses", Some(v)) => out.addresses = v.parse().expect("--addresses N"),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    out
}

fn client(ca: &reqwest::Certificate, from: Option<IpAddr>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .pool_max_idle_per_host(4);
    if let Some(ip) = from {
        b = b.local_address(ip);
    }
    b.build().unwrap()
}

async fn sign_in(c: &reqwest::Client, base: &str, email: &str) -> Result<String> {
    let r: serde_json::Value = c
        .post(format!("{base}/api/v1/sign-in"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    Ok(r["token"].as_str().context("a token")?.to_owned())
}

/// Team A's requests for `secs`, one after another: their latencies in microseconds, sorted.
async fn measure(c: &reqwest::Client, base: &str, token: &str, secs: u64) -> Vec<u64> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        let r = c
            .get(format!("{base}/api/v1/team"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let _ = r.bytes().await.unwrap();
        out.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    out.sort_unstable();
    out
}

/// Counts an attack request's answer: paused (429) or answered (the relay did its work).
fn count(r: &reqwest::Result<reqwest::Response>, answered: &AtomicU64, refused: &AtomicU64) {
    if let Ok(r) = r {
        let which = if r.status().as_u16() == 429 {
            refused
        } else {
            answered
        };
        which.fetch_add(1, Ordering::Relaxed);
    }
}

fn quantile_ms(sorted: &[u64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() -> Result<()> {
    let args = args();
    let binary = relay_binary()?;
    let data = tempfile::tempdir()?;
    // Team A's client on a runtime of its own: its requests never queue behind the attack's
    // tasks in this process (the attack runs on `attack`'s two worker threads).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let attack_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let attack = attack_runtime.handle().clone();
    rt.block_on(async {
        // Two teams, made through the relay's own store before it starts.
        let clock: relay::clock::SharedClock = Arc::new(relay::clock::SystemClock);
        let store =
            relay::store::Store::open(&relay::store::sqlite_url(data.path()), clock).await?;
        store
            .create_team("A", "owner@a.example", "Owner A", PASSWORD)
            .await?;
        let b = store
            .create_team("B", "owner@b.example", "Owner B", PASSWORD)
            .await?;
        store
            .add_user(
                &b.team.id,
                "member@b.example",
                "Member B",
                relay::store::UserRole::Member,
                PASSWORD,
            )
            .await?;
        store.close().await;

        let mut cmd = std::process::Command::new(&binary);
        cmd.args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .env("RUST_LOG", "error")
            .stderr(std::process::Stdio::null());
        let server = Server::start(cmd, "listening on https://", false)?;
        let base = format!("https://localhost:{}", server.port);
        let ca = reqwest::Certificate::from_pem(&std::fs::read(
            data.path().join("tls/dev-ca.pem"),
        )?)?;
        let a = client(&ca, None);
        let a_token = sign_in(&a, &base, "owner@a.example").await?;
        let b_token = sign_in(&a, &base, "member@b.example").await?;
        // Warm the connection and the relay's caches.
        measure(&a, &base, &a_token, 1).await;

        let stop = Arc::new(AtomicBool::new(false));
        // The attack runs while this is set, and waits while it is not.
        let active = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let mut attackers = Vec::new();
        // Team B's member guessing the current password, 8 connections at once.
        for i in 0..8 {
            let (c, base, token) = (client(&ca, None), base.clone(), b_token.clone());
            let (stop, answered, refused) = (stop.clone(), answered.clone(), refused.clone());
            let active = active.clone();
            attackers.push(attack.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if !active.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    n += 1;
                    let r = c
                        .put(format!("{base}/api/v1/me/password"))
                        .bearer_auth(&token)
                        .json(&json!({
                            "current_password": format!("guess-{i}-{n}-xxxxxxxx"),
                            "new_password": "a brand new passphrase"
                        }))
                        .send()
                        .await;
                    count(&r, &answered, &refused);
                }
            }));
        }
        // Unauthenticated sign-ins from many client addresses, 16 at a time.
        let addresses: Vec<IpAddr> = (0..args.addresses)
            .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 1 + (n / 250) as u8, 1 + (n % 250) as u8)))
            .collect();
        let next_address = Arc::new(AtomicU64::new(0));
        for _ in 0..16 {
            let (base, ca) = (base.clone(), ca.clone());
            let (addresses, next_address) = (addresses.clone(), next_address.clone());
            let (stop, answered, refused) = (stop.clone(), answered.clone(), refused.clone());
            let active = active.clone();
            attackers.push(attack.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if !active.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    let k = next_address.fetch_add(1, Ordering::Relaxed) as usize;
                    let c = client(&ca, Some(addresses[k % addresses.len()]));
                    // 40 guesses from each address: under its limit of 50.
                    for _ in 0..40 {
                        if stop.load(Ordering::Relaxed) || !active.load(Ordering::Relaxed) {
                            break;
                        }
                        n += 1;
                        let r = c
                            .post(format!("{base}/api/v1/sign-in"))
                            .json(&json!({"email": format!("nobody-{k}-{n}@x.example"), "password": "guess"}))
                            .send()
                            .await;
                        count(&r, &answered, &refused);
                    }
                }
            }));
        }
        let (mut idle, mut attacked, mut during) = (Vec::new(), Vec::new(), 0);
        let mut rounds = Vec::new();
        for _ in 0..args.rounds {
            active.store(false, Ordering::Relaxed);
            // What the attack had in flight (a paused try is answered after 1 s) settles first.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let quiet = measure(&a, &base, &a_token, args.seconds).await;
            active.store(true, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let before = answered.load(Ordering::Relaxed);
            let loud = measure(&a, &base, &a_token, args.seconds).await;
            during += answered.load(Ordering::Relaxed) - before;
            rounds.push((
                quantile_ms(&quiet, 0.5),
                quantile_ms(&quiet, 0.99),
                quantile_ms(&loud, 0.5),
                quantile_ms(&loud, 0.99),
            ));
            idle.extend(quiet);
            attacked.extend(loud);
        }
        idle.sort_unstable();
        attacked.sort_unstable();
        let attacked_secs = args.seconds * u64::from(args.rounds);
        stop.store(true, Ordering::Relaxed);
        for t in attackers {
            let _ = t.await;
        }
        server.stop()?;

        println!(
            "password_attack: {} rounds of {} s idle and {} s attacked, {} client addresses, {} cores",
            args.rounds,
            args.seconds,
            args.seconds,
            args.addresses,
            std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get)
        );
        println!(
            "  idle:     {} requests, median {:.2} ms, p99 {:.2} ms",
            idle.len(),
            quantile_ms(&idle, 0.5),
            quantile_ms(&idle, 0.99)
        );
        println!(
            "  attacked: {} requests, median {:.2} ms, p99 {:.2} ms ({} attack requests answered in the phases, {:.0}/s; {} paused 429 in all)",
            attacked.len(),
            quantile_ms(&attacked, 0.5),
            quantile_ms(&attacked, 0.99),
            during,
            during as f64 / attacked_secs as f64,
            refused.load(Ordering::Relaxed)
        );
        for (i, (im, ip, am, ap)) in rounds.iter().enumerate() {
            println!(
                "  round {}: idle median {im:.2} ms p99 {ip:.2} ms, attacked median {am:.2} ms p99 {ap:.2} ms",
                i + 1
            );
        }
        println!(
            "  ratio attacked/idle (pooled): median {:.2}x, p99 {:.2}x",
            quantile_ms(&attacked, 0.5) / quantile_ms(&idle, 0.5),
            quantile_ms(&attacked, 0.99) / quantile_ms(&idle, 0.99)
        );
        anyhow::Ok(())
    })
}
