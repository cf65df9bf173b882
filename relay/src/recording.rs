//! Recording storage: the object store that recordings go to, its health check, and the integrity
//! check of stored files against the SHA-256 recorded when each was closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

/// The recordings' object store.
#[derive(Debug, Clone)]
pub struct Recordings {
    objects: Arc<dyn ObjectStore>,
    /// The directory of a store on local disk (its files' change times are read from it).
    local_root: Option<Arc<object_store::local::LocalFileSystem>>,
    /// Verdicts of [`Recordings::verify`] by object key, with the [`Stamp`] they were reached on:
    /// a range read in the middle of a file (a player seeking) is served on the verdict while the
    /// file is provably unchanged.
    verified: Arc<Mutex<HashMap<String, (Stamp, Integrity)>>>,
}

/// What tells that a stored file changed since it was hashed, made only of what a writer cannot
/// put back: size and ETag (on S3 the ETag is the content's own digest, renewed by any write),
/// and on local disk the inode and the *change* time, which every write and every `utimensat`
/// moves to the present (the modification time, which `utimensat` sets at will, is not enough).
type Stamp = (u64, Option<String>, Option<(u64, i64, i64)>);

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
            local_root: None,
            verified: Arc::default(),
        }
    }

    /// The file's stamp: see [`Stamp`].
    async fn stamp(&self, path: &ObjectPath) -> Result<Stamp, object_store::Error> {
        let meta = self.objects.head(path).await?;
        let local = match &self.local_root {
            Some(fs) => {
                use std::os::unix::fs::MetadataExt as _;
                let file = fs.path_to_filesystem(path)?;
                let m =
                    tokio::fs::metadata(&file)
                        .await
                        .map_err(|e| object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        })?;
                Some((m.ino(), m.ctime(), m.ctime_nsec()))
            }
            None => None,
        };
        Ok((meta.size, meta.e_tag, local))
    }

    /// Checks the object `key` against the SHA-256 (hex) recorded when it was stored. A read
    /// `from_start` (a download, a player's first request) always hashes the bytes as they are
    /// now; a read from further in is served on an earlier verdict while the file's [`Stamp`] is
    /// unchanged, and hashes it whole otherwise.
    pub async fn verify(
        &self,
        key: &str,
        expected: &str,
        from_start: bool,
    ) -> Result<Integrity, object_store::Error> {
        let path = ObjectPath::from(key);
        let stamp = self.stamp(&path).await?;
        if !from_start {
            if let Some((seen, verdict)) = self.lock_verified().get(key) {
                if *seen == stamp {
                    return Ok(verdict.clone());
                }
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
        let fs = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?);
        Ok(Self {
            local_root: Some(fs.clone()),
            ..Self::new(fs)
        })
    }

    /// The recordings' store `config` names: `recordings_url` (`s3://BUCKET[/PREFIX]`), or
    /// `recordings/` in the data directory.
    pub fn open(config: &crate::Config) -> anyhow::Result<Self> {
        let Some(url) = &config.recordings_url else {
            return Self::local(&config.data_dir.join("recordings"));
        };
        if let Some(path) = url.strip_prefix("file://") {
            // A directory elsewhere than the data directory: relays of a fleet on one machine (or
            // sharing a mounted file system) keep recordings together in it.
            anyhow::ensure!(
                path.starts_with('/'),
                "recordings_url {url:?}: a directory is named by an absolute path (file:///srv/recordings)"
            );
            return Self::local(std::path::Path::new(path));
        }
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            anyhow::anyhow!(
                "recordings_url {url:?}: the relay keeps recordings in a directory (unset, or \
                 file:///PATH) or an S3-compatible store (s3://BUCKET or s3://BUCKET/PREFIX)"
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(!bucket.is_empty(), "recordings_url {url:?} names no bucket");
        // The HTTP client's TLS uses the relay's provider (ring); installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut s3 = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &config.s3_endpoint {
            anyhow::ensure!(
                !endpoint.starts_with("http://") || config.s3_allow_http,
                "s3_endpoint {endpoint:?} is plain HTTP: recordings would cross the network \
                 unencrypted; use https://, or set s3_allow_http for a store on this network"
            );
            // Path-style requests (`ENDPOINT/BUCKET/KEY`): what S3-compatible servers answer
            // without a DNS name per bucket.
            s3 = s3
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if config.s3_allow_http {
            s3 = s3.with_allow_http(true);
        }
        if let Some(region) = &config.s3_region {
            s3 = s3.with_region(region);
        }
        if let Some(key) = &config.s3_access_key_id {
            s3 = s3.with_access_key_id(key);
        }
        if let Some(secret) = &config.s3_secret_access_key {
            s3 = s3.with_secret_access_key(&secret.0);
        }
        let store = s3
            .build()
            .with_context(|| format!("the recordings store {url}"))?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            Ok(Self::new(Arc::new(store)))
        } else {
            Ok(Self::new(Arc::new(object_store::prefix::PrefixStore::new(
                store, prefix,
            ))))
        }
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

    #[test]
    fn recordings_urls_that_cannot_work_are_refused_saying_why() {
        let refused = |url: &str, endpoint: Option<&str>| {
            let config = crate::Config {
                recordings_url: Some(url.to_owned()),
                s3_endpoint: endpoint.map(str::to_owned),
                ..crate::Config::default()
            };
            Recordings::open(&config).unwrap_err().to_string()
        };
        assert!(refused("ftp://host/x", None).contains("s3://BUCKET"));
        assert!(refused("s3://", None).contains("names no bucket"));
        assert!(refused("file://relative/dir", None).contains("absolute path"));
        let plain = refused("s3://bucket", Some("http://10.0.0.5:7480"));
        assert!(
            plain.contains("unencrypted") && plain.contains("s3_allow_http"),
            "{plain}"
        );
        // Allowed, it builds (nothing is contacted until a recording is stored).
        let config = crate::Config {
            recordings_url: Some("s3://bucket/team-a".into()),
            s3_endpoint: Some("http://127.0.0.1:7480".into()),
            s3_allow_http: true,
            s3_region: Some("us-east-1".into()),
            ..crate::Config::default()
        };
        Recordings::open(&config).unwrap();
    }

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
