//! The console's pages for people: members and invitations, the one-time invitation and
//! password-reset pages, the signed-in person's account, and the audit log. They call the same
//! operations as the JSON API (`crate::ops`), so every rule and every audit event is the same.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{esc, failed, page, plain_page, Viewer};
use super::{day_start, local_time, time_zone, urlencode, COOKIE};
use crate::api::{ApiError, AuditQuery, ClientAddress};
use crate::ops;
use crate::store::audit::Action;
use crate::store::issued::Withdrawn;
use crate::store::{StoreError, UserRole};
use crate::Shared;

/// A refusal as the console shows it: its sentence, its code kept for tests and scripts.
pub(super) fn refusal(e: &ApiError) -> String {
    format!(
        "<p class=\"error\" role=\"alert\" data-code=\"{}\">{}</p>",
        e.code(),
        esc(e.message())
    )
}

fn shown(message: &str) -> String {
    format!("<p class=\"saved\" role=\"status\">{}</p>", esc(message))
}

fn link_box(id: &str, what: &str, url: &str, expires: &str) -> String {
    format!(
        "<div class=\"saved\" role=\"status\"><p>{what} (works once, until {expires}):</p>\
         <p><input class=\"link-text\" id=\"{id}\" readonly value=\"{url}\"> \
         <button class=\"copy-text\" data-for=\"{id}\">Copy</button></p></div>",
        what = esc(what),
        url = esc(url),
        expires = esc(expires),
    )
}

fn role_options(current: UserRole, viewer_role: UserRole) -> String {
    let mut out = String::new();
    for role in [UserRole::Member, UserRole::Admin] {
        if role == UserRole::Admin && viewer_role != UserRole::Owner {
            continue;
        }
        let _ = write!(
            out,
            "<option value=\"{r}\"{sel}>{r}</option>",
            r = role.as_str(),
            sel = if role == current { " selected" } else { "" }
        );
    }
    out
}

