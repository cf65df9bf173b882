//! The tools a team works with, through the JSON API: the session log (filters, cursor pages, CSV),
//! ending a live session, the deployment-code list and its revoke, withdrawing an invitation, and
//! the answers to addresses that do not exist or links a browser opens after they stopped working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::recorded::{recorded_session, stream};
use common::*;
use protocol::{Credential, EndReason, ErrorCode, Message, Role, SessionTarget};
use relay::clock::Clock as _;
use relay::store::{RecordingState, UserRole};
use serde_json::{json, Value};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A member of `team` with `role`, signed in, as a [`Team`] whose token is theirs.
async fn member(relay: &TestRelay, team: &Team, email: &str, role: UserRole) -> (String, Team) {
    let id = relay
        .store
        .add_user(&team.id, email, "Someone", role, PASSWORD)
        .await
        .unwrap();
    let token = relay.sign_in(email).await;
    (
        id,
        Team {
            id: team.id.clone(),
            attended_key: team.attended_key.clone(),
            owner_email: team.owner_email.clone(),
            token,
        },
    )
}

/// A session by device that the technician ends at once; returns its id.
async fn short_session(
    relay: &TestRelay,
    team_id: &str,
    tech: &mut relay_client::Connection,
    streamer: &mut relay_client::Connection,
    device_id: &str,
) -> String {
    let Message::SessionStarted { session_id, .. } = pair(
        tech,
        streamer,
        SessionTarget::Device {
            device_id: device_id.to_owned(),
        },
    )
    .await
    else {
        panic!()
    };
    tech.send(&Message::LeaveSession).await.unwrap();
    loop {
        if let Message::SessionEnded { .. } = recv(tech).await {
            break;
        }
    }
    loop {
        if let Message::SessionEnded { .. } = recv(streamer).await {
            break;
        }
    }
    // The row's end is written just after both sides are told.
    for _ in 0..100 {
        let s = relay.store.session(team_id, &session_id).await;
        if s.unwrap().is_some_and(|s| s.ended_at.is_some()) {
            return session_id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("session {session_id} never ended in the store")
}

async fn list(relay: &TestRelay, token: &str, query: &str) -> (Vec<Value>, Option<String>) {
    let (status, body) = relay
        .api(
            "GET",
            &format!("/api/v1/sessions?{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    (
        body["sessions"].as_array().unwrap().clone(),
        body["next_after"].as_str().map(str::to_owned),
    )
}

fn ids(sessions: &[Value]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_session_log_filters_pages_by_cursor_and_exports_the_same_rows() {
    let relay = TestRelay::start().await;
    let team = relay.team("log").await;
    let (tech_id, tech_team) = member(&relay, &team, "tech@log.example", UserRole::Member).await;
    let (mut desk, desk_id, _) = relay.device(&team, CURRENT).await;
    let (mut lab, lab_id, _) = relay.device(&team, CURRENT).await;

    // Five sessions ten minutes apart: three at the desk by the owner, two in the lab by the technician.
    let mut owner = relay.technician(&team).await;
    let mut tech = relay.technician(&tech_team).await;
    let mut made = Vec::new();
    for i in 0..5 {
        let id = if i % 2 == 0 {
            short_session(&relay, &team.id, &mut owner, &mut desk, &desk_id).await
        } else {
            short_session(&relay, &team.id, &mut tech, &mut lab, &lab_id).await
        };
        made.push(id);
        relay.clock.advance(Duration::from_secs(600));
    }
    made.reverse(); // newest first

    // Pages of two by cursor give every session once, newest first.
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let (page, next) = list(&relay, &team.token, &format!("limit=2&after={after}")).await;
        pages += 1;
        seen.extend(ids(&page));
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen, made);
    assert_eq!(pages, 3);

    // Filters narrow it.
    let (by_tech, _) = list(&relay, &team.token, &format!("technician={tech_id}")).await;
    assert_eq!(ids(&by_tech), vec![made[1].clone(), made[3].clone()]);
    let (at_desk, _) = list(&relay, &team.token, &format!("device={desk_id}")).await;
    assert_eq!(at_desk.len(), 3);
    let (attended, _) = list(&relay, &team.token, "access=attended").await;
    assert!(attended.is_empty());
    let (unrecorded, _) = list(&relay, &team.token, "recording_state=not_recorded").await;
    assert_eq!(unrecorded.len(), 5);
    let (live, _) = list(&relay, &team.token, "live=true").await;
    assert!(live.is_empty());
    let second_start = by_tech[1]["started_at"].as_i64().unwrap();
    let (window, _) = list(
        &relay,
        &team.token,
        &format!("from={}&until={}", second_start, second_start + 2 * 600_000),
    )
    .await;
    assert_eq!(ids(&window), vec![made[2].clone(), made[3].clone()]);

    // A member sees the log too; another team sees nothing of it.
    assert_eq!(list(&relay, &tech_team.token, "").await.0.len(), 5);
    let other = relay.team("other").await;
    assert!(list(&relay, &other.token, "").await.0.is_empty());
    let (none, _) = list(&relay, &other.token, &format!("device={desk_id}")).await;
    assert!(none.is_empty());

    // Bad fields are named, never ignored.
    for (query, field) in [
        ("access=both", "access"),
        ("recording_state=done", "recording_state"),
        ("after=garbage", "after"),
        ("limit=0", "limit"),
        ("from=yesterday", "from"),
    ] {
        let (status, body) = relay
            .api(
                "GET",
                &format!("/api/v1/sessions?{query}"),
                Some(&team.token),
                None,
            )
            .await;
        assert_eq!((status, code(&body)), (400, "INVALID_VALUE"), "{query}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{query}: {body}"
        );
    }

    // The CSV holds the same rows as the filtered list, with end reasons in words. Paging does not
    // apply to it: `after` and `limit`, even bad ones, are ignored (docs/openapi.json).
    let csv_for = |query: String| {
        let relay = &relay;
        let token = team.token.clone();
        async move {
            relay
                .connector
                .request(
                    &relay.addr,
                    "GET",
                    &format!("/api/v1/sessions.csv?{query}"),
                    &[("authorization", &format!("Bearer {token}"))],
                    bytes::Bytes::new(),
                )
                .await
                .unwrap()
        }
    };
    let (status, headers, csv) = csv_for(format!("technician={tech_id}")).await;
    assert_eq!(status, 200);
    for paging in ["after=garbage&limit=-5", "limit=1", "limit=0&after="] {
        let (status, _, same) = csv_for(format!("technician={tech_id}&{paging}")).await;
        assert_eq!((status, &same), (200, &csv), "{paging}");
    }
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = String::from_utf8(csv.to_vec()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "Started,Ended,Duration (seconds),Device,Technician,Access,Recorded,Recording,End reason,End reason code,Session id"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    for (line, id) in lines[1..].iter().zip([&made[1], &made[3]]) {
        assert!(line.ends_with(id.as_str()), "{line}");
        assert!(
            line.contains(
                ",Someone,unattended,no,not_recorded,The technician ended it,TECHNICIAN_LEFT,"
            ),
            "{line}"
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn an_admin_ends_a_live_recorded_session_and_its_recording_closes_normally() {
    let relay = TestRelay::start().await;
    let team = relay.team("ending").await;
    relay.set_recording(&team, true, true).await;
    let (_, admin) = member(&relay, &team, "admin@ending.example", UserRole::Admin).await;
    let (_, plain) = member(&relay, &team, "member@ending.example", UserRole::Member).await;
    let other = relay.team("elsewhere").await;
    let mut r = recorded_session(&relay, &team).await;
    let mut enc = media::TestEncoder::new(320, 240, 10, 0);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 30, 10).await;

    let end = |token: String, id: String| {
        let relay = &relay;
        async move {
            relay
                .api(
                    "POST",
                    &format!("/api/v1/sessions/{id}/end"),
                    Some(&token),
                    None,
                )
                .await
        }
    };
    // A member may not; another team does not find it; an unknown id is not found.
    let (status, body) = end(plain.token.clone(), r.session_id.clone()).await;
    assert_eq!((status, code(&body)), (403, "FORBIDDEN"), "{body}");
    let (status, body) = end(other.token.clone(), r.session_id.clone()).await;
    assert_eq!((status, code(&body)), (404, "NOT_FOUND"), "{body}");
    let (status, _) = end(admin.token.clone(), "0123abcd".into()).await;
    assert_eq!(status, 404);

    // The admin ends it: both sides are told why, and the recording closes with every frame.
    let (status, body) = end(admin.token.clone(), r.session_id.clone()).await;
    assert_eq!(status, 204, "{body}");
    let ended = loop {
        match recv(&mut r.streamer).await {
            Message::SessionEnded { reason, message } => break (reason, message),
            Message::KeyframeRequest => {}
            other => panic!("streamer got {other:?}"),
        }
    };
    assert_eq!(ended.0, EndReason::EndedByAdmin);
    assert!(ended.1.contains("Someone ended the session"), "{}", ended.1);
    let (_, got) = tokio::time::timeout(Duration::from_secs(20), r.tech)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            got.last(),
            Some(Message::SessionEnded {
                reason: EndReason::EndedByAdmin,
                ..
            })
        ),
        "{:?}",
        got.last()
    );
    relay
        .wait_recording_state(&r.session_id, RecordingState::Uploaded)
        .await;
    let files = relay.store.recording_files(&r.session_id).await.unwrap();
    assert!(!files.is_empty());
    assert!(files.iter().all(|f| f.state == "complete"), "{files:?}");
    let row = relay
        .store
        .session(&team.id, &r.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.end_reason.as_deref(), Some("ENDED_BY_ADMIN"));

    // Ending it again is a conflict, and the trail names who ended it.
    let (status, body) = end(admin.token.clone(), r.session_id.clone()).await;
    assert_eq!((status, code(&body)), (409, "CONFLICT"), "{body}");
    let (_, events) = relay
        .api(
            "GET",
            "/api/v1/audit?action=session_terminated",
            Some(&team.token),
            None,
        )
        .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["object"], r.session_id.as_str());
    assert_eq!(events[0]["actor_name"], "Someone");
    relay.stop().await;
}

#[tokio::test]
async fn deployment_codes_are_listed_and_a_revoked_one_registers_no_computer() {
    let relay = TestRelay::start().await;
    let team = relay.team("codes").await;
    let (_, plain) = member(&relay, &team, "member@codes.example", UserRole::Member).await;
    let other = relay.team("rival").await;
    let (status, made) = relay
        .api("POST", "/api/v1/deployment-codes", Some(&team.token), None)
        .await;
    assert_eq!(status, 200);
    let secret = made["code"].as_str().unwrap().to_owned();

    let listed = |token: String| {
        let relay = &relay;
        async move {
            let (status, body) = relay
                .api("GET", "/api/v1/deployment-codes", Some(&token), None)
                .await;
            (status, body)
        }
    };
    let (_, body) = listed(team.token.clone()).await;
    let codes = body["deployment_codes"].as_array().unwrap().clone();
    assert_eq!(codes.len(), 1, "{body}");
    let c = &codes[0];
    assert_eq!(c["hint"], &secret[..4]);
    assert_eq!(
        (c["state"].as_str(), c["devices"].as_i64()),
        (Some("active"), Some(0))
    );
    assert_eq!(c["created_by_name"], "Owner");
    assert!(
        !body.to_string().contains(&secret),
        "the list never holds the code"
    );
    let id = c["id"].as_str().unwrap().to_owned();

    // A computer registers with it, and the list counts it.
    let register = || async {
        relay
            .handshake_as(
                Role::Streamer,
                Credential::DeploymentCode {
                    code: secret.clone(),
                    device_name: "Kiosk".into(),
                },
            )
            .await
            .1
    };
    assert!(register().await.is_ok());
    let (_, body) = listed(team.token.clone()).await;
    assert_eq!(body["deployment_codes"][0]["devices"], 1);

    // Members do not see or revoke codes; another team does not find it.
    assert_eq!(listed(plain.token.clone()).await.0, 403);
    let revoke = |token: String| {
        let relay = &relay;
        let id = id.clone();
        async move {
            relay
                .api(
                    "POST",
                    &format!("/api/v1/deployment-codes/{id}/revoke"),
                    Some(&token),
                    None,
                )
                .await
        }
    };
    assert_eq!(revoke(plain.token.clone()).await.0, 403);
    let (status, body) = revoke(other.token.clone()).await;
    assert_eq!((status, code(&body)), (404, "NOT_FOUND"));
    assert!(listed(other.token.clone()).await.1["deployment_codes"]
        .as_array()
        .unwrap()
        .is_empty());

    // Revoked, it registers nothing more; the computer that registered stays.
    assert_eq!(revoke(team.token.clone()).await.0, 204);
    let refusal = handshake_refusal(register().await);
    assert_eq!(refusal.code, ErrorCode::CredentialRevoked, "{refusal:?}");
    let (status, body) = revoke(team.token.clone()).await;
    assert_eq!((status, code(&body)), (409, "CONFLICT"));
    let (_, body) = listed(team.token.clone()).await;
    assert_eq!(body["deployment_codes"][0]["state"], "revoked");
    let (_, devices) = relay
        .api("GET", "/api/v1/devices", Some(&team.token), None)
        .await;
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
    let (_, events) = relay
        .api(
            "GET",
            "/api/v1/audit?action=deployment_code_revoked",
            Some(&team.token),
            None,
        )
        .await;
    assert_eq!(events["events"][0]["object"], format!("{}…", &secret[..4]));
    relay.stop().await;
}

#[tokio::test]
async fn a_withdrawn_invitation_stops_working_and_admins_withdraw_only_members() {
    let relay = TestRelay::start().await;
    let team = relay.team("invites").await;
    let (_, admin) = member(&relay, &team, "admin@invites.example", UserRole::Admin).await;
    let invite = |by: String, email: &'static str, role: &'static str| {
        let relay = &relay;
        async move {
            let (status, body) = relay
                .api(
                    "POST",
                    "/api/v1/members/invitations",
                    Some(&by),
                    Some(json!({ "email": email, "role": role })),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["url"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        }
    };
    let withdraw = |by: String, email: &'static str| {
        let relay = &relay;
        async move {
            relay
                .api(
                    "DELETE",
                    &format!("/api/v1/members/invitations/{email}"),
                    Some(&by),
                    None,
                )
                .await
        }
    };
    let link = invite(admin.token.clone(), "new@invites.example", "member").await;
    let (status, body) = withdraw(admin.token.clone(), "new@invites.example").await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = relay
        .api(
            "POST",
            "/api/v1/invitations/accept",
            None,
            Some(json!({ "token": link, "name": "New", "password": PASSWORD })),
        )
        .await;
    assert_eq!((status, code(&body)), (410, "LINK_USED"), "{body}");
    let (status, body) = withdraw(admin.token.clone(), "new@invites.example").await;
    assert_eq!((status, code(&body)), (404, "NOT_FOUND"), "{body}");

    // An invitation to be an admin is the owner's to withdraw.
    invite(team.token.clone(), "boss@invites.example", "admin").await;
    let (status, body) = withdraw(admin.token.clone(), "boss@invites.example").await;
    assert_eq!((status, code(&body)), (403, "FORBIDDEN"), "{body}");
    assert_eq!(
        withdraw(team.token.clone(), "boss@invites.example").await.0,
        204
    );
    let (_, events) = relay
        .api(
            "GET",
            "/api/v1/audit?action=invitation_withdrawn",
            Some(&team.token),
            None,
        )
        .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 2, "{events}");
    relay.stop().await;
}

#[tokio::test]
async fn unknown_addresses_are_404s_and_a_browser_opening_a_dead_link_gets_a_page() {
    let relay = TestRelay::start().await;
    let team = relay.team("pages").await;
    let (status, body) = relay
        .api("GET", "/api/v1/no-such-route", Some(&team.token), None)
        .await;
    assert_eq!((status, code(&body)), (404, "NOT_FOUND"), "{body}");
    let get = |path: String, accept: &'static str| {
        let relay = &relay;
        async move {
            let (status, headers, body) = relay
                .connector
                .request(
                    &relay.addr,
                    "GET",
                    &path,
                    &[("accept", accept)],
                    bytes::Bytes::new(),
                )
                .await
                .unwrap();
            (
                status,
                headers["content-type"].to_str().unwrap().to_owned(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
    };
    let (status, kind, page) = get("/console/no-such-page".into(), "text/html").await;
    assert_eq!(status, 404);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(page.contains("There is no page at this address"), "{page}");

    // A recorded session's file: its link, after 10 minutes, opened by a browser and by a player.
    relay.set_recording(&team, true, true).await;
    let mut r = recorded_session(&relay, &team).await;
    let mut enc = media::TestEncoder::new(320, 240, 10, 0);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 20, 10).await;
    common::recorded::finish(&relay, r).await;
    let (_, sessions) = relay
        .api("GET", "/api/v1/sessions", Some(&team.token), None)
        .await;
    let id = sessions["sessions"][0]["id"].as_str().unwrap().to_owned();
    let (_, files) = relay
        .api(
            "GET",
            &format!("/api/v1/sessions/{id}/recordings"),
            Some(&team.token),
            None,
        )
        .await;
    let play = files["files"][0]["play_url"].as_str().unwrap().to_owned();
    assert_eq!(get(play.clone(), "*/*").await.0, 200);
    relay.clock.advance(Duration::from_secs(10 * 60 + 1));
    let (status, kind, page) = get(play.clone(), "text/html,application/xhtml+xml").await;
    assert_eq!(status, 410);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(page.contains("This link has expired"), "{page}");
    assert!(page.contains("data-code=\"LINK_EXPIRED\""), "{page}");
    let (status, kind, body) = get(play.clone(), "*/*").await;
    assert_eq!(status, 410);
    assert!(kind.starts_with("application/json"), "{kind}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "LINK_EXPIRED"
    );
    let tampered = play.replace("s=", "s=00");
    let (status, _, page) = get(tampered, "text/html").await;
    assert_eq!(status, 403);
    assert!(page.contains("This link is not valid"), "{page}");
    relay.stop().await;
}

/// A console page as the signed-in `token` sees it: the status and the HTML.
async fn console_page(relay: &TestRelay, token: &str, path: &str) -> (u16, String) {
    let cookie = format!("__Host-relay_console={token}");
    let (status, _, body) = relay
        .connector
        .request(
            &relay.addr,
            "GET",
            path,
            &[("cookie", &cookie)],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The `href` of the element with `id` in `html`, unescaped.
fn href_of(html: &str, id: &str) -> Option<String> {
    let needle = format!("id=\"{id}\" href=\"");
    let rest = &html[html.find(&needle)? + needle.len()..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

#[tokio::test]
async fn the_sessions_page_pages_by_cursor_keeping_its_filter() {
    let relay = TestRelay::start().await;
    let team = relay.team("pages").await;
    // 55 session rows as the relay writes them (pairing 55 sessions would meet the request limit).
    let owner_id = relay.store.team_users(&team.id).await.unwrap()[0]
        .id
        .clone();
    let mut made = Vec::new();
    for i in 0..55 {
        let id = format!("{i:032x}");
        relay
            .store
            .insert_session(&relay::store::NewSession {
                id: id.clone(),
                team_id: team.id.clone(),
                technician_id: owner_id.clone(),
                device_id: None,
                device_name: "Kiosk".into(),
                access: protocol::AccessType::Unattended,
                recorded: false,
                streamer_version: "3.5.8.0".into(),
            })
            .await
            .unwrap();
        relay
            .store
            .end_session(&id, "TECHNICIAN_LEFT")
            .await
            .unwrap();
        made.push((relay.clock.now_ms(), id));
        // Every third one in the same millisecond as the one before: the cursor's id breaks ties.
        if i % 3 != 0 {
            relay.clock.advance(Duration::from_millis(1500));
        }
    }
    // Newest first; sessions that started in the same millisecond by id.
    made.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let made: Vec<String> = made.into_iter().map(|(_, id)| id).collect();
    let rows = |html: &str| -> Vec<String> {
        html.split("<tr data-session=\"")
            .skip(1)
            .map(|r| r[..r.find('"').unwrap()].to_owned())
            .collect()
    };
    let (status, first) =
        console_page(&relay, &team.token, "/console/sessions?access=unattended").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&first), made[..50]);
    assert!(href_of(&first, "first-page").is_none());
    let older = href_of(&first, "next-page").expect("an Older link");
    assert!(older.contains("access=unattended"), "{older}");
    let (status, second) = console_page(&relay, &team.token, &older).await;
    assert_eq!(status, 200);
    assert_eq!(rows(&second), made[50..]);
    assert!(href_of(&second, "next-page").is_none(), "the last page");
    let newest = href_of(&second, "first-page").expect("a Newest link");
    assert_eq!(newest, "/console/sessions?access=unattended");

    // An address the page did not make is refused with why, not ignored.
    let (status, page) = console_page(&relay, &team.token, "/console/sessions?after=nope").await;
    assert_eq!(status, 400);
    assert!(page.contains("after is the previous page"), "{page}");
    relay.stop().await;
}
