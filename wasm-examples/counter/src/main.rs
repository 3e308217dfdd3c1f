//! Counts runs in its guest state: reads the decimal number under the key
//! `count` (0 if absent), stores it plus one, logs `count=N` and prints N.
//! Run it with `phase-node run --state ROOT counter.wasm`, or as a job whose
//! `state` is the previous run's `state_after`.

#[link(wasm_import_module = "phase")]
unsafe extern "C" {
    fn state_get(key_ptr: *const u8, key_len: usize, val_ptr: *mut u8, val_cap: usize) -> i64;
    fn state_set(key_ptr: *const u8, key_len: usize, val_ptr: *const u8, val_len: usize) -> i32;
    fn emit_log(ptr: *const u8, len: usize) -> i32;
}

const KEY: &[u8] = b"count";

fn main() {
    let mut buf = [0u8; 20];
    // SAFETY: the pointers and lengths are of live buffers of this module.
    let len = unsafe { state_get(KEY.as_ptr(), KEY.len(), buf.as_mut_ptr(), buf.len()) };
    let count: u64 = match usize::try_from(len) {
        Ok(n) if n <= buf.len() => std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("counter: `count` is not a decimal number");
                std::process::exit(2)
            }),
        Ok(_) => {
            eprintln!("counter: `count` is longer than a number");
            std::process::exit(2)
        }
        Err(_) => 0,
    };
    let next = (count + 1).to_string();
    let log = format!("count={next}");
    // SAFETY: as above.
    let (set, logged) = unsafe {
        (
            state_set(KEY.as_ptr(), KEY.len(), next.as_ptr(), next.len()),
            emit_log(log.as_ptr(), log.len()),
        )
    };
    if set != 0 || logged != 0 {
        eprintln!("counter: the host refused to store the count");
        std::process::exit(1);
    }
    println!("{next}");
}
