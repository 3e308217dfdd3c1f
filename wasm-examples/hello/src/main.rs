//! The seed example: reverses stdin. `Hello, World` -> `dlroW ,olleH`.

use std::io::{Read, Write};

fn main() {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("hello: cannot read stdin: {e}");
        std::process::exit(1);
    }
    let reversed: String = input.trim_end_matches(['\n', '\r']).chars().rev().collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{reversed}");
}
