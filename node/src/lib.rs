//! phase-node: a node of the phase peer-to-peer compute network.
//!
//! - [`executor`]: the wasmtime sandbox that runs untrusted WebAssembly under
//!   hard limits (fuel, memory, wall time, output) and reports an outcome.
//! - [`config`]: where a node keeps its data.
//!
//! The network, the block store and the scheduler join as the network grows;
//! dependencies point one way: scheduler → {network, store, executor} →
//! `phase-protocol`.

pub mod cli;
pub mod config;
pub mod control;
pub mod executor;
pub mod fetch;
pub mod identity;
pub mod network;
pub mod node;
pub mod store;
