//! Who is online and paired: connected streamers, live session codes, and the link of each session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use protocol::{AccessType, EndReason, ProductVersion};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// One frame queued for a connection's writer. The permit, when present, returns the frame's bytes
/// to the forwarding budget once the frame is written.
#[derive(Debug)]
pub struct OutFrame {
    /// The encoded frame.
    pub bytes: Bytes,
    /// The share of the forwarding budget this frame holds.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// The queue into a connection's writer task.
pub type Outbound = mpsc::Sender<OutFrame>;

/// How many frames a connection's writer queue holds. Frames from the peer are also bounded in bytes
/// by the session's forwarding budget; when either bound is reached the sender waits (backpressure).
pub const WRITER_QUEUE: usize = 1024;

/// The two directions of one session, shared by the technician's and the streamer's tasks.
#[derive(Debug)]
pub struct SessionLink {
    /// The session's id.
    pub id: String,
    /// Queue to the technician's connection.
    pub to_technician: Outbound,
    /// Queue to the streamer's connection.
    pub to_streamer: Outbound,
    /// Bytes that may wait towards the technician.
    pub budget_to_technician: Arc<Semaphore>,
    /// Bytes that may wait towards the streamer.
    pub budget_to_streamer: Arc<Semaphore>,
    /// Cancelled when the session ends, for whatever reason.
    pub ended: CancellationToken,
    /// Who the session is for, and which tools it may use.
    pub tools: SessionTools,
    /// Its file transfers as they pass.
    pub transfers: Mutex<crate::transfers::Transfers>,
    /// What its chat may still carry (each line is written to the audit trail).
    pub chat: Mutex<crate::rate::ChatAllowance>,
    reason: Mutex<Option<(EndReason, String)>>,
}

/// What a session may use besides screen and input, decided when it is offered, and who the
/// relay logs each use for.
#[derive(Debug, Clone)]
pub struct SessionTools {
    /// The team's id.
    pub team_id: String,
    /// The technician's user id and name.
    pub technician: (String, String),
    /// Clipboard text, both ways.
    pub clipboard: protocol::ToolState,
    /// Files, both ways.
    pub file_transfer: protocol::ToolState,
    /// Chat lines, both ways.
    pub chat: protocol::ToolState,
    /// The team's largest file, in bytes.
    pub max_file_bytes: u64,
    /// The protocol version the technician's connection agreed on.
    pub technician_protocol: semver::Version,
    /// The protocol version the streamer's connection agreed on.
    pub streamer_protocol: semver::Version,
}

impl SessionTools {
    /// The `SessionTools` message for a side that agreed on `agreed`; `None` for a side too old
    /// for it.
    ///
    /// It lists the tools that side's version knows (an older side could not read a newer tool).
    pub fn message_for(&self, agreed: &semver::Version) -> Option<protocol::Message> {
        protocol::MessageKind::SessionTools
            .known_at(agreed)
            .then(|| {
                protocol::Message::SessionTools(
                    protocol::Tool::ALL
                        .iter()
                        .filter(|t| (agreed.major, agreed.minor) >= t.since())
                        .map(|&tool| protocol::ToolGrant {
                            tool,
                            state: self.state(tool),
                        })
                        .collect(),
                )
            })
    }

    /// A tool's state in this session.
    pub fn state(&self, tool: protocol::Tool) -> protocol::ToolState {
        match tool {
            protocol::Tool::Clipboard => self.clipboard,
            protocol::Tool::FileTransfer => self.file_transfer,
            protocol::Tool::Chat => self.chat,
        }
    }
}

impl SessionLink {
    /// A link between two connections' writer queues with `budget` bytes in each direction.
    pub fn new(
        id: String,
        to_technician: Outbound,
        to_streamer: Outbound,
        budget: usize,
        tools: SessionTools,
    ) -> Self {
        Self {
            tools,
            id,
            to_technician,
            to_streamer,
            budget_to_technician: Arc::new(Semaphore::new(budget)),
            budget_to_streamer: Arc::new(Semaphore::new(budget)),
            ended: CancellationToken::new(),
            transfers: Mutex::new(crate::transfers::Transfers::default()),
            chat: Mutex::new(crate::rate::ChatAllowance::new(tokio::time::Instant::now())),
            reason: Mutex::new(None),
        }
    }

