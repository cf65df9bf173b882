//! The recorder: every recorded session's video, as it passes, into browser-playable files.
//!
//! Each recorded session gets a task fed by a bounded queue from the streamer's connection task (a
//! full queue makes that task wait: frames are never skipped). The task writes each file to a spool
//! file on the relay's disk, one synced fragment at a time, so that a crash loses at most the fragment
//! being gathered; a closed file is uploaded to the object store, hashed, and recorded in SQL.
//!
//! A new file starts on a monitor switch, a frame-rate change, an orientation change, a resolution
//! change, or before the size cap: the recorder asks the streamer for a keyframe ahead of the cap and
//! splits on it, so that every file starts with its own init segment and a keyframe.

/// The file format, in its own crate so that it can be fuzzed without the relay around it.
pub use recording_fmp4 as fmp4;
pub mod recovery;
pub mod retention;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStoreExt as _;
use protocol::{encode_to_bytes, EndReason, Message, Orientation, VideoConfig, VideoFrame};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::clock::SharedClock;
use crate::hub::{OutFrame, SessionLink};
use crate::recording::Recordings;
use crate::store::{ClosedFile, NewRecordingFile, RecordingState, Store};
use fmp4::{split_access_unit, Fmp4Error, Fmp4File};

/// How many frames may wait for the recorder before the streamer's task waits.
const QUEUE: usize = 64;

/// What the recorder needs from the relay.
#[derive(Debug, Clone)]
pub struct RecorderContext {
    /// Rows for files and sessions.
    pub store: Store,
    /// Where closed files go.
    pub recordings: Recordings,
    /// Where open files are written.
    pub spool_dir: PathBuf,
    /// The wall clock for file start and end times.
    pub clock: SharedClock,
    /// No file exceeds this many bytes.
    pub max_file_bytes: u64,
    /// Where stored files and failed uploads are counted.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// In a fleet: every synced fragment is also put in the shared store (`spool/RELAY/FILE/`), so
    /// that a peer can finish the files of a relay that died and never comes back.
    pub mirror_spool: bool,
}

/// Why a file was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitReason {
    /// The first file of the session.
    SessionStart,
    /// The previous file reached the size cap.
    Size,
    /// The technician switched monitors.
    Monitor,
    /// The technician changed the frame rate.
    FrameRate,
    /// The screen turned between portrait and landscape.
    Orientation,
    /// The screen's resolution (or the stream's parameter sets) changed.
    Resolution,
}

impl SplitReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitReason::SessionStart => "session_start",
            SplitReason::Size => "size",
            SplitReason::Monitor => "monitor",
            SplitReason::FrameRate => "frame_rate",
            SplitReason::Orientation => "orientation",
            SplitReason::Resolution => "resolution",
        }
    }

    /// Why `new` cannot continue the file of `old`, if it cannot. Monitors are compared by their
    /// identity: the same screen under another index (the layout changed) is not a switch.
    pub fn between(old: &Viewed, new: &Viewed) -> Option<SplitReason> {
        let (old_key, new_key) = (&old.monitor.key, &new.monitor.key);
        let (old, new) = (&old.config, &new.config);
        if old_key != new_key {
            Some(SplitReason::Monitor)
        } else if old.orientation != new.orientation {
            Some(SplitReason::Orientation)
        } else if old.frame_rate != new.frame_rate {
            Some(SplitReason::FrameRate)
        } else if old.width != new.width || old.height != new.height || old.codec != new.codec {
            Some(SplitReason::Resolution)
        } else {
            None
        }
    }
}

fn orientation_name(o: Orientation) -> &'static str {
    match o {
        Orientation::Landscape => "landscape",
        Orientation::Portrait => "portrait",
    }
}

/// What the streamer's task hands the recorder's task: a file to open, bytes to append, a file to
/// close. The muxing itself happens on the streamer's task, before a frame is forwarded.
/// A monitor as the recording knows it: its identity from the platform and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorIdentity {
    /// The platform's identity (`MonitorInfo::key`).
    pub key: String,
    /// Its name, for people.
    pub name: String,
}

