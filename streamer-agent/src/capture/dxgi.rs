//! Windows screen capture with DXGI Desktop Duplication: the GPU hands over the desktop image of one
//! output only when it changed, and this copies it to the CPU through a staging texture.
//!
//! Untested here: Wine answers `DuplicateOutput` with `E_NOTIMPL`, so the Windows platform falls
//! back to GDI (`capture/gdi.rs`) there, and that fallback is what the Wine tests exercise. Written
//! against Microsoft's Desktop Duplication documentation:
//! - `AcquireNextFrame` times out when nothing changed: `capture` returns the last image again,
//!   `capture_changes` answers `Unchanged` (nothing copied, nothing encoded). A frame whose
//!   `LastPresentTime` is zero moved only the pointer: unchanged too. A new image is copied whole
//!   (`Change::Whole`); reading only `GetFrameDirtyRects`' rectangles is not built.
//! - `DXGI_ERROR_ACCESS_LOST` (mode change, full-screen switch, the secure desktop) means the
//!   duplication must be made again: the next call does that.
//! - The image is in the output's native orientation: a rotated output is turned to the desktop's.
//! - The pointer is not part of the image (its shape comes separately and is ignored).
#![allow(unsafe_code)]

use windows::core::Interface;
use windows::Win32::Foundation::HMODULE;
use windows::Win32::Graphics::Direct3D::D3D_DRIVER_TYPE_UNKNOWN;
use windows::Win32::Graphics::Direct3D11::{
    D3D11CreateDevice, ID3D11Device, ID3D11DeviceContext, ID3D11Texture2D, D3D11_CPU_ACCESS_READ,
    D3D11_CREATE_DEVICE_BGRA_SUPPORT, D3D11_MAPPED_SUBRESOURCE, D3D11_MAP_READ, D3D11_SDK_VERSION,
    D3D11_TEXTURE2D_DESC, D3D11_USAGE_STAGING,
};
use windows::Win32::Graphics::Dxgi::Common::{
    DXGI_MODE_ROTATION, DXGI_MODE_ROTATION_ROTATE180, DXGI_MODE_ROTATION_ROTATE270,
    DXGI_MODE_ROTATION_ROTATE90,
};
use windows::Win32::Graphics::Dxgi::{
    CreateDXGIFactory1, IDXGIFactory1, IDXGIOutput1, IDXGIOutputDuplication, IDXGIResource,
    DXGI_ERROR_ACCESS_LOST, DXGI_ERROR_NOT_FOUND, DXGI_ERROR_WAIT_TIMEOUT, DXGI_OUTDUPL_FRAME_INFO,
};

use super::gdi::{to_monitors, wide_to_string, WindowsMonitor};
use super::{rotate_bgra, CaptureError, Change, Frame, Monitor, ScreenSource};

/// How long one capture waits for the desktop to change before returning the last image.
const WAIT_MS: u32 = 50;

fn dxgi(what: &'static str) -> impl Fn(windows::core::Error) -> CaptureError {
    move |e| CaptureError::Server(format!("{what}: {e}"))
}

/// One output of one adapter, with its duplication once made.
struct Output {
    monitor: WindowsMonitor,
    output: IDXGIOutput1,
    device: ID3D11Device,
    context: ID3D11DeviceContext,
    rotation: DXGI_MODE_ROTATION,
    duplication: Option<IDXGIOutputDuplication>,
    last: Option<Frame>,
    /// The CPU-readable copy target, made once per image size rather than per frame.
    staging: Option<(ID3D11Texture2D, u32, u32)>,
}

/// DXGI Desktop Duplication of every output attached to the desktop.
pub struct DxgiSource {
    outputs: Vec<Output>,
}

impl std::fmt::Debug for DxgiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DxgiSource")
            .field("outputs", &self.outputs.len())
            .finish()
    }
}

impl DxgiSource {
    /// Opens every attached output and duplicates the first, so that a machine where duplication
    /// cannot work (Wine, some remote sessions) is known at once and GDI is used instead.
    pub fn open() -> Result<Self, CaptureError> {
        let mut source = Self {
            outputs: enumerate()?,
        };
        let first = source
            .outputs
            .first_mut()
            .ok_or_else(|| CaptureError::Connect("no output is attached to the desktop".into()))?;
        first.duplicate()?;
        Ok(source)
    }
}

