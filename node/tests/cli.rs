//! The `phase-node` binary as a user runs it: real processes, real guests
//! from wasm-examples/out (built by scripts/build-wasm-examples.sh).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value;

mod common;

fn guest(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../wasm-examples/out")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-wasm-examples.sh first",
        path.display()
    );
    path
}

/// One data dir for the whole test binary, so the module cache is shared
/// (concurrent writers are safe: temp file + rename).
fn data_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn phase(args: &[&str], stdin: &[u8]) -> Output {
    common::phase_in(data_dir(), args, stdin)
}

fn run(module: &str, flags: &[&str], stdin: &[u8]) -> Output {
    let path = guest(module);
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.push(path.to_str().unwrap());
    phase(&args, stdin)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The last line of stderr, checked to be phase-node's one-line diagnosis.
fn diagnosis(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("panicked at"),
        "phase-node panicked: {stderr}"
    );
    stderr.lines().last().unwrap_or_default().to_owned()
}

#[test]
fn hello_reverses_stdin() {
    let out = run("hello", &[], b"Hello, World");
    assert_eq!(text(&out.stdout), "dlroW ,olleH\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn hello_component_reverses_stdin() {
    let out = run("hello-component", &[], b"Hello, World");
    assert_eq!(text(&out.stdout), "dlroW ,olleH\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn infinite_loop_times_out() {
    let out = run("loop", &["--timeout", "1s", "--json"], b"");
    assert_eq!(out.status.code(), Some(124));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"]["kind"], "timed_out");
    // The guest's own wall time, measured inside the node: 1 s plus one tick.
    assert!(
        report["wall_time_ms"].as_f64().unwrap() < 2000.0,
        "{report}"
    );
    let out = run("loop", &["--timeout", "1s"], b"");
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(diagnosis(&out), "error: timed out after 1s");
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let out = run("loop", &["--fuel", "1000000"], b"");
    assert_eq!(out.status.code(), Some(135));
    assert_eq!(
        diagnosis(&out),
        "error: ran out of fuel after 1000000 instructions"
    );
}

#[test]
fn memory_hog_hits_the_memory_limit() {
    let out = run("memhog", &["--memory", "64MiB"], b"");
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(diagnosis(&out), "error: memory limit of 64 MiB reached");
}

#[test]
fn printing_forever_hits_the_output_limit() {
    let out = run("print-forever", &["--max-output", "1MiB"], b"");
    assert_eq!(out.status.code(), Some(138));
    assert_eq!(out.stdout.len(), 1 << 20);
    assert_eq!(diagnosis(&out), "error: output limit of 1 MiB reached");
}

#[test]
fn stack_overflow_is_reported_as_a_trap() {
    let out = run("stack-overflow", &[], b"");
    assert_eq!(out.status.code(), Some(134));
    assert!(diagnosis(&out).starts_with("error: guest trapped: "));
}

#[test]
fn guest_cannot_reach_host_files_or_environment() {
    let input = tempfile::tempdir().unwrap();
    std::fs::write(input.path().join("ok.txt"), "inside").unwrap();
    std::os::unix::fs::symlink("/etc", input.path().join("escape-link")).unwrap();
    let out = run("escape", &["--input", input.path().to_str().unwrap()], b"");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "escaped:\n{stdout}");
    assert!(stdout.contains("/etc/passwd: denied"), "{stdout}");
    assert!(
        stdout.contains("/input/../../../../etc/passwd: denied"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/input/escape-link/passwd: denied"),
        "{stdout}"
    );
    assert!(stdout.contains("env: []"), "{stdout}");
    assert!(!stdout.contains("must-not-leak"));
    // Positive control: a directory the user grants is readable, and the
    // guest reports the escape.
    let out = run("escape", &["--dir", "/etc::/etc"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("/etc/passwd: READ"));
}

#[test]
fn fs_permission_mounts_only_what_it_names() {
    let input = tempfile::tempdir().unwrap();
    std::fs::write(input.path().join("probe.txt"), "inside").unwrap();
    let input = input.path().to_str().unwrap();
    let probe = |flags: &[&str]| {
        let output = tempfile::tempdir().unwrap();
        let mut all = flags.to_vec();
        let out_flag = output.path().to_str().unwrap().to_owned();
        if flags.contains(&"write") {
            all.extend(["--output", &out_flag]);
        }
        let out = run("probe-fs", &all, b"");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let written = output.path().join("probe.txt").exists();
        (text(&out.stdout), written)
    };
    let lines = |stdout: &str, ok: [bool; 3]| {
        for (line, ok) in [
            "list /input",
            "read /input/probe.txt",
            "write /output/probe.txt",
        ]
        .into_iter()
        .zip(ok)
        {
            let want = if ok {
                format!("{line}: ok")
            } else {
                format!("{line}: denied")
            };
            assert!(stdout.contains(&want), "want `{want}` in:\n{stdout}");
        }
    };
    let (stdout, written) = probe(&["--fs", "write", "--input", input]);
    lines(&stdout, [true, true, true]);
    assert!(written, "/output is the host's --output folder");
    let (stdout, written) = probe(&["--fs", "read", "--input", input]);
    lines(&stdout, [true, true, false]);
    assert!(!written);
    let (stdout, written) = probe(&["--fs", "none"]);
    lines(&stdout, [false, false, false]);
    assert!(!written);
    // Asking for a folder the level does not mount is a usage error.
    let out = run("probe-fs", &["--fs", "none", "--input", input], b"");
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        diagnosis(&out),
        "error: --input is not mounted with --fs none: use --fs read or write"
    );
    let out = run("probe-fs", &["--fs", "all"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not one of none, read, write"));
}

#[test]
fn only_given_environment_variables_reach_the_guest() {
    let out = run(
        "escape",
        &["--env", "GIVEN=1", "--env", "PHASE_TEST_SECRET"],
        b"",
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(r#"env: ["GIVEN", "PHASE_TEST_SECRET"]"#),
        "{stdout}"
    );
}

#[test]
fn deterministic_runs_are_identical() {
    let first = run("clock-random", &["--deterministic", "--json"], b"");
    let second = run("clock-random", &["--deterministic", "--json"], b"");
    let a: Value = serde_json::from_slice(&first.stdout).unwrap();
    let b: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(a["status"]["kind"], "exited");
    assert_eq!(a["stdout"], b["stdout"]);
    assert_eq!(a["fuel_consumed"], b["fuel_consumed"]);
    // Without the flag the clocks and the random source are the host's.
    let c: Value = serde_json::from_slice(&run("clock-random", &["--json"], b"").stdout).unwrap();
    let d: Value = serde_json::from_slice(&run("clock-random", &["--json"], b"").stdout).unwrap();
    assert_ne!(c["stdout"], d["stdout"]);
}

#[test]
fn wordcount_reads_input_and_writes_output() {
    let input = tempfile::tempdir().unwrap();
    let output = tempfile::tempdir().unwrap();
    std::fs::create_dir(input.path().join("sub")).unwrap();
    std::fs::write(input.path().join("a.txt"), "one two three").unwrap();
    std::fs::write(input.path().join("sub/b.txt"), "four\nfive").unwrap();
    let out = run(
        "wordcount",
        &[
            "--input",
            input.path().to_str().unwrap(),
            "--output",
            output.path().to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = std::fs::read_to_string(output.path().join("report.txt")).unwrap();
    assert_eq!(report, "3 a.txt\n2 sub/b.txt\nTOTAL 5\n");
}

#[test]
fn sha256_of_stdin() {
    let out = run("sha256", &[], b"hello world\n");
    assert_eq!(
        text(&out.stdout),
        "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447  -\n"
    );
}

#[test]
fn guest_args_and_exit_code_pass_through() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $sizes (i32.const 0) (i32.const 4)))
        (call $exit (i32.load (i32.const 0)))))"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("argc.wasm");
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    let out = phase(
        &["run", path.to_str().unwrap(), "--", "-a", "b", "--c"],
        b"",
    );
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn inspect_tells_modules_and_components_apart() {
    let out = phase(
        &["inspect", "--json", guest("hello").to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(0));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["kind"], "core_module");
    assert_eq!(info["wasi"], "preview1");
    assert!(info["cid"].as_str().unwrap().starts_with("bafk"));
    assert!(
        info["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "_start")
    );

    let out = phase(
        &["inspect", guest("hello-component").to_str().unwrap()],
        b"",
    );
    let human = text(&out.stdout);
    assert!(human.contains("kind:    component"), "{human}");
    assert!(human.contains("wasi:    preview2 (0.2"), "{human}");
    assert!(human.contains("wasi:cli/run@0.2"), "{human}");
}

#[test]
fn bad_input_gets_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not wasm").unwrap();
    let library = dir.path().join("library.wasm");
    std::fs::write(
        &library,
        wat::parse_str(r#"(module (func (export "add")))"#).unwrap(),
    )
    .unwrap();
    let hello = guest("hello");
    // Flags whose values do not parse are usage errors (2), one line each.
    for (args, expected) in [
        (
            ["run", "--memory", "12parsecs", hello.to_str().unwrap()],
            "invalid value '12parsecs' for '--memory <SIZE>'",
        ),
        (
            ["run", "--timeout", "soon", hello.to_str().unwrap()],
            "invalid value 'soon' for '--timeout <DURATION>'",
        ),
    ] {
        let out = phase(&args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
    let cases: [(&[&str], &str); 4] = [
        (
            &["run", garbage.to_str().unwrap()],
            "not a WebAssembly module or component",
        ),
        (&["run", library.to_str().unwrap()], "no `_start` function"),
        (
            &["run", "/nonexistent/x.wasm"],
            "cannot read /nonexistent/x.wasm",
        ),
        (
            &["run", "--input", "/nonexistent", hello.to_str().unwrap()],
            "--input /nonexistent is not a directory",
        ),
    ];
    for (args, expected) in cases {
        let out = phase(args, b"");
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
    let out = phase(&["inspect", garbage.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

mod verify {
    use super::*;
    use phase_protocol::cid::raw_cid;
    use phase_protocol::{JobSpec, Keypair, Receipt, SignedReceipt, Status};

    fn signed(worker: &Keypair) -> SignedReceipt {
        let spec = JobSpec::new(raw_cid(b"module"));
        let receipt = Receipt {
            job: spec.id(),
            module: spec.module,
            stdin: None,
            input: None,
            result: raw_cid(b"result"),
            status: Status::OutOfFuel,
            fuel_consumed: 1_000_000,
            wall_time_ms: 12,
            compile_time_ms: 0,
            peak_memory: 65536,
            worker: worker.public().to_peer_id(),
            requester: Keypair::ed25519_from_bytes([9; 32])
                .unwrap()
                .public()
                .to_peer_id(),
            started_at_ms: 1_763_683_200_000,
            ended_at_ms: 1_763_683_200_012,
            runtime: "phase-node/test".into(),
            state: None,
            network: None,
        };
        SignedReceipt::sign(receipt, worker).unwrap()
    }

    fn verify(file: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["verify", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        phase(&args, b"")
    }

    #[test]
    fn a_valid_receipt_verifies_in_cbor_and_json() {
        let worker = Keypair::ed25519_from_bytes([1; 32]).unwrap();
        let receipt = signed(&worker);
        let dir = tempfile::tempdir().unwrap();
        let cbor = dir.path().join("r.cbor");
        let json = dir.path().join("r.json");
        std::fs::write(&cbor, receipt.to_cbor()).unwrap();
        std::fs::write(&json, receipt.to_json()).unwrap();
        for file in [&cbor, &json] {
            let out = verify(
                file,
                &["--expect-worker", &worker.public().to_peer_id().to_string()],
            );
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            let stdout = text(&out.stdout);
            assert!(stdout.contains("signature: valid"), "{stdout}");
            assert!(stdout.contains("status:    ran out of fuel"), "{stdout}");
            assert!(
                stdout.contains(&format!("receipt:   {}", receipt.cid())),
                "{stdout}"
            );
        }
        let out = verify(&cbor, &["--json"]);
        let value: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            value["receipt"]["worker"],
            worker.public().to_peer_id().to_string()
        );
        assert_eq!(value["receipt"]["status"]["kind"], "out_of_fuel");
    }

    #[test]
    fn wrong_signer_tampering_and_garbage_are_refused() {
        let worker = Keypair::ed25519_from_bytes([1; 32]).unwrap();
        let other = Keypair::ed25519_from_bytes([2; 32])
            .unwrap()
            .public()
            .to_peer_id();
        let receipt = signed(&worker);
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.cbor");
        std::fs::write(&good, receipt.to_cbor()).unwrap();
        let tampered = dir.path().join("tampered.json");
        std::fs::write(&tampered, receipt.to_json().replace("1000000", "1000001")).unwrap();
        let garbage = dir.path().join("garbage.bin");
        std::fs::write(&garbage, b"\x01\x02 definitely not a receipt").unwrap();
        let not_receipt = dir.path().join("other.json");
        std::fs::write(&not_receipt, r#"{"hello": "world"}"#).unwrap();

        let other = other.to_string();
        let cases: [(&Path, &[&str], &str); 4] = [
            (
                &good,
                &["--expect-worker", &other],
                "not by the expected worker",
            ),
            (&tampered, &[], "signature does not match"),
            (&garbage, &[], "is not a valid signed receipt"),
            (&not_receipt, &[], "unknown field `hello`"),
        ];
        for (file, extra, expected) in cases {
            let out = verify(file, extra);
            assert_eq!(out.status.code(), Some(1), "{}", file.display());
            let stderr = text(&out.stderr);
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains(expected), "{}: {stderr}", file.display());
            assert!(out.stdout.is_empty());
        }
    }
}

#[test]
fn states_are_made_read_listed_and_compared() {
    let dir = tempfile::tempdir().unwrap();
    let phase = |args: &[&str]| common::phase_in(dir.path(), args, b"");
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let a = ok(phase(&[
        "state",
        "set",
        "count=1",
        "name=phase",
        "hex:00ff=bin",
    ]));
    let a = a.trim();
    // The same map made another way has the same root.
    let again = ok(phase(&[
        "state",
        "set",
        "name=phase",
        "hex:00ff=bin",
        "count=1",
    ]));
    assert_eq!(again.trim(), a);
    assert_eq!(ok(phase(&["state", "get", a, "count"])), "1");
    assert_eq!(ok(phase(&["state", "get", a, "hex:00ff"])), "bin");
    assert_eq!(
        ok(phase(&["state", "ls", a])),
        "hex:00ff\t3\ncount\t1\nname\t5\n"
    );
    let ls: Value = serde_json::from_str(&ok(phase(&["state", "ls", a, "--json"]))).unwrap();
    assert_eq!(
        (ls["count"].as_u64(), ls["bytes"].as_u64()),
        (Some(3), Some(20))
    );

    let b = ok(phase(&[
        "state", "set", "--root", a, "count=2", "new=yes", "--delete", "name",
    ]));
    let b = b.trim();
    assert_eq!(
        ok(phase(&["state", "diff", a, b])),
        "~ count\n- name\n+ new\n"
    );
    let diff: Value = serde_json::from_str(&ok(phase(&["state", "diff", a, b, "--json"]))).unwrap();
    assert_eq!(diff[0]["before"], "1");
    assert_eq!(diff[0]["after"], "2");
    assert_eq!(ok(phase(&["state", "diff", a, a])), "");
    // Pinned: gc keeps both states whole.
    ok(phase(&["gc"]));
    assert_eq!(ok(phase(&["state", "get", b, "new"])), "yes");
    assert_eq!(ok(phase(&["state", "get", a, "name"])), "phase");

    // Bad input: one clear line each.
    let out = phase(&["state", "get", a, "missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        diagnosis(&out),
        format!("error: key `missing` is not in state {a}")
    );
    let not_a_state = ok(phase(&["add", "-"]));
    let out = phase(&["state", "ls", not_a_state.trim()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        diagnosis(&out).contains("has the wrong codec"),
        "{}",
        diagnosis(&out)
    );
    let out = phase(&["state", "set"]);
    assert!(
        diagnosis(&out).contains("nothing to set"),
        "{}",
        diagnosis(&out)
    );
    let long_key = format!("{}=v", "k".repeat(1025));
    let out = phase(&["state", "set", &long_key]);
    assert!(
        diagnosis(&out).contains("longer than the limit of 1024"),
        "{}",
        diagnosis(&out)
    );
}

/// `run` of a module that imports `phase`: the `state_after` it reports.
fn state_run(dir: &Path, module: &str, state: Option<&str>, args: &[&str]) -> (Output, Value) {
    let path = guest(module);
    let mut argv = vec!["run", "--json"];
    if let Some(root) = state {
        argv.extend(["--state", root]);
    }
    argv.push(path.to_str().unwrap());
    argv.extend_from_slice(args);
    let out = common::phase_in(dir, &argv, b"");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out, report)
}

#[test]
fn a_counter_counts_across_runs_through_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut root: Option<String> = None;
    let mut fuel = Vec::new();
    for n in 1..=3 {
        let (out, report) = state_run(dir.path(), "counter", root.as_deref(), &[]);
        assert_eq!(out.status.code(), Some(0), "{report}");
        assert_eq!(report["stdout"], format!("{n}\n"));
        assert_eq!(report["log"], serde_json::json!([format!("count={n}")]));
        if let Some(before) = &root {
            assert_eq!(report["state_before"], before.as_str(), "the runs chain");
        }
        root = Some(report["state_after"].as_str().unwrap().to_owned());
        fuel.push(report["host_fuel"].as_u64().unwrap());
    }
    // Three calls, each a fixed cost plus its bytes: at least 3 x 10,000;
    // the same work costs the same fuel.
    assert!(fuel[0] >= 30_000, "{fuel:?}");
    assert_eq!(fuel[1], fuel[2]);
    let root = root.unwrap();
    let got = common::phase_in(dir.path(), &["state", "get", &root, "count"], b"");
    assert_eq!(text(&got.stdout), "3");
    // Without --json the new root goes to stderr.
    let out = common::phase_in(
        dir.path(),
        &["run", "--state", &root, guest("counter").to_str().unwrap()],
        b"",
    );
    assert_eq!(text(&out.stdout), "4\n");
    assert!(
        text(&out.stderr).starts_with("state_after: bafy"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_component_shares_the_state_api_through_phase_host() {
    let dir = tempfile::tempdir().unwrap();
    // A core module leaves count=1; the component reads and changes it.
    let (_, first) = state_run(dir.path(), "counter", None, &[]);
    let first = first["state_after"].as_str().unwrap().to_owned();
    let (out, report) = state_run(
        dir.path(),
        "kv-component",
        Some(&first),
        &["+count", "name=ada", "name"],
    );
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["stdout"], "2\nname=ada\n");
    assert_eq!(report["state_before"], first.as_str());
    assert_eq!(report["log"], serde_json::json!(["set name"]));
    // get, set, set, get: four calls at 10,000 fuel and their bytes.
    let fuel = report["host_fuel"].as_u64().unwrap();
    assert!((40_000..50_000 + 2 * 200_000).contains(&fuel), "{fuel}");
    let second = report["state_after"].as_str().unwrap().to_owned();
    let got = common::phase_in(dir.path(), &["state", "ls", &second], b"");
    assert_eq!(text(&got.stdout), "count\t1\nname\t3\n");
    // The same calls on the same state cost the same fuel.
    let (_, again) = state_run(
        dir.path(),
        "kv-component",
        Some(&first),
        &["+count", "name=ada", "name"],
    );
    assert_eq!(again["host_fuel"], report["host_fuel"]);
    assert_eq!(again["state_after"], second.as_str(), "one map, one root");
    // A run that exits 1 keeps none of its writes or logs.
    let (out, report) = state_run(
        dir.path(),
        "kv-component",
        Some(&second),
        &["-name", "lost=1", "absent"],
    );
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["stdout"], "absent absent\n");
    assert_eq!(report["state_after"], second.as_str());
    assert_eq!(report["log"], serde_json::json!([]));
    // Without --state a component that imports phase:host starts empty and
    // learns who asked.
    let (out, report) = state_run(dir.path(), "kv-component", None, &["count", "@caller"]);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let stdout = report["stdout"].as_str().unwrap();
    let (absent, caller) = stdout.split_once('\n').unwrap();
    assert_eq!(absent, "count absent");
    assert!(
        caller.trim().len() > 60 && caller.trim().chars().all(|c| c.is_ascii_hexdigit()),
        "{stdout}"
    );
}

#[test]
fn run_net_gives_a_component_exactly_the_hosts_named() {
    let fetch = guest("fetch-url");
    let fetch = fetch.to_str().unwrap();
    // Nothing listens on 127.0.0.1:9 here: an allowed request goes out and
    // is refused by the OS; a request elsewhere never goes out.
    let out = phase(
        &[
            "run",
            "--json",
            "--net",
            "127.0.0.1:9",
            fetch,
            "http://127.0.0.1:9/",
        ],
        b"",
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report["stderr"]
            .as_str()
            .unwrap()
            .contains("ConnectionRefused"),
        "{report}"
    );
    assert_eq!(report["net"]["requests"], 1, "{report}");
    let out = phase(
        &[
            "run",
            "--json",
            "--net",
            "127.0.0.1:9",
            fetch,
            "http://127.0.0.1:10/",
        ],
        b"",
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["stderr"]
            .as_str()
            .unwrap()
            .contains("HTTP-request-denied"),
        "{report}"
    );
    assert_eq!(report["net"]["denied"], 1, "{report}");
    // Bad entries and contradictions are one clear line.
    let out = phase(&["run", "--net", "Example.org", fetch], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not host:port"),
        "{}",
        text(&out.stderr)
    );
    let out = phase(
        &["run", "--net", "127.0.0.1:9", "--deterministic", fetch],
        b"",
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        diagnosis(&out).contains("cannot be deterministic"),
        "{}",
        diagnosis(&out)
    );
}

#[test]
fn a_run_that_fails_commits_nothing_and_bad_state_calls_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (_, start) = state_run(dir.path(), "counter", None, &[]);
    let start = start["state_after"].as_str().unwrap().to_owned();
    for (how, code) in [("trap", 134), ("exit3", 3), ("bad-pointer", 134)] {
        let (out, report) = state_run(dir.path(), "state-abuse", Some(&start), &[how]);
        assert_eq!(out.status.code(), Some(code), "{how}: {report}");
        assert_eq!(
            report["state_after"],
            start.as_str(),
            "{how} commits nothing"
        );
        assert_eq!(report["log"], serde_json::json!([]));
    }
    let (_, report) = state_run(dir.path(), "state-abuse", Some(&start), &["bad-pointer"]);
    let reason = report["status"]["message"].as_str().unwrap();
    assert!(
        reason.starts_with("phase.state_get:") && reason.contains("outside the guest's memory"),
        "{reason}"
    );
    for how in ["big-value", "long-key"] {
        let (out, report) = state_run(dir.path(), "state-abuse", Some(&start), &[how]);
        assert_eq!(out.status.code(), Some(0), "{how}: {report}");
        assert_eq!(report["stdout"], "state_set returned -1\n", "{how}");
        // What it set before the refused call is kept: it exited 0.
        let after = report["state_after"].as_str().unwrap();
        let got = common::phase_in(dir.path(), &["state", "get", after, "written"], b"");
        assert_eq!(text(&got.stdout), "yes");
        let got = common::phase_in(dir.path(), &["state", "ls", after], b"");
        assert_eq!(text(&got.stdout), "count\t1\nwritten\t3\n", "{how}");
    }
    // A root that is not in the store, or not a state.
    let out = common::phase_in(
        dir.path(),
        &[
            "run",
            "--state",
            "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
            guest("counter").to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        diagnosis(&out).contains("is not in the local store"),
        "{}",
        diagnosis(&out)
    );
    let file = common::phase_in(dir.path(), &["add", "-"], b"not a state");
    let file = text(&file.stdout);
    let (out, report) = state_run(dir.path(), "counter", Some(file.trim()), &[]);
    assert_eq!(out.status.code(), Some(134), "{report}");
    assert!(
        report["status"]["message"]
            .as_str()
            .unwrap()
            .contains("wrong codec"),
        "{report}"
    );
}

#[test]
fn submit_audit_takes_a_chance_for_a_deterministic_job_only() {
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.job.json");
    let out = phase(&["submit", "--audit", "2", job.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`2` is not a chance from 0 to 1"),
        "{}",
        text(&out.stderr)
    );
    // A job that is not deterministic: refused before the network.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"module": {{"path": "{}"}}}}"#,
            guest("hello").display()
        ),
    )
    .unwrap();
    let out = common::phase_in(
        dir.path(),
        &["submit", "--audit", "0.5", file.to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        diagnosis(&out).contains("--audit compares a second worker's result"),
        "{}",
        diagnosis(&out)
    );
    let out = common::phase_in(
        dir.path(),
        &["submit", "--audit-local", file.to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        diagnosis(&out).contains("--audit-local compares a rerun's result"),
        "{}",
        diagnosis(&out)
    );
    let out = phase(
        &[
            "submit",
            "--audit",
            "1",
            "--audit-local",
            job.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn ledger_of_a_data_dir_no_node_used_says_so_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh");
    let out = common::phase_in(&fresh, &["ledger"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", diagnosis(&out));
    assert!(
        diagnosis(&out).contains("no node has started in"),
        "{}",
        diagnosis(&out)
    );
    assert_eq!(
        text(&out.stderr).trim().lines().count(),
        1,
        "{}",
        diagnosis(&out)
    );
    assert!(
        !fresh.join("identity.key").exists(),
        "reading the ledger made an identity"
    );
}
