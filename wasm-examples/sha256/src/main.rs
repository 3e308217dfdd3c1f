//! Prints the sha256 of stdin like `sha256sum -`.

use std::io::Read;

use sha2::{Digest, Sha256};

fn main() {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) => {
                eprintln!("sha256: cannot read stdin: {e}");
                std::process::exit(1);
            }
        }
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!("{hex}  -");
}
