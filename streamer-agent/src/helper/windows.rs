//! The capture helper's processes and pipe on Windows (untested on real Windows: run here under
//! Wine, which has one session and starts the helper on its one desktop).
//!
//! For each session the service (LocalSystem, session 0):
//! - finds the active console session (`WTSGetActiveConsoleSessionId`) and whether someone is
//!   signed in to it (`WTSQuerySessionInformationW`, `WTSUserName`);
//! - creates a named pipe with a fresh name, only for SYSTEM, local clients only, one instance
//!   (`first_pipe_instance`, so that no one can have created it first);
//! - starts this exe with `--helper <pipe>` in that session: its own token duplicated as a primary
//!   token, moved to the session (`SetTokenInformation(TokenSessionId)`), then
//!   `CreateProcessAsUserW` on `winsta0\default`, or on `winsta0\winlogon` (the sign-in screen)
//!   when no one is signed in. The helper runs as SYSTEM in the user's session, as winlogon does;
//! - accepts only that process on the pipe (`GetNamedPipeClientProcessId`), sends it the offer,
//!   and forwards ([`super::forward`]);
//! - starts a new helper when it is lost, or when the console session (or its signed-in state)
//!   changes, polled each second; gives up on the session after three failures in a row.
//!
//! The helper's file transfers run with the signed-in user's rights, not SYSTEM's
//! ([`user_files`]): it takes the console user's token (`WTSQueryUserToken`, which SYSTEM may
//! call), finds their Downloads folder with it (`SHGetKnownFolderPath(FOLDERID_Downloads)`), and
//! runs every open, create, link, rename and remove of a transfer on a thread of its own that
//! impersonates them (`ImpersonateLoggedOnUser`, per thread, until `RevertToSelf`): a technician's
//! request reaches only what that user may read, and what the technician sends is the user's, in
//! their folder, never written through a junction with SYSTEM's rights. With no one signed in (the
//! sign-in screen), or without the token, every file call is refused, saying why.
//!
//! Not followed: a switch to the secure desktop inside a signed-in session (a UAC prompt, the lock
//! screen); the helper keeps capturing the user's desktop meanwhile.
#![allow(unsafe_code)]

use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use protocol::Message;
use relay_client::{Connection, LinkError};
use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer, ServerOptions};
use tokio_util::sync::CancellationToken;
use windows::core::{PCWSTR, PWSTR};
use windows::Win32::Foundation::{CloseHandle, HANDLE, WAIT_TIMEOUT};
use windows::Win32::Security::{
    DuplicateTokenEx, ImpersonateLoggedOnUser, RevertToSelf, SecurityIdentification,
    SetTokenInformation, TokenPrimary, TokenSessionId, SECURITY_ATTRIBUTES, TOKEN_ALL_ACCESS,
    TOKEN_DUPLICATE, TOKEN_QUERY,
};
use windows::Win32::System::Com::CoTaskMemFree;
use windows::Win32::System::Pipes::GetNamedPipeClientProcessId;
use windows::Win32::System::RemoteDesktop::{
    WTSFreeMemory, WTSGetActiveConsoleSessionId, WTSQuerySessionInformationW, WTSQueryUserToken,
    WTSUserName,
};
use windows::Win32::System::Threading::{
    CreateProcessAsUserW, GetCurrentProcess, OpenProcessToken, TerminateProcess,
    WaitForSingleObject, CREATE_NO_WINDOW, CREATE_UNICODE_ENVIRONMENT, PROCESS_INFORMATION,
    STARTUPINFOW,
};
use windows::Win32::UI::Shell::{FOLDERID_Downloads, SHGetKnownFolderPath, KF_FLAG_DEFAULT};

use super::{forward, Forwarded, PipeLink};
use crate::agent::{
    end_text, SessionFiles, SessionFuture, SessionHost, SessionLink, WindowsPlatform,
};
use relay_client::files::{FileRights, Job};

/// The console session a helper runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Console {
    /// The session's id.
    pub session: u32,
    /// Someone is signed in (otherwise the sign-in screen shows).
    pub signed_in: bool,
}

impl Console {
    /// The active console session, or `None` while there is none (during a switch).
    pub fn current() -> Option<Console> {
        // SAFETY: no arguments; returns 0xFFFFFFFF when there is no console session.
        let session = unsafe { WTSGetActiveConsoleSessionId() };
        if session == u32::MAX {
            return None;
        }
        let mut name = PWSTR::null();
        let mut bytes = 0u32;
        // SAFETY: the buffer is allocated by the call, read, and freed with WTSFreeMemory.
        let signed_in = unsafe {
            match WTSQuerySessionInformationW(None, session, WTSUserName, &mut name, &mut bytes) {
                Ok(()) => {
                    let user = name.to_string().unwrap_or_default();
                    WTSFreeMemory(name.0.cast());
                    !user.is_empty()
                }
                // Unknown: the user's desktop is the likelier one.
                Err(_) => true,
            }
        };
        Some(Console { session, signed_in })
    }

