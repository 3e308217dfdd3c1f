//! Chaos: three workers and two requesters on loopback (a requester daemon,
//! and `submit` without a daemon on a second data dir). Jobs are submitted
//! continuously while workers, the requester daemon and `submit` processes
//! are SIGKILLed and restarted at random, `gc` runs in a loop, and a
//! restarted worker sometimes finds its disk below its reserve. At the end
//! every job submitted has a final record (done, with a receipt that
//! verifies, or failed with a reason), no store fails `store verify`, and
//! every node answers. Nothing is lost: resumption (a daemon at start,
//! `submit --resume` without one) takes every unfinished job to its end.
//!
//! Short here (`PHASE_CHAOS_SECONDS`, default 30); `scripts/chaos.sh` runs
//! it longer, on a release build, and prints the same numbers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

mod common;

use common::{DEADLINE, Daemon, counting_job, finish_within};

/// A pause of `min` plus up to `spread`, random.
fn pause(min: u64, spread: u64) {
    std::thread::sleep(Duration::from_millis(
        min + rand::random::<u64>() % spread.max(1),
    ));
}

fn phase(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phase-node"));
    cmd.arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(data: &Path, args: &[&str]) -> Output {
    finish_within(phase(data, args).spawn().unwrap(), DEADLINE)
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The jobs a data dir submitted, from `jobs --json`.
fn submitted(data: &Path) -> Vec<serde_json::Value> {
    json(&run(data, &["jobs", "--json"]))["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["role"] == "submitted")
        .cloned()
        .collect()
}

/// The network, shared by the threads that submit, kill and collect.
struct Net {
    dir: PathBuf,
    /// The first worker: the bootstrap, never killed.
    w0: Daemon,
    /// The other workers; `None` while one is down.
    workers: Vec<Mutex<Option<Daemon>>>,
    /// The requester daemon; submitters hold it shared, the killer alone.
    requester: RwLock<Daemon>,
    /// Hooks of the requester daemon count resumed jobs here.
    resumed: Arc<AtomicUsize>,
    /// The requester without a daemon.
    solo: PathBuf,
    job: PathBuf,
    stop: AtomicBool,
}

#[derive(Debug, Default)]
struct Counts {
    daemon_submits: usize,
    solo_submits: usize,
    solo_killed: usize,
    worker_kills: usize,
    worker_full_disk: usize,
    requester_kills: usize,
    gc_runs: usize,
}

impl Net {
    fn start(dir: &Path) -> Self {
        let (_, job) = counting_job(dir, 20_000_000);
        let w0 = Daemon::start(&dir.join("w0"), &["--slots", "2"], None);
        let workers = (1..=2)
            .map(|i| Mutex::new(Some(Self::worker(dir, i, &w0.addr, false))))
            .collect();
        let resumed = Arc::new(AtomicUsize::new(0));
        let requester = RwLock::new(Self::requester(dir, &w0.addr, &resumed));
        Self {
            dir: dir.to_owned(),
            w0,
            workers,
            requester,
            resumed,
            solo: dir.join("solo"),
            job,
            stop: AtomicBool::new(false),
        }
    }

    fn worker(dir: &Path, i: usize, bootstrap: &str, full_disk: bool) -> Daemon {
        let config = dir.join("full.toml");
        std::fs::write(&config, "[store]\nreserve = \"1000TiB\"\n").unwrap();
        let mut extra = vec!["--slots", "2", "--bootstrap", bootstrap];
        if full_disk {
            extra.extend(["--config", config.to_str().unwrap()]);
        }
        Daemon::start(&dir.join(format!("w{i}")), &extra, None)
    }

    /// Starts the requester daemon. A `submit` that found no daemon (it
    /// looked just as the daemon was killed) runs as a short-lived node on
    /// the data dir and holds it until it ends: the daemon is started again
    /// until it can be, within the deadline.
    fn requester(dir: &Path, bootstrap: &str, resumed: &Arc<AtomicUsize>) -> Daemon {
        let until = Instant::now() + DEADLINE;
        loop {
            let resumed = Arc::clone(resumed);
            let started = Daemon::try_start(
                &dir.join("r"),
                &["--no-worker", "--bootstrap", bootstrap],
                Some(Box::new(move |line: &str| {
                    if line.contains("resumed job done") || line.contains("resumed job failed") {
                        resumed.fetch_add(1, Ordering::SeqCst);
                    }
                })),
            );
            match started {
                Ok(daemon) => return daemon,
                Err(e) => assert!(Instant::now() < until, "{e}"),
            }
            pause(200, 300);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Submits through the requester daemon, one job at a time; returns
    /// the ids of the submissions that ended with a report.
    fn submit_through_daemon(&self, counts: &Mutex<Counts>) -> Vec<String> {
        let mut reported = Vec::new();
        while !self.stopped() {
            let child = {
                let daemon = self.requester.read().unwrap();
                let job = self.job.to_str().unwrap();
                daemon.spawn_cli(&["submit", "--json", job])
            };
            counts.lock().unwrap().daemon_submits += 1;
            let out = finish_within(child, DEADLINE);
            if let Ok(report) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                && let Some(job) = report["job"].as_str()
                && report["results"].is_array()
            {
                reported.push(job.to_owned());
            }
        }
        reported
    }

    /// Submits without a daemon, killing some submissions mid-way.
    fn submit_alone(&self, counts: &Mutex<Counts>) {
        let bootstrap = self.w0.addr.clone();
        while !self.stopped() {
            let job = self.job.to_str().unwrap();
            let args = [
                "submit",
                "--json",
                job,
                "--no-mdns",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--bootstrap",
                &bootstrap,
            ];
            let mut child: Child = phase(&self.solo, &args).spawn().unwrap();
            counts.lock().unwrap().solo_submits += 1;
            if rand::random::<u64>().is_multiple_of(3) {
                pause(200, 1500);
                let _ = child.kill(); // SIGKILL
                counts.lock().unwrap().solo_killed += 1;
            }
            let _ = finish_within(child, DEADLINE);
        }
    }

    /// Kills and restarts a worker or the requester daemon, at random.
    fn kill_at_random(&self, counts: &Mutex<Counts>) {
        while !self.stopped() {
            pause(1500, 2000);
            if self.stopped() {
                break;
            }
            match rand::random::<u64>() % 3 {
                0 | 1 => {
                    let i = (rand::random::<u64>() % 2) as usize;
                    let mut slot = self.workers[i].lock().unwrap();
                    drop(slot.take()); // SIGKILL
                    pause(100, 500);
                    let full = rand::random::<u64>().is_multiple_of(3);
                    *slot = Some(Self::worker(&self.dir, i + 1, &self.w0.addr, full));
                    let mut c = counts.lock().unwrap();
                    c.worker_kills += 1;
                    c.worker_full_disk += usize::from(full);
                }
                _ => {
                    let mut daemon = self.requester.write().unwrap();
                    daemon.child.kill().unwrap(); // SIGKILL
                    daemon.child.wait().unwrap();
                    *daemon = Self::requester(&self.dir, &self.w0.addr, &self.resumed);
                    counts.lock().unwrap().requester_kills += 1;
                }
            }
        }
    }

    /// `gc` on the bootstrap worker and the requester daemon, in a loop.
    fn collect_garbage(&self, counts: &Mutex<Counts>) {
        while !self.stopped() {
            let out = run(&self.w0.dir, &["gc"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            {
                let daemon = self.requester.read().unwrap();
                let _ = daemon.cli(&["gc"]); // the daemon may have just been killed
            }
            counts.lock().unwrap().gc_runs += 2;
            pause(100, 300);
        }
    }
}

#[test]
fn under_kills_gc_and_a_full_disk_no_submitted_job_is_lost() {
    let seconds: u64 = std::env::var("PHASE_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let net = Net::start(dir.path());
    let counts = Mutex::new(Counts::default());
    let started = Instant::now();
    let reported = std::thread::scope(|s| {
        let through_daemon = s.spawn(|| net.submit_through_daemon(&counts));
        s.spawn(|| net.submit_alone(&counts));
        s.spawn(|| net.kill_at_random(&counts));
        s.spawn(|| net.collect_garbage(&counts));
        std::thread::sleep(Duration::from_secs(seconds));
        net.stop.store(true, Ordering::SeqCst);
        through_daemon.join().unwrap()
    });
    let chaos = started.elapsed();

    // The end: every worker up (disks with room), the requester daemon
    // restarted (it resumes what did not end), and each unfinished job of
    // the daemonless requester resumed by hand.
    for (i, slot) in net.workers.iter().enumerate() {
        let mut slot = slot.lock().unwrap();
        drop(slot.take());
        *slot = Some(Net::worker(&net.dir, i + 1, &net.w0.addr, false));
    }
    let (tx, resumed_all) = mpsc::channel();
    {
        let mut daemon = net.requester.write().unwrap();
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        net.resumed.store(0, Ordering::SeqCst);
        let unfinished = submitted(&daemon.dir)
            .iter()
            .filter(|j| j["state"] == "submitting" || j["state"] == "running")
            .count();
        *daemon = Net::requester(&net.dir, &net.w0.addr, &net.resumed);
        let resumed = Arc::clone(&net.resumed);
        std::thread::spawn(move || {
            let until = Instant::now() + DEADLINE * 2;
            while resumed.load(Ordering::SeqCst) < unfinished && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = tx.send(resumed.load(Ordering::SeqCst) >= unfinished);
        });
    }
    for job in submitted(&net.solo) {
        if job["state"] == "submitting" || job["state"] == "running" {
            let id = job["job"].as_str().unwrap();
            let out = run(
                &net.solo,
                &[
                    "submit",
                    "--resume",
                    id,
                    "--json",
                    "--no-mdns",
                    "--listen",
                    "/ip4/127.0.0.1/tcp/0",
                    "--bootstrap",
                    &net.w0.addr,
                ],
            );
            assert!(
                out.status.code().is_some(),
                "resume of {id} did not end: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(
        resumed_all.recv_timeout(DEADLINE * 3).unwrap_or(false),
        "the requester daemon did not end every resumed job"
    );

    // Every job has a final record; every done one a receipt that verifies.
    let requester = net.requester.read().unwrap();
    let mut done = 0;
    let mut failed = Vec::new();
    let mut lost = Vec::new();
    for (data, jobs) in [
        (&requester.dir, submitted(&requester.dir)),
        (&net.solo, submitted(&net.solo)),
    ] {
        for job in jobs {
            let id = job["job"].as_str().unwrap().to_owned();
            match job["state"].as_str().unwrap() {
                "done" => {
                    let out = run(data, &["receipt", &id, "--json"]);
                    assert!(
                        out.status.success(),
                        "receipt of {id}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    done += 1;
                }
                "failed" => {
                    let reason = job["detail"].as_str().unwrap_or_default();
                    assert!(!reason.is_empty(), "{job}");
                    failed.push(format!("{id}: {reason}"));
                }
                _ => lost.push(job.to_string()),
            }
        }
    }
    // Every submission that reported a result is on record.
    let on_record: Vec<String> = submitted(&requester.dir)
        .iter()
        .map(|j| j["job"].as_str().unwrap().to_owned())
        .collect();
    for id in &reported {
        if !on_record.contains(id) {
            lost.push(format!("{id}: reported, not recorded"));
        }
    }

    // Every store verifies; every node answers.
    let mut dirs = vec![net.w0.dir.clone(), requester.dir.clone(), net.solo.clone()];
    for slot in &net.workers {
        dirs.push(slot.lock().unwrap().as_ref().unwrap().dir.clone());
    }
    for data in &dirs {
        let out = run(data, &["store", "verify"]);
        assert!(
            out.status.success(),
            "{}: {}{}\njobs: {}",
            data.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&run(data, &["jobs", "--json"]).stdout),
        );
    }
    for data in &dirs[..2] {
        assert!(run(data, &["id"]).status.success(), "{}", data.display());
    }
    for slot in &net.workers {
        let daemon = slot.lock().unwrap();
        assert!(daemon.as_ref().unwrap().cli(&["id"]).status.success());
    }

    let c = counts.lock().unwrap();
    println!(
        "chaos: {} s; jobs submitted {} (through the daemon {}, without one {}); \
         done {done}, failed {}, lost {}; workers killed {} ({} restarted below their reserve), \
         requester daemon killed {}, submit processes killed {}, gc runs {}",
        chaos.as_secs(),
        c.daemon_submits + c.solo_submits,
        c.daemon_submits,
        c.solo_submits,
        failed.len(),
        lost.len(),
        c.worker_kills,
        c.worker_full_disk,
        c.requester_kills,
        c.solo_killed,
        c.gc_runs,
    );
    for f in &failed {
        println!("failed: {f}");
    }
    assert!(lost.is_empty(), "lost jobs: {lost:#?}");
    assert!(done > 0, "no job ran");
}
