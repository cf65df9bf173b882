//! The attended window on Windows: a small native Win32 window (no WebView).
//!
//! It runs on a thread of its own with its own message loop, and learns what happens from the
//! agent's notices, which it reads on a 100 ms timer. It never takes the keyboard focus from the
//! end user's programs by itself (shown without activation; without a chat line also
//! `WS_EX_NOACTIVATE`): what the technician types goes where it went before. With a chat line the
//! end user gives it the keyboard by clicking there.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use windows::core::{w, HSTRING, PCWSTR};
use windows::Win32::Foundation::{HWND, LPARAM, LRESULT, WPARAM};
use windows::Win32::Graphics::Gdi::{CreateFontW, COLOR_WINDOW, FW_BOLD, FW_NORMAL, HBRUSH, HFONT};
use windows::Win32::System::LibraryLoader::GetModuleHandleW;
use windows::Win32::UI::Input::KeyboardAndMouse::EnableWindow;
use windows::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DestroyWindow, DispatchMessageW, GetMessageW,
    GetSystemMetrics, GetWindowTextLengthW, GetWindowTextW, LoadCursorW, PostQuitMessage,
    RegisterClassW, SendMessageW, SetTimer, SetWindowTextW, ShowWindow, TranslateMessage,
    BS_PUSHBUTTON, HMENU, IDC_ARROW, MSG, SM_CXSCREEN, SM_CYSCREEN, SW_SHOWNOACTIVATE,
    WINDOW_EX_STYLE, WINDOW_STYLE, WM_CLOSE, WM_COMMAND, WM_DESTROY, WM_SETFONT, WM_TIMER,
    WNDCLASSW, WS_CAPTION, WS_CHILD, WS_EX_NOACTIVATE, WS_EX_TOPMOST, WS_OVERLAPPED, WS_SYSMENU,
    WS_VISIBLE,
};

use super::{
    lines_for, Typed, CHAT, CHAT_INPUT, CHAT_SEND, CODE, CODE_PX, END_BUTTON, HEIGHT, MARGIN,
    RECORDED, STATUS, TEXT_PX, WHO, WIDTH,
};
use crate::agent::Notice;

const END_ID: usize = 1;
const SEND_ID: usize = 2;
/// `ES_AUTOHSCROLL`: the line scrolls as the end user writes past its width.
const ES_AUTOHSCROLL: u32 = 0x80;
/// `WS_BORDER`: the line's frame.
const WS_BORDER: u32 = 0x0080_0000;
/// `WS_TABSTOP`.
const WS_TABSTOP: u32 = 0x0001_0000;
const TIMER_ID: usize = 1;

struct Ui {
    window: HWND,
    status: HWND,
    code: HWND,
    who: HWND,
    recorded: HWND,
    chat: HWND,
    input: HWND,
    send: HWND,
    typed: Option<Typed>,
    button: HWND,
    notices: Receiver<Notice>,
    end: CancellationToken,
    done: Arc<AtomicBool>,
}

thread_local! {
    // The window procedure is a plain function called by Windows on this thread: its state lives
    // here, for this thread's one window.
    static UI: RefCell<Option<Ui>> = const { RefCell::new(None) };
}

fn set_text(control: HWND, text: &str) {
    // SAFETY: `control` is a live child window of this thread; the string outlives the call.
    let _ = unsafe { SetWindowTextW(control, &HSTRING::from(text)) };
}

fn font(height: i32, weight: u32) -> HFONT {
    // SAFETY: creating a GDI font; it lives as long as the process (one window per run).
    unsafe {
        CreateFontW(
            height,
            0,
            0,
            0,
            weight as i32,
            0,
            0,
            0,
            Default::default(),
            Default::default(),
            Default::default(),
            Default::default(),
            0,
            w!("Tahoma"),
        )
    }
}

