//! H.264 encoding with openh264, configured for screen content, keyframes on request.

use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    UsageType,
};
use openh264::formats::{RgbSliceU8, YUVBuffer, YUVSlices};
use yuv::{
    bgra_to_yuv420, YuvChromaSubsampling, YuvConversionMode, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

use crate::capture::Frame;
use openh264::OpenH264API;

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

/// An H.264 encoder for one resolution and frame rate.
pub struct H264Encoder {
    encoder: Encoder,
    width: u16,
    height: u16,
    i420: YuvPlanarImageMut<'static, u8>,
    frame_rate: u16,
    frames: u64,
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
    /// An encoder with a keyframe every two seconds and whenever asked.
    pub fn new(width: u16, height: u16, frame_rate: u16) -> Result<Self, EncodeError> {
        // openh264's ScreenContentRealTime usage made every frame an IDR picture in our trials (7x
        // the bytes of P frames), so the camera usage is kept until issue 5 tunes screen content.
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .scene_change_detect(false)
            .skip_frames(false)
            .rate_control_mode(RateControlMode::Off)
            .bitrate(BitRate::from_bps(4_000_000))
            .max_frame_rate(FrameRate::from_hz(f32::from(frame_rate.max(1))))
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                u32::from(frame_rate.max(1)) * 2,
            ));
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)?;
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
            frame_rate: frame_rate.max(1),
            frames: 0,
        })
    }

    /// The presentation time of the next frame at the configured rate: the encoder's rate control
    /// and reference decisions need times that move.
    fn next_timestamp(&mut self) -> openh264::Timestamp {
        let ms = self.frames * 1000 / u64::from(self.frame_rate);
        self.frames += 1;
        openh264::Timestamp::from_millis(ms)
    }

    /// Width and height.
    pub fn size(&self) -> (u16, u16) {
        (self.width, self.height)
    }

    /// Encodes one captured BGRA frame (converted to I420 with the `yuv` crate); a keyframe when
    /// asked. The frame may be larger than the encoder by an odd last column or row.
    pub fn encode_bgra(
        &mut self,
        frame: &Frame,
        keyframe: bool,
    ) -> Result<EncodedFrame, EncodeError> {
        if frame.width & !1 != self.width || frame.height & !1 != self.height {
            return Err(EncodeError::WrongSize {
                got: frame.bgra.len(),
                want: usize::from(self.width) * usize::from(self.height) * 4,
                width: self.width,
                height: self.height,
            });
        }
        let timestamp = self.next_timestamp();
        bgra_to_yuv420(
            &mut self.i420,
            &frame.bgra,
            u32::try_from(frame.stride)
                .map_err(|_| EncodeError::Convert("stride too large".into()))?,
            YuvRange::Limited,
            YuvStandardMatrix::Bt601,
            YuvConversionMode::Balanced,
        )
        .map_err(|e| EncodeError::Convert(e.to_string()))?;
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
        Self::finish(&stream)
    }

    fn finish(
        stream: &openh264::encoder::EncodedBitStream<'_>,
    ) -> Result<EncodedFrame, EncodeError> {
        // Only an IDR picture (with its SPS and PPS) lets decoding, and a recording file, start here.
        let keyframe = matches!(stream.frame_type(), FrameType::IDR);
        let data = stream.to_vec();
        if data.is_empty() {
            return Err(EncodeError::Empty);
        }
        Ok(EncodedFrame { data, keyframe })
    }

    /// Encodes one RGB frame (3 bytes per pixel, rows top to bottom); a keyframe when asked.
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
        Self::finish(&stream)
    }
}
