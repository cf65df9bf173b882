//! H.264 encoding with openh264, keyframes on request, with a bitrate the streamer holds: openh264's
//! rate control chooses the quantiser, and a token bucket in front of it drops whole frames when even
//! the coarsest quantiser would go over (openh264's own frame skipping dropped far more than needed,
//! measured in docs/PERFORMANCE.md).

use std::time::Instant;

use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, QpRange,
    RateControlMode, UsageType,
};
use openh264::formats::{RgbSliceU8, YUVBuffer, YUVSlices};
use yuv::{
    bgra_to_yuv420, BufferStoreMut, YuvChromaSubsampling, YuvConversionMode, YuvPlanarImageMut,
    YuvRange, YuvStandardMatrix,
};

use crate::capture::Frame;
use openh264::OpenH264API;

/// Receives openh264's own messages (at start-up, warnings about settings we chose on purpose,
/// such as its frame skipping being off) for the log: openh264 would print them on standard error,
/// which is the end user's terminal.
#[allow(unsafe_code)]
unsafe extern "C" fn openh264_message(
    _context: *mut std::ffi::c_void,
    level: std::ffi::c_int,
    text: *const std::ffi::c_char,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: openh264 passes a NUL-terminated string that lives for the call.
    let text = unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy();
    let text = text.trim_end();
    if level <= openh264_sys2::WELS_LOG_ERROR {
        tracing::warn!(target: "openh264", "{text}");
    } else {
        tracing::debug!(target: "openh264", "{text}");
    }
}

/// Sends `encoder`'s messages to [`openh264_message`]; called before its first frame, which is
/// when openh264 initialises and says most.
#[allow(unsafe_code)]
fn log_openh264_messages(encoder: &mut Encoder) {
    let mut callback: openh264_sys2::WelsTraceCallback = Some(openh264_message);
    // SAFETY: ENCODER_OPTION_TRACE_CALLBACK is accepted before initialisation and reads one
    // WelsTraceCallback through the pointer during the call; the function lives for the program.
    let rc = unsafe {
        encoder.raw_api().set_option(
            openh264_sys2::ENCODER_OPTION_TRACE_CALLBACK,
            std::ptr::addr_of_mut!(callback).cast(),
        )
    };
    if rc != 0 {
        tracing::debug!(rc, "openh264 kept its own message output");
    }
}

/// Encoding failed (our fault: the encoder or its input).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// openh264 refused the configuration or the frame.
    #[error("openh264: {0}")]
    Encoder(#[from] openh264::Error),
    /// The frame's size does not match the encoder's.
    #[error("frame of {got} bytes, expected {want} for {width}x{height} RGB")]
    WrongSize {
        /// Bytes given.
        got: usize,
        /// Bytes expected.
        want: usize,
        /// Encoder width.
        width: u16,
        /// Encoder height.
        height: u16,
    },
    /// The encoder produced nothing for a frame it was given.
    #[error("the encoder produced no data")]
    Empty,
    /// openh264 refused an option set mid-stream.
    #[error("openh264 option: {0}")]
    Option(String),
    /// Colour conversion failed.
    #[error("BGRA to I420: {0}")]
    Convert(String),
}

/// The size an encoder uses for a `width` x `height` image: 4:2:0 needs even sides, so an odd last
/// column or row is left out.
pub fn encoded_size(width: u16, height: u16) -> (u16, u16) {
    (width & !1, height & !1)
}

/// One encoded access unit, Annex B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The access unit with start codes; keyframes carry SPS and PPS.
    pub data: Vec<u8>,
    /// Whether decoding can start here.
    pub keyframe: bool,
}

/// The target bitrate at 1920x1080; other sizes get the same bits a pixel.
pub const TARGET_BPS_1080P: u32 = 4_000_000;

/// The lowest target, whatever the size: below it text stops being legible while it changes.
pub const MIN_TARGET_BPS: u32 = 500_000;

