//! The unattended streamer as a Windows service (LocalSystem), as the MSI installs it.
//!
//! - Settings come from `HKLM\SOFTWARE\RecordedSupport\Streamer` (`Relay`, `CaFile`,
//!   `DeploymentCode`), written by the MSI from its properties. The deployment code is deleted from
//!   the registry once the device is registered: the credential replaces it.
//! - The device credential lives in `%ProgramData%\RecordedSupport\Streamer\device.credential`,
//!   readable by SYSTEM only; the log in `streamer.log` beside it.
//! - Stop and shutdown from the service manager end a running session with a goodbye.
//! - A refused deployment code or a lost relay is retried with backoff (1 s doubling to 30 s), the
//!   relay's sentence in the log; only a revoked device stops the service.
//!
//! - A service runs in session 0, which has no interactive desktop: each session's capture, encoding
//!   and input run in a helper process in the active console session (`crate::helper`), which
//!   logs to `helper.log`.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use windows::core::{HSTRING, PCWSTR};
use windows::Win32::Foundation::{LocalFree, ERROR_SUCCESS, HLOCAL};
use windows::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW, SDDL_REVISION_1,
    SE_FILE_OBJECT,
};
use windows::Win32::Security::{
    IsWellKnownSid, SetFileSecurityW, WinBuiltinAdministratorsSid, WinLocalSystemSid,
    DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
};
use windows::Win32::System::Com::CoTaskMemFree;
use windows::Win32::System::Registry::{
    RegDeleteKeyValueW, RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ,
};
use windows::Win32::UI::Shell::{FOLDERID_ProgramData, SHGetKnownFolderPath, KNOWN_FOLDER_FLAG};
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};

use crate::agent::{self, AgentConfig, Mode, Notice};

/// The service's name in the service control manager (the MSI's `ServiceInstall`).
pub const SERVICE_NAME: &str = "RecordedSupportStreamer";

/// Where the MSI writes the settings.
pub const SETTINGS_KEY: &str = r"SOFTWARE\RecordedSupport\Streamer";

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Hands this process to the service control manager; returns when the service has stopped.
pub fn run_dispatcher() -> Result<()> {
    windows_service::service_dispatcher::start(SERVICE_NAME, ffi_service_main)
        .context("connecting to the service control manager (is this started as a service?)")
}

/// The service's data folder, `RecordedSupport\Streamer` in the machine's program-data folder
/// (asked of the shell: the `ProgramData` variable is not the same in every context, and under
/// Wine a service sees another one).
pub fn data_dir() -> PathBuf {
    // SAFETY: the shell allocates the path; it is copied and freed here.
    let known = unsafe {
        SHGetKnownFolderPath(&FOLDERID_ProgramData, KNOWN_FOLDER_FLAG(0), None).map(|p| {
            let path = p.to_string().unwrap_or_default();
            CoTaskMemFree(Some(p.0 as *const core::ffi::c_void));
            path
        })
    };
    let base = match known {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(r"C:\ProgramData"),
    };
    base.join("RecordedSupport").join("Streamer")
}

/// A string value of the settings key, or `None` when missing or empty.
pub fn setting(name: &str) -> Option<String> {
    let (key, value) = (HSTRING::from(SETTINGS_KEY), HSTRING::from(name));
    let mut buf = vec![0u16; 2048];
    let mut size = (buf.len() * 2) as u32;
    // SAFETY: `buf` holds `size` bytes, and RegGetValueW writes at most that many.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            PCWSTR(key.as_ptr()),
            PCWSTR(value.as_ptr()),
            RRF_RT_REG_SZ,
            None,
            Some(buf.as_mut_ptr().cast()),
            Some(&mut size),
        )
    };
    if status != ERROR_SUCCESS {
        return None;
    }
    buf.truncate(size as usize / 2);
    let text = crate::capture::gdi::wide_to_string(&buf);
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn forget_setting(name: &str) {
    let (key, value) = (HSTRING::from(SETTINGS_KEY), HSTRING::from(name));
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let status = unsafe {
        RegDeleteKeyValueW(
            HKEY_LOCAL_MACHINE,
            PCWSTR(key.as_ptr()),
            PCWSTR(value.as_ptr()),
        )
    };
    if status != ERROR_SUCCESS {
        tracing::warn!(
            setting = name,
            code = status.0,
            "could not delete the used setting"
        );
    }
}

