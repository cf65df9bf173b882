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

/// The quoted string after each `marker` in `source`, across line breaks.
fn quoted_after<'a>(source: &'a str, marker: &str) -> Vec<&'a str> {
    source
        .match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = source[i + marker.len()..].trim_start();
            let rest = rest.strip_prefix('"')?;
            rest.split_once('"').map(|(s, _)| s)
        })
        .collect()
}

#[test]
fn every_code_the_app_itself_gives_has_words() {
    const APP: &str = include_str!("../src/main.rs");
    let keys = table_keys("WORDS");
    let mut codes = quoted_after(APP, "Failure::new(");
    // The codes a library error is given (`impl From<TechnicianError> for Failure`).
    let mapping = APP
        .split_once("let code = match (&e, e.code()) {")
        .and_then(|(_, rest)| rest.split_once("};"))
        .expect("the error mapping in src/main.rs")
        .0;
    codes.extend(quoted_after(mapping, "=> "));
    assert!(
        codes.contains(&"CERTIFICATE") && codes.contains(&"UNREACHABLE"),
        "{codes:?}"
    );
    let missing: Vec<_> = codes
        .iter()
        .filter(|c| !keys.iter().any(|k| k == *c))
        .collect();
    assert!(missing.is_empty(), "no plain words for {missing:?}");
}
