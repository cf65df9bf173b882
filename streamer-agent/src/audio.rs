//! Live audio: the default input device captured with cpal, encoded as Opus in 20 ms packets, held
//! to real time (a device faster than real time has its surplus dropped).
//! Audio is streamed to the technician only; the relay never records it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use protocol::{AudioCodec, AudioFrame, Message};

/// Sample rates Opus encodes natively.
const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];
/// One Opus packet per 20 ms.
const PACKET_MS: u32 = 20;

/// Opus encoding of interleaved 16-bit PCM in 20 ms packets.
pub struct OpusPackets {
    encoder: opus::Encoder,
    channels: usize,
    frame_samples: usize,
    pending: Vec<i16>,
    out: Vec<u8>,
}

impl std::fmt::Debug for OpusPackets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusPackets")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl OpusPackets {
    /// An encoder for `sample_rate` (one Opus supports) and 1 or 2 channels.
    pub fn new(sample_rate: u32, channels: u16) -> Result<Self, String> {
        if !OPUS_RATES.contains(&sample_rate) {
            return Err(format!(
                "the audio device runs at {sample_rate} Hz, which Opus does not encode"
            ));
        }
        let layout = match channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            n => {
                return Err(format!(
                    "the audio device has {n} channels; 1 or 2 are supported"
                ))
            }
        };
        let encoder = opus::Encoder::new(sample_rate, layout, opus::Application::Voip)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            encoder,
            channels: usize::from(channels),
            frame_samples: (sample_rate * PACKET_MS / 1000) as usize,
            pending: Vec::new(),
            out: vec![0u8; 4000],
        })
    }

    /// Adds samples; returns the packets completed by them.
    pub fn push(&mut self, samples: &[i16]) -> Result<Vec<Vec<u8>>, String> {
        self.pending.extend_from_slice(samples);
        let per_packet = self.frame_samples * self.channels;
        let mut packets = Vec::new();
        while self.pending.len() >= per_packet {
            let n = self
                .encoder
                .encode(&self.pending[..per_packet], &mut self.out)
                .map_err(|e| e.to_string())?;
            packets.push(self.out[..n].to_vec());
            self.pending.drain(..per_packet);
        }
        Ok(packets)
    }
}

/// Holds live audio to real time: a packet is let through only while the audio sent so far is no
/// more than [`AudioPacer::MAX_AHEAD_MS`] ahead of the wall clock. A capture device that delivers
/// faster than real time (a null device, a broken driver) would otherwise flood the connection
/// (the relay refuses more than 1000 messages a second); what it delivers too early is dropped.
/// A source that falls behind is not made up for with a burst. Sans-IO: time is passed in.
#[derive(Debug, Default)]
pub struct AudioPacer {
    /// Milliseconds of audio let through, on the wall clock's scale.
    sent_ms: u64,
}

impl AudioPacer {
    /// How far audio may run ahead of the clock (jitter in the device's delivery).
    pub const MAX_AHEAD_MS: u64 = 100;

    /// Whether a packet of `PACKET_MS` may go now, `elapsed_ms` after capture started.
    pub fn admit(&mut self, elapsed_ms: u64) -> bool {
        // Behind (a pause in delivery): start again from now rather than catch up in a burst.
        if self.sent_ms + Self::MAX_AHEAD_MS < elapsed_ms {
            self.sent_ms = elapsed_ms;
        }
        if self.sent_ms > elapsed_ms + Self::MAX_AHEAD_MS {
            return false;
        }
        self.sent_ms += u64::from(PACKET_MS);
        true
    }
}

