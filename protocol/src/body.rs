//! The byte layout of each message body: field by field, in both directions, with the checks that
//! keep the encoding canonical (the encoder refuses what the decoder would refuse).

use bytes::Bytes;

use crate::codec::{limits, MessageKind};
use crate::error::{ErrorCode, WireError};
use crate::message::*;
use crate::version::MAX_PROTOCOL_VERSIONS;
use crate::wire::{Reader, Writer};

/// A field-level enum carried as one byte.
trait WireEnum: Sized + Copy {
    fn to_wire(self) -> u8;
    fn from_wire(n: u8) -> Option<Self>;
}

macro_rules! wire_enum {
    ($ty:ident { $($variant:ident = $n:literal),+ $(,)? }) => {
        impl WireEnum for $ty {
            fn to_wire(self) -> u8 {
                match self {
                    $($ty::$variant => $n,)+
                }
            }
            fn from_wire(n: u8) -> Option<Self> {
                match n {
                    $($n => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

wire_enum!(Role { Technician = 1, Streamer = 2 });
wire_enum!(AccessType { Attended = 1, Unattended = 2 });
wire_enum!(VideoCodec { H264 = 1 });
wire_enum!(Orientation { Landscape = 1, Portrait = 2 });
wire_enum!(AudioCodec { Opus = 1 });
wire_enum!(Tool { Clipboard = 1, FileTransfer = 2, Chat = 3 });
wire_enum!(FileOutcome { Verified = 1, HashMismatch = 2, Cancelled = 3, Failed = 4, NotFound = 5, TooLarge = 6 });
wire_enum!(ToolState {
    Allowed = 1,
    Forbidden = 2,
    Unsupported = 3
});
/// A device's state in a `DeviceStatusList`: offline, online, or online and in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceState {
    Offline,
    Online,
    Busy,
}
wire_enum!(DeviceState {
    Offline = 1,
    Online = 2,
    Busy = 3
});

wire_enum!(MouseAction { Move = 1, Down = 2, Up = 3, Wheel = 4 });
wire_enum!(MouseButton { None = 0, Left = 1, Right = 2, Middle = 3, Back = 4, Forward = 5 });

const END_REASONS: &[(EndReason, u8, &str)] = &[
    (EndReason::TechnicianLeft, 1, "TECHNICIAN_LEFT"),
    (EndReason::EndUserEnded, 2, "END_USER_ENDED"),
    (
        EndReason::TechnicianDisconnected,
        3,
        "TECHNICIAN_DISCONNECTED",
    ),
    (EndReason::StreamerDisconnected, 4, "STREAMER_DISCONNECTED"),
    (EndReason::TimeLimitReached, 5, "TIME_LIMIT_REACHED"),
    (EndReason::RecordingFailed, 6, "RECORDING_FAILED"),
    (EndReason::RelayShuttingDown, 7, "RELAY_SHUTTING_DOWN"),
    (EndReason::CredentialRevoked, 8, "CREDENTIAL_REVOKED"),
    (EndReason::ProtocolError, 9, "PROTOCOL_ERROR"),
    (EndReason::EndedByAdmin, 10, "ENDED_BY_ADMIN"),
];

impl EndReason {
    /// Every known reason, for documentation and tests.
    pub fn all() -> impl Iterator<Item = EndReason> {
        END_REASONS.iter().map(|(r, _, _)| *r)
    }

    /// The reason's stable name, as logs, session rows and clients show it: `TIME_LIMIT_REACHED`,
    /// or `UNKNOWN(n)` for a reason this side does not know.
    pub fn name(self) -> String {
        END_REASONS.iter().find(|(r, _, _)| *r == self).map_or_else(
            || format!("UNKNOWN({})", self.number()),
            |(_, _, s)| (*s).to_owned(),
        )
    }

    /// The reason's byte on the wire.
    pub fn number(self) -> u8 {
        match self {
            EndReason::Unknown(n) => n,
            known => END_REASONS
                .iter()
                .find(|(r, _, _)| *r == known)
                .map_or(0, |(_, n, _)| *n),
        }
    }

    /// The reason for a byte; bytes this side does not know become [`EndReason::Unknown`].
    pub fn from_number(n: u8) -> EndReason {
        END_REASONS
            .iter()
            .find(|(_, num, _)| *num == n)
            .map_or(EndReason::Unknown(n), |(r, _, _)| *r)
    }
}

impl Reader {
    fn enumeration<E: WireEnum>(&mut self, field: &'static str) -> Result<E, WireError> {
        let n = self.u8(field)?;
        E::from_wire(n).ok_or_else(|| self.invalid(field, n.into()))
    }

    fn ranged_u16(&mut self, field: &'static str, lo: u16, hi: u16) -> Result<u16, WireError> {
        let v = self.u16(field)?;
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(self.invalid(field, v.into()))
        }
    }
}

impl Writer<'_> {
    fn enumeration<E: WireEnum>(&mut self, v: E) {
        self.u8(v.to_wire());
    }

    fn ranged_u16(
        &mut self,
        field: &'static str,
        v: u16,
        lo: u16,
        hi: u16,
    ) -> Result<(), WireError> {
        if !(lo..=hi).contains(&v) {
            return Err(self.invalid(field, v.into()));
        }
        self.u16(v);
        Ok(())
    }
}

/// `ViewRequest` on the wire: frame_rate `u16` (0 = the streamer's default, else 1 to 120), then
/// monitor_id `u32` (`NO_MONITOR` = the streamer's first monitor).
const NO_MONITOR: u32 = u32::MAX;

/// A text field that may not be empty (its length, 0, is the invalid value).
fn nonempty(s: String, r: &Reader, field: &'static str) -> Result<String, WireError> {
    if s.is_empty() {
        Err(r.invalid(field, 0))
    } else {
        Ok(s)
    }
}

/// A device's `option(string(VERSION))`.
fn read_streamer_version(r: &mut Reader) -> Result<Option<String>, WireError> {
    Ok(if r.bool("has_streamer_version")? {
        Some(r.string("streamer_version", limits::VERSION)?)
    } else {
        None
    })
}

fn write_streamer_version(w: &mut Writer<'_>, v: Option<&str>) -> Result<(), WireError> {
    w.bool(v.is_some());
    if let Some(v) = v {
        w.string("streamer_version", v, limits::VERSION)?;
    }
    Ok(())
}

/// The view at the end of `SessionRequest` and `SessionOffer`. Both fields were added to the 1.0.0
/// text before its release (PROTOCOL.md section 5): a body that ends before them is read as the
/// default view, so a client written to the earlier text is understood.
fn read_view(r: &mut Reader) -> Result<ViewRequest, WireError> {
    if r.at_end() {
        return Ok(ViewRequest::default());
    }
    let frame_rate = match r.ranged_u16("view_frame_rate", 0, limits::MAX_FRAME_RATE)? {
        0 => None,
        n => Some(n),
    };
    let monitor_id = match r.u32("view_monitor_id")? {
        NO_MONITOR => None,
        id => Some(id),
    };
    Ok(ViewRequest {
        frame_rate,
        monitor_id,
    })
}

fn write_view(w: &mut Writer<'_>, view: &ViewRequest) -> Result<(), WireError> {
    match view.frame_rate {
        None => w.u16(0),
        Some(n) => w.ranged_u16("view_frame_rate", n, 1, limits::MAX_FRAME_RATE)?,
    }
    match view.monitor_id {
        None => w.u32(NO_MONITOR),
        Some(NO_MONITOR) => return Err(w.invalid("view_monitor_id", NO_MONITOR.into())),
        Some(id) => w.u32(id),
    }
    Ok(())
}

pub(crate) fn decode_body(kind: MessageKind, body: Bytes) -> Result<Message, WireError> {
    use limits::*;
    let mut r = Reader::new(kind.name(), body);
    let msg = match kind {
        MessageKind::Hello => {
            let role = r.enumeration("role")?;
            let product_version = r.string("product_version", VERSION)?;
            let n = r.count("protocol_versions", MAX_PROTOCOL_VERSIONS)?;
            let protocol_versions = (0..n)
                .map(|_| r.string("protocol_version", VERSION))
                .collect::<Result<_, _>>()?;
            Message::Hello {
                role,
                product_version,
                protocol_versions,
            }
        }
        MessageKind::Welcome => Message::Welcome {
            protocol_version: r.string("protocol_version", VERSION)?,
            relay_version: r.string("relay_version", VERSION)?,
        },
        MessageKind::Authenticate => {
            let credential = match r.u8("credential_type")? {
                1 => Credential::TechnicianToken {
                    token: r.string("token", SECRET)?,
                },
                2 => Credential::Device {
                    device_id: r.string("device_id", ID)?,
                    secret: r.string("secret", SECRET)?,
                },
                3 => Credential::DeploymentCode {
                    code: r.string("code", SECRET)?,
                    device_name: r.string("device_name", NAME)?,
                },
                4 => Credential::Attended {
                    team_key: r.string("team_key", SECRET)?,
                    device_name: r.string("device_name", NAME)?,
                },
                other => return Err(r.invalid("credential_type", other.into())),
            };
            Message::Authenticate(credential)
        }
        MessageKind::Registered => Message::Registered {
            device_id: r.string("device_id", ID)?,
            secret: r.string("secret", SECRET)?,
        },
        MessageKind::SessionCodeIssued => Message::SessionCodeIssued {
            code: r.string("code", SESSION_CODE)?,
            expires_in_secs: r.u32("expires_in_secs")?,
        },
        MessageKind::Authenticated => Message::Authenticated {
            team_id: r.string("team_id", ID)?,
            name: r.string("name", NAME)?,
        },
        MessageKind::Refused => Message::Refused {
            code: ErrorCode::from_number(r.u16("code")?),
            message: r.string("message", MESSAGE)?,
        },
        MessageKind::ListDevices => Message::ListDevices,
        MessageKind::DeviceList => {
            let n = r.count("devices", DEVICES)?;
            let devices = (0..n)
                .map(|_| {
                    Ok(DeviceInfo {
                        id: r.string("id", ID)?,
                        name: r.string("name", NAME)?,
                        online: r.bool("online")?,
                        busy: false,
                        streamer_version: read_streamer_version(&mut r)?,
                    })
                })
                .collect::<Result<_, WireError>>()?;
            Message::DeviceList(devices)
        }
        MessageKind::DeviceStatusList => {
            let n = r.count("devices", DEVICES)?;
            let devices = (0..n)
                .map(|_| {
                    let id = r.string("id", ID)?;
                    let name = r.string("name", NAME)?;
                    let state: DeviceState = r.enumeration("state")?;
                    Ok(DeviceInfo {
                        id,
                        name,
                        online: state != DeviceState::Offline,
                        busy: state == DeviceState::Busy,
                        streamer_version: read_streamer_version(&mut r)?,
                    })
                })
                .collect::<Result<_, WireError>>()?;
            Message::DeviceStatusList(devices)
        }
        MessageKind::SessionRequest => {
            let target = match r.u8("target_type")? {
                1 => SessionTarget::Device {
                    device_id: r.string("device_id", ID)?,
                },
                2 => SessionTarget::Code {
                    code: r.string("code", SESSION_CODE)?,
                },
                other => return Err(r.invalid("target_type", other.into())),
            };
            Message::SessionRequest {
                target,
                view: read_view(&mut r)?,
            }
        }
        MessageKind::SessionOffer => Message::SessionOffer {
            session_id: r.string("session_id", ID)?,
            technician: r.string("technician", NAME)?,
            access: r.enumeration("access")?,
            recorded: r.bool("recorded")?,
            view: read_view(&mut r)?,
        },
        MessageKind::SessionAccept => Message::SessionAccept {
            session_id: r.string("session_id", ID)?,
        },
        MessageKind::SessionDecline => Message::SessionDecline {
            session_id: r.string("session_id", ID)?,
        },
        MessageKind::SessionStarted => Message::SessionStarted {
            session_id: r.string("session_id", ID)?,
            device_name: r.string("device_name", NAME)?,
            streamer_version: r.string("streamer_version", VERSION)?,
            access: r.enumeration("access")?,
            recorded: r.bool("recorded")?,
        },
        MessageKind::SessionRefused => Message::SessionRefused {
            code: ErrorCode::from_number(r.u16("code")?),
            message: r.string("message", MESSAGE)?,
        },
        MessageKind::RecordingState => Message::RecordingState {
            recorded: r.bool("recorded")?,
        },
        MessageKind::LimitWarning => Message::LimitWarning {
            time_left_ms: r.u64("time_left_ms")?,
        },
        MessageKind::LeaveSession => Message::LeaveSession,
        MessageKind::SessionEnded => Message::SessionEnded {
            reason: EndReason::from_number(r.u8("reason")?),
            message: r.string("message", MESSAGE)?,
        },
        MessageKind::VideoConfig => Message::VideoConfig(VideoConfig {
            codec: r.enumeration("codec")?,
            width: r.ranged_u16("width", 1, MAX_DIMENSION)?,
            height: r.ranged_u16("height", 1, MAX_DIMENSION)?,
            frame_rate: r.ranged_u16("frame_rate", 1, MAX_FRAME_RATE)?,
            monitor_id: r.u32("monitor_id")?,
            orientation: r.enumeration("orientation")?,
        }),
        MessageKind::VideoFrame => {
            let flags = r.u8("flags")?;
            if flags & !1 != 0 {
                return Err(r.invalid("flags", flags.into()));
            }
            Message::VideoFrame(VideoFrame {
                keyframe: flags & 1 == 1,
                timestamp_us: r.u64("timestamp_us")?,
                payload: r.rest(),
            })
        }
        MessageKind::KeyframeRequest => Message::KeyframeRequest,
        MessageKind::MonitorList => {
            let n = r.count("monitors", MONITORS)?;
            let monitors = (0..n)
                .map(|_| {
                    Ok(MonitorInfo {
                        id: r.u32("id")?,
                        key: nonempty(r.string("key", MONITOR_KEY)?, &r, "key")?,
                        name: r.string("name", NAME)?,
                        x: r.i32("x")?,
                        y: r.i32("y")?,
                        width: r.ranged_u16("width", 1, MAX_DIMENSION)?,
                        height: r.ranged_u16("height", 1, MAX_DIMENSION)?,
                        primary: r.bool("primary")?,
                    })
                })
                .collect::<Result<_, WireError>>()?;
            Message::MonitorList(monitors)
        }
        MessageKind::SwitchMonitor => Message::SwitchMonitor {
            monitor_id: r.u32("monitor_id")?,
        },
        MessageKind::SetFrameRate => Message::SetFrameRate {
            frame_rate: r.ranged_u16("frame_rate", 1, MAX_FRAME_RATE)?,
        },
        MessageKind::AudioConfig => {
            let codec = r.enumeration("codec")?;
            let sample_rate = r.u32("sample_rate")?;
            if !(1..=MAX_SAMPLE_RATE).contains(&sample_rate) {
                return Err(r.invalid("sample_rate", sample_rate.into()));
            }
            let channels = r.u8("channels")?;
            if !(1..=2).contains(&channels) {
                return Err(r.invalid("channels", channels.into()));
            }
            Message::AudioConfig {
                codec,
                sample_rate,
                channels,
            }
        }
        MessageKind::AudioFrame => Message::AudioFrame(AudioFrame {
            timestamp_us: r.u64("timestamp_us")?,
            payload: r.rest(),
        }),
        MessageKind::ReceiverReport => Message::ReceiverReport(ReceiverReport {
            newest_timestamp_us: r.u64("newest_timestamp_us")?,
            frames: r.u16("frames")?,
            queue_delay_ms: r.u16("queue_delay_ms")?,
        }),
        MessageKind::AudioUnavailable => Message::AudioUnavailable {
            reason: r.string("reason", MESSAGE)?,
        },
        MessageKind::MouseInput => Message::MouseInput(MouseInput {
            action: r.enumeration("action")?,
            button: r.enumeration("button")?,
            x: r.u16("x")?,
            y: r.u16("y")?,
            wheel_x: r.i16("wheel_x")?,
            wheel_y: r.i16("wheel_y")?,
        }),
        MessageKind::KeyInput => {
            let code = r.string("code", KEY_CODE)?;
            let down = r.bool("down")?;
            let modifiers = r.u8("modifiers")?;
            if modifiers & !Modifiers::ALL != 0 {
                return Err(r.invalid("modifiers", modifiers.into()));
            }
            Message::KeyInput(KeyInput {
                code,
                down,
                modifiers: Modifiers(modifiers),
            })
        }
        MessageKind::TextInput => Message::TextInput {
            text: r.string("text", TEXT)?,
        },
        MessageKind::SessionTools => {
            let n = r.count("tools", TOOLS)?;
            let mut tools = Vec::with_capacity(n);
            for _ in 0..n {
                tools.push(ToolGrant {
                    tool: r.enumeration("tool")?,
                    state: r.enumeration("state")?,
                });
            }
            Message::SessionTools(tools)
        }
        MessageKind::ToolRefused => Message::ToolRefused {
            tool: r.enumeration("tool")?,
            code: ErrorCode::from_number(r.u16("code")?),
            message: r.string("message", MESSAGE)?,
        },
        MessageKind::ClipboardText => Message::ClipboardText {
            text: r.text_rest("text", CLIPBOARD)?,
        },
        MessageKind::ChatText => Message::ChatText {
            text: nonempty(r.string("text", CHAT)?, &r, "text")?,
        },
        MessageKind::FileOffer => Message::FileOffer {
            transfer_id: r.u32("transfer_id")?,
            size: r.u64("size")?,
            sha256: r.array("sha256")?,
            name: file_name(r.string("name", FILE_NAME)?, &r)?,
        },
        MessageKind::FileRequest => Message::FileRequest {
            transfer_id: r.u32("transfer_id")?,
            path: nonempty(r.string("path", FILE_PATH)?, &r, "path")?,
        },
        MessageKind::FileAccept => Message::FileAccept {
            transfer_id: r.u32("transfer_id")?,
            offset: r.u64("offset")?,
        },
        MessageKind::FileChunk => {
            let transfer_id = r.u32("transfer_id")?;
            let offset = r.u64("offset")?;
            let data = r.rest();
            if data.is_empty() {
                return Err(r.invalid("data", 0));
            }
            Message::FileChunk {
                transfer_id,
                offset,
                data,
            }
        }
        MessageKind::FileProgress => Message::FileProgress {
            transfer_id: r.u32("transfer_id")?,
            received: r.u64("received")?,
        },
        MessageKind::FileEnd => Message::FileEnd {
            transfer_id: r.u32("transfer_id")?,
            outcome: r.enumeration("outcome")?,
            message: r.string("message", MESSAGE)?,
        },
    };
    r.finish()?;
    Ok(msg)
}

pub(crate) fn encode_body(msg: &Message, w: &mut Writer<'_>) -> Result<(), WireError> {
    use limits::*;
    match msg {
        Message::Hello {
            role,
            product_version,
            protocol_versions,
        } => {
            w.enumeration(*role);
            w.string("product_version", product_version, VERSION)?;
            w.count(
                "protocol_versions",
                protocol_versions.len(),
                MAX_PROTOCOL_VERSIONS,
            )?;
            for v in protocol_versions {
                w.string("protocol_version", v, VERSION)?;
            }
        }
        Message::Welcome {
            protocol_version,
            relay_version,
        } => {
            w.string("protocol_version", protocol_version, VERSION)?;
            w.string("relay_version", relay_version, VERSION)?;
        }
        Message::Authenticate(credential) => match credential {
            Credential::TechnicianToken { token } => {
                w.u8(1);
                w.string("token", token, SECRET)?;
            }
            Credential::Device { device_id, secret } => {
                w.u8(2);
                w.string("device_id", device_id, ID)?;
                w.string("secret", secret, SECRET)?;
            }
            Credential::DeploymentCode { code, device_name } => {
                w.u8(3);
                w.string("code", code, SECRET)?;
                w.string("device_name", device_name, NAME)?;
            }
            Credential::Attended {
                team_key,
                device_name,
            } => {
                w.u8(4);
                w.string("team_key", team_key, SECRET)?;
                w.string("device_name", device_name, NAME)?;
            }
        },
        Message::Registered { device_id, secret } => {
            w.string("device_id", device_id, ID)?;
            w.string("secret", secret, SECRET)?;
        }
        Message::SessionCodeIssued {
            code,
            expires_in_secs,
        } => {
            w.string("code", code, SESSION_CODE)?;
            w.u32(*expires_in_secs);
        }
        Message::Authenticated { team_id, name } => {
            w.string("team_id", team_id, ID)?;
            w.string("name", name, NAME)?;
        }
        Message::Refused { code, message } | Message::SessionRefused { code, message } => {
            w.u16(code.number());
            w.string("message", message, MESSAGE)?;
        }
        Message::ListDevices | Message::LeaveSession | Message::KeyframeRequest => {}
        Message::DeviceStatusList(devices) => {
            w.count("devices", devices.len(), DEVICES)?;
            for d in devices {
                let state = match (d.online, d.busy) {
                    (false, false) => DeviceState::Offline,
                    (true, false) => DeviceState::Online,
                    (true, true) => DeviceState::Busy,
                    // In a session but not connected: no state says that.
                    (false, true) => {
                        return Err(WireError::InvalidValue {
                            kind: "DeviceStatusList",
                            field: "state",
                            value: 0,
                        })
                    }
                };
                w.string("id", &d.id, ID)?;
                w.string("name", &d.name, NAME)?;
                w.enumeration(state);
                write_streamer_version(w, d.streamer_version.as_deref())?;
            }
        }
        Message::DeviceList(devices) => {
            // `busy` is not in a `DeviceList` (protocol 1.0.0): it is left out.
            w.count("devices", devices.len(), DEVICES)?;
            for d in devices {
                w.string("id", &d.id, ID)?;
                w.string("name", &d.name, NAME)?;
                w.bool(d.online);
                write_streamer_version(w, d.streamer_version.as_deref())?;
            }
        }
        Message::SessionRequest { target, view } => {
            match target {
                SessionTarget::Device { device_id } => {
                    w.u8(1);
                    w.string("device_id", device_id, ID)?;
                }
                SessionTarget::Code { code } => {
                    w.u8(2);
                    w.string("code", code, SESSION_CODE)?;
                }
            }
            write_view(w, view)?;
        }
        Message::SessionOffer {
            session_id,
            technician,
            access,
            recorded,
            view,
        } => {
            w.string("session_id", session_id, ID)?;
            w.string("technician", technician, NAME)?;
            w.enumeration(*access);
            w.bool(*recorded);
            write_view(w, view)?;
        }
        Message::SessionAccept { session_id } | Message::SessionDecline { session_id } => {
            w.string("session_id", session_id, ID)?;
        }
        Message::SessionStarted {
            session_id,
            device_name,
            streamer_version,
            access,
            recorded,
        } => {
            w.string("session_id", session_id, ID)?;
            w.string("device_name", device_name, NAME)?;
            w.string("streamer_version", streamer_version, VERSION)?;
            w.enumeration(*access);
            w.bool(*recorded);
        }
        Message::RecordingState { recorded } => w.bool(*recorded),
        Message::LimitWarning { time_left_ms } => w.u64(*time_left_ms),
        Message::SessionEnded { reason, message } => {
            w.u8(reason.number());
            w.string("message", message, MESSAGE)?;
        }
        Message::VideoConfig(c) => {
            w.enumeration(c.codec);
            w.ranged_u16("width", c.width, 1, MAX_DIMENSION)?;
            w.ranged_u16("height", c.height, 1, MAX_DIMENSION)?;
            w.ranged_u16("frame_rate", c.frame_rate, 1, MAX_FRAME_RATE)?;
            w.u32(c.monitor_id);
            w.enumeration(c.orientation);
        }
        Message::VideoFrame(f) => {
            w.u8(u8::from(f.keyframe));
            w.u64(f.timestamp_us);
            w.bytes(&f.payload);
        }
        Message::MonitorList(monitors) => {
            w.count("monitors", monitors.len(), MONITORS)?;
            for m in monitors {
                w.u32(m.id);
                if m.key.is_empty() {
                    return Err(w.invalid("key", 0));
                }
                w.string("key", &m.key, MONITOR_KEY)?;
                w.string("name", &m.name, NAME)?;
                w.i32(m.x);
                w.i32(m.y);
                w.ranged_u16("width", m.width, 1, MAX_DIMENSION)?;
                w.ranged_u16("height", m.height, 1, MAX_DIMENSION)?;
                w.bool(m.primary);
            }
        }
        Message::SwitchMonitor { monitor_id } => w.u32(*monitor_id),
        Message::SetFrameRate { frame_rate } => {
            w.ranged_u16("frame_rate", *frame_rate, 1, MAX_FRAME_RATE)?;
        }
        Message::AudioConfig {
            codec,
            sample_rate,
            channels,
        } => {
            if !(1..=MAX_SAMPLE_RATE).contains(sample_rate) {
                return Err(w.invalid("sample_rate", (*sample_rate).into()));
            }
            if !(1..=2).contains(channels) {
                return Err(w.invalid("channels", (*channels).into()));
            }
            w.enumeration(*codec);
            w.u32(*sample_rate);
            w.u8(*channels);
        }
        Message::AudioFrame(f) => {
            w.u64(f.timestamp_us);
            w.bytes(&f.payload);
        }
        Message::AudioUnavailable { reason } => w.string("reason", reason, MESSAGE)?,
        Message::ReceiverReport(r) => {
            w.u64(r.newest_timestamp_us);
            w.u16(r.frames);
            w.u16(r.queue_delay_ms);
        }
        Message::MouseInput(m) => {
            w.enumeration(m.action);
            w.enumeration(m.button);
            w.u16(m.x);
            w.u16(m.y);
            w.i16(m.wheel_x);
            w.i16(m.wheel_y);
        }
        Message::KeyInput(k) => {
            if k.modifiers.0 & !Modifiers::ALL != 0 {
                return Err(w.invalid("modifiers", k.modifiers.0.into()));
            }
            w.string("code", &k.code, KEY_CODE)?;
            w.bool(k.down);
            w.u8(k.modifiers.0);
        }
        Message::TextInput { text } => w.string("text", text, TEXT)?,
        Message::SessionTools(tools) => {
            w.count("tools", tools.len(), TOOLS)?;
            for t in tools {
                w.enumeration(t.tool);
                w.enumeration(t.state);
            }
        }
        Message::ToolRefused {
            tool,
            code,
            message,
        } => {
            w.enumeration(*tool);
            w.u16(code.number());
            w.string("message", message, MESSAGE)?;
        }
        Message::ClipboardText { text } => {
            if text.len() > CLIPBOARD {
                return Err(WireError::FieldTooLong {
                    kind: "ClipboardText",
                    field: "text",
                    len: text.len(),
                    max: CLIPBOARD,
                });
            }
            w.bytes(text.as_bytes());
        }
        Message::ChatText { text } => {
            if text.is_empty() {
                return Err(WireError::InvalidValue {
                    kind: "ChatText",
                    field: "text",
                    value: 0,
                });
            }
            w.string("text", text, CHAT)?;
        }
        Message::FileOffer {
            transfer_id,
            size,
            sha256,
            name,
        } => {
            if !is_file_name(name) {
                return Err(WireError::InvalidFileName {
                    kind: "FileOffer",
                    field: "name",
                });
            }
            w.u32(*transfer_id);
            w.u64(*size);
            w.bytes(sha256);
            w.string("name", name, FILE_NAME)?;
        }
        Message::FileRequest { transfer_id, path } => {
            w.u32(*transfer_id);
            w.string("path", path, FILE_PATH)?;
        }
        Message::FileAccept {
            transfer_id,
            offset,
        } => {
            w.u32(*transfer_id);
            w.u64(*offset);
        }
        Message::FileChunk {
            transfer_id,
            offset,
            data,
        } => {
            if data.is_empty() || data.len() > FILE_CHUNK {
                return Err(WireError::FieldTooLong {
                    kind: "FileChunk",
                    field: "data",
                    len: data.len(),
                    max: FILE_CHUNK,
                });
            }
            w.u32(*transfer_id);
            w.u64(*offset);
            w.bytes(data);
        }
        Message::FileProgress {
            transfer_id,
            received,
        } => {
            w.u32(*transfer_id);
            w.u64(*received);
        }
        Message::FileEnd {
            transfer_id,
            outcome,
            message,
        } => {
            w.u32(*transfer_id);
            w.enumeration(*outcome);
            w.string("message", message, MESSAGE)?;
        }
    }
    Ok(())
}

/// Whether `name` is a file's name a receiver can write as it is: not empty, not `.` or `..`, no
/// folder separator (`/` or `\`), no control character, no `:` (a Windows stream or drive), and
/// not ending in a dot or a space (Windows drops them).
pub fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | ':'))
        && !name.ends_with(['.', ' '])
}

fn file_name(name: String, r: &Reader) -> Result<String, WireError> {
    if is_file_name(&name) {
        Ok(name)
    } else {
        Err(r.invalid_file_name("name"))
    }
}
