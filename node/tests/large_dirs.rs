//! Directories as large as Kubo shards them (HAMT), end to end: `add -r`
//! gives the root CIDs Helia's importer gives with Kubo's settings (Node 20,
//! `interop/helia`, installed by the test command), and jobs read such a
//! directory as input and write one to `/output`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Daemon, finish_within, phase_in};

/// A folder `name` under `dir` of `count` files `file-NNNNNN`, each holding
/// its number and a newline (what `manyfiles` writes).
fn numbered_files(dir: &Path, name: &str, count: usize) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir(&folder).unwrap();
    for i in 0..count {
        std::fs::write(folder.join(format!("file-{i:06}")), format!("{i}\n")).unwrap();
    }
    folder
}

/// The root CID Helia's importer gives `folder` (`interop/helia/import.mjs`).
fn helia_import(folder: &Path) -> String {
    let helia = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/helia");
    assert!(
        helia.join("node_modules/ipfs-unixfs-importer").exists(),
        "interop/helia is not installed: run `npm ci` there (scripts/test.sh does)"
    );
    let out = Command::new("node")
        .current_dir(&helia)
        .args(["--import", "./polyfill.mjs", "import.mjs"])
        .arg(folder)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    line["cid"].as_str().unwrap().to_owned()
}

/// `phase-node add -r FOLDER` into `data`: the root CID.
fn add_r(data: &Path, folder: &Path) -> String {
    let out = phase_in(data, &["add", "-r", folder.to_str().unwrap()], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().last().unwrap().to_owned()
}

#[test]
fn directories_of_10_000_and_100_000_entries_get_helias_root_cids() {
    let dir = tempfile::tempdir().unwrap();
    for (name, count) in [("ten-thousand", 10_000), ("hundred-thousand", 100_000)] {
        let folder = numbered_files(dir.path(), name, count);
        let ours = add_r(&dir.path().join("data"), &folder);
        assert_eq!(ours, helia_import(&folder), "{count} entries");
    }
}

/// A job file for `wasm` with `args`, `input` (a CID) and room for a large
/// directory.
fn job(dir: &Path, wasm: &str, args: &[&str], input: Option<&str>) -> PathBuf {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../wasm-examples/out")
        .join(wasm);
    let mut job = serde_json::json!({
        "module": {"path": wasm},
        "args": args,
        "limits": {"fuel": 50_000_000_000u64, "memory": "256MiB", "timeout": "600s", "max_output": "64MiB"},
        "deterministic": true,
        "capabilities": ["wasi-p1"],
    });
    if let Some(input) = input {
        job["input"] = input.into();
    }
    let path = dir.join(format!("{}.json", args.join("-")));
    std::fs::write(&path, job.to_string()).unwrap();
    path
}

#[test]
fn jobs_read_100_000_and_10_000_entry_inputs_and_write_10_000_files_to_output() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, requester) = Daemon::worker_and_requester(dir.path());
    let worker_id = worker.peer_id();
    // Submits, writes the package to `result`; the package's CID. A
    // 100,000-entry input takes minutes in a debug build on two cores.
    let submit = |job: &Path, result: &Path| {
        let args = [
            "submit",
            job.to_str().unwrap(),
            "--worker",
            worker_id,
            "--json",
        ];
        let out = finish_within(requester.spawn_cli(&args), Duration::from_secs(1200));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let package = report["results"][0]["result"].as_str().unwrap().to_owned();
        let out = requester.cli(&["get", &package, "-o", result.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        package
    };
    let add = |folder: &Path| {
        let args = ["add", "-r", folder.to_str().unwrap()];
        let out = finish_within(requester.spawn_cli(&args), Duration::from_secs(600));
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().last().unwrap().to_owned()
    };

    // In: the requester holds sharded inputs; the worker fetches them whole.
    // The guest opens the 100,000 files by name: listing a directory that
    // large is quadratic in wasmtime-wasi 48 (each `fd_readdir` call stats
    // every entry again).
    let input = add(&numbered_files(dir.path(), "big", 100_000));
    let result = dir.path().join("read");
    let job_file = job(
        dir.path(),
        "manyfiles.wasm",
        &["read", "100000"],
        Some(&input),
    );
    submit(&job_file, &result);
    let stdout = std::fs::read_to_string(result.join("stdout")).unwrap();
    assert_eq!(stdout, "read 100000 files\n");
    // A 10,000-entry one is listed and counted.
    let input = add(&numbered_files(dir.path(), "small", 10_000));
    let result = dir.path().join("counted");
    submit(
        &job(dir.path(), "wordcount.wasm", &[], Some(&input)),
        &result,
    );
    let report = std::fs::read_to_string(result.join("output/report.txt")).unwrap();
    assert!(
        report.contains("1 file-009999\n"),
        "the last file is counted"
    );
    assert!(report.ends_with("TOTAL 10000\n"), "{report:.200}");

    // Out: 10,000 files in /output come back in a package whose CID is the
    // one Helia's importer gives the package's files (`output/` sharded).
    let result = dir.path().join("written");
    let package = submit(
        &job(dir.path(), "manyfiles.wasm", &["write", "10000"], None),
        &result,
    );
    let output = result.join("output");
    assert_eq!(std::fs::read_dir(&output).unwrap().count(), 10_000);
    assert_eq!(
        std::fs::read(output.join("file-009999")).unwrap(),
        b"9999\n"
    );
    assert_eq!(package, helia_import(&result));
}