fn enumerate() -> Result<Vec<Output>, CaptureError> {
    // SAFETY: COM calls on interfaces the windows crate reference-counts; every out-pointer is a
    // local that outlives the call.
    unsafe {
        let factory: IDXGIFactory1 = CreateDXGIFactory1().map_err(dxgi("CreateDXGIFactory1"))?;
        let mut outputs = Vec::new();
        for a in 0.. {
            let adapter = match factory.EnumAdapters1(a) {
                Ok(adapter) => adapter,
                Err(e) if e.code() == DXGI_ERROR_NOT_FOUND => break,
                Err(e) => return Err(dxgi("EnumAdapters1")(e)),
            };
            let mut device: Option<ID3D11Device> = None;
            let mut context: Option<ID3D11DeviceContext> = None;
            D3D11CreateDevice(
                &adapter,
                D3D_DRIVER_TYPE_UNKNOWN,
                HMODULE::default(),
                D3D11_CREATE_DEVICE_BGRA_SUPPORT,
                None,
                D3D11_SDK_VERSION,
                Some(&mut device),
                None,
                Some(&mut context),
            )
            .map_err(dxgi("D3D11CreateDevice"))?;
            let (Some(device), Some(context)) = (device, context) else {
                return Err(CaptureError::Connect(
                    "D3D11CreateDevice gave no device".into(),
                ));
            };
            for o in 0.. {
                let output = match adapter.EnumOutputs(o) {
                    Ok(output) => output,
                    Err(e) if e.code() == DXGI_ERROR_NOT_FOUND => break,
                    Err(e) => return Err(dxgi("EnumOutputs")(e)),
                };
                let desc = output.GetDesc().map_err(dxgi("IDXGIOutput::GetDesc"))?;
                if !desc.AttachedToDesktop.as_bool() {
                    continue;
                }
                let r = desc.DesktopCoordinates;
                outputs.push(Output {
                    monitor: WindowsMonitor {
                        device: wide_to_string(&desc.DeviceName),
                        rect: r,
                        // The primary monitor is the one at the desktop's origin.
                        primary: r.left == 0 && r.top == 0,
                    },
                    output: output.cast().map_err(dxgi("IDXGIOutput1"))?,
                    device: device.clone(),
                    context: context.clone(),
                    rotation: desc.Rotation,
                    duplication: None,
                    last: None,
                    staging: None,
                });
            }
        }
        Ok(outputs)
    }
}

impl Output {
    fn duplicate(&mut self) -> Result<&IDXGIOutputDuplication, CaptureError> {
        if self.duplication.is_none() {
            // SAFETY: a COM call with a live device.
            let d = unsafe { self.output.DuplicateOutput(&self.device) }
                .map_err(dxgi("DuplicateOutput"))?;
            self.duplication = Some(d);
        }
        // Set just above.
        self.duplication
            .as_ref()
            .ok_or_else(|| CaptureError::Server("no duplication".into()))
    }

    /// The next image: a new one when the desktop changed within [`WAIT_MS`], else the last one.
    fn next(&mut self) -> Result<Frame, CaptureError> {
        match self.acquire()? {
            Some(frame) => Ok(frame),
            None => self.last.clone().ok_or_else(|| {
                // Nothing has changed since the duplication began: wait for the first image.
                CaptureError::Server("the desktop has not been drawn yet".into())
            }),
        }
    }

    /// A new image when the desktop changed within [`WAIT_MS`], or `None`.
    fn acquire(&mut self) -> Result<Option<Frame>, CaptureError> {
        let duplication = self.duplicate()?.clone();
        let mut info = DXGI_OUTDUPL_FRAME_INFO::default();
        let mut resource: Option<IDXGIResource> = None;
        // SAFETY: out-pointers are locals; the frame is released below on every path after success.
        let acquired = unsafe { duplication.AcquireNextFrame(WAIT_MS, &mut info, &mut resource) };
        match acquired {
            Ok(()) => {}
            Err(e) if e.code() == DXGI_ERROR_WAIT_TIMEOUT => return Ok(None),
            Err(e) if e.code() == DXGI_ERROR_ACCESS_LOST => {
                self.duplication = None;
                return Err(CaptureError::Server(
                    "desktop duplication was interrupted (mode change or secure desktop)".into(),
                ));
            }
            Err(e) => return Err(dxgi("AcquireNextFrame")(e)),
        }
        // Only the pointer moved: the desktop image is the one before (documented meaning of a
        // zero LastPresentTime), unless there is none yet.
        let copied = if info.LastPresentTime == 0 && self.last.is_some() {
            Ok(None)
        } else {
            resource
                .ok_or_else(|| CaptureError::Server("AcquireNextFrame gave no image".into()))
                .and_then(|r| self.copy(&r))
                .map(Some)
        };
        // SAFETY: the frame acquired above is released exactly once.
        let _ = unsafe { duplication.ReleaseFrame() };
        let frame = copied?;
        if let Some(f) = &frame {
            self.last = Some(f.clone());
        }
        Ok(frame)
    }

