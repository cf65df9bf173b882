//! The unattended streamer as a Windows service (LocalSystem), as the MSI installs it.
//!
//! - Settings come from `HKLM\SOFTWARE\RecordedSupport\Streamer` (`Relay`, `CaFile`,
//!   `DeploymentCode`), written by the MSI from its properties. The deployment code is deleted from
//!   the registry once the device is registered: the credential replaces it.
//! - The device credential lives in `%ProgramData%\RecordedSupport\Streamer\device.credential`,
//!   readable by SYSTEM only; the log in `streamer.log` beside it.
//! - The MSI prepares that folder before the service starts ([`prepare_data`], as SYSTEM): owned
//!   by the Administrators, SYSTEM and Administrators alone in its DACL, a folder someone made
//!   there before installation taken over and emptied (a link refused), and the relay's CA copied
//!   in from `CA_FILE`. The service trusts that copy only: the path the MSI was given may be one an
//!   ordinary user can write.
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
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows::Win32::Security::{
    SetFileSecurityW, DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
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
/// The same, owned by the Administrators: a folder taken over from whoever made it.
const OWNED_BY_ADMINS: &str = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/// The relay's CA as the service trusts it: the copy the MSI took into the data folder.
pub const TRUSTED_CA: &str = "relay-ca.pem";

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

/// Sets the owner and DACL of `path` from `sddl` (taking ownership needs SYSTEM's or an
/// administrator's privilege, which the MSI's deferred action has).
fn take_over(path: &std::path::Path, sddl: &str) -> Result<()> {
    enable_privilege("SeTakeOwnershipPrivilege");
    enable_privilege("SeRestorePrivilege");
    let sd = SecurityDescriptor::from_sddl(sddl)?;
    let file = HSTRING::from(path.as_os_str());
    // SAFETY: the path is NUL-terminated and the descriptor lives across the call.
    let ok = unsafe {
        SetFileSecurityW(
            PCWSTR(file.as_ptr()),
            OWNER_SECURITY_INFORMATION
                | DACL_SECURITY_INFORMATION
                | PROTECTED_DACL_SECURITY_INFORMATION,
            sd.as_raw(),
        )
    };
    if !ok.as_bool() {
        return Err(windows::core::Error::from_thread())
            .with_context(|| format!("taking over {}", path.display()));
    }
    Ok(())
}

/// Enables a privilege this process's token holds (best effort: without it, what needs it fails
/// with its own error).
fn enable_privilege(name: &str) {
    use windows::Win32::Foundation::{CloseHandle, HANDLE, LUID};
    use windows::Win32::Security::{
        AdjustTokenPrivileges, LookupPrivilegeValueW, LUID_AND_ATTRIBUTES, SE_PRIVILEGE_ENABLED,
        TOKEN_ADJUST_PRIVILEGES, TOKEN_PRIVILEGES, TOKEN_QUERY,
    };
    use windows::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
    let mut token = HANDLE::default();
    // SAFETY: the pseudo-handle of this process needs no closing; the token is closed below.
    if unsafe {
        OpenProcessToken(
            GetCurrentProcess(),
            TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY,
            &mut token,
        )
    }
    .is_err()
    {
        return;
    }
    let name = HSTRING::from(name);
    let mut luid = LUID::default();
    // SAFETY: the name is NUL-terminated; `luid` is written by the call.
    if unsafe { LookupPrivilegeValueW(PCWSTR::null(), PCWSTR(name.as_ptr()), &mut luid) }.is_ok() {
        let privileges = TOKEN_PRIVILEGES {
            PrivilegeCount: 1,
            Privileges: [LUID_AND_ATTRIBUTES {
                Luid: luid,
                Attributes: SE_PRIVILEGE_ENABLED,
            }],
        };
        // SAFETY: the token was opened for adjusting; the new state lives across the call.
        let _ = unsafe { AdjustTokenPrivileges(token, false, Some(&privileges), 0, None, None) };
    }
    // SAFETY: the handle came from OpenProcessToken.
    let _ = unsafe { CloseHandle(token) };
}

/// Whether `path` is owned by SYSTEM, the Administrators, or the account this process runs as (the
/// MSI's action and the service run as SYSTEM; under Wine, as Wine's one user).
fn owned_by_the_machine(path: &std::path::Path) -> Result<bool> {
    use windows::Win32::Foundation::{CloseHandle, HANDLE};
    use windows::Win32::Security::Authorization::{GetNamedSecurityInfoW, SE_FILE_OBJECT};
    use windows::Win32::Security::{
        EqualSid, GetTokenInformation, IsWellKnownSid, TokenUser, WinBuiltinAdministratorsSid,
        WinLocalSystemSid, PSID, TOKEN_QUERY, TOKEN_USER,
    };
    use windows::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
    let name = HSTRING::from(path.as_os_str());
    let mut owner = PSID::default();
    let mut sd = PSECURITY_DESCRIPTOR::default();
    // SAFETY: the path is NUL-terminated; the owner points into `sd`, which the call allocates
    // and which is freed below, after the owner was last read.
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
    let mut ours = unsafe {
        IsWellKnownSid(owner, WinLocalSystemSid).as_bool()
            || IsWellKnownSid(owner, WinBuiltinAdministratorsSid).as_bool()
    };
    if !ours {
        let mut token = HANDLE::default();
        // SAFETY: the pseudo-handle needs no closing; the token is closed below.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) }.is_ok() {
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
            if got.is_ok() {
                // SAFETY: the call filled `buf` with a TOKEN_USER whose SID lies inside `buf`;
                // both SIDs are valid here.
                ours = unsafe {
                    let user = &*buf.as_ptr().cast::<TOKEN_USER>();
                    EqualSid(owner, user.User.Sid).is_ok()
                };
            }
            // SAFETY: the handle came from OpenProcessToken.
            let _ = unsafe { CloseHandle(token) };
        }
    }
    // SAFETY: `sd` was allocated by GetNamedSecurityInfoW with LocalAlloc.
    let _ = unsafe { LocalFree(Some(HLOCAL(sd.0))) };
    Ok(ours)
}