async fn members_body(
    shared: &Shared,
    viewer: &Viewer,
    message: &str,
) -> Result<String, StoreError> {
    let tz = time_zone(shared, &viewer.user.team_id).await?;
    let me = &viewer.user;
    let manager = me.role.manages_team();
    let mut body = String::from(message);
    if manager {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/console/members/invite\" class=\"card row-form\" id=\"invite-form\">\
             <label>E-mail address<input name=\"email\" id=\"invite-email\" type=\"email\" required></label>\
             <label>Role<select name=\"role\" id=\"invite-role\">{}</select></label>\
             <button class=\"primary\" id=\"invite\">Invite</button></form>",
            role_options(UserRole::Member, me.role)
        );
    }
    body.push_str(
        "<table class=\"card\" id=\"members\"><thead><tr><th>Name</th><th>E-mail</th><th>Role</th><th></th></tr></thead><tbody>",
    );
    for u in shared.store.team_users(&me.team_id).await? {
        // What the viewer may do to this member; the server checks again on every action.
        let may_manage = manager
            && u.id != me.id
            && u.role != UserRole::Owner
            && !(me.role == UserRole::Admin && u.role == UserRole::Admin);
        let mut actions = String::new();
        if may_manage {
            let _ = write!(
                actions,
                "<form method=\"post\" action=\"/console/members/{id}/role\" class=\"inline\">\
                 <select name=\"role\" aria-label=\"Role of {name}\">{opts}</select> <button class=\"small\">Change role</button></form> \
                 <form method=\"post\" action=\"/console/members/{id}/password-reset\" class=\"inline\"><button class=\"small\">Password-reset link</button></form> \
                 <form method=\"post\" action=\"/console/members/{id}/remove\" class=\"inline\" data-confirm=\"Remove {name}? Their sign-ins end and their live sessions are cut now; their past sessions and recordings stay.\">\
                 <button class=\"danger small remove\">Remove</button></form>",
                id = esc(&u.id),
                name = esc(&u.name),
                opts = role_options(u.role, me.role),
            );
        }
        if me.role == UserRole::Owner && u.id != me.id {
            let _ = write!(
                actions,
                " <form method=\"post\" action=\"/console/members/{id}/role\" class=\"inline\" data-confirm=\"Make {name} the owner? You become an admin.\">\
                 <input type=\"hidden\" name=\"role\" value=\"owner\"><button class=\"small\">Make owner</button></form>",
                id = esc(&u.id),
                name = esc(&u.name),
            );
        }
        let _ = write!(
            body,
            "<tr data-member=\"{id}\" data-email=\"{email}\"><td>{name}{you}</td><td>{email}</td>\
             <td><span class=\"role {r}\">{r}</span></td><td class=\"actions\">{actions}</td></tr>",
            id = esc(&u.id),
            name = esc(&u.name),
            email = esc(&u.email),
            you = if u.id == me.id {
                " <span class=\"muted small\">(you)</span>"
            } else {
                ""
            },
            r = u.role.as_str(),
        );
    }
    body.push_str("</tbody></table>");
    if manager {
        let pending = shared.store.pending_invitations(&me.team_id).await?;
        if !pending.is_empty() {
            body.push_str("<h2>Invitations not yet accepted</h2><table class=\"card\" id=\"invitations\"><thead><tr><th>E-mail</th><th>Role</th><th>Invited by</th><th>Expires</th><th></th></tr></thead><tbody>");
            for i in pending {
                // Admins withdraw members' invitations; the owner any (the server checks again).
                let withdraw = if me.role == UserRole::Owner || i.role == UserRole::Member {
                    format!(
                        "<form method=\"post\" action=\"/console/invitations/withdraw\" class=\"inline\" \
                         data-confirm=\"Withdraw the invitation for {email}? Its link stops working.\">\
                         <input type=\"hidden\" name=\"email\" value=\"{email}\"><button class=\"small withdraw\">Withdraw</button></form>",
                        email = esc(&i.email)
                    )
                } else {
                    String::new()
                };
                let _ = write!(
                    body,
                    "<tr data-email=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"actions\">{withdraw}</td></tr>",
                    esc(&i.email),
                    esc(&i.email),
                    i.role.as_str(),
                    esc(i.invited_by.as_deref().unwrap_or("the relay's operator")),
                    esc(&local_time(i.expires_at, &tz)),
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    Ok(body)
}

async fn members_page(
    shared: &Shared,
    viewer: &Viewer,
    status: StatusCode,
    message: &str,
) -> Response {
    match members_body(shared, viewer, message).await {
        Ok(body) => (status, page("Members", viewer, "/console/members", &body)).into_response(),
        Err(e) => failed(e),
    }
}

fn status_of(r: &Result<String, ApiError>) -> StatusCode {
    match r {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status(),
    }
}

async fn after(shared: &Shared, viewer: &Viewer, r: Result<String, ApiError>) -> Response {
    let message = match &r {
        Ok(m) => m.clone(),
        Err(e) => refusal(e),
    };
    members_page(shared, viewer, status_of(&r), &message).await
}

pub(crate) async fn members(State(shared): State<Arc<Shared>>, viewer: Viewer) -> Response {
    members_page(&shared, &viewer, StatusCode::OK, "").await
}

#[derive(Deserialize)]
pub(crate) struct InviteForm {
    email: String,
    role: String,
}

fn parse_role(s: &str) -> Result<UserRole, ApiError> {
    UserRole::parse(s).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_VALUE",
            "A role is owner, admin or member.",
        )
    })
}

pub(crate) async fn invite(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Form(f): Form<InviteForm>,
) -> Response {
    let r = async {
        let role = parse_role(&f.role)?;
        let inv = ops::invite(&shared, viewer.who(), viewer.host.as_deref(), &f.email, role).await?;
        let tz = time_zone(&shared, &viewer.user.team_id).await?;
        let mut m = link_box(
            "invitation-link",
            &format!("Invitation for {} as {}", inv.email, inv.role.as_str()),
            &inv.url,
            &local_time(inv.expires_at, &tz),
        );
        if inv.emailed {
            let _ = write!(m, "{}", shown(&format!("E-mailed to {}.", inv.email)));
        } else if let Some(err) = inv.email_error {
            let _ = write!(
                m,
                "<p class=\"notice\">The e-mail could not be sent ({}): send the link yourself.</p>",
                esc(&err)
            );
        }
        Ok(m)
    }
    .await;
    after(&shared, &viewer, r).await
}

#[derive(Deserialize)]
pub(crate) struct WithdrawForm {
    email: String,
}

