//! Password guessing is throttled: after five wrong passwords for an account, its sign-in pauses for
//! 15 minutes, through the API and the console alike, even for the right password; other accounts sign
//! in meanwhile; the pause ends on time. One client address guessing across many accounts is paused
//! after 50 wrong passwords. A technician guessing session codes is paused after 10 wrong codes, and a
//! team after 50.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use protocol::{Credential, ErrorCode, Role, SessionTarget};

async fn api_sign_in(relay: &TestRelay, email: &str, password: &str) -> (u16, serde_json::Value) {
    relay
        .api(
            "POST",
            "/api/v1/sign-in",
            None,
            Some(serde_json::json!({"email": email, "password": password})),
        )
        .await
}

async fn console_sign_in(relay: &TestRelay, email: &str, password: &str) -> (u16, String) {
    let form = format!(
        "email={}&password={}",
        email.replace('@', "%40"),
        password.replace(' ', "+")
    );
    let (status, _, body) = relay
        .connector
        .request(
            &relay.addr,
            "POST",
            "/console/sign-in",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(form),
        )
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn five_wrong_passwords_pause_the_accounts_sign_in_for_15_minutes() {
    let relay = TestRelay::start().await;
    let acme = relay.team("acme").await;
    let other = relay.team("other").await;

    // Five wrong guesses, mixed between the API and the console, and the address's case.
    for i in 0..5 {
        if i % 2 == 0 {
            let (status, body) = api_sign_in(&relay, &acme.owner_email, "guess").await;
            assert_eq!(status, 401, "{body}");
            assert_eq!(body["error"]["code"], "AUTHENTICATION_FAILED");
        } else {
            let (status, page) =
                console_sign_in(&relay, &acme.owner_email.to_uppercase(), "guess").await;
            assert_eq!(status, 401, "{page}");
        }
    }

    // Now even the right password is refused, with when to try again, on both doors.
    let (status, body) = api_sign_in(&relay, &acme.owner_email, PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "TOO_MANY_ATTEMPTS");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Try again in 15 minutes"), "{message}");
    let (status, page) = console_sign_in(&relay, &acme.owner_email, PASSWORD).await;
    assert_eq!(status, 429);
    assert!(page.contains("Too many wrong passwords"), "{page}");
    assert!(
        !page.contains("relay_console="),
        "no session cookie in the page"
    );

    // Another account signs in meanwhile.
    assert_eq!(
        api_sign_in(&relay, &other.owner_email, PASSWORD).await.0,
        200
    );

    // 14 minutes later: still paused. 15: the right password works, and clears the count.
    relay.clock.advance(Duration::from_secs(14 * 60));
    assert_eq!(
        api_sign_in(&relay, &acme.owner_email, PASSWORD).await.0,
        429
    );
    relay.clock.advance(Duration::from_secs(60));
    let (status, body) = api_sign_in(&relay, &acme.owner_email, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..4 {
        assert_eq!(api_sign_in(&relay, &acme.owner_email, "guess").await.0, 401);
    }
    assert_eq!(
        api_sign_in(&relay, &acme.owner_email, PASSWORD).await.0,
        200,
        "four fresh failures do not pause the account"
    );
}

#[tokio::test]
async fn one_address_guessing_across_accounts_is_paused() {
    let relay = TestRelay::start().await;
    let acme = relay.team("acme").await;
    // 50 wrong passwords from this address (127.0.0.1), each for another account: no account
    // reaches its own limit.
    for i in 0..relay::throttle::MAX_ADDRESS_FAILURES {
        let email = format!("guess{i}@example.com");
        let (status, body) = if i % 2 == 0 {
            api_sign_in(&relay, &email, "guess").await
        } else {
            let (status, page) = console_sign_in(&relay, &email, "guess").await;
            (status, serde_json::Value::String(page))
        };
        assert_eq!(status, 401, "attempt {i}: {body}");
    }
    // The address is paused, even for a real account's right password, on both doors.
    let (status, body) = api_sign_in(&relay, &acme.owner_email, PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("from your network"), "{message}");
    let (status, page) = console_sign_in(&relay, &acme.owner_email, PASSWORD).await;
    assert_eq!(status, 429);
    assert!(page.contains("from your network"), "{page}");
    relay.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        api_sign_in(&relay, &acme.owner_email, PASSWORD).await.0,
        200
    );
}

#[tokio::test]
async fn session_code_guessing_is_paused_per_technician_and_colleagues_are_not() {
    // Requests faster than the per-connection request rate, to reach the code throttle quickly.
    let relay = TestRelay::start_with(|c| c.max_requests_per_sec = 100).await;
    let team = relay.team("acme").await;
    let (mut streamer, code) = relay.attended(&team, CURRENT).await;
    let mut guesser = relay.technician(&team).await;
    let wrong = |i: usize| {
        let w = format!("{:09}", 100_000_000 + i);
        assert_ne!(w, code);
        w
    };
    for i in 0..relay::throttle::MAX_CODE_FAILURES {
        let (c, _) = request_refused(&mut guesser, SessionTarget::Code { code: wrong(i) }).await;
        assert_eq!(c, ErrorCode::SessionCodeInvalid);
    }
    // Paused: even the right code is refused, and the code is not used up by it.
    let (c, message) =
        request_refused(&mut guesser, SessionTarget::Code { code: code.clone() }).await;
    assert_eq!(c, ErrorCode::RateLimited, "{message}");
    assert!(message.contains("Try again in 15 minutes"), "{message}");

    // A colleague with the right code starts the session.
    relay
        .store
        .add_user(
            &team.id,
            "colleague@example.com",
            "Colleague",
            relay::store::UserRole::Member,
            PASSWORD,
        )
        .await
        .unwrap();
    let token = relay.sign_in("colleague@example.com").await;
    let mut colleague = relay.connect().await;
    colleague
        .handshake(
            Role::Technician,
            CURRENT,
            Credential::TechnicianToken { token },
        )
        .await
        .unwrap();
    pair(
        &mut colleague,
        &mut streamer,
        SessionTarget::Code { code: code.clone() },
    )
    .await;

    // 15 minutes on, the guesser may try again: the code, used by the colleague, is refused as
    // invalid, no longer as paused.
    relay.clock.advance(Duration::from_secs(15 * 60));
    let (c, _) = request_refused(&mut guesser, SessionTarget::Code { code }).await;
    assert_eq!(c, ErrorCode::SessionCodeInvalid);
}

/// Security review finding 2: look-alike spellings of an address (full-width and circled
/// letters, which PostgreSQL's collation takes for the account's own) share the account's count:
/// once it is paused, none of them signs in, even with the right password. Both engines.
#[tokio::test]
async fn look_alike_addresses_share_the_accounts_pause() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let variants = [
        "\u{ff4f}wner@acme.example", // full-width o
        "o\u{ff57}ner@acme.example", // full-width w
        "\u{24de}wner@acme.example", // circled o
        "OWNER@ACME.EXAMPLE",
    ];
    for (i, guess) in variants
        .iter()
        .chain([&team.owner_email.as_str()])
        .enumerate()
    {
        let (status, body) = api_sign_in(&relay, guess, &format!("wrong-{i}")).await;
        assert_eq!(status, 401, "{guess}: {body}");
    }
    for spelling in variants.iter().chain([&team.owner_email.as_str()]) {
        let (status, body) = api_sign_in(&relay, spelling, PASSWORD).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (429, Some("TOO_MANY_ATTEMPTS")),
            "{spelling}: {body}"
        );
    }
    // After the pause, a look-alike spelling is the same account (it reads the same).
    relay.clock.advance(Duration::from_secs(15 * 60));
    let (status, body) = api_sign_in(&relay, variants[0], PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["team_id"], team.id.as_str());
    assert_eq!(body["role"], "owner");
    relay.stop().await;
}

