//! After a crash: files left open are cut back to their last complete fragment, stored, and marked
//! incomplete; sessions that were live are marked ended by the restart.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt as _;
use sha2::{Digest, Sha256};
use shiguredo_mp4::boxes::MoofBox;
use shiguredo_mp4::{BoxHeader, BoxSize, BoxType, Decode};

use super::{fmp4::TIMESCALE, upload, RecorderContext};
use crate::store::ClosedFile;

/// What a (possibly cut) recording file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Bytes kept.
    pub size_bytes: i64,
    /// Video frames in the complete fragments.
    pub frame_count: i64,
    /// Their media duration in milliseconds.
    pub duration_ms: i64,
    /// SHA-256 of the bytes kept.
    pub sha256: String,
}

fn box_at(
    file: &mut std::fs::File,
    offset: u64,
    file_len: u64,
) -> std::io::Result<Option<(BoxType, u64)>> {
    let mut head = [0u8; 16];
    let available = usize::try_from((file_len - offset).min(16)).unwrap_or(16);
    if available < 8 {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut head[..available])?;
    let Ok((header, _)) = BoxHeader::decode(&head[..available]) else {
        return Ok(None);
    };
    let size = match header.box_size {
        BoxSize::U32(0) => return Ok(None),
        BoxSize::U32(n) => u64::from(n),
        BoxSize::U64(n) => n,
    };
    if size < 8 || offset + size > file_len {
        return Ok(None);
    }
    Ok(Some((header.box_type, size)))
}

/// Cuts `path` after its last complete fragment (or its init segment), syncs it, and summarises it.
pub fn truncate_and_summarise_blocking(path: &Path) -> std::io::Result<Summary> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let file_len = file.metadata()?.len();
    let (mut offset, mut good_end) = (0u64, 0u64);
    let (mut frames, mut ticks) = (0u64, 0u64);
    let mut init_seen = false;
    let mut pending: Option<(u64, u64)> = None;
    while let Some((box_type, size)) = box_at(&mut file, offset, file_len)? {
        match box_type.as_bytes() {
            b"ftyp" => {}
            b"moov" => {
                init_seen = true;
                good_end = offset + size;
            }
            b"moof" if init_seen => {
                let mut raw = vec![0u8; usize::try_from(size).unwrap_or(0)];
                file.seek(SeekFrom::Start(offset))?;
                file.read_exact(&mut raw)?;
                pending = MoofBox::decode(&raw).ok().map(|(moof, _)| {
                    let samples = moof
                        .traf_boxes
                        .iter()
                        .flat_map(|t| t.trun_boxes.iter())
                        .flat_map(|r| r.samples.iter());
                    samples.fold((0, 0), |(n, d), s| {
                        (n + 1, d + u64::from(s.duration.unwrap_or(0)))
                    })
                });
                if pending.is_none() {
                    break;
                }
            }
            b"mdat" => {
                let Some((n, d)) = pending.take() else { break };
                frames += n;
                ticks += d;
                good_end = offset + size;
            }
            _ => break,
        }
        offset += size;
    }
    if good_end < file_len {
        file.set_len(good_end)?;
    }
    file.flush()?;
    file.sync_all()?;
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Summary {
        size_bytes: i64::try_from(good_end).unwrap_or(i64::MAX),
        frame_count: i64::try_from(frames).unwrap_or(i64::MAX),
        duration_ms: i64::try_from(ticks * 1000 / u64::from(TIMESCALE)).unwrap_or(i64::MAX),
        sha256: hex::encode(hasher.finalize()),
    })
}

/// [`truncate_and_summarise_blocking`] off the async threads.
pub async fn truncate_and_summarise(path: &Path) -> std::io::Result<Summary> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || truncate_and_summarise_blocking(&path))
        .await
        .map_err(std::io::Error::other)?
}

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Files closed as incomplete.
    pub files: usize,
    /// Files removed because they held no frame (a crash before their first fragment was synced).
    pub removed: usize,
    /// Sessions marked ended by the restart.
    pub sessions: u64,
}

/// The object key of a mirrored spool chunk: the bytes of `relay_id`'s open file `file_id` from
/// byte `offset` (zero-padded, so that keys sort in file order).
pub(crate) fn chunk_key(relay_id: &str, file_id: &str, offset: u64) -> ObjectPath {
    ObjectPath::from(format!("spool/{relay_id}/{file_id}/{offset:016}"))
}

fn chunk_prefix(relay_id: &str, file_id: &str) -> ObjectPath {
    ObjectPath::from(format!("spool/{relay_id}/{file_id}"))
}

/// The mirrored chunks of a file, in file order.
async fn chunks(
    ctx: &RecorderContext,
    relay_id: &str,
    file_id: &str,
) -> anyhow::Result<Vec<ObjectPath>> {
    let prefix = chunk_prefix(relay_id, file_id);
    let mut keys: Vec<ObjectPath> = ctx
        .recordings
        .objects()
        .list(Some(&prefix))
        .map(|m| m.map(|m| m.location))
        .try_collect()
        .await?;
    keys.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    Ok(keys)
}

/// Removes a file's mirrored chunks (it is stored); a failure is logged, the chunks are only spare.
pub(crate) async fn remove_chunks(ctx: &RecorderContext, relay_id: &str, file_id: &str) {
    let keys = match chunks(ctx, relay_id, file_id).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(file = %file_id, error = %e, "listing a stored file's spool chunks");
            return;
        }
    };
    for key in keys {
        if let Err(e) = ctx.recordings.objects().delete(&key).await {
            tracing::warn!(%key, error = %e, "removing a stored file's spool chunk");
        }
    }
}

