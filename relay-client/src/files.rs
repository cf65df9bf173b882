//! Both ends of a file transfer (protocol 1.2.0, docs/PROTOCOL.md section 7, "File transfer"),
//! shared by the technician library and the streamer agent: [`Outgoing`] reads a file and sends it
//! in chunks within a window of unacknowledged bytes; [`Incoming`] writes one into a folder,
//! resuming a partial file an earlier session left, hashing as it goes, and gives it its name once
//! its SHA-256 matches the offer's.
//!
//! Neither touches the network: the caller passes messages in and sends what comes out.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use protocol::{limits::FILE_CHUNK, FileOutcome, Message};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The most bytes a sender has sent and not yet seen acknowledged by a `FileProgress`.
pub const WINDOW: u64 = 1 << 20;

/// A receiver acknowledges at least this often (and at the end).
pub const PROGRESS_EVERY: u64 = 256 * 1024;

/// How a transfer failed, as its `FileEnd` says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The outcome to send.
    pub outcome: FileOutcome,
    /// Why, for people.
    pub message: String,
}

impl Failure {
    fn new(outcome: FileOutcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
        }
    }

    fn io(what: &str, path: &Path, e: &std::io::Error) -> Self {
        Self::new(
            FileOutcome::Failed,
            format!("{what} {}: {e}", path.display()),
        )
    }

    /// The `FileEnd` that tells the other side.
    pub fn end(&self, transfer_id: u32) -> Message {
        Message::FileEnd {
            transfer_id,
            outcome: self.outcome,
            message: self.message.chars().take(512).collect(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of the file at `path`.
pub async fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(hash.finalize().into());
        }
        hash.update(&buf[..n]);
    }
}

/// A file being sent.
#[derive(Debug)]
pub struct Outgoing {
    /// The transfer's id.
    pub id: u32,
    /// The name offered.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    file: tokio::fs::File,
    /// The next byte to send, once accepted.
    next: Option<u64>,
    /// What the receiver has acknowledged.
    acked: u64,
    /// Where the receiver's accept started.
    started_at: u64,
}

impl Outgoing {
    /// Opens the file at `path` for transfer `id`: its size, its SHA-256 (read through once) and
    /// its name, which must be one a receiver can write.
    pub async fn open(id: u32, path: &Path) -> Result<Self, Failure> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| protocol::is_file_name(n))
            .ok_or_else(|| {
                Failure::new(
                    FileOutcome::Failed,
                    format!("{} has no name that can be sent", path.display()),
                )
            })?
            .to_owned();
        let not_found = |e: std::io::Error| {
            let outcome = if e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::PermissionDenied
            {
                FileOutcome::NotFound
            } else {
                FileOutcome::Failed
            };
            Failure::new(outcome, format!("{} cannot be read: {e}", path.display()))
        };
        let meta = tokio::fs::metadata(path).await.map_err(not_found)?;
        if !meta.is_file() {
            return Err(Failure::new(
                FileOutcome::NotFound,
                format!("{} is not a file", path.display()),
            ));
        }
        let sha256 = sha256_file(path).await.map_err(not_found)?;
        let file = tokio::fs::File::open(path).await.map_err(not_found)?;
        Ok(Self {
            id,
            name,
            size: meta.len(),
            sha256,
            file,
            next: None,
            acked: 0,
            started_at: 0,
        })
    }

    /// The offer to send first.
    pub fn offer(&self) -> Message {
        Message::FileOffer {
            transfer_id: self.id,
            size: self.size,
            sha256: self.sha256,
            name: self.name.clone(),
        }
    }

    /// The receiver accepted from `offset` on.
    pub async fn accept(&mut self, offset: u64) -> Result<(), Failure> {
        if offset > self.size {
            return Err(Failure::new(
                FileOutcome::Failed,
                format!(
                    "the receiver asked for byte {offset} of a {}-byte file",
                    self.size
                ),
            ));
        }
        self.file
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Failure::new(FileOutcome::Failed, format!("seeking: {e}")))?;
        self.next = Some(offset);
        self.acked = offset;
        self.started_at = offset;
        Ok(())
    }

    /// Where the receiver's accept started (0 for a new file, more for a resumed one).
    pub fn started_at(&self) -> u64 {
        self.started_at
    }

    /// The receiver has `received` bytes.
    pub fn progress(&mut self, received: u64) {
        self.acked = self.acked.max(received.min(self.size));
    }

    /// What the receiver has acknowledged.
    pub fn acknowledged(&self) -> u64 {
        self.acked
    }

    /// Whether a chunk may go now: accepted, data left, and the window not full.
    pub fn ready(&self) -> bool {
        self.next
            .is_some_and(|next| next < self.size && next - self.acked < WINDOW)
    }

    /// The next chunk (call when [`Outgoing::ready`]).
    pub async fn chunk(&mut self) -> Result<Message, Failure> {
        let next = self.next.unwrap_or(self.size);
        let n = usize::try_from((self.size - next).min(FILE_CHUNK as u64)).unwrap_or(FILE_CHUNK);
        let mut data = vec![0u8; n];
        self.file.read_exact(&mut data).await.map_err(|e| {
            Failure::new(
                FileOutcome::Failed,
                format!("reading {} at byte {next}: {e} (did it change?)", self.name),
            )
        })?;
        self.next = Some(next + n as u64);
        Ok(Message::FileChunk {
            transfer_id: self.id,
            offset: next,
            data: Bytes::from(data),
        })
    }
}

