//! Recording storage: the object store that recordings go to, its health check, and the integrity
//! check of stored files against the SHA-256 recorded when each was closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

/// The recordings' object store.
#[derive(Debug, Clone)]
pub struct Recordings {
    objects: Arc<dyn ObjectStore>,
    /// Verdicts of [`Recordings::verify`] by object key, with the object's size and modification
    /// time (and ETag) they were reached on: a file is hashed again only when it changed.
    verified: Arc<Mutex<HashMap<String, (Stamp, Integrity)>>>,
}

type Stamp = (u64, chrono::DateTime<chrono::Utc>, Option<String>);

/// What a stored file's bytes say against the checksum recorded when it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// The bytes hash to the recorded SHA-256.
    Intact,
    /// The bytes do not: the file was changed after it was stored.
    Altered {
        /// The stored bytes' SHA-256 now (hex).
        actual: String,
    },
}

/// Storage cannot take recordings now (our fault).
#[derive(Debug, thiserror::Error)]
#[error("recording storage is failing: {0}")]
pub struct StorageFailing(#[from] object_store::Error);

impl Recordings {
    /// Recordings in `objects`.
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self {
            objects,
            verified: Arc::default(),
        }
    }

    /// Checks the object `key` against the SHA-256 (hex) recorded when it was stored, reading it
    /// whole unless it is unchanged since an earlier check (same size, modification time and ETag).
    pub async fn verify(
        &self,
        key: &str,
        expected: &str,
    ) -> Result<Integrity, object_store::Error> {
        let path = ObjectPath::from(key);
        let meta = self.objects.head(&path).await?;
        let stamp: Stamp = (meta.size, meta.last_modified, meta.e_tag.clone());
        if let Some((seen, verdict)) = self.lock_verified().get(key) {
            if *seen == stamp {
                return Ok(verdict.clone());
            }
        }
        let mut hasher = Sha256::new();
        let mut stream = self.objects.get(&path).await?.into_stream();
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk?);
        }
        let actual = hex::encode(hasher.finalize());
        let verdict = if actual.eq_ignore_ascii_case(expected) {
            Integrity::Intact
        } else {
            Integrity::Altered { actual }
        };
        self.lock_verified()
            .insert(key.to_owned(), (stamp, verdict.clone()));
        Ok(verdict)
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Stamp, Integrity)>> {
        // A poisoned map only loses cached verdicts; files are hashed again.
        self.verified.lock().unwrap_or_else(|e| {
            let mut map = e.into_inner();
            map.clear();
            map
        })
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