    /// Ends the session. Only the first call sets the reason; it returns true for that call.
    pub fn end(&self, reason: EndReason, message: impl Into<String>) -> bool {
        let mut slot = lock(&self.reason);
        if slot.is_some() {
            return false;
        }
        *slot = Some((reason, message.into()));
        self.ended.cancel();
        true
    }

    /// Why the session ended, once it has.
    pub fn reason(&self) -> Option<(EndReason, String)> {
        lock(&self.reason).clone()
    }
}

/// What a streamer answers to an offer.
#[derive(Debug)]
pub enum OfferReply {
    /// Accepted: the session runs on the link.
    Accepted,
    /// Declined by the end user.
    Declined,
    /// No answer in time, or the streamer went away.
    NoAnswer,
    /// The relay could not start the session (our fault, already logged).
    Failed(protocol::Refusal),
}

/// A session offered to a streamer's connection task.
#[derive(Debug)]
pub struct Offer {
    /// The link the session will run on.
    pub link: Arc<SessionLink>,
    /// The technician's user id and name.
    pub technician_id: String,
    /// The technician's display name.
    pub technician_name: String,
    /// Attended or unattended.
    pub access: AccessType,
    /// Whether the session is recorded.
    pub recorded: bool,
    /// The frame rate and monitor the technician asked to start with.
    pub view: protocol::ViewRequest,
    /// Where the answer goes.
    pub reply: oneshot::Sender<OfferReply>,
}

/// Orders for a streamer's connection task.
#[derive(Debug)]
pub enum StreamerCommand {
    /// Offer a session.
    Offer(Offer),
    /// The device's credential was revoked: end everything and disconnect.
    Revoke,
    /// The device connected again (its earlier connection was lost without the relay noticing):
    /// end this connection's session as lost, and disconnect.
    Replaced,
}

/// A connected streamer.
#[derive(Debug, Clone)]
pub struct OnlineStreamer {
    /// The connection's unique number (a device may reconnect while its old connection lingers).
    pub conn_id: u64,
    /// The team's id.
    pub team_id: String,
    /// The device's id, for unattended streamers.
    pub device_id: Option<String>,
    /// The name the technician sees.
    pub name: String,
    /// The version it reported.
    pub version: ProductVersion,
    /// The protocol version its connection agreed on.
    pub protocol: semver::Version,
    /// Attended or unattended.
    pub access: AccessType,
    /// Orders to its task.
    pub commands: mpsc::Sender<StreamerCommand>,
    /// Its connection's writer queue, for the session link.
    pub outbound: Outbound,
    /// Whether it is in a session or has one on offer.
    pub busy: bool,
}

#[derive(Debug)]
struct LiveCode {
    conn_id: u64,
    team_id: String,
    expires_at_ms: i64,
}

/// Why a technician's sign-in ended, for the words its live connections and sessions end with: a
/// removed technician is not told "signed out".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revocation {
    /// Signed out (the app, the API or the console).
    #[default]
    SignedOut,
    /// Removed from the team.
    Removed,
    /// The password was changed or reset: every other sign-in ended.
    PasswordChanged,
}

