//! The HTTP side of the relay's port: the agent WebSocket endpoint and the JSON API under the console.
//!
//! Every API call is authorised here, on the server, against the caller's team and role.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::ops::{self, Who};
use crate::session_log::{self, SessionQuery};
use crate::store::audit::{Action, AuditEvent, AuditFilter};
use crate::store::{SessionRecord, StoreError, TeamSettings, UserRecord, UserRole};
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
        .route("/healthz", get(crate::metrics::health))
        .route("/api/v1/sign-in", post(sign_in))
        .route("/api/v1/sign-out", post(sign_out))
        .route("/api/v1/team", get(team))
        .route("/api/v1/team/settings", get(get_settings).put(put_settings))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/{id}/revoke", post(revoke_device))
        .route(
            "/api/v1/deployment-codes",
            get(deployment_codes).post(deployment_code),
        )
        .route(
            "/api/v1/deployment-codes/{id}/revoke",
            post(revoke_deployment_code),
        )
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions.csv", get(sessions_csv))
        .route("/api/v1/sessions/{id}/end", post(end_session))
        .route("/api/v1/sessions/{id}/recordings", get(session_recordings))
        .route("/api/v1/recordings/{id}/links", post(recording_links))
        .route("/api/v1/team/name", put(rename_team))
        .route("/api/v1/members", get(members))
        .route("/api/v1/members/invitations", post(invite))
        .route(
            "/api/v1/members/invitations/{email}",
            delete(withdraw_invitation),
        )
        .route("/api/v1/members/{id}", delete(remove_member))
        .route("/api/v1/members/{id}/role", put(set_role))
        .route(
            "/api/v1/members/{id}/password-reset",
            post(password_reset_link),
        )
        .route("/api/v1/invitations/accept", post(accept_invitation))
        .route("/api/v1/password-reset", post(reset_password))
        .route("/api/v1/me/password", put(change_password))
        .route("/api/v1/audit", get(audit_events))
        .route("/api/v1/audit.csv", get(audit_csv))
        .merge(crate::console::routes())
        .fallback(crate::console::fallback)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            crate::browser_guard::guard,
        ))
        .with_state(shared)
}

/// An agent's WebSocket: what it may send before its handshake ends is bounded
/// (`crate::agent::socket`).
async fn agent(State(shared): State<Arc<Shared>>, request: axum::extract::Request) -> Response {
    let tracker = shared.tracker.clone();
    crate::agent::socket::upgrade(
        request,
        Some(crate::agent::socket::BEFORE_HANDSHAKE),
        move |socket, gate| tracker.track_future(crate::agent::serve(shared, socket, gate)),
    )
}

/// An API error: an HTTP status and a stable code with a sentence.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The stable code.
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// The sentence for people.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
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
    addr: Option<std::net::IpAddr>,
    host: Option<String>,
}

impl Caller {
    fn who(&self) -> Who<'_> {
        Who {
            user: &self.user,
            token: &self.token,
            addr: self.addr,
        }
    }
}

/// The request's `Host` header, for links that point back at this relay.
pub(crate) fn request_host(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .map(str::to_owned)
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
                addr: parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip()),
                host: request_host(&parts.headers),
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
    let s = ops::sign_in(&shared, &req.email, &req.password, address).await?;
    Ok(Json(SignInResponse {
        token: s.token,
        expires_at: s.expires_at,
        user_id: s.user.id,
        team_id: s.user.team_id,
        name: s.user.name,
        role: s.user.role,
    }))
}

async fn sign_out(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    ops::sign_out(&shared, caller.who()).await?;
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
        "name": shared.store.team_name(&caller.user.team_id).await?,
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
    Ok(Json(
        ops::change_settings(&shared, caller.who(), settings).await?,
    ))
}

