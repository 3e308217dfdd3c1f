//! Bitswap against a real Helia node (Node 20, `interop/helia`, installed by
//! the test command), on loopback: Helia fetches from a phase-node daemon,
//! and a daemon fetches what only Helia holds.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Daemon, random_file};

fn helia_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/helia");
    assert!(
        dir.join("node_modules/helia").exists(),
        "interop/helia is not installed: run `npm ci` there (scripts/test.sh does)"
    );
    dir
}

/// `node helia.mjs ARGS` in interop/helia.
fn helia(args: &[&str]) -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(helia_dir())
        .args(["--import", "./polyfill.mjs", "helia.mjs"])
        .args(args);
    cmd
}

/// `phase-node add FILE` through the daemon: the root CID.
fn add(daemon: &Daemon, file: &Path) -> String {
    let out = daemon.cli(&["add", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs a Helia command that writes `written`; asserts it succeeded and
/// wrote `bytes`.
fn helia_writes(mut cmd: Command, written: &Path, bytes: &[u8]) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(written).unwrap() == bytes,
        "Helia got other bytes"
    );
}

#[test]
fn helia_with_an_rsa_identity_fetches_a_10_mib_file_from_a_phase_node_over_bitswap() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), &["--no-worker"], None);
    let file = dir.path().join("result.bin");
    let bytes = random_file(&file, 10 << 20);
    let cid = add(&daemon, &file);
    let fetched = dir.path().join("fetched.bin");
    // An RSA identity, as Kubo repos made before 0.14 have.
    let mut cmd = helia(&["fetch", &cid, &daemon.addr, fetched.to_str().unwrap()]);
    cmd.env("HELIA_KEY", "rsa");
    helia_writes(cmd, &fetched, &bytes);
}

/// Starts Helia serving `file` (with `env`), connects the daemon to it
/// with `swarm connect`; Helia and the file's CID. Helia exits when its
/// stdin is dropped.
fn helia_serving(
    daemon: &Daemon,
    file: &Path,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let mut node = helia(&["serve", file.to_str().unwrap()])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(node.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let served: serde_json::Value = serde_json::from_str(&line).expect("helia prints its CID");
    let cid = served["cid"].as_str().unwrap().to_owned();
    let helia_addr = served["addrs"][0].as_str().unwrap().to_owned();
    daemon.connect_bitswap(&helia_addr);
    (node, cid)
}

/// `phase-node get CID -o got` on the daemon, then stops Helia; asserts the
/// file came whole and returns what `get` said (stdout and stderr).
fn daemon_gets(
    daemon: &Daemon,
    mut helia: std::process::Child,
    cid: &str,
    got: &Path,
    bytes: &[u8],
) -> String {
    let out = daemon.cli(&["get", cid, "-o", got.to_str().unwrap()]);
    drop(helia.stdin.take());
    let _ = helia.wait();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        std::fs::read(got).unwrap() == bytes,
        "the bytes from Helia differ"
    );
    said
}

#[test]
fn a_phase_node_fetches_a_file_only_a_helia_node_holds() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), &["--no-worker"], None);
    let file = dir.path().join("input.bin");
    // Several of Helia's 1 MiB blocks in one Bitswap message.
    let bytes = random_file(&file, 5 << 20);
    let (node, cid) = helia_serving(&daemon, &file, &[("HELIA_CHUNK", "1048576")]);
    let out = daemon.cli(&["swarm", "peers"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("/ipfs/bitswap/1.2.0"));
    daemon_gets(&daemon, node, &cid, &dir.path().join("got.bin"), &bytes);
}

#[test]
fn a_cidv0_file_with_dag_pb_leaves_from_helia_is_fetched_and_printed_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), &["--no-worker"], None);
    let file = dir.path().join("kubo-style.bin");
    let bytes = random_file(&file, 3 << 20);
    // `ipfs add`'s default: CIDv0, leaves as dag-pb nodes.
    let (node, cid) = helia_serving(&daemon, &file, &[("HELIA_CID_VERSION", "0")]);
    assert!(cid.starts_with("Qm"), "{cid}");
    let said = daemon_gets(&daemon, node, &cid, &dir.path().join("got.bin"), &bytes);
    assert!(said.contains(&cid), "printed as given: {said}");
    let out = daemon.cli(&["cat", &cid]);
    assert!(out.stdout == bytes, "cat of a CIDv0");
}

