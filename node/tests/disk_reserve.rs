//! Disk space is a budget: a node whose disk is below its free-space
//! reserve (`[store] reserve`; here one larger than any disk) refuses new
//! jobs, uploads and fetches with one clear line, and keeps answering.

use std::io::{Read, Write};
use std::path::Path;

mod common;

use common::{Daemon, random_file};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn below_its_reserve_a_node_refuses_jobs_uploads_and_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("full.toml");
    std::fs::write(&config, "[store]\nreserve = \"1000TiB\"\n").unwrap();
    let full = Daemon::start(
        &dir.path().join("full"),
        &["--config", config.to_str().unwrap()],
        None,
    );
    let other = Daemon::start(
        &dir.path().join("other"),
        &["--bootstrap", &full.addr],
        None,
    );

    // A job: refused with the reason, and the requester says so.
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.job.json");
    let out = other.cli(&[
        "submit",
        "--worker",
        full.peer_id(),
        hello.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("worker is low on disk"), "{stderr}");
    assert!(stderr.contains("below its reserve of 1000 TiB"), "{stderr}");

    // An upload to its API.
    let mut upload = std::os::unix::net::UnixStream::connect(full.socket()).unwrap();
    upload
        .write_all(b"POST /api/v1/add HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
        .unwrap();
    let mut answer = String::new();
    upload.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("below the reserve of 1000 TiB"), "{answer}");

    // A fetch of content from a peer.
    let file = dir.path().join("file");
    random_file(&file, 100_000);
    let out = other.cli(&["add", file.to_str().unwrap()]);
    let cid = text(&out.stdout).trim().to_owned();
    let out = full.cli(&["get", &cid, "-o", dir.path().join("got").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("below the reserve"),
        "{}",
        text(&out.stderr)
    );

    // It still answers.
    assert!(full.cli(&["id"]).status.success());
}
