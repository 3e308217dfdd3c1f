//! A guest cannot put more on the volunteer's disk than `/output` may hold,
//! whatever names, depths or counts it uses (`output-flood.wasm`): folders
//! nested past the host's path limit with a file written forever at the
//! bottom, 150,000 empty files, 200,000 empty folders. Each run ends
//! `output_limit` with at most `max_output` plus one tick of writing in
//! bytes, and at most the entry cap plus one tick in entries; locally and
//! as network jobs.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{Daemon, phase_in};

/// What `/output` may hold in entries (`executor::MAX_OUTPUT_ENTRIES`).
const MAX_ENTRIES: u64 = 100_000;
/// The job's `max_output`.
const MAX_OUTPUT: u64 = 1 << 20;
/// What one 10 ms tick of writing may add: generous for a loaded machine.
const TICK_BYTES: u64 = 64 << 20;
const TICK_ENTRIES: u64 = 20_000;

fn flood() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-examples/out/output-flood.wasm")
}

/// Bytes (apparent sizes) and entries under `dir`, measured with `du` and
/// `find`, which walk by descriptor and so see past the path limit.
fn on_disk(dir: &Path) -> (u64, u64) {
    let du = Command::new("du")
        .args(["-s", "-B1", "--apparent-size"])
        .arg(dir)
        .output()
        .unwrap();
    let bytes = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let find = Command::new("find")
        .arg(dir)
        .args(["-mindepth", "1"])
        .output()
        .unwrap();
    let entries = String::from_utf8_lossy(&find.stdout).lines().count() as u64;
    (bytes, entries)
}

#[test]
fn floods_of_bytes_files_and_folders_end_at_the_output_cap_locally() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["deep", "files", "dirs"] {
        let out = dir.path().join(mode);
        let run = phase_in(
            &dir.path().join("data"),
            &[
                "run",
                "--max-output",
                "1MiB",
                "--timeout",
                "300s",
                "--output",
                out.to_str().unwrap(),
                flood().to_str().unwrap(),
                "--",
                mode,
            ],
            b"",
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(138), "{mode}: {stderr}");
        assert!(
            stderr.contains("output limit of 1 MiB reached"),
            "{mode}: {stderr}"
        );
        let (bytes, entries) = on_disk(&out);
        assert!(
            bytes <= MAX_OUTPUT + TICK_BYTES,
            "{mode}: {bytes} bytes on disk"
        );
        assert!(
            entries <= MAX_ENTRIES + TICK_ENTRIES,
            "{mode}: {entries} entries on disk"
        );
        eprintln!("{mode}: stopped at {bytes} bytes, {entries} entries");
    }
}

#[test]
fn floods_end_at_the_output_cap_as_network_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, requester) = Daemon::worker_and_requester(dir.path());
    for mode in ["deep", "files", "dirs"] {
        let job = dir.path().join(format!("{mode}.job.json"));
        std::fs::write(
            &job,
            serde_json::json!({
                "module": {"path": flood()},
                "args": [mode],
                "limits": {"fuel": 1_000_000_000_000u64, "memory": "64MiB", "timeout": "300s", "max_output": "1MiB"},
            })
            .to_string(),
        )
        .unwrap();
        let out = requester.cli(&["submit", job.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(138), "{mode}: {stderr}");
        assert!(stderr.contains("output limit"), "{mode}: {stderr}");
    }
    // The worker is unharmed and its job folders are gone.
    assert!(worker.cli(&["id"]).status.success());
    let (bytes, _) = on_disk(&worker.dir.join("work"));
    assert!(
        bytes < MAX_OUTPUT + TICK_BYTES,
        "{bytes} bytes left in work/"
    );
}
