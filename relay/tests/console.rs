//! Recordings through the console's HTTP side: listed per session, played with byte ranges, downloaded
//! intact with a meaningful name, under the team's playback policy, through links that stop working
//! after 10 minutes and cannot be changed, never across teams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::media::TestEncoder;
use common::recorded::*;
use common::*;
use relay::clock::Clock as _;
use relay::links::{Link, LinkKey, Purpose};
use relay::store::{PlaybackPolicy, UserRole};
use sha2::{Digest, Sha256};

async fn get(
    relay: &TestRelay,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Bytes) {
    relay
        .connector
        .request(&relay.addr, "GET", path, headers, Bytes::new())
        .await
        .unwrap()
}

fn error_code(body: &Bytes) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["error"]["code"].as_str().unwrap().to_owned()
}

/// A team with one recorded unattended session of 30 frames, stored; returns the session id.
async fn recorded(relay: &TestRelay, team: &Team) -> String {
    relay.set_recording(team, false, true).await;
    let mut r = recorded_session(relay, team).await;
    let mut enc = TestEncoder::new(320, 240, 10, 0);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 30, 10).await;
    let id = r.session_id.clone();
    finish(relay, r).await;
    id
}

/// A session's recording files through the API, as `token` (or no one) sees them.
async fn list_files(
    relay: &TestRelay,
    token: Option<&str>,
    session: &str,
) -> (u16, serde_json::Value) {
    relay
        .api(
            "GET",
            &format!("/api/v1/sessions/{session}/recordings"),
            token,
            None,
        )
        .await
}

async fn set_policy(relay: &TestRelay, team: &Team, policy: PlaybackPolicy) {
    let mut s = relay.store.team_settings(&team.id).await.unwrap().unwrap();
    s.playback_unattended = policy;
    relay.store.set_team_settings(&team.id, &s).await.unwrap();
}

#[tokio::test]
async fn recordings_play_with_ranges_and_download_intact_under_the_policy() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let session = recorded(&relay, &team).await;

    // The owner (default policy: Owner only) sees the files with links.
    let (status, listed) = list_files(&relay, Some(&team.token), &session).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["may_play"], true);
    let file = &listed["files"][0];
    let stored = relay.store.recording_files(&session).await.unwrap();
    let object = relay.object(&stored[0].object_key).await;
    assert!(object.len() > 1000);

    // A seek: the player asks for a range and gets exactly those bytes.
    let play = file["play_url"].as_str().unwrap();
    let (status, headers, body) = get(&relay, play, &[("range", "bytes=100-199")]).await;
    assert_eq!(status, 206);
    assert_eq!(&body[..], &object[100..200]);
    assert_eq!(
        headers["content-range"].to_str().unwrap(),
        format!("bytes 100-199/{}", object.len())
    );
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["content-type"], "video/mp4");
    let (status, _, _) = get(
        &relay,
        play,
        &[("range", &format!("bytes={}-", object.len()))],
    )
    .await;
    assert_eq!(status, 416);

    // The download is the whole file, intact, named for people.
    let (status, headers, body) = get(&relay, file["download_url"].as_str().unwrap(), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &object[..]);
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        stored[0].sha256.clone().unwrap()
    );
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"")
            && disposition.contains("_monitor-0_part-1.mp4"),
        "{disposition}"
    );

    // A member, under the default policy: no links, and the server refuses them.
    let member_id = relay
        .store
        .add_user(
            &team.id,
            "max@acme.example",
            "Max",
            UserRole::Member,
            PASSWORD,
        )
        .await
        .unwrap();
    let member = relay.sign_in("max@acme.example").await;
    let (status, listed) = list_files(&relay, Some(&member), &session).await;
    assert_eq!(status, 200);
    assert_eq!(listed["may_play"], false);
    assert!(listed["files"][0].get("play_url").is_none());
    let file_id = stored[0].id.clone();
    let (status, body) = relay
        .api(
            "POST",
            &format!("/api/v1/recordings/{file_id}/links"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    // Even a genuine link made out to the member (signed with the relay's own key) is refused.
    let key = std::fs::read_to_string(relay.dir.path().join("link-key")).unwrap();
    let key: [u8; 32] = hex::decode(key.trim()).unwrap().try_into().unwrap();
    let forged_for_member = LinkKey::from_bytes(key).url(&Link {
        file_id: file_id.clone(),
        purpose: Purpose::Play,
        user_id: member_id.clone(),
        issued_at: relay.clock.now_ms(),
    });
    let (status, _, body) = get(&relay, &forged_for_member, &[]).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "LINK_INVALID"));

    // After the owner lets members play, the member gets links that work.
    set_policy(&relay, &team, PlaybackPolicy::Members).await;
    let (status, links) = relay
        .api(
            "POST",
            &format!("/api/v1/recordings/{file_id}/links"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(status, 200, "{links}");
    let (status, _, body) = get(
        &relay,
        links["play_url"].as_str().unwrap(),
        &[("range", "bytes=0-9")],
    )
    .await;
    assert_eq!((status, &body[..]), (206, &object[..10]));
    // And the same link stops working when the policy is taken back.
    // (docs/openapi.json: LINK_INVALID, for programs and, as a page, for a browser.)
    set_policy(&relay, &team, PlaybackPolicy::Owner).await;
    let (status, _, body) = get(&relay, links["play_url"].as_str().unwrap(), &[]).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "LINK_INVALID"));
    let (status, _, page) = get(
        &relay,
        links["play_url"].as_str().unwrap(),
        &[("accept", "text/html")],
    )
    .await;
    let page = String::from_utf8_lossy(&page);
    assert_eq!(status, 403);
    assert!(page.contains("may no longer play"), "{page}");
    relay.stop().await;
}