pub(crate) async fn withdraw(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Form(f): Form<WithdrawForm>,
) -> Response {
    let r = ops::withdraw_invitation(&shared, viewer.who(), &f.email)
        .await
        .map(|()| shown(&format!("The invitation for {} was withdrawn.", f.email)));
    after(&shared, &viewer, r).await
}

#[derive(Deserialize)]
pub(crate) struct RoleForm {
    role: String,
}

pub(crate) async fn set_role(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(f): Form<RoleForm>,
) -> Response {
    let r = async {
        let role = parse_role(&f.role)?;
        let withdrawn = ops::set_role(&shared, viewer.who(), &id, role).await?;
        Ok(shown(&if role == UserRole::Owner {
            "Ownership transferred: you are now an admin.".to_owned()
        } else if withdrawn == Withdrawn::default() {
            "Role changed.".to_owned()
        } else {
            format!("Role changed; {withdrawn}.")
        }))
    }
    .await;
    // After a transfer the viewer is an admin: the page is drawn for their new role.
    let viewer = match shared.store.user(&viewer.user.id).await {
        Ok(Some(user)) => Viewer { user, ..viewer },
        Ok(None) => viewer,
        Err(e) => return failed(e),
    };
    after(&shared, &viewer, r).await
}

pub(crate) async fn remove(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let r = ops::remove_member(&shared, viewer.who(), &id)
        .await
        .map(|withdrawn| {
            shown(&format!(
                "Member removed: their sign-ins ended and their live sessions were cut; {withdrawn}."
            ))
        });
    after(&shared, &viewer, r).await
}

pub(crate) async fn reset_link(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let (url, expires) =
            ops::password_reset_link(&shared, viewer.who(), viewer.host.as_deref(), &id).await?;
        let tz = time_zone(&shared, &viewer.user.team_id).await?;
        let whom = shared
            .store
            .user(&id)
            .await?
            .map(|u| u.name)
            .unwrap_or_default();
        Ok(link_box(
            "reset-link",
            &format!("Password-reset link for {whom}"),
            &url,
            &local_time(expires, &tz),
        ))
    }
    .await;
    after(&shared, &viewer, r).await
}

// ---- One-time links -----------------------------------------------------------------------------

fn accept_form(token: &str, offer: &crate::store::members::LinkOffer, error: &str) -> String {
    let role = match offer.role {
        UserRole::Owner => "its owner",
        UserRole::Admin => "an admin",
        UserRole::Member => "a member",
    };
    plain_page(
        "Join your team",
        &format!(
            "<h1>Join {team}</h1><p id=\"offer\">You are invited to join <strong>{team}</strong> as {role}, \
             with the address <strong>{email}</strong>: you will sign in with it.</p>{error}\
             <form method=\"post\" action=\"/console/invitations/{t}\" class=\"card\">\
             <label>Your name<input name=\"name\" id=\"name\" autocomplete=\"name\" required maxlength=\"100\"></label>\
             <label>Password (at least 12 characters)<input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"new-password\" required minlength=\"12\"></label>\
             <button class=\"primary\" id=\"join\">Join</button></form>",
            t = esc(token),
            team = esc(&offer.team_name),
            email = esc(&offer.email),
        ),
    )
}

/// An invitation's page: checked as it opens, so a used, withdrawn or expired link says so
/// before anyone types a name and a password.
pub(crate) async fn invitation_page(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    match ops::peek_link(&shared, true, &token).await {
        Ok(offer) => Html(accept_form(&token, &offer, "")).into_response(),
        Err(e) => link_refused(&e, String::new()),
    }
}

#[derive(Deserialize)]
pub(crate) struct AcceptForm {
    name: String,
    password: String,
}

fn link_refused(e: &ApiError, retry: String) -> Response {
    // A dead link cannot be retried: say so plainly, without the form.
    if matches!(e.code(), "LINK_EXPIRED" | "LINK_USED" | "LINK_INVALID") {
        let body = format!(
            "<h1>This link does not work</h1>{}<p>Ask your team's owner or an admin for a new one.</p>",
            refusal(e)
        );
        return (e.status(), Html(plain_page("Link not valid", &body))).into_response();
    }
    (e.status(), Html(retry)).into_response()
}

