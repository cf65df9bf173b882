//! Recording storage: the object store that recordings go to, and its health check.
//!
//! Issue 4 writes the recorded video here; today the relay uses it to refuse a recorded session when
//! storage cannot take writes, so that no recorded session ever starts unrecordable.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// The recordings' object store.
#[derive(Debug, Clone)]
pub struct Recordings {
    objects: Arc<dyn ObjectStore>,
}

/// Storage cannot take recordings now (our fault).
#[derive(Debug, thiserror::Error)]
#[error("recording storage is failing: {0}")]
pub struct StorageFailing(#[from] object_store::Error);

impl Recordings {
    /// Recordings in `objects`.
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self { objects }
    }

    /// Recordings on local disk under `dir` (created if missing).
    pub fn local(dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self::new(Arc::new(fs)))
    }

    /// The underlying store.
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    /// Writes and deletes a small object: proves storage takes writes right now.
    ///
    /// Each probe writes its own object: sessions starting together probe at once, and with one
    /// shared name one probe's delete could remove another's object before that one's delete (which
    /// then failed with "not found" and refused a recorded session; found by the load benchmark).
    pub async fn probe(&self) -> Result<(), StorageFailing> {
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = ObjectPath::from(format!("health/probe-{}-{n}", std::process::id()));
        self.objects
            .put(&path, PutPayload::from(Bytes::from_static(b"ok")))
            .await?;
        self.objects.delete(&path).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probes_at_once_all_pass_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let recordings = Recordings::local(dir.path()).unwrap();
        let mut probes = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let r = recordings.clone();
            probes.spawn(async move { r.probe().await });
        }
        while let Some(p) = probes.join_next().await {
            p.unwrap().unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("health"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "probe objects left: {left:?}");
    }
}
