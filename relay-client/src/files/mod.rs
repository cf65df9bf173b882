//! Both ends of a file transfer (protocol 1.2.0, docs/PROTOCOL.md section 7, "File transfer"),
//! shared by the technician library and the streamer agent: [`Outgoing`] reads a file and sends it
//! in chunks within a window of unacknowledged bytes; [`Incoming`] writes one into a folder,
//! resuming a partial file an earlier session left, hashing as it goes, and gives it its name once
//! its SHA-256 matches the offer's.
//!
//! Neither touches the network: the caller passes messages in and sends what comes out. Every
//! file-system call goes through the endpoint's [`FileRights`] (whose rights it runs with).

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
    /// Opens the file at `path` for transfer `id` with `rights`: its size, its SHA-256 (read
    /// through once) and its name, which must be one a receiver can write.
    pub async fn open(id: u32, path: &Path, rights: &FileRights) -> Result<Self, Failure> {
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
        let at = path.to_path_buf();
        let (file, meta) = rights
            .call(move || {
                let file = std::fs::File::open(&at)?;
                let meta = file.metadata()?;
                Ok((file, meta))
            })
            .await
            .map_err(not_found)?;
        if !meta.is_file() {
            return Err(Failure::new(
                FileOutcome::NotFound,
                format!("{} is not a file", path.display()),
            ));
        }
        // Hashed through the handle that is sent from: the file opened is the file offered.
        let mut file = tokio::fs::File::from_std(file);
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).await.map_err(not_found)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
        let sha256: [u8; 32] = hash.finalize().into();
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(not_found)?;
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
    rights: FileRights,
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
    /// Takes the offer of `name` (`size` bytes, `sha256`) as transfer `id` into `dir` with
    /// `rights`, refusing it over `max` bytes: resumes the partial file an earlier transfer of the
    /// same file left (hashing what it holds), or starts one.
    pub async fn start(
        dir: &Path,
        id: u32,
        (name, size, sha256): (&str, u64, [u8; 32]),
        max: u64,
        rights: &FileRights,
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
        let part = dir.join(part_name(name, &sha256));
        let (folder, at) = (dir.to_path_buf(), part.clone());
        let mut file = rights
            .call(move || {
                std::fs::create_dir_all(&folder)?;
                open_part(&at)
            })
            .await
            .map(tokio::fs::File::from_std)
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
            rights: rights.clone(),
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
            let part = self.part.clone();
            let _ = self.rights.call(move || std::fs::remove_file(part)).await;
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
        name_without_replacing(&self.part, &self.dir, &self.name, &self.rights).await
    }
}

/// Opens (creating it if missing) a partial file to write, never through a link: a symbolic link
/// (or, on Windows, a junction or other reparse point) planted under its name would otherwise make
/// the other side's bytes land wherever it points. Anything but a plain file there is refused.
fn open_part(part: &Path) -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    #[cfg(windows)]
    use std::os::windows::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW);
    // FILE_FLAG_OPEN_REPARSE_POINT: the link itself is opened, and refused below.
    #[cfg(windows)]
    options.custom_flags(0x0020_0000);
    let file = options.open(part)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("it is not a plain file"));
    }
    Ok(file)
}

/// Gives the finished partial file `part` its name in `dir`: `name`, else the first free
/// `name (N).ext`, never replacing a file that is there, even one that appears meanwhile (a hard
/// link made to a name that exists fails; a file system without hard links gets a checked rename).
async fn name_without_replacing(
    part: &Path,
    dir: &Path,
    name: &str,
    rights: &FileRights,
) -> Result<PathBuf, Failure> {
    for _ in 0..1000 {
        let path = free_name(dir, name);
        let (from, to) = (part.to_path_buf(), path.clone());
        let named = rights
            .call(move || match std::fs::hard_link(&from, &to) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&from);
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(_) if !to.exists() => std::fs::rename(&from, &to).map(|()| true),
                Err(e) => Err(e),
            })
            .await;
        match named {
            Ok(true) => return Ok(path),
            Ok(false) => continue,
            Err(e) => return Err(Failure::io("cannot name", &path, &e)),
        }
    }
    Err(Failure::new(
        FileOutcome::Failed,
        format!("no free name for {name} in {}", dir.display()),
    ))
}