fn with_cookie(mut r: Response, token: &str, max_age: u64) -> Response {
    let cookie =
        format!("{COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(crate) async fn accept(
    State(shared): State<Arc<Shared>>,
    ClientAddress(addr): ClientAddress,
    Path(token): Path<String>,
    Form(f): Form<AcceptForm>,
) -> Response {
    let user = match ops::accept_invitation(&shared, &token, &f.name, &f.password, addr).await {
        Ok(user) => user,
        Err(e) => {
            let form = match ops::peek_link(&shared, true, &token).await {
                Ok(offer) => accept_form(&token, &offer, &refusal(&e)),
                Err(dead) => return link_refused(&dead, String::new()),
            };
            return link_refused(&e, form);
        }
    };
    // Signed in at once, as the sign-in page would.
    match ops::sign_in(&shared, &user.email, &f.password, addr).await {
        Ok(s) => with_cookie(
            Redirect::to("/console/sessions").into_response(),
            &s.token,
            shared.config.token_ttl_secs,
        ),
        Err(_) => Redirect::to("/console/sign-in").into_response(),
    }
}

fn reset_form(token: &str, offer: &crate::store::members::LinkOffer, error: &str) -> String {
    plain_page(
        "Choose a new password",
        &format!(
            "<h1>Choose a new password</h1><p id=\"offer\">For <strong>{email}</strong> in <strong>{team}</strong>.</p>{error}\
             <form method=\"post\" action=\"/console/password-reset/{t}\" class=\"card\">\
             <label>New password (at least 12 characters)<input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"new-password\" required minlength=\"12\"></label>\
             <button class=\"primary\" id=\"set-password\">Set password</button></form>",
            t = esc(token),
            team = esc(&offer.team_name),
            email = esc(&offer.email),
        ),
    )
}

/// A reset link's page, checked as it opens (as an invitation's).
pub(crate) async fn reset_page(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
) -> Response {
    match ops::peek_link(&shared, false, &token).await {
        Ok(offer) => Html(reset_form(&token, &offer, "")).into_response(),
        Err(e) => link_refused(&e, String::new()),
    }
}

#[derive(Deserialize)]
pub(crate) struct ResetForm {
    password: String,
}

pub(crate) async fn reset(
    State(shared): State<Arc<Shared>>,
    ClientAddress(addr): ClientAddress,
    Path(token): Path<String>,
    Form(f): Form<ResetForm>,
) -> Response {
    match ops::reset_password(&shared, &token, &f.password, addr).await {
        Ok(_) => Html(plain_page(
            "Password set",
            "<h1>Password set</h1><p class=\"saved\" role=\"status\">Your new password is set and your other sign-ins have ended.</p>\
             <p><a class=\"button\" href=\"/console/sign-in\">Sign in</a></p>",
        ))
        .into_response(),
        Err(e) => match ops::peek_link(&shared, false, &token).await {
            Ok(offer) => link_refused(&e, reset_form(&token, &offer, &refusal(&e))),
            Err(dead) => link_refused(&dead, String::new()),
        },
    }
}

// ---- The signed-in person's account ------------------------------------------------------------

fn account_body(viewer: &Viewer, message: &str) -> String {
    format!(
        "{message}<p class=\"muted\">{name} · {email} · {role}</p>\
         <form method=\"post\" action=\"/console/account/password\" class=\"card narrow-form\">\
         <fieldset><legend>Change your password</legend>\
         <label>Current password<input name=\"current_password\" id=\"current-password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <label>New password (at least 12 characters)<input name=\"new_password\" id=\"new-password\" type=\"password\" autocomplete=\"new-password\" required minlength=\"12\"></label>\
         </fieldset><button class=\"primary\" id=\"change-password\">Change password</button>\
         <p class=\"muted small\">Your other sign-ins end; this one stays.</p></form>",
        name = esc(&viewer.user.name),
        email = esc(&viewer.user.email),
        role = viewer.user.role.as_str(),
    )
}

pub(crate) async fn account(viewer: Viewer) -> Response {
    page("Your account", &viewer, "", &account_body(&viewer, "")).into_response()
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    current_password: String,
    new_password: String,
}

pub(crate) async fn change_password(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Form(f): Form<PasswordForm>,
) -> Response {
    let (status, message) =
        match ops::change_password(&shared, viewer.who(), &f.current_password, &f.new_password)
            .await
        {
            Ok(()) => (
                StatusCode::OK,
                shown("Password changed; your other sign-ins have ended."),
            ),
            Err(e) => (e.status(), refusal(&e)),
        };
    (
        status,
        page(
            "Your account",
            &viewer,
            "",
            &account_body(&viewer, &message),
        ),
    )
        .into_response()
}

// ---- The audit log ------------------------------------------------------------------------------

/// The page's query: dates (`YYYY-MM-DD`, in the team's zone) rather than the API's milliseconds.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditPageQuery {
    action: Option<String>,
    actor: Option<String>,
    from: Option<String>,
    until: Option<String>,
    before: Option<i64>,
}

