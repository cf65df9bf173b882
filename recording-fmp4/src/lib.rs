//! One recording file as fragmented MP4: an init segment, then one `moof`+`mdat` fragment per
//! keyframe interval (or per 2 seconds or 2 MiB, whichever comes first).
//!
//! The H.264 access units are stored as received: only their framing changes, from Annex B start
//! codes to the length prefixes MP4 wants, and the parameter sets move into the init segment. Nothing
//! is decoded or re-encoded. The boxes are built by `shiguredo_mp4`.

use std::num::NonZeroU32;

use shiguredo_mp4::bitstream::h264::{
    build_avc1_box, parse_annexb_nal_units, H264NalUnitType, H264SampleEntryConfig, LengthSize,
};
use shiguredo_mp4::boxes::SampleEntry;
use shiguredo_mp4::mux::{Fmp4SegmentMuxer, Sample};
use shiguredo_mp4::TrackKind;

/// Media timescale: the usual 90 kHz video clock.
pub const TIMESCALE: u32 = 90_000;
/// A fragment is flushed when it spans this long...
const FRAGMENT_MAX_US: u64 = 2_000_000;
/// ...or holds this many bytes.
const FRAGMENT_MAX_BYTES: usize = 2 * 1024 * 1024;
/// Bytes of `moof` metadata per sample, and per fragment, for size estimates.
const PER_SAMPLE_OVERHEAD: usize = 16;
const PER_FRAGMENT_OVERHEAD: usize = 256;
/// Bytes of the closing `mfra` index: fixed, and per fragment (a 64-bit `tfra` entry is 19 bytes).
const MFRA_OVERHEAD: usize = 64;
const MFRA_PER_FRAGMENT: usize = 24;

/// Why an access unit cannot be written (the streamer's fault, or a muxer failure).
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// The access unit is not valid Annex B H.264.
    #[error("the video frame is not valid H.264: {0}")]
    BadBitstream(String),
    /// A file must start with a keyframe that carries SPS and PPS.
    #[error("a recording file must start with a keyframe carrying SPS and PPS")]
    NoParameterSets,
    /// Timestamps went backwards.
    #[error("video timestamps went backwards ({previous} us, then {current} us)")]
    TimestampBackwards {
        /// The previous frame's timestamp.
        previous: u64,
        /// This frame's timestamp.
        current: u64,
    },
    /// One frame would last longer than a sample can say (over 13 hours at 90 kHz).
    #[error("a video frame lasts over 13 hours (timestamps {start} us, then {end} us)")]
    FrameTooLong {
        /// The frame's timestamp.
        start: u64,
        /// The next frame's.
        end: u64,
    },
    /// The MP4 muxer refused the fragment.
    #[error("building the MP4 fragment failed: {0}")]
    Mux(String),
}

/// The parameter sets of an H.264 stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
}

/// An access unit split into its parameter sets and its sample data (length-prefixed).
#[derive(Debug)]
pub struct AccessUnit {
    /// SPS and PPS, when the unit carries them.
    pub parameter_sets: Option<ParameterSets>,
    /// The remaining NAL units with 4-byte length prefixes.
    pub sample: Vec<u8>,
}

/// Splits an Annex B access unit into parameter sets and MP4 sample data.
pub fn split_access_unit(annexb: &[u8]) -> Result<AccessUnit, Fmp4Error> {
    let nals =
        parse_annexb_nal_units(annexb).map_err(|e| Fmp4Error::BadBitstream(e.to_string()))?;
    let (mut sps, mut pps) = (Vec::new(), Vec::new());
    let mut sample = Vec::with_capacity(annexb.len());
    for nal in nals {
        match nal.nal_unit_type {
            H264NalUnitType::Sps => sps.push(nal.data.to_vec()),
            H264NalUnitType::Pps => pps.push(nal.data.to_vec()),
            // Access unit delimiters have no place in MP4 samples.
            H264NalUnitType::Aud => {}
            _ => {
                let len = u32::try_from(nal.data.len())
                    .map_err(|_| Fmp4Error::BadBitstream("NAL unit over 4 GiB".into()))?;
                sample.extend_from_slice(&len.to_be_bytes());
                sample.extend_from_slice(nal.data);
            }
        }
    }
    if sample.is_empty() {
        return Err(Fmp4Error::BadBitstream(
            "the access unit holds no picture".into(),
        ));
    }
    let parameter_sets = (!sps.is_empty() && !pps.is_empty()).then_some(ParameterSets { sps, pps });
    Ok(AccessUnit {
        parameter_sets,
        sample,
    })
}