/// Writes a file's mirrored chunks, in order, to `into`; false when there are none. Chunks
/// must join without a gap (each is named by its offset); what follows a gap is left out.
async fn fetch_chunks(
    ctx: &RecorderContext,
    relay_id: &str,
    file_id: &str,
    into: &Path,
) -> anyhow::Result<bool> {
    let keys = chunks(ctx, relay_id, file_id).await?;
    if keys.is_empty() {
        return Ok(false);
    }
    let mut out = tokio::fs::File::create(into).await?;
    let mut at = 0u64;
    for key in keys {
        let offset: u64 = key
            .filename()
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX);
        if offset != at {
            tracing::warn!(file = %file_id, at, offset, "a gap in the mirrored spool; the file ends before it");
            break;
        }
        let bytes = ctx.recordings.objects().get(&key).await?.bytes().await?;
        tokio::io::AsyncWriteExt::write_all(&mut out, &bytes).await?;
        at += bytes.len() as u64;
    }
    tokio::io::AsyncWriteExt::flush(&mut out).await?;
    out.sync_all().await?;
    Ok(true)
}

/// Finishes one file a stopped relay left open, from the spool file at `spool` (whatever it holds
/// when it exists): cut after its last complete fragment, stored as `incomplete`, or removed with
/// its row when it holds no frame. True when it was kept.
async fn finish_left_open(
    ctx: &RecorderContext,
    f: &crate::store::RecordingFile,
    spool: &Path,
    ended_at: i64,
) -> anyhow::Result<bool> {
    let summary = if spool.exists() {
        Some(truncate_and_summarise(spool).await?)
    } else {
        None
    };
    let Some(summary) = summary.filter(|s| s.frame_count > 0) else {
        // Nothing playable: not a recording. Its row goes, so that it is never listed.
        ctx.store.remove_recording_file(&f.id).await?;
        let _ = std::fs::remove_file(spool);
        tracing::warn!(file = %f.id, session = %f.session_id, "recording file left open by a crash held no frame; removed");
        return Ok(false);
    };
    upload(ctx, spool, &f.object_key).await?;
    let closed = ClosedFile {
        ended_at,
        duration_ms: summary.duration_ms,
        size_bytes: summary.size_bytes,
        frame_count: summary.frame_count,
        sha256: summary.sha256,
        state: "incomplete",
    };
    ctx.store.close_recording_file(&f.id, &closed).await?;
    let _ = std::fs::remove_file(spool);
    tracing::warn!(file = %f.id, session = %f.session_id, frames = closed.frame_count, "recording file left open by a crash closed as incomplete");
    Ok(true)
}

/// Closes what a crash left open, keeping what plays and removing what holds no frame. Runs at
/// start, before any connection is served, on this relay's own sessions and spool.
pub async fn recover(ctx: &RecorderContext) -> anyhow::Result<Recovered> {
    let mut recovered = Recovered::default();
    let mut known = std::collections::HashSet::new();
    let relay_id = ctx.store.relay_id().to_owned();
    for f in ctx.store.unfinished_recording_files(&relay_id).await? {
        let spool = ctx.spool_dir.join(format!("{}.mp4", f.id));
        known.insert(spool.clone());
        let ended_at = std::fs::metadata(&spool)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(
                || ctx.clock.now_ms(),
                |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            );
        if finish_left_open(ctx, &f, &spool, ended_at).await? {
            recovered.files += 1;
        } else {
            recovered.removed += 1;
        }
        if ctx.mirror_spool {
            remove_chunks(ctx, &relay_id, &f.id).await;
        }
    }
    // Spool files without a row: a crash came before their first fragment was synced and listed.
    if let Ok(entries) = std::fs::read_dir(&ctx.spool_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "mp4") && !known.contains(&path) {
                let _ = std::fs::remove_file(&path);
                tracing::warn!(spool = %path.display(), "spool file of a recording that never held a synced frame removed");
                recovered.removed += 1;
            }
        }
    }
    recovered.sessions = ctx
        .store
        .end_interrupted_sessions(&relay_id, "RELAY_RESTARTED")
        .await?;
    Ok(recovered)
}

/// Closes what relay `dead`, found silent by its peers, left open: each open file is rebuilt from
/// its mirrored spool chunks in the shared store, cut after its last complete fragment and stored
/// as `incomplete`; its live sessions end as `RELAY_LOST`. Run by the one peer that claimed it.
pub async fn recover_peer(ctx: &RecorderContext, dead: &str) -> anyhow::Result<Recovered> {
    let mut recovered = Recovered::default();
    for f in ctx.store.unfinished_recording_files(dead).await? {
        let spool = ctx.spool_dir.join(format!("{}.peer", f.id));
        let fetched = fetch_chunks(ctx, dead, &f.id, &spool).await?;
        if !fetched {
            let _ = std::fs::remove_file(&spool);
        }
        if finish_left_open(ctx, &f, &spool, ctx.clock.now_ms()).await? {
            recovered.files += 1;
        } else {
            recovered.removed += 1;
        }
        remove_chunks(ctx, dead, &f.id).await;
    }
    recovered.sessions = ctx
        .store
        .end_interrupted_sessions(dead, "RELAY_LOST")
        .await?;
    Ok(recovered)
}
