//! The README, run as written: the blocks marked `<!-- tested: NAME -->`
//! are a user's commands. "two-commands": the quickstart runs (the other
//! command is the test suite itself: `.ci/run` must run exactly it);
//! "walkthrough": the 3-node walk-through under "Compute over the network",
//! as one bash script from the repository's root. Both must leave no
//! daemon behind. Every link in the README and in `docs/` resolves to a
//! file (and heading) that exists, and every page of `docs/` is linked
//! from the README.

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
    let (stdout, stderr) = assert_ok(&out);
    assert!(stdout.contains("dlroW ,olleH"), "{stdout}");
    assert!(stdout.contains("\"agreed\": true"), "{stdout}");
    assert!(
        stderr.contains("audit: passed: a rerun here gave what the receipt says"),
        "--audit-local: {stderr}"
    );
    assert!(
        stdout.contains("signature: valid (ed25519, signed by the worker)"),
        "{stdout}"
    );
    assert!(stdout.contains("done"), "status: {stdout}");
    assert!(
        stdout.contains("rerun:     the same as the receipt says"),
        "verify --rerun: {stdout}"
    );
    assert!(
        stdout.contains("ok: the head is signed by 12D3KooW") && stdout.contains("its 4 entries"),
        "ledger verify: {stdout}"
    );
    assert!(stdout.contains("count: 3"), "the counter's state: {stdout}");
}

/// The GitHub anchor of a heading: lower case, letters, digits, `-` and
/// `_` kept, spaces turned into `-`, everything else dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Outside fenced code: the headings' anchors and the relative link targets.
fn headings_and_links(markdown: &str) -> (Vec<String>, Vec<String>) {
    let (mut headings, mut links, mut fenced) = (Vec::new(), Vec::new(), false);
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if line.starts_with('#') {
            headings.push(anchor(line.trim_start_matches('#')));
        }
        for (_, rest) in line.match_indices("](").map(|(i, _)| line.split_at(i + 2)) {
            let target = rest.split(')').next().unwrap_or_default();
            if !target.contains("://") && !target.is_empty() {
                links.push(target.to_owned());
            }
        }
    }
    (headings, links)
}

#[test]
fn every_link_in_the_readme_and_docs_resolves() {
    let mut pages = vec![root().join("README.md"), root().join("vendor/README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ has no pages");
    pages.extend(docs.iter().cloned());

    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let (own_headings, links) = headings_and_links(&text);
        for link in links {
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let (target, headings) = if file.is_empty() {
                (page.clone(), own_headings.clone())
            } else {
                let target = page.parent().unwrap().join(file);
                if !target.exists() {
                    broken.push(format!("{}: {link}: no such file", page.display()));
                    continue;
                }
                let headings = if target.extension().is_some_and(|e| e == "md") {
                    headings_and_links(&std::fs::read_to_string(&target).unwrap()).0
                } else {
                    Vec::new()
                };
                (target, headings)
            };
            if !fragment.is_empty() && !headings.iter().any(|h| h == fragment) {
                broken.push(format!(
                    "{}: {link}: {} has no heading #{fragment}",
                    page.display(),
                    target.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));

    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let (_, readme_links) = headings_and_links(&readme);
    for doc in &docs {
        let name = format!("docs/{}", doc.file_name().unwrap().to_string_lossy());
        assert!(
            readme_links.iter().any(|l| l == &name),
            "the README does not link {name}"
        );
    }
}

#[test]
fn anchors_are_computed_as_github_does() {
    assert_eq!(anchor(" At scale (2026-11-28)"), "at-scale-2026-11-28");
    assert_eq!(
        anchor(" 2026-11-21: worker retention by count"),
        "2026-11-21-worker-retention-by-count"
    );
    assert_eq!(
        anchor(" `job.json`, receipts and `verify`"),
        "jobjson-receipts-and-verify"
    );
}