/// A file being received into a folder.
#[derive(Debug)]
pub struct Incoming {
    /// The transfer's id.
    pub id: u32,
    /// The name offered.
    pub name: String,
    /// Its size.
    pub size: u64,
    sha256: [u8; 32],
    dir: PathBuf,
    part: PathBuf,
    file: tokio::fs::File,
    hash: Sha256,
    received: u64,
    resumed_from: u64,
    acked: u64,
}

/// The partial file's name for an offer: beside the final name, told apart by its hash.
pub fn part_name(name: &str, sha256: &[u8; 32]) -> String {
    format!("{name}.{}.part", &hex(sha256)[..16])
}

/// A name in `dir` not taken yet: `name`, else `name (1).ext`, `name (2).ext` and so on.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    (1..)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

impl Incoming {
    /// Takes the offer of `name` (`size` bytes, `sha256`) as transfer `id` into `dir`, refusing
    /// it over `max` bytes: resumes the partial file an earlier transfer of the same file left
    /// (hashing what it holds), or starts one.
    pub async fn start(
        dir: &Path,
        id: u32,
        name: &str,
        size: u64,
        sha256: [u8; 32],
        max: u64,
    ) -> Result<Self, Failure> {
        if !protocol::is_file_name(name) {
            return Err(Failure::new(
                FileOutcome::Failed,
                format!("{name:?} is not a file name this computer can write"),
            ));
        }
        if size > max {
            return Err(Failure::new(
                FileOutcome::TooLarge,
                format!("{name} is {size} bytes; this side takes at most {max}"),
            ));
        }
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Failure::io("cannot create", dir, &e))?;
        let part = dir.join(part_name(name, &sha256));
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .await
            .map_err(|e| Failure::io("cannot write", &part, &e))?;
        // What an earlier transfer left: hashed again (the bytes are on this disk, not trusted
        // to be what the hash in the name says), cut back to the offered size at most.
        let mut held = file
            .metadata()
            .await
            .map_err(|e| Failure::io("cannot read", &part, &e))?
            .len();
        if held > size {
            file.set_len(0)
                .await
                .map_err(|e| Failure::io("cannot write", &part, &e))?;
            held = 0;
        }
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0u64;
        while read < held {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| Failure::io("cannot read", &part, &e))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            read += n as u64;
        }
        file.seek(std::io::SeekFrom::Start(read))
            .await
            .map_err(|e| Failure::io("cannot write", &part, &e))?;
        Ok(Self {
            id,
            name: name.to_owned(),
            size,
            sha256,
            dir: dir.to_path_buf(),
            part,
            file,
            hash,
            received: read,
            resumed_from: read,
            acked: read,
        })
    }

    /// The accept to send: from the bytes already held.
    pub fn accept(&self) -> Message {
        Message::FileAccept {
            transfer_id: self.id,
            offset: self.resumed_from,
        }
    }

    /// The bytes held when the transfer started (more than 0: resumed).
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// The bytes written so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Writes a chunk, which must continue the file; a `FileProgress` to send when one is due.
    pub async fn chunk(&mut self, offset: u64, data: &[u8]) -> Result<Option<Message>, Failure> {
        if offset != self.received {
            return Err(Failure::new(
                FileOutcome::Failed,
                format!(
                    "data for byte {offset} arrived where byte {} was expected",
                    self.received
                ),
            ));
        }
        let end = offset + data.len() as u64;
        if end > self.size {
            return Err(Failure::new(
                FileOutcome::Failed,
                format!(
                    "data up to byte {end} arrived for a {}-byte file",
                    self.size
                ),
            ));
        }
        self.file
            .write_all(data)
            .await
            .map_err(|e| Failure::io("cannot write", &self.part, &e))?;
        self.hash.update(data);
        self.received = end;
        if self.received - self.acked >= PROGRESS_EVERY || self.received == self.size {
            self.acked = self.received;
            return Ok(Some(Message::FileProgress {
                transfer_id: self.id,
                received: self.received,
            }));
        }
        Ok(None)
    }

    /// Whether every byte has arrived.
    pub fn complete(&self) -> bool {
        self.received == self.size
    }

    /// After the last byte: checks the SHA-256 and gives the file its name (a free one in the
    /// folder); a mismatch removes the data.
    pub async fn finish(mut self) -> Result<PathBuf, Failure> {
        self.file
            .flush()
            .await
            .map_err(|e| Failure::io("cannot write", &self.part, &e))?;
        self.file
            .sync_all()
            .await
            .map_err(|e| Failure::io("cannot write", &self.part, &e))?;
        drop(self.file);
        let got: [u8; 32] = self.hash.finalize().into();
        if got != self.sha256 {
            let _ = tokio::fs::remove_file(&self.part).await;
            return Err(Failure::new(
                FileOutcome::HashMismatch,
                format!(
                    "{} arrived with SHA-256 {}, not the {} offered; it was not kept",
                    self.name,
                    hex(&got),
                    hex(&self.sha256)
                ),
            ));
        }
        let path = free_name(&self.dir, &self.name);
        tokio::fs::rename(&self.part, &path)
            .await
            .map_err(|e| Failure::io("cannot name", &path, &e))?;
        Ok(path)
    }
}

