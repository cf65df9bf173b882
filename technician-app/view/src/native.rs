//! The native view: the session's H.264 decoded in Rust (openh264) and drawn into a child window
//! of the app's own window, placed over the page's stage. One drawing thread, over a [`Surface`]
//! per platform: X11 (`x11`: MIT-SHM, SHAPE), Windows (`win32`: GDI, a layered window) and macOS
//! (`macos`: a layer-backed NSView; untested, see ARCHITECTURE.md).
//!
//! - The page keeps everything else (controls, recording badge, warnings, refusals): it tells the
//!   view where its stage is ([`NativeView::set_area`]) and the view covers the fitted rectangle.
//! - The child window takes no input (X11: an empty SHAPE input region; Windows: a transparent
//!   layered window, which hit-testing passes over; macOS: `hitTest:` answers nil), so the pointer
//!   and the keyboard stay with the page, which sends page coordinates that the app maps through
//!   the same [`Fit`].
//! - One thread decodes every access unit (the decoder needs them all) but draws only the latest
//!   picture: when several are waiting it decodes them all and draws once; when the queue passes
//!   [`BEHIND`] access units it skips to the next keyframe and asks for one (at most once a
//!   second), so that the view never falls further behind.
//! - A probe (for tests and the latency benchmark) reads one pixel back from the screen after a
//!   picture is drawn and notes when it shows an expected colour.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use protocol::VideoFrame;
use technician::Command;

use super::{Area, Fit, Planes, Probe, Scaler, Stats};

#[cfg(target_os = "linux")]
pub mod x11;
#[cfg(target_os = "linux")]
use x11::X11Surface as PlatformSurface;

#[cfg(windows)]
pub mod win32;
#[cfg(windows)]
use win32::Win32Surface as PlatformSurface;

#[cfg(target_os = "macos")]
pub mod macos;
#[cfg(target_os = "macos")]
use macos::MacSurface as PlatformSurface;

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
use unsupported::Unsupported as PlatformSurface;

/// What the drawing thread draws on: a child window of the app's window. Opened and used on the
/// drawing thread (a Win32 window belongs to the thread that made it), from what [`Surface::parent`]
/// prepared on the caller's thread.
pub trait Surface: Sized {
    /// How long the drawing thread may wait for a message before it looks at the window's own
    /// events (exposure; on Windows, the thread's message queue, which must not stand still).
    const IDLE: Duration;
    /// What of the window is made on the caller's thread (macOS: the view itself, since AppKit
    /// works on the main thread, which the caller is and which waits for the drawing thread while
    /// the view opens); sent to the drawing thread.
    type Parent: Send + 'static;
    /// Called on the caller's thread with the app's window `parent` (an X window id, an `HWND`,
    /// an `NSView`).
    fn parent(parent: u64) -> Result<Self::Parent>;
    /// Makes the child window, not shown yet, on the drawing thread.
    fn open(parent: Self::Parent) -> Result<Self>;
    /// The child window's id (an X window id, or an `HWND`).
    fn id(&self) -> u64;
    /// Moves the window over `fit`'s rectangle and shows it, or hides it (`None`).
    fn place(&mut self, fit: Option<Fit>) -> Result<()>;
    /// `width` x `height` 32-bit BGRX pixels, rows packed, to draw the next picture into.
    fn canvas(&mut self, width: u32, height: u32) -> &mut [u8];
    /// Shows the canvas at the window's corner; returns once the system has it on screen (X11: a
    /// round trip to the server; Windows: GDI done with it).
    fn present(&mut self, width: u32, height: u32) -> Result<()>;
    /// One pixel of the window, as the screen shows it, RGB.
    fn read(&self, x: u32, y: u32) -> Result<[u8; 3]>;
    /// Handles the window's pending events; true when it must be drawn again.
    fn exposed(&mut self) -> bool;
    /// Whether pictures reach the display server through shared memory.
    fn shared_memory(&self) -> bool;
}

/// `pixels` sized for a `width` x `height` BGRX picture: the canvas of a surface that keeps its
/// picture in memory of its own.
fn sized(pixels: &mut Vec<u8>, width: u32, height: u32) -> &mut [u8] {
    pixels.resize(width as usize * height as usize * 4, 0);
    pixels
}

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
mod unsupported {
    use super::{Fit, Result, Surface};
    use std::time::Duration;

    /// No native view on this platform; the page draws.
    #[derive(Debug)]
    pub struct Unsupported;

