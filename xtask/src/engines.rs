//! The engines a fleet of relays runs on, started for the relay's test suite from Debian's
//! packages on free ports of 127.0.0.1, and stopped when dropped: a throwaway PostgreSQL cluster,
//! and a throwaway Ceph cluster with its RADOS gateway (S3).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Debian packages of the engines.
pub const ENGINE_PACKAGES: &[&str] = &[
    "postgresql",
    // Ceph's monitor, OSD, manager and RADOS gateway (about 290 MB).
    "radosgw",
    "ceph-mon",
    "ceph-osd",
    "ceph-mgr",
    // The script that starts them waits on the gateway and makes the bucket with it.
    "curl",
];

/// A free TCP port on 127.0.0.1 (free when asked; the engine binds it a moment later).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A command run as the `postgres` user when this is root (PostgreSQL refuses to run as root),
/// else as whoever runs this.
fn as_postgres(program: &Path) -> Command {
    if crate::is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// The newest PostgreSQL server installed from Debian's packages.
fn postgres_bin() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no PostgreSQL server under /usr/lib/postgresql"),
    }
}

/// A PostgreSQL cluster of its own in a temporary directory.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    /// `postgres://postgres@127.0.0.1:PORT`: a superuser, trusted on loopback.
    pub url: String,
}

impl Postgres {
    /// Makes and starts the cluster (about 3 s): C.UTF-8 (text sorts by code point, as SQLite's
    /// does), no fsync (a test cluster), room for every test's relay pool.
    pub fn start() -> Result<Self> {
        let bin = postgres_bin()?;
        let dir = std::env::temp_dir().join(format!("relay-postgres-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        if crate::is_root() {
            crate::run(Command::new("chown").args(["postgres:postgres"]).arg(&dir))?;
        }
        let data = dir.join("data");
        crate::run(
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--locale=C.UTF-8",
                    "-E",
                    "UTF8",
                ])
                .stdout(std::process::Stdio::null()),
        )?;
        let port = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=500",
            dir.display()
        );
        crate::run(
            as_postgres(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-w", "-o", &options, "start"]),
        )?;
        Ok(Self {
            dir,
            bin,
            url: format!("postgres://postgres@127.0.0.1:{port}"),
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Ceph cluster of its own (one monitor, one OSD in memory, one manager) and its RADOS gateway,
/// with a bucket and a user's keys (`xtask/engines/start-rgw.sh`; about 15 s).
pub struct Rgw {
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket made for the tests.
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Rgw {
    pub fn start() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("relay-rgw-{}", std::process::id()));
        let (rgw_port, mon_port) = (free_port()?, free_port()?);
        let bucket = "relay-tests".to_owned();
        let script = crate::workspace_root().join("xtask/engines/start-rgw.sh");
        eprintln!(
            "xtask: [{}] starting Ceph's RADOS gateway",
            crate::since_start()
        );
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg(rgw_port.to_string())
            .arg(mon_port.to_string())
            .arg(&bucket)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        // Whatever happens next, what was started is stopped when this is dropped.
        let mut rgw = Self {
            dir,
            endpoint: format!("http://127.0.0.1:{rgw_port}"),
            bucket,
            access_key: String::new(),
            secret_key: String::new(),
        };
        if !out.status.success() {
            bail!("{} failed with {}", script.display(), out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        match (lines.next(), lines.next()) {
            (Some(access), Some(secret)) => {
                rgw.access_key = access.to_owned();
                rgw.secret_key = secret.to_owned();
                Ok(rgw)
            }
            _ => bail!("{} printed no keys", script.display()),
        }
    }
}

impl Rgw {
    /// The `AWS_*` variables that reach this gateway with its keys.
    pub fn aws_env(&self) -> [(&'static str, &str); 5] {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
        ]
    }
}

impl Drop for Rgw {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(crate::workspace_root().join("xtask/engines/stop-rgw.sh"))
            .arg(&self.dir)
            .status();
    }
}

/// The relay's test binaries (its unit tests and each of `relay/tests/`) as the workspace's test
/// build made them: asking cargo for `-p relay` alone would resolve features for the relay alone
/// and build its dependencies again.
pub fn relay_test_binaries() -> Result<Vec<PathBuf>> {
    let out = crate::workspace_cargo()
        .args(["test", "--workspace", "--no-run", "--message-format=json"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("asking cargo for the test binaries")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed");
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let relay_target = msg["manifest_path"]
            .as_str()
            .is_some_and(|p| Path::new(p).ends_with("relay/Cargo.toml"));
        if msg["reason"] == "compiler-artifact" && relay_target && msg["profile"]["test"] == true {
            if let Some(exe) = msg["executable"].as_str() {
                binaries.push(PathBuf::from(exe));
            }
        }
    }
    if binaries.is_empty() {
        bail!("cargo listed no test binary of the relay");
    }
    Ok(binaries)
}
