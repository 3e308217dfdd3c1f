//! `add`, `cat`, `get`, `car`, `pin`, `gc` and `verify CID` as a user runs
//! them, and a crash in the middle of `add`.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use phase_node::store::BlockStore;
use phase_protocol::unixfs::{self, FileBuilder};

use common::phase_in as phase;

mod common;

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

#[test]
fn add_cat_get_pin_gc_and_car() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let d = data.path();
    std::fs::write(work.path().join("hello.txt"), "hello world\n").unwrap();
    let hello = ok(phase(
        d,
        &["add", work.path().join("hello.txt").to_str().unwrap()],
        b"",
    ));
    assert_eq!(
        hello.trim(),
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    );
    assert_eq!(ok(phase(d, &["cat", hello.trim()], b"")), "hello world\n");

    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/big.bin"), pattern(600_000)).unwrap();
    std::fs::write(tree.join("a.txt"), "a").unwrap();
    let out = ok(phase(
        d,
        &["add", "-r", "--json", tree.to_str().unwrap()],
        b"",
    ));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let root = json["root"].as_str().unwrap().to_owned();
    let entries = json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[3]["path"], "sub/big.bin");
    assert_eq!(
        entries[3]["cid"],
        unixfs::file_cid(&pattern(600_000)).to_string()
    );

    let copy = work.path().join("copy");
    ok(phase(d, &["get", &root, "-o", copy.to_str().unwrap()], b""));
    assert_eq!(
        std::fs::read(copy.join("sub/big.bin")).unwrap(),
        pattern(600_000)
    );

    // CAR out of this store, into a fresh one.
    let car = work.path().join("tree.car");
    ok(phase(
        d,
        &["car", "export", &root, "-o", car.to_str().unwrap()],
        b"",
    ));
    let other = tempfile::tempdir().unwrap();
    assert_eq!(
        ok(phase(
            other.path(),
            &["car", "import", car.to_str().unwrap()],
            b""
        ))
        .trim(),
        root
    );
    let copy2 = work.path().join("copy2");
    ok(phase(
        other.path(),
        &["get", &root, "-o", copy2.to_str().unwrap()],
        b"",
    ));
    assert_eq!(std::fs::read(copy2.join("a.txt")).unwrap(), b"a");

    // Pins decide what gc keeps.
    let pins = ok(phase(d, &["pin", "ls"], b""));
    assert!(pins.contains(&root) && pins.contains(hello.trim()));
    ok(phase(d, &["pin", "rm", &root], b""));
    assert!(ok(phase(d, &["gc"], b"")).starts_with("removed 7 blocks"));
    assert_eq!(ok(phase(d, &["cat", hello.trim()], b"")), "hello world\n");
    let gone = phase(d, &["cat", &root], b"");
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not in the local store"));
}

