//! A SysV shared memory segment attached to an X server (MIT-SHM), for images that should not
//! cross the X socket: the streamer's capture has the server write screen images into one
//! (`ShmGetImage`), the technician app's native view writes pictures into one for the server to
//! read (`ShmPutImage`).
//!
//! The segment is marked for removal as soon as the server has attached it (or failed to), so
//! nothing outlives the process, whatever way it ends. Who writes is fixed when it is made
//! ([`Access`]): the side that only reads maps it read-only.
//!
//! Ordering is the caller's: the X server touches the memory only while it executes a request that
//! names the segment, and requests are executed in order, so once the reply to any later request
//! has arrived (a `GetInputFocus` round trip, say), the memory is the caller's again.

#![allow(unsafe_code)]

use std::ptr::NonNull;

use x11rb::connection::Connection;
use x11rb::protocol::shm::{self, ConnectionExt as _};

/// Who writes into the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The server writes (`ShmGetImage`); this process maps it read-only.
    ServerWrites,
    /// This process writes (`ShmPutImage`); the server attaches it read-only.
    ClientWrites,
}

/// A segment attached to one X server.
#[derive(Debug)]
pub struct Segment {
    xid: shm::Seg,
    addr: NonNull<u8>,
    size: usize,
    access: Access,
}

// SAFETY: the mapping is owned by this value alone (reads through `&self`, writes through
// `&mut self`); moving it to another thread moves the only handle to it.
unsafe impl Send for Segment {}

impl Segment {
    /// A segment of `size` bytes attached to the server of `conn`, or `None` when the server cannot
    /// share memory with this process (another machine, another user, no MIT-SHM).
    pub fn attach(conn: &impl Connection, size: usize, access: Access) -> Option<Self> {
        let (client_flags, server_read_only) = match access {
            Access::ServerWrites => (libc::SHM_RDONLY, false),
            Access::ClientWrites => (0, true),
        };
        // SAFETY: plain SysV calls; every result is checked before use, and the id is marked for
        // removal once the server has attached (or failed to).
        unsafe {
            let id = libc::shmget(libc::IPC_PRIVATE, size, libc::IPC_CREAT | 0o600);
            if id < 0 {
                return None;
            }
            let addr = libc::shmat(id, std::ptr::null(), client_flags);
            let attached = (addr as isize != -1)
                .then(|| {
                    let xid = conn.generate_id().ok()?;
                    conn.shm_attach(xid, u32::try_from(id).ok()?, server_read_only)
                        .ok()?
                        .check()
                        .ok()?;
                    Some(xid)
                })
                .flatten();
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            match (attached, NonNull::new(addr.cast::<u8>())) {
                (Some(xid), Some(addr)) => Some(Self {
                    xid,
                    addr,
                    size,
                    access,
                }),
                _ => {
                    if addr as isize != -1 {
                        libc::shmdt(addr);
                    }
                    None
                }
            }
        }
    }

    /// The server's name for it (the `shmseg` of SHM requests).
    pub fn xid(&self) -> shm::Seg {
        self.xid
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The first `len` bytes (at most the size), as last written.
    pub fn bytes(&self, len: usize) -> &[u8] {
        // SAFETY: the mapping is `size` bytes long and lives as long as `self`; the server writes
        // into it only during a request whose completion the caller has waited for (see the
        // module's notes).
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr(), len.min(self.size)) }
    }

    /// The first `len` bytes (at most the size) to write into, when this process is the writer.
    pub fn bytes_mut(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.access != Access::ClientWrites {
            return None;
        }
        // SAFETY: as `bytes`; the mapping is writable (attached without SHM_RDONLY), and the
        // server reads it only during a request the caller has waited for.
        Some(unsafe { std::slice::from_raw_parts_mut(self.addr.as_ptr(), len.min(self.size)) })
    }

    /// Detaches it from the server and from this process.
    pub fn release(self, conn: &impl Connection) {
        let _ = conn.shm_detach(self.xid);
        // SAFETY: `addr` came from shmat and is detached once, here.
        unsafe {
            libc::shmdt(self.addr.as_ptr().cast());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_read_only_mapping_gives_no_bytes_to_write() {
        // No X server is needed to check the guard: build one by hand over a private mapping.
        let mut page = vec![0u8; 16];
        let mut seg = Segment {
            xid: 0,
            addr: NonNull::new(page.as_mut_ptr()).unwrap(),
            size: page.len(),
            access: Access::ServerWrites,
        };
        assert!(seg.bytes_mut(8).is_none());
        assert_eq!(seg.bytes(100).len(), 16);
        seg.access = Access::ClientWrites;
        seg.bytes_mut(4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(seg.bytes(4), &[1, 2, 3, 4]);
    }
}
