//! Whatever a guest does to `/output`, the requester gets a signed receipt,
//! and nothing over the job's `max_output` is stored, pinned or served.

use std::time::Duration;

use bytes::Bytes;
use phase_node::config::NodeConfig;
use phase_node::node::NodeHandle;
use phase_node::requester::SubmitOptions;
use phase_node::store::files;
use phase_protocol::{ByteSize, Cid, JobSpec, Limits, Status, unixfs};

use phase_tests::{TestNet, loopback_config, within};

/// One worker (node 0, one slot), then one requester.
async fn net() -> TestNet {
    let mut worker: NodeConfig = loopback_config();
    worker.worker.enabled = true;
    worker.worker.slots = 1;
    let net = TestNet::with_configs(vec![worker, loopback_config()]).await;
    net.converge().await;
    net
}

/// A core module whose `_start` opens files under `/output` (fd 3) with
/// `body`, given `$open` (name at 100, length 5, fd to 200) and `$write`
/// (64 KiB from 1024 to the fd at 200).
fn output_module(body: &str) -> Bytes {
    let wat = format!(
        r#"(module
          (import "wasi_snapshot_preview1" "path_open"
            (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 2)
          (data (i32.const 100) "00000")
          ;; one iovec at 16: 64 KiB at 1024
          (data (i32.const 16) "\00\04\00\00\00\00\01\00")
          (func $open (result i32)
            (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 5)
              (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 200)))
          (func $write (result i32)
            (call $fd_write (i32.load (i32.const 200)) (i32.const 16) (i32.const 1) (i32.const 300)))
          ;; writes $i as five digits at 100
          (func $name (param $i i32) (local $k i32)
            (local.set $k (i32.const 104))
            (loop $d
              (i32.store8 (local.get $k)
                (i32.add (i32.const 48) (i32.rem_u (local.get $i) (i32.const 10))))
              (local.set $i (i32.div_u (local.get $i) (i32.const 10)))
              (local.set $k (i32.sub (local.get $k) (i32.const 1)))
              (br_if $d (i32.ge_u (local.get $k) (i32.const 100)))))
          (func (export "_start") (local $i i32)
            {body}
            (call $exit (i32.const 0))))"#
    );
    Bytes::from(wat::parse_str(wat).unwrap())
}

async fn submit(net: &TestNet, module: Bytes, max_output: u64) -> (phase_protocol::Receipt, Cid) {
    let c: &NodeHandle = &net.nodes[1];
    let root = files::add_bytes(c.store(), module).await.unwrap();
    let mut spec = JobSpec::new(root.cid);
    // Each submission a job of its own.
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    spec.nonce = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    spec.limits = Limits {
        fuel: 10_000_000_000,
        memory: ByteSize(16 << 20),
        timeout: Duration::from_secs(60),
        max_output: ByteSize(max_output),
    };
    let report = within(
        c.requester()
            .submit(&spec, &SubmitOptions::default(), &|_| {}),
    )
    .await
    .expect("the requester gets the receipt");
    let run = &report.results[0];
    let receipt = run.receipt.verify_signer(&run.worker).unwrap();
    let result = receipt.result;
    (receipt.clone(), result)
}

async fn entry(node: &NodeHandle, result: Cid, name: &str) -> Option<Vec<u8>> {
    let cid = files::entry(node.store(), result, name).await.unwrap()?;
    Some(files::cat_to_vec(node.store(), cid).await.unwrap())
}

/// Bytes of all blocks in `node`'s store.
async fn stored_bytes(node: &NodeHandle) -> usize {
    let mut total = 0;
    for cid in node.store().cids().await.unwrap() {
        total += node.store().get(&cid).await.unwrap().map_or(0, |b| b.len());
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_over_max_output_is_cut_and_the_receipt_still_comes() {
    let net = net().await;
    // 48 writes of 64 KiB: 3 MiB into /output/00000, over a 1 MiB cap.
    let module = output_module(
        "(drop (call $open))
         (loop $w
           (drop (call $write))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $w (i32.lt_u (local.get $i) (i32.const 48))))",
    );
    let before = stored_bytes(&net.nodes[0]).await;
    let (receipt, result) = submit(&net, module, 1 << 20).await;
    assert_eq!(receipt.status, Status::OutputLimit);
    let c = &net.nodes[1];
    let note = entry(c, result, "output-cut")
        .await
        .expect("the package says it was cut");
    assert!(
        String::from_utf8_lossy(&note).contains("more than max_output"),
        "{}",
        String::from_utf8_lossy(&note)
    );
    let output = files::entry(c.store(), result, "output")
        .await
        .unwrap()
        .unwrap();
    let (_, empty) = phase_protocol::unixfs::directory(Vec::new()).unwrap();
    assert_eq!(
        output, empty.cid,
        "nothing over the limit is in the package"
    );
    let grown = stored_bytes(&net.nodes[0]).await - before;
    assert!(grown < 1 << 20, "the worker stored {grown} bytes");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_files_in_output_come_back_as_a_sharded_directory() {
    let net = net().await;
    let module = output_module(
        "(loop $f
           (call $name (local.get $i))
           (drop (call $fd_close (if (result i32) (i32.eqz (call $open))
             (then (i32.load (i32.const 200))) (else (i32.const -1)))))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $f (i32.lt_u (local.get $i) (i32.const 10000))))",
    );
    let (receipt, result) = submit(&net, module, 1 << 20).await;
    assert_eq!(receipt.status, Status::Exited { code: 0 });
    let c: &NodeHandle = &net.nodes[1];
    let cut = files::entry(c.store(), result, "output-cut").await.unwrap();
    assert_eq!(cut, None, "nothing was cut");
    let output = files::entry(c.store(), result, "output")
        .await
        .unwrap()
        .expect("the package has output/");
    let data = c.store().get(&output).await.unwrap().unwrap();
    assert!(matches!(
        unixfs::decode(&output, &data),
        Ok(unixfs::Node::Shard(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    files::get(c.store(), output, dir.path().join("output"))
        .await
        .unwrap();
    let written = std::fs::read_dir(dir.path().join("output"))
        .unwrap()
        .count();
    assert_eq!(written, 10_000);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipt_reports_compile_time_beside_the_runs_wall_time() {
    let net = net().await;
    let module = output_module("(drop (call $open))");
    let (first, _) = submit(&net, module.clone(), 1 << 20).await;
    assert_eq!(first.status, Status::Exited { code: 0 });
    assert!(
        first.compile_time_ms > 0,
        "compiled for this run: {first:?}"
    );
    // The same module again (another job: a new nonce) is compiled already.
    let (second, _) = submit(&net, module, 1 << 20).await;
    assert_eq!(second.compile_time_ms, 0, "{second:?}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_over_the_structural_bounds_is_refused_with_a_typed_reason() {
    let net = net().await;
    let mut wat = String::from("(module (func (export \"_start\")");
    wat.push_str(&" (block".repeat(10_001));
    wat.push_str(&")".repeat(10_001));
    wat.push_str("))");
    let c: &NodeHandle = &net.nodes[1];
    let root = files::add_bytes(c.store(), Bytes::from(wat::parse_str(wat).unwrap()))
        .await
        .unwrap();
    let spec = JobSpec::new(root.cid);
    let err = within(
        c.requester()
            .submit(&spec, &SubmitOptions::default(), &|_| {}),
    )
    .await
    .unwrap_err();
    match err {
        phase_node::requester::SubmitError::ModuleTooComplex { message, .. } => {
            assert!(message.contains("nested more than 10000 deep"), "{message}");
        }
        other => panic!("expected module_too_complex, got {other}"),
    }
    net.shutdown().await;
}