    fn copy(&mut self, resource: &IDXGIResource) -> Result<Frame, CaptureError> {
        // SAFETY: COM calls on live interfaces; the mapped memory is read only between Map and
        // Unmap, within the row pitch and height the driver reported.
        unsafe {
            let texture: ID3D11Texture2D = resource.cast().map_err(dxgi("ID3D11Texture2D"))?;
            let mut desc = D3D11_TEXTURE2D_DESC::default();
            texture.GetDesc(&mut desc);
            desc.Usage = D3D11_USAGE_STAGING;
            desc.CPUAccessFlags = D3D11_CPU_ACCESS_READ.0 as u32;
            desc.BindFlags = 0;
            desc.MiscFlags = 0;
            desc.MipLevels = 1;
            desc.ArraySize = 1;
            let staging = match &self.staging {
                Some((t, w, h)) if (*w, *h) == (desc.Width, desc.Height) => t.clone(),
                _ => {
                    let mut made: Option<ID3D11Texture2D> = None;
                    self.device
                        .CreateTexture2D(&desc, None, Some(&mut made))
                        .map_err(dxgi("CreateTexture2D"))?;
                    let made = made.ok_or_else(|| {
                        CaptureError::Server("CreateTexture2D gave nothing".into())
                    })?;
                    self.staging = Some((made.clone(), desc.Width, desc.Height));
                    made
                }
            };
            self.context.CopyResource(&staging, &texture);
            let mut mapped = D3D11_MAPPED_SUBRESOURCE::default();
            self.context
                .Map(&staging, 0, D3D11_MAP_READ, 0, Some(&mut mapped))
                .map_err(dxgi("Map"))?;
            let (w, h) = (desc.Width as usize, desc.Height as usize);
            let pitch = mapped.RowPitch as usize;
            let mut bgra = vec![0u8; w * 4 * h];
            for row in 0..h {
                let src =
                    std::slice::from_raw_parts(mapped.pData.cast::<u8>().add(row * pitch), w * 4);
                bgra[row * w * 4..(row + 1) * w * 4].copy_from_slice(src);
            }
            self.context.Unmap(&staging, 0);
            let frame = Frame {
                width: u16::try_from(w).unwrap_or(u16::MAX),
                height: u16::try_from(h).unwrap_or(u16::MAX),
                stride: w * 4,
                bgra,
            };
            let turns = match self.rotation {
                DXGI_MODE_ROTATION_ROTATE90 => 1,
                DXGI_MODE_ROTATION_ROTATE180 => 2,
                DXGI_MODE_ROTATION_ROTATE270 => 3,
                _ => 0,
            };
            Ok(rotate_bgra(&frame, turns))
        }
    }
}

impl ScreenSource for DxgiSource {
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        // A layout change (monitor added, resolution or rotation changed) is seen by listing again.
        let now = enumerate()?;
        let same = now.len() == self.outputs.len()
            && now
                .iter()
                .zip(&self.outputs)
                .all(|(a, b)| a.monitor == b.monitor && a.rotation == b.rotation);
        if !same {
            self.outputs = now;
        }
        let listed: Vec<WindowsMonitor> = self.outputs.iter().map(|o| o.monitor.clone()).collect();
        Ok(to_monitors(&listed))
    }

    fn capture(&mut self, monitor: &Monitor) -> Result<Frame, CaptureError> {
        let output = self
            .outputs
            .iter_mut()
            .find(|o| o.monitor.device == monitor.key)
            .ok_or(CaptureError::NoSuchMonitor(monitor.id))?;
        output.next()
    }

    fn capture_changes(
        &mut self,
        monitor: &Monitor,
        frame: &mut Frame,
    ) -> Result<Change, CaptureError> {
        let output = self
            .outputs
            .iter_mut()
            .find(|o| o.monitor.device == monitor.key)
            .ok_or(CaptureError::NoSuchMonitor(monitor.id))?;
        match output.acquire()? {
            Some(new) => {
                *frame = new;
                Ok(Change::Whole)
            }
            // The caller's frame already holds this monitor's image.
            None if frame.width != 0 => Ok(Change::Unchanged),
            None => {
                *frame = output.next()?;
                Ok(Change::Whole)
            }
        }
    }
}
