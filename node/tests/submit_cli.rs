//! `phase-node submit`, `status` and `receipt` on bad input: every problem
//! is one line, found before the network is touched.

mod common;

use std::path::Path;
use std::process::Output;

use common::phase_in;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn submit(dir: &Path, job: &str) -> Output {
    let path = dir.join("job.json");
    std::fs::write(&path, job).unwrap();
    // No bootstrap and no mDNS: were the network touched, it would fail
    // with "found no peers" after a long wait instead.
    phase_in(
        &dir.join("data"),
        &[
            "submit",
            path.to_str().unwrap(),
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ],
        b"",
    )
}

#[test]
fn a_bad_job_file_is_one_line_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{"module": {"path": "nope.wasm"}}"#, "module: "),
        (
            r#"{"module": {"path": "m.wasm"}, "limits": {"fuel": -1}}"#,
            "limits.fuel",
        ),
        (
            r#"{"module": {"path": "m.wasm"}, "limits": {"memory": "9 parsecs"}}"#,
            "limits.memory",
        ),
        (
            r#"{"module": {"path": "m.wasm"}, "colour": "red"}"#,
            "colour",
        ),
        (r#"{"stdin": {"text": "x"}}"#, "module"),
        (
            r#"{"module": {"path": "m.wasm"}, "limits": {"timeout": "48h"}}"#,
            "limits.timeout",
        ),
    ];
    std::fs::write(dir.path().join("m.wasm"), b"\0asm\x01\0\0\0").unwrap();
    for (job, field) in cases {
        let out = submit(dir.path(), job);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{job}: {err}");
        assert_eq!(err.lines().count(), 1, "{job}: one line: {err}");
        assert!(err.contains(field), "{job}: names {field}: {err}");
        assert!(
            !err.contains("found no peers"),
            "{job}: before the network: {err}"
        );
    }
}

#[test]
fn replicas_of_a_nondeterministic_job_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let path = dir.path().join("job.json");
    std::fs::write(&path, r#"{"module": {"path": "m.wasm"}}"#).unwrap();
    let out = phase_in(
        &dir.path().join("data"),
        &["submit", path.to_str().unwrap(), "--replicas", "3"],
        b"",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("deterministic"), "{err}");
}

#[test]
fn status_and_receipt_of_an_unknown_job_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let job = "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    for cmd in ["status", "receipt"] {
        let out = phase_in(dir.path(), &[cmd, job], b"");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(err.contains("no daemon runs there"), "{cmd}: {err}");
    }
    let out = phase_in(dir.path(), &["status", "not-a-cid"], b"");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn a_module_or_stdin_over_the_workers_caps_is_refused_by_size_before_hashing() {
    let dir = tempfile::tempdir().unwrap();
    // Sparse: 100 GB that take no disk, and would take minutes to hash.
    let huge = std::fs::File::create(dir.path().join("huge.bin")).unwrap();
    huge.set_len(100_000_000_000).unwrap();
    std::fs::write(dir.path().join("m.wasm"), b"\0asm\x01\0\0\0").unwrap();
    for (job, field) in [
        (r#"{"module": {"path": "huge.bin"}}"#, "module: "),
        (
            r#"{"module": {"path": "m.wasm"}, "stdin": {"path": "huge.bin"}}"#,
            "stdin: ",
        ),
    ] {
        let started = std::time::Instant::now();
        let out = submit(dir.path(), job);
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(field), "{stderr}");
        assert!(
            stderr.contains("over the 256 MiB a worker accepts"),
            "{stderr}"
        );
        // Not hashed: 100 GB would take minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }
}