    fn desktop(self) -> &'static str {
        if self.signed_in {
            r"winsta0\default"
        } else {
            r"winsta0\winlogon"
        }
    }
}

/// A running helper process.
#[derive(Debug)]
pub struct Helper {
    process: Option<OwnedHandle>,
    pid: u32,
    console: Console,
}

impl Helper {
    /// The helper's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The console session it runs in.
    pub fn console(&self) -> Console {
        self.console
    }

    /// Completes when the console session is no longer the helper's (checked every second).
    pub async fn console_changed(&self) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(now) = Console::current() {
                if now != self.console {
                    return;
                }
            }
        }
    }

    /// Waits up to three seconds for the helper to exit (its session is over), then ends it.
    pub async fn finish(mut self) {
        if let Some(process) = self.process.take() {
            let _ = tokio::task::spawn_blocking(move || end_process(&process, 3000)).await;
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            end_process(&process, 0);
        }
    }
}

fn end_process(process: &OwnedHandle, wait_ms: u32) {
    let handle = HANDLE(process.as_raw_handle());
    // SAFETY: the handle is the helper's process handle, open until `process` drops.
    unsafe {
        if WaitForSingleObject(handle, wait_ms) == WAIT_TIMEOUT {
            if wait_ms > 0 {
                tracing::warn!(wait_ms, "the capture helper did not exit; terminating it");
            }
            let _ = TerminateProcess(handle, 1);
        }
    }
}

/// A pipe name of its own for each helper.
fn pipe_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!(
        r"\\.\pipe\RecordedSupportStreamer-{}-{:016x}",
        std::process::id(),
        h.finish()
    )
}

/// The pipe, for SYSTEM alone, local clients only, and only if no one else made it first.
fn create_pipe(name: &str) -> Result<NamedPipeServer> {
    let sd = crate::service::SecurityDescriptor::from_sddl("D:P(A;;GA;;;SY)")?;
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.as_raw().0,
        bInheritHandle: false.into(),
    };
    // SAFETY: the attributes and their descriptor live across the call (the pipe keeps a copy).
    unsafe {
        ServerOptions::new()
            .first_pipe_instance(true)
            .reject_remote_clients(true)
            .max_instances(1)
            .in_buffer_size(1 << 20)
            .out_buffer_size(1 << 20)
            .create_with_security_attributes_raw(
                name,
                (&mut attributes as *mut SECURITY_ATTRIBUTES).cast(),
            )
    }
    .with_context(|| format!("creating the pipe {name}"))
}

/// Starts this exe as the helper in `console`, connecting to `pipe`.
fn spawn(console: Console, pipe: &str) -> Result<(OwnedHandle, u32)> {
    let exe = std::env::current_exe().context("finding this exe")?;
    let mut command: Vec<u16> = format!("\"{}\" --helper {pipe}", exe.display())
        .encode_utf16()
        .chain(Some(0))
        .collect();
    let mut desktop: Vec<u16> = console.desktop().encode_utf16().chain(Some(0)).collect();
    // SAFETY: every handle is wrapped as owned as soon as it exists; the strings outlive the calls.
    unsafe {
        let mut own = HANDLE::default();
        OpenProcessToken(GetCurrentProcess(), TOKEN_DUPLICATE | TOKEN_QUERY, &mut own)
            .context("opening the service's token")?;
        let own = OwnedHandle::from_raw_handle(own.0);
        let mut token = HANDLE::default();
        DuplicateTokenEx(
            HANDLE(own.as_raw_handle()),
            TOKEN_ALL_ACCESS,
            None,
            SecurityIdentification,
            TokenPrimary,
            &mut token,
        )
        .context("duplicating the service's token")?;
        let token = OwnedHandle::from_raw_handle(token.0);
        SetTokenInformation(
            HANDLE(token.as_raw_handle()),
            TokenSessionId,
            (&console.session as *const u32).cast(),
            4,
        )
        .with_context(|| format!("moving the token to session {}", console.session))?;
        let startup = STARTUPINFOW {
            cb: std::mem::size_of::<STARTUPINFOW>() as u32,
            lpDesktop: PWSTR(desktop.as_mut_ptr()),
            ..Default::default()
        };
        let mut info = PROCESS_INFORMATION::default();
        CreateProcessAsUserW(
            Some(HANDLE(token.as_raw_handle())),
            PCWSTR::null(),
            Some(PWSTR(command.as_mut_ptr())),
            None,
            None,
            false,
            CREATE_NO_WINDOW | CREATE_UNICODE_ENVIRONMENT,
            None,
            PCWSTR::null(),
            &startup,
            &mut info,
        )
        .with_context(|| format!("starting the helper in session {}", console.session))?;
        let _ = CloseHandle(info.hThread);
        Ok((
            OwnedHandle::from_raw_handle(info.hProcess.0),
            info.dwProcessId,
        ))
    }
}

