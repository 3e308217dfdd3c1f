//! `scripts/testnet.sh --check` with 3 real `phase-node` processes on loopback.

use std::process::Command;

#[test]
fn testnet_script_check_passes_with_three_nodes() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/testnet.sh");
    let out = Command::new("bash")
        .args([script, "--nodes", "3", "--check"])
        .env("PHASE_NODE", env!("CARGO_BIN_EXE_phase-node"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("node ")).count(),
        3,
        "{stdout}"
    );
    assert!(stdout.contains("fetched on node 3: identical"), "{stdout}");
}
