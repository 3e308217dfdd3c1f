//! Executor benchmarks (numbers in README.md, "Performance").
//!
//! Needs the guests: `scripts/build-wasm-examples.sh`, then
//! `cargo bench -p phase-node --bench executor`.
//!
//! - `load_cold/hello`: a fresh executor (engine, linkers, ticker) compiles
//!   and links hello.wasm with no cache.
//! - `load_disk_cache/hello`: a fresh executor loads hello from a warm
//!   on-disk cache (what a second `phase-node run` pays).
//! - `run_cached/hello`: instantiate + run hello on 12 bytes of stdin with the
//!   linked module in memory (what a warm worker pays per job).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use phase_node::executor::{CacheSource, Executor, ExecutorConfig, RunSpec, Stdin};
use phase_protocol::Status;

fn hello() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-examples/out/hello.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/build-wasm-examples.sh first",
            path.display()
        )
    })
}

fn benches(c: &mut Criterion) {
    let bytes = hello();

    c.bench_function("load_cold/hello", |b| {
        b.iter(|| {
            let executor = Executor::new(ExecutorConfig::default()).unwrap();
            black_box(executor.load_blocking(&bytes).unwrap());
        });
    });

    let cache = tempfile::tempdir().unwrap();
    let config = ExecutorConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..ExecutorConfig::default()
    };
    Executor::new(config.clone())
        .unwrap()
        .load_blocking(&bytes)
        .unwrap();
    c.bench_function("load_disk_cache/hello", |b| {
        b.iter(|| {
            let executor = Executor::new(config.clone()).unwrap();
            let module = executor.load_blocking(&bytes).unwrap();
            assert_eq!(module.source(), CacheSource::Disk);
            black_box(module);
        });
    });

    let executor = Executor::new(ExecutorConfig::default()).unwrap();
    let module = executor.load_blocking(&bytes).unwrap();
    c.bench_function("run_cached/hello", |b| {
        b.iter(|| {
            let spec = RunSpec {
                program_name: "hello".into(),
                stdin: Stdin::Bytes("Hello, World".into()),
                ..RunSpec::default()
            };
            let outcome = executor.run_blocking(&module, spec).unwrap();
            assert_eq!(outcome.status, Status::Exited { code: 0 });
            black_box(outcome);
        });
    });
}

criterion_group!(executor, benches);
criterion_main!(executor);