/// Starts a helper in the active console session and hands it `offer`.
pub async fn launch(offer: &Message) -> Result<(Helper, PipeLink<NamedPipeServer>)> {
    let console = Console::current().context("there is no console session to capture")?;
    let name = pipe_name();
    let server = create_pipe(&name)?;
    let (process, pid) = spawn(console, &name)?;
    let helper = Helper {
        process: Some(process),
        pid,
        console,
    };
    tokio::time::timeout(Duration::from_secs(20), server.connect())
        .await
        .context("the helper did not connect within 20 s")?
        .context("waiting for the helper on the pipe")?;
    let mut client = 0u32;
    // SAFETY: the pipe's handle is open while `server` lives.
    unsafe { GetNamedPipeClientProcessId(HANDLE(server.as_raw_handle()), &mut client) }
        .context("asking who connected to the pipe")?;
    if client != pid {
        bail!("process {client}, not the helper ({pid}), connected to the pipe");
    }
    let mut link = PipeLink::new(server);
    link.send(offer).await?;
    Ok((helper, link))
}

/// Sessions run by a helper in the console session: how the service serves them.
#[derive(Debug, Clone, Copy, Default)]
pub struct HelperHost;

/// Failures in a row (a helper that cannot start, or is lost within a minute) before the session
/// is given up.
const MAX_FAILURES: u32 = 3;

impl SessionHost for HelperHost {
    fn session<'a>(
        &'a self,
        conn: &'a mut Connection,
        offer: Message,
        shutdown: &'a CancellationToken,
    ) -> SessionFuture<'a> {
        Box::pin(async move {
            let mut failures = 0;
            let mut tools = None;
            loop {
                // While a helper starts, the relay is still heard: the session may end meanwhile.
                let launching = launch(&offer);
                tokio::pin!(launching);
                let launched = loop {
                    tokio::select! {
                        r = &mut launching => break r,
                        m = conn.recv() => match m? {
                            Message::SessionEnded { reason, message } => return Ok(end_text(reason, &message)),
                            Message::Refused { code, message } => {
                                return Err(LinkError::Refused(protocol::Refusal::new(code, message)).into())
                            }
                            tools_msg @ Message::SessionTools(_) => tools = Some(tools_msg),
                            // Input and requests while no helper runs are dropped.
                            _ => {}
                        },
                        () = shutdown.cancelled() => {
                            let _ = conn.send(&Message::LeaveSession).await;
                            return Ok("The streamer service is stopping.".into());
                        }
                    }
                };
                let (helper, mut link) = match launched {
                    Ok(started) => started,
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %format!("{e:#}"), failures, "the capture helper did not start");
                        if failures >= MAX_FAILURES {
                            return Err(e.context("the capture helper could not start"));
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let Console { session, signed_in } = helper.console();
                tracing::info!(
                    pid = helper.pid(),
                    console_session = session,
                    signed_in,
                    "capture helper started"
                );
                let started = Instant::now();
                let forwarded = forward(
                    conn,
                    &mut link,
                    helper.console_changed(),
                    shutdown,
                    &mut tools,
                    &super::sas::send,
                )
                .await;
                if matches!(forwarded, Ok(Forwarded::Ended(_))) {
                    // The helper has the session's end: let it finish its session and close.
                    if !super::let_helper_finish(&mut link, Duration::from_secs(5)).await {
                        tracing::warn!("the capture helper did not close its pipe within 5 s of the session's end");
                    }
                }
                drop(link);
                helper.finish().await;
                match forwarded? {
                    Forwarded::Ended(why) => return Ok(why),
                    Forwarded::Restart => {
                        tracing::info!("the console session changed; starting the helper again");
                        failures = 0;
                    }
                    Forwarded::HelperLost(e) => {
                        if started.elapsed() > Duration::from_secs(60) {
                            failures = 0;
                        }
                        failures += 1;
                        tracing::warn!(error = %format!("{e:#}"), failures, "the capture helper was lost");
                        if failures >= MAX_FAILURES {
                            return Err(e.context("the capture helper keeps failing"));
                        }
                    }
                }
            }
        })
    }
}

