//! The HTTP side of the relay's port: the agent WebSocket endpoint and the JSON API under the console.
//!
//! Every API call is authorised here, on the server, against the caller's team and role.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::store::{StoreError, TeamSettings, UserRecord, UserRole};
use crate::Shared;

/// The client's IP address, as the accept loop recorded it (none when the router is called
/// without it, as in unit tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The agent endpoint's path (docs/PROTOCOL.md, Transport).
pub const AGENT_PATH: &str = "/v1/agent";

/// The router for the whole port.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(AGENT_PATH, get(agent))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/sign-in", post(sign_in))
        .route("/api/v1/sign-out", post(sign_out))
        .route("/api/v1/team", get(team))
        .route("/api/v1/team/settings", get(get_settings).put(put_settings))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/{id}/revoke", post(revoke_device))
        .route("/api/v1/deployment-codes", post(deployment_code))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{id}/recordings", get(session_recordings))
        .route("/api/v1/recordings/{id}/links", post(recording_links))
        .merge(crate::console::routes())
        .with_state(shared)
}

/// The agent connections' WebSocket read and write buffer sizes.
const WS_BUFFER: usize = 16 * 1024;

async fn agent(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let max = protocol::max_frame_len();
    // WebSocket buffers of 16 KiB rather than the library's 128 KiB each way: a relay holds two
    // connections a session, and at the default sizes they were most of its memory per session
    // (measured with the relay_load benchmark, docs/PERFORMANCE.md). Larger messages still arrive
    // whole; the buffers only start smaller. Writes are flushed per batch of queued frames anyway.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER)
        .on_upgrade(move |socket| {
            let tracker = shared.tracker.clone();
            tracker.track_future(crate::agent::serve(shared, socket))
        })
}

/// An API error: an HTTP status and a stable code with a sentence.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "Your role does not allow this.",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "API request failed in the store");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "The relay failed; try again.",
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        // Our own sentences: the parser's text names its internals (types, line and column).
        let message = match &e {
            JsonRejection::MissingJsonContentType(_) => {
                "The request body must be JSON, sent with Content-Type: application/json."
            }
            JsonRejection::JsonSyntaxError(_) => "The request body is not valid JSON.",
            JsonRejection::JsonDataError(_) => {
                "The request body is JSON, but not with the fields and types this call takes \
                 (see docs/openapi.json)."
            }
            _ => "The request body could not be read.",
        };
        tracing::debug!(error = %e.body_text(), "malformed API request body");
        Self::new(StatusCode::BAD_REQUEST, "MALFORMED_REQUEST", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

/// The signed-in caller, from `Authorization: Bearer <token>`, or the console's sign-in cookie (the
/// console's pages call the API too).
pub(crate) struct Caller {
    user: UserRecord,
    token: String,
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "AUTHENTICATION_FAILED",
                m.to_owned(),
            )
        };
        let token = match parts.headers.get(header::AUTHORIZATION) {
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| unauthorized("The Authorization header must be `Bearer <token>`."))?
                .to_owned(),
            None => crate::console::cookie_token(&parts.headers)
                .ok_or_else(|| unauthorized("Sign in first: this request has no bearer token."))?,
        };
        let token = token.as_str();
        match shared.store.user_for_token(token).await? {
            Ok(user) => Ok(Caller {
                user,
                token: token.to_owned(),
            }),
            Err(denied) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                denied.code().name(),
                format!("Sign in again: {denied}."),
            )),
        }
    }
}

#[derive(Deserialize)]
struct SignInRequest {
    email: String,
    password: String,
}

#[derive(Serialize)]
struct SignInResponse {
    token: String,
    expires_at: i64,
    user_id: String,
    team_id: String,
    name: String,
    role: UserRole,
}

async fn sign_in(
    State(shared): State<Arc<Shared>>,
    ClientAddress(address): ClientAddress,
    body: Result<Json<SignInRequest>, JsonRejection>,
) -> Result<Json<SignInResponse>, ApiError> {
    let Json(req) = body?;
    let ttl_ms =
        i64::try_from(shared.config.token_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let now = shared.clock.now_ms();
    if let Err(paused) = shared.sign_ins.check(&req.email, address, now) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_ATTEMPTS",
            paused,
        ));
    }
    let signed_in = shared
        .store
        .sign_in(&req.email, &req.password, ttl_ms)
        .await?;
    match &signed_in {
        Ok(_) => shared.sign_ins.succeeded(&req.email),
        Err(_) => shared.sign_ins.failed(&req.email, address, now),
    }
    match signed_in {
        Ok(s) => Ok(Json(SignInResponse {
            token: s.token,
            expires_at: s.expires_at,
            user_id: s.user.id,
            team_id: s.user.team_id,
            name: s.user.name,
            role: s.user.role,
        })),
        Err(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_FAILED",
            "The e-mail address or password is wrong.",
        )),
    }
}

async fn sign_out(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    shared.store.revoke_token(&caller.token).await?;
    shared
        .hub
        .revoke_technician_token(&crate::secrets::digest(&caller.token));
    Ok(StatusCode::NO_CONTENT)
}

async fn team(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let settings = shared.store.team_settings(&caller.user.team_id).await?;
    let key = if caller.user.role.manages_team() {
        shared.store.attended_key(&caller.user.team_id).await?
    } else {
        None
    };
    Ok(Json(serde_json::json!({
        "id": caller.user.team_id,
        "attended_key": key,
        "settings": settings,
    })))
}