const AUDIT_PAGE: u32 = 50;

async fn audit_body(
    shared: &Shared,
    viewer: &Viewer,
    q: &AuditPageQuery,
) -> Result<String, ApiError> {
    let tz = time_zone(shared, &viewer.user.team_id).await?;
    let bad_date = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_VALUE",
            "Dates are written YYYY-MM-DD.",
        )
    };
    let from = match q.from.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => Some(day_start(d, &tz).ok_or_else(bad_date)?),
        None => None,
    };
    // `until` is the last day shown, so the bound is the next midnight.
    let until = match q.until.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => Some(
            day_start(d, &tz)
                .ok_or_else(bad_date)?
                .saturating_add(86_400_000),
        ),
        None => None,
    };
    let api = AuditQuery {
        action: q.action.clone(),
        actor: q.actor.clone(),
        from,
        until,
        before: q.before,
        limit: Some(AUDIT_PAGE),
    };
    let filter = api.filter()?;
    let events = ops::audit_log(shared, viewer.who(), &filter).await?;
    let members = shared.store.team_users(&viewer.user.team_id).await?;
    let selected = |a: &Option<String>, v: &str| {
        if a.as_deref() == Some(v) {
            " selected"
        } else {
            ""
        }
    };
    let mut actions = String::from("<option value=\"\">Every action</option>");
    for a in Action::all() {
        let _ = write!(
            actions,
            "<option value=\"{n}\"{s}>{label}</option>",
            n = a.as_str(),
            s = selected(&q.action, a.as_str()),
            label = a.as_str().replace('_', " "),
        );
    }
    let mut actors = String::from("<option value=\"\">Everyone</option>");
    for m in &members {
        let _ = write!(
            actors,
            "<option value=\"{id}\"{s}>{name}</option>",
            id = esc(&m.id),
            s = selected(&q.actor, &m.id),
            name = esc(&m.name),
        );
    }
    let mut query = Vec::new();
    for (k, v) in [
        ("action", q.action.as_deref()),
        ("actor", q.actor.as_deref()),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            query.push(format!("{k}={}", urlencode(v)));
        }
    }
    let mut csv_query = query.clone();
    if let Some(f) = from {
        csv_query.push(format!("from={f}"));
    }
    if let Some(u) = until {
        csv_query.push(format!("until={u}"));
    }
    for (k, v) in [("from", q.from.as_deref()), ("until", q.until.as_deref())] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            query.push(format!("{k}={}", urlencode(v)));
        }
    }
    let mut body = format!(
        "<form method=\"get\" action=\"/console/audit\" class=\"card row-form\" id=\"audit-filter\">\
         <label>Action<select name=\"action\" id=\"filter-action\">{actions}</select></label>\
         <label>Actor<select name=\"actor\" id=\"filter-actor\">{actors}</select></label>\
         <label>From<input type=\"date\" name=\"from\" id=\"filter-from\" value=\"{from}\"></label>\
         <label>Until<input type=\"date\" name=\"until\" id=\"filter-until\" value=\"{until}\"></label>\
         <button class=\"primary\">Filter</button> <a class=\"button\" id=\"audit-csv\" href=\"/api/v1/audit.csv?{csv}\" download>Download CSV</a></form>\
         <p class=\"muted small\">Times in {zone}. Newest first. Events are kept {days} days.</p>\
         <table class=\"card\" id=\"audit\"><thead><tr>",
        from = esc(q.from.as_deref().unwrap_or("")),
        until = esc(q.until.as_deref().unwrap_or("")),
        csv = esc(&csv_query.join("&")),
        zone = esc(tz.name()),
        days = shared.config.audit_retention_days,
    );
    for c in ops::AUDIT_COLUMNS {
        let _ = write!(body, "<th>{c}</th>");
    }
    body.push_str("</tr></thead><tbody>");
    let objects = object_links(shared, &viewer.user.team_id, &events, &tz).await?;
    for e in &events {
        body.push_str("<tr>");
        for (n, f) in ops::audit_row(e, &tz).iter().enumerate() {
            let label = ops::AUDIT_COLUMNS[n];
            match (n, objects.get(&e.object)) {
                // The Object column: a session or a recording by what a person knows it by,
                // linked to its page, the id kept beneath.
                (4, Some((href, words))) => {
                    let _ = write!(
                        body,
                        "<td data-label=\"{label}\"><a href=\"{href}\" class=\"object\">{words}</a><br><span class=\"muted small\">{id}</span></td>",
                        href = esc(href),
                        words = esc(words),
                        id = esc(f),
                    );
                }
                _ => {
                    let _ = write!(body, "<td data-label=\"{label}\">{}</td>", esc(f));
                }
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>");
    if events.is_empty() {
        body.push_str("<p class=\"muted\">No event matches.</p>");
    }
    if events.len() == AUDIT_PAGE as usize {
        if let Some(last) = events.last() {
            query.push(format!("before={}", last.id));
            let _ = write!(
                body,
                "<p><a class=\"button\" id=\"older\" href=\"/console/audit?{}\">Older events</a></p>",
                esc(&query.join("&"))
            );
        }
    }
    Ok(body)
}

/// The sessions and recording files the events name, by id: the session's page and words a
/// person knows them by (the computer, when the session started, the monitor and part).
async fn object_links(
    shared: &Shared,
    team_id: &str,
    events: &[crate::store::audit::AuditEvent],
    tz: &chrono_tz::Tz,
) -> Result<std::collections::HashMap<String, (String, String)>, StoreError> {
    let mut out = std::collections::HashMap::new();
    for e in events {
        if out.contains_key(&e.object) || e.object.is_empty() {
            continue;
        }
        let on_file = matches!(
            e.action.as_str(),
            "file_played" | "file_downloaded" | "link_issued"
        );
        let (session_id, part) = if on_file {
            match shared.store.recording_file(team_id, &e.object).await? {
                Some(f) => (
                    f.session_id.clone(),
                    Some(format!(", monitor {}, part {}", f.monitor_name, f.seq)),
                ),
                None => continue,
            }
        } else {
            (e.object.clone(), None)
        };
        let Some(session) = shared.store.session(team_id, &session_id).await? else {
            continue;
        };
        let session_words = format!(
            "session with {}, {}",
            session.device_name,
            local_time(session.started_at, tz)
        );
        let words = match part {
            Some(part) => format!("Recording of the {session_words}{part}"),
            None => format!("S{}", &session_words[1..]),
        };
        out.insert(
            e.object.clone(),
            (format!("/console/sessions/{}", session.id), words),
        );
    }
    Ok(out)
}

pub(crate) async fn audit(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    q: Result<Query<AuditPageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A query the page did not make (a hand-edited address) is refused with why, not ignored.
    let q = match q {
        Ok(Query(q)) => q,
        Err(_) => {
            let e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_VALUE",
                "The audit log's address takes action, actor, from and until (YYYY-MM-DD) and before (a number).",
            );
            return (
                e.status(),
                page("Audit log", &viewer, "/console/audit", &refusal(&e)),
            )
                .into_response();
        }
    };
    match audit_body(&shared, &viewer, &q).await {
        Ok(body) => page("Audit log", &viewer, "/console/audit", &body).into_response(),
        Err(e) => (
            e.status(),
            page("Audit log", &viewer, "/console/audit", &refusal(&e)),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_local_midnight() {
        // 2026-11-27 00:00 in Paris is 23:00 UTC the day before.
        assert_eq!(
            day_start("2026-11-27", &chrono_tz::Europe::Paris),
            Some(1_795_734_000_000)
        );
        assert_eq!(day_start("27/11/2026", &chrono_tz::UTC), None);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(urlencode("a b&c=d"), "a%20b%26c%3Dd");
    }
}