impl Revocation {
    /// Its name between relays of a fleet (the notice's detail).
    pub fn as_str(self) -> &'static str {
        match self {
            Revocation::SignedOut => "signed_out",
            Revocation::Removed => "removed",
            Revocation::PasswordChanged => "password_changed",
        }
    }

    /// The revocation a fleet notice's detail names (signed out when unknown or empty).
    pub fn parse(s: &str) -> Self {
        match s {
            "removed" => Revocation::Removed,
            "password_changed" => Revocation::PasswordChanged,
            _ => Revocation::SignedOut,
        }
    }

    /// The sentence of the connection's `Refused(CREDENTIAL_REVOKED)`.
    pub fn refusal(self) -> &'static str {
        match self {
            Revocation::SignedOut => "This sign-in was ended (signed out): sign in again to continue.",
            Revocation::Removed => {
                "You were removed from this team, so this sign-in has ended. Ask the team's owner or an admin if that is a mistake."
            }
            Revocation::PasswordChanged => {
                "This sign-in was ended because the account's password was changed: sign in again with the new password."
            }
        }
    }

    /// The message of the session's `SessionEnded(CREDENTIAL_REVOKED)`.
    pub fn ended(self) -> &'static str {
        match self {
            Revocation::SignedOut => "The technician signed out.",
            Revocation::Removed => "The technician was removed from the team.",
            Revocation::PasswordChanged => {
                "The technician's password was changed, which ended their sign-ins."
            }
        }
    }
}

#[derive(Debug, Default)]
struct HubInner {
    next_conn_id: u64,
    /// Keyed by connection number.
    streamers: HashMap<u64, OnlineStreamer>,
    /// Device id to connection number.
    devices: HashMap<String, u64>,
    /// Session code to its attended streamer.
    codes: HashMap<String, LiveCode>,
    /// Signed-in technicians' connections by the digest of their sign-in token, with the token
    /// that cuts each off when the sign-in is revoked.
    technicians: HashMap<String, HashMap<u64, CancellationToken>>,
    /// Why a sign-in was revoked, by its digest, while its connections are cut off.
    revocations: HashMap<String, Revocation>,
    /// Live sessions by id, with their team's id, so that the console can end one.
    sessions: HashMap<String, (String, Arc<SessionLink>)>,
}

/// The devices' streamers and session codes a relay holds ([`Hub::held`]).
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// Each device's connected streamer.
    pub devices: Vec<HeldDevice>,
    /// Each live session code.
    pub codes: Vec<HeldCode>,
}

/// A device's streamer connected here.
#[derive(Debug, Clone)]
pub struct HeldDevice {
    /// The device.
    pub device_id: String,
    /// Its connection's number.
    pub conn_id: u64,
    /// Whether it is in a session or has one on offer.
    pub busy: bool,
}

/// A live session code of an attended streamer connected here.
#[derive(Debug, Clone)]
pub struct HeldCode {
    /// The code.
    pub code: String,
    /// Its team.
    pub team_id: String,
    /// The streamer's connection number.
    pub conn_id: u64,
    /// When it expires (Unix ms).
    pub expires_at_ms: i64,
}

/// Why a streamer cannot be claimed for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// Not connected.
    Offline,
    /// Already in a session.
    Busy,
    /// The code is unknown, expired, used, or another team's.
    BadCode,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind, still consistent enough to use:
    // recover it rather than take the whole relay down.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The relay's registry of connected streamers and live codes.
#[derive(Debug, Default)]
pub struct Hub {
    inner: Mutex<HubInner>,
}

impl Hub {
    /// A connection number for a new connection.
    pub fn next_conn_id(&self) -> u64 {
        let mut inner = lock(&self.inner);
        inner.next_conn_id += 1;
        inner.next_conn_id
    }

    /// Registers a streamer. A device that connects again replaces its older connection, which is
    /// told to go away.
    pub fn add_streamer(&self, streamer: OnlineStreamer) {
        let mut inner = lock(&self.inner);
        if let Some(device_id) = &streamer.device_id {
            if let Some(old) = inner.devices.insert(device_id.clone(), streamer.conn_id) {
                if let Some(old) = inner.streamers.remove(&old) {
                    let _ = old.commands.try_send(StreamerCommand::Replaced);
                }
            }
        }
        inner.streamers.insert(streamer.conn_id, streamer);
    }