/// SYSTEM alone, nothing inherited: the credential file.
const SYSTEM_ONLY: &str = "D:P(A;;FA;;;SY)";
/// SYSTEM and Administrators, inherited by what is created inside: the data folder (its log).
const SYSTEM_AND_ADMINS: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/// A security descriptor built from SDDL, freed when dropped.
pub(crate) struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

impl SecurityDescriptor {
    /// The descriptor `sddl` describes.
    pub(crate) fn from_sddl(sddl: &str) -> Result<Self> {
        let sddl = HSTRING::from(sddl);
        let mut sd = PSECURITY_DESCRIPTOR::default();
        // SAFETY: the string is NUL-terminated; the descriptor is allocated by the call and owned
        // by the returned value.
        unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                PCWSTR(sddl.as_ptr()),
                SDDL_REVISION_1,
                &mut sd,
                None,
            )
        }
        .context("building a security descriptor")?;
        Ok(Self(sd))
    }

    /// The descriptor, valid while `self` lives.
    pub(crate) fn as_raw(&self) -> PSECURITY_DESCRIPTOR {
        self.0
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW, freed once.
        let _ = unsafe { LocalFree(Some(HLOCAL(self.0 .0))) };
    }
}

/// Replaces the DACL of `path` with the one `sddl` describes.
pub fn protect(path: &std::path::Path, sddl: &str) -> Result<()> {
    let sd = SecurityDescriptor::from_sddl(sddl)?;
    let file = HSTRING::from(path.as_os_str());
    // SAFETY: the path is NUL-terminated and the descriptor lives across the call.
    let ok = unsafe {
        SetFileSecurityW(
            PCWSTR(file.as_ptr()),
            DACL_SECURITY_INFORMATION,
            sd.as_raw(),
        )
    };
    if !ok.as_bool() {
        return Err(windows::core::Error::from_thread())
            .with_context(|| format!("protecting {}", path.display()));
    }
    Ok(())
}

/// Removes the data folder (the MSI's uninstall, after the service has stopped). The credential's
/// SYSTEM-only DACL is first widened to the folder's, so that an administrator's uninstall (not only
/// SYSTEM's) can delete it.
pub fn remove_data() -> Result<()> {
    let dir = data_dir();
    if !dir.exists() {
        return Ok(());
    }
    let credential = dir.join("device.credential");
    if credential.exists() {
        if let Err(e) = protect(&credential, SYSTEM_AND_ADMINS) {
            eprintln!("streamer: {e:#}");
        }
    }
    // The service has reported itself stopped, but its process may hold its log open for a
    // moment longer: try for up to ten seconds.
    let mut removed = std::fs::remove_dir_all(&dir);
    for _ in 0..40 {
        match &removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(250));
                removed = std::fs::remove_dir_all(&dir);
            }
            _ => break,
        }
    }
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => {}
    }
    // The vendor folder too, when nothing else of ours is in it.
    if let Some(vendor) = dir.parent() {
        let _ = std::fs::remove_dir(vendor);
    }
    Ok(())
}

fn status(state: ServiceState, accept: ServiceControlAccept, exit: u32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: accept,
        exit_code: ServiceExitCode::Win32(exit),
        checkpoint: 0,
        wait_hint: Duration::from_secs(10),
        process_id: None,
    }
}

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = run_service() {
        tracing::error!(error = %format!("{e:#}"), "the service stopped");
    }
}

/// Logs to `name` in `dir`, appending.
pub(crate) fn init_log(dir: &std::path::Path, name: &str) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name));
    if let Ok(file) = file {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    }
}

