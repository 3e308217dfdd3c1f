//! A worker killed with SIGKILL loses nothing it committed: after a restart
//! it answers `status` and `receipt` for the jobs it finished, and reports
//! the job it was running as interrupted, which completed elsewhere.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Output;
use std::sync::mpsc;

mod common;

use common::{DEADLINE, Daemon, counting_job, finish};

fn get(daemon: &Daemon, path: &str) -> (u16, serde_json::Value) {
    let mut s = UnixStream::connect(daemon.socket()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

/// A log hook that sends `i` on `tx` whenever the daemon has recorded a
/// job as under way (so a kill now leaves it interrupted).
fn on_accept(i: usize, tx: mpsc::Sender<usize>) -> Option<common::LogHook> {
    Some(Box::new(move |line: &str| {
        if line.contains("job recorded as under way") {
            let _ = tx.send(i);
        }
    }))
}

fn report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_worker_killed_mid_job_keeps_what_it_finished_and_reports_the_rest_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, accepted) = mpsc::channel();
    let w0 = Daemon::start(&dir.path().join("w0"), &[], on_accept(0, tx.clone()));
    let w1 = Daemon::start(
        &dir.path().join("w1"),
        &["--bootstrap", &w0.addr],
        on_accept(1, tx),
    );
    let requester = Daemon::start(
        &dir.path().join("r"),
        &["--no-worker", "--bootstrap", &w0.addr],
        None,
    );
    let out = requester.cli(&["peers", "--wait", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A job both workers finish (two replicas of a deterministic job).
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.job.json");
    let done = report(&requester.cli(&[
        "submit",
        "--json",
        "--replicas",
        "2",
        hello.to_str().unwrap(),
    ]));
    let hello_job = done["job"].as_str().unwrap().to_owned();
    while accepted.try_recv().is_ok() {}

    // A long job; the worker that takes it is killed once it has.
    let (_, job) = counting_job(dir.path(), 1_500_000_000);
    let submit = requester.spawn_cli(&["submit", "--json", job.to_str().unwrap()]);
    let chosen = accepted
        .recv_timeout(DEADLINE)
        .expect("a worker runs the job");
    let (mut victim, survivor) = if chosen == 0 { (w0, w1) } else { (w1, w0) };
    victim.child.kill().unwrap(); // SIGKILL
    victim.child.wait().unwrap();

    let long = report(&finish(submit));
    let victim_id = {
        let (_, id) = get(&survivor, "/api/v1/id");
        assert_ne!(id["peer_id"], long["failed_attempts"][0]["worker"]);
        long["failed_attempts"][0]["worker"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(long["results"][0]["status"], "exited with code 0", "{long}");
    assert_ne!(
        long["results"][0]["worker"],
        victim_id.as_str(),
        "finished elsewhere"
    );
    let long_job = long["job"].as_str().unwrap().to_owned();

    // The killed worker, restarted on its data dir.
    let victim_dir = victim.dir.clone();
    drop(victim);
    let restarted = Daemon::start(&victim_dir, &[], None);
    let (status, answer) = get(&restarted, &format!("/api/v1/jobs/{hello_job}"));
    assert_eq!(status, 200, "{answer}");
    assert!(answer["state"]["done"].is_object(), "{answer}");
    let (status, answer) = get(&restarted, &format!("/api/v1/jobs/{hello_job}/receipt"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["receipt"]["receipt"]["worker"], victim_id.as_str());
    let (status, answer) = get(&restarted, &format!("/api/v1/jobs/{long_job}"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "interrupted", "{answer}");
    // Its receipt says the same, signed by the worker.
    let (status, answer) = get(&restarted, &format!("/api/v1/jobs/{long_job}/receipt"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["receipt"]["receipt"]["status"]["kind"], "interrupted",
        "{answer}"
    );
    assert_eq!(answer["receipt"]["receipt"]["worker"], victim_id.as_str());
    let out = restarted.cli(&["receipt", &long_job]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("interrupted"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And the CLI says so in one line.
    let out = restarted.cli(&["status", &long_job]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("interrupted"));

    // Its work ledger lost nothing and counts nothing twice: the job it
    // finished and the run it was killed in, one entry each, for the
    // requester; and its export verifies.
    let requester_id = get(&requester, "/api/v1/id").1["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let worked = |daemon: &Daemon| {
        let ledger = report(&daemon.cli(&["ledger", "--json"]));
        assert_eq!(ledger["peers"].as_array().unwrap().len(), 1, "{ledger}");
        assert_eq!(
            ledger["peers"][0]["peer"],
            requester_id.as_str(),
            "{ledger}"
        );
        (
            ledger["entries"].as_u64().unwrap(),
            ledger["peers"][0]["worked"]["jobs"].as_u64().unwrap(),
        )
    };
    assert_eq!(worked(&restarted), (2, 2));
    assert_eq!(worked(&survivor), (2, 2));
    let car = dir.path().join("victim.car");
    let out = restarted.cli(&["ledger", "export", "-o", car.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified = report(&restarted.cli(&["ledger", "verify", "--json", car.to_str().unwrap()]));
    assert_eq!(verified["node"], victim_id.as_str(), "{verified}");
    assert_eq!(verified["entries"], 2, "{verified}");
    // Started again, it enters nothing twice.
    drop(restarted);
    let again = Daemon::start(&victim_dir, &[], None);
    assert_eq!(worked(&again), (2, 2));
    // The requester received three runs: two replicas, then the long job.
    let ledger = report(&requester.cli(&["ledger", "--json"]));
    assert_eq!(ledger["entries"], 3, "{ledger}");
    assert_eq!(ledger["total"]["received"]["jobs"], 3, "{ledger}");

    // A flipped byte (in the last receipt) fails, naming the entry, in one
    // line; so does a file that is no ledger.
    let mut bytes = std::fs::read(&car).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&car, &bytes).unwrap();
    let out = again.cli(&["ledger", "verify", car.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("does not verify: entry "), "{said}");
    std::fs::write(&car, b"not a ledger at all").unwrap();
    let out = again.cli(&["ledger", "verify", car.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("not a ledger CAR file"), "{said}");
}

/// `phase-node` on the data dir `data` with `args`, output collected.
fn phase(data: &Path, args: &[&str]) -> Output {
    common::phase_in(data, args, b"")
}

#[test]
fn a_requester_killed_mid_submit_lists_the_job_and_resumes_it_to_the_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, accepted) = mpsc::channel();
    let worker = Daemon::start(&dir.path().join("w"), &[], on_accept(0, tx));
    let data = dir.path().join("r");
    // A job that runs a few seconds, submitted without a daemon: the
    // submitting process is the requester, and is killed once the worker
    // has the job under way.
    let (_, job) = counting_job(dir.path(), 1_500_000_000);
    let mut submit = std::process::Command::new(env!("CARGO_BIN_EXE_phase-node"))
        .arg("--data-dir")
        .arg(&data)
        .args(["submit", job.to_str().unwrap(), "--no-mdns"])
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &worker.addr,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    accepted
        .recv_timeout(DEADLINE)
        .expect("the worker runs the job");
    submit.kill().unwrap(); // SIGKILL
    submit.wait().unwrap();

    // After the restart the job is listed, under way, with its worker.
    let out = phase(&data, &["jobs", "--json"]);
    let listed = report(&out);
    let entry = &listed["jobs"][0];
    assert_eq!(entry["role"], "submitted", "{listed}");
    assert_eq!(entry["state"], "running", "{listed}");
    assert_eq!(entry["peers"][0], worker.peer_id(), "{listed}");
    let id = entry["job"].as_str().unwrap().to_owned();
    let out = phase(&data, &["status", &id]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("running"), "{said}");
    assert!(said.contains(&format!("submit --resume {id}")), "{said}");

    // Resumed: the worker answers for the run it has; the receipt verifies.
    let out = phase(
        &data,
        &[
            "submit",
            "--resume",
            &id,
            "--json",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &worker.addr,
        ],
    );
    let done = report(&out);
    assert_eq!(done["job"], id.as_str());
    assert_eq!(done["results"][0]["status"], "exited with code 0", "{done}");
    assert_eq!(done["results"][0]["worker"], worker.peer_id(), "{done}");
    // The worker ran it once.
    assert!(accepted.try_recv().is_err(), "the job ran again");
    // One run received, one entry in the requester's ledger.
    let ledger = report(&phase(&data, &["ledger", "--json"]));
    assert_eq!(ledger["entries"], 1, "{ledger}");
    assert_eq!(ledger["peers"][0]["peer"], worker.peer_id(), "{ledger}");

    let listed = report(&phase(&data, &["jobs", "--json"]));
    assert_eq!(listed["jobs"][0]["state"], "done", "{listed}");
    assert_eq!(
        listed["jobs"][0]["receipt"], done["results"][0]["receipt_cid"],
        "{listed}"
    );
    let out = phase(&data, &["receipt", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_requester_daemon_killed_mid_submit_resumes_the_job_when_it_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, accepted) = mpsc::channel();
    let worker = Daemon::start(&dir.path().join("w"), &[], on_accept(0, tx));
    let r_dir = dir.path().join("r");
    let requester = Daemon::start(&r_dir, &["--no-worker", "--bootstrap", &worker.addr], None);
    let (_, job) = counting_job(dir.path(), 1_500_000_000);
    let mut submit = requester.spawn_cli(&["submit", "--json", job.to_str().unwrap()]);
    accepted
        .recv_timeout(DEADLINE)
        .expect("the worker runs the job");
    drop(requester); // SIGKILL, with the submission under way
    submit.kill().unwrap();
    submit.wait().unwrap();

    let (tx, resumed) = mpsc::channel();
    let requester = Daemon::start(
        &r_dir,
        &["--no-worker", "--bootstrap", &worker.addr],
        Some(Box::new(move |line: &str| {
            if line.contains("resumed job done") {
                let _ = tx.send(());
            }
        })),
    );
    resumed
        .recv_timeout(DEADLINE)
        .expect("the daemon resumes the job and ends it");
    let listed = report(&requester.cli(&["jobs", "--json"]));
    let entry = &listed["jobs"][0];
    assert_eq!(entry["role"], "submitted", "{listed}");
    assert_eq!(entry["state"], "done", "{listed}");
    assert_eq!(entry["detail"], "exited with code 0", "{listed}");
    let id = entry["job"].as_str().unwrap();
    let out = requester.cli(&["receipt", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(accepted.try_recv().is_err(), "the job ran again");
    let ledger = report(&requester.cli(&["ledger", "--json"]));
    assert_eq!(ledger["entries"], 1, "{ledger}");
    assert_eq!(ledger["total"]["received"]["jobs"], 1, "{ledger}");
}

/// A tar of `n` small files (100 to 599 bytes) in 100 folders.
fn small_files_tar(n: u32) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for i in 0..n {
        let body: Vec<u8> = (0..100 + i % 500)
            .map(|j| (i.wrapping_mul(31).wrapping_add(j) % 251) as u8)
            .collect();
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("d{}/f{i}", i % 100), &body[..])
            .unwrap();
    }
    tar.into_inner().unwrap()
}

fn block_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    block_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// SIGKILL of a daemon while it stores thousands of small blocks (an upload
/// of small files: rows of its state database, not files) leaves every
/// block it lists whole, and the same upload completes after a restart.
#[test]
fn a_daemon_killed_while_storing_small_blocks_leaves_none_torn() {
    let dir = tempfile::tempdir().unwrap();
    let tar = small_files_tar(20_000);
    let expected = phase_node::store::files::add_tar_blocking(
        &phase_node::store::BlockStore::memory(),
        &tar[..],
    )
    .unwrap()
    .cid;
    let upload = |daemon: &Daemon, part: &[u8]| {
        let mut s = UnixStream::connect(daemon.socket()).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(
            s,
            "POST /api/v1/add?format=tar HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            tar.len()
        )
        .unwrap();
        s.write_all(part).unwrap();
        s
    };

    let daemon = Daemon::start(dir.path(), &[], None);
    // Three quarters of the upload sent: the daemon has read all but what
    // the socket buffers, and is importing the rest when it is killed.
    let _half_sent = upload(&daemon, &tar[..tar.len() * 3 / 4]);
    drop(daemon); // SIGKILL

    let store_dir = dir.path().join("store");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = phase_node::store::BlockStore::open(store_dir.clone())
            .await
            .unwrap()
            .with_hash_on_read(true);
        let cids = store.cids().await.unwrap();
        assert!(cids.len() > 1000, "only {} blocks stored", cids.len());
        assert_eq!(block_files(&store_dir.join("blocks")), 0, "all inline");
        for cid in &cids {
            // Re-hashed: a torn block would be an error here.
            store.get(cid).await.unwrap().expect("listed block reads");
        }
    });

    let daemon = Daemon::start(dir.path(), &[], None);
    let mut s = upload(&daemon, &tar);
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&expected.to_string()), "{answer}");
}
