#![no_main]
//! Decoding arbitrary bytes as a Bitswap message (what any peer on
//! `/ipfs/bitswap/1.2.0` sends) never panics, and what decodes re-encodes to
//! a message that decodes to the same value.
use libfuzzer_sys::fuzz_target;
use phase_protocol::bitswap::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        let again = Message::decode(&msg.encode()).expect("an encoded message decodes");
        assert_eq!(again.encode(), msg.encode());
    }
});
