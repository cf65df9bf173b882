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
    pub async fn probe(&self) -> Result<(), StorageFailing> {
        let path = ObjectPath::from("health/probe");
        self.objects
            .put(&path, PutPayload::from(Bytes::from_static(b"ok")))
            .await?;
        self.objects.delete(&path).await?;
        Ok(())
    }
}