async fn links(relay: &TestRelay, token: &str, file_id: &str) -> serde_json::Value {
    let path = format!("/api/v1/recordings/{file_id}/links");
    let (status, v) = relay.api("POST", &path, Some(token), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn links_expire_after_ten_minutes_and_cannot_be_changed() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let session = recorded(&relay, &team).await;
    let file_id = relay.store.recording_files(&session).await.unwrap()[0]
        .id
        .clone();
    let old = links(&relay, &team.token, &file_id).await;
    let play = old["play_url"].as_str().unwrap().to_owned();
    relay.clock.advance(Duration::from_secs(9 * 60 + 59));
    assert_eq!(get(&relay, &play, &[("range", "bytes=0-0")]).await.0, 206);
    relay.clock.advance(Duration::from_secs(2));
    let (status, _, body) = get(&relay, &play, &[]).await;
    assert_eq!((status, error_code(&body).as_str()), (410, "LINK_EXPIRED"));
    // The page issues fresh ones, which work.
    let fresh = links(&relay, &team.token, &file_id).await;
    assert_eq!(
        get(&relay, fresh["play_url"].as_str().unwrap(), &[])
            .await
            .0,
        200
    );

    // Tampering: the time pushed forward, the signature changed, the purpose or file swapped.
    let url = fresh["play_url"].as_str().unwrap().to_owned();
    let t: i64 = url
        .split("t=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let tampered = [
        url.replace(&format!("t={t}"), &format!("t={}", t + 60_000)),
        format!(
            "{}{}",
            &url[..url.len() - 1],
            if url.ends_with('0') { '1' } else { '0' }
        ),
        url.replace("/play?", "/download?"),
        url.replace(&file_id, "0123456789abcdef0123456789abcdef"),
        url.split("&s=").next().unwrap().to_owned(),
        "/files/x/play?u=&t=0&s=".to_owned(),
    ];
    for bad in tampered {
        let (status, _, _) = get(&relay, &bad, &[]).await;
        assert!(status == 403 || status == 404, "{bad}: {status}");
    }

    // Security review finding 8: links issued to someone who is then removed die with them.
    let mut settings = relay.store.team_settings(&team.id).await.unwrap().unwrap();
    settings.playback_unattended = PlaybackPolicy::Members;
    relay
        .store
        .set_team_settings(&team.id, &settings)
        .await
        .unwrap();
    let leaver = relay
        .store
        .add_user(
            &team.id,
            "leaver@acme.example",
            "Leaver",
            UserRole::Member,
            PASSWORD,
        )
        .await
        .unwrap();
    let leaver_token = relay.sign_in("leaver@acme.example").await;
    let theirs = links(&relay, &leaver_token, &file_id).await;
    let (play, download) = (
        theirs["play_url"].as_str().unwrap().to_owned(),
        theirs["download_url"].as_str().unwrap().to_owned(),
    );
    assert_eq!(get(&relay, &download, &[]).await.0, 200);
    let (status, _) = relay
        .api(
            "DELETE",
            &format!("/api/v1/members/{leaver}"),
            Some(&team.token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    for url in [&play, &download] {
        let (status, _, body) = get(&relay, url, &[("range", "bytes=0-99")]).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (403, "LINK_INVALID"),
            "{url}"
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn another_teams_sessions_and_recordings_are_not_there() {
    let relay = TestRelay::start().await;
    let acme = relay.team("acme").await;
    let other = relay.team("other").await;
    let session = recorded(&relay, &acme).await;
    let file_id = relay.store.recording_files(&session).await.unwrap()[0]
        .id
        .clone();

    let (status, v) = list_files(&relay, Some(&other.token), &session).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, v) = relay
        .api(
            "POST",
            &format!("/api/v1/recordings/{file_id}/links"),
            Some(&other.token),
            None,
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    // The console page too, with the other team's sign-in cookie.
    let cookie = format!("__Host-relay_console={}", other.token);
    let (status, _, body) = get(
        &relay,
        &format!("/console/sessions/{session}"),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("no such session"));
    // Without a sign-in, pages send people to sign in, and the API refuses.
    let (status, headers, _) = get(&relay, "/console/sessions", &[]).await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (303, "/console/sign-in")
    );
    let (status, _) = list_files(&relay, None, &session).await;
    assert_eq!(status, 401);
    relay.stop().await;
}

#[tokio::test]
async fn a_file_changed_in_storage_is_reported_not_served() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let session = recorded(&relay, &team).await;
    let (_, listed) = list_files(&relay, Some(&team.token), &session).await;
    let file = &listed["files"][0];
    let play = file["play_url"].as_str().unwrap().to_owned();
    let download = file["download_url"].as_str().unwrap().to_owned();
    let stored = relay.store.recording_files(&session).await.unwrap();
    let key = &stored[0].object_key;
    let genuine = read_object(&relay, key).await;
    assert_eq!(
        hex::encode(Sha256::digest(&genuine)),
        stored[0].sha256.clone().unwrap()
    );

    // Intact: served (checked once, then remembered for the player's range requests).
    assert_eq!(get(&relay, &download, &[]).await.0, 200);
    assert_eq!(get(&relay, &play, &[("range", "bytes=0-99")]).await.0, 206);

    // One byte changed in place, the size unchanged: neither a download nor a range is served.
    let mut altered = genuine.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0xff;
    tokio::time::sleep(Duration::from_millis(20)).await;
    write_object(&relay, key, &altered).await;
    for (url, headers) in [
        (&download, &[][..]),
        (&play, &[("range", "bytes=0-99")][..]),
    ] {
        let (status, _, body) = get(&relay, url, headers).await;
        assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
        assert_eq!(error_code(&body), "INTEGRITY_FAILED");
        assert!(String::from_utf8_lossy(&body).contains("SHA-256"));
    }

    // Put back as it was stored: served again, byte for byte.
    tokio::time::sleep(Duration::from_millis(20)).await;
    write_object(&relay, key, &genuine).await;
    let (status, _, body) = get(&relay, &download, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], &genuine[..]);
    assert_eq!(
        get(&relay, &play, &[("range", "bytes=100-199")]).await.0,
        206
    );

    // Security review finding 6: changed in place with its size, inode and modification time
    // kept (what the file's ETag on local disk is made of), after a verdict was remembered.
    // On S3 a write always renews the object's ETag (covered above), so this is the local store's.
    if test_recordings_url(relay.dir.path()).is_none() {
        let on_disk = object_path(relay.dir.path(), key);
        let before = std::fs::metadata(&on_disk).unwrap();
        {
            use std::io::{Seek as _, Write as _};
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&on_disk)
                .unwrap();
            f.seek(std::io::SeekFrom::Start(middle as u64)).unwrap();
            f.write_all(&[genuine[middle] ^ 0x55; 16]).unwrap();
            f.set_times(std::fs::FileTimes::new().set_modified(before.modified().unwrap()))
                .unwrap();
        }
        let after = std::fs::metadata(&on_disk).unwrap();
        {
            use std::os::unix::fs::MetadataExt as _;
            assert_eq!(
                (after.len(), after.ino(), after.mtime(), after.mtime_nsec()),
                (
                    before.len(),
                    before.ino(),
                    before.mtime(),
                    before.mtime_nsec()
                ),
                "the attack keeps what the ETag is made of"
            );
        }
        for (url, headers) in [
            (&download, &[][..]),
            (&play, &[("range", "bytes=100-199")][..]),
        ] {
            let (status, _, body) = get(&relay, url, headers).await;
            assert_eq!(
                (status, error_code(&body).as_str()),
                (409, "INTEGRITY_FAILED"),
                "{headers:?}"
            );
        }
    }
}

#[tokio::test]
async fn path_traversal_in_any_name_reaches_no_file() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    // A device whose name is a path, recorded.
    let code = relay
        .store
        .create_deployment_code(&team.id, 3_600_000)
        .await
        .unwrap();
    let mut streamer = relay.connect().await;
    let est = streamer
        .handshake(
            protocol::Role::Streamer,
            CURRENT,
            protocol::Credential::DeploymentCode {
                code,
                device_name: "../../../../etc/passwd".into(),
            },
        )
        .await
        .unwrap();
    let (device_id, _) = est.registered.unwrap();
    let mut tech = relay.technician(&team).await;
    let protocol::Message::SessionStarted { session_id, .. } = pair(
        &mut tech,
        &mut streamer,
        protocol::SessionTarget::Device { device_id },
    )
    .await
    else {
        panic!()
    };
    recv(&mut tech).await;
    recv(&mut streamer).await;
    let mut enc = TestEncoder::new(320, 240, 10, 0);
    streamer.send(&enc.config()).await.unwrap();
    stream(&mut streamer, &mut enc, 10, 10).await;
    tech.send(&protocol::Message::LeaveSession).await.unwrap();
    relay
        .wait_recording_state(&session_id, relay::store::RecordingState::Uploaded)
        .await;

    // The file is where the relay's own ids put it, inside the recordings directory.
    let stored = relay.store.recording_files(&session_id).await.unwrap();
    let key = &stored[0].object_key;
    assert!(
        key.starts_with(&format!("{}/{}/monitor-0/", team.id, session_id)) && !key.contains(".."),
        "{key}"
    );
    if relay.config.recordings_url.is_none() {
        let root = relay.dir.path().join("recordings").canonicalize().unwrap();
        let on_disk = root.join(key).canonicalize().unwrap();
        assert!(on_disk.starts_with(&root), "{on_disk:?}");
    }
    // Its download name carries the device's name without a path in it.
    let (_, listed) = list_files(&relay, Some(&team.token), &session_id).await;
    let download = listed["files"][0]["download_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, headers, _) = get(&relay, &download, &[]).await;
    assert_eq!(status, 200);
    let disposition = headers["content-disposition"].to_str().unwrap();
    let name = disposition.split("filename=").nth(1).unwrap();
    assert!(
        !name.contains('/') && !name.contains('\\') && !name.contains(".."),
        "{disposition}"
    );

    // Made-up ids that are paths, in every route that takes an id or a name, signed in or not:
    // refused, and never a byte of a file.
    let secret = std::fs::read(relay.dir.path().join("link-key")).unwrap();
    let bearer = format!("Bearer {}", team.token);
    let cookie = format!("__Host-relay_console={}", team.token);
    for path in [
        "/files/..%2F..%2Flink-key/download",
        "/files/..%2F..%2Flink-key/play",
        "/files/%2e%2e/%2e%2e",
        "/console/sessions/..%2F..%2Flink-key",
        "/console/sessions/%2e%2e%2f%2e%2e%2fdb.sqlite",
        "/api/v1/sessions/..%2F..%2Flink-key/recordings",
        "/api/v1/devices/..%2F..%2Flink-key/revoke",
        "/console/style.css/..%2F..%2Flink-key",
        "/console/../link-key",
        "/../../link-key",
        "/recordings/..%2Flink-key",
    ] {
        for headers in [
            &[][..],
            &[("authorization", bearer.as_str())][..],
            &[("cookie", cookie.as_str())][..],
        ] {
            let (status, answer, body) = get(&relay, path, headers).await;
            let to_sign_in = status == 303 && answer["location"] == "/console/sign-in";
            assert!(
                matches!(status, 400 | 401 | 403 | 404 | 405) || to_sign_in,
                "{path} answered {status} {answer:?}"
            );
            assert!(
                !body.windows(secret.len()).any(|w| w == secret.as_slice()),
                "{path} served the link key"
            );
        }
    }
    relay.stop().await;
}

/// Every route that can change something (every method but GET, read from the router's sources,
/// so a new route is covered when it is added) refuses a request from a page of another origin,
/// cookie or bearer token alike, and nothing changes; the relay's own pages' requests pass; every
/// answer carries the security headers.
#[tokio::test]
async fn state_changing_requests_from_another_origin_are_refused_and_change_nothing() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let member = relay
        .store
        .add_user(
            &team.id,
            "max@acme.example",
            "Max",
            UserRole::Member,
            PASSWORD,
        )
        .await
        .unwrap();
    let settings = relay.store.team_settings(&team.id).await.unwrap().unwrap();
    let cookie = format!("__Host-relay_console={}", team.token);
    let bearer = format!("Bearer {}", team.token);
    // Another port of the same host: the same site, so SameSite cookies would go with it.
    let port = relay.addr.rsplit(':').next().unwrap();
    let sibling = format!("https://127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1);
    let routes: Vec<_> = served_routes()
        .into_iter()
        .filter(|(method, _)| method != "GET")
        .collect();
    assert!(routes.len() >= 25, "{routes:?}");
    for (method, path) in &routes {
        let concrete = path
            .replace("{id}", &member)
            .replace("{email}", "max%40acme.example")
            .replace("{token}", "0123456789abcdef")
            .replace("{purpose}", "play");
        let (content_type, body) = if path.starts_with("/api/") {
            (
                "application/json",
                Bytes::from_static(b"{\"role\":\"admin\"}"),
            )
        } else {
            (
                "application/x-www-form-urlencoded",
                Bytes::from_static(b"role=admin&name=Pwned&email=evil%40evil.example"),
            )
        };
        for headers in [
            vec![("cookie", cookie.as_str()), ("origin", sibling.as_str())],
            vec![("authorization", bearer.as_str()), ("origin", "null")],
            vec![("cookie", cookie.as_str()), ("sec-fetch-site", "same-site")],
        ] {
            let mut headers = headers;
            headers.push(("content-type", content_type));
            let (status, _, answer) = relay
                .connector
                .request(&relay.addr, method, &concrete, &headers, body.clone())
                .await
                .unwrap();
            assert_eq!(status, 403, "{method} {concrete} {headers:?}");
            if path.starts_with("/api/") {
                assert_eq!(error_code(&answer), "ORIGIN_REFUSED", "{method} {concrete}");
            } else {
                let page = String::from_utf8_lossy(&answer);
                assert!(
                    page.contains("id=\"origin-refused\""),
                    "{method} {concrete}: {page}"
                );
            }
        }
    }
    // Nothing changed, and the owner is still signed in.
    assert_eq!(
        relay.store.team_settings(&team.id).await.unwrap().unwrap(),
        settings
    );
    let users = relay.store.team_users(&team.id).await.unwrap();
    assert!(users
        .iter()
        .any(|u| u.id == member && u.role == UserRole::Member));
    assert!(relay
        .store
        .pending_invitations(&team.id)
        .await
        .unwrap()
        .is_empty());
    assert!(relay
        .store
        .deployment_codes(&team.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(relay.store.team_name(&team.id).await.unwrap(), "acme");
    let (status, _) = relay
        .api("GET", "/api/v1/team", Some(&team.token), None)
        .await;
    assert_eq!(status, 200);

    // The relay's own page (its origin, as the browser writes it) and programs (no Origin) pass.
    let own = format!("https://{}", relay.addr);
    for headers in [
        vec![("cookie", cookie.as_str()), ("origin", own.as_str())],
        vec![
            ("cookie", cookie.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![("authorization", bearer.as_str())],
    ] {
        let (status, answer, _) = relay
            .connector
            .request(
                &relay.addr,
                "POST",
                "/api/v1/deployment-codes",
                &headers,
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{headers:?}");
        assert_eq!(
            answer["cache-control"], "no-store",
            "a new code is never cached"
        );
    }
    assert_eq!(
        relay.store.deployment_codes(&team.id).await.unwrap().len(),
        3
    );

    // Every answer carries the security headers: pages, the API, errors.
    for path in [
        "/console/sign-in",
        "/console/sessions",
        "/api/v1/team",
        "/nowhere",
    ] {
        let (_, headers, _) = get(&relay, path, &[("cookie", cookie.as_str())]).await;
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        assert!(headers.contains_key("strict-transport-security"), "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
    }
    relay.stop().await;
}