    impl Surface for Unsupported {
        const IDLE: Duration = Duration::from_millis(100);
        type Parent = ();
        fn parent(_: u64) -> Result<()> {
            anyhow::bail!("no native view on this platform")
        }
        fn open((): ()) -> Result<Self> {
            anyhow::bail!("no native view on this platform")
        }
        fn id(&self) -> u64 {
            0
        }
        fn place(&mut self, _: Option<Fit>) -> Result<()> {
            Ok(())
        }
        fn canvas(&mut self, _: u32, _: u32) -> &mut [u8] {
            &mut []
        }
        fn present(&mut self, _: u32, _: u32) -> Result<()> {
            Ok(())
        }
        fn read(&self, _: u32, _: u32) -> Result<[u8; 3]> {
            anyhow::bail!("no native view")
        }
        fn exposed(&mut self) -> bool {
            false
        }
        fn shared_memory(&self) -> bool {
            false
        }
    }
}

/// How long opening the view may take before the app gives it up (and the page draws).
const OPEN_WITHIN: Duration = Duration::from_secs(10);

/// Access units waiting past which the view skips to the next keyframe.
pub const BEHIND: usize = 8;

#[derive(Debug)]
enum Msg {
    /// A new session: a fresh decoder, keyframe requests to `commands`.
    Start(tokio::sync::mpsc::Sender<Command>),
    Frame(VideoFrame),
    /// The remote screen's size or the stage moved (the new values are in [`Geometry`]).
    Geometry,
    /// Draw the picture darkened (`true`: the connection was lost, what is shown is out of date)
    /// or as it is.
    Dim(bool),
    /// The session is over: hide.
    Stop,
}

