//! X11 capture with x11rb: RandR monitors; images read through MIT-SHM shared memory where the
//! server offers it (plain `GetImage` through the socket otherwise), and only what the DAMAGE
//! extension reports as changed.
//!
//! Why not scrap's XShm capturer: its monitor enumeration frees the RandR reply before reading the
//! monitors out of it (a use after free). The root window never contains the cursor, so it is never
//! captured. docs/PERFORMANCE.md measures what each path costs.

use std::collections::{HashMap, HashSet};

use x11rb::connection::{Connection, RequestConnection as _};
use x11rb::protocol::damage::{self, ConnectionExt as _, ReportLevel};
use x11rb::protocol::randr::ConnectionExt as _;
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat, ImageOrder};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

use x11_shm::{Access, Segment};

use super::{CaptureError, Change, Frame, Monitor, Rect, ScreenSource};

/// Past this many changed rectangles, their bounding box is read instead: one request rather than
/// many small ones.
const MAX_RECTS: usize = 16;

/// The DAMAGE object on one root window and the region its changes are moved into.
#[derive(Debug, Clone, Copy)]
struct Tracker {
    damage: damage::Damage,
    region: xfixes::Region,
}

/// Captures the monitors of one X display.
#[derive(Debug)]
pub struct X11Source {
    conn: RustConnection,
    /// The root window each monitor belongs to, by monitor id.
    roots: Vec<u32>,
    /// Whether the server offers MIT-SHM; the segment once one is attached.
    shm_offered: bool,
    segment: Option<Segment>,
    /// Whether the server offers DAMAGE and XFixes; the tracker of each root once made.
    damage_offered: bool,
    trackers: HashMap<u32, Tracker>,
    /// The damage objects whose "something changed" event has come since their last take.
    pending: HashSet<damage::Damage>,
    /// The monitor the last `capture_changes` brought its frame up to date with.
    tracked: Option<Monitor>,
}

fn server<E: std::fmt::Display>(e: E) -> CaptureError {
    CaptureError::Server(e.to_string())
}

impl X11Source {
    /// Connects to `display` (such as `:0`), or to `$DISPLAY` when `None`.
    pub fn connect(display: Option<&str>) -> Result<Self, CaptureError> {
        let (conn, _) =
            x11rb::connect(display).map_err(|e| CaptureError::Connect(e.to_string()))?;
        let setup = conn.setup();
        if setup.image_byte_order != ImageOrder::LSB_FIRST {
            return Err(CaptureError::Format(
                "the server sends images most significant byte first".into(),
            ));
        }
        for screen in &setup.roots {
            let bpp = setup
                .pixmap_formats
                .iter()
                .find(|f| f.depth == screen.root_depth)
                .map(|f| f.bits_per_pixel);
            if screen.root_depth < 24 || bpp != Some(32) {
                return Err(CaptureError::Format(format!(
                    "depth {} at {:?} bits per pixel; 24 or 32 at 32 are supported",
                    screen.root_depth, bpp
                )));
            }
        }
        let shm_offered = conn
            .extension_information(shm::X11_EXTENSION_NAME)
            .ok()
            .flatten()
            .is_some()
            && conn
                .shm_query_version()
                .ok()
                .and_then(|c| c.reply().ok())
                .is_some();
        let damage_offered = conn
            .extension_information(damage::X11_EXTENSION_NAME)
            .ok()
            .flatten()
            .is_some()
            && conn
                .extension_information(xfixes::X11_EXTENSION_NAME)
                .ok()
                .flatten()
                .is_some()
            && conn
                .xfixes_query_version(5, 0)
                .ok()
                .and_then(|c| c.reply().ok())
                .is_some()
            && conn
                .damage_query_version(1, 1)
                .ok()
                .and_then(|c| c.reply().ok())
                .is_some();
        Ok(Self {
            conn,
            roots: Vec::new(),
            shm_offered,
            segment: None,
            damage_offered,
            trackers: HashMap::new(),
            pending: HashSet::new(),
            tracked: None,
        })
    }

    /// The same source reading every image whole through the socket with `GetImage`, as it did
    /// before MIT-SHM and DAMAGE (for servers that refuse them, and for comparison in benchmarks).
    pub fn without_shm_or_damage(mut self) -> Self {
        self.shm_offered = false;
        self.damage_offered = false;
        self
    }