/// What is being viewed: a video configuration and the monitor it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewed {
    /// The configuration.
    pub config: VideoConfig,
    /// The monitor behind its `monitor_id`, from the streamer's latest monitor list.
    pub monitor: MonitorIdentity,
}

/// The monitor `id` names in `list`; one the list lacks is known by its index.
fn identity(list: &[protocol::MonitorInfo], id: u32) -> MonitorIdentity {
    list.iter().find(|m| m.id == id).map_or_else(
        || MonitorIdentity {
            key: id.to_string(),
            name: id.to_string(),
        },
        |m| MonitorIdentity {
            key: m.key.clone(),
            name: m.name.clone(),
        },
    )
}

/// A monitor's identity as a path segment: ASCII letters, digits, `-` and `_` only, anything else
/// `_` (it comes from the streamer), at most 64 characters, never empty.
fn path_segment(key: &str) -> String {
    let clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "_".into()
    } else {
        clean
    }
}

enum Write {
    /// A new file: create its spool file. Its row is written once its first fragment is synced,
    /// so that no file without media is ever listed.
    Open(NewRecordingFile),
    /// Bytes for the open file, written and synced in order.
    Append(Vec<u8>),
    /// The open file is finished: the last bytes (the pending fragment and the index), then store it.
    Close {
        last: Vec<u8>,
        frames: u64,
        duration_ms: u64,
    },
}

/// The streamer task's handle on its session's recorder. Every video frame goes through
/// [`SessionRecorder::frame`] before it is forwarded, and is forwarded only when it was accepted
/// into the recording: so the recording holds every frame the technician was sent, whatever ends
/// the session.
#[derive(Debug)]
pub struct SessionRecorder {
    queue: mpsc::Sender<Write>,
    link: Arc<SessionLink>,
    session_id: String,
    team_id: String,
    clock: SharedClock,
    max_file_bytes: u64,
    /// The streamer's latest monitor list.
    monitors: Vec<protocol::MonitorInfo>,
    viewed: Option<Viewed>,
    file: Option<MuxFile>,
    seq: u32,
    next_reason: SplitReason,
}

/// The file being muxed, on the streamer's task.
struct MuxFile {
    viewed: Viewed,
    mp4: Fmp4File,
    keyframe_requested: bool,
    /// The largest sample so far, to judge how much room frames in flight need.
    largest_sample: u64,
}

impl std::fmt::Debug for MuxFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxFile")
            .field("viewed", &self.viewed)
            .field("mp4", &self.mp4)
            .finish_non_exhaustive()
    }
}

/// The frame was not recorded, so it must not be forwarded: the session has ended (the reason is on
/// the link).
#[derive(Debug)]
pub struct NotRecorded;

/// Why a frame cannot go into the recording.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// The streamer sent video that cannot be recorded (its fault).
    #[error("{0}")]
    Stream(String),
    /// Storage failed (ours).
    #[error("storage: {0}")]
    Storage(String),
    /// The streamer did not send the keyframe the size cap needed.
    #[error("the streamer sent no keyframe before the recording file reached its size limit")]
    NoKeyframeBeforeCap,
}

impl From<Fmp4Error> for RecordError {
    fn from(e: Fmp4Error) -> Self {
        match e {
            Fmp4Error::Mux(m) => RecordError::Storage(m),
            other => RecordError::Stream(other.to_string()),
        }
    }
}

impl RecordError {
    /// How the session ends because of this error.
    fn end_reason(&self) -> (EndReason, String) {
        match self {
            RecordError::Stream(m) => (
                EndReason::ProtocolError,
                format!("The remote computer sent video that cannot be recorded ({m}), and this session must be recorded."),
            ),
            RecordError::Storage(_) => (
                EndReason::RecordingFailed,
                "The relay could not store the recording, and this session must be recorded, so it was ended.".to_owned(),
            ),
            RecordError::NoKeyframeBeforeCap => (
                EndReason::RecordingFailed,
                "The recording could not be split within its size limit, and this session must be recorded, so it was ended.".to_owned(),
            ),
        }
    }
}