async fn get_settings(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<TeamSettings>, ApiError> {
    let settings = shared
        .store
        .team_settings(&caller.user.team_id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "No such team."))?;
    Ok(Json(settings))
}

async fn put_settings(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    body: Result<Json<TeamSettings>, JsonRejection>,
) -> Result<Json<TeamSettings>, ApiError> {
    if !caller.user.role.manages_team() {
        return Err(ApiError::forbidden());
    }
    let Json(settings) = body?;
    if settings.time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_REQUEST",
            "time_zone must be an IANA time zone name such as Europe/Paris.",
        ));
    }
    shared
        .store
        .set_team_settings(&caller.user.team_id, &settings)
        .await?;
    tracing::info!(team = %caller.user.team_id, user = %caller.user.id, ?settings, "team settings changed");
    Ok(Json(settings))
}

#[derive(Serialize)]
struct DeviceView {
    id: String,
    name: String,
    online: bool,
    streamer_version: Option<String>,
    revoked: bool,
}

async fn devices(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let devices = shared.store.devices(&caller.user.team_id).await?;
    Ok(Json(
        devices
            .into_iter()
            .map(|d| DeviceView {
                online: shared.hub.device_online(&d.id),
                id: d.id,
                name: d.name,
                streamer_version: d.streamer_version,
                revoked: d.revoked,
            })
            .collect(),
    ))
}

async fn revoke_device(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !caller.user.role.manages_team() {
        return Err(ApiError::forbidden());
    }
    if !shared
        .store
        .revoke_device(&caller.user.team_id, &id)
        .await?
    {
        // Another team's device is indistinguishable from a missing one.
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "DEVICE_NOT_FOUND",
            "Your team has no such device.",
        ));
    }
    shared.hub.revoke_device(&id);
    tracing::info!(device = %id, user = %caller.user.id, "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

async fn deployment_code(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !caller.user.role.manages_team() {
        return Err(ApiError::forbidden());
    }
    let ttl_ms = i64::try_from(shared.config.deployment_code_ttl_secs.saturating_mul(1000))
        .unwrap_or(i64::MAX);
    let code = shared
        .store
        .create_deployment_code(&caller.user.team_id, ttl_ms)
        .await?;
    Ok(Json(serde_json::json!({
        "code": code,
        "expires_at": shared.clock.now_ms().saturating_add(ttl_ms),
    })))
}

async fn sessions(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = shared.store.sessions(&caller.user.team_id).await?;
    let rows: Vec<_> = rows
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "technician_id": s.technician_id,
                "device_id": s.device_id,
                "device_name": s.device_name,
                "access": s.access,
                "recorded": s.recorded,
                "recording_state": s.recording_state.as_str(),
                "started_at": s.started_at,
                "ended_at": s.ended_at,
                "end_reason": s.end_reason,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "sessions": rows })))
}

fn session_not_found() -> ApiError {
    // Another team's session or file is indistinguishable from a missing one.
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "Your team has no such session or recording.",
    )
}

async fn session_recordings(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = shared
        .store
        .session(&caller.user.team_id, &id)
        .await?
        .ok_or_else(session_not_found)?;
    let may_play = crate::console::may_play(&shared, &caller.user, &session).await?;
    let files = shared.store.recording_files(&session.id).await?;
    let files: Vec<_> = files
        .into_iter()
        .map(|f| {
            let mut v = serde_json::json!({
                "id": f.id,
                "monitor_id": f.monitor_id,
                "monitor_key": f.monitor_key,
                "monitor_name": f.monitor_name,
                "seq": f.seq,
                "split_reason": f.split_reason,
                "width": f.width,
                "height": f.height,
                "frame_rate": f.frame_rate,
                "orientation": f.orientation,
                "started_at": f.started_at,
                "ended_at": f.ended_at,
                "duration_ms": f.duration_ms,
                "size_bytes": f.size_bytes,
                "frame_count": f.frame_count,
                "sha256": f.sha256,
                "state": f.state,
            });
            if may_play && (f.state == "complete" || f.state == "incomplete") {
                let (play, download, expires) =
                    crate::console::links_for(&shared, &caller.user, &f.id);
                v["play_url"] = play.into();
                v["download_url"] = download.into();
                v["links_expire_at"] = expires.into();
            }
            v
        })
        .collect();
    Ok(Json(serde_json::json!({
        "session_id": session.id,
        "recorded": session.recorded,
        "recording_state": session.recording_state.as_str(),
        "may_play": may_play,
        "files": files,
    })))
}

async fn recording_links(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if crate::console::file_for_user(&shared, &caller.user.id, &id)
        .await?
        .is_none()
    {
        // Either not the team's, or the policy does not let this role play it: the same answer
        // for a file the caller may not know exists.
        if shared
            .store
            .recording_file(&caller.user.team_id, &id)
            .await?
            .is_none()
        {
            return Err(session_not_found());
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "Your team's playback policy does not let your role play this recording.",
        ));
    }
    let (play, download, expires) = crate::console::links_for(&shared, &caller.user, &id);
    Ok(Json(serde_json::json!({
        "play_url": play,
        "download_url": download,
        "expires_at": expires,
    })))
}
