//! Benchmark (not a test) of the block path alone: two nodes in one process
//! on loopback, one providing a file and one fetching it with
//! `NodeHandle::fetch` (provider lookup, batched requests, every block
//! verified and stored). No export to a file, no CLI, no daemon.
//!
//! ```text
//! cargo run --release -p phase-examples --example bench_fetch -- [MIB] [--mem] [--tcp] [--bitswap | --both]
//! ```
//!
//! `--mem` keeps both stores in memory (no disk at all), `--tcp` uses TCP +
//! Noise + Yamux instead of QUIC. `--bitswap` fetches over Bitswap instead
//! of `/phase/block/1.0.0`; `--both` runs the block protocol and then
//! Bitswap on the same data (a fresh pair of nodes each) and prints the
//! ratio. Both nodes share this process's runtime
//! and the machine's cores, as two daemons on one machine do. Besides the
//! rate, it prints the CPU time the process spent per GiB moved, which is
//! what bounds the rate on a machine with few cores.

use std::io::Read;
use std::time::Instant;

use anyhow::Context;
use phase_examples::{NodePair, bench_config};
use phase_node::blocks::{self, FetchOptions};
use phase_node::store::files;

/// Pseudo-random bytes (xorshift), so blocks neither repeat nor compress.
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX))
            / 8
            * 8;
        for word in buf[..n].chunks_exact_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            word.copy_from_slice(&self.state.to_le_bytes());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .context("unexpected /proc/self/stat")?
        .1
        .split(' ')
        .collect();
    // utime and stime are fields 14 and 15 of stat(5); 12 and 13 here.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// One measured fetch.
struct Run {
    blocks: usize,
    elapsed: f64,
    cpu: f64,
}

/// Starts a pair, adds `mib` MiB of noise on the first, fetches it on the
/// second over the block protocol or Bitswap.
async fn run(mib: u64, listen: &str, mem: bool, bitswap: bool) -> anyhow::Result<Run> {
    let pair = NodePair::start(bench_config(listen)?, bench_config(listen)?, mem).await?;
    let (provider, fetcher) = (&pair.first, &pair.second);
    let noise = Noise {
        state: 0x9e37_79b9_7f4a_7c15,
        left: mib << 20,
    };
    let pstore = provider.store().clone();
    let root = tokio::task::spawn_blocking(move || {
        files::add_reader_blocking(&pstore, noise, std::path::Path::new("noise"))
    })
    .await??;
    provider.pin_and_provide(root.cid).await?;

    let options = FetchOptions {
        bitswap_only: bitswap,
        ..FetchOptions::default()
    };
    let cpu = cpu_seconds()?;
    let started = Instant::now();
    let blocks = blocks::fetch(
        fetcher.network(),
        fetcher.store(),
        root.cid,
        options,
        |_| {},
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu;
    pair.shutdown().await;
    Ok(Run {
        blocks,
        elapsed,
        cpu,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let (mem, tcp, both) = (flag("--mem"), flag("--tcp"), flag("--both"));
    let mib: u64 = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or(Ok(1024), |a| a.parse())
        .context("usage: bench_fetch [MIB] [--mem] [--tcp] [--bitswap | --both]")?;
    let listen = if tcp {
        "/ip4/127.0.0.1/tcp/0"
    } else {
        "/ip4/127.0.0.1/udp/0/quic-v1"
    };
    let exchanges: &[bool] = if both {
        &[false, true]
    } else if flag("--bitswap") {
        &[true]
    } else {
        &[false]
    };
    let bytes = (mib << 20) as f64;
    let mut rates = Vec::new();
    for &bitswap in exchanges {
        let Run {
            blocks,
            elapsed,
            cpu,
        } = run(mib, listen, mem, bitswap).await?;
        rates.push(bytes / elapsed);
        println!(
            "fetched {mib} MiB ({blocks} blocks) over {} {} from 1 provider, {} stores: {elapsed:.2} s, {:.0} MB/s ({:.0} MiB/s); CPU {cpu:.2} s ({:.2} s per GiB, both nodes)",
            if bitswap {
                "Bitswap"
            } else {
                "/phase/block/1.0.0"
            },
            if tcp { "TCP" } else { "QUIC" },
            if mem { "memory" } else { "disk" },
            bytes / elapsed / 1e6,
            bytes / elapsed / f64::from(1 << 20),
            cpu / (bytes / f64::from(1 << 30)),
        );
    }
    if let [block, bitswap] = rates[..] {
        println!("block protocol / Bitswap: {:.2}x the rate", block / bitswap);
    }
    Ok(())
}