/// Whether `path` (which exists) is owned by SYSTEM or the Administrators group and is not a
/// link (a junction or other reparse point). A folder a local user made before installation is
/// theirs: they keep the right to change its DACL and to swap what is inside, so the service must
/// not trust it.
fn owned_by_the_machine(path: &std::path::Path) -> Result<bool> {
    use std::os::windows::fs::MetadataExt as _;
    const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Ok(false);
    }
    let name = HSTRING::from(path.as_os_str());
    let mut owner = PSID::default();
    let mut sd = PSECURITY_DESCRIPTOR::default();
    // SAFETY: the path is NUL-terminated; the owner points into `sd`, which the call allocates
    // and which is freed below after the owner was last read.
    let status = unsafe {
        GetNamedSecurityInfoW(
            PCWSTR(name.as_ptr()),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            Some(&mut owner),
            None,
            None,
            None,
            &mut sd,
        )
    };
    if status != ERROR_SUCCESS {
        anyhow::bail!(
            "reading the owner of {}: error {}",
            path.display(),
            status.0
        );
    }
    // SAFETY: `owner` is a valid SID inside `sd` until `sd` is freed.
    let trusted = unsafe {
        IsWellKnownSid(owner, WinLocalSystemSid).as_bool()
            || IsWellKnownSid(owner, WinBuiltinAdministratorsSid).as_bool()
            || is_this_process_user(owner)
    };
    // SAFETY: `sd` was allocated by GetNamedSecurityInfoW with LocalAlloc.
    unsafe {
        let _ = LocalFree(Some(HLOCAL(sd.0)));
    }
    Ok(trusted)
}

/// Whether `sid` is the account this process runs as (LocalSystem for the service on Windows;
/// under Wine, Wine's one user): what the service made itself is the service's own.
///
/// # Safety
/// `sid` must be a valid SID.
unsafe fn is_this_process_user(sid: PSID) -> bool {
    use windows::Win32::Foundation::{CloseHandle, HANDLE};
    use windows::Win32::Security::{
        EqualSid, GetTokenInformation, TokenUser, TOKEN_QUERY, TOKEN_USER,
    };
    use windows::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
    let mut token = HANDLE::default();
    // SAFETY: the pseudo-handle of this process needs no closing; the token handle is closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) }.is_err() {
        return false;
    }
    // A TOKEN_USER and the SID it points to, in u64s so that the struct is aligned.
    let mut buf = vec![0u64; 64];
    let mut len = 0u32;
    // SAFETY: `buf` holds `buf.len() * 8` bytes, which the call writes at most.
    let got = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            Some(buf.as_mut_ptr().cast()),
            u32::try_from(buf.len() * 8).unwrap_or(0),
            &mut len,
        )
    };
    // SAFETY: the handle came from OpenProcessToken.
    let _ = unsafe { CloseHandle(token) };
    if got.is_err() {
        return false;
    }
    // SAFETY: the call filled `buf` with a TOKEN_USER whose SID lies inside `buf`.
    let user = unsafe { &*buf.as_ptr().cast::<TOKEN_USER>() };
    // SAFETY: both SIDs are valid (the caller's, and the token's inside `buf`).
    unsafe { EqualSid(sid, user.User.Sid) }.is_ok()
}