    /// Whether images come through shared memory (false: through the socket).
    pub fn uses_shared_memory(&mut self, monitor: &Monitor) -> bool {
        self.segment_for(usize::from(monitor.width) * usize::from(monitor.height) * 4)
    }

    /// Whether the server reports changes (false: every capture reads the whole monitor).
    pub fn reports_changes(&self) -> bool {
        self.damage_offered
    }

    /// Makes sure a segment of at least `size` bytes is attached, if the server shares memory.
    fn segment_for(&mut self, size: usize) -> bool {
        if !self.shm_offered {
            return false;
        }
        if self.segment.as_ref().is_some_and(|s| s.size() >= size) {
            return true;
        }
        if let Some(old) = self.segment.take() {
            old.release(&self.conn);
        }
        self.segment = Segment::attach(&self.conn, size, Access::ServerWrites);
        if self.segment.is_none() {
            tracing::info!("MIT-SHM unavailable to this process; capturing through the socket");
            self.shm_offered = false;
        }
        self.segment.is_some()
    }

    /// Reads the `width` x `height` rectangle at `x`, `y` of `root` and writes it into `dst`
    /// (rows `dst_stride` bytes apart) at `dst_x`, `dst_y`.
    #[allow(clippy::too_many_arguments)]
    fn read_into(
        &mut self,
        root: u32,
        (x, y, width, height): (i32, i32, u16, u16),
        dst: &mut [u8],
        dst_stride: usize,
        (dst_x, dst_y): (usize, usize),
        monitor_id: u32,
    ) -> Result<(), CaptureError> {
        let gone = || CaptureError::NoSuchMonitor(monitor_id);
        let (sx, sy) = (
            i16::try_from(x).map_err(|_| gone())?,
            i16::try_from(y).map_err(|_| gone())?,
        );
        let row = usize::from(width) * 4;
        let len = row * usize::from(height);
        let via_socket;
        let src: &[u8] = if self.segment_for(len) {
            let seg = self.segment.as_ref().map(Segment::xid).ok_or_else(gone)?;
            self.conn
                .shm_get_image(
                    root,
                    sx,
                    sy,
                    width,
                    height,
                    !0,
                    u8::from(ImageFormat::Z_PIXMAP),
                    seg,
                    0,
                )
                .map_err(server)?
                .reply()
                .map_err(|_| gone())?;
            self.segment.as_ref().ok_or_else(gone)?.bytes(len)
        } else {
            via_socket = self
                .conn
                .get_image(ImageFormat::Z_PIXMAP, root, sx, sy, width, height, !0)
                .map_err(server)?
                .reply()
                .map_err(|_| gone())?
                .data;
            &via_socket
        };
        if src.len() < len {
            return Err(CaptureError::Format(format!(
                "{} bytes for a {width}x{height} image",
                src.len()
            )));
        }
        for (r, line) in src[..len].chunks_exact(row).enumerate() {
            let at = (dst_y + r) * dst_stride + dst_x * 4;
            dst.get_mut(at..at + row)
                .ok_or_else(|| CaptureError::Format("rectangle outside the frame".into()))?
                .copy_from_slice(line);
        }
        Ok(())
    }

    fn root_of(&self, monitor: &Monitor) -> Result<u32, CaptureError> {
        self.roots
            .get(monitor.id as usize)
            .copied()
            .ok_or(CaptureError::NoSuchMonitor(monitor.id))
    }

    /// The tracker of `root`, made on first use; `None` when the server has no DAMAGE.
    fn tracker(&mut self, root: u32) -> Option<Tracker> {
        if !self.damage_offered {
            return None;
        }
        if let Some(t) = self.trackers.get(&root) {
            return Some(*t);
        }
        let made = (|| {
            let damage = self.conn.generate_id().ok()?;
            self.conn
                .damage_create(damage, root, ReportLevel::NON_EMPTY)
                .ok()?
                .check()
                .ok()?;
            let region = self.conn.generate_id().ok()?;
            self.conn
                .xfixes_create_region(region, &[])
                .ok()?
                .check()
                .ok()?;
            Some(Tracker { damage, region })
        })();
        match made {
            Some(t) => {
                self.trackers.insert(root, t);
                Some(t)
            }
            None => {
                tracing::info!("DAMAGE refused; capturing every frame whole");
                self.damage_offered = false;
                None
            }
        }
    }

