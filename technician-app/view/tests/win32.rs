//! The native view on Windows, run under Wine (`cargo xtask windows`, or `cargo test --target
//! x86_64-pc-windows-gnu -p technician-view` with `tests/wine/runner.sh` as the runner).
//!
//! A top-level window stands for the app's (the Tauri app itself cannot run under Wine: WebView2
//! does not); the view is opened as its child exactly as the app opens it, fed real H.264 from
//! openh264, and checked on the screen: the picture where the page's stage says, the point under
//! it belonging to the window beneath (input passes through), darkened on a lost connection,
//! hidden when the session ends.
#![cfg(windows)]
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use openh264::encoder::Encoder;
use openh264::formats::{RgbSliceU8, YUVBuffer};
use protocol::VideoFrame;
use technician_view::native::NativeView;
use technician_view::{Area, Scale, Stats};
use windows::core::w;
use windows::Win32::Foundation::{HWND, POINT};
use windows::Win32::Graphics::Gdi::ClientToScreen;
use windows::Win32::System::LibraryLoader::GetModuleHandleW;
use windows::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DispatchMessageW, GetAncestor, GetParent, IsWindowVisible,
    PeekMessageW, RegisterClassW, TranslateMessage, WindowFromPoint, GA_ROOT, MSG, PM_REMOVE,
    WINDOW_EX_STYLE, WNDCLASSW, WS_OVERLAPPEDWINDOW, WS_VISIBLE,
};

const W: usize = 320;
const H: usize = 240;

unsafe extern "system" fn procedure(
    window: HWND,
    message: u32,
    w: windows::Win32::Foundation::WPARAM,
    l: windows::Win32::Foundation::LPARAM,
) -> windows::Win32::Foundation::LRESULT {
    unsafe { DefWindowProcW(window, message, w, l) }
}

/// The app's window: a plain top-level window, 800x600 at the screen's corner.
fn app_window() -> HWND {
    unsafe {
        let instance = GetModuleHandleW(None).unwrap();
        let class = w!("NativeViewTestApp");
        let wc = WNDCLASSW {
            lpfnWndProc: Some(procedure),
            hInstance: instance.into(),
            lpszClassName: class,
            ..Default::default()
        };
        let _ = RegisterClassW(&wc);
        CreateWindowExW(
            WINDOW_EX_STYLE(0),
            class,
            w!("The app"),
            WS_OVERLAPPEDWINDOW | WS_VISIBLE,
            0,
            0,
            800,
            600,
            None,
            None,
            Some(instance.into()),
            None,
        )
        .unwrap()
    }
}

/// Runs the test thread's messages (the app's window is its) for `d`.
fn pump(d: Duration) {
    let end = Instant::now() + d;
    loop {
        let mut msg = MSG::default();
        unsafe {
            while PeekMessageW(&mut msg, None, 0, 0, PM_REMOVE).as_bool() {
                let _ = TranslateMessage(&msg);
                DispatchMessageW(&msg);
            }
        }
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pumps until `done(stats)` or 20 s, and returns the last stats.
fn wait_for(view: &NativeView, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = view.stats();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < end, "{what}: not within 20 s: {s:?}");
        pump(Duration::from_millis(50));
    }
}

/// Left half red, right half blue, as access units: a keyframe, then `more` P frames.
fn stream(more: usize) -> Vec<VideoFrame> {
    let mut rgb = vec![0u8; W * H * 3];
    for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
        px.copy_from_slice(if i % W < W / 2 {
            &[255, 0, 0]
        } else {
            &[0, 0, 255]
        });
    }
    let yuv = YUVBuffer::from_rgb_source(RgbSliceU8::new(&rgb, (W, H)));
    let mut enc = Encoder::new().unwrap();
    (0..=more)
        .map(|n| {
            if n == 0 {
                enc.force_intra_frame();
            }
            let payload = enc.encode(&yuv).unwrap().to_vec();
            VideoFrame {
                timestamp_us: n as u64 * 33_333,
                keyframe: n == 0,
                payload: payload.into(),
            }
        })
        .collect()
}