impl SessionRecorder {
    /// Starts recording `session_id`: the storage side runs on its own task, tracked by `tracker`
    /// so that shutdown waits for the last file to be stored.
    pub fn start(
        ctx: RecorderContext,
        session_id: String,
        team_id: String,
        link: Arc<SessionLink>,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (queue, writes) = mpsc::channel(QUEUE);
        let recorder = Self {
            queue,
            link: link.clone(),
            session_id: session_id.clone(),
            team_id,
            clock: ctx.clock.clone(),
            max_file_bytes: ctx.max_file_bytes,
            monitors: Vec::new(),
            viewed: None,
            file: None,
            seq: 0,
            next_reason: SplitReason::SessionStart,
        };
        let task = StorageTask {
            ctx,
            session_id,
            link,
            file: None,
        };
        tracker.spawn(task.run(writes));
        recorder
    }

    /// Takes the streamer's monitor list, which tells the monitors' identities.
    pub fn monitors(&mut self, list: &[protocol::MonitorInfo]) {
        self.monitors = list.to_vec();
    }

    /// Records a video configuration; a change that needs a new file closes the current one.
    pub async fn config(&mut self, config: VideoConfig) -> Result<(), NotRecorded> {
        let result = self.on_config(config).await;
        self.settle(result)
    }

    /// Records a video frame. Only an accepted frame may be forwarded.
    pub async fn frame(&mut self, frame: &VideoFrame) -> Result<(), NotRecorded> {
        let result = self.on_frame(frame).await;
        self.settle(result)
    }

    /// Ends the recording after the session ended: the open file is finished with every frame
    /// accepted so far, and stored.
    pub async fn finish(mut self) {
        if let Err(e) = self.close_file().await {
            tracing::error!(session = %self.session_id, error = %e, "the last recording file could not be finished");
        }
    }

    /// A frame or configuration that cannot be recorded ends the session. Whatever was accepted
    /// before it (and so forwarded) is kept: the open file is finished as complete.
    fn settle(&mut self, result: Result<(), RecordError>) -> Result<(), NotRecorded> {
        let Err(e) = result else {
            // The storage task stops only when storage failed (and it ended the session).
            return if self.queue.is_closed() {
                Err(NotRecorded)
            } else {
                Ok(())
            };
        };
        let (reason, message) = e.end_reason();
        tracing::error!(session = %self.session_id, error = %e, "this frame or configuration cannot be recorded; ending the session");
        self.link.end(reason, message);
        Err(NotRecorded)
    }

    async fn write(&self, w: Write) -> Result<(), RecordError> {
        self.queue
            .send(w)
            .await
            .map_err(|_| RecordError::Storage("the recording's storage task has stopped".into()))
    }

    async fn on_config(&mut self, config: VideoConfig) -> Result<(), RecordError> {
        let viewed = Viewed {
            config,
            monitor: identity(&self.monitors, config.monitor_id),
        };
        if let Some(open) = &self.file {
            match SplitReason::between(&open.viewed, &viewed) {
                None => {
                    self.viewed = Some(viewed);
                    return Ok(());
                }
                Some(reason) => {
                    self.close_file().await?;
                    self.next_reason = reason;
                }
            }
        } else if let Some(previous) = &self.viewed {
            if let Some(reason) = SplitReason::between(previous, &viewed) {
                self.next_reason = reason;
            }
        }
        self.viewed = Some(viewed);
        Ok(())
    }

