//! The relay binary as a process of its own (a crash or a fleet needs one), with what it printed
//! on start.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A relay process and what it printed on start.
pub struct RelayProcess {
    pub child: Child,
    /// `localhost:PORT` of its HTTPS port.
    pub addr: String,
    /// On a first start: the owner's e-mail, password and a deployment code.
    pub first_owner: Option<(String, String, String)>,
    /// On a first start: the team's attended access key.
    pub attended_key: Option<String>,
}

impl Drop for RelayProcess {
    /// A test that fails leaves no relay running: killed, and waited for.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts the relay binary with `args` and waits until it listens. Its stdout is read on; its
/// log goes to the test's output (warnings, or `RUST_LOG`).
// The child is returned to the caller, which always waits for it (`wait_exit`).
#[allow(clippy::zombie_processes)]
pub fn spawn(args: &[std::ffi::OsString]) -> RelayProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut email, mut password, mut code, mut attended_key) = (None, None, None, None);
    loop {
        let line = lines
            .next()
            .expect("the relay printed its address")
            .unwrap();
        let line = line.trim().to_owned();
        if let Some(v) = line.strip_prefix("sign in as:") {
            email = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("password:") {
            password = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("deployment code:") {
            code = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("attended key:") {
            attended_key = Some(v.trim().to_owned());
        } else if let Some(rest) = line.split("listening on https://").nth(1) {
            let port = rest.rsplit(':').next().unwrap().trim().to_owned();
            let first_owner = match (email, password, code) {
                (Some(e), Some(p), Some(c)) => Some((e, p, c)),
                _ => None,
            };
            // Keep reading stdout so the relay never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return RelayProcess {
                child,
                addr: format!("localhost:{port}"),
                first_owner,
                attended_key,
            };
        }
    }
}

/// Sends `signal` (`KILL`, `TERM`) to the process.
pub fn signal(child: &Child, signal: &str) {
    assert!(Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// Waits up to 15 s for the process to exit.
pub fn wait_exit(child: &mut Child) {
    for _ in 0..300 {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the relay did not exit");
}
