//! The page has plain words for every refusal code and every session end reason the protocol defines,
//! so that no refusal reaches a technician as a bare code.

use protocol::{EndReason, ErrorCode};

const PAGE: &str = include_str!("../ui/app.js");

/// The keys of a `const NAME = { KEY: ... }` table in the page's script.
fn table_keys(name: &str) -> Vec<String> {
    let start = PAGE
        .find(&format!("const {name} = {{"))
        .unwrap_or_else(|| panic!("no table {name} in ui/app.js"));
    let body = &PAGE[start..];
    let end = body
        .find("\n};")
        .unwrap_or_else(|| panic!("table {name} is not closed"));
    body[..end]
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.trim().to_owned()))
        .collect()
}

#[test]
fn every_error_code_has_words() {
    let keys = table_keys("WORDS");
    let missing: Vec<_> = ErrorCode::all()
        .map(ErrorCode::name)
        .filter(|n| !keys.iter().any(|k| k == n))
        .collect();
    assert!(missing.is_empty(), "no plain words for {missing:?}");
}

#[test]
fn every_end_reason_has_words() {
    let keys = table_keys("ENDED");
    for r in EndReason::all() {
        let name = r.name();
        assert!(keys.contains(&name), "no plain words for {name}");
    }
}
