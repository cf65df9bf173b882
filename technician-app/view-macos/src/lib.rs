//! The technician app's native view on macOS: an `NSView` over the page's stage, inside the app's
//! window, showing the pictures the view's drawing thread makes (`technician-view`).
//!
//! - The view is a subclass of `NSView` whose `hitTest:` answers nil, so AppKit gives every click
//!   and scroll to the `WKWebView` beneath it (the page keeps the pointer and the keyboard, as on
//!   X11 and Windows), and which never takes the first responder.
//! - It is layer-backed; each picture becomes the layer's `contents`: a `CGImage` over a copy of
//!   the BGRX pixels (`kCGImageAlphaNoneSkipFirst` with 32-bit little-endian order is BGRX in
//!   memory), at the window's backing scale, so that one picture pixel is one device pixel.
//! - The page gives device pixels from the top-left of the webview, which fills the window's content
//!   view; AppKit's frames are in points, from the bottom-left unless the superview is flipped.
//!   [`MacView::place`] converts.
//! - AppKit objects belong to the main thread: every call is made there (`run_on_main`), and the
//!   `CGImage` (thread-safe) is made on the calling thread first.
//!
//! **Untested**: written against Apple's documentation and type-checked for
//! `aarch64-apple-darwin` (`cargo xtask test` runs that check); no Mac runs here. The screen cannot
//! be read back without the screen-recording permission, so the view's probe does not work on macOS.
#![cfg(target_os = "macos")]
#![allow(unsafe_code)]

use dispatch2::{run_on_main, MainThreadBound};
use objc2::rc::Retained;
use objc2::runtime::{AnyObject, NSObjectProtocol};
use objc2::{define_class, msg_send, MainThreadMarker, MainThreadOnly};
use objc2_app_kit::{NSView, NSWindowOrderingMode};
use objc2_core_foundation::{CFData, CFType};
use objc2_core_graphics::{
    CGBitmapInfo, CGColorRenderingIntent, CGColorSpace, CGDataProvider, CGImage, CGImageAlphaInfo,
    CGImageByteOrderInfo,
};
use objc2_foundation::{NSPoint, NSRect, NSSize};

define_class!(
    /// An `NSView` that the pointer passes through.
    #[unsafe(super(NSView))]
    #[thread_kind = MainThreadOnly]
    #[name = "RecordedSupportNativeView"]
    struct PassThroughView;

    unsafe impl NSObjectProtocol for PassThroughView {}

    impl PassThroughView {
        /// No point of this view takes a click: AppKit looks further down, at the webview.
        #[unsafe(method(hitTest:))]
        fn hit_test(&self, _point: NSPoint) -> *mut NSView {
            std::ptr::null_mut()
        }

        #[unsafe(method(acceptsFirstResponder))]
        fn accepts_first_responder(&self) -> bool {
            false
        }
    }
);

/// The view, made on the main thread and used from any.
#[derive(Debug)]
pub struct MacView {
    view: MainThreadBound<Retained<PassThroughView>>,
    id: u64,
}

/// The scale from device pixels to points of `view`'s window (1 without a window).
fn backing_scale(view: &NSView) -> f64 {
    view.window()
        .map_or(1.0, |w| w.backingScaleFactor())
        .max(1.0)
}

impl MacView {
    /// Makes the view, hidden, as the topmost subview of `parent` (the app window's content
    /// `NSView`, as raw-window-handle gives it). Best called on the main thread (it then runs at
    /// once); from another, it waits for the main thread, which must not be waiting for it.
    pub fn open(parent: u64) -> Result<Self, String> {
        if parent == 0 {
            return Err("no parent view".into());
        }
        run_on_main(move |mtm: MainThreadMarker| {
            // SAFETY: raw-window-handle's `ns_view` is a live NSView of the app's window, which
            // outlives the view (the app closes the view before its window).
            let parent: &NSView = unsafe { &*(parent as usize as *const NSView) };
            let frame = NSRect::new(NSPoint::new(0.0, 0.0), NSSize::new(1.0, 1.0));
            let view: Retained<PassThroughView> =
                unsafe { msg_send![PassThroughView::alloc(mtm), initWithFrame: frame] };
            view.setWantsLayer(true);
            view.setHidden(true);
            parent.addSubview_positioned_relativeTo(&view, NSWindowOrderingMode::Above, None);
            let id = Retained::as_ptr(&view) as usize as u64;
            Ok(Self {
                view: MainThreadBound::new(view, mtm),
                id,
            })
        })
    }

    /// The view's address, for the view's counters.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Shows the view over `(x, y, width, height)` in device pixels from the top-left of its
    /// parent, or hides it (`None`).
    pub fn place(&self, rect: Option<(i32, i32, u32, u32)>) {
        self.view.get_on_main(|view| {
            let Some((x, y, w, h)) = rect else {
                view.setHidden(true);
                return;
            };
            let scale = backing_scale(view);
            let (x, w) = (f64::from(x) / scale, f64::from(w) / scale);
            let (mut y, h) = (f64::from(y) / scale, f64::from(h) / scale);
            // SAFETY: a view added to a superview in `open`, on the main thread.
            if let Some(parent) = unsafe { view.superview() } {
                if !parent.isFlipped() {
                    y = parent.bounds().size.height - y - h;
                }
            }
            view.setFrame(NSRect::new(NSPoint::new(x, y), NSSize::new(w, h)));
            view.setHidden(false);
        });
    }

    /// Shows `bgrx` (`width` x `height`, 4 bytes a pixel, rows packed) as the view's picture.
    pub fn present(&self, bgrx: &[u8], width: u32, height: u32) -> Result<(), String> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || bgrx.len() < w * h * 4 {
            return Err(format!("no picture of {width}x{height}"));
        }
        let data = CFData::from_bytes(&bgrx[..w * h * 4]);
        let provider =
            CGDataProvider::with_cf_data(Some(&data)).ok_or("CGDataProviderCreateWithCFData")?;
        let space = CGColorSpace::new_device_rgb().ok_or("CGColorSpaceCreateDeviceRGB")?;
        let info =
            CGBitmapInfo(CGImageAlphaInfo::NoneSkipFirst.0 | CGImageByteOrderInfo::Order32Little.0);
        // SAFETY: the provider holds w * h * 4 bytes, as the sizes given say; no decode array.
        let image = unsafe {
            CGImage::new(
                w,
                h,
                8,
                32,
                w * 4,
                Some(&space),
                info,
                Some(&provider),
                std::ptr::null(),
                false,
                CGColorRenderingIntent::RenderingIntentDefault,
            )
        }
        .ok_or("CGImageCreate")?;
        self.view.get_on_main(move |view| {
            let Some(layer) = view.layer() else {
                return Err("the view has no layer".to_owned());
            };
            layer.setContentsScale(backing_scale(view));
            let cf: &CFType = &image;
            let object: &AnyObject = cf.as_ref();
            // SAFETY: a CGImage is what a layer's contents may be (Core Animation's documentation).
            unsafe { layer.setContents(Some(object)) };
            Ok(())
        })
    }
}

impl Drop for MacView {
    fn drop(&mut self) {
        self.view.get_on_main(|view| view.removeFromSuperview());
    }
}
