//! Versions: the four-part product version with the recording gate, and protocol-version negotiation.

use std::fmt;
use std::str::FromStr;

use crate::error::{ErrorCode, Refusal};

/// A product version `MAJOR.MINOR.PATCH.BUILD`, compared numerically part by part.
///
/// The text form is strict: exactly four parts separated by `.`, each part one or more ASCII digits
/// with no sign, no spaces, no leading zero (except `0` itself) and a value that fits in `u32`.
/// Strictness keeps the text canonical: `parse(v.to_string()) == v` and two spellings never name
/// the same version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProductVersion {
    parts: [u32; 4],
}

/// The oldest streamer that may take part in a recorded session (SPEC section 3, contract).
pub const MIN_RECORDED_STREAMER: ProductVersion = ProductVersion::new(3, 5, 8, 0);

/// The longest text form of a [`ProductVersion`]: four `u32` of ten digits and three dots.
pub const MAX_PRODUCT_VERSION_LEN: usize = 4 * 10 + 3;

impl ProductVersion {
    /// Builds a version from its four parts.
    pub const fn new(major: u32, minor: u32, patch: u32, build: u32) -> Self {
        Self {
            parts: [major, minor, patch, build],
        }
    }

    /// Derives the four-part version from a three-part Cargo package version and a build number.
    pub fn from_package(package_version: &str, build: u32) -> Result<Self, VersionError> {
        let v = semver::Version::parse(package_version)
            .map_err(|_| VersionError::new(package_version, "not a MAJOR.MINOR.PATCH version"))?;
        let part = |n: u64| {
            u32::try_from(n)
                .map_err(|_| VersionError::new(package_version, "a part exceeds 4294967295"))
        };
        Ok(Self::new(
            part(v.major)?,
            part(v.minor)?,
            part(v.patch)?,
            build,
        ))
    }

    /// This build's version: the workspace's package version with the build number taken from the
    /// `PRODUCT_BUILD` environment variable at compile time (0 when unset), so that every component
    /// of one build reports the same version.
    pub fn this_build() -> Result<Self, VersionError> {
        let build_text = option_env!("PRODUCT_BUILD").unwrap_or("0");
        let build = build_text.parse().map_err(|_| {
            VersionError::new(build_text, "PRODUCT_BUILD is not a number up to 4294967295")
        })?;
        Self::from_package(env!("CARGO_PKG_VERSION"), build)
    }

    /// The four parts, most significant first.
    pub const fn parts(&self) -> [u32; 4] {
        self.parts
    }
}

impl fmt::Display for ProductVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.parts;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

/// A version text that is not a valid four-part product version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed product version {text:?}: {why} (expected four numbers such as 3.5.8.0)")]
pub struct VersionError {
    /// The offending text, cut to a printable length.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl VersionError {
    fn new(text: &str, why: &'static str) -> Self {
        let text = text.chars().take(MAX_PRODUCT_VERSION_LEN + 8).collect();
        Self { text, why }
    }
}

impl FromStr for ProductVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_PRODUCT_VERSION_LEN {
            return Err(VersionError::new(text, "too long"));
        }
        let mut parts = [0u32; 4];
        let mut count = 0;
        for piece in text.split('.') {
            if count == 4 {
                return Err(VersionError::new(text, "more than four parts"));
            }
            if piece.is_empty() {
                return Err(VersionError::new(text, "empty part"));
            }
            if !piece.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VersionError::new(
                    text,
                    "a part is not a plain decimal number",
                ));
            }
            if piece.len() > 1 && piece.starts_with('0') {
                return Err(VersionError::new(text, "a part has a leading zero"));
            }
            parts[count] = piece
                .parse()
                .map_err(|_| VersionError::new(text, "a part exceeds 4294967295"))?;
            count += 1;
        }
        if count != 4 {
            return Err(VersionError::new(text, "fewer than four parts"));
        }
        Ok(Self { parts })
    }
}

/// The SPEC's refusal text for a streamer too old for a recorded session (contract).
pub fn streamer_version_unsupported_text(found: &ProductVersion) -> String {
    format!(
        "This computer's streamer is version {found}. Your team records every session, which needs \
         streamer version {MIN_RECORDED_STREAMER} or later. Update the streamer on that computer, \
         then connect again."
    )
}

