//! `phase-node run` streams like `wasmtime run`: stdin is read as the guest
//! reads it, and what the guest prints appears as it prints it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Generous: the suite shares two cores.
const DEADLINE: Duration = Duration::from_secs(60);

/// A module that writes "tick\n" to stdout, then (if `forever`) spins,
/// writing it again every few million steps, until its timeout.
fn ticker(forever: bool) -> Vec<u8> {
    let tail = if forever {
        r#"(loop $outer
             (local.set $i (i32.const 0))
             (loop $spin
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $spin (i32.lt_u (local.get $i) (i32.const 50000000))))
             (call $tick)
             (br $outer))"#
    } else {
        ""
    };
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "\10\00\00\00\05\00\00\00")
          (data (i32.const 16) "tick\n")
          (func $tick (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
          (func (export "_start") (local $i i32)
            (call $tick)
            {tail}))"#
    ))
    .unwrap()
}

fn module(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn spawn_run(dir: &tempfile::TempDir, module: &PathBuf, flags: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_phase-node"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("run")
        .args(flags)
        .arg(module)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the phase-node binary starts")
}

#[test]
fn a_guest_that_does_not_read_stdin_finishes_while_stdin_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = module(&dir, "tick.wasm", &ticker(false));
    let mut child = spawn_run(&dir, &path, &[]);
    // Held open and never written, like `(sleep 5) | phase-node run`.
    let stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(DEADLINE)
        .expect("the run ends while its stdin is still open")
        .unwrap();
    drop(stdin); // only now
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"tick\n");
}

#[test]
fn what_the_guest_prints_appears_before_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = module(&dir, "ticker.wasm", &ticker(true));
    let mut child = spawn_run(&dir, &path, &["--timeout", "10m"]);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(DEADLINE).expect("a first line arrives");
    assert_eq!(line, "tick\n");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the guest is still running when its first line is read"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn json_output_still_captures_the_guests_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let path = module(&dir, "tick.wasm", &ticker(false));
    let child = spawn_run(&dir, &path, &["--json"]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["fuel_consumed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["status"]["kind"], "exited", "{report}");
}

#[test]
fn sigint_and_sigterm_end_a_run_with_130_and_143_and_remove_its_temporary_output() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let path = module(&dir, "ticker.wasm", &ticker(true));
        let mut child = Command::new(env!("CARGO_BIN_EXE_phase-node"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["run", "--timeout", "10m"])
            .arg(&path)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
        });
        assert_eq!(
            rx.recv_timeout(DEADLINE).unwrap(),
            "tick\n",
            "the guest runs"
        );
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            1,
            "its temporary /output is there"
        );
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx.recv_timeout(DEADLINE).expect("the run ends").unwrap();
        assert_eq!(status.code(), Some(code), "{signal}");
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "its temporary /output is gone"
        );
    }
}