/// The most file chunks a sender sends a second: the relay allows a connection 1000 messages a
/// second, and video, audio and input take their share of that.
pub const MAX_CHUNKS_PER_SEC: u32 = 700;

/// Which way a transfer goes, seen from this side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// This side sends.
    Sending,
    /// This side receives.
    Receiving,
}

/// What a transfer did, for the side's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Bytes have crossed (acknowledged by the receiver, or written here).
    Progress {
        /// The transfer.
        id: u32,
        /// Which way.
        direction: Direction,
        /// The file's name.
        name: String,
        /// Its size.
        size: u64,
        /// Bytes the receiver has.
        done: u64,
        /// Where this transfer started (more than 0 when it resumed an earlier one).
        resumed_from: u64,
    },
    /// The receiver has the whole file and its SHA-256 matched.
    Verified {
        /// The transfer.
        id: u32,
        /// Which way.
        direction: Direction,
        /// The file's name.
        name: String,
        /// Its size.
        size: u64,
        /// Where it was written, on the receiving side.
        path: Option<PathBuf>,
        /// Its SHA-256.
        sha256: [u8; 32],
    },
    /// It stopped without the file.
    Stopped {
        /// The transfer.
        id: u32,
        /// Which way.
        direction: Direction,
        /// The file's name (the path asked for, for a request that never became an offer).
        name: String,
        /// How it ended.
        outcome: FileOutcome,
        /// Why, for people.
        message: String,
    },
}

