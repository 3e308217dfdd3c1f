//! Benchmark guest for the `phase` host calls (scripts/bench-state.sh):
//! `get N` sets one 32-byte value, then reads it N times; `set N` sets N
//! keys of 32-byte values; `loop N` does the same loop with no host call
//! (the baseline). Exits 0, so what it set is kept.

#[link(wasm_import_module = "phase")]
unsafe extern "C" {
    fn state_get(key_ptr: *const u8, key_len: usize, val_ptr: *mut u8, val_cap: usize) -> i64;
    fn state_set(key_ptr: *const u8, key_len: usize, val_ptr: *const u8, val_len: usize) -> i32;
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let value = [7u8; 32];
    let mut buf = [0u8; 32];
    let mut sum = 0i64;
    match what.as_str() {
        "get" => {
            let key = b"bench";
            // SAFETY: live buffers of this module.
            unsafe {
                assert_eq!(state_set(key.as_ptr(), key.len(), value.as_ptr(), value.len()), 0);
                for _ in 0..n {
                    sum += state_get(key.as_ptr(), key.len(), buf.as_mut_ptr(), buf.len());
                }
            }
        }
        "set" => {
            for i in 0..n {
                let key = format!("key-{i}");
                // SAFETY: as above.
                let r = unsafe { state_set(key.as_ptr(), key.len(), value.as_ptr(), value.len()) };
                sum += i64::from(r);
            }
        }
        "loop" => {
            for i in 0..n {
                sum += std::hint::black_box(i64::from(i) & 1);
                buf[i as usize % 32] ^= std::hint::black_box(1);
            }
        }
        other => {
            eprintln!("state-bench: `{other}` is not get, set or loop");
            std::process::exit(2);
        }
    }
    std::hint::black_box((sum, buf));
}
