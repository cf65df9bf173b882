//! The clipboard on Windows: `CF_UNICODETEXT`, watched with `AddClipboardFormatListener` from a
//! message-only window on a thread of its own (`WM_CLIPBOARDUPDATE`), and set with
//! `EmptyClipboard` and `SetClipboardData` on moveable global memory, as the Win32 clipboard
//! documentation ("Using the Clipboard") describes.
//!
//! Written against the documentation and compiled for Windows here; not run under a test
//! (ARCHITECTURE.md, "Untested platform code").
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use windows::core::w;
use windows::Win32::Foundation::{HANDLE, HWND, LPARAM, LRESULT, WPARAM};
use windows::Win32::System::DataExchange::{
    AddClipboardFormatListener, CloseClipboard, EmptyClipboard, GetClipboardData, OpenClipboard,
    RemoveClipboardFormatListener, SetClipboardData,
};
use windows::Win32::System::LibraryLoader::GetModuleHandleW;
use windows::Win32::System::Memory::{
    GlobalAlloc, GlobalLock, GlobalSize, GlobalUnlock, GMEM_MOVEABLE,
};
use windows::Win32::System::Threading::GetCurrentThreadId;
use windows::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DestroyWindow, DispatchMessageW, GetMessageW,
    PostThreadMessageW, RegisterClassW, HWND_MESSAGE, MSG, WINDOW_EX_STYLE, WINDOW_STYLE,
    WM_CLIPBOARDUPDATE, WM_QUIT, WNDCLASSW,
};

use super::{within_limit, Changes, Clipboard, ClipboardError, Last};

/// The standard clipboard format of UTF-16 text ending in a NUL.
const CF_UNICODETEXT: u32 = 13;

fn system(e: windows::core::Error) -> ClipboardError {
    ClipboardError::System(e.to_string())
}

struct Watch {
    last: Arc<Mutex<Last>>,
    changes: Changes,
}

thread_local! {
    static WATCH: RefCell<Option<Watch>> = const { RefCell::new(None) };
}

