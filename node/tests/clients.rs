//! The clients in other languages, tested against real daemons: the Python
//! client's pytest suite (clients/python/tests, which also checks every
//! route of node/openapi.json against the daemons) and the PHP client's
//! PHPUnit suite (clients/php/tests) run with this build's binary. The test
//! command (scripts/test.sh) makes what they need: the Python virtualenv
//! (pytest, cryptography), PHP with curl and sodium, Composer and PHPUnit
//! from Debian's packages, and the PHP package's Composer autoloader.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a client's test suite (`command`, set up by the caller, in its
/// folder) against this build's binary, with temp files of its own; it
/// must pass and its summary must say `expected`.
fn run_suite(mut command: Command, expected: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let child = command
        .env("PHASE_NODE", env!("CARGO_BIN_EXE_phase-node"))
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client's test runner starts (scripts/test.sh installs it)");
    let out = common::finish_within(child, std::time::Duration::from_secs(600));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains(expected), "{said}");
}

#[test]
fn the_python_client_submits_verifies_and_refuses_against_real_daemons() {
    let py = root().join("clients/python");
    let python = py.join(".venv/bin/python");
    assert!(
        python.exists(),
        "no {} — run scripts/test.sh, which makes it",
        python.display()
    );
    let mut pytest = Command::new(&python);
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(&py)
        .env("PYTHONPATH", &py)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run_suite(pytest, "7 passed");
}

#[test]
fn the_php_client_submits_verifies_and_refuses_against_real_daemons() {
    let php = root().join("clients/php");
    assert!(
        php.join("vendor/autoload.php").exists(),
        "no clients/php/vendor/autoload.php — run scripts/test.sh, which installs PHP, \
         Composer and PHPUnit and runs composer dump-autoload"
    );
    let mut phpunit = Command::new("phpunit");
    phpunit.current_dir(&php);
    run_suite(phpunit, "OK (6 tests");
}
