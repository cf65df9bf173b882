//! The relay killed with SIGKILL (its binary, as a crash leaves it): mid-session, and within a new
//! file's first fragment. Nothing already finished is lost; what was being written stays playable
//! up to its last synced fragment; no file without media is ever listed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::media::{check_file, TestEncoder};
use common::*;
use protocol::*;
use relay::store::{RecordingState, Store};
use relay_client::{Connection, Connector};
use sha2::Digest;

use common::process::{wait_exit, RelayProcess};

fn spawn_relay(data: &Path) -> RelayProcess {
    spawn_relay_with(data, &[])
}

/// [`spawn_relay`] with more arguments.
fn spawn_relay_with(data: &Path, args: &[&std::ffi::OsStr]) -> RelayProcess {
    let mut all: Vec<std::ffi::OsString> = vec![
        "--data-dir".into(),
        data.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--database-url".into(),
        database_url_of(data).into(),
    ];
    if let Some(url) = test_recordings_url(data) {
        all.extend(["--recordings-url".into(), url.into()]);
    }
    all.extend(args.iter().map(|a| a.to_os_string()));
    common::process::spawn(&all)
}

#[tokio::test]
async fn sigkill_mid_session_keeps_finished_files_and_closes_the_open_one_as_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let RecordedPair {
        mut relay,
        mut streamer,
        reader,
        session_id,
        connector,
        email,
        password,
    } = recorded_pair_on(spawn_relay(&data), &data).await;

    // A first file that finishes (the monitor switch closes it)...
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    streamer.send(&enc.config()).await.unwrap();
    stream_or_end(&mut streamer, &mut enc, 30, 10).await;
    // ...and a second one cut short: four complete fragments, then five frames still gathering.
    let mut enc = TestEncoder::new(320, 240, 30, 1).starting_at(enc.timestamp_us);
    streamer.send(&enc.config()).await.unwrap();
    stream_or_end(&mut streamer, &mut enc, 45, 10).await;
    // Give the recorder time to sync the fourth fragment, then kill without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(Command::new("kill")
        .args(["-KILL", &relay.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    wait_exit(&mut relay.child);
    reader.abort();

    // Restart: recovery runs before the relay serves.
    let mut again = spawn_relay(&data);
    assert!(again.first_owner.is_none(), "no second bootstrap");
    // The API tells the session's recording is incomplete (the console's column reads the same).
    let token = connector
        .sign_in(&again.addr, &email, &password)
        .await
        .unwrap();
    let (status, body) = connector
        .api(&again.addr, "GET", "/api/v1/sessions", Some(&token), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let row = &body["sessions"][0];
    assert_eq!(
        (row["id"].as_str(), row["recording_state"].as_str()),
        (Some(session_id.as_str()), Some("incomplete")),
        "{body}"
    );
    assert!(Command::new("kill")
        .args(["-TERM", &again.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    wait_exit(&mut again.child);

    let store = Store::open(&database_url_of(&data), Arc::new(relay::SystemClock))
        .await
        .unwrap();
    let files = store.recording_files(&session_id).await.unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    let (finished, cut) = (&files[0], &files[1]);
    assert_eq!(
        (finished.state.as_str(), finished.frame_count),
        ("complete", Some(30))
    );
    let bytes = read_stored(&data, &finished.object_key).await;
    assert_eq!(
        finished.sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str()),
        "nothing finished is lost"
    );
    assert_eq!(check_file(&bytes).decoded, 30);

    assert_eq!(cut.state, "incomplete");
    assert_eq!(
        cut.frame_count,
        Some(40),
        "the complete fragments survive; the one gathering is lost"
    );
    let bytes = read_stored(&data, &cut.object_key).await;
    assert_eq!(cut.size_bytes, Some(bytes.len() as i64));
    assert_eq!(
        cut.sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str())
    );
    let checked = check_file(&bytes);
    assert_eq!(
        (checked.frames, checked.decoded),
        (40, 40),
        "it plays up to its last fragment"
    );
    assert!(checked.first_is_keyframe);
    assert_eq!(
        store.recording_state(&session_id).await.unwrap(),
        Some(RecordingState::Incomplete)
    );
    let session = store
        .sessions(&files[0].team_id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == session_id)
        .unwrap();
    assert_eq!(session.end_reason.as_deref(), Some("RELAY_RESTARTED"));
    assert!(
        std::fs::read_dir(data.join("spool"))
            .unwrap()
            .next()
            .is_none(),
        "the spool is empty"
    );
}

/// A relay process in a recorded session, from the test's side.
struct RecordedPair {
    relay: RelayProcess,
    streamer: Connection,
    /// The technician, reading in the background so that nothing waits on it.
    reader: tokio::task::JoinHandle<()>,
    session_id: String,
    connector: Connector,
    email: String,
    password: String,
}

/// A fresh relay process with recording on, a device streamer and a signed-in technician in a
/// session.
async fn recorded_pair_on(relay: RelayProcess, data: &Path) -> RecordedPair {
    let (email, password, code) = relay.first_owner.clone().expect("a fresh relay bootstraps");
    let connector = Connector::trusting_ca_file(&data.join("tls/dev-ca.pem")).unwrap();
    let token = connector
        .sign_in(&relay.addr, &email, &password)
        .await
        .unwrap();
    let (_, mut settings) = connector
        .api(
            &relay.addr,
            "GET",
            "/api/v1/team/settings",
            Some(&token),
            None,
        )
        .await
        .unwrap();
    settings["record_unattended"] = true.into();
    let (status, _) = connector
        .api(
            &relay.addr,
            "PUT",
            "/api/v1/team/settings",
            Some(&token),
            Some(&settings),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let mut streamer = connector.connect(&relay.addr).await.unwrap();
    let est = streamer
        .handshake(
            Role::Streamer,
            CURRENT,
            Credential::DeploymentCode {
                code,
                device_name: "PC".into(),
            },
        )
        .await
        .unwrap();
    let (device_id, _) = est.registered.unwrap();
    let mut tech = connector.connect(&relay.addr).await.unwrap();
    tech.handshake(
        Role::Technician,
        CURRENT,
        Credential::TechnicianToken { token },
    )
    .await
    .unwrap();
    let Message::SessionStarted { session_id, .. } = pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id },
    )
    .await
    else {
        panic!()
    };
    let reader = tokio::spawn(async move { while tech.recv().await.is_ok() {} });
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: true }
    );
    RecordedPair {
        relay,
        streamer,
        reader,
        session_id,
        connector,
        email,
        password,
    }
}

