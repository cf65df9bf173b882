//! Fuzz target: no byte sequence makes the frame decoders panic, and whatever decodes is canonical.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    if let Ok(msg) = protocol::decode_frame(frame.clone()) {
        let again = protocol::encode_to_bytes(&msg).expect("a decoded message encodes");
        assert_eq!(again, frame, "the encoding is canonical");
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
