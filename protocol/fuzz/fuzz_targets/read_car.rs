#![no_main]
//! Reading arbitrary bytes as a CAR v1 (`phase-node car import` of a file a
//! stranger sent) never panics and never allocates past the caps: every
//! section is at most `MAX_SECTION` bytes, however large its length says.
use libfuzzer_sys::fuzz_target;
use phase_protocol::car::{CarReader, MAX_SECTION};

fuzz_target!(|data: &[u8]| {
    let Ok(mut car) = CarReader::new(data) else {
        return;
    };
    while let Ok(Some((_, block))) = car.next_block() {
        assert!(block.len() <= MAX_SECTION);
    }
});
