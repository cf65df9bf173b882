//! The native view on X11: the session's H.264 decoded in Rust (openh264) and drawn into a child X
//! window of the app's own window, placed over the page's stage.
//!
//! - The page keeps everything else (controls, recording badge, warnings, refusals): it tells the
//!   view where its stage is ([`NativeView::set_area`]) and the view covers the fitted rectangle.
//! - The child window takes no input (an empty SHAPE input region), so the pointer and the keyboard
//!   stay with the page, which sends page coordinates that the app maps through the same [`Fit`].
//! - One thread decodes every access unit (the decoder needs them all) but draws only the latest
//!   picture: when several are waiting it decodes them all and draws once; when the queue passes
//!   [`BEHIND`] access units it skips to the next keyframe and asks for one (at most once a
//!   second), so that the view never falls further behind.
//! - Pixels are converted straight into a shared memory segment that the server reads
//!   (`ShmPutImage`, MIT-SHM), or, where the server cannot share memory with the app, sent with
//!   `PutImage` in bands under its request limit; a round trip after each picture makes "drawn"
//!   mean "on the server's screen" (and hands the segment back for the next picture).
//! - A probe (for tests and the latency benchmark) reads one pixel back from the X server after a
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
use x11_shm::{Access, Segment};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::shape::{self, ConnectionExt as _};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{
    ClipOrdering, ConfigureWindowAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask,
    ImageFormat, WindowClass,
};
use x11rb::protocol::Event as XEvent;
use x11rb::rust_connection::RustConnection;

use super::{Area, Fit, Planes, Probe, Scaler, Stats};

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
    /// Opens the view as a child of X window `parent` on the display the app uses (`DISPLAY`).
    pub fn open(parent: u32) -> Result<Self> {
        let surface = Surface::open(parent)?;
        let stats = Arc::new(Mutex::new(Stats {
            window: surface.window,
            ..Stats::default()
        }));
        let geometry = Arc::new(Mutex::new(Geometry::default()));
        let (tx, rx) = mpsc::channel();
        let (s, g) = (Arc::clone(&stats), Arc::clone(&geometry));
        std::thread::Builder::new()
            .name("native-view".into())
            .spawn(move || Drawer::new(surface, s, g).run(&rx))
            .context("the view's thread")?;
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

/// The child window and what drawing into it needs.
struct Surface {
    conn: RustConnection,
    window: u32,
    gc: u32,
    depth: u8,
    /// Largest `PutImage` payload, bytes.
    max_bytes: usize,
    /// Where the window is and whether it is mapped.
    placed: Option<Fit>,
    /// Shared memory with the server, while it works.
    shm: bool,
    segment: Option<Segment>,
}

impl Surface {
    fn open(parent: u32) -> Result<Self> {
        let (conn, _) = x11rb::connect(None).context("the X display")?;
        if conn
            .extension_information(shape::X11_EXTENSION_NAME)?
            .is_none()
        {
            bail!(
                "the X server has no SHAPE extension (needed for a view that passes input through)"
            );
        }
        let window = conn.generate_id()?;
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            parent,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            // No background: the server never clears the picture before a redraw.
            &CreateWindowAux::new().event_mask(EventMask::EXPOSURE),
        )?;
        // Input passes through to the page beneath.
        conn.shape_rectangles(
            shape::SO::SET,
            shape::SK::INPUT,
            ClipOrdering::UNSORTED,
            window,
            0,
            0,
            &[],
        )?;
        let gc = conn.generate_id()?;
        conn.create_gc(gc, window, &CreateGCAux::new().graphics_exposures(0))?;
        let depth = conn.get_geometry(window)?.reply()?.depth;
        let bpp = conn
            .setup()
            .pixmap_formats
            .iter()
            .find(|f| f.depth == depth)
            .map(|f| f.bits_per_pixel);
        if bpp != Some(32) || !(depth == 24 || depth == 32) {
            bail!("the app's window has depth {depth} at {bpp:?} bits a pixel; the view draws 32-bit pixels");
        }
        let max_bytes = conn.maximum_request_bytes().saturating_sub(64);
        let shm = conn
            .extension_information(shm::X11_EXTENSION_NAME)?
            .is_some();
        Ok(Self {
            conn,
            window,
            gc,
            depth,
            max_bytes,
            placed: None,
            shm,
            segment: None,
        })
    }

    /// `len` bytes of shared memory to draw into, or `None` without MIT-SHM.
    fn shared(&mut self, len: usize) -> Option<&mut [u8]> {
        if !self.shm {
            return None;
        }
        if self.segment.as_ref().is_none_or(|s| s.size() < len) {
            if let Some(old) = self.segment.take() {
                old.release(&self.conn);
            }
            self.segment = Segment::attach(&self.conn, len, Access::ClientWrites);
            if self.segment.is_none() {
                eprintln!("technician-app: the X server cannot share memory with the app; sending pictures over its socket");
                self.shm = false;
                return None;
            }
        }
        self.segment.as_mut()?.bytes_mut(len)
    }

    /// Shows the shared picture (`width` x `height`) at the window's corner, then waits for the
    /// server.
    fn put_shared(&self, width: u32, height: u32) -> Result<()> {
        let seg = self
            .segment
            .as_ref()
            .map(Segment::xid)
            .context("no shared memory")?;
        let (w, h) = (width as u16, height as u16);
        self.conn.shm_put_image(
            self.window,
            self.gc,
            w,
            h,
            0,
            0,
            w,
            h,
            0,
            0,
            self.depth,
            ImageFormat::Z_PIXMAP.into(),
            false,
            seg,
            0,
        )?;
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }

    fn place(&mut self, fit: Option<Fit>) -> Result<()> {
        if fit == self.placed {
            return Ok(());
        }
        match fit {
            Some(f) => {
                self.conn.configure_window(
                    self.window,
                    &ConfigureWindowAux::new()
                        .x(f.x)
                        .y(f.y)
                        .width(f.width)
                        .height(f.height),
                )?;
                if self.placed.is_none() {
                    self.conn.map_window(self.window)?;
                }
            }
            None => {
                self.conn.unmap_window(self.window)?;
            }
        }
        self.placed = fit;
        self.conn.flush()?;
        Ok(())
    }

    /// Puts `pixels` (`width` x `height` BGRX) at the window's corner, then waits for the server.
    fn put(&self, pixels: &[u8], width: u32, height: u32) -> Result<()> {
        let stride = width as usize * 4;
        let rows = (self.max_bytes / stride).max(1);
        let pixels = &pixels[..(stride * height as usize).min(pixels.len())];
        for (band, chunk) in pixels.chunks(rows * stride).enumerate() {
            self.conn.put_image(
                ImageFormat::Z_PIXMAP,
                self.window,
                self.gc,
                width as u16,
                (chunk.len() / stride) as u16,
                0,
                (band * rows) as i16,
                0,
                self.depth,
                chunk,
            )?;
        }
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }

    /// One pixel of the window as the server shows it.
    fn read(&self, x: u32, y: u32) -> Result<[u8; 3]> {
        let img = self
            .conn
            .get_image(
                ImageFormat::Z_PIXMAP,
                self.window,
                x as i16,
                y as i16,
                1,
                1,
                !0,
            )?
            .reply()?;
        match img.data.get(..3) {
            Some(&[b, g, r]) => Ok([r, g, b]),
            _ => bail!("an empty image"),
        }
    }

    fn exposed(&self) -> bool {
        let mut any = false;
        while let Ok(Some(ev)) = self.conn.poll_for_event() {
            any |= matches!(ev, XEvent::Expose(_));
        }
        any
    }
}