struct Pending {
    timestamp_us: u64,
    keyframe: bool,
    data: Vec<u8>,
}

/// Builds one fragmented MP4 file, fragment by fragment.
pub struct Fmp4File {
    muxer: Fmp4SegmentMuxer,
    entry: SampleEntry,
    parameter_sets: ParameterSets,
    entry_sent: bool,
    init_written: bool,
    pending: Vec<Pending>,
    pending_bytes: usize,
    first_timestamp_us: Option<u64>,
    last_timestamp_us: Option<u64>,
    frames: u64,
    /// Bytes handed out so far.
    written: u64,
    /// Total media duration handed out so far, in timescale ticks.
    ticks: u64,
    /// Fragments handed out so far.
    fragments: usize,
}

impl std::fmt::Debug for Fmp4File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fmp4File")
            .field("frames", &self.frames)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

fn ticks(us: u64) -> u64 {
    // Rounded from absolute times, so that durations add up without drift.
    (u128::from(us) * u128::from(TIMESCALE) / 1_000_000) as u64
}

impl Fmp4File {
    /// A file whose codec configuration comes from these parameter sets.
    pub fn new(parameter_sets: ParameterSets) -> Result<Self, Fmp4Error> {
        let config = H264SampleEntryConfig {
            length_size: LengthSize::FourBytes,
        };
        let avc1 = build_avc1_box(&parameter_sets.sps, &parameter_sets.pps, &config)
            .map_err(|e| Fmp4Error::BadBitstream(e.to_string()))?;
        let muxer = Fmp4SegmentMuxer::new().map_err(|e| Fmp4Error::Mux(e.to_string()))?;
        Ok(Self {
            muxer,
            entry: SampleEntry::Avc1(avc1),
            parameter_sets,
            entry_sent: false,
            init_written: false,
            pending: Vec::new(),
            pending_bytes: 0,
            first_timestamp_us: None,
            last_timestamp_us: None,
            frames: 0,
            written: 0,
            ticks: 0,
            fragments: 0,
        })
    }

    /// The parameter sets this file was configured with.
    pub fn parameter_sets(&self) -> &ParameterSets {
        &self.parameter_sets
    }

    /// Bytes written so far plus a close estimate of what the pending fragment will add.
    pub fn projected_size(&self) -> u64 {
        let pending = if self.pending.is_empty() {
            0
        } else {
            self.pending_bytes + self.pending.len() * PER_SAMPLE_OVERHEAD + PER_FRAGMENT_OVERHEAD
        };
        let init = if self.init_written { 0 } else { 1024 };
        // The closing `mfra` index: a header and one entry per fragment.
        let index = MFRA_OVERHEAD + MFRA_PER_FRAGMENT * (self.fragments + 1);
        self.written + (pending + init + index) as u64
    }

    /// What adding a sample of `len` bytes costs at most, for size checks.
    pub fn sample_cost(len: usize) -> u64 {
        (len + PER_SAMPLE_OVERHEAD + PER_FRAGMENT_OVERHEAD) as u64
    }

