//! Password guessing is throttled: after five wrong passwords for an account, its sign-in pauses for
//! 15 minutes, through the API and the console alike, even for the right password; other accounts sign
//! in meanwhile; the pause ends on time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;

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
