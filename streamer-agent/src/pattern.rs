//! Generated screen content, for demos on machines without a display and for tests and benchmarks.

/// What the generated content looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    /// Moving stripes and a checkerboard: compresses like a busy desktop.
    Moving,
    /// New random detail in every 4x4 block of every frame: compresses like video, badly.
    Noise,
}

/// A source of RGB frames of one size.
#[derive(Debug, Clone)]
pub struct TestPattern {
    width: u16,
    height: u16,
    kind: PatternKind,
    frame: u64,
    seed: u32,
}

impl TestPattern {
    /// A pattern of `kind` at `width` x `height`.
    pub fn new(width: u16, height: u16, kind: PatternKind) -> Self {
        Self {
            width,
            height,
            kind,
            frame: 0,
            seed: 1,
        }
    }

    /// The next frame, RGB, 3 bytes per pixel.
    pub fn next_rgb(&mut self) -> Vec<u8> {
        let (w, h) = (usize::from(self.width), usize::from(self.height));
        let mut rgb = vec![0u8; w * h * 3];
        let shift = (self.frame * 4) as usize;
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                match self.kind {
                    PatternKind::Noise => {
                        if x % 4 == 0 {
                            self.seed = self
                                .seed
                                .wrapping_mul(1_103_515_245)
                                .wrapping_add(12_345 + (y / 4) as u32);
                        }
                        let v = (self.seed >> 16) as u8;
                        rgb[i..i + 3].copy_from_slice(&[v, v.wrapping_mul(3), v.wrapping_add(91)]);
                    }
                    PatternKind::Moving => {
                        rgb[i] = ((x + shift) % 256) as u8;
                        rgb[i + 1] = ((y * 2) % 256) as u8;
                        rgb[i + 2] = if (x / 16 + y / 16 + self.frame as usize) % 2 == 0 {
                            220
                        } else {
                            30
                        };
                    }
                }
            }
        }
        self.frame += 1;
        rgb
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_right_size_and_move() {
        let mut p = TestPattern::new(64, 32, PatternKind::Moving);
        let a = p.next_rgb();
        let b = p.next_rgb();
        assert_eq!(a.len(), 64 * 32 * 3);
        assert_ne!(a, b);
    }

    #[test]
    fn the_encoder_makes_a_keyframe_first_and_on_request() {
        let mut p = TestPattern::new(320, 240, PatternKind::Moving);
        let mut e = crate::encode::H264Encoder::new(320, 240, 10).unwrap();
        let first = e.encode_rgb(&p.next_rgb(), false).unwrap();
        assert!(first.keyframe);
        assert!(first.data.starts_with(&[0, 0, 0, 1]));
        let second = e.encode_rgb(&p.next_rgb(), false).unwrap();
        assert!(!second.keyframe);
        assert!(e.encode_rgb(&p.next_rgb(), true).unwrap().keyframe);
        assert!(matches!(
            e.encode_rgb(&[0u8; 3], false),
            Err(crate::encode::EncodeError::WrongSize { .. })
        ));
    }
}
