//! A key-value tool over its guest state, as a component importing
//! `phase:host@0.1.0` (the WIT in the repository's `wit/`). Each argument is
//! one command, run in order:
//!
//! - `KEY=VALUE` sets KEY and logs `set KEY`;
//! - `-KEY` deletes KEY and logs `delete KEY`;
//! - `+KEY` adds one to the decimal number under KEY (0 if absent) and
//!   prints the new number;
//! - `KEY` prints `KEY=VALUE`, or `KEY absent` (and the run exits 1 at the
//!   end, which commits nothing);
//! - `@caller` prints the requester's PeerId bytes in hex.
//!
//! `phase-node run --state ROOT kv-component.wasm name=ada +visits name`

wit_bindgen::generate!({
    path: "../../wit",
    world: "phase:host/guest",
});

use phase::host::{context, log, state};

fn main() {
    let mut missing = false;
    for command in std::env::args().skip(1) {
        if command == "@caller" {
            let id: String = context::caller().iter().map(|b| format!("{b:02x}")).collect();
            println!("{id}");
        } else if let Some((key, value)) = command.split_once('=') {
            if !state::set(key.as_bytes(), value.as_bytes()) {
                fail(&format!("the host refused to set {key}"));
            }
            log::emit(format!("set {key}").as_bytes());
        } else if let Some(key) = command.strip_prefix('-') {
            if state::delete(key.as_bytes()) {
                log::emit(format!("delete {key}").as_bytes());
            }
        } else if let Some(key) = command.strip_prefix('+') {
            let now: u64 = match state::get(key.as_bytes()) {
                None => 0,
                Some(v) => std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| fail(&format!("{key} is not a decimal number"))),
            };
            let next = (now + 1).to_string();
            if !state::set(key.as_bytes(), next.as_bytes()) {
                fail(&format!("the host refused to set {key}"));
            }
            println!("{next}");
        } else {
            match state::get(command.as_bytes()) {
                Some(v) => println!("{command}={}", String::from_utf8_lossy(&v)),
                None => {
                    println!("{command} absent");
                    missing = true;
                }
            }
        }
    }
    if missing {
        std::process::exit(1);
    }
}

fn fail(why: &str) -> ! {
    eprintln!("kv-component: {why}");
    std::process::exit(2)
}
