//! Decoding hostile bytes never allocates more than the message type's cap:
//! length prefixes that claim huge arrays or strings do not turn into huge
//! allocations. One test in its own binary, so the counting allocator sees
//! only this thread's work.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use phase_protocol::block::{BlockRequest, BlockResponse};
use phase_protocol::{JobRequest, JobResponse, JobSpec, Message, SignedReceipt};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes allocated (above what was live before) while running `f`.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst) - base
}

fn cbor_text(s: &str) -> Vec<u8> {
    let mut v = vec![0x60 | s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// `{key: <header>}` followed by a few bytes, where `header` claims a huge
/// array, map, byte string or text string.
fn hostile(key: &str, header: &[u8]) -> Vec<u8> {
    let mut v = vec![0xa1];
    v.extend(cbor_text(key));
    v.extend_from_slice(header);
    v.extend_from_slice(&[0u8; 64]);
    v
}

/// A decoder under test: its name, its cap, and a call of it.
type Check = (&'static str, usize, fn(&[u8]));

#[test]
fn hostile_length_prefixes_do_not_allocate_beyond_the_cap() {
    let headers: [&[u8]; 6] = [
        &[0x9a, 0xff, 0xff, 0xff, 0xff], // array of 2^32
        &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // array of 2^64
        &[0xba, 0xff, 0xff, 0xff, 0xff], // map of 2^32
        &[0x5b, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff], // bytes of ~2^40
        &[0x7b, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff], // text of ~2^40
        &[0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81], // deep nesting
    ];
    let keys = [
        "submit", "want", "blocks", "args", "receipt", "deliver", "env",
    ];
    for header in headers {
        for key in keys {
            let bytes = hostile(key, header);
            let checks: [Check; 6] = [
                ("JobRequest", JobRequest::MAX, |b| {
                    drop(JobRequest::decode(b))
                }),
                ("JobResponse", JobResponse::MAX, |b| {
                    drop(JobResponse::decode(b))
                }),
                ("JobSpec", JobSpec::MAX, |b| drop(JobSpec::decode(b))),
                ("BlockRequest", BlockRequest::MAX, |b| {
                    drop(BlockRequest::decode(b))
                }),
                ("BlockResponse", BlockResponse::MAX, |b| {
                    drop(BlockResponse::decode(b))
                }),
                ("SignedReceipt", 64 * 1024, |b| {
                    drop(SignedReceipt::from_cbor(b))
                }),
            ];
            for (name, cap, check) in checks {
                let peak = peak_during(|| check(&bytes));
                assert!(
                    peak <= cap,
                    "{name} with {key}: {header:02x?} allocated {peak} bytes (cap {cap})"
                );
            }
        }
    }
}