/// Live audio capture; stops when dropped.
#[derive(Debug)]
pub struct LiveAudio {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LiveAudio {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the end user's computer plays, where the platform can capture it.
///
/// Windows: the default output device in WASAPI loopback (cpal opens an input stream on an output
/// device as loopback), never a microphone. Linux: the default capture device, which the streamer's
/// command line points at the default sink's monitor on PulseAudio and PipeWire (`PULSE_SOURCE`,
/// set in `main.rs`; plain ALSA has no such thing and captures its default input). Under Wine loopback fails (`AUDCLNT_E_WRONG_ENDPOINT_TYPE`, no sound card)
/// and the session goes on without audio, saying why.
fn capture_device() -> Result<(cpal::Device, cpal::SupportedStreamConfig), String> {
    let host = cpal::default_host();
    #[cfg(windows)]
    {
        let device = host
            .default_output_device()
            .ok_or("this computer has no audio output device to capture")?;
        let config = device
            .default_output_config()
            .map_err(|e| format!("the audio output device: {e}"))?;
        Ok((device, config))
    }
    #[cfg(not(windows))]
    {
        let device = host
            .default_input_device()
            .ok_or("this computer has no audio input device")?;
        let config = device
            .default_input_config()
            .map_err(|e| format!("the audio input device: {e}"))?;
        Ok((device, config))
    }
}

/// Starts capturing what [`capture_device`] picks. On success the `AudioConfig` has been queued on `out`
/// and packets follow; on failure the reason is for an `AudioUnavailable` message.
///
/// Packets are dropped, not queued, when `out` is full: live audio that arrives late is useless.
pub fn start(out: tokio::sync::mpsc::Sender<Message>) -> Result<LiveAudio, String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    // cpal streams may not move between threads: the stream lives and dies on this one.
    let thread = std::thread::spawn(move || {
        let started = Instant::now();
        let setup = || -> Result<cpal::Stream, String> {
            let (device, config) = capture_device()?;
            let mut stream_config = config.config();
            // Opus takes 48 kHz (among a few others): ask the device for it when its default is
            // another rate; ALSA's default device converts.
            if !OPUS_RATES.contains(&stream_config.sample_rate) {
                stream_config.sample_rate = 48_000;
            }
            stream_config.channels = stream_config.channels.min(2);
            let (rate, channels) = (stream_config.sample_rate, stream_config.channels);
            let mut packets = OpusPackets::new(rate, channels)?;
            out.try_send(Message::AudioConfig {
                codec: AudioCodec::Opus,
                sample_rate: rate,
                channels: channels as u8,
            })
            .map_err(|_| "the session ended".to_owned())?;
            let out = out.clone();
            let mut pacer = AudioPacer::default();
            let mut send = move |pcm: &[i16]| {
                if let Ok(done) = packets.push(pcm) {
                    for p in done {
                        let elapsed = started.elapsed();
                        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                        if !pacer.admit(elapsed_ms) {
                            continue;
                        }
                        let timestamp_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                        let _ = out.try_send(Message::AudioFrame(AudioFrame {
                            timestamp_us,
                            payload: Bytes::from(p),
                        }));
                    }
                }
            };
            let stream = match config.sample_format() {
                cpal::SampleFormat::I16 => device.build_input_stream(
                    stream_config,
                    move |data: &[i16], _: &cpal::InputCallbackInfo| send(data),
                    |e| tracing::warn!(error = %e, "audio capture"),
                    None,
                ),
                cpal::SampleFormat::F32 => device.build_input_stream(
                    stream_config,
                    move |data: &[f32], _: &cpal::InputCallbackInfo| {
                        let pcm: Vec<i16> = data
                            .iter()
                            .map(|s| (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16)
                            .collect();
                        send(&pcm);
                    },
                    |e| tracing::warn!(error = %e, "audio capture"),
                    None,
                ),
                other => return Err(format!("the audio device delivers {other:?} samples")),
            }
            .map_err(|e| format!("opening the audio input: {e}"))?;
            stream
                .play()
                .map_err(|e| format!("starting the audio input: {e}"))?;
            Ok(stream)
        };
        match setup() {
            Ok(stream) => {
                let _ = ready_tx.send(Ok(()));
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                drop(stream);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        }
    });
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(LiveAudio {
            stop,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err("the audio thread failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_becomes_20_ms_opus_packets_that_decode_back() {
        let rate = 48_000u32;
        let tone: Vec<i16> = (0..rate / 2)
            .map(|i| {
                ((i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 8000.0) as i16
            })
            .collect();
        let mut packets = OpusPackets::new(rate, 1).unwrap();
        let encoded = packets.push(&tone).unwrap();
        assert_eq!(encoded.len(), 25, "half a second is 25 packets of 20 ms");
        let mut decoder = opus::Decoder::new(rate, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 960];
        let mut energy = 0f64;
        for p in &encoded {
            assert!(!p.is_empty() && p.len() < 1500);
            let n = decoder.decode(p, &mut pcm, false).unwrap();
            assert_eq!(n, 960);
            energy += pcm.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
        }
        let rms = (energy / (25.0 * 960.0)).sqrt();
        assert!(rms > 3000.0, "the tone survives encoding: rms {rms}");
    }

    #[test]
    fn a_source_faster_than_real_time_is_held_to_real_time() {
        let mut pacer = AudioPacer::default();
        // A device delivering 1000 packets (20 s of audio) in the first 10 ms.
        let early = (0..1000).filter(|i| pacer.admit(i / 100)).count();
        assert!(
            (5..=7).contains(&early),
            "{early} packets let through in 10 ms"
        );
        // Then 100 packets every 20 ms for 2 s: 50 a second get through, no more.
        let mut through = 0;
        for tick in 1..=100u64 {
            through += (0..100).filter(|_| pacer.admit(10 + tick * 20)).count();
        }
        assert!((99..=101).contains(&through), "{through} packets in 2 s");
        // A real-time source loses nothing, even after a pause in delivery.
        let mut pacer = AudioPacer::default();
        let mut at = 0;
        for i in 0..200u64 {
            at = if i == 100 { at + 1_000 } else { at + 20 };
            assert!(pacer.admit(at), "packet {i} at {at} ms");
        }
    }

    #[test]
    fn unsupported_formats_are_refused_with_a_reason() {
        assert!(OpusPackets::new(44_100, 1)
            .unwrap_err()
            .contains("44100 Hz"));
        assert!(OpusPackets::new(48_000, 6)
            .unwrap_err()
            .contains("6 channels"));
    }
}
