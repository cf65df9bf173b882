//! The streamer agent's command line: attended (session code) or unattended (device credential).
//!
//! On Windows the exe is a GUI program (no console window opens beside the attended window when
//! the end user double-clicks it); started from a console, it writes to that console.

#![cfg_attr(windows, windows_subsystem = "windows")]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use protocol::ProductVersion;
use streamer_agent::agent::{self, AgentConfig, Mode, Notice};
use tokio_util::sync::CancellationToken;

/// Streamer agent for recorded remote support: shares this computer's screens with a technician
/// through the relay, and takes their mouse and keyboard input.
#[derive(Debug, Parser)]
struct Args {
    /// The relay, host:port (or `relay` in streamer-settings.toml beside this program).
    #[arg(long, env = "STREAMER_RELAY")]
    relay: Option<String>,
    /// The CA certificate the relay's certificate chains to (or `ca` in the settings file).
    #[arg(long, env = "STREAMER_CA")]
    ca: Option<PathBuf>,
    /// Attended: the team's attended-access key (prints a session code to read out).
    #[arg(long, env = "STREAMER_TEAM_KEY", conflicts_with_all = ["deployment_code", "credential_file"])]
    team_key: Option<String>,
    /// Unattended: where the device credential is kept.
    #[arg(
        long,
        env = "STREAMER_CREDENTIAL_FILE",
        default_value = "streamer-device.credential"
    )]
    credential_file: PathBuf,
    /// Unattended: the deployment code to register with on first start.
    #[arg(long, env = "STREAMER_DEPLOYMENT_CODE")]
    deployment_code: Option<String>,
    /// The computer's name as technicians see it.
    #[arg(long, env = "STREAMER_NAME")]
    name: Option<String>,
    /// The X display to share (default: $DISPLAY).
    #[arg(long, env = "STREAMER_DISPLAY")]
    display: Option<String>,
    /// Frames per second until the technician chooses.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=60))]
    frame_rate: u16,
    /// Attended: no window, the command line only.
    #[arg(long)]
    no_window: bool,
    /// Print the four-part product version and exit.
    #[arg(long)]
    product_version: bool,
    /// Announce this four-part version (such as 3.5.7.9) to the relay instead of this build's own:
    /// for support staff reproducing the recording gate's refusal, and for tests. The relay treats
    /// it like any version.
    #[arg(long, env = "STREAMER_ANNOUNCE_VERSION", value_name = "VERSION")]
    announce_version: Option<ProductVersion>,
    /// Where files the technician sends are written (default: the user's Downloads folder).
    #[arg(long, env = "STREAMER_DOWNLOADS", value_name = "DIR")]
    downloads: Option<PathBuf>,
}