    /// Registers a session code for an attended streamer's connection.
    pub fn add_code(
        &self,
        code: String,
        conn_id: u64,
        team_id: String,
        expires_at_ms: i64,
    ) -> bool {
        let mut inner = lock(&self.inner);
        if inner.codes.contains_key(&code) {
            return false;
        }
        inner.codes.insert(
            code,
            LiveCode {
                conn_id,
                team_id,
                expires_at_ms,
            },
        );
        true
    }

    /// Removes a streamer's connection and its codes.
    pub fn remove_streamer(&self, conn_id: u64) {
        let mut inner = lock(&self.inner);
        if let Some(s) = inner.streamers.remove(&conn_id) {
            if let Some(device_id) = s.device_id {
                if inner.devices.get(&device_id) == Some(&conn_id) {
                    inner.devices.remove(&device_id);
                }
            }
        }
        inner.codes.retain(|_, c| c.conn_id != conn_id);
    }

    /// A connected streamer by connection number.
    pub fn streamer(&self, conn_id: u64) -> Option<OnlineStreamer> {
        lock(&self.inner).streamers.get(&conn_id).cloned()
    }

    /// Whether a device's streamer is connected.
    pub fn device_online(&self, device_id: &str) -> bool {
        lock(&self.inner).devices.contains_key(device_id)
    }

    /// Whether a device's streamer is in a session (`Some(true)`), free (`Some(false)`), or not
    /// connected (`None`).
    pub fn device_busy(&self, device_id: &str) -> Option<bool> {
        let inner = lock(&self.inner);
        let conn_id = inner.devices.get(device_id)?;
        inner.streamers.get(conn_id).map(|s| s.busy)
    }

    /// Claims a device's streamer for a session: marks it busy and returns it.
    pub fn claim_device(&self, device_id: &str) -> Result<OnlineStreamer, ClaimError> {
        let mut inner = lock(&self.inner);
        let conn_id = *inner.devices.get(device_id).ok_or(ClaimError::Offline)?;
        let streamer = inner
            .streamers
            .get_mut(&conn_id)
            .ok_or(ClaimError::Offline)?;
        if streamer.busy {
            return Err(ClaimError::Busy);
        }
        streamer.busy = true;
        Ok(streamer.clone())
    }

    /// Claims an attended streamer by its session code, for a technician of `team_id`. The code is
    /// used up by the claim.
    pub fn claim_code(
        &self,
        code: &str,
        team_id: &str,
        now_ms: i64,
    ) -> Result<OnlineStreamer, ClaimError> {
        let mut inner = lock(&self.inner);
        inner.codes.retain(|_, c| c.expires_at_ms > now_ms);
        let conn_id = match inner.codes.get(code) {
            Some(c) if c.team_id == team_id => c.conn_id,
            _ => return Err(ClaimError::BadCode),
        };
        let streamer = inner
            .streamers
            .get_mut(&conn_id)
            .ok_or(ClaimError::BadCode)?;
        if streamer.busy {
            return Err(ClaimError::Busy);
        }
        streamer.busy = true;
        let claimed = streamer.clone();
        inner.codes.remove(code);
        Ok(claimed)
    }

    /// Marks a streamer free again after a session or a refused offer.
    pub fn release(&self, conn_id: u64) {
        if let Some(s) = lock(&self.inner).streamers.get_mut(&conn_id) {
            s.busy = false;
        }
    }

    /// Registers a technician's connection under the digest of its sign-in token; the returned
    /// token is cancelled when that sign-in is revoked. [`Hub::remove_technician`] at the end.
    pub fn add_technician(&self, token_digest: &str, conn_id: u64) -> CancellationToken {
        let revoked = CancellationToken::new();
        lock(&self.inner)
            .technicians
            .entry(token_digest.to_owned())
            .or_default()
            .insert(conn_id, revoked.clone());
        revoked
    }