/// Makes `%ProgramData%\RecordedSupport` and its `Streamer` folder the machine's: made if missing;
/// refused if a link (a junction would redirect what the service writes); taken over and emptied
/// if someone else owns it (a local user who made it before installation could otherwise change
/// its DACL back and read or swap what the service writes: nothing in it is the service's); then
/// SYSTEM and the Administrators alone, inherited inside.
fn prepare_data_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::windows::fs::MetadataExt as _;
    const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;
    let vendor = dir.parent().context("the data folder has a parent")?;
    for path in [vendor, dir] {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(path)
                    .with_context(|| format!("creating {}", path.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            Ok(meta)
                if meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 || !meta.is_dir() =>
            {
                anyhow::bail!(
                    "{} is a link or not a folder: someone made it before this installation. An \
                     administrator removes it, then installs again.",
                    path.display()
                );
            }
            Ok(_) if !owned_by_the_machine(path)? => {
                take_over(path, OWNED_BY_ADMINS)?;
                if path == dir {
                    for entry in std::fs::read_dir(path)? {
                        let entry = entry?;
                        let kind = entry.file_type()?;
                        // A link is removed as a link, never followed.
                        if kind.is_dir() && !kind.is_symlink() {
                            std::fs::remove_dir_all(entry.path())?;
                        } else if kind.is_dir() {
                            std::fs::remove_dir(entry.path())?;
                        } else {
                            std::fs::remove_file(entry.path())?;
                        }
                    }
                }
                eprintln!(
                    "streamer: {} was made by someone else before this installation: taken over and emptied",
                    path.display()
                );
            }
            Ok(_) => {}
        }
        protect(path, SYSTEM_AND_ADMINS)?;
    }
    Ok(())
}

/// The MSI's install step (a deferred action, as SYSTEM, after the files are in place and before
/// the service starts): prepares the data folder ([`prepare_data_dir`]) and copies the relay's CA
/// from `ca_file` (the MSI's `CA_FILE`) into it as [`TRUSTED_CA`], the only CA the service trusts.
pub fn prepare_data(ca_file: &std::path::Path) -> Result<()> {
    let dir = data_dir();
    prepare_data_dir(&dir)?;
    let copy = dir.join(TRUSTED_CA);
    std::fs::copy(ca_file, &copy).with_context(|| {
        format!(
            "copying the relay's CA from {} (the MSI's CA_FILE)",
            ca_file.display()
        )
    })?;
    protect(&copy, SYSTEM_AND_ADMINS)
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

fn run_service() -> Result<()> {
    let dir = data_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Before anything secret is written: no ordinary user can read inside.
    protect(&dir, SYSTEM_AND_ADMINS)?;
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
    // The copy the MSI took in, never the path it was given (which a user may be able to write).
    setting("CaFile").context("no CA file is set (the MSI's CA_FILE property)")?;
    let ca_file = dir.join(TRUSTED_CA);
    if !ca_file.exists() {
        anyhow::bail!(
            "the relay's CA was not taken into {} at installation: install again with CA_FILE",
            dir.display()
        );
    }
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
