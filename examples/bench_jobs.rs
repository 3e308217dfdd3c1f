//! Benchmark (not a test) of jobs over the network, in process on loopback
//! QUIC: one worker (slots = cores, module cache warm) and one requester.
//!
//! - latency: the hello job from `Requester::submit` to the verified
//!   receipt and the result fetched into the requester's store, one job at
//!   a time (p50, p99);
//! - throughput: small jobs per second on the one worker, many in flight.
//!
//! ```text
//! scripts/build-wasm-examples.sh
//! cargo run --release -p phase-examples --example bench_jobs -- [JOBS] [--mem] [--audit P]
//! ```
//!
//! `--mem` keeps both nodes' blocks in memory instead of on disk (where
//! every block is fsynced), to show what the store costs.
//!
//! `--audit P` adds a second worker and measures, in the same invocation
//! and alternating, the throughput of deterministic hello jobs sent to
//! the workers discovery finds without audits and with `audit: P` (each
//! job audited with chance P: run again on the other worker and
//! compared), and prints the ratio.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use phase_examples::{NodePair, bench_config};
use phase_node::config::NodeConfig;
use phase_node::node::Node;
use phase_node::requester::{Audit, Requester, SubmitOptions};
use phase_node::store::BlockStore;
use phase_node::store::files;
use phase_protocol::{ByteSize, JobSpec, Limits, Status};

/// Jobs in flight at once in the throughput run.
const IN_FLIGHT: usize = 64;

fn config(worker: bool) -> anyhow::Result<NodeConfig> {
    let mut config = bench_config("/ip4/127.0.0.1/udp/0/quic-v1")?;
    config.worker.enabled = worker;
    config.worker.queue = 256;
    Ok(config)
}

/// Throughput of `jobs` deterministic jobs over the workers discovery finds,
/// without audits and with chance `p`, three times each, alternating.
async fn audit_cost(
    client: &Requester,
    spec: &dyn Fn(u64) -> JobSpec,
    jobs: usize,
    p: f64,
) -> anyhow::Result<()> {
    let run = |nonce: u64, audit: f64| {
        let mut spec = spec(nonce);
        spec.deterministic = true;
        let options = SubmitOptions {
            attempts: 100,
            audit: Some(audit),
            ..SubmitOptions::default()
        };
        let client = client.clone();
        async move {
            let report = client.submit(&spec, &options, &|_| {}).await?;
            let status = &report.results[0].receipt.receipt().status;
            anyhow::ensure!(*status == Status::Exited { code: 0 }, "job {status}");
            anyhow::Ok(matches!(report.audit, Some(Audit::Passed { .. })))
        }
    };
    // Warm up until the requester finds both workers (an audit passes)
    // and both have compiled the module.
    let mut passed = 0;
    for nonce in 0..200 {
        passed += usize::from(run(3_000_000 + nonce, 1.0).await?);
        if passed >= 10 {
            break;
        }
    }
    anyhow::ensure!(
        passed >= 10,
        "the requester does not find the second worker"
    );
    let mut nonce = 4_000_000u64;
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for (i, chance) in [0.0, p].into_iter().enumerate() {
            let started = Instant::now();
            let first = nonce;
            nonce += jobs as u64;
            let mut done = futures::stream::iter(first..first + jobs as u64)
                .map(|n| run(n, chance))
                .buffer_unordered(IN_FLIGHT);
            let mut audited = 0;
            while let Some(passed) = done.next().await {
                audited += usize::from(passed?);
            }
            let rate = jobs as f64 / started.elapsed().as_secs_f64();
            println!(
                "round {round}: {jobs} deterministic hello jobs, {IN_FLIGHT} in flight, two workers, audit {chance}: {rate:.0} jobs/s ({audited} audits passed)"
            );
            rates[i].push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (plain, audited) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "audit {p}: {audited:.0} jobs/s vs {plain:.0} jobs/s without audits (median of 3): ratio {:.2}",
        audited / plain
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_jobs [JOBS] [--mem] [--audit P]";
    let mem = args.iter().any(|a| a == "--mem");
    let audit: Option<f64> = match args.iter().position(|a| a == "--audit") {
        Some(i) => Some(args.get(i + 1).context(usage)?.parse().context(usage)?),
        None => None,
    };
    let jobs: usize = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--audit"))
        .map_or(Ok(1000), |(_, a)| a.parse())
        .context(usage)?;
    let pair = NodePair::start(config(true)?, config(false)?, mem).await?;
    let (worker, requester) = (&pair.first, &pair.second);

    let root = env!("CARGO_MANIFEST_DIR");
    let module = tokio::fs::read(format!("{root}/../wasm-examples/out/hello.wasm"))
        .await
        .context("build the guests first: scripts/build-wasm-examples.sh")?;
    let module = files::add_bytes(requester.store(), Bytes::from(module)).await?;
    let stdin = files::add_bytes(requester.store(), Bytes::from_static(b"Hello, World")).await?;
    let spec = |nonce: u64| {
        let mut spec = JobSpec::new(module.cid);
        spec.stdin = Some(stdin.cid);
        spec.limits = Limits {
            fuel: 100_000_000,
            memory: ByteSize(64 << 20),
            timeout: Duration::from_secs(10),
            max_output: ByteSize(1 << 20),
        };
        spec.nonce = nonce;
        spec
    };
    let options = SubmitOptions {
        worker: Some(worker.peer_id()),
        attempts: 100,
        ..SubmitOptions::default()
    };
    let client = requester.requester().clone();
    if let Some(p) = audit {
        let mut second = config(true)?;
        second.network.bootstrap = worker.listen_addrs().await?;
        let second = Node::builder(second)
            .key(phase_protocol::Keypair::generate_ed25519())
            .store(BlockStore::memory())
            .spawn()
            .await?;
        second.network().wait_routing_peers(1).await?;
        let result = audit_cost(&client, &spec, jobs, p).await;
        second.shutdown().await;
        pair.shutdown().await;
        return result;
    }
    let run = |nonce: u64| {
        let (client, options, spec) = (client.clone(), options.clone(), spec(nonce));
        async move {
            let report = client.submit(&spec, &options, &|_| {}).await?;
            let status = &report.results[0].receipt.receipt().status;
            anyhow::ensure!(*status == Status::Exited { code: 0 }, "job {status}");
            anyhow::Ok(())
        }
    };

    // Warm up: the worker compiles the module once and fetches it.
    for nonce in 0..20 {
        run(nonce).await?;
    }

    let mut latencies = Vec::with_capacity(jobs);
    for nonce in 0..jobs as u64 {
        let started = Instant::now();
        run(1_000_000 + nonce).await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "latency of the hello job, submit to verified result ({jobs} jobs, one at a time, {} store): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        if mem { "memory" } else { "disk" },
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );

    let total = jobs * 2;
    let started = Instant::now();
    let mut done = futures::stream::iter(0..total as u64)
        .map(|n| run(2_000_000 + n))
        .buffer_unordered(IN_FLIGHT);
    while let Some(result) = done.next().await {
        result?;
    }
    let elapsed = started.elapsed();
    let slots = match worker.worker() {
        Some(w) => w.info().await.map_or(0, |i| i.slots),
        None => 0,
    };
    println!(
        "throughput: {total} hello jobs, {IN_FLIGHT} in flight, one worker with {} slots: {:.0} jobs/s ({:.2} s)",
        slots,
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    pair.shutdown().await;
    Ok(())
}
