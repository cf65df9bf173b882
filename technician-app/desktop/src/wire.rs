//! What crosses from the app's Rust side to its webview: one binary message per session event, in
//! the order the relay sent them, on one Tauri channel (so that a configuration change can never
//! overtake the frames before it).
//!
//! Video travels as raw bytes, never base64 or JSON:
//!
//! ```text
//! 0x01 | flags u8 (bit 0: keyframe) | timestamp_us u64 LE | H.264 access unit (Annex B)
//! ```
//!
//! Every other event is small and rare, and travels as UTF-8 JSON after a 0x02 byte:
//!
//! ```text
//! 0x02 | {"type": "...", ...}
//! ```

use protocol::{MonitorInfo, Orientation, Tool, ToolState, VideoConfig};
use serde_json::{json, Value};
use technician::Event;

/// First byte of a video message.
pub const VIDEO: u8 = 1;
/// First byte of a JSON event.
pub const JSON: u8 = 2;

/// The message for one event, or `None` for events the app does not show (audio).
pub fn encode(event: &Event) -> Option<Vec<u8>> {
    let value = match event {
        Event::Video(frame) => {
            let mut out = Vec::with_capacity(10 + frame.payload.len());
            out.push(VIDEO);
            out.push(u8::from(frame.keyframe));
            out.extend_from_slice(&frame.timestamp_us.to_le_bytes());
            out.extend_from_slice(&frame.payload);
            return Some(out);
        }
        Event::Started {
            session_id,
            device_name,
            streamer_version,
            recorded,
        } => json!({
            "type": "started",
            "sessionId": session_id,
            "deviceName": device_name,
            "streamerVersion": streamer_version,
            "recorded": recorded,
        }),
        Event::Recording(recorded) => json!({"type": "recording", "recorded": recorded}),
        Event::Monitors(monitors) => json!({
            "type": "monitors",
            "monitors": monitors.iter().map(monitor_json).collect::<Vec<_>>(),
        }),
        Event::VideoConfig(config) => config_json(config),
        Event::LimitWarning { time_left, limit } => json!({
            "type": "limitWarning",
            "timeLeftMs": u64::try_from(time_left.as_millis()).unwrap_or(u64::MAX),
            "limitSecs": limit.as_secs(),
        }),
        Event::Picture(flowing) => json!({"type": "picture", "flowing": flowing}),
        Event::Ended { reason, message } => json!({
            "type": "ended",
            "reason": reason.name(),
            "message": message,
        }),
        Event::Lost { code, message } => json!({
            "type": "lost",
            "code": code.map_or("LINK", |c| c.name()),
            "message": message,
        }),
        Event::AudioUnavailable(reason) => json!({"type": "audioUnavailable", "reason": reason}),
        Event::Tools(tools) => {
            let state = |tool: Tool| {
                tools
                    .iter()
                    .find(|g| g.tool == tool)
                    .map_or("unsupported", |g| state_name(g.state))
            };
            json!({
                "type": "tools",
                "clipboard": state(Tool::Clipboard),
                "fileTransfer": state(Tool::FileTransfer),
                "chat": state(Tool::Chat),
            })
        }
        Event::Transfer(t) => transfer_json(t),
        // The page shows it with textContent: words, never markup.
        Event::Chat(text) => json!({"type": "chat", "text": text}),
        Event::ToolRefused {
            tool,
            code,
            message,
        } => json!({
            "type": "toolRefused",
            "tool": tool_name(*tool),
            "code": code.name(),
            "message": message,
        }),
        // The text goes onto the local clipboard, never into the page; the clipboard's thread
        // tells the page how much arrived.
        Event::Clipboard(_) => return None,
        // The app does not play audio yet; the command-line client and library report it.
        Event::AudioConfig { .. } | Event::Audio(_) => return None,
    };
    Some(json_message(&value))
}

/// A JSON event message.
pub fn json_message(value: &Value) -> Vec<u8> {
    let text = value.to_string();
    let mut out = Vec::with_capacity(1 + text.len());
    out.push(JSON);
    out.extend_from_slice(text.as_bytes());
    out
}

fn transfer_json(t: &technician::Transfer) -> Value {
    use technician::{Direction, Transfer};
    let way = |d: &Direction| match d {
        Direction::Sending => "sending",
        Direction::Receiving => "receiving",
    };
    match t {
        Transfer::Progress {
            id,
            direction,
            name,
            size,
            done,
            resumed_from,
        } => json!({
            "type": "transfer", "state": "progress", "id": id, "direction": way(direction),
            "name": name, "size": size, "done": done, "resumedFrom": resumed_from,
        }),
        Transfer::Verified {
            id,
            direction,
            name,
            size,
            path,
            sha256,
        } => json!({
            "type": "transfer", "state": "verified", "id": id, "direction": way(direction),
            "name": name, "size": size, "done": size,
            "path": path.as_ref().map(|p| p.display().to_string()),
            "sha256": sha256.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        }),
        Transfer::Stopped {
            id,
            direction,
            name,
            outcome,
            message,
        } => json!({
            "type": "transfer", "state": "stopped", "id": id, "direction": way(direction),
            "name": name, "outcome": format!("{outcome:?}"), "message": message,
        }),
        Transfer::Offered { id, name, size } => json!({
            "type": "transfer", "state": "offered", "id": id, "direction": "receiving",
            "name": name, "size": size,
        }),
    }
}

fn tool_name(tool: Tool) -> &'static str {
    match tool {
        Tool::Clipboard => "clipboard",
        Tool::FileTransfer => "fileTransfer",
        Tool::Chat => "chat",
    }
}

