//! `scripts/testnet.sh --check` with 3 real `phase-node` processes on loopback.

use std::process::Command;

/// Runs the script with `args` against the binary under test; its stdout,
/// once it has succeeded.
fn testnet(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/testnet.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .env("PHASE_NODE", env!("CARGO_BIN_EXE_phase-node"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn testnet_script_check_passes_with_three_nodes() {
    let stdout = testnet(&["--nodes", "3", "--check"]);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("node ")).count(),
        3,
        "{stdout}"
    );
    assert!(stdout.contains("fetched on node 3: identical"), "{stdout}");
}

/// `--check-jobs`: 5 real daemons; every example job submitted from the
/// last one, outputs and receipts checked, 3 replicas that agree.
#[test]
fn testnet_script_check_jobs_runs_every_example_job_on_five_nodes() {
    let stdout = testnet(&["--nodes", "5", "--check-jobs"]);
    for job in [
        "hello",
        "hello-component",
        "kv-component",
        "sha256",
        "wordcount",
        "deterministic",
    ] {
        assert!(
            stdout.contains(&format!("check-jobs: {job}: exited with code 0")),
            "{job}: {stdout}"
        );
    }
    assert!(
        stdout.contains("hello from a short-lived requester: stdout as expected"),
        "{stdout}"
    );
    assert!(stdout.contains("out-of-fuel job: exit 135"), "{stdout}");
    assert!(
        stdout.contains("submit -o: result package written"),
        "{stdout}"
    );
    assert!(stdout.contains("status: done"), "{stdout}");
    assert!(stdout.contains("all example jobs passed"), "{stdout}");
}