    /// Moves what changed on `root` since the last call into the tracker's region and returns its
    /// rectangles (in root coordinates). The damage is reported at the level "not empty": the server
    /// sends one event when the first change after a take arrives, so a still screen costs one
    /// non-blocking read here and no round trip.
    fn take_damage(
        &mut self,
        t: Tracker,
    ) -> Result<Vec<x11rb::protocol::xproto::Rectangle>, CaptureError> {
        while let Some(event) = self.conn.poll_for_event().map_err(server)? {
            if let Event::DamageNotify(n) = event {
                self.pending.insert(n.damage);
            }
        }
        if !self.pending.remove(&t.damage) {
            return Ok(Vec::new());
        }
        self.conn
            .damage_subtract(t.damage, x11rb::NONE, t.region)
            .map_err(server)?;
        Ok(self
            .conn
            .xfixes_fetch_region(t.region)
            .map_err(server)?
            .reply()
            .map_err(server)?
            .rectangles)
    }

    /// The underlying connection, for the input backend on the same display.
    pub fn connection(&self) -> &RustConnection {
        &self.conn
    }
}

impl ScreenSource for X11Source {
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        let mut monitors = Vec::new();
        self.roots.clear();
        let screens: Vec<_> = self
            .conn
            .setup()
            .roots
            .iter()
            .map(|s| (s.root, s.width_in_pixels, s.height_in_pixels))
            .collect();
        for (root, width, height) in screens {
            let listed = self
                .conn
                .randr_get_monitors(root, true)
                .map_err(server)?
                .reply()
                .map(|r| r.monitors)
                .unwrap_or_default();
            if listed.is_empty() {
                // No RandR monitors: the whole screen is one monitor.
                monitors.push(Monitor {
                    id: 0,
                    key: format!("screen-{}", self.roots.len()),
                    name: format!("Screen {}", self.roots.len()),
                    x: 0,
                    y: 0,
                    width,
                    height,
                    primary: monitors.is_empty(),
                });
                self.roots.push(root);
                continue;
            }
            for m in listed {
                let name = self
                    .conn
                    .get_atom_name(m.name)
                    .map_err(server)?
                    .reply()
                    .map(|r| String::from_utf8_lossy(&r.name).into_owned())
                    .ok()
                    .filter(|n| !n.is_empty());
                // The RandR monitor's name is its identity: the server keeps it for that monitor
                // whatever else changes in the layout.
                let key = name.clone().unwrap_or_else(|| format!("randr-{}", m.name));
                monitors.push(Monitor {
                    id: 0,
                    key,
                    name: name.unwrap_or_else(|| "Monitor".into()),
                    x: i32::from(m.x),
                    y: i32::from(m.y),
                    width: m.width,
                    height: m.height,
                    primary: m.primary,
                });
                self.roots.push(root);
            }
        }
        for (i, m) in monitors.iter_mut().enumerate() {
            m.id = u32::try_from(i).unwrap_or(u32::MAX);
        }
        Ok(monitors)
    }

    fn capture(&mut self, monitor: &Monitor) -> Result<Frame, CaptureError> {
        let root = self.root_of(monitor)?;
        let stride = usize::from(monitor.width) * 4;
        let mut bgra = vec![0u8; stride * usize::from(monitor.height)];
        self.read_into(
            root,
            (monitor.x, monitor.y, monitor.width, monitor.height),
            &mut bgra,
            stride,
            (0, 0),
            monitor.id,
        )?;
        Ok(Frame {
            width: monitor.width,
            height: monitor.height,
            stride,
            bgra,
        })
    }

    fn capture_changes(
        &mut self,
        monitor: &Monitor,
        frame: &mut Frame,
    ) -> Result<Change, CaptureError> {
        let root = self.root_of(monitor)?;
        let Some(tracker) = self.tracker(root) else {
            *frame = self.capture(monitor)?;
            return Ok(Change::Whole);
        };
        // Taken before reading, so that whatever is drawn from here on is reported next time.
        let damaged = self.take_damage(tracker)?;
        let same = self.tracked.as_ref() == Some(monitor)
            && frame.width == monitor.width
            && frame.height == monitor.height
            && frame.bgra.len() == frame.stride * usize::from(frame.height);
        if !same {
            self.tracked = None;
            *frame = self.capture(monitor)?;
            self.tracked = Some(monitor.clone());
            return Ok(Change::Whole);
        }
        let mut rects = clip_to_monitor(&damaged, monitor);
        if rects.is_empty() {
            return Ok(Change::Unchanged);
        }
        if rects.len() > MAX_RECTS {
            rects = vec![bounding_box(&rects)];
        }
        let stride = frame.stride;
        for r in &rects {
            let read = self.read_into(
                root,
                (
                    monitor.x + i32::from(r.x),
                    monitor.y + i32::from(r.y),
                    r.width,
                    r.height,
                ),
                &mut frame.bgra,
                stride,
                (usize::from(r.x), usize::from(r.y)),
                monitor.id,
            );
            if let Err(e) = read {
                // The frame is now partly stale: the next call starts over with a whole capture.
                self.tracked = None;
                return Err(e);
            }
        }
        Ok(Change::Regions(rects))
    }
}

