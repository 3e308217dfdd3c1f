//! A worker killed with SIGKILL loses nothing it committed: after a restart
//! it answers `status` and `receipt` for the jobs it finished, and reports
//! the job it was running as interrupted, which completed elsewhere.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Generous: the suite shares two cores.
const DEADLINE: Duration = Duration::from_secs(120);

/// A `phase-node start`; its "job accepted" log lines go to `accepted`.
struct Daemon {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Daemon {
    fn start(dir: &Path, extra: &[&str], accepted: Option<(usize, mpsc::Sender<usize>)>) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_phase-node"))
            .arg("--data-dir")
            .arg(dir)
            .args([
                "start",
                "--no-mdns",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--slots",
                "1",
            ])
            .args(extra)
            .env("RUST_LOG", "phase_node=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((i, tx)) = &accepted
                    && line.contains("job accepted")
                {
                    let _ = tx.send(*i);
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let addr = rx.recv_timeout(DEADLINE).expect("the daemon starts");
        assert!(addr.starts_with("/ip4/"), "{addr}");
        Self {
            child,
            dir: dir.to_owned(),
            addr: addr.trim().to_owned(),
        }
    }

    fn spawn_cli(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_phase-node"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn cli(&self, args: &[&str]) -> Output {
        finish(self.spawn_cli(args))
    }

    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let mut s = UnixStream::connect(self.dir.join("api.sock")).unwrap();
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
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn finish(child: Child) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(DEADLINE)
        .expect("the command ends")
        .unwrap()
}

fn report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A job that counts for a few seconds of one core.
fn long_job(dir: &Path) -> PathBuf {
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (local $i i32)
            (loop $l
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (i32.const 1500000000))))
            (call $exit (i32.const 0))))"#,
    )
    .unwrap();
    std::fs::write(dir.join("count.wasm"), wasm).unwrap();
    let job = dir.join("count.job.json");
    std::fs::write(
        &job,
        r#"{"module": {"path": "count.wasm"},
            "limits": {"fuel": 100000000000, "memory": "16MiB", "timeout": "100s", "max_output": "1MiB"}}"#,
    )
    .unwrap();
    job
}

#[test]
fn a_worker_killed_mid_job_keeps_what_it_finished_and_reports_the_rest_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, accepted) = mpsc::channel();
    let w0 = Daemon::start(&dir.path().join("w0"), &[], Some((0, tx.clone())));
    let w1 = Daemon::start(
        &dir.path().join("w1"),
        &["--bootstrap", &w0.addr],
        Some((1, tx)),
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
    let job = long_job(dir.path());
    let submit = requester.spawn_cli(&["submit", "--json", job.to_str().unwrap()]);
    let chosen = accepted
        .recv_timeout(DEADLINE)
        .expect("a worker takes the job");
    let (mut victim, survivor) = if chosen == 0 { (w0, w1) } else { (w1, w0) };
    victim.child.kill().unwrap(); // SIGKILL
    victim.child.wait().unwrap();

    let long = report(&finish(submit));
    let victim_id = {
        let (_, id) = survivor.get("/api/v1/id");
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
    let (status, answer) = restarted.get(&format!("/api/v1/jobs/{hello_job}"));
    assert_eq!(status, 200, "{answer}");
    assert!(answer["state"]["done"].is_object(), "{answer}");
    let (status, answer) = restarted.get(&format!("/api/v1/jobs/{hello_job}/receipt"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["receipt"]["receipt"]["worker"], victim_id.as_str());
    let (status, answer) = restarted.get(&format!("/api/v1/jobs/{long_job}"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "interrupted", "{answer}");
    // And the CLI says so in one line.
    let out = restarted.cli(&["status", &long_job]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("interrupted"));
}
