//! Prints without end: must end at the output limit.
use std::io::Write;

fn main() {
    let mut out = std::io::stdout().lock();
    loop {
        if out.write_all(b"all work and no play makes jack a dull boy\n").is_err() {
            std::process::exit(3);
        }
    }
}
