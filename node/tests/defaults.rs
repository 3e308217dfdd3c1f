//! What a newcomer runs, with the defaults a newcomer gets: two daemons on
//! one machine (loopback, no `--dht-mode`; mDNS off only because tests
//! talk to loopback alone) run the hello job through the requester's
//! daemon and through `submit --bootstrap` without a daemon, and fetch a
//! file the other added; with no worker anywhere, and with `--worker`
//! naming nobody, `submit` ends within its bounded wait with one line that
//! says what was tried.

use std::path::Path;
use std::process::Output;

mod common;

use common::{Daemon, phase_in, random_file};

fn hello_job() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/hello.job.json")
        .to_string_lossy()
        .into_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A short-lived node's flags: loopback only, like the daemons.
const LOOPBACK: [&str; 3] = ["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--no-mdns"];

#[test]
fn two_default_daemons_run_jobs_and_share_content() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, requester) = Daemon::worker_and_requester(dir.path());
    let hello = hello_job();

    // Through the requester's daemon.
    let out = requester.cli(&["submit", &hello]);
    assert_eq!(ok(&out), "dlroW ,olleH\n");

    // Without a daemon: a short-lived node joins through the worker.
    let mut args = vec!["submit", "--bootstrap", &worker.addr];
    args.extend(LOOPBACK);
    args.push(&hello);
    let out = phase_in(&dir.path().join("lonely"), &args, b"");
    assert_eq!(ok(&out), "dlroW ,olleH\n");

    // Content: added on the worker, fetched by the requester.
    let file = dir.path().join("file");
    let data = random_file(&file, 700_000);
    let cid = ok(&worker.cli(&["add", file.to_str().unwrap()]));
    let got = dir.path().join("got");
    ok(&requester.cli(&["get", cid.trim(), "-o", got.to_str().unwrap()]));
    assert_eq!(std::fs::read(&got).unwrap(), data);
}

#[test]
fn with_no_worker_anywhere_submit_says_what_it_tried() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["submit"];
    args.extend(LOOPBACK);
    let hello = hello_job();
    args.push(&hello);
    let started = std::time::Instant::now();
    let out = phase_in(dir.path(), &args, b"");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    // The job id, then one line that says what was tried.
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("job bafyrei"), "{stderr}");
    for what in [
        "no worker found",
        "0 connected phase peers",
        "0 DHT providers",
        "DHT client",
        "--bootstrap",
    ] {
        assert!(stderr.contains(what), "{what}: {stderr}");
    }
    // The bounded wait (20 s) and a short-lived node's start and stop.
    assert!(
        started.elapsed() < common::DEADLINE,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn submit_to_a_worker_that_does_not_exist_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (_worker, requester) = Daemon::worker_and_requester(dir.path());
    let nobody = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let out = requester.cli(&["submit", "--worker", nobody, &hello_job()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains(nobody), "{stderr}");
    assert!(stderr.contains("no address found"), "{stderr}");
    // --json carries the job id on failure too.
    let out = requester.cli(&["submit", "--json", "--worker", nobody, &hello_job()]);
    assert!(!out.status.success());
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        failed["job"].as_str().unwrap().starts_with("bafyrei"),
        "{failed}"
    );
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("no address found"),
        "{failed}"
    );
}

/// A DAG of a few KiB that links the same subtree twice per level, 40
/// levels deep (2^40 files), pinned on `worker`; returns its root.
fn bomb_dag(worker: &Daemon) -> String {
    use phase_protocol::unixfs::{Root, directory};
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Beside the daemon, as a command would: the state database is opened
    // per use, never held.
    let store = rt
        .block_on(phase_node::store::BlockStore::open(
            worker.dir.join("store"),
        ))
        .unwrap()
        .with_transient_state();
    let leaf = b"x".to_vec();
    let mut root = Root {
        cid: phase_protocol::cid::raw_cid(&leaf),
        tsize: 1,
        filesize: 1,
    };
    rt.block_on(store.put(root.cid, leaf.into())).unwrap();
    for _ in 0..40 {
        let (blocks, dir) = directory(vec![("a".into(), root), ("b".into(), root)]).unwrap();
        for block in blocks {
            rt.block_on(store.put(block.cid, block.data.into()))
                .unwrap();
        }
        root = dir;
    }
    let cid = root.cid.to_string();
    ok(&worker.cli(&["pin", "add", &cid]));
    cid
}

#[test]
fn get_of_a_dag_that_repeats_a_subtree_is_refused_with_nothing_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, requester) = Daemon::worker_and_requester(dir.path());
    let root = bomb_dag(&worker);
    let target = dir.path().join("bomb");
    let out = requester.cli(&["get", &root, "-o", target.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("more than 1 GiB of files or more than 100000 entries"),
        "names the limit: {stderr}"
    );
    assert!(!target.exists(), "nothing is left behind");
}
