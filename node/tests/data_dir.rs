//! One owner of a data dir: a second daemon refuses before it touches
//! anything, commands beside each other never clear each other's temp
//! files, and `gc` never removes what a job under way needs.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::mpsc;

mod common;

use common::{DEADLINE, Daemon, counting_job, finish, phase_in};

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Where the file store keeps block `cid` under `data_dir`.
fn block_path(data_dir: &Path, cid: &str) -> PathBuf {
    let shard = &cid[cid.len() - 3..cid.len() - 1];
    data_dir.join("store").join("blocks").join(shard).join(cid)
}

/// A log hook that says when the daemon has a job under way.
fn on_running(tx: mpsc::Sender<()>) -> Option<common::LogHook> {
    Some(Box::new(move |line: &str| {
        if line.contains("job recorded as under way") {
            let _ = tx.send(());
        }
    }))
}

#[test]
fn a_second_start_refuses_in_one_line_and_gc_keeps_a_running_jobs_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, running) = mpsc::channel();
    let worker = Daemon::start(&dir.path().join("w"), &[], on_running(tx));
    let requester = Daemon::start(
        &dir.path().join("r"),
        &["--no-worker", "--bootstrap", &worker.addr],
        None,
    );
    ok(&requester.cli(&["peers", "--wait", "1"]));
    let (module, job) = counting_job(dir.path(), 400_000_000);
    // A module over 16 KiB (a custom section of padding): a block the
    // worker keeps as a file, where this test can see it beside the daemon
    // (smaller blocks are rows of the daemon's database).
    let mut padded = std::fs::read(&module).unwrap();
    let pad = 20_000usize;
    padded.push(0); // a custom section,
    padded.extend([0xa6, 0x9c, 0x01]); // 20,006 bytes long (LEB128),
    padded.extend([5, b'p', b'a', b'd', b'd', b'd']); // named "paddd",
    padded.extend(std::iter::repeat_n(0u8, pad)); // of zeros
    assert_eq!(20_006, 0x26 | (0x1c << 7) | (1 << 14));
    std::fs::write(&module, padded).unwrap();
    let module_cid = ok(&phase_in(
        &dir.path().join("scratch"),
        &["add", module.to_str().unwrap()],
        b"",
    ))
    .trim()
    .to_owned();

    let submit = requester.spawn_cli(&["submit", "--json", job.to_str().unwrap()]);
    running
        .recv_timeout(DEADLINE)
        .expect("the worker runs the job");

    // A second daemon on the worker's data dir.
    let second = worker.cli(&["start", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("in use by another phase-node (daemon, pid"),
        "{stderr}"
    );
    assert!(
        worker.dir.join("work").exists(),
        "its job files are left alone"
    );

    // gc on the worker (through its daemon) while the job runs.
    ok(&worker.cli(&["gc"]));
    assert!(
        block_path(&worker.dir, &module_cid).exists(),
        "the running job's module is held"
    );

    let report: serde_json::Value = serde_json::from_str(&ok(&finish(submit))).unwrap();
    assert_eq!(
        report["results"][0]["status"], "exited with code 0",
        "{report}"
    );
    // The job over, nothing holds its module (it is not pinned) any more.
    ok(&worker.cli(&["gc"]));
    assert!(!block_path(&worker.dir, &module_cid).exists());
}

#[test]
fn add_beside_many_pin_ls_and_cat_keeps_its_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let small = ok(&phase_in(&data, &["add", "-"], b"small"))
        .trim()
        .to_owned();
    // 300 MB (the size of the reported failure) of bytes that do not repeat,
    // so every chunk is a new block.
    let big = dir.path().join("big.bin");
    let mut bytes = Vec::with_capacity(300_000_000);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < 300_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&big, &bytes).unwrap();

    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_phase-node"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let add = run(&["add", big.to_str().unwrap()]);
    let others: Vec<_> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                run(&["pin", "ls"])
            } else {
                run(&["cat", &small])
            }
        })
        .collect();
    for other in others {
        ok(&finish(other));
    }
    let root = ok(&finish(add)).trim().to_owned();
    let out = phase_in(&data, &["cat", &root], b"");
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), bytes.len());
    assert!(out.stdout == bytes, "the file comes back whole");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn add_through_a_daemon_that_dies_meanwhile_fails_instead_of_pinning_quietly() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), &["--no-worker"], None);
    let mut add = std::process::Command::new(env!("CARGO_BIN_EXE_phase-node"))
        .arg("--data-dir")
        .arg(&daemon.dir)
        .args(["add", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = add.stdin.take().unwrap();
    stdin.write_all(b"the first bytes").unwrap();
    // `add` has looked for the daemon once one of its threads waits in
    // read(0, …) for more input (it reads only after that): x86-64's
    // read is syscall 0, and /proc shows each thread's current call.
    let tasks = format!("/proc/{}/task", add.id());
    let started = std::time::Instant::now();
    while !std::fs::read_dir(&tasks).unwrap().flatten().any(|t| {
        std::fs::read_to_string(t.path().join("syscall")).is_ok_and(|s| s.starts_with("0 0x0 "))
    }) {
        assert!(started.elapsed() < DEADLINE, "add reads its input");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The daemon dies while `add` is still reading its input.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    stdin.write_all(b" and the rest").unwrap();
    drop(stdin);
    let out = finish(add);
    assert!(!out.status.success(), "exit non-zero");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("added to the local store, but not pinned or announced"),
        "{stderr}"
    );
}
