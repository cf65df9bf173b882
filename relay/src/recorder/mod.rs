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

    /// Why `new` cannot continue the file of `old`, if it cannot.
    pub fn between(old: &VideoConfig, new: &VideoConfig) -> Option<SplitReason> {
        if old.monitor_id != new.monitor_id {
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

enum Input {
    Config(VideoConfig),
    Frame(VideoFrame),
}

/// The streamer task's handle on its session's recorder.
#[derive(Debug)]
pub struct SessionRecorder {
    queue: mpsc::Sender<Input>,
}

/// The recorder ended the session: the caller stops forwarding.
#[derive(Debug)]
pub struct RecorderGone;

impl SessionRecorder {
    /// Starts recording `session_id` on its own task, tracked by `tracker` so that shutdown waits for
    /// the last file to be stored.
    pub fn start(
        ctx: RecorderContext,
        session_id: String,
        team_id: String,
        link: Arc<SessionLink>,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (queue, inputs) = mpsc::channel(QUEUE);
        let task = RecorderTask {
            ctx,
            session_id,
            team_id,
            link,
            config: None,
            file: None,
            seq: 0,
            next_reason: SplitReason::SessionStart,
        };
        tracker.spawn(task.run(inputs));
        Self { queue }
    }

    /// Records a video configuration.
    pub async fn config(&self, config: VideoConfig) -> Result<(), RecorderGone> {
        self.queue
            .send(Input::Config(config))
            .await
            .map_err(|_| RecorderGone)
    }

    /// Records a video frame.
    pub async fn frame(&self, frame: VideoFrame) -> Result<(), RecorderGone> {
        self.queue
            .send(Input::Frame(frame))
            .await
            .map_err(|_| RecorderGone)
    }
}

/// What went wrong while recording.
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

struct OpenFile {
    id: String,
    config: VideoConfig,
    mp4: Fmp4File,
    spool: tokio::fs::File,
    spool_path: PathBuf,
    object_key: String,
    hasher: Sha256,
    /// Bytes durably in the spool file.
    synced: u64,
    keyframe_requested: bool,
    /// The largest sample so far, to judge how much room frames in flight need.
    largest_sample: u64,
}

struct RecorderTask {
    ctx: RecorderContext,
    session_id: String,
    team_id: String,
    link: Arc<SessionLink>,
    config: Option<VideoConfig>,
    file: Option<OpenFile>,
    seq: u32,
    next_reason: SplitReason,
}

fn orientation_name(o: Orientation) -> &'static str {
    match o {
        Orientation::Landscape => "landscape",
        Orientation::Portrait => "portrait",
    }
}

impl RecorderTask {
    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let result = loop {
            let input = tokio::select! {
                biased;
                input = inputs.recv() => input,
                // The session ended: take what is already queued, then stop.
                _ = self.link.ended.cancelled() => {
                    inputs.close();
                    inputs.recv().await
                }
            };
            let Some(input) = input else { break Ok(()) };
            let step = match input {
                Input::Config(c) => self.on_config(c).await,
                Input::Frame(f) => self.on_frame(f).await,
            };
            if let Err(e) = step {
                break Err(e);
            }
        };
        // Stop the streamer's task from queueing more, whatever happened.
        drop(inputs);
        let state = match result {
            Ok(()) => match self.close_file(true).await {
                Ok(()) => RecordingState::Uploaded,
                Err(e) => {
                    tracing::error!(session = %self.session_id, error = %e, "storing the last recording file failed");
                    RecordingState::Failed
                }
            },
            Err(e) => {
                let (reason, message) = match &e {
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
                };
                tracing::error!(session = %self.session_id, error = %e, "recording failed; ending the session");
                self.link.end(reason, message);
                // Keep what was durably written: the open file is closed as it is.
                if let Err(e) = self.close_file(false).await {
                    tracing::error!(session = %self.session_id, error = %e, "the interrupted file stays in the spool for recovery");
                }
                RecordingState::Failed
            }
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

    async fn on_config(&mut self, config: VideoConfig) -> Result<(), RecordError> {
        if let Some(open) = &self.file {
            match SplitReason::between(&open.config, &config) {
                None => {
                    self.config = Some(config);
                    return Ok(());
                }
                Some(reason) => {
                    self.close_file(true).await?;
                    self.next_reason = reason;
                }
            }
        } else if let Some(previous) = &self.config {
            if let Some(reason) = SplitReason::between(previous, &config) {
                self.next_reason = reason;
            }
        }
        self.config = Some(config);
        Ok(())
    }

    async fn on_frame(&mut self, frame: VideoFrame) -> Result<(), RecordError> {
        let config = self.config.ok_or_else(|| {
            RecordError::Stream("a video frame came before any video configuration".into())
        })?;
        let au = split_access_unit(&frame.payload)?;
        let cap = self.ctx.max_file_bytes;
        let cost = Fmp4File::sample_cost(au.sample.len());
        if let Some(open) = &mut self.file {
            open.largest_sample = open.largest_sample.max(cost);
            let room = headroom(cap, open.largest_sample);
            let projected = open.mp4.projected_size() + cost;
            let new_parameters = frame.keyframe
                && au
                    .parameter_sets
                    .as_ref()
                    .is_some_and(|p| p != open.mp4.parameter_sets());
            if new_parameters {
                self.close_file(true).await?;
                self.next_reason = SplitReason::Resolution;
            } else if frame.keyframe
                && (projected > cap
                    || (open.keyframe_requested && projected > cap.saturating_sub(room)))
            {
                self.close_file(true).await?;
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
            self.open_file(config, parameter_sets).await?;
        }
        let open = self
            .file
            .as_mut()
            .ok_or_else(|| RecordError::Storage("no open file".into()))?;
        if let Some(bytes) = open
            .mp4
            .push(frame.timestamp_us, frame.keyframe, au.sample)?
        {
            append(open, &bytes).await?;
        }
        Ok(())
    }

    async fn open_file(
        &mut self,
        config: VideoConfig,
        parameter_sets: fmp4::ParameterSets,
    ) -> Result<(), RecordError> {
        let storage = |e: &dyn std::fmt::Display| RecordError::Storage(e.to_string());
        let id = crate::secrets::new_id().map_err(|e| storage(&e))?;
        self.seq += 1;
        let started_at = self.ctx.clock.now_ms();
        let object_key = format!(
            "{}/{}/monitor-{}/{:013}-{:04}.mp4",
            self.team_id, self.session_id, config.monitor_id, started_at, self.seq
        );
        let spool_path = self.ctx.spool_dir.join(format!("{id}.mp4"));
        let row = NewRecordingFile {
            id: id.clone(),
            session_id: self.session_id.clone(),
            team_id: self.team_id.clone(),
            monitor_id: config.monitor_id,
            seq: self.seq,
            split_reason: self.next_reason.as_str(),
            width: config.width,
            height: config.height,
            frame_rate: config.frame_rate,
            orientation: orientation_name(config.orientation),
            started_at,
            object_key: object_key.clone(),
        };
        let spool = tokio::fs::File::create(&spool_path)
            .await
            .map_err(|e| storage(&e))?;
        self.ctx
            .store
            .insert_recording_file(&row)
            .await
            .map_err(|e| storage(&e))?;
        tracing::info!(session = %self.session_id, file = %id, reason = row.split_reason, "recording file started");
        self.file = Some(OpenFile {
            id,
            config,
            mp4: Fmp4File::new(parameter_sets)?,
            spool,
            spool_path,
            object_key,
            hasher: Sha256::new(),
            synced: 0,
            keyframe_requested: false,
            largest_sample: 0,
        });
        Ok(())
    }

    /// Closes the open file, if any: `finish` flushes the pending fragment first (a clean close);
    /// otherwise the file keeps only what was already synced (a failure). Then it is uploaded.
    async fn close_file(&mut self, finish: bool) -> Result<(), RecordError> {
        let Some(mut open) = self.file.take() else {
            return Ok(());
        };
        if finish {
            let last_frame_us = 1_000_000 / u64::from(open.config.frame_rate.max(1));
            if let Some(bytes) = open.mp4.finish(last_frame_us)? {
                append(&mut open, &bytes).await?;
            }
        }
        let state = if finish { "complete" } else { "incomplete" };
        let closed = ClosedFile {
            ended_at: self.ctx.clock.now_ms(),
            duration_ms: i64::try_from(open.mp4.duration_ms()).unwrap_or(i64::MAX),
            size_bytes: i64::try_from(open.synced).unwrap_or(i64::MAX),
            frame_count: 0,
            sha256: hex::encode(open.hasher.clone().finalize()),
            state,
        };
        drop(open.spool);
        let stored = if finish {
            // Everything handed out was written: the frame count is exact.
            ClosedFile {
                frame_count: i64::try_from(open.mp4.frames()).unwrap_or(i64::MAX),
                ..closed
            }
        } else {
            // Truncated to the synced bytes: count what the file really holds.
            let summary = recovery::truncate_and_summarise(&open.spool_path)
                .await
                .map_err(|e| RecordError::Storage(e.to_string()))?;
            ClosedFile {
                duration_ms: summary.duration_ms,
                size_bytes: summary.size_bytes,
                frame_count: summary.frame_count,
                sha256: summary.sha256,
                ..closed
            }
        };
        upload(&self.ctx, &open.spool_path, &open.object_key).await?;
        self.ctx
            .store
            .close_recording_file(&open.id, &stored)
            .await
            .map_err(|e| RecordError::Storage(e.to_string()))?;
        let _ = tokio::fs::remove_file(&open.spool_path).await;
        tracing::info!(session = %self.session_id, file = %open.id, state, size = stored.size_bytes, frames = stored.frame_count, "recording file stored");
        Ok(())
    }
}

/// The room left before the cap when the recorder asks for a keyframe: an eighth of the cap, or room
/// for four of the largest frames so far (frames already on their way when the streamer is asked).
fn headroom(cap: u64, largest_sample: u64) -> u64 {
    (cap / 8).max(largest_sample.saturating_mul(4))
}

/// Appends bytes to the spool file and syncs them, so that they survive a crash.
async fn append(open: &mut OpenFile, bytes: &[u8]) -> Result<(), RecordError> {
    let storage = |e: std::io::Error| {
        RecordError::Storage(format!("writing {}: {e}", open.spool_path.display()))
    };
    open.spool.write_all(bytes).await.map_err(storage)?;
    open.spool.sync_data().await.map_err(storage)?;
    open.hasher.update(bytes);
    open.synced += bytes.len() as u64;
    Ok(())
}

/// Copies a spool file into the object store under `key`, streaming it in parts.
pub(crate) async fn upload(
    ctx: &RecorderContext,
    spool: &std::path::Path,
    key: &str,
) -> Result<(), RecordError> {
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
    loop {
        let n = file.read(&mut buf).await.map_err(|e| storage(&e))?;
        if n == 0 {
            break;
        }
        if let Err(e) = writer.put(Bytes::copy_from_slice(&buf[..n])).await {
            let _ = writer.abort().await;
            return Err(storage(&e));
        }
    }
    writer.shutdown().await.map_err(|e| storage(&e))?;
    Ok(())
}
