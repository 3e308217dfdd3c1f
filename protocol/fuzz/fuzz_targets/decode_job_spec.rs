#![no_main]
//! Decoding arbitrary bytes as a `JobSpec` never panics; what decodes re-encodes
//! to the same bytes (decoding only accepts canonical input).
use libfuzzer_sys::fuzz_target;
use phase_protocol::{JobSpec, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = JobSpec::decode(data) {
        assert_eq!(msg.encode(), data);
    }
});
