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

#[test]
fn the_python_client_submits_verifies_and_refuses_against_real_daemons() {
    let py = root().join("clients/python");
    let python = py.join(".venv/bin/python");
    assert!(
        python.exists(),
        "no {} — run scripts/test.sh, which makes it",
        python.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let child = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(&py)
        .env("PHASE_NODE", env!("CARGO_BIN_EXE_phase-node"))
        .env("PYTHONPATH", &py)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = common::finish_within(child, std::time::Duration::from_secs(600));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("7 passed"), "{said}");
}

#[test]
fn the_php_client_submits_verifies_and_refuses_against_real_daemons() {
    let php = root().join("clients/php");
    assert!(
        php.join("vendor/autoload.php").exists(),
        "no clients/php/vendor/autoload.php — run scripts/test.sh, which installs PHP, \
         Composer and PHPUnit and runs composer dump-autoload"
    );
    let tmp = tempfile::tempdir().unwrap();
    let child = Command::new("phpunit")
        .current_dir(&php)
        .env("PHASE_NODE", env!("CARGO_BIN_EXE_phase-node"))
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("phpunit runs (scripts/test.sh installs it)");
    let out = common::finish_within(child, std::time::Duration::from_secs(600));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("OK (6 tests"), "{said}");
}