#[test]
fn garbage_bitswap_frames_are_refused_logged_once_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, logs) = Daemon::start_logged(&dir.path().join("d"), &["--no-worker"]);
    let file = dir.path().join("f.bin");
    let bytes = random_file(&file, 1 << 20);
    let cid = add(&daemon, &file);
    let fetched = dir.path().join("fetched.bin");
    // Served after the garbage.
    helia_writes(
        helia(&["garbage", &daemon.addr, &cid, fetched.to_str().unwrap()]),
        &fetched,
        &bytes,
    );
    assert!(daemon.cli(&["id"]).status.success(), "the daemon is up");
    let logs = logs.lock().unwrap();
    let refused: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("bad bitswap message"))
        .collect();
    assert_eq!(refused.len(), 2, "one line per bad stream: {refused:?}");
    // Each names the peer (log fields may be colored: match the id itself).
    assert!(
        refused.iter().all(|l| l.contains("12D3KooW")),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|l| l.contains("at most 4194304")),
        "{refused:?}"
    );
}

#[test]
fn a_worker_runs_a_job_whose_input_directory_only_a_helia_node_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, requester) = Daemon::worker_and_requester(dir.path());
    let texts = dir.path().join("texts");
    std::fs::create_dir_all(texts.join("sub")).unwrap();
    std::fs::write(texts.join("a.txt"), "one two three\n").unwrap();
    std::fs::write(texts.join("sub/b.txt"), "four five\n").unwrap();
    // The worker is connected to Helia; the requester has never seen the
    // input.
    let (mut node, input) = helia_serving(&worker, &texts, &[]);
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-examples/out/wordcount.wasm");
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        serde_json::json!({
            "module": {"path": wasm},
            "input": input,
            "limits": {"fuel": 1_000_000_000u64, "memory": "64MiB", "timeout": "30s", "max_output": "1MiB"},
            "deterministic": true,
            "capabilities": ["wasi-p1"],
        })
        .to_string(),
    )
    .unwrap();
    let worker_id = worker.peer_id();
    let result = dir.path().join("result");
    let out = requester.cli(&[
        "submit",
        job.to_str().unwrap(),
        "--worker",
        worker_id,
        "-o",
        result.to_str().unwrap(),
    ]);
    drop(node.stdin.take());
    let _ = node.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(result.join("output/report.txt")).unwrap();
    // Helia, given Kubo's chunker and layout, made the CID `add -r` makes.
    let out = requester.cli(&["add", "-r", texts.to_str().unwrap()]);
    let ours = String::from_utf8(out.stdout).unwrap();
    assert_eq!(ours.lines().last(), Some(input.as_str()));
    assert!(report.contains("3 a.txt"), "{report}");
    assert!(report.contains("2 sub/b.txt"), "{report}");
    assert!(report.contains("TOTAL 5"), "{report}");
}

/// Peak resident memory of a process, from /proc (Linux).
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn a_flood_of_100_000_wants_from_one_peer_is_bounded_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), &["--no-worker"], None);
    let file = dir.path().join("f.bin");
    let bytes = random_file(&file, 4 << 20);
    let cid = add(&daemon, &file);
    let mut flood = helia(&["flood", &daemon.addr, "100000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(flood.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("\"sent\":100000"), "{line}");

    // Another peer is served meanwhile.
    let fetched = dir.path().join("fetched.bin");
    helia_writes(
        helia(&["fetch", &cid, &daemon.addr, fetched.to_str().unwrap()]),
        &fetched,
        &bytes,
    );
    drop(flood.stdin.take());
    let _ = flood.wait();
    let peak = peak_rss_bytes(daemon.child.id());
    eprintln!("daemon peak RSS after the flood: {} MiB", peak >> 20);
    assert!(peak < 256 << 20, "daemon peak RSS {} MiB", peak >> 20);
    assert!(daemon.cli(&["id"]).status.success());
}