unsafe extern "system" fn procedure(window: HWND, message: u32, w: WPARAM, l: LPARAM) -> LRESULT {
    match message {
        WM_TIMER => {
            UI.with(|ui| {
                if let Some(ui) = ui.borrow().as_ref() {
                    while let Ok(notice) = ui.notices.try_recv() {
                        let lines = lines_for(&notice);
                        for (control, text) in [
                            (ui.status, lines.status),
                            (ui.code, lines.code),
                            (ui.who, lines.who),
                            (ui.recorded, lines.recorded),
                            (ui.chat, lines.chat),
                        ] {
                            if let Some(text) = text {
                                set_text(control, &text);
                            }
                        }
                        if let Some(open) = lines.chat_open {
                            // SAFETY: this thread's own controls.
                            unsafe {
                                let _ = EnableWindow(ui.input, open);
                                let _ = EnableWindow(ui.send, open);
                            }
                        }
                    }
                    if ui.done.load(Ordering::Acquire) {
                        // SAFETY: this thread's own window.
                        let _ = unsafe { DestroyWindow(ui.window) };
                    }
                }
            });
            LRESULT(0)
        }
        WM_COMMAND if w.0 & 0xffff == END_ID => {
            end_session();
            LRESULT(0)
        }
        WM_COMMAND if w.0 & 0xffff == SEND_ID => {
            send_line();
            LRESULT(0)
        }
        WM_CLOSE => {
            // The window goes when the agent has ended the session (the timer sees `done`).
            end_session();
            LRESULT(0)
        }
        WM_DESTROY => {
            // SAFETY: ends this thread's message loop.
            unsafe { PostQuitMessage(0) };
            LRESULT(0)
        }
        // SAFETY: the default handling of every other message, with its own arguments.
        _ => unsafe { DefWindowProcW(window, message, w, l) },
    }
}

/// Sends what the end user wrote in the chat line to the agent, and empties the line (a full
/// queue keeps it there to send again).
fn send_line() {
    UI.with(|ui| {
        if let Some(ui) = ui.borrow().as_ref() {
            let Some(typed) = &ui.typed else { return };
            // SAFETY: reads this thread's own edit control into a buffer of its length plus the NUL.
            let line = unsafe {
                let len = usize::try_from(GetWindowTextLengthW(ui.input)).unwrap_or(0);
                let mut buf = vec![0u16; len + 1];
                let n = usize::try_from(GetWindowTextW(ui.input, &mut buf)).unwrap_or(0);
                String::from_utf16_lossy(&buf[..n.min(len)])
            };
            let line = line.trim().to_owned();
            if !line.is_empty() && typed.try_send(line).is_ok() {
                set_text(ui.input, "");
            }
        }
    });
}

fn end_session() {
    UI.with(|ui| {
        if let Some(ui) = ui.borrow().as_ref() {
            ui.end.cancel();
            set_text(ui.status, "Ending the session…");
            // SAFETY: this thread's own button.
            let _ = unsafe { EnableWindow(ui.button, false) };
        }
    });
}

