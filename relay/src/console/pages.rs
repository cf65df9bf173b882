//! The console's pages: server-rendered HTML with a little JavaScript (copying links, loading the
//! player). Every handler authorises its caller from the sign-in cookie before reading anything.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::COOKIE;
use crate::api::ClientAddress;
use crate::store::{StoreError, UserRecord};
use crate::Shared;

/// Text made safe for HTML.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The sign-in token in the console's cookie.
pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The signed-in person looking at a page; anyone else is sent to the sign-in page.
pub(crate) struct Viewer {
    pub(super) user: UserRecord,
    pub(super) token: String,
    pub(super) addr: Option<std::net::IpAddr>,
    pub(super) host: Option<String>,
}

impl Viewer {
    pub(super) fn who(&self) -> crate::ops::Who<'_> {
        crate::ops::Who {
            user: &self.user,
            token: &self.token,
            addr: self.addr,
        }
    }
}

impl FromRequestParts<Arc<Shared>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Response> {
        let to_sign_in = || Redirect::to("/console/sign-in").into_response();
        let token = cookie_token(&parts.headers).ok_or_else(to_sign_in)?;
        match shared.store.user_for_token(&token).await {
            Ok(Ok(user)) => Ok(Viewer {
                user,
                token,
                addr: parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip()),
                host: crate::api::request_host(&parts.headers),
            }),
            Ok(Err(_)) => Err(to_sign_in()),
            Err(e) => Err(failed(e)),
        }
    }
}

pub(super) fn failed(e: StoreError) -> Response {
    tracing::error!(error = %e, "console page failed in the store");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(plain_page(
            "Something went wrong",
            "<p>The relay failed; try again.</p>",
        )),
    )
        .into_response()
}

pub(super) fn plain_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Remote Support</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"stylesheet\" href=\"/console/style.css\"></head><body class=\"plain\">\
         <main class=\"narrow\"><div class=\"brand big\"><span class=\"logo\"></span>Remote Support</div>{body}</main></body></html>",
        t = esc(title)
    )
}

pub(super) fn page(title: &str, viewer: &Viewer, current: &str, body: &str) -> Html<String> {
    let nav = [
        ("/console/sessions", "Sessions"),
        ("/console/active", "Active sessions"),
        ("/console/settings", "Settings"),
        ("/console/team", "Team and devices"),
        ("/console/members", "Members"),
        ("/console/audit", "Audit log"),
    ];
    let mut links = String::new();
    for (href, label) in nav {
        if href == "/console/audit" && !viewer.user.role.manages_team() {
            continue;
        }
        let class = if href == current {
            " class=\"current\""
        } else {
            ""
        };
        let _ = write!(links, "<a href=\"{href}\"{class}>{label}</a>");
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Remote Support</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"stylesheet\" href=\"/console/style.css\"></head><body>\
         <header><div class=\"brand\"><span class=\"logo\"></span>Remote Support</div><nav>{links}</nav>\
         <div class=\"who\"><a href=\"/console/account\" id=\"account\">{name}</a> · {role}<form method=\"post\" action=\"/console/sign-out\">\
         <button class=\"link\" id=\"sign-out\">Sign out</button></form></div></header>\
         <main><h1>{t}</h1>{body}</main><script src=\"/console/console.js\"></script></body></html>",
        t = esc(title),
        name = esc(&viewer.user.name),
        role = viewer.user.role.as_str(),
    ))
}

pub(crate) async fn root() -> Redirect {
    Redirect::to("/console/sessions")
}

pub(crate) async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("style.css"),
    )
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
}

fn sign_in_form(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    plain_page(
        "Sign in",
        &format!(
            "<h1>Sign in to the console</h1>{error}\
             <form method=\"post\" action=\"/console/sign-in\" class=\"card\">\
             <label>E-mail<input name=\"email\" id=\"email\" type=\"email\" autocomplete=\"username\" required></label>\
             <label>Password<input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button class=\"primary\" id=\"sign-in\">Sign in</button></form>"
        ),
    )
}

pub(crate) async fn sign_in_page() -> Html<String> {
    Html(sign_in_form(None))
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    email: String,
    password: String,
}

pub(crate) async fn sign_in(
    State(shared): State<Arc<Shared>>,
    ClientAddress(address): ClientAddress,
    Form(f): Form<SignInForm>,
) -> Response {
    match crate::ops::sign_in(&shared, &f.email, &f.password, address).await {
        Ok(s) => {
            let max_age = shared.config.token_ttl_secs;
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}",
                s.token
            );
            let mut r = Redirect::to("/console/sessions").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => (e.status(), Html(sign_in_form(Some(e.message())))).into_response(),
    }
}

pub(crate) async fn sign_out(State(shared): State<Arc<Shared>>, viewer: Viewer) -> Response {
    if let Err(e) = crate::ops::sign_out(&shared, viewer.who()).await {
        tracing::warn!(error = e.message(), "signing out");
    }
    let mut r = Redirect::to("/console/sign-in").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-relay_console=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

/// A refusal made before any handler ran (no viewer to greet): the sentence, with `id` for tests
/// and scripts, and the way back.
pub(crate) fn refused_page(status: StatusCode, id: &str, message: &str) -> Response {
    let body = format!(
        "<h1>Refused</h1><p class=\"error\" role=\"alert\" id=\"{}\">{}</p>\
         <p><a href=\"/console/sessions\">Go to the console</a></p>",
        esc(id),
        esc(message)
    );
    (status, Html(plain_page("Refused", &body))).into_response()
}

/// A 404 inside the console: the page says what is missing and where to go.
pub(super) fn not_found(viewer: &Viewer, what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            viewer,
            "",
            &format!(
                "<p id=\"not-found\">{}</p><p><a href=\"/console/sessions\">All sessions</a></p>",
                esc(what)
            ),
        ),
    )
        .into_response()
}

/// Any address the relay does not serve: JSON under `/api/`, a page elsewhere (with the console's
/// navigation when the cookie is a live sign-in).
pub(crate) async fn fallback(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if uri.path().starts_with("/api/") {
        return crate::api::ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The relay has no such API route.",
        )
        .into_response();
    }
    let what = "There is no page at this address.";
    if let Some(token) = cookie_token(&headers) {
        if let Ok(Ok(user)) = shared.store.user_for_token(&token).await {
            let viewer = Viewer {
                user,
                token,
                addr: None,
                host: None,
            };
            return not_found(&viewer, what);
        }
    }
    (
        StatusCode::NOT_FOUND,
        Html(plain_page(
            "Not found",
            &format!(
                "<p id=\"not-found\">{what}</p><p><a href=\"/console/sign-in\">Sign in to the console</a></p>"
            ),
        )),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-relay_console=tok; b=2"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("tok"));
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }
}
