//! Helpers shared by the CLI test binaries.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `phase-node --data-dir DATA ARGS…` with `stdin`, collecting its output.
/// `PHASE_TEST_SECRET` is set in its environment, to show it does not leak.
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