    async fn on_frame(&mut self, frame: &VideoFrame) -> Result<(), RecordError> {
        let viewed = self.viewed.clone().ok_or_else(|| {
            RecordError::Stream("a video frame came before any video configuration".into())
        })?;
        let au = split_access_unit(&frame.payload)?;
        let cap = self.max_file_bytes;
        let cost = Fmp4File::sample_cost(au.sample.len());
        if let Some(open) = &mut self.file {
            // Checked before anything is closed: a frame refused leaves the file as it was.
            open.mp4.check(frame.timestamp_us)?;
            open.largest_sample = open.largest_sample.max(cost);
            let room = headroom(cap, open.largest_sample);
            let projected = open.mp4.projected_size() + cost;
            let new_parameters = frame.keyframe
                && au
                    .parameter_sets
                    .as_ref()
                    .is_some_and(|p| p != open.mp4.parameter_sets());
            if new_parameters {
                self.close_file().await?;
                self.next_reason = SplitReason::Resolution;
            } else if frame.keyframe
                && (projected > cap
                    || (open.keyframe_requested && projected > cap.saturating_sub(room)))
            {
                self.close_file().await?;
                self.next_reason = SplitReason::Size;
            } else if projected > cap {
                return Err(RecordError::NoKeyframeBeforeCap);
            } else if !open.keyframe_requested && projected > cap.saturating_sub(room) {
                open.keyframe_requested = true;
                if let Ok(bytes) = encode_to_bytes(&Message::KeyframeRequest) {
                    let _ = self
                        .link
                        .to_streamer
                        .send(OutFrame {
                            bytes,
                            permit: None,
                        })
                        .await;
                }
            }
        }
        if self.file.is_none() {
            if !frame.keyframe {
                return Err(RecordError::Stream(
                    "a recording file must start with a keyframe".into(),
                ));
            }
            let parameter_sets = au
                .parameter_sets
                .clone()
                .ok_or_else(|| RecordError::Stream(Fmp4Error::NoParameterSets.to_string()))?;
            if Fmp4File::sample_cost(au.sample.len()) + 1024 > cap {
                return Err(RecordError::NoKeyframeBeforeCap);
            }
            self.open_file(viewed, parameter_sets).await?;
        }
        let open = self
            .file
            .as_mut()
            .ok_or_else(|| RecordError::Storage("no open file".into()))?;
        if let Some(bytes) = open
            .mp4
            .push(frame.timestamp_us, frame.keyframe, au.sample)?
        {
            self.write(Write::Append(bytes)).await?;
        }
        Ok(())
    }

    async fn open_file(
        &mut self,
        viewed: Viewed,
        parameter_sets: fmp4::ParameterSets,
    ) -> Result<(), RecordError> {
        let config = viewed.config;
        let id = crate::secrets::new_id().map_err(|e| RecordError::Storage(e.to_string()))?;
        self.seq += 1;
        let started_at = self.clock.now_ms();
        let object_key = format!(
            "{}/{}/monitor-{}/{:013}-{:04}.mp4",
            self.team_id,
            self.session_id,
            path_segment(&viewed.monitor.key),
            started_at,
            self.seq
        );
        let row = NewRecordingFile {
            id,
            session_id: self.session_id.clone(),
            team_id: self.team_id.clone(),
            monitor_id: config.monitor_id,
            monitor_key: viewed.monitor.key.clone(),
            monitor_name: viewed.monitor.name.clone(),
            seq: self.seq,
            split_reason: self.next_reason.as_str(),
            width: config.width,
            height: config.height,
            frame_rate: config.frame_rate,
            orientation: orientation_name(config.orientation),
            started_at,
            object_key,
        };
        let mp4 = Fmp4File::new(parameter_sets)?;
        self.write(Write::Open(row)).await?;
        self.file = Some(MuxFile {
            viewed,
            mp4,
            keyframe_requested: false,
            largest_sample: 0,
        });
        Ok(())
    }

    /// Finishes the open file, if any, with every frame it was given.
    async fn close_file(&mut self) -> Result<(), RecordError> {
        let Some(mut open) = self.file.take() else {
            return Ok(());
        };
        let last_frame_us = 1_000_000 / u64::from(open.viewed.config.frame_rate.max(1));
        let last = open.mp4.finish(last_frame_us)?.unwrap_or_default();
        self.write(Write::Close {
            last,
            frames: open.mp4.frames(),
            duration_ms: open.mp4.duration_ms(),
        })
        .await
    }
}

/// The storage side of one session's recording: spool files, syncs, uploads and rows.
struct StorageTask {
    ctx: RecorderContext,
    session_id: String,
    link: Arc<SessionLink>,
    file: Option<SpoolFile>,
}

