//! Ctrl+Alt+Del on Windows: the secure attention sequence, which only Windows itself produces (no
//! key a program injects with `SendInput` opens the secure screen). The service, running as
//! LocalSystem, asks for it with `SendSAS(FALSE)` from `sas.dll`, as Microsoft documents for
//! services.
//!
//! Windows carries the request out only where the machine's policy `SoftwareSASGeneration`
//! (`HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System`) lets services do it: 1
//! (services) or 3 (services and ease-of-access programs). Where the policy is not set (Windows'
//! default, which lets no program), it is set to 1 for the call and removed again; where an
//! administrator or a group policy set another value, that choice stands and the request is
//! refused here with the value named.
//!
//! Run here under Wine only, whose `SendSAS` is a stub that aborts the calling process: there the
//! policy is set and removed as on Windows, but the call is not made (the keys go to the desktop,
//! as where the policy forbids it). That the secure screen opens is untested (ARCHITECTURE.md,
//! installers/README.md).
#![allow(unsafe_code)]

use anyhow::{bail, Result};
use windows::core::{s, w, BOOL};
use windows::Win32::Foundation::{FreeLibrary, ERROR_FILE_NOT_FOUND, ERROR_SUCCESS};
use windows::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress, LoadLibraryW};
use windows::Win32::System::Registry::{
    RegDeleteKeyValueW, RegGetValueW, RegSetKeyValueW, HKEY_LOCAL_MACHINE, REG_DWORD,
    RRF_RT_REG_DWORD,
};

const POLICY_KEY: windows::core::PCWSTR =
    w!(r"SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System");
const POLICY_VALUE: windows::core::PCWSTR = w!("SoftwareSASGeneration");

/// Whether a `SoftwareSASGeneration` value lets a service send the sequence.
pub fn policy_allows_services(value: u32) -> bool {
    matches!(value, 1 | 3)
}

/// Sends the secure attention sequence to the console session, as the service.
pub fn send() -> Result<()> {
    match policy()? {
        Some(v) if policy_allows_services(v) => call_send_sas(),
        Some(v) => bail!(
            "this computer's policy SoftwareSASGeneration is {v}, which does not let services send \
             Ctrl+Alt+Del (1 or 3 would)"
        ),
        None => {
            set_policy(1)?;
            let sent = call_send_sas();
            let removed = remove_policy();
            sent.and(removed)
        }
    }
}

/// The policy's value, `None` when it is not set.
fn policy() -> Result<Option<u32>> {
    let mut value = 0u32;
    let mut size = std::mem::size_of::<u32>() as u32;
    // SAFETY: the strings are static and NUL-terminated; `value` holds `size` bytes, and
    // RegGetValueW writes at most that many.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            POLICY_KEY,
            POLICY_VALUE,
            RRF_RT_REG_DWORD,
            None,
            Some(std::ptr::addr_of_mut!(value).cast()),
            Some(&mut size),
        )
    };
    match status {
        ERROR_SUCCESS => Ok(Some(value)),
        ERROR_FILE_NOT_FOUND => Ok(None),
        other => bail!(
            "reading the SoftwareSASGeneration policy: error {}",
            other.0
        ),
    }
}

fn set_policy(value: u32) -> Result<()> {
    // SAFETY: the strings are static and NUL-terminated; the data is `value`'s 4 bytes, read
    // during the call only.
    let status = unsafe {
        RegSetKeyValueW(
            HKEY_LOCAL_MACHINE,
            POLICY_KEY,
            POLICY_VALUE,
            REG_DWORD.0,
            Some(std::ptr::addr_of!(value).cast()),
            std::mem::size_of::<u32>() as u32,
        )
    };
    if status != ERROR_SUCCESS {
        bail!(
            "setting the SoftwareSASGeneration policy for the call: error {}",
            status.0
        );
    }
    Ok(())
}

fn remove_policy() -> Result<()> {
    // SAFETY: the strings are static and NUL-terminated.
    let status = unsafe { RegDeleteKeyValueW(HKEY_LOCAL_MACHINE, POLICY_KEY, POLICY_VALUE) };
    if status != ERROR_SUCCESS {
        bail!(
            "removing the SoftwareSASGeneration policy set for the call: error {}",
            status.0
        );
    }
    Ok(())
}

/// Whether this is Wine, whose `sas.dll` exports `SendSAS` as a stub that aborts the process
/// when called (its `ntdll.dll` exports `wine_get_version`, which Windows' does not).
fn under_wine() -> bool {
    // SAFETY: ntdll.dll is loaded in every process; the name is static and NUL-terminated.
    unsafe {
        GetModuleHandleW(w!("ntdll.dll"))
            .is_ok_and(|ntdll| GetProcAddress(ntdll, s!("wine_get_version")).is_some())
    }
}

/// `SendSAS(FALSE)`, loaded from `sas.dll` when needed (it returns nothing: whether Windows acted
/// is not reported).
fn call_send_sas() -> Result<()> {
    if under_wine() {
        bail!("Wine does not implement SendSAS");
    }
    // SAFETY: a system library loaded by name; its handle is freed below.
    let module = unsafe { LoadLibraryW(w!("sas.dll")) }
        .map_err(|e| anyhow::anyhow!("sas.dll could not be loaded: {e}"))?;
    // SAFETY: `module` is loaded; the name is static and NUL-terminated.
    let sent = match unsafe { GetProcAddress(module, s!("SendSAS")) } {
        Some(address) => {
            // SAFETY: SendSAS is documented as `VOID SendSAS(BOOL AsUser)` with the system calling
            // convention; FALSE is what a service passes.
            let send_sas: unsafe extern "system" fn(BOOL) = unsafe { std::mem::transmute(address) };
            unsafe { send_sas(BOOL::from(false)) };
            Ok(())
        }
        None => Err(anyhow::anyhow!("sas.dll has no SendSAS")),
    };
    // SAFETY: loaded above and no longer used.
    let _ = unsafe { FreeLibrary(module) };
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_may_send_it_only_under_policies_1_and_3() {
        assert!(!policy_allows_services(0), "none");
        assert!(policy_allows_services(1), "services");
        assert!(!policy_allows_services(2), "ease of access programs");
        assert!(policy_allows_services(3), "both");
    }
}
