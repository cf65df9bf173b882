//! A small WebDriver client for the technician app's window (`tauri-driver`, which starts
//! WebKitWebDriver, which starts the app, on a virtual display of its own made by `xvfb-run`) and
//! for the console in headless Chromium (`chromedriver`).
//!
//! Only the commands the tests use: new session, navigate, find, click, type, text, script,
//! screenshot.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};

/// A WebDriver server (`tauri-driver` under `xvfb-run`, or `chromedriver`) in a process group of its
/// own, so that it and everything it starts (WebKitWebDriver, the app, Xvfb, Chromium) stop together.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

/// `tauri-driver`: on the PATH, or in cargo's bin directory where `cargo install` puts it.
fn tauri_driver() -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("tauri-driver"))
        .find(|p| p.exists());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    on_path
        .or_else(|| cargo_home.map(|c| c.join("bin/tauri-driver")))
        .unwrap_or_else(|| "tauri-driver".into())
}

/// A free port on 127.0.0.1 (bound on port 0, then released for the driver to take).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The technician app's driver.
pub type TauriDriver = Driver;

impl Driver {
    /// Starts `tauri-driver` under `xvfb-run` and waits until it answers.
    pub async fn start() -> Result<Self> {
        let (port, native) = (free_port()?, free_port()?);
        let mut cmd = Command::new("xvfb-run");
        // No access control on that display (`-ac`): a test reads its screen (`display`).
        cmd.args(["-a", "-s", "-ac -screen 0 1400x900x24"])
            .arg(tauri_driver())
            .arg("--port")
            .arg(port.to_string())
            .arg("--native-port")
            .arg(native.to_string());
        Self::spawn(
            cmd,
            port,
            "xvfb-run (package xvfb) and tauri-driver (cargo install tauri-driver) are needed; \
             `cargo xtask test` installs both",
        )
        .await
    }

    /// The X display (`:N`) that `xvfb-run` made for the driver and the app, read from the
    /// environment of a process under it (the display has no access control).
    pub fn display(&self) -> Result<String> {
        let ppid = |pid: u32| -> Option<u32> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces, so count from its closing ')'.
            stat.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        let root = self.child.id();
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let (mut p, mut under) = (pid, false);
            for _ in 0..16 {
                match ppid(p) {
                    Some(q) if q == root => {
                        under = true;
                        break;
                    }
                    Some(q) if q > 1 => p = q,
                    _ => break,
                }
            }
            if !under {
                continue;
            }
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if let Some(d) = env
                .split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(b"DISPLAY="))
            {
                return Ok(String::from_utf8_lossy(d).into_owned());
            }
        }
        bail!("no process under the driver has a DISPLAY")
    }

    /// Starts `chromedriver` with `home` as the browser's home directory (where its certificate
    /// database is) and waits until it answers.
    pub async fn chromium(home: &Path) -> Result<Self> {
        let port = free_port()?;
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}")).env("HOME", home);
        Self::spawn(
            cmd,
            port,
            "chromedriver (package chromium-driver) is needed; `cargo xtask test` installs it",
        )
        .await
    }

    async fn spawn(mut cmd: Command, port: u16, missing: &'static str) -> Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .context(missing)?;
        let driver = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: crate::http_client(),
        };
        let started = Instant::now();
        loop {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(driver);
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the WebDriver server did not answer on port {port} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the app (`application` with `args`) and opens a WebDriver session on its window.
    pub async fn open(&self, application: &Path, args: &[String]) -> Result<AppWindow> {
        self.session(json!({"capabilities": {"alwaysMatch": {
            "tauri:options": {"application": application, "args": args}
        }}}))
        .await
    }

    /// Starts headless Chromium (Debian's) with a fresh profile in `profile`.
    pub async fn open_chromium(&self, profile: &Path) -> Result<AppWindow> {
        self.session(json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,900",
                    "--autoplay-policy=no-user-gesture-required",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}}))
        .await
    }

    async fn session(&self, caps: Value) -> Result<AppWindow> {
        let v = call(
            &self.http,
            "POST",
            &format!("{}/session", self.base),
            Some(caps),
        )
        .await?;
        let id = v["sessionId"]
            .as_str()
            .context("the driver answered without a session id")?;
        Ok(AppWindow {
            base: format!("{}/session/{id}", self.base),
            http: self.http.clone(),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let req = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url).json(&body.unwrap_or_else(|| json!({}))),
    };
    let resp = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let v: Value = resp
        .json()
        .await
        .with_context(|| format!("{method} {url}"))?;
    if !status.is_success() {
        bail!("{method} {url}: {status}: {}", v["value"]);
    }
    Ok(v.get("value").cloned().unwrap_or(Value::Null))
}

