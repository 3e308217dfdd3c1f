//! The language of the phase compute network: content addressing, job limits,
//! run statuses, and (as the protocol grows) job specs, signed receipts and
//! wire messages.
//!
//! # Goals
//! - Pure types and functions over bytes: no I/O, no async runtime, no
//!   networking, no WebAssembly engine. Everything here is deterministic and
//!   testable in isolation.
//! - Content addressing identical to IPFS: CIDv1, sha2-256, raw leaves and
//!   balanced UnixFS DAGs, so the same bytes get the same CID as in Kubo.
//!
//! # Non-goals
//! - Transport, storage and execution: those live in the `phase-node` crate.

pub mod cid;
pub mod job;
pub mod receipt;
pub mod units;
pub mod unixfs;

pub use crate::cid::Cid;
pub use crate::job::Limits;
pub use crate::receipt::Status;
pub use crate::units::ByteSize;
