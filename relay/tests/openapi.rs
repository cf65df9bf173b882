//! docs/openapi.json stays true: it describes exactly the routes the relay serves under /api and
//! /files (read from the router's source), and what a live relay answers is among the responses it
//! documents, signed in and not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::*;

fn documented() -> (serde_json::Value, BTreeSet<(String, String)>) {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    (doc, ops)
}

/// `(METHOD, path)` of every route under /api and /files.
fn served() -> BTreeSet<(String, String)> {
    served_routes()
        .into_iter()
        .filter(|(_, path)| path.starts_with("/api/") || path.starts_with("/files/"))
        .collect()
}

#[test]
fn the_document_lists_exactly_the_served_routes() {
    let (_, doc) = documented();
    let served = served();
    assert!(served.len() >= 12, "{served:?}");
    assert_eq!(doc, served, "docs/openapi.json and the router disagree");
}

#[tokio::test]
async fn live_answers_are_documented() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (doc, ops) = documented();
    for (method, path) in ops {
        let concrete = path
            .replace("{id}", "0123456789abcdef")
            .replace("{purpose}", "play");
        let op = &doc["paths"][&path][method.to_lowercase()];
        let responses = op["responses"].as_object().unwrap();
        for token in [None, Some(team.token.as_str())] {
            // Sign-out is left for last: it revokes the token.
            if path.ends_with("sign-out") && token.is_some() {
                continue;
            }
            let bearer = token.map(|t| format!("Bearer {t}"));
            let mut headers = vec![("content-type", "application/json")];
            if let Some(b) = &bearer {
                headers.push(("authorization", b.as_str()));
            }
            let body = if method == "GET" {
                Bytes::new()
            } else {
                Bytes::from_static(b"{}")
            };
            let (status, _, _) = relay
                .connector
                .request(&relay.addr, &method, &concrete, &headers, body)
                .await
                .unwrap();
            assert!(
                responses.contains_key(&status.to_string()),
                "{method} {concrete} (signed in: {}) answered {status}, which the document does not list",
                token.is_some()
            );
        }
    }
    relay.stop().await;
}