/// The native view: cheap to clone, each clone talks to the one drawing thread.
#[derive(Debug, Clone)]
pub struct NativeView {
    tx: mpsc::Sender<Msg>,
    stats: Arc<Mutex<Stats>>,
    geometry: Arc<Mutex<Geometry>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Geometry {
    area: Option<Area>,
    remote: Option<(u32, u32)>,
}

impl Geometry {
    fn fit(&self) -> Option<Fit> {
        let (w, h) = self.remote?;
        Fit::new(self.area?, w, h)
    }
}

impl NativeView {
    /// Opens the view as a child of the app's window `parent`: an X window on the display the app
    /// uses (`DISPLAY`), or an `HWND` on Windows. Fails where there is no native view.
    pub fn open(parent: u64) -> Result<Self> {
        let stats = Arc::new(Mutex::new(Stats::default()));
        let geometry = Arc::new(Mutex::new(Geometry::default()));
        let (tx, rx) = mpsc::channel();
        let (s, g) = (Arc::clone(&stats), Arc::clone(&geometry));
        let (opened_tx, opened) = mpsc::sync_channel(1);
        let parent = PlatformSurface::parent(parent)?;
        std::thread::Builder::new()
            .name("native-view".into())
            .spawn(move || match PlatformSurface::open(parent) {
                Ok(surface) => {
                    lock(&s).window = surface.id();
                    let _ = opened_tx.send(Ok(()));
                    Drawer::new(surface, s, g).run(&rx);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .context("the view's thread")?;
        // Bounded: on Windows the window is a child of a window of the caller's thread, and a
        // message Windows sent between the two while the caller waits here would wait for ever.
        // Past the bound the view is given up; its thread ends with the channel, closing the window.
        match opened.recv_timeout(OPEN_WITHIN) {
            Ok(result) => result?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("the view's window did not open within {OPEN_WITHIN:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the view's thread ended while opening")
            }
        }
        Ok(Self {
            tx,
            stats,
            geometry,
        })
    }

    /// A new session: its counters start from zero (the window and shared memory stay).
    pub fn start(&self, commands: tokio::sync::mpsc::Sender<Command>) {
        {
            let mut s = lock(&self.stats);
            *s = Stats {
                window: s.window,
                shared_memory: s.shared_memory,
                ..Stats::default()
            };
        }
        let _ = self.tx.send(Msg::Start(commands));
    }

    pub fn frame(&self, frame: VideoFrame) {
        let _ = self.tx.send(Msg::Frame(frame));
    }

    pub fn remote_size(&self, width: u32, height: u32) {
        lock(&self.geometry).remote = Some((width, height));
        let _ = self.tx.send(Msg::Geometry);
    }

    /// Where the page's stage is now (`None`: not shown).
    pub fn set_area(&self, area: Option<Area>) {
        lock(&self.geometry).area = area;
        let _ = self.tx.send(Msg::Geometry);
    }

    pub fn stop(&self) {
        lock(&self.geometry).remote = None;
        let _ = self.tx.send(Msg::Stop);
    }

    /// Keeps the last picture on the view, darkened (the connection was lost), until the next
    /// session starts or `dim(false)`.
    pub fn dim(&self, dimmed: bool) {
        let _ = self.tx.send(Msg::Dim(dimmed));
    }

    /// The transform input goes through: the one the view draws with.
    pub fn fit(&self) -> Option<Fit> {
        lock(&self.geometry).fit()
    }

    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    /// Watches remote pixel (`x`, `y`) for the colour `rgb`.
    pub fn watch(&self, x: u32, y: u32, rgb: [u8; 3]) {
        lock(&self.stats).probe = Some(Probe {
            x,
            y,
            rgb,
            seen: None,
            changed_at: None,
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The drawing thread's state.
struct Drawer<S> {
    surface: S,
    stats: Arc<Mutex<Stats>>,
    geometry: Arc<Mutex<Geometry>>,
    decoder: Option<Decoder>,
    commands: Option<tokio::sync::mpsc::Sender<Command>>,
    need_key: bool,
    last_key_request: Option<Instant>,
    /// The latest decoded picture, I420 packed (Y, then U, then V), and its size.
    picture: Vec<u8>,
    picture_size: (usize, usize),
    scaler: Scaler,
    /// Whether pictures are drawn darkened (a lost connection).
    dimmed: bool,
}

/// Darkens 32-bit pixels to 40 % brightness: the picture a lost connection left, still readable.
fn darken(pixels: &mut [u8]) {
    for b in pixels.iter_mut() {
        *b = ((u16::from(*b) * 2) / 5) as u8;
    }
}

impl<S: Surface> Drawer<S> {
    fn new(surface: S, stats: Arc<Mutex<Stats>>, geometry: Arc<Mutex<Geometry>>) -> Self {
        Self {
            surface,
            stats,
            geometry,
            decoder: None,
            commands: None,
            need_key: true,
            last_key_request: None,
            picture: Vec::new(),
            picture_size: (0, 0),
            scaler: Scaler::default(),
            dimmed: false,
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        let mut queue: VecDeque<VideoFrame> = VecDeque::new();
        loop {
            let first = match rx.recv_timeout(S::IDLE) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut redraw = self.surface.exposed();
            for msg in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match msg {
                    Msg::Start(commands) => {
                        queue.clear();
                        self.decoder = Decoder::new().ok();
                        self.commands = Some(commands);
                        self.need_key = true;
                        self.picture_size = (0, 0);
                        self.dimmed = false;
                    }
                    Msg::Frame(f) => queue.push_back(f),
                    Msg::Geometry => redraw = true,
                    Msg::Dim(dimmed) => {
                        redraw |= self.dimmed != dimmed;
                        self.dimmed = dimmed;
                    }
                    Msg::Stop => {
                        queue.clear();
                        self.decoder = None;
                        self.commands = None;
                        self.picture_size = (0, 0);
                        redraw = true;
                    }
                }
            }
            self.catch_up(&mut queue);
            let mut fresh = false;
            while let Some(f) = queue.pop_front() {
                fresh |= self.decode(&f);
            }
            let fit = lock(&self.geometry).fit();
            let shown = if self.picture_size == (0, 0) {
                None
            } else {
                fit
            };
            if let Err(e) = self.surface.place(shown) {
                eprintln!("technician-app: the view cannot be placed: {e}");
            }
            if let Some(fit) = shown {
                if fresh || redraw {
                    self.draw(fit);
                } else {
                    // Where the system shows a picture after it was handed over (Windows'
                    // compositor; Wine's window surfaces), a watched pixel is looked at again
                    // until it shows.
                    self.look(fit);
                }
            }
        }
    }

    /// Past [`BEHIND`] waiting access units: keep only those from the last keyframe on, or, with
    /// none, drop them all and wait for (and ask for) one.
    fn catch_up(&mut self, queue: &mut VecDeque<VideoFrame>) {
        if queue.len() <= BEHIND {
            return;
        }
        let dropped = match queue.iter().rposition(|f| f.keyframe) {
            Some(k) => {
                queue.drain(..k);
                k
            }
            None => {
                let n = queue.len();
                queue.clear();
                self.need_key = true;
                n
            }
        };
        lock(&self.stats).skipped += dropped as u64;
        if self.need_key {
            self.ask_keyframe();
        }
    }

    fn ask_keyframe(&mut self) {
        let due = self
            .last_key_request
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if let (true, Some(c)) = (due, &self.commands) {
            let _ = c.try_send(Command::Keyframe);
            self.last_key_request = Some(Instant::now());
        }
    }

    /// Decodes one access unit; true when it gave a picture (kept in `picture`).
    fn decode(&mut self, f: &VideoFrame) -> bool {
        if self.need_key && !f.keyframe {
            lock(&self.stats).skipped += 1;
            return false;
        }
        self.need_key = false;
        let Some(decoder) = self.decoder.as_mut() else {
            return false;
        };
        let t = Instant::now();
        let result = decoder.decode(&f.payload);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(Some(yuv)) => {
                let (w, h) = yuv.dimensions();
                let (ys, uvs, _) = yuv.strides();
                let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                self.picture.clear();
                for r in 0..h {
                    self.picture.extend_from_slice(&yuv.y()[r * ys..r * ys + w]);
                }
                for plane in [yuv.u(), yuv.v()] {
                    for r in 0..ch {
                        self.picture
                            .extend_from_slice(&plane[r * uvs..r * uvs + cw]);
                    }
                }
                self.picture_size = (w, h);
                let mut s = lock(&self.stats);
                s.decoded += 1;
                s.decode_ms += ms;
                true
            }
            Ok(None) => false,
            Err(e) => {
                lock(&self.stats).decode_errors += 1;
                eprintln!("technician-app: a frame did not decode: {e}");
                self.need_key = true;
                self.ask_keyframe();
                false
            }
        }
    }

    fn draw(&mut self, fit: Fit) {
        let (w, h) = self.picture_size;
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        if self.picture.len() < w * h + 2 * cw * ch {
            return;
        }
        let t = Instant::now();
        let (y, uv) = self.picture.split_at(w * h);
        let (u, v) = uv.split_at(cw * ch);
        // The part of the picture shown (all of it, but at 1:1 on a smaller stage). A picture
        // whose size changed since the transform was made is drawn at the next one.
        let (sx, sy) = (fit.src_x as usize, fit.src_y as usize);
        let (sw, sh) = (fit.src_width as usize, fit.src_height as usize);
        if sx + sw > w || sy + sh > h || sw == 0 || sh == 0 {
            return;
        }
        let (yo, co) = (sy * w + sx, (sy / 2) * cw + sx / 2);
        let planes = Planes {
            y: &y[yo..],
            u: &u[co..],
            v: &v[co..],
            y_stride: w,
            uv_stride: cw,
            width: sw,
            height: sh,
        };
        let (dw, dh) = (fit.width as usize, fit.height as usize);
        let buf = self.surface.canvas(fit.width, fit.height);
        let put = match self.scaler.draw(&planes, buf, dw, dh) {
            Ok(()) => {
                if self.dimmed {
                    darken(buf);
                }
                self.surface.present(fit.width, fit.height)
            }
            Err(e) => Err(anyhow::anyhow!("converting the picture: {e}")),
        };
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        {
            let mut s = lock(&self.stats);
            s.fit = Some(fit);
            s.shared_memory = self.surface.shared_memory();
            match &put {
                Ok(()) => {
                    s.frames += 1;
                    s.draw_ms += ms;
                }
                Err(e) => {
                    s.draw_errors += 1;
                    eprintln!("technician-app: a picture was not drawn: {e}");
                }
            }
        }
        if put.is_ok() {
            self.look(fit);
        }
    }

    /// Reads the watched pixel off the screen, if one is watched and not seen yet, and notes when
    /// it shows the colour watched for.
    fn look(&mut self, fit: Fit) {
        let probe = lock(&self.stats)
            .probe
            .as_ref()
            .filter(|p| p.changed_at.is_none())
            .map(|p| (p.x, p.y));
        let Some((rx, ry)) = probe else {
            return;
        };
        let (x, y) = fit.from_remote(rx, ry);
        let Ok(px) = self.surface.read(x, y) else {
            return;
        };
        if let Some(p) = lock(&self.stats).probe.as_mut() {
            p.seen = Some(px);
            let d: u32 = (0..3).map(|i| u32::from(px[i].abs_diff(p.rgb[i]))).sum();
            if d < 60 {
                p.changed_at = Some(epoch_ms());
            }
        }
    }
}