/// `damaged` (root coordinates) clipped to `monitor`, in the monitor's coordinates.
fn clip_to_monitor(damaged: &[x11rb::protocol::xproto::Rectangle], monitor: &Monitor) -> Vec<Rect> {
    let (mx0, my0) = (monitor.x, monitor.y);
    let (mx1, my1) = (
        mx0 + i32::from(monitor.width),
        my0 + i32::from(monitor.height),
    );
    damaged
        .iter()
        .filter_map(|d| {
            let x0 = i32::from(d.x).max(mx0);
            let y0 = i32::from(d.y).max(my0);
            let x1 = (i32::from(d.x) + i32::from(d.width)).min(mx1);
            let y1 = (i32::from(d.y) + i32::from(d.height)).min(my1);
            (x1 > x0 && y1 > y0).then(|| Rect {
                x: u16::try_from(x0 - mx0).unwrap_or(0),
                y: u16::try_from(y0 - my0).unwrap_or(0),
                width: u16::try_from(x1 - x0).unwrap_or(0),
                height: u16::try_from(y1 - y0).unwrap_or(0),
            })
        })
        .collect()
}

/// The smallest rectangle holding all of `rects` (not empty).
fn bounding_box(rects: &[Rect]) -> Rect {
    let x0 = rects.iter().map(|r| r.x).min().unwrap_or(0);
    let y0 = rects.iter().map(|r| r.y).min().unwrap_or(0);
    let x1 = rects.iter().map(|r| r.x + r.width).max().unwrap_or(0);
    let y1 = rects.iter().map(|r| r.y + r.height).max().unwrap_or(0);
    Rect {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

impl Drop for X11Source {
    fn drop(&mut self) {
        if let Some(seg) = self.segment.take() {
            seg.release(&self.conn);
        }
        for t in self.trackers.values() {
            let _ = self.conn.damage_destroy(t.damage);
            let _ = self.conn.xfixes_destroy_region(t.region);
        }
        let _ = self.conn.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x11rb::protocol::xproto::Rectangle;

    fn monitor() -> Monitor {
        Monitor {
            id: 1,
            key: "B".into(),
            name: "B".into(),
            x: 1920,
            y: 0,
            width: 1280,
            height: 1024,
            primary: false,
        }
    }

    #[test]
    fn damage_is_clipped_to_the_monitor_and_moved_into_its_coordinates() {
        let damaged = [
            // On the other monitor only.
            Rectangle {
                x: 10,
                y: 10,
                width: 100,
                height: 100,
            },
            // Across the boundary.
            Rectangle {
                x: 1900,
                y: 1000,
                width: 40,
                height: 40,
            },
            // Inside.
            Rectangle {
                x: 2000,
                y: 5,
                width: 3,
                height: 4,
            },
        ];
        assert_eq!(
            clip_to_monitor(&damaged, &monitor()),
            [
                Rect {
                    x: 0,
                    y: 1000,
                    width: 20,
                    height: 24
                },
                Rect {
                    x: 80,
                    y: 5,
                    width: 3,
                    height: 4
                },
            ]
        );
        assert_eq!(
            bounding_box(&clip_to_monitor(&damaged, &monitor())),
            Rect {
                x: 0,
                y: 5,
                width: 83,
                height: 1019
            }
        );
    }
}
