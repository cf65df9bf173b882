//! Reading pictures as a person would: Tesseract OCR on what a technician decoded or a screen
//! showed, compared on letters and digits.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openh264::formats::YUVSource;
use protocol::{Message, MonitorInfo};
use relay_client::Connection;

/// Text that Tesseract reads in a PNG, or the reason it could not run.
pub fn ocr(png: &Path) -> String {
    let out = Command::new("tesseract")
        .arg(png)
        .arg("-")
        .stderr(Stdio::null())
        .output()
        .expect("tesseract runs (apt-get install tesseract-ocr)");
    assert!(
        out.status.success(),
        "tesseract failed on {}",
        png.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Letters and digits only, upper case, with the letter O read as the digit 0 (OCR cannot tell a
/// lower-case o from a zero): what OCR is compared on.
pub fn plain(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            c => c,
        })
        .collect()
}

/// Saves an RGB image as a PNG.
pub fn save_png(rgb: &[u8], w: usize, h: usize, path: &Path) {
    image::RgbImage::from_raw(w as u32, h as u32, rgb.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

async fn recv(c: &mut Connection) -> Message {
    tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("a message within 30 s")
        .expect("the connection is open")
}

/// How often [`View::until_text`] reads the newest picture.
pub const OCR_EVERY: Duration = Duration::from_millis(1500);

/// The technician's side of the picture: decodes what arrives and reads it with OCR.
#[derive(Default)]
#[allow(missing_debug_implementations)] // the decoder is not Debug
pub struct View {
    decoder: Option<openh264::decoder::Decoder>,
    /// The last monitor list.
    pub monitors: Vec<MonitorInfo>,
    /// The last audio configuration or refusal.
    pub audio: Option<Message>,
}

impl View {
    /// Reads frames until OCR finds `text` (compared as [`plain`]) in one; returns its size.
    ///
    /// Every frame is decoded, but OCR (about a second a picture) reads the newest picture at
    /// most every [`OCR_EVERY`]: reading each one, a view fell further behind a stream of 10
    /// pictures a second the longer it watched (the Windows streamer's GDI capture sends every
    /// tick), and never saw what the screen showed now.
    pub async fn until_text(
        &mut self,
        tech: &mut Connection,
        text: &str,
        work: &Path,
    ) -> (usize, usize) {
        let started = Instant::now();
        let mut read = String::new();
        let mut last_read: Option<Instant> = None;
        let mut pinged = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            // A technician that only watches still shows it is there, as the app does: the relay
            // closes a connection it has not heard from in its idle time (45 s).
            if pinged.elapsed() > Duration::from_secs(10) {
                tech.ping().await.expect("pinging the relay");
                pinged = Instant::now();
            }
            match recv(tech).await {
                Message::MonitorList(m) => self.monitors = m,
                m @ (Message::AudioConfig { .. } | Message::AudioUnavailable { .. }) => {
                    self.audio = Some(m)
                }
                Message::VideoConfig(_) => self.decoder = None,
                Message::VideoFrame(f) => {
                    let decoder = self
                        .decoder
                        .get_or_insert_with(|| openh264::decoder::Decoder::new().unwrap());
                    let image = decoder.decode(&f.payload).unwrap();
                    if last_read.is_some_and(|t| t.elapsed() < OCR_EVERY) {
                        continue;
                    }
                    if let Some(image) = image {
                        let (w, h) = image.dimensions();
                        let mut rgb = vec![0u8; w * h * 3];
                        image.write_rgb8(&mut rgb);
                        let png = work.join("technician-view.png");
                        save_png(&rgb, w, h, &png);
                        read = ocr(&png);
                        if plain(&read).contains(text) {
                            return (w, h);
                        }
                        // Counted from the end of the reading: OCR itself takes about as long as
                        // OCR_EVERY on a busy machine, and counted from its start, every frame was
                        // read as it came, the frames queued up, and the picture read fell further
                        // and further behind the screen (measured: 30 s behind, 1 frame in 1.5 s).
                        last_read = Some(Instant::now());
                    }
                }
                _ => {}
            }
        }
        panic!("the technician's picture never showed {text:?} (OCR last read {read:?})");
    }
}
