#![no_main]
//! Parsing arbitrary text as job.json never panics.
use libfuzzer_sys::fuzz_target;
use phase_protocol::jobfile::JobFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = JobFile::parse(text);
    }
});
