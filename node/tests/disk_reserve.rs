//! Disk space is a budget: a node whose disk is below its free-space
//! reserve (`[store] reserve`; here one larger than any disk) refuses new
//! jobs, uploads and fetches with one clear line, and keeps answering.

use std::io::{Read, Write};
use std::path::Path;

mod common;

use common::{Daemon, random_file};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn below_its_reserve_a_node_refuses_jobs_uploads_and_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("full.toml");
    std::fs::write(&config, "[store]\nreserve = \"1000TiB\"\n").unwrap();
    let full = Daemon::start(
        &dir.path().join("full"),
        &["--config", config.to_str().unwrap()],
        None,
    );
    let other = Daemon::start(
        &dir.path().join("other"),
        &["--bootstrap", &full.addr],
        None,
    );

    // A job: refused with the reason, and the requester says so.
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.job.json");
    let out = other.cli(&[
        "submit",
        "--worker",
        full.peer_id(),
        hello.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("worker is low on disk"), "{stderr}");
    assert!(stderr.contains("below its reserve of 1000 TiB"), "{stderr}");

    // An upload to its API.
    let mut upload = std::os::unix::net::UnixStream::connect(full.socket()).unwrap();
    upload
        .write_all(b"POST /api/v1/add HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
        .unwrap();
    let mut answer = String::new();
    upload.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("below the reserve of 1000 TiB"), "{answer}");

    // A fetch of content from a peer.
    let file = dir.path().join("file");
    random_file(&file, 100_000);
    let out = other.cli(&["add", file.to_str().unwrap()]);
    let cid = text(&out.stdout).trim().to_owned();
    let out = full.cli(&["get", &cid, "-o", dir.path().join("got").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("below the reserve"),
        "{}",
        text(&out.stderr)
    );

    // It still answers.
    assert!(full.cli(&["id"]).status.success());
}

/// A tmpfs of `size` mounted at `dir` for the test's life (root only: CI
/// runs as root; elsewhere `None`, and the test says it is skipped).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }

    fn free(&self) -> u64 {
        let vfs = rustix::fs::statvfs(&self.0).unwrap();
        vfs.f_bavail * vfs.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_worker_whose_disk_fills_during_a_job_still_signs_its_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "64m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "[store]\nreserve = \"1MiB\"\n").unwrap();
    let worker = Daemon::start(
        &disk.0.join("w"),
        &["--config", config.to_str().unwrap()],
        None,
    );
    let requester = Daemon::start(
        &dir.path().join("r"),
        &["--no-worker", "--bootstrap", &worker.addr],
        None,
    );
    // The worker keeps its ballast: wait (bounded) until it is made.
    let ballast = disk.0.join("w/store/ballast");
    let until = std::time::Instant::now() + common::DEADLINE;
    while !ballast.exists() {
        assert!(std::time::Instant::now() < until, "no ballast made");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Another program fills the disk to 4 MiB above what the job needs to
    // be admitted; the job then prints 10 MiB, more than is left.
    let filler = disk.0.join("filler");
    let fill = disk.free() - (4 << 20);
    let f = std::fs::File::create(&filler).unwrap();
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, fill).unwrap();
    drop(f);

    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 2)
          ;; one iovec at 0: 65536 bytes from 65536
          (data (i32.const 0) "\00\00\01\00\00\00\01\00")
          (func (export "_start") (local $i i32)
            (loop $l
              ;; every write differs: nothing dedups in the store
              (i32.store (i32.const 65536) (local.get $i))
              (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (i32.const 160))))))"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("print.wasm"), wasm).unwrap();
    let job = dir.path().join("print.job.json");
    std::fs::write(
        &job,
        r#"{"module": {"path": "print.wasm"}, "limits": {"max_output": "16MiB"}}"#,
    )
    .unwrap();
    let result = dir.path().join("result");
    let out = requester.cli(&[
        "submit",
        job.to_str().unwrap(),
        "-o",
        result.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let note = std::fs::read_to_string(result.join("output-cut")).unwrap();
    assert!(
        note.contains("stdout and stderr were not kept either"),
        "{note}"
    );
    // The receipt is signed and kept, and the worker still answers.
    let listed = requester.cli(&["jobs", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["jobs"][0]["state"], "done", "{listed}");
    let id = listed["jobs"][0]["job"].as_str().unwrap();
    let out = requester.cli(&["receipt", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid"), "{}", text(&out.stdout));
    let out = worker.cli(&["id"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(worker);
    drop(requester);
}