struct SpoolFile {
    row: NewRecordingFile,
    spool: tokio::fs::File,
    spool_path: PathBuf,
    hasher: Sha256,
    /// Bytes durably in the spool file.
    synced: u64,
    /// Whether the file's row is written (after its first synced fragment).
    listed: bool,
}

impl StorageTask {
    async fn run(mut self, mut writes: mpsc::Receiver<Write>) {
        let mut failed = false;
        while let Some(w) = writes.recv().await {
            if let Err(e) = self.on_write(w).await {
                let (reason, message) = e.end_reason();
                tracing::error!(session = %self.session_id, error = %e, "recording failed; ending the session");
                self.link.end(reason, message);
                failed = true;
                break;
            }
        }
        // Stop the streamer's task from handing over more, whatever happened.
        drop(writes);
        // A file still open here was not finished (a failure, or the streamer's task stopped
        // without finishing it): it keeps what was synced.
        if let Err(e) = self.close_interrupted().await {
            failed = true;
            tracing::error!(session = %self.session_id, error = %e, "the interrupted file stays in the spool for recovery");
        }
        let state = if failed {
            RecordingState::Failed
        } else {
            RecordingState::Uploaded
        };
        if let Err(e) = self
            .ctx
            .store
            .set_recording_state(&self.session_id, state)
            .await
        {
            tracing::error!(session = %self.session_id, error = %e, "recording the recording state");
        }
    }

    async fn on_write(&mut self, w: Write) -> Result<(), RecordError> {
        let storage = |e: &dyn std::fmt::Display| RecordError::Storage(e.to_string());
        match w {
            Write::Open(row) => {
                let spool_path = self.ctx.spool_dir.join(format!("{}.mp4", row.id));
                let spool = tokio::fs::File::create(&spool_path)
                    .await
                    .map_err(|e| storage(&e))?;
                self.file = Some(SpoolFile {
                    row,
                    spool,
                    spool_path,
                    hasher: Sha256::new(),
                    synced: 0,
                    listed: false,
                });
                Ok(())
            }
            Write::Append(bytes) => self.append(&bytes).await,
            Write::Close {
                last,
                frames,
                duration_ms,
            } => {
                self.append(&last).await?;
                let Some(open) = self.file.take() else {
                    return Err(RecordError::Storage("no open file to close".into()));
                };
                let closed = ClosedFile {
                    ended_at: self.ctx.clock.now_ms(),
                    duration_ms: i64::try_from(duration_ms).unwrap_or(i64::MAX),
                    size_bytes: i64::try_from(open.synced).unwrap_or(i64::MAX),
                    frame_count: i64::try_from(frames).unwrap_or(i64::MAX),
                    sha256: hex::encode(open.hasher.clone().finalize()),
                    state: "complete",
                };
                self.store(open, closed).await
            }
        }
    }

    /// Appends bytes to the spool file and syncs them, so that they survive a crash; the file's
    /// row is written once it first holds media.
    async fn append(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        let Some(open) = self.file.as_mut() else {
            return Err(RecordError::Storage("no open file to write to".into()));
        };
        if bytes.is_empty() {
            return Ok(());
        }
        let storage = |e: std::io::Error| {
            RecordError::Storage(format!("writing {}: {e}", open.spool_path.display()))
        };
        open.spool.write_all(bytes).await.map_err(storage)?;
        open.spool.sync_data().await.map_err(storage)?;
        if self.ctx.mirror_spool {
            let key = recovery::chunk_key(self.ctx.store.relay_id(), &open.row.id, open.synced);
            self.ctx
                .recordings
                .objects()
                .put(&key, Bytes::copy_from_slice(bytes).into())
                .await
                .map_err(|e| RecordError::Storage(format!("mirroring the spool to {key}: {e}")))?;
        }
        open.hasher.update(bytes);
        open.synced += bytes.len() as u64;
        if !open.listed {
            self.ctx
                .store
                .insert_recording_file(&open.row)
                .await
                .map_err(|e| RecordError::Storage(e.to_string()))?;
            open.listed = true;
            tracing::info!(session = %self.session_id, file = %open.row.id, reason = open.row.split_reason, "recording file started");
        }
        Ok(())
    }