fn main() -> ExitCode {
    #[cfg(windows)]
    windows_console::attach_parent();
    // Started by the service control manager (the MSI registers the exe with `--service`):
    // it logs to its own file, so this comes before the console's log set-up.
    #[cfg(windows)]
    if std::env::args().nth(1).as_deref() == Some("--service") {
        return match streamer_agent::service::run_dispatcher() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("streamer: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The service's capture helper, started by the service in the console user's session.
    #[cfg(windows)]
    if std::env::args().nth(1).as_deref() == Some("--helper") {
        let pipe = std::env::args().nth(2).unwrap_or_default();
        return match streamer_agent::helper::windows::run(&pipe) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("streamer: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The MSI's install prepares the service's data folder and takes the relay's CA into it.
    #[cfg(windows)]
    if std::env::args().nth(1).as_deref() == Some("--prepare-service-data") {
        let ca_file = std::env::args().nth(2).unwrap_or_default();
        return match streamer_agent::service::prepare_data(std::path::Path::new(&ca_file)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("streamer: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The MSI's uninstall removes what the service wrote (credential, log).
    #[cfg(windows)]
    if std::env::args().nth(1).as_deref() == Some("--remove-service-data") {
        return match streamer_agent::service::remove_data() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("streamer: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if std::env::args().any(|a| a == "--product-version") {
        return match streamer_agent::product_version() {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("streamer: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut args = Args::parse();
    // What the command line and the environment leave unset, the settings file beside the program
    // may give (an attended streamer started with a double click).
    match streamer_agent::settings::FileSettings::beside_program() {
        Ok(Some(file)) => {
            args.relay = args.relay.or(file.relay);
            args.ca = args.ca.or(file.ca);
            args.name = args.name.or(file.name);
            if args.team_key.is_none() && args.deployment_code.is_none() {
                args.team_key = file.team_key;
            }
        }
        Ok(None) => {}
        Err(e) => {
            fatal(&format!("{e:#}"));
            return ExitCode::FAILURE;
        }
    }
    let (Some(relay), Some(ca)) = (args.relay.clone(), args.ca.clone()) else {
        fatal(&format!(
            "no {} is set: give --relay HOST:PORT and --ca FILE, or put {} (relay = \"HOST:PORT\", ca = \"FILE\") beside this program",
            if args.relay.is_none() { "relay" } else { "CA certificate" },
            streamer_agent::settings::FILE_NAME
        ));
        return ExitCode::from(2);
    };
    // Linux: what the computer plays, not a microphone, as on Windows. Through ALSA's default
    // device, PulseAudio and PipeWire take the source from PULSE_SOURCE; `@DEFAULT_MONITOR@` is
    // the monitor of the default sink. Set before any thread starts; an operator's own choice is
    // kept. Plain ALSA ignores it. (Untested here: this machine has no sound server.)
    #[cfg(target_os = "linux")]
    if std::env::var_os("PULSE_SOURCE").is_none() {
        std::env::set_var("PULSE_SOURCE", "@DEFAULT_MONITOR@");
    }
    // The attended window goes on the display that is shared (GTK opens `$DISPLAY`).
    #[cfg(target_os = "linux")]
    if let Some(display) = &args.display {
        std::env::set_var("DISPLAY", display);
    }
    let name = args.name.clone().unwrap_or_else(|| {
        std::env::var("COMPUTERNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "This computer".into())
    });
    let mode = match args.team_key {
        Some(team_key) => Mode::Attended { team_key },
        None => Mode::Unattended {
            credential_file: args.credential_file,
            deployment_code: args.deployment_code,
        },
    };
    let config = AgentConfig {
        relay,
        ca_file: ca,
        mode,
        device_name: name,
        display: args.display.clone(),
        frame_rate: args.frame_rate,
        announced_version: args.announce_version,
        downloads: args.downloads.clone(),
        chat_input: None,
    };
    // Attended: what the end user types on the terminal, a line at a time, is chat for the
    // technician (while a session allows it).
    let attended = matches!(config.mode, Mode::Attended { .. });
    let (chat_lines, chat_input) = agent::ChatInput::new();
    let config = AgentConfig {
        chat_input: attended.then_some(chat_input),
        ..config
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            fatal(&format!("cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    // Physical pixels for the window, capture and input alike: before any window exists.
    #[cfg(windows)]
    streamer_agent::capture::gdi::make_dpi_aware();
    // Attended: the window that shows the code, who is connected and the recording, with its End
    // session button (which cancels `shutdown`, as Ctrl-C does).
    let window = if matches!(config.mode, Mode::Attended { .. }) && !args.no_window {
        streamer_agent::window::show(shutdown.clone(), attended.then(|| chat_lines.clone()))
    } else {
        None
    };
    let to_window = window.as_ref().map(|w| w.notices());
    let result = runtime.block_on(async move {
        let on_signal = shutdown.clone();
        // Ctrl-C from the end user, SIGTERM from a service manager: both end a running session with a
        // goodbye, then stop.
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                let terminated = async {
                    match term.as_mut() {
                        Some(t) => {
                            t.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminated => {}
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            on_signal.cancel();
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Notice>();
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                if let Some(w) = &to_window {
                    let _ = w.send(n.clone());
                }
                if let Some(words) = n.words() {
                    println!("{words}");
                }
                if let Notice::SessionStarted { .. } = n {
                    println!("Press Ctrl-C to end the session.");
                }
            }
        });
        if attended {
            // A blocking read of standard input on a thread of its own; it ends with the input
            // (a streamer started without a terminal reads nothing).
            std::thread::spawn(move || {
                for line in std::io::stdin().lines() {
                    let Ok(line) = line else { break };
                    if chat_lines.blocking_send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let platform = agent::native_platform(args.display)?;
        agent::run(config, platform, tx, shutdown).await
    });
    if let Some(window) = window {
        window.close();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Tells the person who started the streamer why it cannot go on: on its standard error, and on
/// Windows, when it has none (started with a double click), in a message box, so that the program
/// does not vanish without a word.
fn fatal(message: &str) {
    eprintln!("streamer: {message}");
    #[cfg(windows)]
    if !windows_console::has_stderr() {
        windows_console::message_box(message);
    }
}

#[cfg(windows)]
mod windows_console {
    use windows::core::HSTRING;
    use windows::Win32::System::Console::{
        AttachConsole, GetStdHandle, ATTACH_PARENT_PROCESS, STD_ERROR_HANDLE,
    };
    use windows::Win32::UI::WindowsAndMessaging::{MessageBoxW, MB_ICONERROR, MB_OK};

    /// Started from a console (a command line): its output goes there. A double click has no
    /// console to attach to, and nothing is shown.
    #[allow(unsafe_code)]
    pub fn attach_parent() {
        if !has_stderr() {
            // SAFETY: no arguments but a constant; fails harmlessly without a parent console.
            let _ = unsafe { AttachConsole(ATTACH_PARENT_PROCESS) };
        }
    }

    /// Whether standard error goes somewhere (a console, a pipe or a file given by the starter).
    #[allow(unsafe_code)]
    pub fn has_stderr() -> bool {
        // SAFETY: reads this process's standard handle.
        unsafe { GetStdHandle(STD_ERROR_HANDLE) }.is_ok_and(|h| !h.is_invalid() && !h.0.is_null())
    }

    /// A message box with the product's name as its title.
    #[allow(unsafe_code)]
    pub fn message_box(message: &str) {
        // SAFETY: two strings that live for the call, no owner window.
        unsafe {
            MessageBoxW(
                None,
                &HSTRING::from(message),
                &HSTRING::from(streamer_agent::PRODUCT_NAME),
                MB_OK | MB_ICONERROR,
            );
        }
    }
}