fn state_name(state: ToolState) -> &'static str {
    match state {
        ToolState::Allowed => "allowed",
        ToolState::Forbidden => "forbidden",
        ToolState::Unsupported => "unsupported",
    }
}

fn monitor_json(m: &MonitorInfo) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "x": m.x,
        "y": m.y,
        "width": m.width,
        "height": m.height,
        "primary": m.primary,
    })
}

fn config_json(c: &VideoConfig) -> Value {
    json!({
        "type": "videoConfig",
        "codec": "h264",
        "width": c.width,
        "height": c.height,
        "frameRate": c.frame_rate,
        "monitorId": c.monitor_id,
        "orientation": match c.orientation {
            Orientation::Landscape => "landscape",
            Orientation::Portrait => "portrait",
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use bytes::Bytes;
    use protocol::{EndReason, VideoCodec, VideoFrame};

    use super::*;

    #[test]
    fn video_is_raw_bytes_after_a_ten_byte_header() {
        let payload = Bytes::from_static(&[0, 0, 0, 1, 0x65, 0xaa, 0xbb]);
        let msg = encode(&Event::Video(VideoFrame {
            keyframe: true,
            timestamp_us: 0x0102_0304_0506_0708,
            payload: payload.clone(),
        }))
        .unwrap();
        assert_eq!(msg[0], VIDEO);
        assert_eq!(msg[1], 1);
        assert_eq!(&msg[2..10], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&msg[10..], &payload[..]);

        let delta = encode(&Event::Video(VideoFrame {
            keyframe: false,
            timestamp_us: 5,
            payload,
        }))
        .unwrap();
        assert_eq!(delta[1], 0);
    }

    #[test]
    fn other_events_are_tagged_json() {
        let msg = encode(&Event::VideoConfig(VideoConfig {
            codec: VideoCodec::H264,
            width: 1920,
            height: 1080,
            frame_rate: 30,
            monitor_id: 2,
            orientation: Orientation::Portrait,
        }))
        .unwrap();
        assert_eq!(msg[0], JSON);
        let v: Value = serde_json::from_slice(&msg[1..]).unwrap();
        assert_eq!(v["type"], "videoConfig");
        assert_eq!(v["width"], 1920);
        assert_eq!(v["orientation"], "portrait");

        let warn = encode(&Event::LimitWarning {
            time_left: Duration::from_secs(119),
            limit: Duration::from_secs(120),
        })
        .unwrap();
        let v: Value = serde_json::from_slice(&warn[1..]).unwrap();
        assert_eq!(
            (v["timeLeftMs"].as_u64(), v["limitSecs"].as_u64()),
            (Some(119_000), Some(120))
        );

        let lost = encode(&Event::Lost {
            code: None,
            message: "gone".into(),
        })
        .unwrap();
        let v: Value = serde_json::from_slice(&lost[1..]).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str()),
            (Some("lost"), Some("LINK"))
        );

        let ended = encode(&Event::Ended {
            reason: EndReason::Unknown(77),
            message: "bye".into(),
        })
        .unwrap();
        let v: Value = serde_json::from_slice(&ended[1..]).unwrap();
        assert_eq!(v["reason"], "UNKNOWN(77)");
        assert_eq!(v["message"], "bye");
    }

    #[test]
    fn tools_and_refusals_are_named_and_clipboard_text_never_reaches_the_page() {
        use protocol::{ErrorCode, ToolGrant};
        let json =
            |e: &Event| -> Value { serde_json::from_slice(&encode(e).unwrap()[1..]).unwrap() };
        let tools = json(&Event::Tools(vec![ToolGrant {
            tool: Tool::Clipboard,
            state: ToolState::Forbidden,
        }]));
        assert_eq!(
            (tools["type"].as_str(), tools["clipboard"].as_str()),
            (Some("tools"), Some("forbidden"))
        );
        // A relay on protocol 1.0 names no tools: the clipboard is not available.
        assert_eq!(json(&Event::Tools(vec![]))["clipboard"], "unsupported");
        let refused = json(&Event::ToolRefused {
            tool: Tool::Clipboard,
            code: ErrorCode::ToolForbidden,
            message: "no".into(),
        });
        assert_eq!(
            (
                refused["type"].as_str(),
                refused["tool"].as_str(),
                refused["code"].as_str()
            ),
            (
                Some("toolRefused"),
                Some("clipboard"),
                Some("TOOL_FORBIDDEN")
            )
        );
        assert_eq!(encode(&Event::Clipboard("a password".into())), None);
    }

    #[test]
    fn chat_lines_and_the_chat_tool_reach_the_page() {
        use protocol::ToolGrant;
        let json =
            |e: &Event| -> Value { serde_json::from_slice(&encode(e).unwrap()[1..]).unwrap() };
        let line = json(&Event::Chat("<b>hi</b> & bye".into()));
        assert_eq!(line, json!({"type": "chat", "text": "<b>hi</b> & bye"}));
        let tools = json(&Event::Tools(vec![ToolGrant {
            tool: Tool::Chat,
            state: ToolState::Allowed,
        }]));
        assert_eq!(tools["chat"], "allowed");
        // A relay before 1.3.0 names no chat: not available.
        assert_eq!(json(&Event::Tools(vec![]))["chat"], "unsupported");
    }

    #[test]
    fn audio_is_not_sent_to_the_page() {
        assert_eq!(
            encode(&Event::AudioConfig {
                sample_rate: 48_000,
                channels: 1
            }),
            None
        );
    }
}
