//! Fuzz target: the recorder's input. A sequence of protocol frames (video configurations and
//! frames, as a streamer sends them) goes into the fMP4 writer the way the relay's recorder feeds
//! it: a file starts at a keyframe carrying SPS and PPS, a configuration change or new parameter
//! sets start the next file, a frame the writer refuses ends the recording. Whatever happens:
//! nothing panics, and every byte the writer handed out reads back, as a player reads it, as
//! exactly the samples it was given, in order (a finished file whole; an interrupted file up to
//! its last complete fragment, which is what the relay keeps).
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{FrameDecoder, Message};
use recording_fmp4::{read_samples, split_access_unit, Fmp4File};

struct Writing {
    file: Fmp4File,
    bytes: Vec<u8>,
    /// Every sample pushed: keyframe flag and data.
    pushed: Vec<(bool, Vec<u8>)>,
    /// How many of them are in `bytes`.
    flushed: usize,
}

impl Writing {
    /// Checks that the bytes so far read back as the flushed samples.
    fn check(&self) {
        if self.flushed == 0 {
            assert!(self.bytes.is_empty(), "bytes out before any fragment");
            return;
        }
        let read = read_samples(&self.bytes).expect("what the writer handed out reads back");
        assert_eq!(read.len(), self.flushed, "every flushed sample reads back");
        for (i, (r, (keyframe, data))) in read.iter().zip(&self.pushed).enumerate() {
            assert_eq!(r.keyframe, *keyframe, "sample {i}'s keyframe flag");
            assert_eq!(&r.data, data, "sample {i}'s bytes");
            assert!(r.duration > 0, "sample {i} lasts");
        }
        for pair in read.windows(2) {
            assert!(pair[0].timestamp < pair[1].timestamp, "time goes forward");
        }
    }

    fn finish(mut self, last_frame_us: u64) {
        match self.file.finish(last_frame_us) {
            Ok(Some(tail)) => {
                self.bytes.extend_from_slice(&tail);
                self.flushed = self.pushed.len();
            }
            Ok(None) => assert!(self.pushed.is_empty(), "finish dropped samples"),
            Err(_) => {}
        }
        self.check();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::new();
    decoder.feed(data);
    let mut open: Option<Writing> = None;
    let mut configured = false;
    let mut frame_us = 33_333;
    while let Ok(Some(message)) = decoder.next_message() {
        let frame = match message {
            Message::VideoConfig(config) => {
                // The recorder starts a new file on a monitor, rate or orientation change; a
                // changed size comes with new parameter sets. Either way, the file ends here.
                if let Some(w) = open.take() {
                    w.finish(frame_us);
                }
                frame_us = 1_000_000 / u64::from(config.frame_rate.max(1));
                configured = true;
                continue;
            }
            Message::VideoFrame(frame) if configured => frame,
            // Other messages are not the recorder's; a frame before any configuration ends it.
            Message::VideoFrame(_) => break,
            _ => continue,
        };
        let Ok(au) = split_access_unit(&frame.payload) else {
            break;
        };
        if frame.keyframe {
            if let (Some(w), Some(sets)) = (&open, &au.parameter_sets) {
                if w.file.parameter_sets() != sets {
                    if let Some(w) = open.take() {
                        w.finish(frame_us);
                    }
                }
            }
        }
        if open.is_none() {
            let (true, Some(sets)) = (frame.keyframe, au.parameter_sets.clone()) else {
                break;
            };
            let Ok(file) = Fmp4File::new(sets) else { break };
            open = Some(Writing {
                file,
                bytes: Vec::new(),
                pushed: Vec::new(),
                flushed: 0,
            });
        }
        let Some(w) = open.as_mut() else { break };
        let before = w.pushed.len();
        match w
            .file
            .push(frame.timestamp_us, frame.keyframe, au.sample.clone())
        {
            Ok(out) => {
                w.pushed.push((frame.keyframe, au.sample));
                if let Some(bytes) = out {
                    w.bytes.extend_from_slice(&bytes);
                    w.flushed = before;
                }
            }
            // The recorder ends the session and keeps what was written.
            Err(_) => {
                if let Some(w) = open.take() {
                    w.check();
                }
                return;
            }
        }
    }
    if let Some(w) = open.take() {
        w.finish(frame_us);
    }
});