/// The drawing thread's state.
struct Drawer {
    surface: Surface,
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
    pixels: Vec<u8>,
    /// Whether pictures are drawn darkened (a lost connection).
    dimmed: bool,
}

/// Darkens 32-bit pixels to 40 % brightness: the picture a lost connection left, still readable.
fn darken(pixels: &mut [u8]) {
    for b in pixels.iter_mut() {
        *b = ((u16::from(*b) * 2) / 5) as u8;
    }
}

impl Drawer {
    fn new(surface: Surface, stats: Arc<Mutex<Stats>>, geometry: Arc<Mutex<Geometry>>) -> Self {
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
            pixels: Vec::new(),
            dimmed: false,
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        let mut queue: VecDeque<VideoFrame> = VecDeque::new();
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
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
            if (fresh || redraw) && shown.is_some() {
                if let Some(fit) = shown {
                    self.draw(fit);
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
        let dimmed = self.dimmed;
        let put = if let Some(buf) = self.surface.shared(dw * dh * 4) {
            self.scaler.draw(&planes, buf, dw, dh);
            if dimmed {
                darken(buf);
            }
            self.surface.put_shared(fit.width, fit.height)
        } else {
            self.pixels.resize(dw * dh * 4, 0);
            self.scaler.draw(&planes, &mut self.pixels, dw, dh);
            if dimmed {
                darken(&mut self.pixels);
            }
            self.surface.put(&self.pixels, fit.width, fit.height)
        };
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let probe = lock(&self.stats)
            .probe
            .as_ref()
            .filter(|p| p.changed_at.is_none())
            .map(|p| (p.x, p.y, p.rgb));
        let seen = match (&put, probe) {
            (Ok(()), Some((rx, ry, _))) => {
                let (x, y) = fit.from_remote(rx, ry);
                self.surface.read(x, y).ok()
            }
            _ => None,
        };
        let mut s = lock(&self.stats);
        s.fit = Some(fit);
        s.shared_memory = self.surface.segment.is_some();
        match put {
            Ok(()) => {
                s.frames += 1;
                s.draw_ms += ms;
            }
            Err(e) => {
                s.draw_errors += 1;
                eprintln!("technician-app: a picture was not drawn: {e}");
            }
        }
        if let (Some(p), Some(px)) = (s.probe.as_mut(), seen) {
            p.seen = Some(px);
            let d: u32 = (0..3).map(|i| u32::from(px[i].abs_diff(p.rgb[i]))).sum();
            if d < 60 {
                p.changed_at = Some(epoch_ms());
            }
        }
    }
}
