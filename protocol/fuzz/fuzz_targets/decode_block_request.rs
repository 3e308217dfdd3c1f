#![no_main]
//! Decoding arbitrary bytes as a `BlockRequest` never panics; what decodes re-encodes
//! to the same bytes (decoding only accepts canonical input).
use libfuzzer_sys::fuzz_target;
use phase_protocol::Message;
use phase_protocol::block::BlockRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = BlockRequest::decode(data) {
        assert_eq!(msg.encode(), data);
    }
});