/// A file this side sends, once accepted: its chunks come from a task of its own.
#[derive(Debug)]
struct Sending {
    name: String,
    size: u64,
    sha256: [u8; 32],
    resumed_from: u64,
    acked: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the endpoint's background work has ready, for [`Endpoint::ready`] in the session's loop.
#[derive(Debug)]
pub enum Ready {
    /// A message to send as it is (a chunk, or a sender's `FileEnd` after a read failed).
    Send(Message),
    /// A file to send was opened and hashed (for this side's offer or the other side's request).
    Opened(u32, Result<Outgoing, Failure>, String),
    /// An offered file's partial copy was found and hashed, or a new one made.
    Started(u32, Result<Incoming, Failure>, String),
    /// A received file was checked and named.
    Finished(Box<Finished>),
}

/// A received file's check.
#[derive(Debug)]
pub struct Finished {
    id: u32,
    name: String,
    size: u64,
    sha256: [u8; 32],
    result: Result<PathBuf, Failure>,
}

/// One side's file transfers in a session. Messages from the other side go into
/// [`Endpoint::receive`]; what the endpoint's tasks prepare (opening and hashing a file, resuming
/// a partial one, the chunks, the final check) comes out of the receiver [`Endpoint::new`]
/// returns and goes into [`Endpoint::ready`]. Both give the messages to send and what happened.
/// Nothing slow runs in the caller's loop: hashing a large file takes seconds, and a session's
/// loop must keep its video and pings moving meanwhile.
#[derive(Debug)]
pub struct Endpoint {
    into: PathBuf,
    max_incoming: u64,
    /// Offers received whose partial file is being prepared.
    starting: std::collections::HashMap<u32, String>,
    incoming: std::collections::HashMap<u32, Incoming>,
    /// Files being opened to send.
    opening: std::collections::HashMap<u32, String>,
    offered: std::collections::HashMap<u32, Outgoing>,
    sending: std::collections::HashMap<u32, Sending>,
    /// This side's requests, with the folder each file goes into.
    requested: std::collections::HashMap<u32, (String, PathBuf)>,
    /// Files received whole, being checked.
    finishing: std::collections::HashMap<u32, String>,
    ready: tokio::sync::mpsc::Sender<Ready>,
}

/// Sends `out`'s chunks from where it was accepted on into `ready`, within the window `acked`
/// moves and at most [`MAX_CHUNKS_PER_SEC`]; a read failure ends it with a `FileEnd`.
async fn send_chunks(
    mut out: Outgoing,
    mut acked: tokio::sync::watch::Receiver<u64>,
    ready: tokio::sync::mpsc::Sender<Ready>,
) {
    let pace = std::time::Duration::from_secs(1) / MAX_CHUNKS_PER_SEC;
    // Up to this much lag is made up at once: a timer wakes late by up to a millisecond, and a
    // pace that forgot the lateness would send far fewer chunks than it allows.
    let credit = pace * 16;
    let mut next_at = tokio::time::Instant::now();
    loop {
        out.progress(*acked.borrow_and_update());
        if out.ready() {
            let now = tokio::time::Instant::now();
            if next_at > now {
                tokio::time::sleep_until(next_at).await;
            }
            let floor = now.checked_sub(credit).unwrap_or(now);
            next_at = next_at.max(floor) + pace;
            let msg = match out.chunk().await {
                Ok(m) => m,
                Err(f) => {
                    let _ = ready.send(Ready::Send(f.end(out.id))).await;
                    return;
                }
            };
            if ready.send(Ready::Send(msg)).await.is_err() {
                return;
            }
        } else if out.next.is_some_and(|n| n >= out.size) || acked.changed().await.is_err() {
            // Everything is sent (the receiver's end comes to the endpoint), or the transfer is
            // gone.
            return;
        }
    }
}

/// What an update stops, with the failure's outcome and words.
fn stopped(id: u32, direction: Direction, name: String, f: Failure) -> Update {
    Update::Stopped {
        id,
        direction,
        name,
        outcome: f.outcome,
        message: f.message,
    }
}

impl Endpoint {
    /// An endpoint that writes the files offered to it into `into` (at most `max_incoming` bytes
    /// a file), and the receiver of what its tasks prepare.
    pub fn new(into: &Path, max_incoming: u64) -> (Self, tokio::sync::mpsc::Receiver<Ready>) {
        let (ready, rx) = tokio::sync::mpsc::channel(8);
        (
            Self {
                into: into.to_path_buf(),
                max_incoming,
                starting: Default::default(),
                incoming: Default::default(),
                opening: Default::default(),
                offered: Default::default(),
                sending: Default::default(),
                requested: Default::default(),
                finishing: Default::default(),
                ready,
            },
            rx,
        )
    }

    fn open(&mut self, id: u32, path: PathBuf) {
        let name = path.display().to_string();
        self.opening.insert(id, name.clone());
        let ready = self.ready.clone();
        tokio::spawn(async move {
            let out = Outgoing::open(id, &path).await;
            let _ = ready.send(Ready::Opened(id, out, name)).await;
        });
    }

    /// Offers the file at `path` as transfer `id`: its `FileOffer` comes once it is hashed.
    pub fn offer(&mut self, id: u32, path: &Path) {
        self.open(id, path.to_path_buf());
    }

    /// Asks the other side for its file at `path` as transfer `id`, to be written into `into`
    /// (the endpoint's folder when `None`): the `FileRequest` to send.
    pub fn request(&mut self, id: u32, path: &str, into: Option<&Path>) -> Message {
        let into = into.map_or_else(|| self.into.clone(), Path::to_path_buf);
        self.requested.insert(id, (path.to_owned(), into));
        Message::FileRequest {
            transfer_id: id,
            path: path.to_owned(),
        }
    }

