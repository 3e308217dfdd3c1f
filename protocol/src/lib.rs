//! The language of the phase compute network: content addressing, job specs
//! and `job.json`, signed receipts, and the messages of `/phase/job/1.0.0` and
//! `/phase/block/1.0.0`.
//!
//! # Goals
//! - Pure types and functions over bytes: no I/O, no async runtime, no
//!   networking, no WebAssembly engine. Everything here is deterministic and
//!   testable in isolation.
//! - Content addressing identical to IPFS: CIDv1, sha2-256, raw leaves and
//!   balanced UnixFS DAGs, so the same bytes get the same CID as in Kubo.
//! - Everything a peer sends is decoded from canonical DAG-CBOR under a
//!   documented size cap ([`wire`]); signed receipts verify as they decode.
//!
//! # Non-goals
//! - Transport, storage and execution: those live in the `phase-node` crate.
//!
//! Protocol version: `/phase/job/1.0.0`, `/phase/block/1.0.0`, receipts
//! signed under the domain `phase-receipt-v1`.

pub mod bitswap;
pub mod block;
pub mod car;
pub mod cid;
pub mod error;
pub mod guest_state;
pub mod job;
pub mod ledger;
pub mod receipt;
pub mod serde_helpers;
pub mod units;
pub mod unixfs;
pub mod wire;

pub use crate::cid::Cid;
pub use crate::error::{DecodeError, SignError, VerifyError};
pub use crate::job::{
    Capability, JobId, JobRequest, JobResponse, JobSpec, LimitKind, Limits, Rejection,
};
pub use crate::receipt::{NetworkUse, Receipt, SignedReceipt, StateTransition, Status};
pub use crate::units::ByteSize;
pub use crate::wire::Message;
pub use libp2p_identity::{Keypair, PeerId};
