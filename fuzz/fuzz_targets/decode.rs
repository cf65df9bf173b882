//! Fuzz target: no byte sequence makes the frame decoders panic, and whatever decodes is canonical,
//! but for the one earlier layout that is read and never written (docs/PROTOCOL.md section 5).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocol::{Message, ViewRequest};

/// The size of the view at the end of `SessionRequest` and `SessionOffer`: a `u16` and a `u32`.
const VIEW_LEN: usize = 6;

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    if let Ok(msg) = protocol::decode_frame(frame.clone()) {
        let again = protocol::encode_to_bytes(&msg).expect("a decoded message encodes");
        if again != frame {
            // A request or an offer in the layout before the view was added is read as the
            // default view and written with it: the same body, the view's bytes more.
            let default_view = matches!(
                &msg,
                Message::SessionRequest { view, .. } | Message::SessionOffer { view, .. }
                    if *view == ViewRequest::default()
            );
            assert!(
                default_view
                    && again.len() == frame.len() + VIEW_LEN
                    && again[0] == frame[0]
                    && again[5..frame.len()] == frame[5..],
                "the encoding is canonical"
            );
        }
    }
    let mut stream = protocol::FrameDecoder::new();
    for chunk in data.chunks(7) {
        stream.feed(chunk);
        loop {
            match stream.next_message() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