/// The target bitrate for a `width` x `height` screen: [`TARGET_BPS_1080P`] scaled by pixels.
pub fn target_bitrate(width: u16, height: u16) -> u32 {
    let pixels = u64::from(width) * u64::from(height);
    let bps = u64::from(TARGET_BPS_1080P) * pixels / (1920 * 1080);
    u32::try_from(bps).unwrap_or(u32::MAX).max(MIN_TARGET_BPS)
}

/// The share of the target that openh264's rate control aims at; the bucket holds the whole target.
const RATE_CONTROL_SHARE: f64 = 0.85;

/// How an encoder is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    /// openh264's screen-content usage (true) or its camera usage.
    pub screen_content: bool,
    /// openh264's low complexity mode (less motion search) rather than its medium one.
    pub low_complexity: bool,
    /// Rate control towards this many bits a second, dropping frames when over; `None` for no rate
    /// control (every frame encoded at a fixed quality, whatever its size).
    pub target_bps: Option<u32>,
    /// An IDR picture every this many seconds' worth of frames (counted in frames encoded, so a
    /// still screen makes them rarer), besides those asked for.
    pub intra_period_seconds: u32,
    /// The coarsest quantiser rate control may choose (openh264's own ceiling is 42 in camera
    /// usage and 35 in screen-content usage; at most 51). Unused without rate control.
    pub max_qp: u8,
}

/// The finest quantiser rate control may choose: openh264's own floor in rate-control mode.
const MIN_QP: u8 = 12;

impl EncoderSettings {
    /// What the streamer uses for a `width` x `height` screen: camera usage at low complexity,
    /// rate control on at [`target_bitrate`]. openh264's screen-content usage made smaller typing
    /// frames but cost 2 to 3 times the CPU on scrolling and video; docs/PERFORMANCE.md has both.
    pub fn streamer(width: u16, height: u16) -> Self {
        Self {
            screen_content: false,
            low_complexity: true,
            target_bps: Some(target_bitrate(width, height)),
            // At 2 s, scrolling text lost 5 dB of PSNR at the same budget and typing took nearly
            // three times the bytes (docs/PERFORMANCE.md); the view and the recorder ask for the
            // keyframes they need.
            intra_period_seconds: 10,
            // The whole range: at openh264's ceiling of 42, a frame of fast-changing content (noise,
            // a video) stayed 150 to 230 KB whatever the target, 300 to 450 ms on a 4 Mbit/s link
            // by itself, so a lower target only dropped frames and the view's delay could not go
            // under 400 ms (docs/PERFORMANCE.md, the link section). Rate control goes this coarse
            // only when the target needs it: typing and scrolling stay far finer.
            max_qp: 51,
        }
    }

    /// Camera usage at medium complexity without rate control: every frame comes out, whatever it
    /// costs (test patterns, and the streamer before issue 19).
    pub const FIXED_QUALITY: Self = Self {
        screen_content: false,
        low_complexity: false,
        target_bps: None,
        intra_period_seconds: 2,
        max_qp: 42,
    };
}

/// Bits the encoder may still spend: refilled at the target rate, at most one second's worth, and
/// spent by each frame sent. Below zero, frames are dropped until it refills.
#[derive(Debug)]
struct Bucket {
    bps: u32,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Full: the first keyframe goes at once.
    fn new(bps: u32) -> Self {
        Self {
            bps,
            tokens: f64::from(bps),
            at: Instant::now(),
        }
    }

    /// Whether a frame may be sent at `now`.
    fn open(&mut self, now: Instant) -> bool {
        let rate = f64::from(self.bps);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        self.tokens >= 0.0
    }

    fn spend(&mut self, bytes: usize) {
        self.tokens -= bytes as f64 * 8.0;
    }
}