/// Security review finding 7: a stolen token cannot guess the account's password through a
/// password change: wrong current passwords count in the account's throttle, are audited, and
/// pause both the change and the sign-in.
#[tokio::test]
async fn wrong_current_passwords_are_throttled_and_audited() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let change = |current: String| {
        let relay = &relay;
        let token = team.token.clone();
        async move {
            relay
                .api(
                    "PUT",
                    "/api/v1/me/password",
                    Some(&token),
                    Some(serde_json::json!({
                        "current_password": current,
                        "new_password": "a brand new passphrase"
                    })),
                )
                .await
        }
    };
    let mut answers = Vec::new();
    for i in 0..8 {
        let (status, body) = change(format!("guess-{i:04}-xxxxxxxx")).await;
        answers.push((
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let wrong = answers.iter().filter(|a| a.0 == 400).count();
    let paused = answers
        .iter()
        .filter(|a| *a == &(429, "TOO_MANY_ATTEMPTS".to_owned()))
        .count();
    assert_eq!((wrong, paused), (5, 3), "{answers:?}");
    // Even the right current password, and the sign-in, wait now.
    let (status, _) = change(PASSWORD.to_owned()).await;
    assert_eq!(status, 429);
    let (status, _) = api_sign_in(&relay, &team.owner_email, PASSWORD).await;
    assert_eq!(status, 429);
    let (_, audit) = relay
        .api(
            "GET",
            "/api/v1/audit?action=password_change_failed",
            Some(&team.token),
            None,
        )
        .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 5, "{audit}");
    relay.clock.advance(Duration::from_secs(15 * 60));
    let (status, body) = change(PASSWORD.to_owned()).await;
    assert_eq!(status, 204, "{body}");
    relay.stop().await;
}
