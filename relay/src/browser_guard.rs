//! What the relay's HTTPS port does for browsers on every request: it refuses a state-changing
//! request that a page of another origin made, and sends the security headers.
//!
//! `SameSite=Strict` on the console's cookie does not stop a page of the same *site* (another port
//! of the relay's host, a sibling subdomain) from submitting a form that carries it: the browser
//! counts both as one site. The origin does tell them apart, so every request that may change
//! something (any method but GET, HEAD and OPTIONS) is checked against it, whether it is
//! authenticated by the cookie, by a bearer token or not at all (the sign-in forms too: a forged
//! sign-in would leave the victim signed in as the attacker).
//!
//! Browsers send `Origin` on every such request; `Sec-Fetch-Site` tells the same where an older
//! browser left `Origin` out. Programs (the technician app, the command-line client, scripts)
//! send neither and are not concerned: they hold their token themselves.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Shared;

/// The stable code of a refused cross-origin request (docs/openapi.json).
pub(crate) const ORIGIN_REFUSED: &str = "ORIGIN_REFUSED";

/// The console's pages load their script, style and media from the relay alone, run no inline
/// script and are never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

/// The middleware: the origin check, then the headers on whatever the route answered.
pub(crate) async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if changes_state(req.method()) {
        if let Err(from) = same_origin(&shared, req.headers()) {
            return refusal(req.uri().path(), &from);
        }
    }
    let cacheable = is_static_asset(req.uri().path());
    let mut response = next.run(req).await;
    add_headers(response.headers_mut(), cacheable);
    response
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The console's script and style sheet are the same for everyone and hold no secret.
fn is_static_asset(path: &str) -> bool {
    matches!(path, "/console/style.css" | "/console/console.js")
}

/// Ok when the request came from one of the relay's own pages, or from a program (no `Origin`,
/// no `Sec-Fetch-Site`); else the origin it came from, for the refusal.
fn same_origin(shared: &Shared, headers: &HeaderMap) -> Result<(), String> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        return if own_origins(shared, headers)
            .iter()
            .any(|own| same(own, origin))
        {
            Ok(())
        } else {
            Err(origin.to_owned())
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        // The browser says the request is the relay's own page's, or typed by the person.
        None | Some("same-origin" | "none") => Ok(()),
        Some(other) => Err(format!("a {other} page")),
    }
}

/// The origins the relay's pages are served from: `public_url`'s, and the one the request was
/// addressed to (its `Host`), which is the relay's own as far as the browser is concerned.
fn own_origins(shared: &Shared, headers: &HeaderMap) -> Vec<String> {
    let mut own = Vec::with_capacity(2);
    if let Some(url) = shared
        .config
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
    {
        own.push(url.origin().ascii_serialization());
    }
    if let Some(host) = crate::api::request_host(headers) {
        own.push(format!("https://{host}"));
    }
    own
}

/// Origins compared as browsers write them: case aside, and with the default port left out.
fn same(own: &str, origin: &str) -> bool {
    let normal = |s: &str| {
        let s = s.trim_end_matches('/').to_ascii_lowercase();
        s.strip_suffix(":443").map(str::to_owned).unwrap_or(s)
    };
    normal(own) == normal(origin)
}

fn refusal(path: &str, from: &str) -> Response {
    tracing::warn!(path = ?path, origin = ?from, "refused a state-changing request from another origin");
    let message = "This request came from a page that is not the relay's own, so it was refused \
                   and nothing was changed. Open the console at the relay's address and try again.";
    if path.starts_with("/api/") {
        return crate::api::ApiError::new(StatusCode::FORBIDDEN, ORIGIN_REFUSED, message)
            .into_response();
    }
    crate::console::refused_page(StatusCode::FORBIDDEN, "origin-refused", message)
}

fn add_headers(headers: &mut HeaderMap, cacheable: bool) {
    let mut set = |name: header::HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CSP);
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Invitation and reset links carry their token in the path: no other site learns it. (Not
    // `no-referrer`: with it Chromium sends `Origin: null` on the console's own form posts.)
    set(header::REFERRER_POLICY, "same-origin");
    // The relay serves HTTPS only.
    set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    if !cacheable {
        // Pages show attended keys, deployment codes, one-time links and recordings.
        set(header::CACHE_CONTROL, "no-store");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_as_browsers_write_them() {
        assert!(same("https://relay.example", "https://RELAY.example"));
        assert!(same("https://relay.example:443", "https://relay.example"));
        assert!(same("https://127.0.0.1:8443", "https://127.0.0.1:8443"));
        assert!(!same("https://127.0.0.1:8443", "https://127.0.0.1:9443"));
        assert!(!same("https://relay.example", "http://relay.example"));
        assert!(!same("https://relay.example", "https://evil.relay.example"));
        assert!(!same("https://relay.example", "null"));
    }

    #[test]
    fn only_reads_pass_unchecked() {
        assert!(!changes_state(&Method::GET));
        assert!(!changes_state(&Method::HEAD));
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(changes_state(&m), "{m}");
        }
    }
}
