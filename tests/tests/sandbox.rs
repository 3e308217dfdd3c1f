//! The executor with real guests (wasm-examples/out), through the library:
//! determinism across separate executors, and many runs at once.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use phase_node::executor::{Executor, ExecutorConfig, RunSpec, Stdin};
use phase_protocol::Status;

use phase_tests::{guest, within};

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
