//! A compile bomb (a module small to send, slow and hungry to compile) is
//! refused within the worker's compile budget, compiled in a child process
//! so the worker's own memory stays small, while the worker serves other
//! jobs.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{Daemon, finish};

/// `functions` functions, each nesting `block (br_if) loop` `levels` deep
/// (twice as many blocks): small to send, within the structural bounds,
/// and seconds and hundreds of MB to compile with fuel and epochs.
fn bomb(functions: usize, levels: usize) -> Vec<u8> {
    let mut wat = String::from(
        "(module (import \"wasi_snapshot_preview1\" \"proc_exit\" (func (param i32)))
          (memory (export \"memory\") 1)
          (func (export \"_start\"))",
    );
    for _ in 0..functions {
        wat.push_str("(func (local i32)");
        for _ in 0..levels {
            wat.push_str(" (block (br_if 0 (local.get 0)) (loop");
        }
        for _ in 0..levels {
            wat.push_str("))");
        }
        wat.push(')');
    }
    wat.push(')');
    wat::parse_str(wat).unwrap()
}

/// The daemon's peak resident memory, from /proc.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib >> 10
}

#[test]
fn a_compile_bomb_is_refused_within_the_budget_and_the_worker_serves_others() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("worker.toml");
    std::fs::write(
        &config,
        "[worker]\nmax_compile_time = \"3s\"\nmax_compile_memory = \"512MiB\"\n",
    )
    .unwrap();
    let worker = Daemon::start(
        &dir.path().join("w"),
        &["--slots", "2", "--config", config.to_str().unwrap()],
        None,
    );
    let requester = Daemon::start(
        &dir.path().join("r"),
        &["--no-worker", "--bootstrap", &worker.addr],
        None,
    );
    assert!(requester.cli(&["peers", "--wait", "1"]).status.success());

    // Below wasmparser's structural bounds: only the budget stops it.
    std::fs::write(dir.path().join("bomb.wasm"), bomb(8, 4_000)).unwrap();
    let job = dir.path().join("bomb.job.json");
    std::fs::write(
        &job,
        r#"{"module": {"path": "bomb.wasm"},
            "limits": {"fuel": 1000000, "memory": "16MiB", "timeout": "1s", "max_output": "1MiB"}}"#,
    )
    .unwrap();
    let started = Instant::now();
    let bomb_submit = requester.spawn_cli(&["submit", job.to_str().unwrap()]);

    // Meanwhile, an honest job on the same worker.
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.job.json");
    let out = requester.cli(&["submit", "--json", hello.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["results"][0]["status"], "exited with code 0");

    let out = finish(bomb_submit);
    let elapsed = started.elapsed();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("module too complex"), "{stderr}");
    assert!(stderr.contains("3s"), "names the budget: {stderr}");
    // The budget plus the time to ask again elsewhere and give up; the bomb
    // itself would compile for tens of seconds.
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    let peak = peak_rss_mib(worker.child.id());
    assert!(peak < 256, "the worker's own peak RSS was {peak} MiB");
}
