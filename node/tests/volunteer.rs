//! A volunteer's say over their worker, on real daemons: `phase-node
//! pause` refuses new jobs with a typed reason while the running one
//! finishes, `resume` takes jobs again; `worker --slots / --max-memory-total`
//! change the preferences while it runs, and a job whose memory does not
//! fit beside the running ones waits its turn.

use std::process::Output;
use std::time::Instant;

use serde_json::Value;

mod common;
use common::{DEADLINE, Daemon};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `phase-node worker --json [ARGS]` on `worker`.
fn standing(worker: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["worker", "--json"];
    all.extend_from_slice(args);
    let out = worker.cli(&all);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until the worker's standing satisfies `done`; returns it.
fn wait_for(worker: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let now = standing(worker, &[]);
        if done(&now) {
            return now;
        }
        assert!(started.elapsed() < DEADLINE, "never {what}: {now}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_paused_worker_finishes_its_job_refuses_new_ones_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, requester) = Daemon::worker_and_requester(dir.path());
    let out = requester.cli(&["peers", "--wait", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    // About two seconds of counting: running while the worker is paused.
    let (_, job) = common::counting_job(dir.path(), 1_000_000_000);
    let job = job.to_str().unwrap();
    let hello = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.job.json");
    let hello = hello.to_str().unwrap();
    let running = requester.spawn_cli(&["submit", "--worker", worker.peer_id(), job]);
    wait_for(&worker, "running", |s| s["running"] == 1);

    let out = worker.cli(&["pause"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("worker:  paused"), "{}", text(&out));
    let now = standing(&worker, &[]);
    assert_eq!(now["paused"], true, "{now}");

    // A new job is refused, naming why.
    let out = requester.cli(&["submit", "--worker", worker.peer_id(), hello]);
    assert!(
        !out.status.success(),
        "a paused worker took a job: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("worker is paused by its volunteer"),
        "{}",
        text(&out)
    );
    // The running one finishes, its receipt verified (submit exits with the
    // guest's code).
    let out = common::finish(running);
    assert!(out.status.success(), "{}", text(&out));

    let out = worker.cli(&["resume"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("worker:  taking jobs"),
        "{}",
        text(&out)
    );
    let out = requester.cli(&["submit", "--worker", worker.peer_id(), hello]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("dlroW ,olleH"), "{}", text(&out));

    // Pausing a node that runs no worker, or with no daemon, is one line.
    let out = requester.cli(&["pause"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("runs no worker"), "{}", text(&out));
    let out = common::phase_in(&dir.path().join("nobody"), &["pause"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no daemon is running"),
        "{}",
        text(&out)
    );
}

#[test]
fn jobs_wait_for_memory_under_the_volunteers_cap_and_slots_change_live() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Daemon::start(&dir.path().join("w"), &["--slots", "2"], None);
    let requester = Daemon::start(
        &dir.path().join("r"),
        &["--no-worker", "--bootstrap", &worker.addr],
        None,
    );
    let out = requester.cli(&["peers", "--wait", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    // Each job asks for 16 MiB; the cap lets one run at a time.
    let now = standing(&worker, &["--max-memory-total", "16MiB"]);
    assert_eq!(now["slots"], 2, "{now}");
    assert_eq!(now["max_memory_total"], 16 << 20, "{now}");
    assert_eq!(
        now["max_memory"],
        16 << 20,
        "one job may ask for the cap at most"
    );
    // Long jobs (several seconds each): the second waits behind the first.
    let (_, job) = common::counting_job(dir.path(), 3_000_000_000);
    let job = job.to_str().unwrap();
    let mut jobs: Vec<_> = (0..2)
        .map(|_| requester.spawn_cli(&["submit", "--worker", worker.peer_id(), job]))
        .collect();
    let now = wait_for(&worker, "two jobs admitted", |s| {
        s["running"].as_u64().unwrap() + s["queued"].as_u64().unwrap() == 2
    });
    assert_eq!(now["running"], 1, "both ran within a 16 MiB cap: {now}");
    assert_eq!(now["queued"], 1, "{now}");
    assert_eq!(now["memory_running"], 16 << 20, "{now}");
    // More memory for the volunteer's jobs: the waiting one starts at once.
    let now = standing(&worker, &["--max-memory-total", "64MiB"]);
    assert_eq!(now["running"], 2, "{now}");
    assert_eq!(now["queued"], 0, "{now}");
    assert_eq!(now["memory_running"], 32 << 20, "{now}");
    // One slot from now on: both running jobs still finish.
    let now = standing(&worker, &["--slots", "1"]);
    assert_eq!(now["slots"], 1, "{now}");
    for child in jobs.drain(..) {
        let out = common::finish(child);
        assert!(out.status.success(), "{}", text(&out));
    }
    // A bad preference is refused in one line.
    let out = worker.cli(&["worker", "--slots", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("--slots must be at least 1"),
        "{}",
        text(&out)
    );
    let out = worker.cli(&["worker", "--max-memory-total", "lots"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
