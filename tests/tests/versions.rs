//! One build, one version: every component reports the same product version.

// Test helpers unwrap on purpose: a failure should stop the test loudly where it happens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn every_component_reports_the_workspace_version() {
    let relay = relay::product_version().unwrap();
    let streamer = streamer_agent::product_version().unwrap();
    let technician = technician::product_version().unwrap();
    assert_eq!(relay, streamer);
    assert_eq!(relay, technician);
    let package = env!("CARGO_PKG_VERSION");
    assert!(
        relay.to_string().starts_with(&format!("{package}.")),
        "{relay} derives from {package}"
    );
}

#[test]
fn this_builds_streamer_passes_the_recording_gate() {
    // A streamer from this build must be allowed into recorded sessions, or a release would lock
    // every recording team out.
    let streamer = streamer_agent::product_version().unwrap();
    assert_eq!(protocol::recorded_session_gate(&streamer), Ok(()));
}