/// Makes the data folder, refusing one (or a `RecordedSupport` folder above it) that someone else
/// made first, and protects both: SYSTEM and Administrators alone, inherited inside.
fn prepare_data_dir(dir: &std::path::Path) -> Result<()> {
    let parent = dir.parent().context("the data folder has a parent")?;
    for path in [parent, dir] {
        if path.exists() && !owned_by_the_machine(path)? {
            anyhow::bail!(
                "{} exists but is not owned by SYSTEM or the Administrators (or is a link): \
                 someone made it before this installation, so it is not trusted. An administrator \
                 deletes it, then installs again.",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Before anything secret is written: no ordinary user can read inside, or replace the folder.
    protect(parent, SYSTEM_AND_ADMINS)?;
    protect(dir, SYSTEM_AND_ADMINS)
}

/// The relay's CA as the service trusts it: a copy inside the protected data folder, taken from
/// the MSI's `CA_FILE` when the service first runs with that setting. The path the MSI was given
/// may be writable by ordinary users; a CA put there later is never trusted by SYSTEM.
fn trusted_ca(dir: &std::path::Path, configured: &std::path::Path) -> Result<PathBuf> {
    let copy = dir.join("relay-ca.pem");
    let source = dir.join("relay-ca.source");
    let recorded = std::fs::read_to_string(&source).unwrap_or_default();
    if !copy.exists() || recorded != configured.display().to_string() {
        std::fs::copy(configured, &copy)
            .with_context(|| format!("copying the relay's CA from {}", configured.display()))?;
        std::fs::write(&source, configured.display().to_string())
            .with_context(|| format!("writing {}", source.display()))?;
        tracing::info!(from = %configured.display(), to = %copy.display(), "took the relay's CA into the data folder");
    }
    Ok(copy)
}

fn run_service() -> Result<()> {
    let dir = data_dir();
    prepare_data_dir(&dir)?;
    init_log(&dir, "streamer.log");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let handle = service_control_handler::register(SERVICE_NAME, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            tracing::info!(?control, "stopping");
            stop.cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })
    .context("registering the service control handler")?;
    let accept = ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN;
    handle.set_service_status(status(ServiceState::Running, accept, 0))?;
    tracing::info!(version = %crate::product_version().map(|v| v.to_string()).unwrap_or_default(), "service started");

    let result = serve(&dir, shutdown);
    let exit = match &result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the streamer stopped");
            1
        }
    };
    tracing::info!(exit, "service stopped");
    handle.set_service_status(status(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        exit,
    ))?;
    result
}

fn serve(dir: &std::path::Path, shutdown: CancellationToken) -> Result<()> {
    let relay = setting("Relay").context("no relay is set (the MSI's RELAY property)")?;
    let ca_file = setting("CaFile")
        .map(PathBuf::from)
        .context("no CA file is set (the MSI's CA_FILE property)")?;
    let ca_file = trusted_ca(dir, &ca_file)?;
    let credential_file = dir.join("device.credential");
    let config = AgentConfig {
        relay,
        ca_file,
        mode: Mode::Unattended {
            credential_file: credential_file.clone(),
            deployment_code: setting("DeploymentCode"),
        },
        device_name: std::env::var("COMPUTERNAME").unwrap_or_else(|_| "Windows PC".into()),
        display: None,
        frame_rate: 30,
        announced_version: None,
        downloads: None,
        chat_input: None,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let result = runtime.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                match n {
                    Notice::Connected => {
                        tracing::info!("connected to the relay");
                        if let Err(e) = protect(&credential_file, SYSTEM_ONLY) {
                            tracing::warn!(error = %format!("{e:#}"), "credential file");
                        }
                        if credential_file.exists() && setting("DeploymentCode").is_some() {
                            forget_setting("DeploymentCode");
                        }
                    }
                    Notice::Reconnecting(secs, why) => {
                        tracing::warn!(retry_in_secs = secs, reason = %why, "not connected to the relay")
                    }
                    Notice::SessionStarted { technician, recorded } => {
                        tracing::info!(%technician, recorded, "session started")
                    }
                    Notice::SessionEnded(why) => tracing::info!(reason = %why, "session ended"),
                    // Attended only; and a service's sessions chat in their helper, which logs it.
                    Notice::SessionCode(..) | Notice::Chat(..) | Notice::ChatOpen(_) => {}
                }
            }
        });
        // Capture and input run in a helper in the console user's session: session 0 has no
        // interactive desktop.
        agent::run_hosted(config, &crate::helper::windows::HelperHost, tx, shutdown).await
    });
    // A blocking task still running (a name lookup, say) must not keep the service from reporting
    // itself stopped: the service manager waits for that.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}