/// The Windows clipboard, for one session.
#[derive(Debug)]
pub struct Win32Clipboard {
    /// The message-only window's handle (as a number: handles are not `Send`).
    window: isize,
    thread_id: u32,
    last: Arc<Mutex<Last>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Opens the clipboard for `window`, retrying briefly: another program may hold it a moment.
fn open(window: HWND) -> Result<(), ClipboardError> {
    let mut tries = 0;
    loop {
        // SAFETY: plain Win32 call; the window is ours and alive.
        match unsafe { OpenClipboard(Some(window)) } {
            Ok(()) => return Ok(()),
            Err(e) if tries >= 10 => return Err(system(e)),
            Err(_) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// The clipboard's text, if it holds any.
fn read(window: HWND) -> Result<Option<String>, ClipboardError> {
    open(window)?;
    // SAFETY: the clipboard is open; the handle it returns stays valid until CloseClipboard, and
    // the locked memory is read within GlobalSize bytes, up to the first NUL.
    let text = unsafe {
        let text = match GetClipboardData(CF_UNICODETEXT) {
            Ok(handle) if !handle.is_invalid() => {
                let memory = windows::Win32::Foundation::HGLOBAL(handle.0);
                let units = GlobalSize(memory) / 2;
                let p = GlobalLock(memory) as *const u16;
                if p.is_null() {
                    None
                } else {
                    let all = std::slice::from_raw_parts(p, units);
                    let end = all.iter().position(|&u| u == 0).unwrap_or(units);
                    let text = String::from_utf16_lossy(&all[..end]);
                    let _ = GlobalUnlock(memory);
                    Some(text)
                }
            }
            // No text on the clipboard (an image, say).
            _ => None,
        };
        let _ = CloseClipboard();
        text
    };
    Ok(text)
}

unsafe extern "system" fn procedure(window: HWND, message: u32, w: WPARAM, l: LPARAM) -> LRESULT {
    if message == WM_CLIPBOARDUPDATE {
        let text = match read(window) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "reading the clipboard");
                None
            }
        };
        if let Some(text) = text.and_then(within_limit) {
            WATCH.with(|watch| {
                if let Some(watch) = watch.borrow().as_ref() {
                    let new = watch.last.lock().map(|mut l| l.is_new(&text));
                    if new.unwrap_or(false) {
                        let _ = watch.changes.blocking_send(text);
                    }
                }
            });
        }
        return LRESULT(0);
    }
    // SAFETY: the default procedure for every other message.
    unsafe { DefWindowProcW(window, message, w, l) }
}

impl Win32Clipboard {
    /// Starts watching the clipboard; other programs' new text goes to `changes`.
    pub fn start(changes: Changes) -> Result<Self, ClipboardError> {
        let last = Arc::new(Mutex::new(Last::default()));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread_last = last.clone();
        let thread = std::thread::Builder::new()
            .name("clipboard".into())
            .spawn(move || {
                // SAFETY: a message-only window created, used and destroyed on this thread.
                unsafe {
                    let made = (|| -> Result<HWND, windows::core::Error> {
                        let instance = GetModuleHandleW(None)?;
                        let class = w!("RecordedSupportStreamerClipboard");
                        let wc = WNDCLASSW {
                            lpfnWndProc: Some(procedure),
                            hInstance: instance.into(),
                            lpszClassName: class,
                            ..Default::default()
                        };
                        // A second session registers the class again: that failure is harmless.
                        RegisterClassW(&wc);
                        let window = CreateWindowExW(
                            WINDOW_EX_STYLE(0),
                            class,
                            w!(""),
                            WINDOW_STYLE(0),
                            0,
                            0,
                            0,
                            0,
                            Some(HWND_MESSAGE),
                            None,
                            Some(instance.into()),
                            None,
                        )?;
                        AddClipboardFormatListener(window)?;
                        Ok(window)
                    })();
                    let window = match made {
                        Ok(w) => w,
                        Err(e) => {
                            let _ = ready_tx.send(Err(system(e)));
                            return;
                        }
                    };
                    WATCH.with(|watch| {
                        *watch.borrow_mut() = Some(Watch {
                            last: thread_last,
                            changes,
                        })
                    });
                    let _ = ready_tx.send(Ok((window.0 as isize, GetCurrentThreadId())));
                    let mut msg = MSG::default();
                    while GetMessageW(&mut msg, None, 0, 0).0 > 0 {
                        DispatchMessageW(&msg);
                    }
                    let _ = RemoveClipboardFormatListener(window);
                    let _ = DestroyWindow(window);
                    WATCH.with(|watch| watch.borrow_mut().take());
                }
            })
            .map_err(|e| ClipboardError::System(e.to_string()))?;
        let (window, thread_id) = ready
            .recv()
            .map_err(|_| ClipboardError::System("the clipboard thread ended".into()))??;
        Ok(Self {
            window,
            thread_id,
            last,
            thread: Some(thread),
        })
    }

    fn hwnd(&self) -> HWND {
        HWND(self.window as *mut core::ffi::c_void)
    }
}

impl Clipboard for Win32Clipboard {
    fn set(&mut self, text: &str) -> Result<(), ClipboardError> {
        if let Ok(mut last) = self.last.lock() {
            last.is_new(text);
        }
        let units: Vec<u16> = text.encode_utf16().chain(std::iter::once(0)).collect();
        open(self.hwnd())?;
        // SAFETY: the clipboard is open; the memory is allocated, filled within its size and
        // unlocked before the clipboard takes it over (it then belongs to the system).
        let result = unsafe {
            (|| -> Result<(), windows::core::Error> {
                EmptyClipboard()?;
                let memory = GlobalAlloc(GMEM_MOVEABLE, units.len() * 2)?;
                let p = GlobalLock(memory) as *mut u16;
                if p.is_null() {
                    return Err(windows::core::Error::from_thread());
                }
                std::ptr::copy_nonoverlapping(units.as_ptr(), p, units.len());
                let _ = GlobalUnlock(memory);
                SetClipboardData(CF_UNICODETEXT, Some(HANDLE(memory.0)))?;
                Ok(())
            })()
        };
        // SAFETY: closes what `open` opened.
        let _ = unsafe { CloseClipboard() };
        result.map_err(system)
    }
}

impl Drop for Win32Clipboard {
    fn drop(&mut self) {
        // SAFETY: asks the clipboard thread's message loop to end.
        let _ = unsafe { PostThreadMessageW(self.thread_id, WM_QUIT, WPARAM(0), LPARAM(0)) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
