//! The executor with real guests (wasm-examples/out), through the library:
//! determinism across separate executors, and many runs at once.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use phase_node::executor::{Executor, ExecutorConfig, NetAccess, RunSpec, Stdin};
use phase_protocol::Status;

use phase_tests::{HttpServer, guest, within};

fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(tree(&entry.path()));
        } else {
            out.push((
                entry.path().strip_prefix(dir).unwrap().to_owned(),
                std::fs::read(entry.path()).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deterministic_runs_agree_across_executors() {
    let input = tempfile::tempdir().unwrap();
    std::fs::write(input.path().join("words.txt"), "a b c\nd e").unwrap();
    let mut results = Vec::new();
    for _ in 0..2 {
        // A fresh executor each time: nothing is shared but the bytes.
        let executor = Executor::new(ExecutorConfig::default()).unwrap();
        let output = tempfile::tempdir().unwrap();
        for name in ["clock-random", "wordcount"] {
            let module = within(executor.load(guest(name))).await.unwrap();
            let spec = RunSpec {
                program_name: name.into(),
                input_dir: Some(input.path().to_owned()),
                output_dir: Some(output.path().to_owned()),
                deterministic: Some([7; 32]),
                ..RunSpec::default()
            };
            let outcome = within(executor.run(&module, spec)).await.unwrap();
            assert_eq!(outcome.status, Status::Exited { code: 0 }, "{name}");
            results.push((name, outcome.stdout, outcome.stderr, outcome.fuel_consumed));
        }
        results.push((
            "output",
            Bytes::from(format!("{:?}", tree(output.path()))),
            Bytes::new(),
            0,
        ));
    }
    let (first, second) = results.split_at(results.len() / 2);
    assert_eq!(first, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_runs_at_once_all_complete() {
    let executor = Executor::new(ExecutorConfig::default()).unwrap();
    let module = within(executor.load(guest("hello"))).await.unwrap();
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..32 {
        let executor = executor.clone();
        let module = module.clone();
        runs.spawn(async move {
            let spec = RunSpec {
                program_name: "hello".into(),
                stdin: Stdin::Bytes(Bytes::from(format!("run {i}"))),
                ..RunSpec::default()
            };
            (i, executor.run(&module, spec).await.unwrap())
        });
    }
    let mut seen = 0;
    while let Some(joined) = within(runs.join_next()).await {
        let (i, outcome) = joined.unwrap();
        let expected: String = format!("run {i}").chars().rev().collect();
        assert_eq!(outcome.stdout, format!("{expected}\n"));
        seen += 1;
    }
    assert_eq!(seen, 32);
}

/// fetch-url with `net`, writing into a fresh /output: the outcome and
/// the body it wrote, if any.
async fn fetch(
    executor: &Executor,
    url: &str,
    net: NetAccess,
) -> (phase_node::executor::Outcome, Option<Vec<u8>>) {
    let module = within(executor.load(guest("fetch-url"))).await.unwrap();
    let output = tempfile::tempdir().unwrap();
    let spec = RunSpec {
        program_name: "fetch-url".into(),
        args: vec![url.to_owned()],
        output_dir: Some(output.path().to_owned()),
        net,
        ..RunSpec::default()
    };
    let outcome = within(executor.run(&module, spec)).await.unwrap();
    let body = std::fs::read(output.path().join("body")).ok();
    (outcome, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_reaches_only_the_hosts_it_is_allowed() {
    let allowed = HttpServer::serve(b"hello from the test server");
    let other = HttpServer::serve(b"never");
    let executor = Executor::new(ExecutorConfig::default()).unwrap();

    let (outcome, body) = fetch(&executor, &allowed.url(), NetAccess::new([allowed.host()])).await;
    assert_eq!(outcome.status, Status::Exited { code: 0 }, "{outcome:?}");
    assert_eq!(body.as_deref(), Some(&b"hello from the test server"[..]));
    assert_eq!(outcome.stdout, "200 26 bytes\n");
    let used = outcome
        .net
        .expect("a run with network access reports its use");
    assert_eq!(
        (used.requests, used.denied, used.bytes_received),
        (1, 0, 26)
    );
    assert_eq!(allowed.requests(), 1);

    // Another port of the same host: refused inside the guest, which sees
    // the error and fails; nothing reaches the server.
    let (outcome, body) = fetch(&executor, &other.url(), NetAccess::new([allowed.host()])).await;
    assert_eq!(outcome.status, Status::Exited { code: 1 }, "{outcome:?}");
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    assert!(stderr.contains("HTTP-request-denied"), "{stderr}");
    assert_eq!(body.as_deref(), None);
    assert_eq!(outcome.net.map(|n| (n.requests, n.denied)), Some((0, 1)));
    assert_eq!(other.requests(), 0);

    // No access at all (the default): denied too, and nothing reported.
    let (outcome, _) = fetch(&executor, &allowed.url(), NetAccess::default()).await;
    assert_eq!(outcome.status, Status::Exited { code: 1 }, "{outcome:?}");
    assert!(String::from_utf8_lossy(&outcome.stderr).contains("HTTP-request-denied"));
    assert_eq!(outcome.net, None);
    assert_eq!(allowed.requests(), 1);
}
