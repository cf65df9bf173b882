//! The technician's command-line client: sign in, list devices, connect, watch for N seconds, print
//! events, save the latest frame as PNG. Exits 2 when the relay refuses, with the code and the reason.
//!
//! During a session, lines typed on standard input are commands: `rate N` (frame rate), `monitor N`
//! (switch to the monitor with that id), `keyframe`, `clipboard TEXT` (put the rest of the line on
//! the remote computer's clipboard), `chat TEXT` (a line of chat to the end user), `send PATH` (a file to the remote computer's Downloads
//! folder), `get PATH` (the remote computer's file into `--files-into`), `cancel N` (transfer N),
//! `take N` and `decline N` (a file the remote computer offered unasked: it waits for one of
//! them), `leave`. Each is answered on standard output, the remote clipboard's text is printed as it
//! changes, the end user's chat lines as they come, and each transfer's start, every tenth of it, and its end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use openh264::formats::YUVSource;
use protocol::{SessionTarget, ViewRequest};
use technician::{Command, Event, Technician, TechnicianError};

/// Command-line technician client for recorded remote support.
#[derive(Debug, Parser)]
#[command(
    after_help = "During a session, type a command and Enter on standard input: \
    `rate N` (frame rate, 1 to 60), `monitor N` (the monitor with that id), `keyframe`, \
    `clipboard TEXT` (the rest of the line onto the remote clipboard), `chat TEXT` (a line of chat \
    to the end user), `send PATH`, `get PATH`, \
    `cancel N`, `take N` and `decline N` (a file the remote computer offered unasked), `leave`."
)]
struct Args {
    /// The relay, host:port.
    #[arg(long, env = "TECHNICIAN_RELAY")]
    relay: String,
    /// The CA certificate the relay's certificate chains to.
    #[arg(long, env = "TECHNICIAN_CA")]
    ca: PathBuf,
    /// Sign-in e-mail address.
    #[arg(long, env = "TECHNICIAN_EMAIL")]
    email: String,
    /// Sign-in password.
    #[arg(long, env = "TECHNICIAN_PASSWORD", hide_env_values = true)]
    password: String,
    /// Connect to this device (an id from the list).
    #[arg(long, conflicts_with = "code")]
    device: Option<String>,
    /// Connect with the 9-digit session code the end user read out.
    #[arg(long)]
    code: Option<String>,
    /// Seconds to watch before leaving.
    #[arg(long, default_value_t = 10)]
    watch: u64,
    /// Frame rate to start at (the streamer's default otherwise).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=60))]
    frame_rate: Option<u16>,
    /// Monitor to start on, by its id in the monitor list (the streamer's first otherwise).
    #[arg(long)]
    monitor: Option<u32>,
    /// Save the latest decoded frame here as PNG.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Where files fetched with `get` go (default: the Downloads folder).
    #[arg(long)]
    files_into: Option<PathBuf>,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut tech = Technician::sign_in(&args.relay, &args.ca, &args.email, &args.password).await?;
    if let Some(dir) = &args.files_into {
        tech.set_files_folder(dir);
    }
    println!("Signed in as {}.", tech.name);
    let devices = tech.devices().await?;
    println!("{} device(s):", devices.len());
    for d in &devices {
        println!(
            "  {}  {:<24} {:<8} streamer {}",
            d.id,
            d.name,
            match (d.online, d.busy) {
                (true, true) => "in a session",
                (true, false) => "online",
                _ => "offline",
            },
            d.streamer_version.as_deref().unwrap_or("-")
        );
    }
    let target = match (args.device, args.code) {
        (Some(device_id), _) => SessionTarget::Device { device_id },
        (_, Some(code)) => SessionTarget::Code {
            code: code.replace([' ', '-'], ""),
        },
        (None, None) => return Ok(()),
    };
    // The frame rate and monitor travel with the request: the stream starts as asked.
    let view = ViewRequest {
        frame_rate: args.frame_rate,
        monitor_id: args.monitor,
    };
    let mut session = tech.connect_with(target, view).await.map_err(|(_, e)| e)?;
    // Typed lines come from a thread of their own: a blocking read of standard input never holds up
    // the session, and a thread still waiting for input does not keep the process from exiting.
    let (lines_tx, mut typed) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut stdin_open = true;
    let mut decoder = openh264::decoder::Decoder::new().context("starting the H.264 decoder")?;
    let mut latest: Option<(Vec<u8>, usize, usize)> = None;
    let (mut frames, mut bytes, mut second) = (0u64, 0usize, Instant::now());
    let until = tokio::time::Instant::now() + Duration::from_secs(args.watch);
    let mut left = false;
    let mut transfers = Transfers::default();
    loop {
        let event = tokio::select! {
            e = session.events.recv() => e,
            _ = tokio::time::sleep_until(until), if !left => {
                left = true;
                let _ = session.commands.send(Command::Leave).await;
                continue;
            }
            line = typed.recv(), if stdin_open => {
                match line {
                    Some(line) => match typed_command(&line, &mut transfers.next_id) {
                        Ok(Some(cmd)) => {
                            left |= matches!(cmd, Command::Leave);
                            println!("> {}", line.trim());
                            let _ = session.commands.send(cmd).await;
                        }
                        Ok(None) => {}
                        Err(why) => println!("> {}: {why}", line.trim()),
                    },
                    // Standard input closed (or unreadable): watch on until the time is up.
                    None => stdin_open = false,
                }
                continue;
            }
            // Ctrl-C leaves the session cleanly, so the relay ends it "technician left".
            _ = tokio::signal::ctrl_c(), if !left => {
                left = true;
                println!("Ctrl-C: leaving the session.");
                let _ = session.commands.send(Command::Leave).await;
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            Event::Started {
                device_name,
                streamer_version,
                recorded,
                ..
            } => {
                println!("Connected to {device_name} (streamer {streamer_version}).");
                if recorded {
                    println!("RECORDING: this session is recorded by your team's policy.");
                }
            }
            Event::Recording(on) => println!(
                "Recording: {}",
                if on { "on, by team policy" } else { "off" }
            ),
            Event::Monitors(m) => println!(
                "Monitors: {}",
                m.iter()
                    .map(|m| format!("{} {}x{}", m.name, m.width, m.height))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Event::VideoConfig(c) => println!(
                "Video: {}x{} at {} fps, monitor {}, {}",
                c.width,
                c.height,
                c.frame_rate,
                c.monitor_id,
                match c.orientation {
                    protocol::Orientation::Landscape => "landscape",
                    protocol::Orientation::Portrait => "portrait",
                }
            ),
            Event::Video(f) => {
                frames += 1;
                bytes += f.payload.len();
                if let Ok(Some(image)) = decoder.decode(&f.payload) {
                    let (w, h) = image.dimensions();
                    let mut rgb = vec![0u8; w * h * 3];
                    image.write_rgb8(&mut rgb);
                    latest = Some((rgb, w, h));
                }
                if second.elapsed() >= Duration::from_secs(1) {
                    println!("  {frames} frames, {} KB", bytes / 1024);
                    second = Instant::now();
                }
            }
            Event::AudioConfig {
                sample_rate,
                channels,
            } => println!("Audio: Opus {sample_rate} Hz, {channels} channel(s)"),
            Event::Audio(_) => {}
            Event::AudioUnavailable(why) => println!("No audio: {why}"),
            Event::LimitWarning { time_left, limit } => println!(
                "WARNING: this recorded session ends in {} s: the relay ends recorded sessions \
                 after {} s.",
                time_left.as_secs(),
                limit.as_secs()
            ),
            Event::Picture(false) => println!(
                "No picture for {} s: the remote computer or the link is not sending.",
                technician::PICTURE_STALL.as_secs()
            ),
            Event::Picture(true) => println!("The picture is back."),
            Event::Tools(tools) => println!(
                "Tools: {}",
                tools
                    .iter()
                    .map(|g| format!("{} {}", tool_name(g.tool), state_name(g.state)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Event::Clipboard(text) => {
                println!(
                    "Remote clipboard ({} bytes): {}",
                    text.len(),
                    text.escape_debug()
                )
            }
            Event::Chat(text) => println!("Chat from the remote computer: {}", text.escape_debug()),
            Event::ToolRefused {
                tool,
                code,
                message,
            } => println!("Refused {} ({code}): {message}", tool_name(tool)),
            Event::Transfer(t) => transfers.print(&t),
            Event::Ended { reason, message } => {
                println!("Session ended ({}): {message}", reason.name());
                break;
            }
            Event::Lost { message, .. } => {
                println!("Connection lost: {message}");
                break;
            }
        }
    }
    let outcome = session.task.await;
    println!("{frames} frames received, {} KB.", bytes / 1024);
    if let (Some(path), Some((rgb, w, h))) = (args.png, latest) {
        image::save_buffer(
            &path,
            &rgb,
            w as u32,
            h as u32,
            image::ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("saving {}", path.display()))?;
        println!("Latest frame saved to {}.", path.display());
    }
    // A lost connection is a failure of the run, after what it received is reported and saved.
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(anyhow::anyhow!("the session's task failed: {e}")),
    }
}

fn tool_name(tool: protocol::Tool) -> &'static str {
    match tool {
        protocol::Tool::Clipboard => "clipboard",
        protocol::Tool::FileTransfer => "file transfer",
        protocol::Tool::Chat => "chat",
    }
}

fn state_name(state: protocol::ToolState) -> &'static str {
    match state {
        protocol::ToolState::Allowed => "allowed",
        protocol::ToolState::Forbidden => "forbidden by the team",
        protocol::ToolState::Unsupported => "not supported by the remote side",
    }
}

/// The session's transfers as the command line shows them: each one's start, every tenth, its end.
#[derive(Default)]
struct Transfers {
    next_id: u32,
    shown: std::collections::HashMap<u32, u64>,
}

impl Transfers {
    fn print(&mut self, t: &technician::Transfer) {
        use technician::{Direction, Transfer};
        let way = |d: &Direction| match d {
            Direction::Sending => "to the remote computer",
            Direction::Receiving => "from the remote computer",
        };
        match t {
            Transfer::Progress {
                id,
                direction,
                name,
                size,
                done,
                resumed_from,
            } => {
                let tenth = if *size == 0 { 10 } else { done * 10 / size };
                match self.shown.get(id) {
                    None => {
                        let resumed = if *resumed_from > 0 {
                            format!(", resumed at byte {resumed_from}")
                        } else {
                            String::new()
                        };
                        println!(
                            "File {id}: {name} ({size} bytes) {}{resumed}",
                            way(direction)
                        );
                    }
                    Some(last) if *last == tenth => return,
                    Some(_) => println!("File {id}: {}%", tenth * 10),
                }
                self.shown.insert(*id, tenth);
            }
            Transfer::Verified {
                id,
                name,
                size,
                path,
                sha256,
                ..
            } => {
                let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
                let at = path
                    .as_ref()
                    .map(|p| format!(", saved as {}", p.display()))
                    .unwrap_or_default();
                println!("File {id}: {name}, {size} bytes, verified (SHA-256 {hex}){at}");
            }
            Transfer::Stopped {
                id,
                name,
                outcome,
                message,
                ..
            } => println!("File {id}: {name} stopped ({outcome:?}): {message}"),
            Transfer::Offered { id, name, size } => println!(
                "File {id}: the remote computer offers {name} ({size} bytes), which you did not \
                 ask for: type `take {id}` to save it, or `decline {id}`."
            ),
        }
    }
}

/// A command typed during a session: `rate N`, `monitor N`, `keyframe`, `clipboard TEXT`,
/// `chat TEXT`, `send PATH`, `get PATH`, `cancel N`, `take N`, `decline N`, `leave`; `None` for an
/// empty line. Transfers are
/// numbered from 1 with `next_id`.
fn typed_command(line: &str, next_id: &mut u32) -> Result<Option<Command>, &'static str> {
    // The clipboard's text and the paths are the rest of the line, spaces and all.
    let rest = line.trim_start();
    if let Some(text) = rest.strip_prefix("clipboard ") {
        return Ok(Some(Command::Clipboard(text.to_owned())));
    }
    if let Some(text) = rest.strip_prefix("chat ") {
        return Ok(Some(Command::Chat(text.to_owned())));
    }
    let mut new_id = || {
        *next_id += 1;
        *next_id
    };
    if let Some(path) = rest
        .strip_prefix("send ")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        return Ok(Some(Command::SendFile {
            transfer_id: new_id(),
            path: PathBuf::from(path),
        }));
    }
    if let Some(path) = rest
        .strip_prefix("get ")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        return Ok(Some(Command::GetFile {
            transfer_id: new_id(),
            remote_path: path.to_owned(),
            into: None,
        }));
    }
    let mut words = line.split_whitespace();
    let (Some(verb), arg) = (words.next(), words.next()) else {
        return Ok(None);
    };
    if words.next().is_some() {
        return Err("one command a line: rate N, monitor N, keyframe, clipboard TEXT, chat TEXT, send PATH, get PATH, cancel N, take N, decline N, leave");
    }
    Ok(Some(match (verb, arg) {
        ("rate", Some(n)) => match n.parse::<u16>() {
            Ok(n) if (1..=60).contains(&n) => Command::SetFrameRate(n),
            _ => return Err("a frame rate is a number from 1 to 60"),
        },
        ("monitor", Some(n)) => {
            Command::SwitchMonitor(n.parse().map_err(|_| "a monitor is its id, a number")?)
        }
        ("keyframe", None) => Command::Keyframe,
        ("cancel", Some(n)) => {
            Command::CancelTransfer(n.parse().map_err(|_| "a transfer is its number")?)
        }
        ("take", Some(n)) => Command::TakeFile {
            transfer_id: n.parse().map_err(|_| "a transfer is its number")?,
            into: None,
        },
        ("decline", Some(n)) => {
            Command::DeclineFile(n.parse().map_err(|_| "a transfer is its number")?)
        }
        ("leave", None) => Command::Leave,
        _ => return Err(
            "unknown command: rate N, monitor N, keyframe, clipboard TEXT, chat TEXT, send PATH, get PATH, cancel N, take N, decline N, leave",
        ),
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("technician: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        // A refusal keeps its stable code; anything else is an error of ours or the network's.
        Err(e) => match e
            .downcast_ref::<TechnicianError>()
            .and_then(TechnicianError::code)
        {
            Some(code) => {
                eprintln!("Refused ({code}): {e}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("technician: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
