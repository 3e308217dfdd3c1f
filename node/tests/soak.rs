//! Soak: three real daemons (two workers, one requester) run rounds of
//! honest and hostile jobs (compile bombs, output floods, memory hogs,
//! infinite loops) while other commands run `pin ls`, `gc` and `add`
//! against the workers and garbage peers connect to them. At the end every
//! honest job had a verified receipt and the right output, every hostile
//! one a refusal or a receipt naming its limit, no daemon died, and each
//! daemon's peak RSS stayed under [`MAX_RSS_MIB`].
//!
//! Short here (`PHASE_SOAK_SECONDS`, default 20); `scripts/soak.sh` runs it
//! longer, on a release build.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{Daemon, finish};

/// The bound on each daemon's peak resident memory (compiles happen in
/// child processes, which have their own 512 MiB budget).
const MAX_RSS_MIB: u64 = 256;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `functions` functions nesting `block (br_if) loop` `levels` deep.
fn compile_bomb(functions: usize, levels: usize) -> Vec<u8> {
    let mut wat = String::from("(module (memory (export \"memory\") 1) (func (export \"_start\"))");
    for _ in 0..functions {
        wat.push_str("(func (local i32)");
        wat.push_str(&" (block (br_if 0 (local.get 0)) (loop".repeat(levels));
        wat.push_str(&"))".repeat(levels));
        wat.push(')');
    }
    wat.push(')');
    wat::parse_str(wat).unwrap()
}

/// Writes 64 KiB to `/output/out` forever.
const OUTPUT_FLOOD: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 100) "out")
  (data (i32.const 16) "\00\04\00\00\00\00\01\00")
  (func (export "_start")
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 3)
      (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 200)))
    (loop $w
      (drop (call $write (i32.load (i32.const 200)) (i32.const 16) (i32.const 1) (i32.const 300)))
      (br $w))))"#;

/// A job file for `module` with `limits` (JSON) and optional stdin text.
fn job(dir: &Path, name: &str, module: &Path, limits: &str, stdin: Option<&str>) -> PathBuf {
    let stdin = stdin.map_or(String::new(), |s| {
        format!(r#", "stdin": {{"text": "{s}"}}"#)
    });
    let text = format!(
        r#"{{"module": {{"path": "{}"}}{stdin}, "limits": {limits}}}"#,
        module.display()
    );
    write(dir, name, text.as_bytes())
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        >> 10
}

/// The TCP port of a daemon's `/ip4/127.0.0.1/tcp/PORT/p2p/…` address.
fn tcp_port(addr: &str) -> u16 {
    addr.split('/').nth(4).unwrap().parse().unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Honest,
    CompileBomb,
    OutputFlood,
    MemoryHog,
    Forever,
}

/// Whether `out` is what `kind` should end with.
fn check(kind: Kind, out: &Output) -> Result<(), String> {
    let code = out.status.code();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ok = match kind {
        Kind::Honest => code == Some(0) && out.stdout == b"dlroW ,olleH\n",
        Kind::CompileBomb => code != Some(0) && stderr.contains("module too complex"),
        Kind::OutputFlood => code == Some(138) && stderr.contains("output limit"),
        Kind::MemoryHog => code == Some(137) && stderr.contains("memory limit"),
        Kind::Forever => code == Some(124) && stderr.contains("timed out"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind:?}: exit {code:?}, stdout {:?}, stderr {stderr}",
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

#[test]
fn honest_jobs_complete_beside_hostile_jobs_commands_and_garbage_peers() {
    let seconds: u64 = std::env::var("PHASE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write(
        d,
        "worker.toml",
        b"[worker]\nmax_compile_time = \"3s\"\nmax_compile_memory = \"512MiB\"\n",
    );
    let config = config.to_str().unwrap();
    let w1 = Daemon::start(&d.join("w1"), &["--slots", "2", "--config", config], None);
    let w2 = Daemon::start(
        &d.join("w2"),
        &["--slots", "2", "--config", config, "--bootstrap", &w1.addr],
        None,
    );
    let r = Daemon::start(
        &d.join("r"),
        &["--no-worker", "--bootstrap", &w1.addr],
        None,
    );
    assert!(r.cli(&["peers", "--wait", "2"]).status.success());

    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-examples/out");
    let bomb = write(d, "bomb.wasm", &compile_bomb(8, 4_000));
    let flood = write(d, "flood.wasm", &wat::parse_str(OUTPUT_FLOOD).unwrap());
    let small =
        r#"{"fuel": 100000000000, "memory": "16MiB", "timeout": "3s", "max_output": "1MiB"}"#;
    let jobs = [
        (
            Kind::Honest,
            job(
                d,
                "hello.json",
                &guests.join("hello.wasm"),
                small,
                Some("Hello, World"),
            ),
        ),
        (Kind::CompileBomb, job(d, "bomb.json", &bomb, small, None)),
        (Kind::OutputFlood, job(d, "flood.json", &flood, small, None)),
        (
            Kind::MemoryHog,
            job(d, "hog.json", &guests.join("memhog.wasm"), small, None),
        ),
        (
            Kind::Forever,
            job(d, "loop.json", &guests.join("loop.wasm"), small, None),
        ),
    ];

    // Commands against the workers' data dirs, and garbage peers, until
    // the rounds are over.
    let stop = Arc::new(AtomicBool::new(false));
    let commands = Arc::new(AtomicUsize::new(0));
    let mut background = Vec::new();
    for w in [&w1, &w2] {
        let (stop, commands, data) = (stop.clone(), commands.clone(), w.dir.clone());
        background.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let args: &[&str] = match i % 3 {
                    0 => &["pin", "ls"],
                    1 => &["gc"],
                    _ => &["add", "-"],
                };
                let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_phase-node"))
                    .arg("--data-dir")
                    .arg(&data)
                    .args(args)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let _ = child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(format!("added while soaking {i}").as_bytes());
                let out = finish(child);
                assert!(
                    out.status.success(),
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                commands.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for w in [&w1, &w2] {
        let (stop, port) = (stop.clone(), tcp_port(&w.addr));
        background.push(std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 10_000 {
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(b"\x13/multistream/1.0.0\ngarbage\xff\xfe\x00 not noise");
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }

    let started = Instant::now();
    let mut rounds = 0;
    let mut failures = Vec::new();
    while rounds == 0 || started.elapsed() < Duration::from_secs(seconds) {
        let submits: Vec<_> = jobs
            .iter()
            .chain(std::iter::once(&jobs[0]))
            .map(|(kind, path)| (*kind, r.spawn_cli(&["submit", path.to_str().unwrap()])))
            .collect();
        for (kind, child) in submits {
            if let Err(e) = check(kind, &finish(child)) {
                failures.push(e);
            }
        }
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in background {
        t.join().unwrap();
    }
    assert!(failures.is_empty(), "after {rounds} rounds: {failures:#?}");
    assert!(commands.load(Ordering::Relaxed) > 0);
    for mut daemon in [w1, w2, r] {
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "{} is still up",
            daemon.dir.display()
        );
        assert!(daemon.cli(&["id"]).status.success());
        let peak = peak_rss_mib(daemon.child.id());
        assert!(
            peak < MAX_RSS_MIB,
            "{}: peak RSS {peak} MiB",
            daemon.dir.display()
        );
    }
    eprintln!("soak: {rounds} rounds in {:?}", started.elapsed());
}