    /// Frames handed out or pending.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Adds a sample. Returns the bytes to append to the file: a finished fragment (preceded by the
    /// init segment the first time), when this sample starts a new one.
    pub fn push(
        &mut self,
        timestamp_us: u64,
        keyframe: bool,
        sample: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, Fmp4Error> {
        self.check(timestamp_us)?;
        let span = self
            .pending
            .first()
            .map_or(0, |first| timestamp_us.saturating_sub(first.timestamp_us));
        // The first fragment holds the first frame alone, so that a file holds media (its init
        // segment and its keyframe) as soon as that frame's duration is known: a file is never
        // left with nothing playable in it for long.
        let flush = !self.pending.is_empty()
            && (self.fragments == 0
                || keyframe
                || span >= FRAGMENT_MAX_US
                || self.pending_bytes + sample.len() > FRAGMENT_MAX_BYTES);
        let out = if flush {
            self.flush(timestamp_us)?
        } else {
            None
        };
        self.first_timestamp_us.get_or_insert(timestamp_us);
        self.last_timestamp_us = Some(timestamp_us);
        self.pending_bytes += sample.len();
        self.pending.push(Pending {
            timestamp_us,
            keyframe,
            data: sample,
        });
        self.frames += 1;
        Ok(out)
    }

    /// Whether a frame at `timestamp_us` can be added: time must not go backwards, and the frame
    /// before it must not last longer than a sample can say. Checked by [`Fmp4File::push`] too;
    /// callers that must decide before they act (the relay forwards only what it records) ask first.
    pub fn check(&self, timestamp_us: u64) -> Result<(), Fmp4Error> {
        let Some(previous) = self.last_timestamp_us else {
            return Ok(());
        };
        if timestamp_us < previous {
            return Err(Fmp4Error::TimestampBackwards {
                previous,
                current: timestamp_us,
            });
        }
        let first = self.first_timestamp_us.unwrap_or(previous);
        let lasts = ticks(timestamp_us - first) - ticks(previous - first);
        if u32::try_from(lasts).is_err() {
            return Err(Fmp4Error::FrameTooLong {
                start: previous,
                end: timestamp_us,
            });
        }
        Ok(())
    }

    /// Ends the file: flushes the pending fragment, the last frame lasting `last_frame_us`, and adds
    /// the random-access index (`mfra`) that lets players seek without reading every fragment.
    pub fn finish(&mut self, last_frame_us: u64) -> Result<Option<Vec<u8>>, Fmp4Error> {
        let Some(last) = self.pending.last() else {
            return Ok(None);
        };
        let end = last.timestamp_us.saturating_add(last_frame_us.max(1));
        let mut out = self.flush(end)?.unwrap_or_default();
        let index = self
            .muxer
            .mfra_bytes()
            .map_err(|e| Fmp4Error::Mux(e.to_string()))?;
        self.written += index.len() as u64;
        out.extend_from_slice(&index);
        Ok(Some(out))
    }

    /// Media duration of what was handed out, in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.ticks * 1000 / u64::from(TIMESCALE)
    }

    /// Writes the pending samples as one fragment; `next_timestamp_us` ends the last one.
    fn flush(&mut self, next_timestamp_us: u64) -> Result<Option<Vec<u8>>, Fmp4Error> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let timescale =
            NonZeroU32::new(TIMESCALE).ok_or_else(|| Fmp4Error::Mux("zero timescale".into()))?;
        let first = self.first_timestamp_us.unwrap_or(0);
        let mut samples = Vec::with_capacity(self.pending.len());
        let mut offset = 0u64;
        for (i, p) in self.pending.iter().enumerate() {
            let next = self
                .pending
                .get(i + 1)
                .map_or(next_timestamp_us, |n| n.timestamp_us);
            let start = ticks(p.timestamp_us - first);
            let end = ticks(next.max(p.timestamp_us) - first);
            // Every sample lasts at least one tick: zero durations confuse players.
            let duration = u32::try_from(end.saturating_sub(start).max(1)).map_err(|_| {
                Fmp4Error::FrameTooLong {
                    start: p.timestamp_us,
                    end: next,
                }
            })?;
            samples.push(Sample {
                track_kind: TrackKind::Video,
                sample_entry: if self.entry_sent {
                    None
                } else {
                    Some(self.entry.clone())
                },
                keyframe: p.keyframe,
                timescale,
                duration,
                composition_time_offset: None,
                data_offset: offset,
                data_size: p.data.len(),
            });
            self.entry_sent = true;
            offset += p.data.len() as u64;
        }
        let header = self
            .muxer
            .create_media_segment_metadata(&samples)
            .map_err(|e| Fmp4Error::Mux(e.to_string()))?;
        let mut out = Vec::with_capacity(header.len() + self.pending_bytes + 1024);
        if !self.init_written {
            let init = self
                .muxer
                .init_segment_bytes()
                .map_err(|e| Fmp4Error::Mux(e.to_string()))?;
            out.extend_from_slice(&init);
            self.init_written = true;
        }
        out.extend_from_slice(&header);
        for p in self.pending.drain(..) {
            out.extend_from_slice(&p.data);
        }
        self.ticks += samples.iter().map(|s| u64::from(s.duration)).sum::<u64>();
        self.pending_bytes = 0;
        self.fragments += 1;
        self.written += out.len() as u64;
        Ok(Some(out))
    }
}

