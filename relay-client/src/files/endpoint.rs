//! One side's file transfers in a session ([`Endpoint`]) over [`Outgoing`] and [`Incoming`]: what
//! the other side sends goes in, the messages to send and what happened come out, and the slow
//! work runs in tasks of its own.

use std::path::{Path, PathBuf};

use protocol::{FileOutcome, Message};

use super::{Failure, FileRights, Incoming, Outgoing};

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
    /// The other side offers a file nobody here asked for: it waits for [`Endpoint::take`] or
    /// [`Endpoint::decline`] (an endpoint that asks first, [`Endpoint::ask_before_taking`]).
    Offered {
        /// The transfer.
        id: u32,
        /// The file's name, as the other side gives it.
        name: String,
        /// Its size.
        size: u64,
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
    /// What this side never sends when asked: its own data (see [`Endpoint::protect`]).
    protected: std::sync::Arc<[PathBuf]>,
    /// Whose rights the file-system calls run with (see [`Endpoint::act_as`]).
    rights: FileRights,
    /// Set: a file nobody here asked for waits for this side's answer, and is refused over this
    /// many bytes (see [`Endpoint::ask_before_taking`]).
    ask_unrequested: Option<u64>,
    /// Offers nobody here asked for, waiting for an answer: name, size, SHA-256.
    unasked: std::collections::HashMap<u32, (String, u64, [u8; 32])>,
    ready: tokio::sync::mpsc::Sender<Ready>,
}

