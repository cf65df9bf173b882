//! Real H.264 for recording tests: an openh264 encoder drawing moving content, a checker that parses
//! recorded files as fragmented MP4 and decodes every frame with openh264.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use protocol::{Message, Orientation, VideoCodec, VideoConfig, VideoFrame};
use shiguredo_mp4::bitstream::h264::{length_prefixed_to_annexb, LengthSize};
use shiguredo_mp4::boxes::SampleEntry;
use shiguredo_mp4::demux::{DemuxError, Fmp4FileDemuxer, Input};
use streamer_agent::encode::H264Encoder;
use streamer_agent::pattern::{PatternKind, TestPattern};

/// A streamer's video: generated content encoded by the streamer agent's H.264 encoder.
pub struct TestEncoder {
    encoder: H264Encoder,
    pattern: TestPattern,
    pub width: u16,
    pub height: u16,
    pub frame_rate: u16,
    pub monitor_id: u32,
    /// Microseconds of the next frame.
    pub timestamp_us: u64,
}

impl TestEncoder {
    pub fn new(width: u16, height: u16, frame_rate: u16, monitor_id: u32) -> Self {
        Self {
            encoder: H264Encoder::new(width, height, frame_rate).unwrap(),
            pattern: TestPattern::new(width, height, PatternKind::Moving),
            width,
            height,
            frame_rate,
            monitor_id,
            timestamp_us: 0,
        }
    }

    /// Content that compresses badly, for size-cap tests.
    pub fn noisy(mut self) -> Self {
        self.pattern = TestPattern::new(self.width, self.height, PatternKind::Noise);
        self
    }

    /// Continues the timeline of another encoder (a new configuration mid-session).
    pub fn starting_at(mut self, timestamp_us: u64) -> Self {
        self.timestamp_us = timestamp_us;
        self
    }

    pub fn config(&self) -> Message {
        Message::VideoConfig(VideoConfig {
            codec: VideoCodec::H264,
            width: self.width,
            height: self.height,
            frame_rate: self.frame_rate,
            monitor_id: self.monitor_id,
            orientation: if self.height > self.width {
                Orientation::Portrait
            } else {
                Orientation::Landscape
            },
        })
    }

    /// The next frame; a keyframe when `key` is set (and always for the first).
    pub fn frame(&mut self, key: bool) -> Message {
        let encoded = self
            .encoder
            .encode_rgb(&self.pattern.next_rgb(), key)
            .unwrap();
        let msg = Message::VideoFrame(VideoFrame {
            keyframe: encoded.keyframe,
            timestamp_us: self.timestamp_us,
            payload: Bytes::from(encoded.data),
        });
        self.timestamp_us += 1_000_000 / u64::from(self.frame_rate);
        msg
    }
}

/// What a recorded file holds, checked by parsing and decoding it.
#[derive(Debug)]
pub struct Checked {
    pub frames: usize,
    pub decoded: usize,
    pub first_is_keyframe: bool,
    pub duration_ms: u64,
    pub width: u16,
    pub height: u16,
    pub fragments: usize,
}

/// Parses `bytes` as fragmented MP4 and decodes every sample with openh264.
pub fn check_file(bytes: &[u8]) -> Checked {
    assert_eq!(
        &bytes[4..8],
        b"ftyp",
        "the file starts with its own init segment"
    );
    let fragments = count_boxes(bytes, b"moof");
    let mut demuxer = Fmp4FileDemuxer::new();
    let feed = |demuxer: &mut Fmp4FileDemuxer, required: shiguredo_mp4::demux::RequiredInput| {
        let start = required.position as usize;
        let end = required
            .size
            .map_or(bytes.len(), |s| (start + s).min(bytes.len()));
        demuxer.handle_input(Input {
            position: required.position,
            data: bytes.get(start..end).unwrap_or(&[]),
        });
    };
    let tracks = loop {
        match demuxer.tracks() {
            Ok(tracks) => break tracks.to_vec(),
            Err(DemuxError::InputRequired(required)) => feed(&mut demuxer, required),
            Err(e) => panic!("not a fragmented MP4 file: {e}"),
        }
    };
    assert_eq!(tracks.len(), 1, "one video track");
    let timescale = u64::from(tracks[0].timescale.get());
    let mut decoder = openh264::decoder::Decoder::new().unwrap();
    let (mut frames, mut decoded, mut ticks) = (0, 0, 0u64);
    let (mut width, mut height) = (0, 0);
    let mut first_is_keyframe = false;
    let mut parameter_sets = Vec::new();
    let mut samples = Vec::new();
    loop {
        let required = match demuxer.next_sample() {
            Ok(None) => break,
            Ok(Some(sample)) => {
                if let Some(SampleEntry::Avc1(avc1)) = sample.sample_entry {
                    width = avc1.visual.width;
                    height = avc1.visual.height;
                    parameter_sets.clear();
                    for nal in avc1
                        .avcc_box
                        .sps_list
                        .iter()
                        .chain(avc1.avcc_box.pps_list.iter())
                    {
                        parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
                        parameter_sets.extend_from_slice(nal);
                    }
                }
                if frames == 0 {
                    first_is_keyframe = sample.keyframe;
                }
                ticks += u64::from(sample.duration);
                let start = sample.data_offset as usize;
                samples.push(bytes[start..start + sample.data_size].to_vec());
                frames += 1;
                continue;
            }
            Err(DemuxError::InputRequired(required)) => required,
            Err(e) => panic!("a fragment does not parse: {e}"),
        };
        feed(&mut demuxer, required);
    }
    for (i, data) in samples.iter().enumerate() {
        let mut annexb = if i == 0 {
            parameter_sets.clone()
        } else {
            Vec::new()
        };
        annexb.extend(length_prefixed_to_annexb(data, LengthSize::FourBytes).unwrap());
        if decoder
            .decode(&annexb)
            .unwrap_or_else(|e| panic!("frame {i} does not decode: {e}"))
            .is_some()
        {
            decoded += 1;
        }
    }
    decoded += decoder.flush_remaining().unwrap().len();
    Checked {
        frames,
        decoded,
        first_is_keyframe,
        duration_ms: ticks * 1000 / timescale,
        width,
        height,
        fragments,
    }
}

fn count_boxes(bytes: &[u8], kind: &[u8; 4]) -> usize {
    let (mut offset, mut n) = (0usize, 0);
    while offset + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        if &bytes[offset + 4..offset + 8] == kind {
            n += 1;
        }
        if size < 8 {
            break;
        }
        offset += size;
    }
    n
}