    /// Forgets a technician's connection.
    pub fn remove_technician(&self, token_digest: &str, conn_id: u64) {
        let mut inner = lock(&self.inner);
        if let Some(conns) = inner.technicians.get_mut(token_digest) {
            conns.remove(&conn_id);
            if conns.is_empty() {
                inner.technicians.remove(token_digest);
                inner.revocations.remove(token_digest);
            }
        }
    }

    /// Why this sign-in was revoked (signed out when not said).
    pub fn revocation(&self, token_digest: &str) -> Revocation {
        lock(&self.inner)
            .revocations
            .get(token_digest)
            .copied()
            .unwrap_or_default()
    }

    /// Cuts off every connection signed in with this token (the sign-in was revoked, `why`);
    /// returns how many.
    pub fn revoke_technician_token(&self, token_digest: &str, why: Revocation) -> usize {
        let mut inner = lock(&self.inner);
        if inner.technicians.contains_key(token_digest) {
            inner.revocations.insert(token_digest.to_owned(), why);
        }
        let conns = inner.technicians.get(token_digest);
        for revoked in conns.into_iter().flat_map(|c| c.values()) {
            revoked.cancel();
        }
        conns.map_or(0, HashMap::len)
    }

    /// Live sessions, streamers online and signed-in technician connections, now.
    pub fn counts(&self) -> (usize, usize, usize) {
        let inner = lock(&self.inner);
        (
            inner.sessions.len(),
            inner.streamers.len(),
            inner.technicians.values().map(HashMap::len).sum(),
        )
    }

    /// Registers a live session of `team_id`; [`Hub::remove_session`] when it has ended.
    pub fn add_session(&self, team_id: &str, link: Arc<SessionLink>) {
        lock(&self.inner)
            .sessions
            .insert(link.id.clone(), (team_id.to_owned(), link));
    }

    /// Forgets a session that has ended.
    pub fn remove_session(&self, session_id: &str) {
        lock(&self.inner).sessions.remove(session_id);
    }

    /// Ends `team_id`'s live session `session_id` with `reason`; false when this relay holds no
    /// such live session of that team (another team's session is not ended).
    pub fn end_session(
        &self,
        team_id: &str,
        session_id: &str,
        reason: EndReason,
        message: &str,
    ) -> bool {
        let link = match lock(&self.inner).sessions.get(session_id) {
            Some((team, link)) if team == team_id => link.clone(),
            _ => return false,
        };
        link.end(reason, message);
        true
    }

    /// Tells a device's connected streamer, if any, that its credential was revoked.
    pub fn revoke_device(&self, device_id: &str) {
        self.tell_device(device_id, StreamerCommand::Revoke);
    }

    /// Tells a device's connected streamer, if any, that the device connected again elsewhere (to
    /// another relay of the fleet): its connection here is stale.
    pub fn device_moved(&self, device_id: &str) {
        self.tell_device(device_id, StreamerCommand::Replaced);
    }

    fn tell_device(&self, device_id: &str, command: StreamerCommand) {
        let inner = lock(&self.inner);
        if let Some(s) = inner
            .devices
            .get(device_id)
            .and_then(|c| inner.streamers.get(c))
        {
            let _ = s.commands.try_send(command);
        }
    }

    /// What this relay holds, for publishing to its fleet again.
    pub fn held(&self) -> Held {
        let inner = lock(&self.inner);
        let devices = inner
            .devices
            .iter()
            .filter_map(|(d, c)| {
                inner.streamers.get(c).map(|s| HeldDevice {
                    device_id: d.clone(),
                    conn_id: *c,
                    busy: s.busy,
                })
            })
            .collect();
        let codes = inner
            .codes
            .iter()
            .map(|(code, c)| HeldCode {
                code: code.clone(),
                team_id: c.team_id.clone(),
                conn_id: c.conn_id,
                expires_at_ms: c.expires_at_ms,
            })
            .collect();
        Held { devices, codes }
    }
}