/// The recording gate: may a streamer of version `found` take part in a recorded session?
///
/// The relay calls this before anything of the session is forwarded; clients never decide it.
pub fn recorded_session_gate(found: &ProductVersion) -> Result<(), Refusal> {
    if *found >= MIN_RECORDED_STREAMER {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::StreamerVersionUnsupported,
            streamer_version_unsupported_text(found),
        ))
    }
}

/// The protocol versions this implementation speaks: the highest of each major version it supports.
pub const PROTOCOL_VERSIONS: &[semver::Version] = &[semver::Version::new(1, 4, 0)];

/// The protocol version (major, minor) from which a device's secret is renewed at every
/// connection: the relay sends `Registered` with the next secret after a device credential
/// (docs/PROTOCOL.md section 6), and `CONNECTED_ELSEWHERE` to a connection another replaced.
pub const DEVICE_SECRET_ROTATION: (u64, u64) = (1, 4);

/// Whether a side that agreed on `agreed` renews device secrets ([`DEVICE_SECRET_ROTATION`]).
pub fn rotates_device_secret(agreed: &semver::Version) -> bool {
    (agreed.major, agreed.minor) >= DEVICE_SECRET_ROTATION
}

/// The most protocol versions a peer may list in its hello.
pub const MAX_PROTOCOL_VERSIONS: usize = 16;

/// Semver compatibility class: the major version, or `0.MINOR` while the major is 0.
fn compat_class(v: &semver::Version) -> (u64, u64) {
    if v.major == 0 {
        (0, v.minor)
    } else {
        (v.major, 0)
    }
}