/// The page's stage: 400x300 at (100, 50).
fn stage() -> Option<Area> {
    Some(Area {
        x: 100.0,
        y: 50.0,
        width: 400.0,
        height: 300.0,
        scale: Scale::Fit,
        scroll_x: 0.0,
        scroll_y: 0.0,
    })
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    (0..3).map(|i| u32::from(a[i].abs_diff(b[i]))).sum::<u32>() < 60
}

#[test]
fn the_view_draws_the_stream_over_the_stage_and_lets_input_through() {
    let app = app_window();
    pump(Duration::from_millis(300));
    let view = NativeView::open(app.0 as usize as u64).expect("the native view opens");
    let (keys, _keys_rx) = tokio::sync::mpsc::channel(8);
    view.start(keys);
    view.remote_size(W as u32, H as u32);
    // The page's stage: 400x300 at (100, 50), the 320x240 screen centred in it at 1:1 (never
    // scaled up): drawn at (140, 80).
    view.set_area(stage());
    // A red pixel of the left half.
    view.watch(40, 120, [255, 0, 0]);
    for f in stream(3) {
        view.frame(f);
    }
    let s = wait_for(&view, "the red half on screen", |s| {
        s.probe.as_ref().is_some_and(|p| p.changed_at.is_some())
    });
    assert!(s.decoded >= 1 && s.frames >= 1, "{s:?}");
    assert_eq!(s.decode_errors, 0, "{s:?}");
    assert_eq!(s.draw_errors, 0, "{s:?}");
    let fit = s.fit.expect("the view's transform");
    assert_eq!(
        (fit.x, fit.y, fit.width, fit.height),
        (140, 80, 320, 240),
        "{fit:?}"
    );
    let view_hwnd = HWND(s.window as usize as *mut core::ffi::c_void);
    unsafe {
        assert_eq!(
            GetParent(view_hwnd).unwrap(),
            app,
            "a child of the app's window"
        );
        assert!(IsWindowVisible(view_hwnd).as_bool());
    }

    // The blue half is there too (another probe, drawn again when the stage moves by nothing).
    view.watch(280, 120, [0, 0, 255]);
    view.set_area(stage());
    wait_for(&view, "the blue half on screen", |s| {
        s.probe.as_ref().is_some_and(|p| p.changed_at.is_some())
    });

    // The pointer over the picture goes to the window beneath, never to the view.
    let mut centre = POINT {
        x: fit.x + 160,
        y: fit.y + 120,
    };
    unsafe {
        assert!(ClientToScreen(app, &mut centre).as_bool());
        let under = WindowFromPoint(centre);
        assert_ne!(under, view_hwnd, "the view took the pointer");
        assert_eq!(
            GetAncestor(under, GA_ROOT),
            app,
            "the point is not the app's"
        );
    }

    // A lost connection darkens the picture (40 %) and keeps it.
    view.watch(40, 120, [102, 0, 0]);
    view.dim(true);
    let s = wait_for(&view, "the darkened picture", |s| {
        s.probe.as_ref().is_some_and(|p| p.changed_at.is_some())
    });
    let seen = s.probe.unwrap().seen.unwrap();
    assert!(near(seen, [102, 0, 0]), "darkened red: {seen:?}");

    // The session ends: the view hides.
    view.stop();
    let end = Instant::now() + Duration::from_secs(10);
    while unsafe { IsWindowVisible(view_hwnd).as_bool() } {
        assert!(
            Instant::now() < end,
            "the view is still shown after the session ended"
        );
        pump(Duration::from_millis(50));
    }
}

#[test]
fn a_view_cannot_open_on_what_is_not_a_window() {
    let err = NativeView::open(0x1234_5678).expect_err("no window there");
    assert!(format!("{err:#}").contains("not a window"), "{err:#}");
}