/// Shows the window and runs its message loop until `done` is set (the agent has stopped). The End
/// session button and closing the window cancel `end`.
pub fn run(
    notices: Receiver<Notice>,
    end: CancellationToken,
    done: Arc<AtomicBool>,
    typed: Option<Typed>,
) -> Result<()> {
    // SAFETY: Win32 window creation on this thread; every handle stays on it.
    unsafe {
        let instance = GetModuleHandleW(None).context("GetModuleHandleW")?;
        let class = w!("RecordedSupportStreamerWindow");
        let wc = WNDCLASSW {
            lpfnWndProc: Some(procedure),
            hInstance: instance.into(),
            lpszClassName: class,
            hCursor: LoadCursorW(None, IDC_ARROW).unwrap_or_default(),
            hbrBackground: HBRUSH((COLOR_WINDOW.0 + 1) as isize as *mut core::ffi::c_void),
            ..Default::default()
        };
        if RegisterClassW(&wc) == 0 {
            return Err(windows::core::Error::from_thread()).context("RegisterClassW");
        }
        let (sw, sh) = (GetSystemMetrics(SM_CXSCREEN), GetSystemMetrics(SM_CYSCREEN));
        let ex_style = if typed.is_some() {
            WS_EX_TOPMOST
        } else {
            WS_EX_TOPMOST | WS_EX_NOACTIVATE
        };
        let window = CreateWindowExW(
            ex_style,
            class,
            &HSTRING::from(crate::PRODUCT_NAME),
            WS_OVERLAPPED | WS_CAPTION | WS_SYSMENU,
            sw - WIDTH - MARGIN,
            sh - HEIGHT - MARGIN,
            WIDTH,
            HEIGHT,
            None,
            None,
            Some(instance.into()),
            None,
        )
        .context("CreateWindowExW")?;
        let child = |class: PCWSTR,
                     text: PCWSTR,
                     style: u32,
                     (x, y, w, h): (i32, i32, i32, i32),
                     id: usize,
                     font: HFONT| {
            let hwnd = CreateWindowExW(
                WINDOW_EX_STYLE(0),
                class,
                text,
                WS_CHILD | WS_VISIBLE | WINDOW_STYLE(style),
                x,
                y,
                w,
                h,
                Some(window),
                Some(HMENU(id as *mut core::ffi::c_void)),
                Some(instance.into()),
                None,
            )
            .context("CreateWindowExW (control)")?;
            SendMessageW(
                hwnd,
                WM_SETFONT,
                Some(WPARAM(font.0 as usize)),
                Some(LPARAM(1)),
            );
            Ok::<_, anyhow::Error>(hwnd)
        };
        let (normal, large) = (font(-TEXT_PX, FW_NORMAL.0), font(-CODE_PX, FW_BOLD.0));
        let status = child(
            w!("STATIC"),
            w!("Connecting to the relay…"),
            0,
            STATUS,
            0,
            normal,
        )?;
        let code = child(w!("STATIC"), w!(""), 0, CODE, 0, large)?;
        let who = child(w!("STATIC"), w!(""), 0, WHO, 0, normal)?;
        let recorded = child(w!("STATIC"), w!(""), 0, RECORDED, 0, normal)?;
        // SS_NOPREFIX (0x80): an `&` in the technician's words is shown, not taken for a mnemonic.
        let chat = child(w!("STATIC"), w!(""), 0x80, CHAT, 0, normal)?;
        let input = child(
            w!("EDIT"),
            w!(""),
            WS_BORDER | WS_TABSTOP | ES_AUTOHSCROLL,
            CHAT_INPUT,
            0,
            normal,
        )?;
        let send = child(
            w!("BUTTON"),
            w!("Send"),
            BS_PUSHBUTTON as u32,
            CHAT_SEND,
            SEND_ID,
            normal,
        )?;
        let _ = EnableWindow(input, false);
        let _ = EnableWindow(send, false);
        if typed.is_none() {
            let _ = ShowWindow(input, windows::Win32::UI::WindowsAndMessaging::SW_HIDE);
            let _ = ShowWindow(send, windows::Win32::UI::WindowsAndMessaging::SW_HIDE);
        }
        let button = child(
            w!("BUTTON"),
            w!("End session"),
            BS_PUSHBUTTON as u32,
            END_BUTTON,
            END_ID,
            normal,
        )?;
        UI.with(|ui| {
            *ui.borrow_mut() = Some(Ui {
                window,
                status,
                code,
                who,
                recorded,
                chat,
                input,
                send,
                typed,
                button,
                notices,
                end,
                done,
            })
        });
        let _ = ShowWindow(window, SW_SHOWNOACTIVATE);
        SetTimer(Some(window), TIMER_ID, 100, None);
        let mut msg = MSG::default();
        while GetMessageW(&mut msg, None, 0, 0).0 > 0 {
            let _ = TranslateMessage(&msg);
            DispatchMessageW(&msg);
        }
    }
    UI.with(|ui| ui.borrow_mut().take());
    Ok(())
}