/// The signed-in console user's Downloads folder and rights that run file calls as that user; when
/// no one is signed in, or the user's token cannot be had, rights that refuse every file call and
/// say why (the session goes on without files).
pub fn user_files() -> SessionFiles {
    let refusing = |why: &str| SessionFiles {
        rights: FileRights::refusing(why),
        ..SessionFiles::default()
    };
    match Console::current() {
        Some(console) if console.signed_in => match user_rights(console.session) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "no file transfers: the signed-in user's rights could not be taken on");
                refusing("this computer's streamer could not act as the signed-in user, so it sends and receives no files")
            }
        },
        _ => refusing("no one is signed in to this computer, so it sends and receives no files"),
    }
}

/// The user of console session `session`: their Downloads folder, and a thread that impersonates
/// them for its whole life and runs the file calls sent to it.
fn user_rights(session: u32) -> Result<SessionFiles> {
    let mut raw = HANDLE::default();
    // SAFETY: an out pointer to a handle the call opens; SYSTEM holds SeTcbPrivilege, which the
    // call requires.
    unsafe { WTSQueryUserToken(session, &mut raw) }.context("WTSQueryUserToken")?;
    // SAFETY: the call opened this handle for us; it is closed when dropped.
    let token = unsafe { OwnedHandle::from_raw_handle(raw.0) };
    // SAFETY: the token is open; the path the call allocates is copied, then freed with
    // CoTaskMemFree as its documentation says.
    let downloads = unsafe {
        let path = SHGetKnownFolderPath(
            &FOLDERID_Downloads,
            KF_FLAG_DEFAULT,
            Some(HANDLE(token.as_raw_handle())),
        )
        .context("SHGetKnownFolderPath(Downloads)")?;
        let text = path.to_string();
        CoTaskMemFree(Some(path.0.cast_const().cast()));
        text.context("the Downloads folder's path is not valid UTF-16")?
    };
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let (started, impersonating) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("files as the signed-in user".into())
        .spawn(move || {
            // SAFETY: the token stays open for the thread's life; impersonation is this
            // thread's alone and lasts until RevertToSelf.
            let ok = unsafe { ImpersonateLoggedOnUser(HANDLE(token.as_raw_handle())) };
            let _ = started.send(ok.as_ref().map(drop).map_err(ToString::to_string));
            if ok.is_err() {
                // The jobs are dropped unrun: each call fails, saying it is not possible now.
                return;
            }
            for job in queue {
                job();
            }
            // SAFETY: ends this thread's impersonation.
            let _ = unsafe { RevertToSelf() };
        })
        .context("starting the thread for file calls")?;
    impersonating
        .recv()
        .context("the thread for file calls stopped")?
        .map_err(|e| anyhow::anyhow!("ImpersonateLoggedOnUser: {e}"))?;
    let jobs = std::sync::Mutex::new(jobs);
    Ok(SessionFiles {
        downloads: std::path::PathBuf::from(downloads),
        own_data: Vec::new(),
        rights: FileRights::on("the signed-in user", move |job| {
            if let Ok(jobs) = jobs.lock() {
                let _ = jobs.send(job);
            }
        }),
    })
}

/// The helper process (`streamer.exe --helper <pipe>`): serves one session over the pipe, then
/// exits. Logs to `helper.log` in the service's data folder.
pub fn run(pipe: &str) -> Result<()> {
    crate::service::init_log(&crate::service::data_dir(), "helper.log");
    crate::capture::gdi::make_dpi_aware();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(async {
        let client = ClientOptions::new()
            .open(pipe)
            .with_context(|| format!("connecting to the service's pipe {pipe}"))?;
        let mut link = PipeLink::new(client);
        // The service's data folder is protected by the platform's own data.
        let files = user_files();
        super::serve_helper(&mut link, &WindowsPlatform, 30, &files).await
    });
    match &result {
        Ok(why) => tracing::info!(reason = %why, "the helper's session ended"),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "the helper stopped"),
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    result.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pipe_is_ours_alone_and_names_its_client() {
        let name = pipe_name();
        assert_ne!(name, pipe_name(), "each helper gets a pipe name of its own");
        let server = create_pipe(&name).unwrap();
        // Someone who made the name first (or a second instance) is refused.
        assert!(create_pipe(&name).is_err());
        let client = ClientOptions::new().open(&name).unwrap();
        server.connect().await.unwrap();
        let mut pid = 0u32;
        // SAFETY: the pipe's handle is open while `server` lives.
        unsafe { GetNamedPipeClientProcessId(HANDLE(server.as_raw_handle()), &mut pid) }.unwrap();
        assert_eq!(pid, std::process::id());
        let (mut a, mut b) = (PipeLink::new(server), PipeLink::new(client));
        a.send(&Message::KeyframeRequest).await.unwrap();
        assert_eq!(b.recv().await.unwrap(), Message::KeyframeRequest);
    }
}
