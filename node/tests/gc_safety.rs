//! gc never breaks a fetch: a 256 MiB `get` from a peer completes, whole,
//! while `gc` runs in a loop on the fetching node (the fetch holds its
//! root against gc while it runs, and the daemon keeps what it fetched for
//! a client until the client has read it).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

mod common;

use common::{Daemon, random_file};

/// `phase-node gc` on a data dir, again and again on a thread, until
/// stopped; every run must succeed.
struct GcLoop {
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl GcLoop {
    fn start(data_dir: &std::path::Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, runs, data_dir) = (stop.clone(), runs.clone(), data_dir.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let out = Command::new(env!("CARGO_BIN_EXE_phase-node"))
                        .arg("--data-dir")
                        .arg(&data_dir)
                        .arg("gc")
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    runs.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        Self { stop, runs, thread }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    /// Stops the loop; how many runs it made.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        self.runs.load(Ordering::SeqCst)
    }
}

#[test]
fn a_fetch_completes_while_gc_runs_in_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, requester) = Daemon::worker_and_requester(dir.path());
    let file = dir.path().join("big");
    let data = random_file(&file, 256 << 20);
    let out = worker.cli(&["add", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let gc = GcLoop::start(&requester.dir);
    let target = dir.path().join("got");
    let out = requester.cli(&["get", &cid, "-o", target.to_str().unwrap()]);
    let runs = gc.stop();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&target).unwrap() == data,
        "the file came whole"
    );
    assert!(runs >= 2, "gc ran during the fetch");
}

/// An upload that sends one byte and idles is ended after its idle
/// timeout (30 s), so `gc`, which waits for uploads under way, goes on.
#[test]
fn an_idle_upload_does_not_hold_gc_for_ever() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), &["--no-worker"], None);
    let mut upload = std::os::unix::net::UnixStream::connect(daemon.socket()).unwrap();
    upload
        .write_all(b"POST /api/v1/add HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\nx")
        .unwrap();
    let started = std::time::Instant::now();
    let out = daemon.cli(&["gc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The idle timeout and a margin; without it gc would wait for ever
    // (common::DEADLINE ends the command first).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    drop(upload);
}

#[test]
fn an_add_beside_a_daemon_survives_its_gc_running_in_a_loop() {
    // `add` writes into the store the daemon collects, from another
    // process: its write lease keeps the daemon's gc off the new blocks
    // until the daemon has pinned the root.
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), &[], None);
    let file = dir.path().join("big");
    let data = random_file(&file, 64 << 20);
    let gc = GcLoop::start(&daemon.dir);
    // gc is running before the add starts.
    while gc.runs() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = daemon.cli(&["add", file.to_str().unwrap()]);
    gc.stop();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = daemon.cli(&["store", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = daemon.cli(&["cat", &cid]);
    assert!(out.stdout == data, "the file came back different");
}
