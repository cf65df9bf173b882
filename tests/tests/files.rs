//! Files both ways between the technician library and the real streamer agent on a virtual X
//! display, through a real relay: 50 MB each way at once, the relay restarted in the middle (both
//! transfers cut off), both resumed in a new session from where their data had reached, the
//! received files' SHA-256 equal to the sent ones', each start, stop and end in the audit trail. A
//! file over the team's limit and a team that forbids files are refused and logged, and nothing
//! lands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{ErrorCode, FileOutcome, SessionTarget, Tool, ToolState};
use relay::store::audit::Action;
use system_tests::{audit_details, until, TestRelay, TestStreamer, XDisplay};
use technician::{Account, Command, Direction, Event, Session, Transfer};

const PASSWORD: &str = "correct horse battery staple";
const SIZE: usize = 50 * 1024 * 1024;

/// `n` bytes that no two offsets share a pattern of (a file compresses nowhere, and a shifted
/// resume would change its hash).
fn content(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn sha256(path: &Path) -> [u8; 32] {
    relay_client::files::sha256_file(path).await.unwrap()
}

/// A session with the streamer's device, retried while the streamer is still reconnecting.
async fn session(account: &Account, device_id: &str) -> Session {
    for _ in 0..60 {
        let tech = account.open().await.unwrap();
        match tech
            .connect(SessionTarget::Device {
                device_id: device_id.into(),
            })
            .await
        {
            Ok(s) => return s,
            Err((_, e)) if e.code() == Some(ErrorCode::DeviceOffline) => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err((_, e)) => panic!("connecting: {e}"),
        }
    }
    panic!("the streamer did not come back online");
}

async fn file_state(session: &mut Session) -> ToolState {
    let (state, _) = until(session, Duration::from_secs(10), |e| match e {
        Event::Tools(tools) => tools
            .iter()
            .find(|g| g.tool == Tool::FileTransfer)
            .map(|g| g.state),
        _ => None,
    })
    .await;
    state.expect("SessionTools with file transfer")
}

fn progress_of(e: &Event, want: u32) -> Option<(u64, u64)> {
    match e {
        Event::Transfer(Transfer::Progress {
            id,
            done,
            resumed_from,
            ..
        }) if *id == want => Some((*done, *resumed_from)),
        _ => None,
    }
}

struct World {
    dir: tempfile::TempDir,
    relay: TestRelay,
    team_id: String,
    streamer: TestStreamer,
    account: Account,
    _display: XDisplay,
}

async fn world(tweak: impl FnOnce(&mut relay::store::TeamSettings)) -> World {
    let dir = tempfile::tempdir().unwrap();
    let display = XDisplay::start(640, 480);
    let relay = TestRelay::start(&dir.path().join("relay"), 0).await;
    let team_id = relay.acme(PASSWORD, false, false).await.team.id;
    let mut settings = relay.store.team_settings(&team_id).await.unwrap().unwrap();
    tweak(&mut settings);
    relay
        .store
        .set_team_settings(&team_id, &settings)
        .await
        .unwrap();
    let streamer = TestStreamer::start(&relay, &team_id, &display.name, dir.path(), 5).await;
    let connector = relay_client::Connector::trusting_ca_file(&relay.ca()).unwrap();
    let account = Account::sign_in(connector, &relay.addr, "owner@acme.example", PASSWORD)
        .await
        .unwrap();
    World {
        dir,
        relay,
        team_id,
        streamer,
        account,
        _display: display,
    }
}

/// The streamer's Downloads folder ([`TestStreamer`] keeps it in the test's folder).
fn downloads(dir: &Path) -> PathBuf {
    dir.join("Downloads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_each_way_survive_a_relay_restart_and_resume_with_equal_hashes() {
    let mut w = world(|_| {}).await;
    let here = w.dir.path().join("technician");
    let there = w.dir.path().join("remote computer");
    std::fs::create_dir_all(&here).unwrap();
    std::fs::create_dir_all(&there).unwrap();
    let upload = here.join("installer.bin");
    let remote_file = there.join("memory.dmp");
    std::fs::write(&upload, content(SIZE, 1)).unwrap();
    std::fs::write(&remote_file, content(SIZE, 2)).unwrap();
    let received = here.join("received");
    let remote_path = remote_file.display().to_string();
    let start = |session: &Session, up: u32, down: u32| {
        let commands = session.commands.clone();
        let (upload, remote_path, received) =
            (upload.clone(), remote_path.clone(), received.clone());
        async move {
            commands
                .send(Command::SendFile {
                    transfer_id: up,
                    path: upload,
                })
                .await
                .unwrap();
            commands
                .send(Command::GetFile {
                    transfer_id: down,
                    remote_path,
                    into: Some(received),
                })
                .await
                .unwrap();
        }
    };

    // Both transfers start; once each has 5 MB across, the relay goes down.
    let mut s = session(&w.account, &w.streamer.device_id).await;
    assert_eq!(file_state(&mut s).await, ToolState::Allowed);
    start(&s, 1, 2).await;
    let (mut up_done, mut down_done) = (0, 0);
    while up_done < 5_000_000 || down_done < 5_000_000 {
        let (p, _) = until(&mut s, Duration::from_secs(30), |e| {
            progress_of(e, 1)
                .map(|p| (1, p))
                .or_else(|| progress_of(e, 2).map(|p| (2, p)))
        })
        .await;
        match p.expect("progress within 30 s") {
            (1, (done, _)) => up_done = done,
            (_, (done, _)) => down_done = done,
        }
    }
    let port = w.relay.port();
    w.relay.stop().await;
    let (ended, _) = until(&mut s, Duration::from_secs(15), |e| {
        matches!(e, Event::Ended { .. } | Event::Lost { .. }).then_some(())
    })
    .await;
    assert!(ended.is_some(), "the session did not end with the relay");
    drop(s);
    w.relay = TestRelay::start(&w.dir.path().join("relay"), port).await;

    // A new session: both resume from what had arrived, and end verified.
    let mut s = session(&w.account, &w.streamer.device_id).await;
    start(&s, 3, 4).await;
    let (mut resumed, mut verified) = (Vec::new(), Vec::new());
    while verified.len() < 2 {
        let (t, _) = until(&mut s, Duration::from_secs(60), |e| match e {
            Event::Transfer(t) => Some(t.clone()),
            _ => None,
        })
        .await;
        let t = t.expect("transfer events within 60 s");
        match t.clone() {
            Transfer::Progress {
                id,
                done,
                resumed_from,
                ..
            } if done == resumed_from => resumed.push((id, resumed_from)),
            Transfer::Progress { .. } => {}
            Transfer::Verified {
                id,
                direction,
                path,
                ..
            } => verified.push((id, direction, path)),
            Transfer::Stopped { .. } | Transfer::Offered { .. } => {
                panic!("a transfer stopped, or one nobody asked for was offered: {t:?}")
            }
        }
    }
    resumed.sort();
    assert_eq!(resumed.len(), 2, "{resumed:?}");
    for (id, from) in &resumed {
        assert!(
            *from > 0 && *from < SIZE as u64,
            "transfer {id} resumed at byte {from}, not in the middle"
        );
    }
    let saved_here = verified
        .iter()
        .find_map(|(id, d, p)| (*id == 4 && *d == Direction::Receiving).then(|| p.clone()))
        .flatten()
        .expect("the fetched file's path");
    assert_eq!(saved_here, received.join("memory.dmp"));
    assert_eq!(sha256(&saved_here).await, sha256(&remote_file).await);
    let saved_there = downloads(w.dir.path()).join("installer.bin");
    assert_eq!(sha256(&saved_there).await, sha256(&upload).await);
    // Nothing else is left in either folder: no partial file, no second copy.
    assert_eq!(std::fs::read_dir(&received).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_dir(downloads(w.dir.path())).unwrap().count(),
        1
    );

    // The audit trail: each start (two of them resumed), the two cut off, the two verified.
    let started = audit_details(&w.relay, &w.team_id, Action::TransferStarted).await;
    assert_eq!(started.len(), 4, "{started:?}");
    for (_, from) in &resumed {
        assert!(
            started
                .iter()
                .any(|d| d.contains(&format!("from byte {from}, offered sha256 "))),
            "{started:?}"
        );
    }
    let stopped = audit_details(&w.relay, &w.team_id, Action::TransferStopped).await;
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    assert!(
        stopped.iter().all(|d| d.contains("interrupted, at byte")),
        "{stopped:?}"
    );
    let hex = |h: [u8; 32]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut completed = vec![
        format!(
            "remote computer → technician, memory.dmp, {SIZE} bytes, sha256 {}",
            hex(sha256(&remote_file).await)
        ),
        format!(
            "technician → remote computer, installer.bin, {SIZE} bytes, sha256 {}",
            hex(sha256(&upload).await)
        ),
    ];
    completed.sort();
    assert_eq!(
        audit_details(&w.relay, &w.team_id, Action::TransferCompleted).await,
        completed
    );
    s.commands.send(Command::Leave).await.unwrap();
    w.streamer.stop().await;
    w.relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_limit_and_a_forbidding_team_are_refused_logged_and_nothing_lands() {
    let w = world(|s| s.max_file_mb = 1).await;
    let big = w.dir.path().join("two-megabytes.bin");
    std::fs::write(&big, content(2_000_000, 3)).unwrap();
    let mut s = session(&w.account, &w.streamer.device_id).await;
    assert_eq!(file_state(&mut s).await, ToolState::Allowed);
    s.commands
        .send(Command::SendFile {
            transfer_id: 1,
            path: big.clone(),
        })
        .await
        .unwrap();
    // The offer's stop, then the relay's refusal that caused it.
    let (stopped, _) = until(&mut s, Duration::from_secs(10), |e| match e {
        Event::Transfer(Transfer::Stopped { id: 1, outcome, .. }) => Some(*outcome),
        _ => None,
    })
    .await;
    assert_eq!(stopped, Some(FileOutcome::TooLarge));
    let (refused, _) = until(&mut s, Duration::from_secs(5), |e| match e {
        Event::ToolRefused { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    })
    .await;
    let (code, message) = refused.expect("ToolRefused");
    assert_eq!(code, ErrorCode::FileTooLarge);
    assert!(message.contains("limit is 1 MB"), "{message}");
    s.commands.send(Command::Leave).await.unwrap();
    until(&mut s, Duration::from_secs(10), |e| {
        matches!(e, Event::Ended { .. }).then_some(())
    })
    .await;

    // The team forbids files: the next session says so, and a request is refused too.
    let mut settings = w
        .relay
        .store
        .team_settings(&w.team_id)
        .await
        .unwrap()
        .unwrap();
    settings.allow_file_transfer = false;
    w.relay
        .store
        .set_team_settings(&w.team_id, &settings)
        .await
        .unwrap();
    let mut s = session(&w.account, &w.streamer.device_id).await;
    assert_eq!(file_state(&mut s).await, ToolState::Forbidden);
    s.commands
        .send(Command::GetFile {
            transfer_id: 2,
            remote_path: big.display().to_string(),
            into: Some(w.dir.path().join("fetched")),
        })
        .await
        .unwrap();
    let (code, _) = until(&mut s, Duration::from_secs(10), |e| match e {
        Event::ToolRefused { tool, code, .. } => Some((*tool, *code)),
        _ => None,
    })
    .await;
    assert_eq!(code, Some((Tool::FileTransfer, ErrorCode::ToolForbidden)));
    assert!(
        !downloads(w.dir.path()).exists()
            || std::fs::read_dir(downloads(w.dir.path()))
                .unwrap()
                .next()
                .is_none(),
        "nothing lands in Downloads"
    );
    assert!(!w.dir.path().join("fetched").exists());
    assert_eq!(
        audit_details(&w.relay, &w.team_id, Action::TransferRefused).await,
        [
            format!(
                "remote computer → technician, {}, TOOL_FORBIDDEN",
                big.display()
            ),
            "technician → remote computer, two-megabytes.bin, 2000000 bytes, FILE_TOO_LARGE"
                .to_owned(),
        ]
    );
    assert!(audit_details(&w.relay, &w.team_id, Action::TransferStarted)
        .await
        .is_empty());
    s.commands.send(Command::Leave).await.unwrap();
    w.streamer.stop().await;
    w.relay.stop().await;
}

/// Security review finding 1: a technician (any member) asking the real streamer for its own
/// device credential, by its path or through a link planted elsewhere, gets a refusal and no
/// bytes; each request is in the audit trail with its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamer_never_sends_its_own_credential() {
    let w = world(|_| {}).await;
    let credential = w.dir.path().join("device.credential");
    assert!(credential.exists(), "the streamer registered");
    let planted = w.dir.path().join("remote computer");
    std::fs::create_dir_all(&planted).unwrap();
    std::os::unix::fs::symlink(&credential, planted.join("notes.txt")).unwrap();
    let received = w.dir.path().join("technician");
    let mut s = session(&w.account, &w.streamer.device_id).await;
    assert_eq!(file_state(&mut s).await, ToolState::Allowed);
    for (id, path) in [(1, credential.clone()), (2, planted.join("notes.txt"))] {
        s.commands
            .send(Command::GetFile {
                transfer_id: id,
                remote_path: path.display().to_string(),
                into: Some(received.clone()),
            })
            .await
            .unwrap();
        let (stopped, _) = until(&mut s, Duration::from_secs(20), |e| match e {
            Event::Transfer(Transfer::Stopped {
                id: i,
                outcome,
                message,
                ..
            }) if *i == id => Some((*outcome, message.clone())),
            Event::Transfer(Transfer::Verified { id: i, .. }) if *i == id => {
                panic!("the credential was sent")
            }
            _ => None,
        })
        .await;
        let (outcome, message) = stopped.expect("a refusal within 20 s");
        assert_eq!(outcome, FileOutcome::Failed);
        assert!(message.contains("never sent"), "{message}");
    }
    assert!(
        !received.exists() || std::fs::read_dir(&received).unwrap().count() == 0,
        "nothing landed"
    );
    let requested = audit_details(&w.relay, &w.team_id, Action::FileRequested).await;
    assert_eq!(requested.len(), 2, "{requested:?}");
    assert!(
        requested.iter().any(|d| d.ends_with("device.credential")),
        "{requested:?}"
    );
}
