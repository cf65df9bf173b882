//! Whose rights a file endpoint's file-system calls run with.
//!
//! Every call that opens, creates, links, renames or removes a file for a transfer goes through
//! [`FileRights`]. By default that is this process's own rights, on tokio's blocking threads. A
//! service that works for someone else supplies another runner: the Windows streamer's capture
//! helper runs as SYSTEM in the signed-in user's session, and runs these calls on a thread that
//! impersonates that user, so a technician's request reaches only what the user may read, and the
//! files the technician sends are the user's, in the user's folder (docs/SECURITY.md). Reads and
//! writes through a handle once opened need no more checks (Windows checks access at the open).

use std::fmt;
use std::io;
use std::sync::Arc;

/// One file-system job.
pub type Job = Box<dyn FnOnce() + Send>;

/// Runs a transfer's file-system calls with some account's rights.
#[derive(Clone)]
pub struct FileRights {
    whose: Arc<str>,
    run: Arc<dyn Fn(Job) + Send + Sync>,
}

impl FileRights {
    /// This process's own rights, on tokio's blocking threads.
    pub fn this_process() -> Self {
        Self::on("this program", |job| {
            tokio::task::spawn_blocking(job);
        })
    }

    /// Calls run by `run`, which must call each job once, on a thread with the rights of `whose`
    /// (a job it drops fails as "not possible now").
    pub fn on(whose: &str, run: impl Fn(Job) + Send + Sync + 'static) -> Self {
        Self {
            whose: Arc::from(whose),
            run: Arc::new(run),
        }
    }

    /// No file-system call at all: each one fails with `PermissionDenied` and `why` (say, no one
    /// is signed in to the computer whose files these would be).
    pub fn refusing(why: &str) -> Self {
        let why: Arc<str> = Arc::from(why);
        Self::on(&why.clone(), move |job| {
            // The job is dropped unrun: its caller learns why below.
            drop(job);
        })
    }

    /// Whose rights these are, for messages.
    pub fn whose(&self) -> &str {
        &self.whose
    }

    /// Runs `f` with these rights and returns what it returned.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (self.run)(Box::new(move || {
            let _ = tx.send(f());
        }));
        rx.await.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("not possible now: {}", self.whose),
            ))
        })
    }
}

impl Default for FileRights {
    fn default() -> Self {
        Self::this_process()
    }
}

impl fmt::Debug for FileRights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FileRights").field(&self.whose).finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn calls_run_on_the_runner_and_a_refusal_says_why() {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let worker = std::thread::spawn(move || {
            let mut ran = 0;
            for job in rx {
                job();
                ran += 1;
            }
            ran
        });
        let tx = std::sync::Mutex::new(tx);
        let rights = FileRights::on("a worker", move |job| {
            let _ = tx.lock().unwrap().send(job);
        });
        let here = std::thread::current().id();
        let there = rights
            .call(move || Ok(std::thread::current().id()))
            .await
            .unwrap();
        assert_ne!(here, there, "the job ran on the worker's thread");
        drop(rights);
        assert_eq!(worker.join().unwrap(), 1);

        let refusing = FileRights::refusing("no one is signed in to this computer");
        let e = refusing.call(|| Ok(())).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("no one is signed in"), "{e}");
    }
}
