//! Tries to reach host files and the host environment. Prints one line per
//! attempt and exits 0 only if every attempt was refused.
use std::fs;

fn main() {
    let attempts = [
        "/etc/passwd",
        "../../../../etc/passwd",
        "/input/../../../../etc/passwd",
        "/input/../etc/passwd",
        "/output/../../etc/passwd",
        // The tests put a symlink to the host's /etc here.
        "/input/escape-link/passwd",
        "/proc/self/environ",
    ];
    let mut escaped = false;
    for path in attempts {
        match fs::read(path) {
            Ok(bytes) => {
                escaped = true;
                println!("{path}: READ {} bytes", bytes.len());
            }
            Err(e) => println!("{path}: denied ({e})"),
        }
    }
    match fs::read_dir("/") {
        Ok(entries) => {
            let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
            if names.is_empty() {
                println!("/: denied (empty)");
            } else {
                escaped = true;
                println!("/: LISTED {names:?}");
            }
        }
        Err(e) => println!("/: denied ({e})"),
    }
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    println!("env: {vars:?}");
    std::process::exit(i32::from(escaped));
}