    /// Stops transfer `id` (either way): the `FileEnd` to send, if it was open. A partial file
    /// received stays, to resume.
    pub fn cancel(&mut self, id: u32) -> Option<Message> {
        let open = self.starting.remove(&id).is_some()
            | self.incoming.remove(&id).is_some()
            | self.opening.remove(&id).is_some()
            | self.offered.remove(&id).is_some()
            | self.sending.remove(&id).is_some()
            | self.requested.remove(&id).is_some();
        open.then(|| Message::FileEnd {
            transfer_id: id,
            outcome: FileOutcome::Cancelled,
            message: "Stopped.".into(),
        })
    }

    /// The relay refused this side's file offer or request (`ToolRefused` names no transfer):
    /// every offer and request the other side has not answered yet stops with `why`.
    pub fn refused(&mut self, outcome: FileOutcome, why: &str) -> Vec<Update> {
        let mut out: Vec<Update> = self
            .offered
            .drain()
            .map(|(id, o)| (id, o.name, Direction::Sending))
            .chain(
                self.requested
                    .drain()
                    .map(|(id, (path, _))| (id, path, Direction::Receiving)),
            )
            .map(|(id, name, direction)| Update::Stopped {
                id,
                direction,
                name,
                outcome,
                message: why.to_owned(),
            })
            .collect();
        out.sort_by_key(|u| match u {
            Update::Stopped { id, .. } => *id,
            _ => 0,
        });
        out
    }

    /// Whether any transfer is open.
    pub fn busy(&self) -> bool {
        !(self.starting.is_empty()
            && self.incoming.is_empty()
            && self.opening.is_empty()
            && self.offered.is_empty()
            && self.sending.is_empty()
            && self.requested.is_empty()
            && self.finishing.is_empty())
    }

    /// What a task prepared: the messages to send, and what happened.
    pub fn ready(&mut self, ready: Ready) -> (Vec<Message>, Vec<Update>) {
        let mut send = Vec::new();
        let mut updates = Vec::new();
        match ready {
            Ready::Send(m) => {
                if let Message::FileEnd { transfer_id, .. } = &m {
                    self.sending.remove(transfer_id);
                }
                send.push(m);
            }
            Ready::Opened(id, result, name) => {
                // Stopped meanwhile: nothing to send.
                if self.opening.remove(&id).is_none() {
                    return (send, updates);
                }
                match result {
                    Ok(out) => {
                        send.push(out.offer());
                        self.offered.insert(id, out);
                    }
                    Err(f) => {
                        send.push(f.end(id));
                        updates.push(stopped(id, Direction::Sending, name, f));
                    }
                }
            }
            Ready::Started(id, result, name) => {
                if self.starting.remove(&id).is_none() {
                    return (send, updates);
                }
                match result {
                    Ok(inc) => {
                        send.push(inc.accept());
                        updates.push(Update::Progress {
                            id,
                            direction: Direction::Receiving,
                            name: inc.name.clone(),
                            size: inc.size,
                            done: inc.received(),
                            resumed_from: inc.resumed_from(),
                        });
                        if inc.complete() {
                            // Everything was here already (cut off after its last byte).
                            self.finish(inc);
                        } else {
                            self.incoming.insert(id, inc);
                        }
                    }
                    Err(f) => {
                        send.push(f.end(id));
                        updates.push(stopped(id, Direction::Receiving, name, f));
                    }
                }
            }
            Ready::Finished(f) => {
                let Finished {
                    id,
                    name,
                    size,
                    sha256,
                    result,
                } = *f;
                if self.finishing.remove(&id).is_none() {
                    return (send, updates);
                }
                match result {
                    Ok(path) => {
                        send.push(Message::FileEnd {
                            transfer_id: id,
                            outcome: FileOutcome::Verified,
                            message: String::new(),
                        });
                        updates.push(Update::Verified {
                            id,
                            direction: Direction::Receiving,
                            name,
                            size,
                            path: Some(path),
                            sha256,
                        });
                    }
                    Err(f) => {
                        send.push(f.end(id));
                        updates.push(stopped(id, Direction::Receiving, name, f));
                    }
                }
            }
        }
        (send, updates)
    }

    /// Checks a file received whole and names it, in a task.
    fn finish(&mut self, inc: Incoming) {
        let (id, name, size, sha256) = (inc.id, inc.name.clone(), inc.size, inc.sha256);
        self.finishing.insert(id, name.clone());
        let ready = self.ready.clone();
        tokio::spawn(async move {
            let result = inc.finish().await;
            let finished = Finished {
                id,
                name,
                size,
                sha256,
                result,
            };
            let _ = ready.send(Ready::Finished(Box::new(finished))).await;
        });
    }

