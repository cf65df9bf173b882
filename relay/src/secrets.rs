//! Random secrets, their stored digests, and password hashing.
//!
//! Tokens, device secrets and deployment codes are random and long, so a SHA-256 digest is enough
//! to store them; passwords are chosen by people, so they get argon2id.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// Failure of the operating system's random source or of the password hasher (our fault).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The operating system gave no randomness.
    #[error("no randomness available: {0}")]
    Random(String),
    /// Argon2 failed to hash.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(buf)
}

/// A random secret of 256 bits as 64 hex characters: sign-in tokens, device secrets.
pub fn new_token() -> Result<String, SecretError> {
    Ok(hex::encode(random_bytes::<32>()?))
}

/// A random identifier of 128 bits as 32 hex characters.
pub fn new_id() -> Result<String, SecretError> {
    Ok(hex::encode(random_bytes::<16>()?))
}

/// A random code of `digits` decimal digits, drawn without modulo bias.
pub fn new_digits(digits: usize) -> Result<String, SecretError> {
    let mut out = String::with_capacity(digits);
    while out.len() < digits {
        for b in random_bytes::<16>()? {
            // 250 is the largest multiple of 10 under 256: rejecting the rest keeps digits uniform.
            if b < 250 && out.len() < digits {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    Ok(out)
}

/// The stored form of a random secret.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Hashes a password with argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// A valid hash of no real password, verified against when an account does not exist so that
/// unknown addresses cost as much time as wrong passwords.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no account has this password").unwrap_or_default())
}

/// Whether `password` matches the stored PHC string; a malformed stored hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Argon2 off the async workers: each hash or check runs on threads of its own, at most `threads`
/// at once (half the cores), at the lowest scheduling priority (nice 19 on Linux), so that password
/// work, whoever asks for it (sign-ins from anywhere, a stolen token guessing), neither holds the
/// async workers that serve every other request and session nor takes their cores from them: it
/// gets what they leave. Jobs wait in a bounded queue; a request whose job waits is served in turn.
#[derive(Debug, Clone)]
pub struct PasswordWork {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Password jobs that may wait for a thread; past this, a request waits to queue its job.
const QUEUED_JOBS: usize = 256;

impl Default for PasswordWork {
    /// Half the machine's cores, at least one: the other half stays with the async workers.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Self::new((cores / 2).max(1))
    }
}

impl PasswordWork {
    /// `threads` password threads, which end when the last clone of this is dropped.
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = tokio::sync::mpsc::channel::<Job>(QUEUED_JOBS);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name(format!("passwords-{n}"))
                .spawn(move || {
                    #[cfg(target_os = "linux")]
                    if let Err(e) = rustix::process::setpriority_process(None, 19) {
                        tracing::warn!(error = %e, "password thread keeps the normal priority");
                    }
                    loop {
                        // One thread takes the next job; the lock is let go before running it.
                        let job = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .blocking_recv();
                        match job {
                            Some(job) => job(),
                            None => return,
                        }
                    }
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "starting a password thread");
            }
        }
        Self { jobs }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SecretError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| SecretError::Hash("the password threads have stopped".into()))?;
        result
            .await
            .map_err(|_| SecretError::Hash("a password job was lost".into()))
    }

    /// [`hash_password`], off the async workers.
    pub async fn hash(&self, password: &str) -> Result<String, SecretError> {
        let password = password.to_owned();
        self.run(move || hash_password(&password)).await?
    }

    /// [`verify_password`] against `stored`, or against [`dummy_hash`] when there is no account
    /// (so that unknown addresses cost what wrong passwords do), off the async workers.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let password = password.to_owned();
        let stored = stored.map(str::to_owned);
        self.run(move || match stored {
            Some(stored) => verify_password(&password, &stored),
            None => {
                let _ = verify_password(&password, dummy_hash());
                false
            }
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_when_right() {
        let stored = hash_password("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &stored));
        assert!(!verify_password("wrong horse", &stored));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_work_runs_off_the_async_workers_one_thread_at_a_time() {
        let work = PasswordWork::new(1);
        let stored = work.hash("correct horse").await.unwrap();
        assert!(work.verify("correct horse", Some(&stored)).await);
        assert!(!work.verify("wrong", Some(&stored)).await);
        assert!(!work.verify("correct horse", None).await);
        // Eight checks at once: while they run, an async task still gets its turn before any of
        // them has finished (had they run on the two workers, it would wait for one to finish):
        // told by the checks finished when it ran, not by a clock.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let (work, stored, done) = (work.clone(), stored.clone(), done.clone());
                tokio::spawn(async move {
                    work.verify("wrong", Some(&stored)).await;
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        tokio::task::yield_now().await;
        let seen = tokio::spawn({
            let done = done.clone();
            async move { done.load(std::sync::atomic::Ordering::SeqCst) }
        })
        .await
        .unwrap();
        assert_eq!(seen, 0, "an async task waited for argon2 checks to finish");
        for c in checks {
            c.await.unwrap();
        }
        assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 8);
    }

    #[test]
    fn codes_are_digits_and_tokens_differ() {
        let code = new_digits(9).unwrap();
        assert_eq!(code.len(), 9);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(new_token().unwrap(), new_token().unwrap());
        assert_eq!(digest("a"), digest("a"));
        assert_ne!(digest("a"), digest("b"));
    }
}