/// One sample read back from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSample {
    /// Decode time in [`TIMESCALE`] ticks from the file's start.
    pub timestamp: u64,
    /// Duration in ticks.
    pub duration: u32,
    /// Whether the sample is marked as a sync sample.
    pub keyframe: bool,
    /// The sample's bytes (length-prefixed NAL units).
    pub data: Vec<u8>,
}

/// Reads a whole file back as a player would: its one video track and every sample in order.
/// Used to check what the writer produced (tests, fuzzing); the relay serves files as they are.
pub fn read_samples(file: &[u8]) -> Result<Vec<ReadSample>, Fmp4Error> {
    use shiguredo_mp4::demux::{DemuxError, Fmp4FileDemuxer, Input, RequiredInput};
    let bad = |e: DemuxError| Fmp4Error::Mux(format!("the file does not read back: {e}"));
    let mut demuxer = Fmp4FileDemuxer::new();
    let mut last: Option<RequiredInput> = None;
    // Hands the demuxer what it asks for; asking twice for the same means the file ends early.
    let mut feed = |demuxer: &mut Fmp4FileDemuxer, required: RequiredInput| {
        if last == Some(required) {
            return Err(Fmp4Error::Mux(format!(
                "the file ends before the {} bytes at {} a reader needs",
                required.size.unwrap_or(0),
                required.position
            )));
        }
        last = Some(required);
        let start = usize::try_from(required.position)
            .unwrap_or(usize::MAX)
            .min(file.len());
        let end = required.size.map_or(file.len(), |size| {
            start.saturating_add(size).min(file.len())
        });
        demuxer.handle_input(Input {
            position: start as u64,
            data: &file[start..end],
        });
        Ok(())
    };
    let tracks = loop {
        match demuxer.tracks() {
            Err(DemuxError::InputRequired(required)) => feed(&mut demuxer, required)?,
            Err(e) => return Err(bad(e)),
            Ok(tracks) => break tracks.to_vec(),
        }
    };
    if tracks.len() != 1 || tracks[0].timescale.get() != TIMESCALE {
        return Err(Fmp4Error::Mux(format!(
            "the file should hold one video track at {TIMESCALE} Hz, not {tracks:?}"
        )));
    }
    let mut samples = Vec::new();
    loop {
        let sample = match demuxer.next_sample() {
            Err(DemuxError::InputRequired(required)) => {
                feed(&mut demuxer, required)?;
                continue;
            }
            Err(e) => return Err(bad(e)),
            Ok(None) => return Ok(samples),
            Ok(Some(s)) => (
                s.timestamp,
                s.duration,
                s.keyframe,
                s.data_offset,
                s.data_size,
            ),
        };
        let (timestamp, duration, keyframe, offset, size) = sample;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let data = start
            .checked_add(size)
            .and_then(|end| file.get(start..end))
            .ok_or_else(|| Fmp4Error::Mux("a sample lies outside the file".into()))?;
        samples.push(ReadSample {
            timestamp,
            duration,
            keyframe,
            data: data.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_units_without_pictures_or_start_codes_are_refused() {
        // Only an SPS: no picture.
        let sps_only = [0, 0, 0, 1, 0x67, 0x42, 0x00, 0x1e];
        assert!(matches!(
            split_access_unit(&sps_only),
            Err(Fmp4Error::BadBitstream(_))
        ));
        assert!(split_access_unit(&[]).is_err());
    }

    /// The load tests' fixture: 10 s of a real 1080p stream from the streamer's encoder.
    fn fixture() -> Vec<protocol::VideoFrame> {
        let mut decoder = protocol::FrameDecoder::new();
        decoder.feed(include_bytes!("../../tests/fixtures/typing-1080p30.h264"));
        let mut frames = Vec::new();
        while let Some(m) = decoder.next_message().unwrap() {
            if let protocol::Message::VideoFrame(f) = m {
                frames.push(f);
            }
        }
        frames
    }

    #[test]
    fn what_is_written_reads_back_sample_for_sample() {
        let frames = fixture();
        assert!(
            frames.len() > 90,
            "the fixture holds {} frames",
            frames.len()
        );
        let first = split_access_unit(&frames[0].payload).unwrap();
        let mut file = Fmp4File::new(first.parameter_sets.clone().unwrap()).unwrap();
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for f in &frames[..90] {
            let au = split_access_unit(&f.payload).unwrap();
            expected.push((f.keyframe, au.sample.clone()));
            bytes.extend(
                file.push(f.timestamp_us, f.keyframe, au.sample)
                    .unwrap()
                    .unwrap_or_default(),
            );
        }
        bytes.extend(file.finish(33_333).unwrap().unwrap());
        let read = read_samples(&bytes).unwrap();
        assert_eq!(read.len(), expected.len());
        for (i, (r, (keyframe, data))) in read.iter().zip(&expected).enumerate() {
            assert_eq!(r.keyframe, *keyframe, "sample {i}");
            assert_eq!(&r.data, data, "sample {i}");
            let at = ticks(frames[i].timestamp_us - frames[0].timestamp_us);
            assert_eq!(r.timestamp, at, "sample {i} is at its capture time");
        }
        // Cut in the middle of a fragment, the file does not read back.
        assert!(read_samples(&bytes[..bytes.len() / 2]).is_err());
    }

    /// Found by the `record` fuzz target: a timestamp near the top of `u64` overflowed at finish.
    #[test]
    fn timestamps_at_the_edge_are_refused_or_written_never_a_panic() {
        let frames = fixture();
        let first = split_access_unit(&frames[0].payload).unwrap();
        let sets = first.parameter_sets.clone().unwrap();
        let mut file = Fmp4File::new(sets.clone()).unwrap();
        assert!(file
            .push(u64::MAX - 5, true, first.sample.clone())
            .unwrap()
            .is_none());
        let tail = file.finish(33_333).unwrap().unwrap();
        assert_eq!(read_samples(&tail).unwrap().len(), 1);

        // A frame lasting 14 hours cannot be said in a sample: the streamer's fault, not storage's.
        let mut file = Fmp4File::new(sets).unwrap();
        assert!(file.push(0, true, first.sample.clone()).unwrap().is_none());
        let hours_14 = 14 * 3600 * 1_000_000;
        assert!(matches!(
            file.push(hours_14, true, first.sample),
            Err(Fmp4Error::FrameTooLong { start: 0, end }) if end == hours_14
        ));
    }

    #[test]
    fn a_slice_becomes_a_length_prefixed_sample() {
        let au = [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x41, 0x9a, 0x02];
        let split = split_access_unit(&au).unwrap();
        assert!(split.parameter_sets.is_none());
        assert_eq!(
            split.sample,
            vec![0, 0, 0, 3, 0x41, 0x9a, 0x02],
            "the AUD is dropped"
        );
    }
}