/// The app's window, driven through WebDriver.
#[derive(Debug)]
pub struct AppWindow {
    base: String,
    http: reqwest::Client,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl AppWindow {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        call(&self.http, method, &format!("{}{path}", self.base), body).await
    }

    /// Goes to `url`.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.call("POST", "/url", Some(json!({"url": url})))
            .await
            .map(drop)
    }

    /// Runs `script` (an async function body; `arguments` holds `args`, and the last argument is the
    /// callback that returns the value) in the page.
    pub async fn script_async(&self, script: &str, args: Value) -> Result<Value> {
        self.call(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The element that `css` selects, or an error.
    pub async fn find(&self, css: &str) -> Result<String> {
        let v = self
            .call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no element for {css}: {v}"))
    }

    /// Clicks what `css` selects.
    pub async fn click(&self, css: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.call("POST", &format!("/element/{el}/click"), None)
            .await
            .map(drop)
    }

    /// Types `text` into what `css` selects, after clearing it.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.call("POST", &format!("/element/{el}/clear"), None)
            .await?;
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await
        .map(drop)
    }

    /// Sends keys to what `css` selects, as typed (WebDriver's key codes for special keys, e.g.
    /// `\u{E014}` for the right arrow), without clearing it first.
    pub async fn send_keys(&self, css: &str, keys: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({"text": keys})),
        )
        .await
        .map(drop)
    }

    /// Types `keys` with the keyboard into whatever has the focus (WebDriver's key actions), as a
    /// person would, without choosing an element first.
    pub async fn press_keys(&self, keys: &str) -> Result<()> {
        let mut actions = Vec::new();
        for c in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": c.to_string()}));
            actions.push(json!({"type": "keyUp", "value": c.to_string()}));
        }
        self.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await
        .map(drop)
    }

    /// Resizes the window (a phone's width, say).
    pub async fn set_size(&self, width: u32, height: u32) -> Result<()> {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await
        .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its value.
    pub async fn script(&self, script: &str, args: Value) -> Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The visible text of what `css` selects, or `None` when nothing is selected or it is hidden.
    pub async fn visible_text(&self, css: &str) -> Result<Option<String>> {
        let v = self
            .script(
                "const e = document.querySelector(arguments[0]);
                 // Hidden (or inside something hidden): no boxes. Fixed-position elements have no
                 // offsetParent even when shown, so that is not the test.
                 if (!e || e.getClientRects().length === 0) return null;
                 if (getComputedStyle(e).visibility === 'hidden') return null;
                 return e.innerText;",
                json!([css]),
            )
            .await?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// Waits until what `css` selects is visible with text for which `ok` holds; returns the text.
    pub async fn wait_text(
        &self,
        css: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < timeout {
            last = self.visible_text(css).await?;
            if let Some(t) = &last {
                if ok(t) {
                    return Ok(t.clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{css} did not show the expected text within {timeout:?}; last seen: {last:?}")
    }

    /// A PNG screenshot of the window's page.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.call("GET", "/screenshot", None).await?;
        let b64 = v.as_str().context("screenshot is not text")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
    }

    /// Ends the WebDriver session, which closes the app.
    pub async fn close(self) -> Result<()> {
        self.call("DELETE", "", None).await.map(drop)
    }
}

/// Makes `home` a home directory whose certificate database (NSS, which Chromium reads) trusts the CA
/// in `ca_pem` for servers, as an operator would install a relay's development CA.
pub fn trust_ca_for_chromium(home: &Path, ca_pem: &Path) -> Result<()> {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db)?;
    let db = format!("sql:{}", db.display());
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("certutil").args(args).output().context(
            "certutil (package libnss3-tools) is needed; `cargo xtask test` installs it",
        )?;
        if !out.status.success() {
            bail!(
                "certutil {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    run(&["-d", &db, "-N", "--empty-password"])?;
    let ca = ca_pem.display().to_string();
    run(&[
        "-d",
        &db,
        "-A",
        "-t",
        "C,,",
        "-n",
        "relay-dev-ca",
        "-i",
        &ca,
    ])
}
