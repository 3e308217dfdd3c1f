//! phase-node: a node of the phase peer-to-peer compute network.
//!
//! - [`executor`]: the wasmtime sandbox that runs untrusted WebAssembly under
//!   hard limits (fuel, memory, wall time, output) and reports an outcome.
//! - [`store`]: the content-addressed block store, UnixFS files and CAR.
//! - [`network`]: the libp2p swarm actor (QUIC/TCP, Kademlia, block and job
//!   protocols) and its client handle.
//! - [`blocks`]: fetching DAGs from peers and serving blocks to them.
//! - [`worker`]: the worker actor: admission, job lifecycle, signed receipts.
//! - [`requester`]: finding workers, submitting, waiting, verifying.
//! - [`node`]: wiring of the above; [`api`]: the daemon's HTTP API;
//!   [`metrics`]: what it counts.
//! - [`config`]: where a node keeps its data and what it runs.
//!
//! Dependencies point one way: {worker, requester} → {blocks, network,
//! store, executor} → `phase-protocol`.

pub mod api;
pub mod bitswap;
pub mod blocks;
pub mod cli;
pub mod config;
pub mod executor;
pub mod identity;
pub mod jobfile;
pub mod lock;
pub mod metrics;
pub mod network;
pub mod node;
pub mod requester;
pub mod store;
pub mod worker;

/// Now, in milliseconds since the Unix epoch (0 before it, saturating far
/// after it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An error and its causes on one line, for logs and answers to peers.
pub(crate) fn error_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    // One line, whatever a source's own text holds.
    line.replace('\n', " ")
}