/// Whether `asked` is, or is inside, one of `protected` (files or folders), however the path
/// reaches it: symbolic links, `..` and, on Unix, hard links (the same inode) included.
pub async fn is_protected(asked: &Path, protected: &[PathBuf]) -> bool {
    let Ok(real) = tokio::fs::canonicalize(asked).await else {
        return false;
    };
    #[cfg(unix)]
    let asked_id = {
        use std::os::unix::fs::MetadataExt as _;
        tokio::fs::metadata(&real)
            .await
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    for p in protected {
        let Ok(own) = tokio::fs::canonicalize(p).await else {
            continue;
        };
        if real.starts_with(&own) {
            return true;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            if let Ok(m) = tokio::fs::metadata(&own).await {
                if m.is_file() && asked_id == Some((m.dev(), m.ino())) {
                    return true;
                }
            }
        }
    }
    false
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
                protected: std::sync::Arc::from(Vec::new()),
                rights: FileRights::default(),
                ask_unrequested: None,
                unasked: Default::default(),
                ready,
            },
            rx,
        )
    }

    fn open(&mut self, id: u32, path: PathBuf) {
        let name = path.display().to_string();
        self.opening.insert(id, name.clone());
        let ready = self.ready.clone();
        let rights = self.rights.clone();
        tokio::spawn(async move {
            let out = Outgoing::open(id, &path, &rights).await;
            let _ = ready.send(Ready::Opened(id, out, name)).await;
        });
    }

    /// Never sends `paths` (files, or folders with all they hold) when the other side asks for
    /// them: the agent's own data (its device credential, settings and logs), which the person
    /// asking is not trusted with whatever their role.
    pub fn protect(&mut self, paths: Vec<PathBuf>) {
        self.protected = std::sync::Arc::from(paths);
    }

    /// Runs every file-system call of this endpoint's transfers with `rights` (this process's by
    /// default): a service working for a signed-in user passes that user's.
    pub fn act_as(&mut self, rights: FileRights) {
        self.rights = rights;
    }

    /// Takes no file that nobody here asked for without an answer: such an offer comes out as
    /// [`Update::Offered`] and waits for [`Endpoint::take`] or [`Endpoint::decline`]; one over
    /// `max_bytes` is refused at once (`too large`). Files this side requested are taken as
    /// before. For the technician's side: the other side is anyone holding the attended key.
    pub fn ask_before_taking(&mut self, max_bytes: u64) {
        self.ask_unrequested = Some(max_bytes);
    }

    /// Takes the offered file `id` that waited for an answer, into `into` (the endpoint's folder
    /// when `None`); false when no such offer waits.
    pub fn take(&mut self, id: u32, into: Option<&Path>) -> bool {
        let Some((name, size, sha256)) = self.unasked.remove(&id) else {
            return false;
        };
        let into = into.map_or_else(|| self.into.clone(), Path::to_path_buf);
        self.start_incoming(id, into, name, size, sha256);
        true
    }

    /// Declines the offered file `id` that waited for an answer: the `FileEnd` to send and what
    /// happened, if it waited.
    pub fn decline(&mut self, id: u32) -> Option<(Message, Update)> {
        let (name, _, _) = self.unasked.remove(&id)?;
        let f = Failure::new(FileOutcome::Cancelled, "The technician declined the file.");
        Some((f.end(id), stopped(id, Direction::Receiving, name, f)))
    }

    fn start_incoming(
        &mut self,
        id: u32,
        into: PathBuf,
        name: String,
        size: u64,
        sha256: [u8; 32],
    ) {
        let max = self.max_incoming;
        self.starting.insert(id, name.clone());
        let ready = self.ready.clone();
        let rights = self.rights.clone();
        tokio::spawn(async move {
            let inc = Incoming::start(&into, id, (&name, size, sha256), max, &rights).await;
            let _ = ready.send(Ready::Started(id, inc, name)).await;
        });
    }

    /// Opens the file the other side asked for, unless it is this side's own data.
    fn serve_request(&mut self, id: u32, path: PathBuf) {
        let name = path.display().to_string();
        self.opening.insert(id, name.clone());
        let ready = self.ready.clone();
        let protected = self.protected.clone();
        let rights = self.rights.clone();
        tokio::spawn(async move {
            let out = if is_protected(&path, &protected).await {
                Err(Failure::new(
                    FileOutcome::Failed,
                    format!(
                        "{name} belongs to the remote support software itself (its credential, \
                         settings or logs) and is never sent."
                    ),
                ))
            } else {
                Outgoing::open(id, &path, &rights).await
            };
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
            | self.requested.remove(&id).is_some()
            | self.unasked.remove(&id).is_some();
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
                let (id, name, size, sha256) = (*transfer_id, name.clone(), *size, *sha256);
                match (self.requested.remove(transfer_id), self.ask_unrequested) {
                    (Some((_, into)), _) => self.start_incoming(id, into, name, size, sha256),
                    (None, None) => {
                        self.start_incoming(id, self.into.clone(), name, size, sha256);
                    }
                    (None, Some(max)) if size > max => {
                        let f = Failure::new(
                            FileOutcome::TooLarge,
                            format!(
                                "{name} is {size} bytes, more than the {max} bytes this side takes unasked."
                            ),
                        );
                        send.push(f.end(id));
                        updates.push(stopped(id, Direction::Receiving, name, f));
                    }
                    (None, Some(_)) => {
                        self.unasked.insert(id, (name.clone(), size, sha256));
                        updates.push(Update::Offered { id, name, size });
                    }
                }
            }
            Message::FileRequest { transfer_id, path } => {
                self.serve_request(*transfer_id, PathBuf::from(path));
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
                } else if let Some((name, _, _)) = self.unasked.remove(&id) {
                    updates.push(stopped(id, Direction::Receiving, name, failure()));
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

    #[tokio::test]
    async fn a_file_nobody_asked_for_waits_for_an_answer_and_a_large_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut tech, mut ready) = Endpoint::new(&dir.path().join("in"), u64::MAX);
        tech.ask_before_taking(1000);
        let offer = |id, size| Message::FileOffer {
            transfer_id: id,
            size,
            sha256: [7; 32],
            name: "invoice.pdf.desktop".into(),
        };
        // Offered: nothing is written, nothing is answered; the technician is asked.
        let (send, updates) = tech.receive(&offer(1, 33)).await;
        assert!(send.is_empty());
        assert_eq!(
            updates,
            [Update::Offered {
                id: 1,
                name: "invoice.pdf.desktop".into(),
                size: 33
            }]
        );
        assert!(!dir.path().join("in").exists());
        // Declined: the sender is told, nothing lands.
        let (end, stopped) = tech.decline(1).unwrap();
        assert!(matches!(
            end,
            Message::FileEnd {
                transfer_id: 1,
                outcome: FileOutcome::Cancelled,
                ..
            }
        ));
        assert!(matches!(stopped, Update::Stopped { id: 1, .. }));
        assert!(tech.decline(1).is_none() && !tech.take(1, None));
        // Over the cap: refused at once, never asked.
        let (send, updates) = tech.receive(&offer(2, 1001)).await;
        assert!(matches!(
            &send[..],
            [Message::FileEnd {
                transfer_id: 2,
                outcome: FileOutcome::TooLarge,
                ..
            }]
        ));
        assert!(matches!(&updates[..], [Update::Stopped { id: 2, .. }]));
        // Taken: it starts as any offer does (its FileAccept comes from the prepared file).
        tech.receive(&offer(3, 10)).await;
        assert!(tech.take(3, None));
        let (send, _) = tech.ready(ready.recv().await.unwrap());
        assert!(matches!(
            &send[..],
            [Message::FileAccept {
                transfer_id: 3,
                offset: 0
            }]
        ));
    }

    // Links are made with Unix calls here; on Windows the same check runs on canonical paths.
    #[cfg(unix)]
    #[tokio::test]
    async fn own_data_is_protected_however_the_path_reaches_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("agent");
        std::fs::create_dir_all(data.join("logs")).unwrap();
        let credential = dir.path().join("device.credential");
        std::fs::write(&credential, "id\nsecret\n").unwrap();
        std::fs::write(data.join("logs/streamer.log"), "log").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let protected = [credential.clone(), data.clone()];
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&credential, elsewhere.join("innocent.txt")).unwrap();
        std::fs::hard_link(&credential, elsewhere.join("copy.txt")).unwrap();
        for asked in [
            credential.clone(),
            data.join("logs/streamer.log"),
            elsewhere.join("../device.credential"),
            elsewhere.join("innocent.txt"),
            elsewhere.join("copy.txt"),
        ] {
            assert!(
                is_protected(&asked, &protected).await,
                "{}",
                asked.display()
            );
        }
        assert!(!is_protected(&dir.path().join("notes.txt"), &protected).await);
        assert!(!is_protected(&dir.path().join("missing"), &protected).await);

        // Asked for through the protocol: refused with a sentence, nothing offered.
        let (mut streamer, mut ready) = Endpoint::new(&dir.path().join("Downloads"), 1 << 20);
        streamer.protect(protected.to_vec());
        let (send, _) = streamer
            .receive(&Message::FileRequest {
                transfer_id: 9,
                path: elsewhere.join("innocent.txt").display().to_string(),
            })
            .await;
        assert!(send.is_empty());
        let (send, updates) = streamer.ready(ready.recv().await.unwrap());
        let [Message::FileEnd {
            transfer_id: 9,
            outcome: FileOutcome::Failed,
            message,
        }] = &send[..]
        else {
            panic!("{send:?}")
        };
        assert!(message.contains("never sent"), "{message}");
        assert!(
            matches!(&updates[..], [Update::Stopped { id: 9, .. }]),
            "{updates:?}"
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
            // Nothing in flight between them: done once neither has a transfer open. Otherwise a
            // task of one of them (hashing, writing, sending chunks) has more to say, however
            // long a busy machine takes; a minute of silence then is a transfer stuck open.
            if !a.busy() && !b.busy() {
                return (seen_a, seen_b);
            }
            let stuck = tokio::time::sleep(std::time::Duration::from_secs(60));
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
                _ = stuck => panic!("transfers stuck open: {seen_a:?} {seen_b:?}"),
            }
        }
    }

    /// Every file-system call of a transfer runs with the endpoint's rights: a remote side whose
    /// rights refuse everything (the Windows helper when no one is signed in) neither serves a
    /// request nor writes an offered file, and one whose calls run on a worker (the Windows
    /// helper's thread that impersonates the signed-in user) does all its opening, creating and
    /// naming there.
    #[tokio::test]
    async fn every_file_call_runs_with_the_endpoints_rights() {
        let (tech_dir, remote_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(tech_dir.path().join("tool.exe"), b"tool").unwrap();
        std::fs::write(remote_dir.path().join("crash.dmp"), b"dump").unwrap();
        let downloads = remote_dir.path().join("Downloads");
        let (mut tech, mut tech_ready) = Endpoint::new(&tech_dir.path().join("in"), 1 << 30);
        let (mut remote, mut remote_ready) = Endpoint::new(&downloads, 1 << 30);
        remote.act_as(FileRights::refusing("no one is signed in to this computer"));

        tech.offer(1, &tech_dir.path().join("tool.exe"));
        let request = tech.request(
            2,
            remote_dir.path().join("crash.dmp").to_str().unwrap(),
            None,
        );
        let (t, r) = pump(
            &mut tech,
            &mut tech_ready,
            &mut remote,
            &mut remote_ready,
            vec![request],
        )
        .await;
        for id in [1, 2] {
            assert!(
                r.iter()
                    .any(|u| matches!(u, Update::Stopped { id: i, message, .. }
                    if *i == id && message.contains("no one is signed in"))),
                "transfer {id}: {r:?}"
            );
            assert!(
                t.iter()
                    .any(|u| matches!(u, Update::Stopped { id: i, .. } if *i == id)),
                "transfer {id}: {t:?}"
            );
        }
        assert!(!downloads.exists(), "nothing was written");

        // The same with the calls on a worker thread that counts them.
        let (jobs, queue) = std::sync::mpsc::channel::<super::super::Job>();
        let worker = std::thread::spawn(move || queue.into_iter().map(|job| job()).count());
        let jobs = std::sync::Mutex::new(jobs);
        remote.act_as(FileRights::on("a worker", move |job| {
            let _ = jobs.lock().unwrap().send(job);
        }));
        tech.offer(3, &tech_dir.path().join("tool.exe"));
        let request = tech.request(
            4,
            remote_dir.path().join("crash.dmp").to_str().unwrap(),
            None,
        );
        let (_, r) = pump(
            &mut tech,
            &mut tech_ready,
            &mut remote,
            &mut remote_ready,
            vec![request],
        )
        .await;
        let verified = r
            .iter()
            .filter(|u| matches!(u, Update::Verified { .. }))
            .count();
        assert_eq!(verified, 2, "{r:?}");
        assert_eq!(std::fs::read(downloads.join("tool.exe")).unwrap(), b"tool");
        drop(remote);
        // Opening the requested file; creating the partial file; naming it.
        assert_eq!(worker.join().unwrap(), 3);
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
}