/// Killed within the first fragment of a new file, at session start and right after a size split,
/// again and again: after the restart no listed file is empty or without a frame, every listed file
/// plays, and the spool holds nothing.
#[tokio::test]
async fn sigkill_in_a_new_files_first_fragment_never_lists_a_file_without_media() {
    const CAP: u64 = 1024 * 1024;
    let mut listed_files = 0;
    for (case, frames_after_open) in [
        ("start", 1),
        ("start", 2),
        ("start", 3),
        ("size", 1),
        ("size", 2),
        ("size", 3),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("relay.toml");
        std::fs::write(&config, format!("max_recording_file_bytes = {CAP}\n")).unwrap();
        let relay = spawn_relay_with(&data, &["--config".as_ref(), config.as_os_str()]);
        let RecordedPair {
            mut relay,
            mut streamer,
            reader,
            session_id,
            ..
        } = recorded_pair_on(relay, &data).await;
        let mut enc = TestEncoder::new(320, 240, 30, 0);
        let mut sent = 0usize;
        if case == "size" {
            // Noisy content fills the file; the relay asks for a keyframe ahead of the cap, and
            // that keyframe starts the next file.
            enc = enc.noisy();
            streamer.send(&enc.config()).await.unwrap();
            let mut asked = false;
            for i in 0..400 {
                while let Ok(Ok(m)) =
                    tokio::time::timeout(Duration::from_millis(2), streamer.recv()).await
                {
                    asked |= m == Message::KeyframeRequest;
                }
                if asked && i > 0 {
                    break;
                }
                streamer.send(&enc.frame(i == 0)).await.unwrap();
                sent += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(asked, "the size cap asked for a keyframe");
        } else {
            streamer.send(&enc.config()).await.unwrap();
        }
        // The new file's keyframe and a few frames, then a kill without warning at once. After a
        // size split, the full file is given time to be stored first: only the new one is open.
        for i in 0..frames_after_open {
            streamer.send(&enc.frame(i == 0)).await.unwrap();
            sent += 1;
            if i == 0 && case == "size" {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        assert!(Command::new("kill")
            .args(["-KILL", &relay.child.id().to_string()])
            .status()
            .unwrap()
            .success());
        wait_exit(&mut relay.child);
        reader.abort();

        let mut again = spawn_relay(&data);
        assert!(Command::new("kill")
            .args(["-TERM", &again.child.id().to_string()])
            .status()
            .unwrap()
            .success());
        wait_exit(&mut again.child);
        let store = Store::open(&database_url_of(&data), Arc::new(relay::SystemClock))
            .await
            .unwrap();
        let files = store.recording_files(&session_id).await.unwrap();
        let mut recorded = 0;
        for f in &files {
            let what = format!("{case} +{frames_after_open}: {f:?}");
            assert!(
                f.size_bytes.unwrap_or(0) > 0,
                "an empty file is listed: {what}"
            );
            assert!(
                f.frame_count.unwrap_or(0) > 0,
                "a file without frames: {what}"
            );
            let bytes = read_stored(&data, &f.object_key).await;
            assert_eq!(f.size_bytes, Some(bytes.len() as i64), "{what}");
            let samples = recording_fmp4::read_samples(&bytes).expect("it plays");
            assert_eq!(Some(samples.len() as i64), f.frame_count, "{what}");
            assert_eq!(check_file(&bytes).decoded, samples.len(), "{what}");
            recorded += samples.len();
        }
        assert!(
            recorded <= sent,
            "{recorded} frames recorded of {sent} sent"
        );
        if case == "size" {
            // The full file before the split was finished and stored whole.
            assert_eq!(files[0].state, "complete", "{files:?}");
            assert!(
                recorded + frames_after_open >= sent,
                "only the new file's frames may be lost: {recorded} of {sent}"
            );
        }
        assert!(
            std::fs::read_dir(data.join("spool"))
                .unwrap()
                .next()
                .is_none(),
            "the spool is empty"
        );
        listed_files += files.len();
    }
    assert!(
        listed_files >= 3,
        "the size cases keep their finished files"
    );
}