/// An H.264 encoder for one resolution and frame rate.
pub struct H264Encoder {
    encoder: Encoder,
    width: u16,
    height: u16,
    i420: YuvPlanarImageMut<'static, u8>,
    /// Whether the I420 picture holds a whole frame already (then only changed rows are redone).
    converted: bool,
    frame_rate: u16,
    /// Frames given to openh264 so far.
    encoded: u64,
    /// Whether openh264's rate control still has an older target than the bucket.
    rate_control_stale: bool,
    bucket: Option<Bucket>,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

impl H264Encoder {
    /// An encoder without rate control ([`EncoderSettings::FIXED_QUALITY`]): every frame given
    /// comes out, a keyframe every two seconds and whenever asked.
    pub fn new(width: u16, height: u16, frame_rate: u16) -> Result<Self, EncodeError> {
        Self::with_settings(width, height, frame_rate, EncoderSettings::FIXED_QUALITY)
    }

    /// An encoder set up as `settings` say, with keyframes when the settings say and whenever
    /// asked.
    /// Scene-change detection is off in every case: on screen content it turned ordinary changes
    /// (a window opening) into IDR pictures, at several times the bytes of a P frame. openh264 never
    /// skips frames itself; the bucket does, when there is a target.
    pub fn with_settings(
        width: u16,
        height: u16,
        frame_rate: u16,
        settings: EncoderSettings,
    ) -> Result<Self, EncodeError> {
        let (usage, rc, bps) = match settings.target_bps {
            // openh264 aims below the bucket's rate: its rate control overshoots for a while after
            // each change of content, and every frame the bucket drops is a stale picture.
            Some(bps) => (
                settings.screen_content,
                RateControlMode::Bitrate,
                (f64::from(bps.max(MIN_TARGET_BPS)) * RATE_CONTROL_SHARE) as u32,
            ),
            None => (
                settings.screen_content,
                RateControlMode::Off,
                TARGET_BPS_1080P,
            ),
        };
        let config = EncoderConfig::new()
            .usage_type(if usage {
                UsageType::ScreenContentRealTime
            } else {
                UsageType::CameraVideoRealTime
            })
            .scene_change_detect(false)
            // Neither is available for screen content (openh264 turns them off with a warning).
            .adaptive_quantization(!usage)
            .background_detection(!usage)
            .skip_frames(false)
            // One thread: the session's capture thread, measurable as one, and the end user's
            // other core left to them.
            .num_threads(1)
            .complexity(if settings.low_complexity {
                Complexity::Low
            } else {
                Complexity::Medium
            })
            .rate_control_mode(rc)
            .bitrate(BitRate::from_bps(bps))
            .max_frame_rate(FrameRate::from_hz(f32::from(frame_rate.max(1))))
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                u32::from(frame_rate.max(1)) * settings.intra_period_seconds.max(1),
            ));
        // Without rate control the quantiser is fixed, and openh264's default range stays.
        let config = if settings.target_bps.is_some() {
            config.qp(QpRange::new(MIN_QP, settings.max_qp.clamp(MIN_QP, 51)))
        } else {
            config
        };
        let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)?;
        log_openh264_messages(&mut encoder);
        let (width, height) = encoded_size(width, height);
        let i420 = YuvPlanarImageMut::alloc(
            u32::from(width),
            u32::from(height),
            YuvChromaSubsampling::Yuv420,
        );
        Ok(Self {
            encoder,
            width,
            height,
            i420,
            converted: false,
            frame_rate: frame_rate.max(1),
            encoded: 0,
            rate_control_stale: false,
            bucket: settings
                .target_bps
                .map(|b| Bucket::new(b.max(MIN_TARGET_BPS))),
        })
    }

    /// The presentation time of the next frame encoded, as if every frame came at the configured
    /// rate. The rate control then gives each frame its share of a second, whatever the gaps: with
    /// real times, the frames the bucket dropped made the rate control give the next frame more,
    /// which the bucket dropped again (scrolling fell to 6 fps in docs/PERFORMANCE.md's bench).
    fn next_timestamp(&mut self) -> openh264::Timestamp {
        let ms = self.encoded * 1000 / u64::from(self.frame_rate);
        self.encoded += 1;
        openh264::Timestamp::from_millis(ms)
    }

    /// The bits a second this encoder aims at now (`None`: no rate control).
    pub fn target_bps(&self) -> Option<u32> {
        self.bucket.as_ref().map(|b| b.bps)
    }

    /// Moves the target to `bps` without a new keyframe: the bucket's rate at once, and openh264's
    /// rate control at its share of it (once openh264 is initialised, at the first frame). Nothing
    /// for an encoder without rate control.
    pub fn set_target_bps(&mut self, bps: u32) -> Result<(), EncodeError> {
        let Some(bucket) = self.bucket.as_mut() else {
            return Ok(());
        };
        if bucket.bps == bps {
            return Ok(());
        }
        bucket.bps = bps;
        self.rate_control_stale = true;
        if self.encoded > 0 {
            self.apply_rate_control()?;
        }
        Ok(())
    }

    /// Gives openh264's rate control its share of the bucket's rate.
    #[allow(unsafe_code)]
    fn apply_rate_control(&mut self) -> Result<(), EncodeError> {
        let Some(bps) = self.bucket.as_ref().map(|b| b.bps) else {
            return Ok(());
        };
        self.rate_control_stale = false;
        let mut info = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
            iBitrate: i32::try_from((f64::from(bps) * RATE_CONTROL_SHARE) as u32)
                .unwrap_or(i32::MAX),
        };
        // SAFETY: the encoder is initialised (made in `with_settings`), and ENCODER_OPTION_BITRATE
        // reads one SBitrateInfo through the pointer during the call only.
        let rc = unsafe {
            self.encoder.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_BITRATE,
                std::ptr::addr_of_mut!(info).cast(),
            )
        };
        if rc != 0 {
            return Err(EncodeError::Option(format!(
                "a target of {bps} bit/s refused ({rc})"
            )));
        }
        Ok(())
    }

    /// Width and height.
    pub fn size(&self) -> (u16, u16) {
        (self.width, self.height)
    }

    /// The luma plane of the last frame given to [`encode_bgra`](Self::encode_bgra), and its
    /// stride: what the encoder was asked to reproduce (for PSNR measurements).
    pub fn input_luma(&self) -> (&[u8], usize) {
        (self.i420.y_plane.borrow(), self.i420.y_stride as usize)
    }

    /// Encodes one captured BGRA frame (converted to I420 with the `yuv` crate); a keyframe when
    /// asked. The frame may be larger than the encoder by an odd last column or row.
    ///
    /// `rows` (top inclusive, bottom exclusive) are the only rows that changed since the previous
    /// call with the same frame buffer; only they are converted again (`None`: all of them).
    /// `Ok(None)` is a frame the rate control skipped: nothing to send, not an error (a keyframe
    /// asked for is then still owed, and the caller asks again).
    pub fn encode_bgra(
        &mut self,
        frame: &Frame,
        rows: Option<(u16, u16)>,
        keyframe: bool,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        self.encode_bgra_at(frame, rows, keyframe, Instant::now())
    }

    /// [`H264Encoder::encode_bgra`] at `now` on the caller's clock, which refills the bit budget
    /// (the capture loop's pace, or a test's virtual time).
    pub fn encode_bgra_at(
        &mut self,
        frame: &Frame,
        rows: Option<(u16, u16)>,
        keyframe: bool,
        now: Instant,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        if frame.width & !1 != self.width || frame.height & !1 != self.height {
            return Err(EncodeError::WrongSize {
                got: frame.bgra.len(),
                want: usize::from(self.width) * usize::from(self.height) * 4,
                width: self.width,
                height: self.height,
            });
        }
        self.convert(frame, rows)?;
        if let Some(bucket) = self.bucket.as_mut() {
            if !bucket.open(now) {
                return Ok(None);
            }
        }
        let timestamp = self.next_timestamp();
        let (w, h) = (usize::from(self.width), usize::from(self.height));
        let strides = (
            self.i420.y_stride as usize,
            self.i420.u_stride as usize,
            self.i420.v_stride as usize,
        );
        let planes = (
            self.i420.y_plane.borrow(),
            self.i420.u_plane.borrow(),
            self.i420.v_plane.borrow(),
        );
        let yuv = YUVSlices::new(planes, (w, h), strides);
        if keyframe {
            self.encoder.force_intra_frame();
        }
        let stream = self.encoder.encode_at(&yuv, timestamp)?;
        let out = Self::finish(&stream);
        if let (Some(bucket), Some(f)) = (self.bucket.as_mut(), out.as_ref()) {
            bucket.spend(f.data.len());
        }
        if self.rate_control_stale {
            self.apply_rate_control()?;
        }
        Ok(out)
    }

    /// BGRA to I420 for the rows `rows` (all when `None`), widened to whole chroma rows.
    fn convert(&mut self, frame: &Frame, rows: Option<(u16, u16)>) -> Result<(), EncodeError> {
        let stride = u32::try_from(frame.stride)
            .map_err(|_| EncodeError::Convert("stride too large".into()))?;
        let (top, bottom) = match rows {
            Some((t, b)) if self.converted => (t & !1, (b.saturating_add(1) & !1).min(self.height)),
            _ => (0, self.height),
        };
        if top >= bottom {
            return Ok(());
        }
        let (t, b) = (usize::from(top), usize::from(bottom));
        let (ys, us, vs) = (
            self.i420.y_stride as usize,
            self.i420.u_stride as usize,
            self.i420.v_stride as usize,
        );
        let mut band = YuvPlanarImageMut {
            y_plane: BufferStoreMut::Borrowed(&mut self.i420.y_plane.borrow_mut()[t * ys..b * ys]),
            y_stride: self.i420.y_stride,
            u_plane: BufferStoreMut::Borrowed(
                &mut self.i420.u_plane.borrow_mut()[t / 2 * us..b / 2 * us],
            ),
            u_stride: self.i420.u_stride,
            v_plane: BufferStoreMut::Borrowed(
                &mut self.i420.v_plane.borrow_mut()[t / 2 * vs..b / 2 * vs],
            ),
            v_stride: self.i420.v_stride,
            width: self.i420.width,
            height: u32::from(bottom - top),
        };
        let src = frame
            .bgra
            .get(t * frame.stride..)
            .ok_or_else(|| EncodeError::Convert("rows outside the frame".into()))?;
        bgra_to_yuv420(
            &mut band,
            src,
            stride,
            YuvRange::Limited,
            YuvStandardMatrix::Bt601,
            YuvConversionMode::Balanced,
        )
        .map_err(|e| EncodeError::Convert(e.to_string()))?;
        self.converted = true;
        Ok(())
    }

    /// The access unit, or `None` when the encoder skipped the frame.
    fn finish(stream: &openh264::encoder::EncodedBitStream<'_>) -> Option<EncodedFrame> {
        // Only an IDR picture (with its SPS and PPS) lets decoding, and a recording file, start here.
        let keyframe = matches!(stream.frame_type(), FrameType::IDR);
        let data = stream.to_vec();
        if data.is_empty() || matches!(stream.frame_type(), FrameType::Skip) {
            return None;
        }
        Some(EncodedFrame { data, keyframe })
    }

    /// Encodes one RGB frame (3 bytes per pixel, rows top to bottom); a keyframe when asked. An
    /// encoder with rate control may skip it: that is [`EncodeError::Empty`] here.
    pub fn encode_rgb(&mut self, rgb: &[u8], keyframe: bool) -> Result<EncodedFrame, EncodeError> {
        let (w, h) = (usize::from(self.width), usize::from(self.height));
        if rgb.len() != w * h * 3 {
            return Err(EncodeError::WrongSize {
                got: rgb.len(),
                want: w * h * 3,
                width: self.width,
                height: self.height,
            });
        }
        let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(rgb, (w, h)));
        if keyframe {
            self.encoder.force_intra_frame();
        }
        let timestamp = self.next_timestamp();
        let stream = self.encoder.encode_at(&yuv, timestamp)?;
        Self::finish(&stream).ok_or(EncodeError::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BGRA frame of noise (hard to compress) from `seed`.
    fn noise(width: u16, height: u16, seed: &mut u32) -> Frame {
        let mut bgra = vec![0u8; usize::from(width) * usize::from(height) * 4];
        for b in bgra.iter_mut() {
            *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *b = (*seed >> 16) as u8;
        }
        Frame {
            width,
            height,
            stride: usize::from(width) * 4,
            bgra,
        }
    }

    #[test]
    fn the_target_follows_the_pixels_with_a_floor() {
        assert_eq!(target_bitrate(1920, 1080), TARGET_BPS_1080P);
        assert_eq!(target_bitrate(3840, 2160), 4 * TARGET_BPS_1080P);
        assert_eq!(target_bitrate(320, 240), MIN_TARGET_BPS);
    }

    #[test]
    fn converting_only_the_changed_rows_gives_the_same_picture_as_converting_all() {
        let mut seed = 3;
        let a = noise(64, 48, &mut seed);
        let mut b = a.clone();
        // Rows 9 to 20 change (an odd top and bottom: whole chroma rows around them are redone).
        let changed = noise(64, 12, &mut seed);
        b.bgra[9 * 256..21 * 256].copy_from_slice(&changed.bgra);
        let mut partial = H264Encoder::new(64, 48, 10).unwrap();
        partial.encode_bgra(&a, None, false).unwrap();
        partial.encode_bgra(&b, Some((9, 21)), false).unwrap();
        let mut whole = H264Encoder::new(64, 48, 10).unwrap();
        whole.encode_bgra(&b, None, false).unwrap();
        assert_eq!(partial.input_luma(), whole.input_luma());
        assert_eq!(partial.i420.u_plane.borrow(), whole.i420.u_plane.borrow());
        assert_eq!(partial.i420.v_plane.borrow(), whole.i420.v_plane.borrow());
        // Nothing changed: nothing converted, and the picture stays.
        partial.encode_bgra(&b, Some((0, 0)), false).unwrap();
        assert_eq!(partial.input_luma(), whole.input_luma());
    }

    #[test]
    fn a_frame_over_budget_is_skipped_not_an_error_and_a_keyframe_asked_comes() {
        let (w, h) = (320, 240);
        let mut enc =
            H264Encoder::with_settings(w, h, 30, EncoderSettings::streamer(w, h)).unwrap();
        let mut seed = 11;
        let mut sent = 0;
        // Virtual time: however slowly this machine encodes, the budget refills only as the test
        // moves its clock on.
        let start = Instant::now();
        for n in 0..60 {
            let out = enc
                .encode_bgra_at(&noise(w, h, &mut seed), None, n == 0, start)
                .unwrap();
            if let Some(f) = out {
                sent += 1;
                assert!(n > 0 || f.keyframe, "the first frame is an IDR picture");
            }
        }
        // Sixty frames of noise at one instant, each over the budget: the first goes (the bucket
        // is empty, not below zero); the rest wait for it to refill.
        assert!(
            sent <= 2,
            "{sent} of 60 frames of noise at {MIN_TARGET_BPS} bit/s"
        );
        // A keyframe asked for while over budget arrives once the bucket has refilled, within
        // the seconds the frame's bits take at the rate.
        let got = (1..=40).find_map(|n| {
            let at = start + std::time::Duration::from_millis(100) * n;
            enc.encode_bgra_at(&noise(w, h, &mut seed), None, true, at)
                .unwrap()
                .filter(|f| f.keyframe)
                .map(|_| n)
        });
        assert!(got.is_some_and(|n| n > 1), "{got:?}");
    }
}
