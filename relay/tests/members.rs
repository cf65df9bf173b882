//! Teams that can be run, through the JSON API: invitations, roles and their rules, removal that
//! cuts live connections, passwords and reset links, settings only the owner may loosen, the audit
//! trail of all of it (pages, filters, CSV), and the operator's `relay admin` commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use protocol::{Credential, ErrorCode, Role};
use serde_json::{json, Value};

const NEW_PASSWORD: &str = "a much longer new passphrase";

fn token_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

async fn invite(relay: &TestRelay, by: &str, email: &str, role: &str) -> (u16, Value) {
    relay
        .api(
            "POST",
            "/api/v1/members/invitations",
            Some(by),
            Some(json!({ "email": email, "role": role })),
        )
        .await
}

async fn accept(relay: &TestRelay, token: &str, name: &str, password: &str) -> (u16, Value) {
    relay
        .api(
            "POST",
            "/api/v1/invitations/accept",
            None,
            Some(json!({ "token": token, "name": name, "password": password })),
        )
        .await
}

/// Invites, accepts and signs in; returns the new member's id and token.
async fn join(relay: &TestRelay, by: &str, email: &str, role: &str) -> (String, String) {
    let (status, inv) = invite(relay, by, email, role).await;
    assert_eq!(status, 201, "{inv}");
    assert_eq!(inv["emailed"], false, "no SMTP setting: shown to copy");
    let url = inv["url"].as_str().unwrap();
    assert!(url.contains("/console/invitations/"), "{url}");
    let (status, joined) = accept(relay, token_of(url), role, PASSWORD).await;
    assert_eq!(status, 201, "{joined}");
    assert_eq!(joined["role"], role);
    (
        joined["id"].as_str().unwrap().to_owned(),
        sign_in(relay, email, PASSWORD).await.unwrap(),
    )
}

async fn sign_in(relay: &TestRelay, email: &str, password: &str) -> Result<String, Value> {
    let (status, body) = relay
        .api(
            "POST",
            "/api/v1/sign-in",
            None,
            Some(json!({ "email": email, "password": password })),
        )
        .await;
    if status == 200 {
        Ok(body["token"].as_str().unwrap().to_owned())
    } else {
        Err(body)
    }
}