#[derive(Serialize)]
struct DeviceView {
    id: String,
    name: String,
    online: bool,
    busy: bool,
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
                busy: shared.hub.device_busy(&d.id) == Some(true),
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
    ops::revoke_device(&shared, caller.who(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn end_session(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    ops::end_session(&shared, caller.who(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deployment_codes(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = shared.clock.now_ms();
    let codes: Vec<_> = ops::deployment_codes(&shared, caller.who())
        .await?
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id,
                "hint": c.hint,
                "created_at": c.created_at,
                "expires_at": c.expires_at,
                "revoked_at": c.revoked_at,
                "created_by_name": c.created_by_name,
                "devices": c.devices,
                "state": deployment_code_state(&c, now),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "deployment_codes": codes })))
}

/// `active`, `expired` or `revoked`.
pub(crate) fn deployment_code_state(c: &crate::store::DeploymentCode, now: i64) -> &'static str {
    if c.revoked_at.is_some() {
        "revoked"
    } else if c.expires_at <= now {
        "expired"
    } else {
        "active"
    }
}

async fn revoke_deployment_code(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    ops::revoke_deployment_code(&shared, caller.who(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deployment_code(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (code, expires_at) = ops::deployment_code(&shared, caller.who()).await?;
    Ok(Json(serde_json::json!({
        "code": code,
        "expires_at": expires_at,
    })))
}

fn session_query(q: Result<Query<SessionQuery>, QueryRejection>) -> Result<SessionQuery, ApiError> {
    q.map(|Query(q)| q).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_VALUE",
            "The session log's query takes from, until (integers), technician, device, access, \
             recording_state, live (true or false), after and limit (see docs/openapi.json).",
        )
    })
}

fn session_json(s: &SessionRecord) -> serde_json::Value {
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
}

async fn sessions(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    q: Result<Query<SessionQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filter = session_query(q)?.filter()?;
    let rows = shared
        .store
        .find_sessions(&caller.user.team_id, &filter)
        .await?;
    Ok(Json(serde_json::json!({
        "sessions": rows.iter().map(session_json).collect::<Vec<_>>(),
        "next_after": session_log::next_after(&rows, &filter),
    })))
}

async fn sessions_csv(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    q: Result<Query<SessionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    // The export holds every matching session: paging does not apply (openapi.json).
    let query = SessionQuery {
        after: None,
        limit: None,
        ..session_query(q)?
    };
    let mut filter = query.filter()?;
    let tz = crate::console::time_zone(&shared, &caller.user.team_id).await?;
    let csv =
        session_log::sessions_csv(&shared.store, &caller.user.team_id, &mut filter, &tz).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sessions.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
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
    if session.recorded {
        crate::console::recordings_viewed(&shared, &caller.user, &session, caller.addr).await?;
    }
    let files = shared.store.recording_files(&session.id).await?;
    let mut listed = Vec::with_capacity(files.len());
    for f in files {
        let links = if may_play && (f.state == "complete" || f.state == "incomplete") {
            Some(
                crate::console::links_for(
                    &shared,
                    &caller.user,
                    &f.id,
                    caller.addr,
                    crate::console::LinkUse::Own,
                )
                .await?,
            )
        } else {
            None
        };
        listed.push((f, links));
    }
    let files: Vec<_> = listed
        .into_iter()
        .map(|(f, links)| {
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
            if let Some((play, download, expires)) = links {
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

/// `POST /api/v1/recordings/{id}/links?use=play`: links for playing at once in the caller's own
/// player (the console's Play), not audited as issued (the play is).
#[derive(Debug, Default, Deserialize)]
struct LinksQuery {
    #[serde(rename = "use")]
    for_use: Option<String>,
}

async fn recording_links(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<LinksQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let used = match query.map(|Query(q)| q.for_use) {
        Ok(None) => crate::console::LinkUse::HandedOver("play and download links, 10 minutes"),
        Ok(Some(u)) if u == "play" => crate::console::LinkUse::Own,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_VALUE",
                "use is play (links for the caller's own player) or left out.",
            ))
        }
    };
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
    let (play, download, expires) =
        crate::console::links_for(&shared, &caller.user, &id, caller.addr, used).await?;
    Ok(Json(serde_json::json!({
        "play_url": play,
        "download_url": download,
        "expires_at": expires,
    })))
}

#[derive(Deserialize)]
struct NameRequest {
    name: String,
}

async fn rename_team(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    body: Result<Json<NameRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(req) = body?;
    let name = ops::rename_team(&shared, caller.who(), &req.name).await?;
    Ok(Json(
        serde_json::json!({ "id": caller.user.team_id, "name": name }),
    ))
}

fn member_json(u: &UserRecord) -> serde_json::Value {
    serde_json::json!({ "id": u.id, "email": u.email, "name": u.name, "role": u.role })
}

async fn members(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let members: Vec<_> = shared
        .store
        .team_users(&caller.user.team_id)
        .await?
        .iter()
        .map(member_json)
        .collect();
    // Pending invitations are the managers' business.
    let invitations: Vec<_> = if caller.user.role.manages_team() {
        shared
            .store
            .pending_invitations(&caller.user.team_id)
            .await?
            .into_iter()
            .map(|i| {
                serde_json::json!({
                    "email": i.email,
                    "role": i.role,
                    "invited_by": i.invited_by,
                    "created_at": i.created_at,
                    "expires_at": i.expires_at,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Json(
        serde_json::json!({ "members": members, "invitations": invitations }),
    ))
}

#[derive(Deserialize)]
struct InviteRequest {
    email: String,
    role: UserRole,
}

async fn invite(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    body: Result<Json<InviteRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ops::Invitation>), ApiError> {
    let Json(req) = body?;
    let invitation = ops::invite(
        &shared,
        caller.who(),
        caller.host.as_deref(),
        &req.email,
        req.role,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(invitation)))
}

async fn withdraw_invitation(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(email): Path<String>,
) -> Result<StatusCode, ApiError> {
    ops::withdraw_invitation(&shared, caller.who(), &email).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a change of membership withdrew, as the API answers it.
#[derive(Serialize)]
struct WithdrawnAnswer {
    withdrawn: crate::store::issued::Withdrawn,
}

async fn remove_member(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WithdrawnAnswer>, ApiError> {
    let withdrawn = ops::remove_member(&shared, caller.who(), &id).await?;
    Ok(Json(WithdrawnAnswer { withdrawn }))
}

#[derive(Deserialize)]
struct RoleRequest {
    role: UserRole,
}

async fn set_role(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<RoleRequest>, JsonRejection>,
) -> Result<Json<WithdrawnAnswer>, ApiError> {
    let Json(req) = body?;
    let withdrawn = ops::set_role(&shared, caller.who(), &id, req.role).await?;
    Ok(Json(WithdrawnAnswer { withdrawn }))
}

async fn password_reset_link(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (url, expires_at) =
        ops::password_reset_link(&shared, caller.who(), caller.host.as_deref(), &id).await?;
    Ok(Json(
        serde_json::json!({ "url": url, "expires_at": expires_at }),
    ))
}

#[derive(Deserialize)]
struct AcceptRequest {
    token: String,
    name: String,
    password: String,
}

async fn accept_invitation(
    State(shared): State<Arc<Shared>>,
    ClientAddress(address): ClientAddress,
    body: Result<Json<AcceptRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(req) = body?;
    let user =
        ops::accept_invitation(&shared, &req.token, &req.name, &req.password, address).await?;
    let mut v = member_json(&user);
    v["team_id"] = user.team_id.clone().into();
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Deserialize)]
struct ResetRequest {
    token: String,
    password: String,
}

async fn reset_password(
    State(shared): State<Arc<Shared>>,
    ClientAddress(address): ClientAddress,
    body: Result<Json<ResetRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(req) = body?;
    ops::reset_password(&shared, &req.token, &req.password, address).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PasswordRequest {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    body: Result<Json<PasswordRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(req) = body?;
    ops::change_password(
        &shared,
        caller.who(),
        &req.current_password,
        &req.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit log's query: filters, and the page's cursor and size.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until: Option<i64>,
    /// The previous page's `next_before`.
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

impl AuditQuery {
    pub(crate) fn filter(&self) -> Result<AuditFilter, ApiError> {
        let action = match self.action.as_deref().filter(|a| !a.is_empty()) {
            None => None,
            Some(a) => Some(Action::parse(a).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_VALUE",
                    format!("{a:?} is not an audit action (see docs/openapi.json)."),
                )
            })?),
        };
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_VALUE",
                "limit is 1 to 1000.",
            ));
        }
        Ok(AuditFilter {
            action,
            actor_id: self.actor.clone().filter(|a| !a.is_empty()),
            from: self.from,
            until: self.until,
            before: self.before,
            limit,
        })
    }
}

fn audit_query(q: Result<Query<AuditQuery>, QueryRejection>) -> Result<AuditQuery, ApiError> {
    q.map(|Query(q)| q).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_VALUE",
            "The audit log's query takes action, actor, from, until, before and limit \
             (times and before as integers; see docs/openapi.json).",
        )
    })
}

pub(crate) fn event_json(e: &AuditEvent) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "at": e.at,
        "actor_kind": e.actor_kind,
        "actor_id": e.actor_id,
        "actor_name": e.actor_name,
        "action": e.action,
        "object": e.object,
        "detail": e.detail,
        "client_address": e.client_addr,
    })
}

async fn audit_events(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filter = audit_query(q)?.filter()?;
    let events = ops::audit_log(&shared, caller.who(), &filter).await?;
    let next = (events.len() == filter.limit as usize)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(serde_json::json!({
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

async fn audit_csv(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut filter = audit_query(q)?.filter()?;
    let tz = crate::console::time_zone(&shared, &caller.user.team_id).await?;
    let csv = ops::audit_csv(&shared, caller.who(), &mut filter, &tz).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit-log.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}