/// Chooses the protocol version two peers will speak.
///
/// Each side lists, for each compatibility class it implements, the highest version it speaks (and it
/// speaks every older version of that class). The agreed version is taken from the highest class both
/// sides list, and within it is the lower of the two sides' versions. No shared class is a refusal with
/// `PROTOCOL_VERSION_UNSUPPORTED` naming both lists.
pub fn negotiate_protocol(
    ours: &[semver::Version],
    theirs: &[semver::Version],
) -> Result<semver::Version, Refusal> {
    let best_shared = ours
        .iter()
        .filter_map(|o| {
            theirs
                .iter()
                .filter(|t| compat_class(t) == compat_class(o))
                .max()
                .map(|t| std::cmp::min(o, t).clone())
        })
        .max_by(|a, b| compat_class(a).cmp(&compat_class(b)).then(a.cmp(b)));
    best_shared.ok_or_else(|| {
        let list = |vs: &[semver::Version]| {
            if vs.is_empty() {
                "none".to_owned()
            } else {
                vs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            }
        };
        Refusal::new(
            ErrorCode::ProtocolVersionUnsupported,
            format!(
                "No common protocol version: this side speaks {}, the peer speaks {}. Update the older \
                 program.",
                list(ours),
                list(theirs)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> ProductVersion {
        s.parse().unwrap()
    }

    #[test]
    fn versions_order_numerically_part_by_part() {
        let table = [
            "3.5.7.9", "3.5.8.0", "3.5.8.1", "3.5.10.0", "3.6.0.0", "10.0.0.0",
        ];
        for pair in table.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
            assert!(v(pair[1]) > v(pair[0]));
        }
        assert_eq!(v("3.5.8.0"), MIN_RECORDED_STREAMER);
        assert_eq!(v("4294967295.0.0.1").parts(), [u32::MAX, 0, 0, 1]);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "0.0.0.0",
            "3.5.8.0",
            "3.5.10.0",
            "4294967295.4294967295.1.20",
        ] {
            assert_eq!(v(s).to_string(), s);
        }
    }

    #[test]
    fn malformed_versions_are_refused_with_a_reason() {
        let cases = [
            ("3.5", "fewer than four parts"),
            ("3.5.8", "fewer than four parts"),
            ("3.5.8.0.1", "more than four parts"),
            ("a.b.c.d", "not a plain decimal number"),
            ("3.5.8.x", "not a plain decimal number"),
            ("4294967296.0.0.0", "exceeds"),
            ("3.5.8.99999999999", "exceeds"),
            ("3..8.0", "empty part"),
            ("3.5.8.", "empty part"),
            (".3.5.8", "empty part"),
            ("", "empty part"),
            ("+3.5.8.0", "not a plain decimal number"),
            ("-3.5.8.0", "not a plain decimal number"),
            ("3.-5.8.0", "not a plain decimal number"),
            (" 3.5.8.0", "not a plain decimal number"),
            ("3.5.8.0 ", "not a plain decimal number"),
            ("3. 5.8.0", "not a plain decimal number"),
            ("3.5.08.0", "leading zero"),
            ("٣.5.8.0", "not a plain decimal number"),
            (
                "1111111111111111111111111111111111111111111111.0.0.0",
                "too long",
            ),
        ];
        for (text, why) in cases {
            let err = text.parse::<ProductVersion>().unwrap_err();
            assert!(
                err.why.contains(why),
                "{text:?}: got {:?}, wanted {why:?}",
                err.why
            );
            assert!(err.to_string().contains("malformed product version"));
        }
    }

    #[test]
    fn gate_refuses_3_5_7_9_with_the_exact_spec_text() {
        let refusal = recorded_session_gate(&v("3.5.7.9")).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::StreamerVersionUnsupported);
        assert_eq!(refusal.code.name(), "STREAMER_VERSION_UNSUPPORTED");
        assert_eq!(
            refusal.message,
            "This computer's streamer is version 3.5.7.9. Your team records every session, which \
             needs streamer version 3.5.8.0 or later. Update the streamer on that computer, then \
             connect again."
        );
    }

    #[test]
    fn gate_admits_3_5_8_0_and_later() {
        for s in ["3.5.8.0", "3.5.8.1", "3.5.10.0", "3.6.0.0", "10.0.0.0"] {
            assert_eq!(recorded_session_gate(&v(s)), Ok(()), "{s}");
        }
        for s in ["0.0.0.0", "3.4.99.99", "3.5.7.9", "2.9.9.9"] {
            assert!(recorded_session_gate(&v(s)).is_err(), "{s}");
        }
    }

    #[test]
    fn this_build_derives_from_the_workspace_version() {
        let v = ProductVersion::this_build().unwrap();
        let package = semver::Version::parse(env!("CARGO_PKG_VERSION")).unwrap();
        assert_eq!(
            &v.parts()[..3],
            &[
                package.major as u32,
                package.minor as u32,
                package.patch as u32
            ]
        );
    }

    #[test]
    fn from_package_appends_the_build_number() {
        assert_eq!(
            ProductVersion::from_package("3.5.8", 12).unwrap(),
            ProductVersion::new(3, 5, 8, 12)
        );
        assert!(ProductVersion::from_package("3.5", 0).is_err());
        assert!(ProductVersion::from_package("4294967296.0.0", 0).is_err());
    }

    fn sv(list: &[&str]) -> Vec<semver::Version> {
        list.iter()
            .map(|s| semver::Version::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn negotiation_picks_the_common_version() {
        let cases = [
            (vec!["1.0.0"], vec!["1.0.0"], "1.0.0"),
            (vec!["1.2.0"], vec!["1.0.3"], "1.0.3"),
            (vec!["1.0.3"], vec!["1.2.0"], "1.0.3"),
            (vec!["1.4.0", "2.1.0"], vec!["1.9.0", "2.0.5"], "2.0.5"),
            (vec!["1.4.0", "2.1.0"], vec!["1.9.0", "3.0.0"], "1.4.0"),
            (vec!["0.3.1"], vec!["0.3.7", "0.2.0"], "0.3.1"),
        ];
        for (ours, theirs, want) in cases {
            let got = negotiate_protocol(&sv(&ours), &sv(&theirs)).unwrap();
            assert_eq!(got.to_string(), want, "{ours:?} with {theirs:?}");
            let back = negotiate_protocol(&sv(&theirs), &sv(&ours)).unwrap();
            assert_eq!(back, got, "negotiation is symmetric");
        }
    }

    #[test]
    fn negotiation_without_a_common_major_is_a_clear_refusal() {
        for (ours, theirs) in [
            (vec!["1.0.0"], vec!["2.0.0"]),
            (vec!["0.2.0"], vec!["0.3.0"]),
            (vec!["1.0.0"], vec![]),
        ] {
            let refusal = negotiate_protocol(&sv(&ours), &sv(&theirs)).unwrap_err();
            assert_eq!(refusal.code, ErrorCode::ProtocolVersionUnsupported);
            assert!(refusal.message.contains(ours[0]), "{}", refusal.message);
            assert!(refusal.message.contains("No common protocol version"));
        }
    }
}
