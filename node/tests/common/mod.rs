//! Helpers shared by the CLI test binaries.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `phase-node --data-dir DATA ARGS…` with `stdin`, collecting its output.
/// `PHASE_TEST_SECRET` is set in its environment, to show it does not leak.
#[allow(dead_code)] // not every test binary runs one-shot commands
pub(crate) fn phase_in(data: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phase-node"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("PHASE_TEST_SECRET", "must-not-leak")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the phase-node binary starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("stdin accepts the input");
    child
        .wait_with_output()
        .expect("phase-node runs to the end")
}

/// Called with each line a daemon logs.
#[allow(dead_code)]
pub(crate) type LogHook = Box<dyn Fn(&str) + Send>;

/// Generous: the suite shares two cores.
#[allow(dead_code)] // not every test binary starts daemons
pub(crate) const DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// A `phase-node start` on loopback TCP with one slot (unless `extra` says
/// `--slots`), stopped (SIGKILL) when dropped.
#[allow(dead_code)]
pub(crate) struct Daemon {
    pub(crate) child: std::process::Child,
    pub(crate) dir: std::path::PathBuf,
    /// Its first listen address, ending in `/p2p/PEERID`.
    pub(crate) addr: String,
}

#[allow(dead_code)]
impl Daemon {
    /// Starts a daemon on `dir` with `extra` flags; `on_log` gets each line
    /// it logs (at `RUST_LOG=phase_node=info`). Returns once it listens (the
    /// API is up by then).
    pub(crate) fn start(dir: &Path, extra: &[&str], on_log: Option<LogHook>) -> Self {
        Self::try_start(dir, extra, on_log).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Daemon::start`], or why the daemon did not start (it exited:
    /// another phase-node holds the data dir, say).
    pub(crate) fn try_start(
        dir: &Path,
        extra: &[&str],
        on_log: Option<LogHook>,
    ) -> Result<Self, String> {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_phase-node"))
            .arg("--data-dir")
            .arg(dir)
            .args(["start", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(if extra.contains(&"--slots") {
                &[][..]
            } else {
                &["--slots", "1"][..]
            })
            .args(extra)
            .env("RUST_LOG", "phase_node=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the phase-node binary starts");
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = &on_log {
                    f(&line);
                }
            }
        });
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let addr = rx.recv_timeout(DEADLINE).unwrap_or_default();
        if !addr.starts_with("/ip4/") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the daemon on {} did not start", dir.display()));
        }
        Ok(Self {
            child,
            dir: dir.to_owned(),
            addr: addr.trim().to_owned(),
        })
    }

    /// [`Daemon::start`] with the API also on a free loopback port
    /// (`--api 127.0.0.1:0`); the daemon and that port's `host:port`.
    pub(crate) fn start_with_tcp_api(dir: &Path, extra: &[&str]) -> (Self, String) {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut flags = vec!["--api", "127.0.0.1:0"];
        flags.extend_from_slice(extra);
        let daemon = Self::start(
            dir,
            &flags,
            Some(Box::new(move |line: &str| {
                if let Some(rest) = line.strip_prefix("API on http://") {
                    let _ = tx.send(rest.split('/').next().unwrap_or_default().to_owned());
                }
            })),
        );
        let addr = rx
            .recv_timeout(DEADLINE)
            .expect("the daemon says where the API is");
        (daemon, addr)
    }

    /// [`Daemon::start`], keeping every line it logs.
    pub(crate) fn start_logged(
        dir: &Path,
        extra: &[&str],
    ) -> (Self, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let hook: LogHook = Box::new(move |line: &str| sink.lock().unwrap().push(line.to_owned()));
        (Self::start(dir, extra, Some(hook)), logs)
    }

    /// A worker (`DIR/w`) and a requester that runs no jobs (`DIR/r`)
    /// bootstrapped from it.
    pub(crate) fn worker_and_requester(dir: &Path) -> (Self, Self) {
        let worker = Self::start(&dir.join("w"), &[], None);
        let requester = Self::start(
            &dir.join("r"),
            &["--no-worker", "--bootstrap", &worker.addr],
            None,
        );
        (worker, requester)
    }

    /// Its peer id (the end of its address).
    pub(crate) fn peer_id(&self) -> &str {
        self.addr.rsplit("/p2p/").next().unwrap_or_default()
    }

    pub(crate) fn socket(&self) -> std::path::PathBuf {
        self.dir.join("api.sock")
    }

    /// `phase-node ARGS` on this data dir, started.
    pub(crate) fn spawn_cli(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_phase-node"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the phase-node binary starts")
    }

    /// `phase-node ARGS` on this data dir, to its end (within the deadline).
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        finish(self.spawn_cli(args))
    }

    /// `swarm connect ADDR` (Kubo's verb: dials, waits until identified);
    /// asserts the peer speaks Bitswap 1.2.0.
    pub(crate) fn connect_bitswap(&self, addr: &str) {
        let out = self.cli(&["swarm", "connect", addr, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let connected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let protocols = connected["connections"][0]["protocols"].as_array().unwrap();
        assert!(
            protocols.iter().any(|p| p == "/ipfs/bitswap/1.2.0"),
            "{connected}"
        );
    }
}

/// Writes `len` bytes that do not repeat (so every chunk is its own block)
/// to `path`, and returns them.
#[allow(dead_code)]
pub(crate) fn random_file(path: &Path, len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ len as u64;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (within the deadline) for `child` and collects its output.
#[allow(dead_code)]
pub(crate) fn finish(child: std::process::Child) -> Output {
    finish_within(child, DEADLINE)
}

/// Waits (within `deadline`) for `child` and collects its output.
#[allow(dead_code)]
pub(crate) fn finish_within(child: std::process::Child, deadline: std::time::Duration) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(deadline)
        .expect("the command ends in time")
        .expect("its output is collected")
}

/// A job that counts to `steps` (about 2 ns a step on one core), then exits
/// 0: `count.wasm` and `count.job.json` written into `dir`. Returns their
/// paths (module, job).
#[allow(dead_code)]
pub(crate) fn counting_job(dir: &Path, steps: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let wasm = wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (local $i i32)
            (loop $l
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (i32.const {steps}))))
            (call $exit (i32.const 0))))"#
    ))
    .unwrap();
    let module = dir.join("count.wasm");
    std::fs::write(&module, wasm).unwrap();
    let job = dir.join("count.job.json");
    std::fs::write(
        &job,
        r#"{"module": {"path": "count.wasm"},
            "limits": {"fuel": 100000000000, "memory": "16MiB", "timeout": "100s", "max_output": "1MiB"}}"#,
    )
    .unwrap();
    (module, job)
}