#[test]
fn bad_input_is_one_clear_line() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let d = data.path();
    let bad_car = work.path().join("bad.car");
    std::fs::write(&bad_car, b"\x05hello").unwrap();
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["cat", "not-a-cid"], "invalid value"),
        (
            vec!["add", "/nonexistent/file"],
            "cannot add /nonexistent/file",
        ),
        (
            vec!["car", "import", bad_car.to_str().unwrap()],
            "is not a valid CAR v1",
        ),
        (
            vec![
                "pin",
                "add",
                "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
            ],
            "not in the local store",
        ),
        (
            vec![
                "get",
                "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
                "-o",
                "/tmp/x",
            ],
            "not in the local store",
        ),
    ];
    for (args, expected) in cases {
        let out = phase(d, &args, b"");
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn verify_reads_a_receipt_from_the_store_by_cid() {
    use phase_protocol::cid::raw_cid;
    use phase_protocol::{JobSpec, Keypair, Message, Receipt, SignedReceipt, Status};
    let data = tempfile::tempdir().unwrap();
    let worker = Keypair::ed25519_from_bytes([3; 32]).unwrap();
    let spec = JobSpec::new(raw_cid(b"m"));
    let receipt_of = |spec: &JobSpec| Receipt {
        job: spec.id(),
        module: spec.module,
        stdin: None,
        input: None,
        result: raw_cid(b"r"),
        status: Status::Exited { code: 0 },
        fuel_consumed: 1,
        wall_time_ms: 1,
        compile_time_ms: 0,
        peak_memory: 1,
        worker: worker.public().to_peer_id(),
        requester: worker.public().to_peer_id(),
        started_at_ms: 0,
        ended_at_ms: 1,
        runtime: "test".into(),
        state: None,
        network: None,
    };
    let signed = SignedReceipt::sign(receipt_of(&spec), &worker).unwrap();
    // As another command would: blocks as files, the state database not
    // held.
    let store = BlockStore::open(data.path().join("store"))
        .await
        .unwrap()
        .with_transient_state();
    store
        .put(signed.cid(), signed.to_cbor().into())
        .await
        .unwrap();
    let out = phase(data.path(), &["verify", &signed.cid().to_string()], b"");
    assert!(ok(out).contains("signature: valid"));
    let missing = phase(
        data.path(),
        &["verify", &raw_cid(b"nothing").to_string()],
        b"",
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not in the local store"));

    // --rerun names what it cannot find, and refuses what proves nothing.
    let rerun = |receipt: &SignedReceipt| {
        let out = phase(
            data.path(),
            &["verify", "--rerun", &receipt.cid().to_string()],
            b"",
        );
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = rerun(&signed);
    assert!(
        said.contains(&format!(
            "the job's job spec {} is not in the local store, and no daemon is running to fetch it",
            spec.id()
        )),
        "{said}"
    );
    store.put(spec.id().0, spec.encode().into()).await.unwrap();
    let said = rerun(&signed);
    assert!(said.contains("is not deterministic"), "{said}");
    let mut deterministic = spec.clone();
    deterministic.deterministic = true;
    store
        .put(deterministic.id().0, deterministic.encode().into())
        .await
        .unwrap();
    let signed = SignedReceipt::sign(receipt_of(&deterministic), &worker).unwrap();
    store
        .put(signed.cid(), signed.to_cbor().into())
        .await
        .unwrap();
    let said = rerun(&signed);
    assert!(
        said.contains(&format!(
            "the job's module {} is not in the local store",
            spec.module
        )),
        "{said}"
    );
}

/// A block damaged on disk after it was stored: reads trust the disk
/// (hashed once, on the way in), and `store verify` finds it by name.
#[test]
fn store_verify_finds_a_block_corrupted_on_disk() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("three.bin");
    std::fs::write(&file, pattern(600_000)).unwrap();
    let root = ok(phase(data.path(), &["add", file.to_str().unwrap()], b""));
    let root = root.trim();
    assert!(ok(phase(data.path(), &["store", "verify"], b"")).contains("intact"));
    // The first leaf: 256 KiB of the pattern.
    let leaf = phase_protocol::cid::raw_cid(&pattern(600_000)[..256 << 10]).to_string();
    let blocks = data.path().join("store/blocks");
    let path = std::fs::read_dir(&blocks)
        .unwrap()
        .map(|shard| shard.unwrap().path().join(&leaf))
        .find(|p| p.exists())
        .expect("the leaf is stored as a file");
    let mut damaged = std::fs::read(&path).unwrap();
    damaged[1000] ^= 1;
    std::fs::write(&path, damaged).unwrap();
    let out = phase(data.path(), &["store", "verify"], b"");
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains(&format!("corrupt: {leaf}")), "{said}");
    assert!(said.contains("1 corrupt, 0 missing"), "{said}");
    let out = phase(data.path(), &["store", "verify", "--json"], b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["corrupt"], serde_json::json!([leaf]));
    assert_eq!(json["roots"], 1, "the added root is pinned and walked");
    assert!(root.starts_with("bafy"));
}

/// kill -9 of a real `add` of 256 MiB: every block left behind verifies, and
/// running the same `add` again completes with the right CID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_add_leaves_no_torn_block() {
    const SIZE: usize = 256 << 20;
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("big.bin");
    let mut expected = FileBuilder::new();
    let mut sink = Vec::new();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let chunk = pattern(1 << 20);
        for i in 0..SIZE / chunk.len() {
            let mut c = chunk.clone();
            c[0] = i as u8; // every MiB differs
            f.write_all(&c).unwrap();
            expected.write(&c, &mut sink);
            sink.clear();
        }
    }
    let expected = expected.finish(&mut sink).cid;

    let mut child = Command::new(env!("CARGO_BIN_EXE_phase-node"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["add", file.to_str().unwrap()])
        .env("RUST_LOG", "phase_node::store=trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill it once its log says 50 blocks are stored: a wait on the
    // process's own events, with the test's deadline around it.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let stored_50 = std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("stored block"))
            .nth(49)
            .is_some();
        let _ = tx.send(stored_50);
    });
    let stored_50 = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("add never stored 50 blocks");
    assert!(stored_50, "add ended before storing 50 blocks");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Re-hashed on read: a torn block would be an error here.
    let store = BlockStore::open(data.path().join("store"))
        .await
        .unwrap()
        .with_hash_on_read(true);
    let cids = store.cids().await.unwrap();
    assert!(!cids.is_empty());
    for cid in &cids {
        store
            .get(cid)
            .await
            .unwrap()
            .expect("listed block is readable");
    }
    drop(store);
    let out = phase(data.path(), &["add", file.to_str().unwrap()], b"");
    assert_eq!(ok(out).trim(), expected.to_string());
}
