//! Fuzz target: the relay's handshake state machine fed arbitrary frames never panics and never
//! establishes a connection without a credential verdict.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocol::{ProductVersion, RelayAction, RelayHandshake};

fuzz_target!(|data: &[u8]| {
    let mut relay = RelayHandshake::new(ProductVersion::new(3, 5, 8, 0));
    // The input is a sequence of frames, each prefixed by a one-byte length.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        match relay.receive_frame(Bytes::copy_from_slice(frame)) {
            RelayAction::Reply(_) => {}
            RelayAction::Verify { .. } => {
                let _ = relay.verdict(Err(protocol::Refusal::new(
                    protocol::ErrorCode::AuthenticationFailed,
                    "fuzz",
                )));
                return;
            }
            RelayAction::Established { .. } => panic!("established without a verdict"),
            RelayAction::Refuse(_) => return,
        }
    }
});
