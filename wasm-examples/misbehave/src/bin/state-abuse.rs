//! Misuses the `phase` state calls, one way per first argument, after
//! setting `written` = `yes`: `trap` (then traps), `exit3` (then exits 3),
//! `bad-pointer` (asks to read a key from outside its memory), `big-value`
//! (sets a 2 MiB value and prints what state_set returned), `long-key`
//! (sets a 1,025-byte key, likewise), `ok` (exits 0).

#[link(wasm_import_module = "phase")]
unsafe extern "C" {
    fn state_get(key_ptr: *const u8, key_len: usize, val_ptr: *mut u8, val_cap: usize) -> i64;
    fn state_set(key_ptr: *const u8, key_len: usize, val_ptr: *const u8, val_len: usize) -> i32;
}

fn set(key: &[u8], value: &[u8]) -> i32 {
    // SAFETY: live buffers of this module.
    unsafe { state_set(key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
}

fn main() {
    assert_eq!(set(b"written", b"yes"), 0);
    let how = std::env::args().nth(1).unwrap_or_default();
    match how.as_str() {
        "trap" => std::process::abort(),
        "exit3" => std::process::exit(3),
        "bad-pointer" => {
            let mut buf = [0u8; 8];
            // SAFETY: the host checks the pointer; this one is past any memory.
            let r = unsafe { state_get(0xFFFF_FF00usize as *const u8, 64, buf.as_mut_ptr(), 8) };
            println!("state_get returned {r}");
        }
        "big-value" => println!("state_set returned {}", set(b"big", &vec![1u8; 2 << 20])),
        "long-key" => println!("state_set returned {}", set(&[b'k'; 1025], b"v")),
        _ => {}
    }
}
