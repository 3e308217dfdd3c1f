#![no_main]
//! Decoding arbitrary bytes as a signed receipt never panics, and anything
//! that decodes has a valid signature.
use libfuzzer_sys::fuzz_target;
use phase_protocol::SignedReceipt;

fuzz_target!(|data: &[u8]| {
    if let Ok(receipt) = SignedReceipt::from_cbor(data) {
        assert!(receipt.verify().is_ok());
        assert_eq!(receipt.to_cbor(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(receipt) = SignedReceipt::from_json(text) {
            assert!(receipt.verify().is_ok());
        }
    }
});
