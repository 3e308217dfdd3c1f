//! Tries each folder a job may be given: reads `/input` (lists it and reads
//! `/input/probe.txt`) and writes `/output/probe.txt`. Prints one line per
//! attempt, `NAME: ok` or `NAME: denied (why)`, and exits 0; the tests
//! compare the lines with what the job's permissions allow.
use std::fs;

fn main() {
    let report = |name: &str, result: std::io::Result<()>| match result {
        Ok(()) => println!("{name}: ok"),
        Err(e) => println!("{name}: denied ({e})"),
    };
    report("list /input", fs::read_dir("/input").map(|_| ()));
    report("read /input/probe.txt", fs::read("/input/probe.txt").map(|_| ()));
    report("write /output/probe.txt", fs::write("/output/probe.txt", b"probed\n"));
}