mod endpoint;
mod rights;
pub use endpoint::{Direction, Endpoint, Finished, Ready, Update, MAX_CHUNKS_PER_SEC};
pub use rights::{FileRights, Job};

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

    // A symbolic link is made with a Unix call here.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_link_planted_as_the_partial_file_is_refused_and_nothing_is_written_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let into = dir.path().join("in");
        std::fs::create_dir_all(&into).unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        let sha: [u8; 32] = Sha256::digest(b"attacker-chosen bytes").into();
        std::os::unix::fs::symlink(&victim, into.join(part_name("notes.txt", &sha))).unwrap();
        let refused = Incoming::start(
            &into,
            1,
            ("notes.txt", 21, sha),
            1 << 20,
            &FileRights::default(),
        )
        .await;
        assert!(refused.is_err(), "opened through the link");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // Naming never replaces a file, not even one that appeared after the free name was chosen.
        let part = into.join("x.part");
        std::fs::write(&part, "new").unwrap();
        std::fs::write(into.join("report.pdf"), "old").unwrap();
        let named = name_without_replacing(&part, &into, "report.pdf", &FileRights::default())
            .await
            .unwrap();
        assert_eq!(named, into.join("report (1).pdf"));
        assert_eq!(
            std::fs::read_to_string(into.join("report.pdf")).unwrap(),
            "old"
        );
        assert_eq!(std::fs::read_to_string(&named).unwrap(), "new");
        assert!(!part.exists());
    }

    #[tokio::test]
    async fn a_file_crosses_is_cut_off_resumes_and_gets_a_free_name() {
        let from = tempfile::tempdir().unwrap();
        let into = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let path = from.path().join("big file.bin");
        std::fs::write(&path, &data).unwrap();
        std::fs::write(into.path().join("big file.bin"), b"already there").unwrap();

        let mut out = Outgoing::open(1, &path, &FileRights::default())
            .await
            .unwrap();
        assert_eq!((out.name.as_str(), out.size), ("big file.bin", 3_000_000));
        let inc = Incoming::start(
            into.path(),
            1,
            (&out.name, out.size, out.sha256),
            u64::MAX,
            &FileRights::default(),
        )
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
        let mut out = Outgoing::open(2, &path, &FileRights::default())
            .await
            .unwrap();
        let mut inc = Incoming::start(
            into.path(),
            2,
            (&out.name, out.size, out.sha256),
            u64::MAX,
            &FileRights::default(),
        )
        .await
        .unwrap();
        out.accept(0).await.unwrap();
        send_all(&mut out, &mut inc, Some(1_048_576)).await;
        assert_eq!(inc.received(), 1_048_576);
        drop(inc);

        // Resumed: only the rest crosses, and the hash covers the whole file.
        let mut out = Outgoing::open(3, &path, &FileRights::default())
            .await
            .unwrap();
        let mut inc = Incoming::start(
            into.path(),
            3,
            (&out.name, out.size, out.sha256),
            u64::MAX,
            &FileRights::default(),
        )
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

    #[tokio::test]
    async fn wrong_data_is_caught_by_the_hash_and_not_kept() {
        let into = tempfile::tempdir().unwrap();
        let mut inc = Incoming::start(
            into.path(),
            1,
            ("a.txt", 3, [0; 32]),
            10,
            &FileRights::default(),
        )
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

        let too_big = Incoming::start(
            into.path(),
            2,
            ("b.txt", 11, [0; 32]),
            10,
            &FileRights::default(),
        )
        .await;
        assert_eq!(too_big.unwrap_err().outcome, FileOutcome::TooLarge);
        let bad = Incoming::start(
            into.path(),
            3,
            ("../b.txt", 1, [0; 32]),
            10,
            &FileRights::default(),
        )
        .await;
        assert_eq!(bad.unwrap_err().outcome, FileOutcome::Failed);
        let missing =
            Outgoing::open(4, &into.path().join("nothing.txt"), &FileRights::default()).await;
        assert_eq!(missing.unwrap_err().outcome, FileOutcome::NotFound);
    }
}