    /// A file message from the other side (others are ignored): the messages to send back, and
    /// what happened.
    pub async fn receive(&mut self, msg: &Message) -> (Vec<Message>, Vec<Update>) {
        let mut send = Vec::new();
        let mut updates = Vec::new();
        match msg {
            Message::FileOffer {
                transfer_id,
                size,
                sha256,
                name,
            } => {
                let into = match self.requested.remove(transfer_id) {
                    Some((_, into)) => into,
                    None => self.into.clone(),
                };
                let (id, name, size, sha256, max) = (
                    *transfer_id,
                    name.clone(),
                    *size,
                    *sha256,
                    self.max_incoming,
                );
                self.starting.insert(id, name.clone());
                let ready = self.ready.clone();
                tokio::spawn(async move {
                    let inc = Incoming::start(&into, id, &name, size, sha256, max).await;
                    let _ = ready.send(Ready::Started(id, inc, name)).await;
                });
            }
            Message::FileRequest { transfer_id, path } => {
                self.open(*transfer_id, PathBuf::from(path));
            }
            Message::FileAccept {
                transfer_id,
                offset,
            } => {
                if let Some(mut out) = self.offered.remove(transfer_id) {
                    match out.accept(*offset).await {
                        Ok(()) => {
                            updates.push(Update::Progress {
                                id: *transfer_id,
                                direction: Direction::Sending,
                                name: out.name.clone(),
                                size: out.size,
                                done: *offset,
                                resumed_from: *offset,
                            });
                            let (acked, acked_rx) = tokio::sync::watch::channel(*offset);
                            let sending = Sending {
                                name: out.name.clone(),
                                size: out.size,
                                sha256: out.sha256,
                                resumed_from: *offset,
                                acked,
                                task: tokio::spawn(send_chunks(out, acked_rx, self.ready.clone())),
                            };
                            self.sending.insert(*transfer_id, sending);
                        }
                        Err(f) => {
                            send.push(f.end(*transfer_id));
                            updates.push(stopped(
                                *transfer_id,
                                Direction::Sending,
                                out.name.clone(),
                                f,
                            ));
                        }
                    }
                }
            }
            Message::FileChunk {
                transfer_id,
                offset,
                data,
            } => {
                let Some(inc) = self.incoming.get_mut(transfer_id) else {
                    return (send, updates);
                };
                match inc.chunk(*offset, data).await {
                    Ok(progress) => {
                        if let Some(p) = progress {
                            send.push(p);
                            updates.push(Update::Progress {
                                id: *transfer_id,
                                direction: Direction::Receiving,
                                name: inc.name.clone(),
                                size: inc.size,
                                done: inc.received(),
                                resumed_from: inc.resumed_from(),
                            });
                        }
                        if inc.complete() {
                            if let Some(inc) = self.incoming.remove(transfer_id) {
                                self.finish(inc);
                            }
                        }
                    }
                    Err(f) => {
                        let name = inc.name.clone();
                        self.incoming.remove(transfer_id);
                        send.push(f.end(*transfer_id));
                        updates.push(stopped(*transfer_id, Direction::Receiving, name, f));
                    }
                }
            }
            Message::FileProgress {
                transfer_id,
                received,
            } => {
                if let Some(s) = self.sending.get(transfer_id) {
                    let _ = s.acked.send(*received);
                    updates.push(Update::Progress {
                        id: *transfer_id,
                        direction: Direction::Sending,
                        name: s.name.clone(),
                        size: s.size,
                        done: *received,
                        resumed_from: s.resumed_from,
                    });
                }
            }
            Message::FileEnd {
                transfer_id,
                outcome,
                message,
            } => {
                let id = *transfer_id;
                let failure = || Failure::new(*outcome, message.clone());
                if let Some(s) = self.sending.remove(&id) {
                    if *outcome == FileOutcome::Verified {
                        updates.push(Update::Verified {
                            id,
                            direction: Direction::Sending,
                            name: s.name.clone(),
                            size: s.size,
                            path: None,
                            sha256: s.sha256,
                        });
                    } else {
                        updates.push(stopped(id, Direction::Sending, s.name.clone(), failure()));
                    }
                } else if let Some(out) = self.offered.remove(&id) {
                    updates.push(stopped(id, Direction::Sending, out.name, failure()));
                } else if let Some(name) = self.opening.remove(&id) {
                    updates.push(stopped(id, Direction::Sending, name, failure()));
                } else if let Some(inc) = self.incoming.remove(&id) {
                    updates.push(stopped(
                        id,
                        Direction::Receiving,
                        inc.name.clone(),
                        failure(),
                    ));
                } else if let Some(name) = self.starting.remove(&id) {
                    updates.push(stopped(id, Direction::Receiving, name, failure()));
                } else if let Some((path, _)) = self.requested.remove(&id) {
                    updates.push(stopped(id, Direction::Receiving, path, failure()));
                }
            }
            _ => {}
        }
        (send, updates)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    async fn send_all(out: &mut Outgoing, inc: &mut Incoming, limit: Option<u64>) {
        while out.ready() {
            let Message::FileChunk { offset, data, .. } = out.chunk().await.unwrap() else {
                panic!()
            };
            if limit.is_some_and(|l| offset >= l) {
                return;
            }
            if let Some(Message::FileProgress { received, .. }) =
                inc.chunk(offset, &data).await.unwrap()
            {
                out.progress(received);
            }
        }
    }

    #[tokio::test]
    async fn a_file_crosses_is_cut_off_resumes_and_gets_a_free_name() {
        let from = tempfile::tempdir().unwrap();
        let into = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let path = from.path().join("big file.bin");
        std::fs::write(&path, &data).unwrap();
        std::fs::write(into.path().join("big file.bin"), b"already there").unwrap();

        let mut out = Outgoing::open(1, &path).await.unwrap();
        assert_eq!((out.name.as_str(), out.size), ("big file.bin", 3_000_000));
        let inc = Incoming::start(into.path(), 1, &out.name, out.size, out.sha256, u64::MAX)
            .await
            .unwrap();
        assert_eq!(
            inc.accept(),
            Message::FileAccept {
                transfer_id: 1,
                offset: 0
            }
        );
        out.accept(0).await.unwrap();
        // The window holds the sender back until the receiver acknowledges.
        let mut sent = 0;
        while out.ready() {
            out.chunk().await.unwrap();
            sent += 1;
        }
        assert_eq!(sent, WINDOW as usize / FILE_CHUNK);
        drop(inc);
        // A new session: the partial file is found empty (nothing was written), so start over and
        // cut the transfer off after 1 MB.
        let mut out = Outgoing::open(2, &path).await.unwrap();
        let mut inc = Incoming::start(into.path(), 2, &out.name, out.size, out.sha256, u64::MAX)
            .await
            .unwrap();
        out.accept(0).await.unwrap();
        send_all(&mut out, &mut inc, Some(1_048_576)).await;
        assert_eq!(inc.received(), 1_048_576);
        drop(inc);

        // Resumed: only the rest crosses, and the hash covers the whole file.
        let mut out = Outgoing::open(3, &path).await.unwrap();
        let mut inc = Incoming::start(into.path(), 3, &out.name, out.size, out.sha256, u64::MAX)
            .await
            .unwrap();
        assert_eq!(inc.resumed_from(), 1_048_576);
        out.accept(inc.resumed_from()).await.unwrap();
        send_all(&mut out, &mut inc, None).await;
        assert!(inc.complete());
        assert_eq!(out.acknowledged(), 3_000_000);
        let saved = inc.finish().await.unwrap();
        assert_eq!(saved, into.path().join("big file (1).bin"));
        assert_eq!(std::fs::read(&saved).unwrap(), data);
        assert_eq!(
            std::fs::read(into.path().join("big file.bin")).unwrap(),
            b"already there"
        );
        assert_eq!(
            std::fs::read_dir(into.path()).unwrap().count(),
            2,
            "no part left"
        );
    }

    /// Two endpoints joined by hand: what one sends, the other receives, until both are quiet.
    async fn pump(
        a: &mut Endpoint,
        a_ready: &mut tokio::sync::mpsc::Receiver<Ready>,
        b: &mut Endpoint,
        b_ready: &mut tokio::sync::mpsc::Receiver<Ready>,
        first: Vec<Message>,
    ) -> (Vec<Update>, Vec<Update>) {
        let (mut to_b, mut to_a) = (first, Vec::new());
        let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
        loop {
            for m in std::mem::take(&mut to_b) {
                let (reply, u) = b.receive(&m).await;
                to_a.extend(reply);
                seen_b.extend(u);
            }
            for m in std::mem::take(&mut to_a) {
                let (reply, u) = a.receive(&m).await;
                to_b.extend(reply);
                seen_a.extend(u);
            }
            if !(to_a.is_empty() && to_b.is_empty()) {
                continue;
            }
            let quiet = tokio::time::sleep(std::time::Duration::from_millis(200));
            tokio::select! {
                Some(r) = a_ready.recv() => {
                    let (send, u) = a.ready(r);
                    to_b.extend(send);
                    seen_a.extend(u);
                }
                Some(r) = b_ready.recv() => {
                    let (send, u) = b.ready(r);
                    to_a.extend(send);
                    seen_b.extend(u);
                }
                _ = quiet => return (seen_a, seen_b),
            }
        }
    }

    #[tokio::test]
    async fn endpoints_send_request_and_refuse_files_between_them() {
        let (tech_dir, remote_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
        std::fs::write(tech_dir.path().join("tool.exe"), &data).unwrap();
        std::fs::write(remote_dir.path().join("crash.dmp"), b"dump").unwrap();
        let (mut tech, mut tech_chunks) = Endpoint::new(&tech_dir.path().join("in"), 1 << 30);
        let (mut remote, mut remote_chunks) =
            Endpoint::new(&remote_dir.path().join("Downloads"), 1 << 30);

        tech.offer(1, &tech_dir.path().join("tool.exe"));
        let (t, r) = pump(
            &mut tech,
            &mut tech_chunks,
            &mut remote,
            &mut remote_chunks,
            vec![],
        )
        .await;
        assert!(
            matches!(
                t.last(),
                Some(Update::Verified {
                    direction: Direction::Sending,
                    size: 200_000,
                    ..
                })
            ),
            "{t:?}"
        );
        let Some(Update::Verified {
            path: Some(path), ..
        }) = r.last()
        else {
            panic!("{r:?}")
        };
        assert_eq!(std::fs::read(path).unwrap(), data);

        let request = tech.request(
            2,
            remote_dir.path().join("crash.dmp").to_str().unwrap(),
            None,
        );
        let (t, _) = pump(
            &mut tech,
            &mut tech_chunks,
            &mut remote,
            &mut remote_chunks,
            vec![request],
        )
        .await;
        let Some(Update::Verified {
            path: Some(path),
            name,
            ..
        }) = t.last()
        else {
            panic!("{t:?}")
        };
        assert_eq!(
            (name.as_str(), std::fs::read(path).unwrap()),
            ("crash.dmp", b"dump".to_vec())
        );

        let missing = tech.request(3, "/no/such/file", None);
        let (t, r) = pump(
            &mut tech,
            &mut tech_chunks,
            &mut remote,
            &mut remote_chunks,
            vec![missing],
        )
        .await;
        assert!(
            matches!(
                t.last(),
                Some(Update::Stopped {
                    outcome: FileOutcome::NotFound,
                    ..
                })
            ),
            "{t:?}"
        );
        assert!(
            matches!(
                r.last(),
                Some(Update::Stopped {
                    outcome: FileOutcome::NotFound,
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(!tech.busy() && !remote.busy());
    }

    #[tokio::test]
    async fn wrong_data_is_caught_by_the_hash_and_not_kept() {
        let into = tempfile::tempdir().unwrap();
        let mut inc = Incoming::start(into.path(), 1, "a.txt", 3, [0; 32], 10)
            .await
            .unwrap();
        assert_eq!(
            inc.chunk(1, b"bc").await.unwrap_err().outcome,
            FileOutcome::Failed,
            "out of order"
        );
        assert!(inc.chunk(0, b"abcd").await.is_err(), "past the size");
        inc.chunk(0, b"abc").await.unwrap();
        let err = inc.finish().await.unwrap_err();
        assert_eq!(err.outcome, FileOutcome::HashMismatch);
        assert_eq!(std::fs::read_dir(into.path()).unwrap().count(), 0);

        let too_big = Incoming::start(into.path(), 2, "b.txt", 11, [0; 32], 10).await;
        assert_eq!(too_big.unwrap_err().outcome, FileOutcome::TooLarge);
        let bad = Incoming::start(into.path(), 3, "../b.txt", 1, [0; 32], 10).await;
        assert_eq!(bad.unwrap_err().outcome, FileOutcome::Failed);
        let missing = Outgoing::open(4, &into.path().join("nothing.txt")).await;
        assert_eq!(missing.unwrap_err().outcome, FileOutcome::NotFound);
    }
}