    /// Closes a file that was not finished: cut to what was synced, stored as `incomplete`; a file
    /// that never held media is removed.
    async fn close_interrupted(&mut self) -> Result<(), RecordError> {
        let Some(open) = self.file.take() else {
            return Ok(());
        };
        if !open.listed {
            let _ = tokio::fs::remove_file(&open.spool_path).await;
            return Ok(());
        }
        let summary = recovery::truncate_and_summarise(&open.spool_path)
            .await
            .map_err(|e| RecordError::Storage(e.to_string()))?;
        let closed = ClosedFile {
            ended_at: self.ctx.clock.now_ms(),
            duration_ms: summary.duration_ms,
            size_bytes: summary.size_bytes,
            frame_count: summary.frame_count,
            sha256: summary.sha256,
            state: "incomplete",
        };
        self.store(open, closed).await
    }

    /// Uploads a closed spool file, closes its row, and removes it from the spool.
    async fn store(&mut self, open: SpoolFile, closed: ClosedFile) -> Result<(), RecordError> {
        let SpoolFile {
            row,
            spool,
            spool_path,
            listed,
            ..
        } = open;
        drop(spool);
        if !listed {
            // Finished before any byte was written: there is nothing to keep.
            let _ = tokio::fs::remove_file(&spool_path).await;
            return Ok(());
        }
        upload(&self.ctx, &spool_path, &row.object_key).await?;
        self.ctx
            .store
            .close_recording_file(&row.id, &closed)
            .await
            .map_err(|e| RecordError::Storage(e.to_string()))?;
        let _ = tokio::fs::remove_file(&spool_path).await;
        if self.ctx.mirror_spool {
            recovery::remove_chunks(&self.ctx, self.ctx.store.relay_id(), &row.id).await;
        }
        tracing::info!(session = %self.session_id, file = %row.id, state = closed.state, size = closed.size_bytes, frames = closed.frame_count, "recording file stored");
        Ok(())
    }
}

/// The room left before the cap when the recorder asks for a keyframe: an eighth of the cap, or room
/// for four of the largest frames so far (frames already on their way when the streamer is asked).
fn headroom(cap: u64, largest_sample: u64) -> u64 {
    (cap / 8).max(largest_sample.saturating_mul(4))
}

/// Copies a spool file into the object store under `key`, streaming it in parts; counted in the
/// metrics (its bytes and time, or a failure).
pub(crate) async fn upload(
    ctx: &RecorderContext,
    spool: &std::path::Path,
    key: &str,
) -> Result<(), RecordError> {
    let started = std::time::Instant::now();
    match put_file(ctx, spool, key).await {
        Ok(bytes) => {
            ctx.metrics.uploaded(bytes, started.elapsed());
            Ok(())
        }
        Err(e) => {
            ctx.metrics.upload_failed();
            Err(e)
        }
    }
}

/// [`upload`]'s work: the bytes put.
async fn put_file(
    ctx: &RecorderContext,
    spool: &std::path::Path,
    key: &str,
) -> Result<u64, RecordError> {
    use tokio::io::AsyncReadExt;
    let storage = |e: &dyn std::fmt::Display| RecordError::Storage(format!("uploading {key}: {e}"));
    let mut file = tokio::fs::File::open(spool)
        .await
        .map_err(|e| storage(&e))?;
    let mut writer = object_store::buffered::BufWriter::new(
        ctx.recordings.objects().clone(),
        object_store::path::Path::from(key),
    );
    let mut buf = vec![0u8; 8 * 1024 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(|e| storage(&e))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        if let Err(e) = writer.put(Bytes::copy_from_slice(&buf[..n])).await {
            let _ = writer.abort().await;
            return Err(storage(&e));
        }
    }
    writer.shutdown().await.map_err(|e| storage(&e))?;
    Ok(bytes)
}
