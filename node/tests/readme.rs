//! The README, run as written: the blocks marked `<!-- tested: NAME -->`
//! are a user's commands. "two-commands": the quickstart runs (the other
//! command is the test suite itself: `.ci/run` must run exactly it);
//! "walkthrough": the 3-node walk-through under "Compute over the network",
//! as one bash script from the repository's root. Both must leave no
//! daemon behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `sh` block that follows `<!-- tested: NAME -->` in the README.
fn block(name: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let marker = format!("<!-- tested: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("the README has no {marker}"))
        .1;
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .unwrap_or_else(|| panic!("{marker} is not followed by a sh block"));
    body.split_once("\n```")
        .expect("the block ends")
        .0
        .to_owned()
}

/// Commands of a block: its lines without comments and blank lines.
fn commands(block: &str) -> Vec<String> {
    block
        .lines()
        .map(|l| l.split_once('#').map_or(l, |(cmd, _)| cmd).trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Runs `script` with bash from the repository's root, `phase-node` on the
/// PATH, temp files under `tmp`; then checks that nothing it started runs.
fn run_as_user(script: &str, tmp: &Path) -> Output {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_phase-node"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(root())
        .env("PATH", path)
        .env("TMPDIR", tmp)
        .env("PHASE_NODE", &bin)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = common::finish_within(child, std::time::Duration::from_secs(600));
    let left = processes_under(tmp);
    for pid in &left {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    assert!(
        left.is_empty(),
        "processes left running: {left:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Processes whose command line names a path under `dir`.
fn processes_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&dir))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn assert_ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn the_two_commands_quickstart_runs_a_job_over_the_network() {
    let commands = commands(&block("two-commands"));
    assert_eq!(commands, ["scripts/quickstart.sh", "scripts/test.sh"]);
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.contains("exec scripts/test.sh"), "{ci}");

    let tmp = tempfile::tempdir().unwrap();
    let out = run_as_user(&commands[0], tmp.path());
    let (stdout, _) = assert_ok(&out);
    assert!(stdout.contains("dlroW ,olleH"), "{stdout}");
    assert!(
        stdout.contains("signature: valid (ed25519, signed by the worker)"),
        "{stdout}"
    );
    assert!(stdout.contains("worker:    12D3KooW"), "{stdout}");
}

#[test]
fn the_walkthrough_runs_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_as_user(&block("walkthrough"), tmp.path());
    let (stdout, _) = assert_ok(&out);
    assert!(stdout.contains("dlroW ,olleH"), "{stdout}");
    assert!(stdout.contains("\"agreed\": true"), "{stdout}");
    assert!(
        stdout.contains("signature: valid (ed25519, signed by the worker)"),
        "{stdout}"
    );
    assert!(stdout.contains("done"), "status: {stdout}");
}