async fn events(relay: &TestRelay, token: &str, query: &str) -> Vec<Value> {
    let (status, body) = relay
        .api("GET", &format!("/api/v1/audit?{query}"), Some(token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn an_owner_builds_a_team_and_every_rule_holds_on_the_server() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let other = relay.team("globex").await;
    let owner = team.token.clone();
    let (admin_id, admin) = join(&relay, &owner, "ada@acme.example", "admin").await;
    let (member_id, member) = join(&relay, &owner, "max@acme.example", "member").await;

    // Admins invite members, not admins; members invite nobody; nobody is invited as owner.
    assert_eq!(
        invite(&relay, &admin, "x@acme.example", "admin").await.0,
        403
    );
    assert_eq!(
        invite(&relay, &member, "x@acme.example", "member").await.0,
        403
    );
    assert_eq!(
        invite(&relay, &owner, "x@acme.example", "owner").await.0,
        403
    );
    let (status, body) = invite(&relay, &owner, "not an address", "member").await;
    assert_eq!((status, code(&body)), (400, "INVALID_VALUE"));
    let (status, body) = invite(&relay, &owner, "max@acme.example", "member").await;
    assert_eq!((status, code(&body)), (409, "CONFLICT"), "already a member");

    // The list: everyone sees the members; only managers see pending invitations.
    let (status, pending) = invite(&relay, &admin, "pending@acme.example", "member").await;
    assert_eq!(status, 201);
    let (_, list) = relay
        .api("GET", "/api/v1/members", Some(&admin), None)
        .await;
    assert_eq!(list["members"].as_array().unwrap().len(), 3);
    assert_eq!(list["invitations"][0]["email"], "pending@acme.example");
    assert_eq!(list["invitations"][0]["invited_by"], "admin");
    let (_, list) = relay
        .api("GET", "/api/v1/members", Some(&member), None)
        .await;
    assert_eq!(list["invitations"], json!([]));

    // An invitation works once, and not after it expires.
    let (status, again) = accept(
        &relay,
        token_of(pending["url"].as_str().unwrap()),
        "P",
        "short",
    )
    .await;
    assert_eq!((status, code(&again)), (400, "INVALID_VALUE"), "{again}");
    relay
        .clock
        .advance(std::time::Duration::from_secs(7 * 86_400 + 1));
    let (status, late) = accept(
        &relay,
        token_of(pending["url"].as_str().unwrap()),
        "P",
        PASSWORD,
    )
    .await;
    assert_eq!((status, code(&late)), (410, "LINK_EXPIRED"), "{late}");
    // Sign-ins made before the jump expired with it.
    let admin = sign_in(&relay, "ada@acme.example", PASSWORD).await.unwrap();
    let member = sign_in(&relay, "max@acme.example", PASSWORD).await.unwrap();
    let owner = sign_in(&relay, &team.owner_email, PASSWORD).await.unwrap();
    let other_token = sign_in(&relay, &other.owner_email, PASSWORD).await.unwrap();

    // Roles: admins change members only; nobody changes themselves or the owner.
    let role = |id: &str, role: &str, by: &str| {
        let (id, role, by) = (id.to_owned(), role.to_owned(), by.to_owned());
        let relay = &relay;
        async move {
            relay
                .api(
                    "PUT",
                    &format!("/api/v1/members/{id}/role"),
                    Some(&by),
                    Some(json!({ "role": role })),
                )
                .await
        }
    };
    let (owner_id, _) = {
        let (_, list) = relay
            .api("GET", "/api/v1/members", Some(&owner), None)
            .await;
        let o = list["members"][0].clone();
        assert_eq!(o["role"], "owner");
        (o["id"].as_str().unwrap().to_owned(), ())
    };
    assert_eq!(role(&member_id, "admin", &admin).await.0, 403);
    assert_eq!(role(&admin_id, "member", &admin).await.0, 403);
    assert_eq!(role(&owner_id, "member", &admin).await.0, 403);
    assert_eq!(role(&member_id, "admin", &member).await.0, 403);
    assert_eq!(role(&owner_id, "admin", &owner).await.0, 403);
    // Another team's member is not found, whoever asks.
    let (_, globex) = relay
        .api("GET", "/api/v1/members", Some(&other_token), None)
        .await;
    let globex_owner = globex["members"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = role(&globex_owner, "member", &owner).await;
    assert_eq!((status, code(&body)), (404, "MEMBER_NOT_FOUND"));
    let (status, _) = relay
        .api(
            "DELETE",
            &format!("/api/v1/members/{globex_owner}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(role(&member_id, "admin", &owner).await.0, 200);
    assert_eq!(role(&member_id, "member", &owner).await.0, 200);

    // Removal: the member's live technician connection is cut at once, their token dies.
    let mut live = relay.connect().await;
    live.handshake(
        Role::Technician,
        CURRENT,
        Credential::TechnicianToken {
            token: member.clone(),
        },
    )
    .await
    .unwrap();
    let (status, _) = relay
        .api(
            "DELETE",
            &format!("/api/v1/members/{member_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (refusal, message) = refused(&mut live).await;
    assert_eq!(refusal, ErrorCode::CredentialRevoked);
    // In the words of why: removed, not "signed out".
    assert!(
        message.starts_with("You were removed from this team") && !message.contains("signed out"),
        "{message}"
    );
    let (status, _) = relay
        .api("GET", "/api/v1/members", Some(&member), None)
        .await;
    assert_eq!(status, 401);
    assert!(sign_in(&relay, "max@acme.example", PASSWORD).await.is_err());
    let (_, list) = relay
        .api("GET", "/api/v1/members", Some(&owner), None)
        .await;
    assert_eq!(list["members"].as_array().unwrap().len(), 2);

    // Passwords: a change ends the other sign-ins only; a reset link works once.
    let second = sign_in(&relay, "ada@acme.example", PASSWORD).await.unwrap();
    let (status, body) = relay
        .api(
            "PUT",
            "/api/v1/me/password",
            Some(&admin),
            Some(json!({ "current_password": "wrong", "new_password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "INVALID_VALUE"));
    let (status, _) = relay
        .api(
            "PUT",
            "/api/v1/me/password",
            Some(&admin),
            Some(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        relay
            .api("GET", "/api/v1/members", Some(&admin), None)
            .await
            .0,
        200
    );
    assert_eq!(
        relay
            .api("GET", "/api/v1/members", Some(&second), None)
            .await
            .0,
        401
    );
    let (status, reset) = relay
        .api(
            "POST",
            &format!("/api/v1/members/{admin_id}/password-reset"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reset}");
    let reset_token = token_of(reset["url"].as_str().unwrap()).to_owned();
    let body = json!({ "token": reset_token, "password": PASSWORD });
    let (status, _) = relay
        .api("POST", "/api/v1/password-reset", None, Some(body.clone()))
        .await;
    assert_eq!(status, 204);
    let (status, used) = relay
        .api("POST", "/api/v1/password-reset", None, Some(body))
        .await;
    assert_eq!((status, code(&used)), (410, "LINK_USED"));
    assert_eq!(
        relay
            .api("GET", "/api/v1/members", Some(&admin), None)
            .await
            .0,
        401
    );
    let admin = sign_in(&relay, "ada@acme.example", PASSWORD).await.unwrap();

    // Rename, and hand over ownership: the owner becomes an admin.
    let (status, renamed) = relay
        .api(
            "PUT",
            "/api/v1/team/name",
            Some(&admin),
            Some(json!({ "name": "Acme Support" })),
        )
        .await;
    assert_eq!(
        (status, renamed["name"].as_str()),
        (200, Some("Acme Support"))
    );
    assert_eq!(role(&admin_id, "owner", &owner).await.0, 200);
    let (_, list) = relay
        .api("GET", "/api/v1/members", Some(&admin), None)
        .await;
    assert_eq!(list["members"][0]["id"], admin_id.as_str());
    assert_eq!(list["members"][1]["role"], "admin");

    // Every step is in the trail, newest first, with the actor; members cannot read it, and
    // another team sees none of it.
    let trail = events(&relay, &admin, "limit=1000").await;
    let seen = actions(&trail);
    for want in [
        "sign_in",
        "member_invited",
        "member_joined",
        "role_changed",
        "member_removed",
        "password_changed",
        "password_reset_issued",
        "password_reset",
        "team_renamed",
        "ownership_transferred",
    ] {
        assert!(seen.contains(&want), "{want} missing from {seen:?}");
    }
    let removed = trail
        .iter()
        .find(|e| e["action"] == "member_removed")
        .unwrap();
    assert_eq!(removed["actor_name"], "admin");
    assert_eq!(removed["object"], "max@acme.example");
    assert!(
        removed["detail"]
            .as_str()
            .unwrap()
            .contains("1 live connection(s) cut"),
        "{removed}"
    );
    assert!(trail
        .windows(2)
        .all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()));
    let globex_trail = events(&relay, &other_token, "limit=1000").await;
    assert!(globex_trail
        .iter()
        .all(|e| e["object"] != "max@acme.example"));
    let removed_again = sign_in(&relay, "max@acme.example", PASSWORD).await;
    assert!(removed_again.is_err());
    relay.stop().await;
}

#[tokio::test]
async fn only_the_owner_loosens_recording_settings_and_each_change_is_audited() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (_, admin) = join(&relay, &team.token, "ada@acme.example", "admin").await;
    let put = |token: &str, s: Value| {
        let token = token.to_owned();
        let relay = &relay;
        async move {
            relay
                .api("PUT", "/api/v1/team/settings", Some(&token), Some(s))
                .await
        }
    };
    let (_, mut s) = relay
        .api("GET", "/api/v1/team/settings", Some(&admin), None)
        .await;
    // An admin switches recording on and may narrow who plays…
    s["record_attended"] = true.into();
    s["record_unattended"] = true.into();
    assert_eq!(put(&admin, s.clone()).await.0, 200);
    // …but neither widens "Owner only" nor switches recording off.
    let mut wider = s.clone();
    wider["playback_unattended"] = "admins".into();
    let (status, body) = put(&admin, wider.clone()).await;
    assert_eq!((status, code(&body)), (403, "OWNER_ONLY"), "{body}");
    let mut off = s.clone();
    off["record_attended"] = false.into();
    assert_eq!(put(&admin, off).await.0, 403);
    let stored = relay.store.team_settings(&team.id).await.unwrap().unwrap();
    assert!(stored.record_attended);
    assert_eq!(
        stored.playback_unattended,
        relay::store::PlaybackPolicy::Owner
    );
    // Every number out of range is a bad value, negative ones included (openapi.json); a value
    // that is not a number is a malformed body.
    for bad in [
        Value::from(-5),
        Value::from(0),
        Value::from(1_000_001),
        Value::from(1.5),
        Value::from(5_000_000_000_u64),
    ] {
        let mut wrong = s.clone();
        wrong["max_file_mb"] = bad.clone();
        let (status, body) = put(&admin, wrong).await;
        assert_eq!(
            (status, code(&body)),
            (400, "INVALID_VALUE"),
            "{bad}: {body}"
        );
    }
    let mut wrong = s.clone();
    wrong["max_file_mb"] = "5".into();
    let (status, body) = put(&admin, wrong).await;
    assert_eq!((status, code(&body)), (400, "MALFORMED_REQUEST"), "{body}");
    // The owner does both; a bad time zone is refused.
    assert_eq!(put(&team.token, wider.clone()).await.0, 200);
    let mut narrower = wider.clone();
    narrower["playback_unattended"] = "owner".into();
    assert_eq!(
        put(&admin, narrower).await.0,
        200,
        "narrowing is an admin's"
    );
    let mut tz = wider;
    tz["time_zone"] = "Mars/Olympus".into();
    let (status, body) = put(&team.token, tz).await;
    assert_eq!((status, code(&body)), (400, "INVALID_VALUE"));

    let trail = events(&relay, &team.token, "action=settings_changed").await;
    let changes: Vec<(String, String, String)> = trail
        .iter()
        .rev()
        .map(|e| {
            (
                e["actor_name"].as_str().unwrap().to_owned(),
                e["object"].as_str().unwrap().to_owned(),
                e["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("admin", "record_attended", "off → on"),
            ("admin", "record_unattended", "off → on"),
            (
                "Owner",
                "playback_unattended",
                "Owner only → Admins and Owner"
            ),
            (
                "admin",
                "playback_unattended",
                "Admins and Owner → Owner only"
            ),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_audit_log_pages_by_cursor_filters_and_exports_what_it_shows() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (admin_id, admin) = join(&relay, &team.token, "ada@acme.example", "admin").await;
    let (_, member) = join(&relay, &team.token, "max@acme.example", "member").await;
    // Failed sign-ins are the team's business when the address is a member's.
    for _ in 0..3 {
        assert!(sign_in(&relay, "ada@acme.example", "wrong password!")
            .await
            .is_err());
    }
    for i in 0..5 {
        let (status, _) = relay
            .api("POST", "/api/v1/deployment-codes", Some(&admin), None)
            .await;
        assert_eq!(status, 200, "code {i}");
    }
    assert_eq!(
        relay
            .api("GET", "/api/v1/audit", Some(&member), None)
            .await
            .0,
        403
    );
    let (status, body) = relay
        .api("GET", "/api/v1/audit?action=nonsense", Some(&admin), None)
        .await;
    assert_eq!((status, code(&body)), (400, "INVALID_VALUE"));
    let (status, _) = relay
        .api("GET", "/api/v1/audit?limit=0", Some(&admin), None)
        .await;
    assert_eq!(status, 400);

    // The console's page refuses an address it did not make, saying why.
    let cookie = format!("__Host-relay_console={admin}");
    for bad in ["before=abc", "from=27%2F11%2F2026", "action=nonsense"] {
        let (status, _, body) = relay
            .connector
            .request(
                &relay.addr,
                "GET",
                &format!("/console/audit?{bad}"),
                &[("cookie", cookie.as_str())],
                bytes::Bytes::new(),
            )
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("INVALID_VALUE"), "{bad}: {body}");
    }
    let failed = events(&relay, &admin, "action=sign_in_failed").await;
    assert_eq!(failed.len(), 3);
    assert_eq!(failed[0]["actor_kind"], "anonymous");
    assert_eq!(failed[0]["client_address"], "127.0.0.1");
    let by_admin = events(&relay, &admin, &format!("actor={admin_id}")).await;
    assert!(by_admin.iter().all(|e| e["actor_id"] == admin_id.as_str()));
    assert_eq!(
        actions(&by_admin)
            .iter()
            .filter(|a| **a == "deployment_code_created")
            .count(),
        5
    );
    // Pages of 2 by cursor cover everything once, in order.
    let all = events(&relay, &admin, "limit=1000").await;
    let mut paged = Vec::new();
    let mut before = String::new();
    loop {
        let (_, page) = relay
            .api(
                "GET",
                &format!("/api/v1/audit?limit=2{before}"),
                Some(&admin),
                None,
            )
            .await;
        paged.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_i64() {
            Some(id) => before = format!("&before={id}"),
            None => break,
        }
    }
    assert_eq!(paged, all);
    // A time window.
    let newest = all[0]["at"].as_i64().unwrap();
    assert!(events(&relay, &admin, &format!("from={}", newest + 1))
        .await
        .is_empty());

    // The CSV has the page's rows and columns.
    let (status, headers, csv) = relay
        .connector
        .request(
            &relay.addr,
            "GET",
            "/api/v1/audit.csv?action=deployment_code_created",
            &[("authorization", &format!("Bearer {admin}"))],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = String::from_utf8(csv.to_vec()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "Time,Actor,Actor kind,Action,Object,Detail,Client address"
    );
    assert_eq!(lines.len(), 6, "{csv}");
    assert!(lines[1..]
        .iter()
        .all(|l| l.contains(",admin,user,deployment_code_created,")));
    relay.stop().await;
}

fn admin_cmd(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_relay"))
        .arg("--data-dir")
        .arg(data)
        .arg("--database-url")
        .arg(database_url_of(data))
        .arg("admin")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_operator_creates_a_team_whose_owner_joins_and_sees_nothing_else() {
    let relay = TestRelay::start().await;
    let first = relay.team("acme").await;
    {
        let (mut tech, _streamer, _device, _started) = relay.in_session(&first).await;
        tech.send(&protocol::Message::LeaveSession).await.unwrap();
    }
    // The operator works on the stopped relay's data directory (the commands' clock is the
    // system's: the relay comes back on it).
    let (dir, config, _) = relay.stop_keeping_data().await;
    let data = config.data_dir.clone();
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();

    // Bad input: clear errors, nothing written.
    let empty = tempfile::tempdir().unwrap();
    let out = admin_cmd(empty.path(), &["list-teams"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no relay database"));
    let out = admin_cmd(
        &data,
        &["create-team", "--name", "Globex", "--owner-email", "nope"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an e-mail address"));
    let out = admin_cmd(
        &data,
        &[
            "create-team",
            "--name",
            "Globex",
            "--owner-email",
            &first.owner_email,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "an address with an account");
    let out = admin_cmd(&data, &["reset-owner", "--team", "no-such-team"]);
    assert_eq!(out.status.code(), Some(2));
    let listed = String::from_utf8(admin_cmd(&data, &["list-teams"]).stdout).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");

    // The team, then its owner joins through the printed link.
    let out = admin_cmd(
        &data,
        &[
            "create-team",
            "--name",
            "Globex",
            "--owner-email",
            "hank@globex.example",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let url = printed
        .split_whitespace()
        .find(|w| w.contains("/console/invitations/"))
        .unwrap();
    let relay = TestRelay::start_on(dir, config, relay::ManualClock::new(now_ms)).await;
    let (status, joined) = accept(&relay, token_of(url), "Hank", PASSWORD).await;
    assert_eq!(
        (status, joined["role"].as_str()),
        (201, Some("owner")),
        "{joined}"
    );
    let hank = sign_in(&relay, "hank@globex.example", PASSWORD)
        .await
        .unwrap();
    let listed = String::from_utf8(admin_cmd(&data, &["list-teams"]).stdout).unwrap();
    assert!(
        listed.contains("Globex\thank@globex.example\t1\t0"),
        "{listed}"
    );

    // Nothing of the first team: its sessions, devices, members and trail.
    let (_, sessions) = relay
        .api("GET", "/api/v1/sessions", Some(&hank), None)
        .await;
    assert_eq!(sessions["sessions"], json!([]));
    let (_, first_sessions) = relay
        .api("GET", "/api/v1/sessions", Some(&first.token), None)
        .await;
    let first_session = first_sessions["sessions"][0]["id"].as_str().unwrap();
    let (status, _) = relay
        .api(
            "GET",
            &format!("/api/v1/sessions/{first_session}/recordings"),
            Some(&hank),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, devices) = relay.api("GET", "/api/v1/devices", Some(&hank), None).await;
    assert_eq!(devices, json!([]));
    let (_, members) = relay.api("GET", "/api/v1/members", Some(&hank), None).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
    let trail = events(&relay, &hank, "limit=1000").await;
    assert_eq!(
        actions(&trail),
        ["sign_in", "member_joined", "team_created"]
    );
    assert_eq!(trail[2]["actor_kind"], "operator");

    // The operator gets a locked-out owner back in, or hands the team to someone new.
    let team_id = joined["team_id"].as_str().unwrap();
    let out = admin_cmd(&data, &["reset-owner", "--team", team_id]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let reset = printed
        .split_whitespace()
        .find(|w| w.contains("/console/password-reset/"))
        .unwrap();
    let (status, _) = relay
        .api(
            "POST",
            "/api/v1/password-reset",
            None,
            Some(json!({ "token": token_of(reset), "password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!(status, 204);
    assert!(sign_in(&relay, "hank@globex.example", NEW_PASSWORD)
        .await
        .is_ok());
    let out = admin_cmd(
        &data,
        &[
            "reset-owner",
            "--team",
            team_id,
            "--new-owner-email",
            "ivy@globex.example",
        ],
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let url = printed
        .split_whitespace()
        .find(|w| w.contains("/console/invitations/"))
        .unwrap();
    let (status, ivy) = accept(&relay, token_of(url), "Ivy", PASSWORD).await;
    assert_eq!((status, ivy["role"].as_str()), (201, Some("owner")));
    let ivy = sign_in(&relay, "ivy@globex.example", PASSWORD)
        .await
        .unwrap();
    let (_, members) = relay.api("GET", "/api/v1/members", Some(&ivy), None).await;
    assert_eq!(members["members"][0]["email"], "ivy@globex.example");
    assert_eq!(members["members"][1]["role"], "admin");
    relay.stop().await;
}

/// A real SMTP server for the test: Debian's aiosmtpd, writing what it receives to a maildir.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = tempfile::tempdir().unwrap();
        // Debian's interpreter, where python3-aiosmtpd is installed (cargo xtask test installs it).
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("box"))
            .spawn()
            .expect("python3-aiosmtpd (cargo xtask test installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self {
            child,
            port,
            maildir,
        }
    }

    fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("box/new");
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn invitations_are_e_mailed_through_a_real_smtp_server_and_shown_when_it_fails() {
    let smtp = SmtpServer::start().await;
    let port = smtp.port;
    let relay = TestRelay::start_with(|c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.smtp_from = Some("Remote Support <support@relay.test>".into());
        c.public_url = Some("https://support.acme.example".into());
    })
    .await;
    let team = relay.team("acme").await;
    let (status, inv) = invite(&relay, &team.token, "ada@acme.example", "admin").await;
    assert_eq!(status, 201, "{inv}");
    assert_eq!(inv["emailed"], true, "{inv}");
    let url = inv["url"].as_str().unwrap();
    assert!(url.starts_with("https://support.acme.example/console/invitations/"));
    let mut mail = Vec::new();
    for _ in 0..100 {
        mail = smtp.messages();
        if !mail.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(mail.len(), 1);
    let m = &mail[0];
    assert!(m.contains("X-RcptTo: ada@acme.example"), "{m}");
    assert!(
        m.contains("From: \"Remote Support\" <support@relay.test>"),
        "{m}"
    );
    assert!(
        m.contains("Subject: You are invited to acme on Remote Support"),
        "{m}"
    );
    // The body is quoted-printable (lettre's choice for long lines): unfolded as a mail
    // program does, it holds the link whole.
    let unfolded = m.replace("=\r\n", "").replace("=\n", "");
    assert!(unfolded.contains(url), "the link is in the mail: {m}");
    // The mailed link works.
    let (status, _) = accept(&relay, token_of(url), "Ada", PASSWORD).await;
    assert_eq!(status, 201);

    // With the server gone, the invitation is still made and its link shown, with why.
    drop(smtp);
    let (status, inv) = invite(&relay, &team.token, "max@acme.example", "member").await;
    assert_eq!(status, 201);
    assert_eq!(inv["emailed"], false);
    assert!(
        inv["email_error"].as_str().unwrap().contains("mail server"),
        "{inv}"
    );
    relay.stop().await;
}

/// Security review finding 3: a removed (or demoted) admin's pending invitations, reset links and
/// deployment codes stop working, the removal's answer and audit event say what was withdrawn,
/// and what they made is refused at use even when it was not withdrawn.
#[tokio::test]
async fn a_removed_or_demoted_admin_leaves_no_way_back_into_the_team() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let owner = team.token.clone();
    let (admin_id, admin) = join(&relay, &owner, "rogue@acme.example", "admin").await;
    let (member_id, _) = join(&relay, &owner, "max@acme.example", "member").await;

    // Before leaving, the admin prepares ways back in.
    let (status, inv) = invite(&relay, &admin, "sockpuppet@evil.example", "member").await;
    assert_eq!(status, 201, "{inv}");
    let invitation = token_of(inv["url"].as_str().unwrap()).to_owned();
    let (status, reset) = relay
        .api(
            "POST",
            &format!("/api/v1/members/{member_id}/password-reset"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reset}");
    let reset = token_of(reset["url"].as_str().unwrap()).to_owned();
    let (status, code_made) = relay
        .api("POST", "/api/v1/deployment-codes", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{code_made}");
    let deployment_code = code_made["code"].as_str().unwrap().to_owned();

    // The owner removes them: the answer says what was withdrawn.
    let (status, removed) = relay
        .api(
            "DELETE",
            &format!("/api/v1/members/{admin_id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(
        removed["withdrawn"],
        json!({"invitations": 1, "password_resets": 1, "deployment_codes": 1})
    );
    let audit = events(&relay, &owner, "action=member_removed").await;
    let detail = audit[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 invitation(s), 1 password-reset link(s), 1 deployment code(s)"),
        "{detail}"
    );

    // None of it works any more.
    let (status, body) = accept(&relay, &invitation, "Sock Puppet", PASSWORD).await;
    assert_eq!((status, code(&body)), (410, "LINK_USED"), "{body}");
    let (status, body) = relay
        .api(
            "POST",
            "/api/v1/password-reset",
            None,
            Some(json!({"token": reset, "password": "taken-over-password"})),
        )
        .await;
    assert_eq!((status, code(&body)), (410, "LINK_USED"), "{body}");
    let (_, registered) = relay
        .handshake_as(
            Role::Streamer,
            Credential::DeploymentCode {
                code: deployment_code,
                device_name: "Front desk PC".into(),
            },
        )
        .await;
    assert_eq!(
        handshake_refusal(registered).code,
        ErrorCode::CredentialRevoked
    );
    assert!(relay.store.devices(&team.id).await.unwrap().is_empty());

    // An admin demoted to member loses what they issued the same way.
    let (demoted_id, demoted) = join(&relay, &owner, "ada@acme.example", "admin").await;
    let (status, inv) = invite(&relay, &demoted, "friend@evil.example", "member").await;
    assert_eq!(status, 201, "{inv}");
    let (status, changed) = relay
        .api(
            "PUT",
            &format!("/api/v1/members/{demoted_id}/role"),
            Some(&owner),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["withdrawn"]["invitations"], 1);
    let (status, body) = accept(
        &relay,
        token_of(inv["url"].as_str().unwrap()),
        "Friend",
        PASSWORD,
    )
    .await;
    assert_eq!((status, code(&body)), (410, "LINK_USED"), "{body}");

    relay.stop().await;
}

/// Security review finding 4: a reset link made for a member does not reset them once they are an
/// admin or the owner, and a link is re-checked at use against its maker's right now (an owner
/// who handed over ownership may no longer reset an admin).
#[tokio::test]
async fn a_reset_link_never_outlives_the_right_that_made_it() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let owner = team.token.clone();
    let (_, admin) = join(&relay, &owner, "ada@acme.example", "admin").await;
    let (target_id, _) = join(&relay, &owner, "target@acme.example", "member").await;
    let reset_for = |id: String, by: String| {
        let relay = &relay;
        async move {
            let (status, body) = relay
                .api(
                    "POST",
                    &format!("/api/v1/members/{id}/password-reset"),
                    Some(&by),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            token_of(body["url"].as_str().unwrap()).to_owned()
        }
    };
    let use_reset = |token: String| {
        let relay = &relay;
        async move {
            relay
                .api(
                    "POST",
                    "/api/v1/password-reset",
                    None,
                    Some(json!({"token": token, "password": "admin-took-over-123"})),
                )
                .await
        }
    };

    // The review's attack: made while the target was a member, used after they became owner.
    let link = reset_for(target_id.clone(), admin.clone()).await;
    for role in ["admin", "owner"] {
        let (status, body) = relay
            .api(
                "PUT",
                &format!("/api/v1/members/{target_id}/role"),
                Some(&owner),
                Some(json!({ "role": role })),
            )
            .await;
        assert_eq!(status, 200, "{role}: {body}");
    }
    let (status, body) = use_reset(link).await;
    assert_eq!((status, code(&body)), (410, "LINK_USED"), "{body}");
    assert!(
        sign_in(&relay, "target@acme.example", "admin-took-over-123")
            .await
            .is_err()
    );
    assert!(sign_in(&relay, "target@acme.example", PASSWORD)
        .await
        .is_ok());

    // Re-checked at use: the new owner makes a link for an admin, then hands ownership on and
    // is an admin, who may not reset an admin.
    let new_owner = sign_in(&relay, "target@acme.example", PASSWORD)
        .await
        .unwrap();
    let (bob_id, _) = join(&relay, &new_owner, "bob@acme.example", "admin").await;
    let (carol_id, _) = join(&relay, &new_owner, "carol@acme.example", "member").await;
    let link = reset_for(bob_id, new_owner.clone()).await;
    let (status, _) = relay
        .api(
            "PUT",
            &format!("/api/v1/members/{carol_id}/role"),
            Some(&new_owner),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = use_reset(link).await;
    assert_eq!((status, code(&body)), (410, "LINK_USED"), "{body}");
    assert!(sign_in(&relay, "bob@acme.example", PASSWORD).await.is_ok());
    relay.stop().await;
}

/// Security review finding 9: a deployment code older than the newest 200 (the list's length)
/// is still found, revoked, and then registers nothing.
#[tokio::test]
async fn a_deployment_code_past_the_newest_200_can_be_revoked() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (status, made) = relay
        .api("POST", "/api/v1/deployment-codes", Some(&team.token), None)
        .await;
    assert_eq!(status, 200, "{made}");
    let oldest = made["code"].as_str().unwrap().to_owned();
    let (_, listed) = relay
        .api("GET", "/api/v1/deployment-codes", Some(&team.token), None)
        .await;
    let id = listed["deployment_codes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..200 {
        relay
            .store
            .create_deployment_code(&team.id, 3_600_000)
            .await
            .unwrap();
    }
    let (_, listed) = relay
        .api("GET", "/api/v1/deployment-codes", Some(&team.token), None)
        .await;
    assert!(listed.to_string().find(&id).is_none(), "off the list");
    let (status, body) = relay
        .api(
            "POST",
            &format!("/api/v1/deployment-codes/{id}/revoke"),
            Some(&team.token),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, registered) = relay
        .handshake_as(
            Role::Streamer,
            Credential::DeploymentCode {
                code: oldest,
                device_name: "Front desk PC".into(),
            },
        )
        .await;
    assert_eq!(
        handshake_refusal(registered).code,
        ErrorCode::CredentialRevoked
    );
    relay.stop().await;
}

/// Security review finding 10: inviting an address answers alike whether or not it has an
/// account in another team of the relay; the person who opens the link is told at acceptance.
#[tokio::test]
async fn an_invitation_reveals_nothing_about_other_teams() {
    let relay = TestRelay::start().await;
    let acme = relay.team("acme").await;
    let globex = relay.team("globex").await;
    join(&relay, &acme.token, "max@acme.example", "member").await;
    let (taken, taken_body) = invite(&relay, &globex.token, "max@acme.example", "member").await;
    let (free, free_body) = invite(&relay, &globex.token, "nobody@acme.example", "member").await;
    assert_eq!((taken, free), (201, 201), "{taken_body} {free_body}");
    assert_eq!(taken_body["emailed"], free_body["emailed"]);
    let (status, body) = accept(
        &relay,
        token_of(taken_body["url"].as_str().unwrap()),
        "Max",
        PASSWORD,
    )
    .await;
    assert_eq!((status, code(&body)), (409, "CONFLICT"), "{body}");
    // Inviting one's own team's member is still refused: that is the team's own business.
    let (status, body) = invite(&relay, &acme.token, "MAX@acme.example", "member").await;
    assert_eq!((status, code(&body)), (409, "CONFLICT"), "{body}");
    relay.stop().await;
}

/// An invitation's page is checked as it opens: a live one names the team, the address and the
/// role before anything is typed; a withdrawn or used one says the link does not work, with no
/// form to fill in.
#[tokio::test]
async fn an_invitation_page_names_its_team_and_a_dead_one_has_no_form() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let page = |token: String| {
        let relay = &relay;
        async move {
            let (status, _, body) = relay
                .connector
                .request(
                    &relay.addr,
                    "GET",
                    &format!("/console/invitations/{token}"),
                    &[("accept", "text/html")],
                    bytes::Bytes::new(),
                )
                .await
                .unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let (_, inv) = invite(&relay, &team.token, "ada@acme.example", "admin").await;
    let token = token_of(inv["url"].as_str().unwrap()).to_owned();
    let (status, body) = page(token.clone()).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<strong>acme</strong> as an admin")
            && body.contains("<strong>ada@acme.example</strong>")
            && body.contains("id=\"join\""),
        "{body}"
    );
    // Used: the page says so, without the form.
    let (status, _) = accept(&relay, &token, "Ada", PASSWORD).await;
    assert_eq!(status, 201);
    let (status, body) = page(token).await;
    assert_eq!(status, 410);
    assert!(
        body.contains("This link does not work") && !body.contains("id=\"join\""),
        "{body}"
    );
    // Withdrawn: the same.
    let (_, inv) = invite(&relay, &team.token, "max@acme.example", "member").await;
    let token = token_of(inv["url"].as_str().unwrap()).to_owned();
    let (status, _) = relay
        .api(
            "DELETE",
            "/api/v1/members/invitations/max@acme.example",
            Some(&team.token),
            None,
        )
        .await;
    assert!(status < 300, "{status}");
    let (status, body) = page(token).await;
    assert_eq!(status, 410);
    assert!(!body.contains("id=\"join\""), "{body}");
    // Unknown: refused the same way, as not valid.
    let (status, body) = page("0".repeat(43)).await;
    assert_eq!(status, 403);
    assert!(!body.contains("id=\"join\""), "{body}");
    relay.stop().await;
}
