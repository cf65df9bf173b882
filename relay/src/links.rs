//! Playback and download links: capabilities that stop working 10 minutes after they were issued.
//!
//! A link names one recording file, what it is for (`play` or `download`), the user it was issued to
//! and when, and carries an HMAC-SHA256 of those under a key that only the relay holds (made on first
//! start, kept in the data directory, readable by the relay's user only). Changing any part breaks the
//! signature. At use, the relay checks the signature, the age (with the injected clock), and then that
//! the issuing user still may play the file: a link never outlives the permission behind it.

use std::path::Path;

use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a link works after it was issued.
pub const LINK_TTL_MS: i64 = 10 * 60 * 1000;

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Streamed in the browser's player (served inline, with ranges).
    Play,
    /// Saved as a file (served as an attachment, with ranges).
    Download,
}

impl Purpose {
    /// Its name in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Play => "play",
            Purpose::Download => "download",
        }
    }

    /// The purpose that `s` names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "play" => Some(Purpose::Play),
            "download" => Some(Purpose::Download),
            _ => None,
        }
    }
}

/// Why a link does not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    /// The signature does not match: the link was changed or made up.
    #[error("The link's signature does not match: it was changed or cut short after it was made.")]
    Tampered,
    /// It was issued more than 10 minutes ago (or claims to be from the future).
    #[error("It was made more than 10 minutes ago.")]
    Expired,
}

/// The relay's link key.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

/// The parts of a link that are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The recording file's id.
    pub file_id: String,
    /// What it is for.
    pub purpose: Purpose,
    /// The user it was issued to.
    pub user_id: String,
    /// When it was issued (ms since the epoch).
    pub issued_at: i64,
}

/// The links already used from their first byte on this relay, while they work: a link's first
/// read from byte 0 is audited as a play or a download, and a player's second read from byte 0
/// (browsers make one to learn the file's length) is the same viewing.
#[derive(Debug, Default)]
pub struct UsedLinks {
    seen: std::sync::Mutex<std::collections::HashSet<LinkId>>,
}

/// What tells links apart: the file, the purpose, the user and the time of issue.
type LinkId = (String, &'static str, String, i64);

fn link_id(link: &Link) -> LinkId {
    (
        link.file_id.clone(),
        link.purpose.as_str(),
        link.user_id.clone(),
        link.issued_at,
    )
}

/// How many used links [`UsedLinks`] holds at most: past it, the oldest are forgotten (their next
/// use is audited again, which says more, never less).
const USED_LINKS_KEPT: usize = 100_000;

impl UsedLinks {
    /// Whether this is `link`'s first use at `now` (ms): true once per link.
    pub fn first_use(&self, link: &Link, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= USED_LINKS_KEPT {
            seen.retain(|k| k.3.saturating_add(LINK_TTL_MS) >= now);
            if seen.len() >= USED_LINKS_KEPT {
                seen.clear();
            }
        }
        seen.insert(link_id(link))
    }

    /// Forgets `link`'s use (its audit event could not be written, so it was not served).
    pub fn forget(&self, link: &Link) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.remove(&link_id(link));
    }
}

impl LinkKey {
    /// The key in `data_dir/link-key`, made on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("link-key");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let bytes = hex::decode(text.trim()).context("link-key is not hex")?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("link-key must be 32 bytes"))?;
            return Ok(Self(key));
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        crate::tls::write_private(&path, &hex::encode(key))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self(key))
    }

    /// A key from bytes (tests).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(key)
    }

    fn mac(&self, link: &Link) -> Hmac<Sha256> {
        // The key is 32 bytes, which HMAC accepts (it takes keys of any length).
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(
            format!(
                "{}|{}|{}|{}",
                link.file_id,
                link.purpose.as_str(),
                link.user_id,
                link.issued_at
            )
            .as_bytes(),
        );
        mac
    }

    /// The URL path and query of `link`.
    pub fn url(&self, link: &Link) -> String {
        let sig = hex::encode(self.mac(link).finalize().into_bytes());
        format!(
            "/files/{}/{}?u={}&t={}&s={sig}",
            link.file_id,
            link.purpose.as_str(),
            link.user_id,
            link.issued_at
        )
    }

    /// Checks a link's signature and age at `now_ms`.
    pub fn verify(&self, link: &Link, sig_hex: &str, now_ms: i64) -> Result<(), LinkRefused> {
        let sig = hex::decode(sig_hex).map_err(|_| LinkRefused::Tampered)?;
        self.mac(link)
            .verify_slice(&sig)
            .map_err(|_| LinkRefused::Tampered)?;
        let age = now_ms.saturating_sub(link.issued_at);
        // A minute of grace for links "from the future" (clock steps), none past the 10 minutes.
        if !(-60_000..=LINK_TTL_MS).contains(&age) {
            return Err(LinkRefused::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            file_id: "f1".into(),
            purpose: Purpose::Play,
            user_id: "u1".into(),
            issued_at: 1_000_000,
        }
    }

    fn sig(url: &str) -> String {
        url.rsplit("s=").next().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_link_is_used_first_once() {
        let used = UsedLinks::default();
        assert!(used.first_use(&link(), 1_000_000));
        assert!(!used.first_use(&link(), 1_000_100));
        let mut other = link();
        other.purpose = Purpose::Download;
        assert!(used.first_use(&other, 1_000_100));
        other.issued_at += 1;
        assert!(used.first_use(&other, 1_000_100));
    }

    #[test]
    fn a_fresh_link_works_until_ten_minutes() {
        let key = LinkKey::from_bytes([7; 32]);
        let s = sig(&key.url(&link()));
        assert_eq!(key.verify(&link(), &s, 1_000_000), Ok(()));
        assert_eq!(key.verify(&link(), &s, 1_000_000 + LINK_TTL_MS), Ok(()));
        assert_eq!(
            key.verify(&link(), &s, 1_000_000 + LINK_TTL_MS + 1),
            Err(LinkRefused::Expired)
        );
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let key = LinkKey::from_bytes([7; 32]);
        let s = sig(&key.url(&link()));
        let changes = [
            Link {
                file_id: "f2".into(),
                ..link()
            },
            Link {
                purpose: Purpose::Download,
                ..link()
            },
            Link {
                user_id: "u2".into(),
                ..link()
            },
            Link {
                issued_at: 1_000_001,
                ..link()
            },
        ];
        for changed in changes {
            assert_eq!(
                key.verify(&changed, &s, 1_000_000),
                Err(LinkRefused::Tampered),
                "{changed:?}"
            );
        }
        assert_eq!(
            key.verify(&link(), "zz", 1_000_000),
            Err(LinkRefused::Tampered)
        );
        let other = LinkKey::from_bytes([8; 32]);
        assert_eq!(
            other.verify(&link(), &s, 1_000_000),
            Err(LinkRefused::Tampered)
        );
    }
}
