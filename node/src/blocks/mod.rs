//! Blocks between peers: [`fetch`] takes a DAG's missing blocks from peers
//! into the store (over `/phase/block/1.0.0` from phase nodes, over
//! Bitswap from peers that speak only Bitswap); [`BlockServer`] answers
//! other peers' wants from it, for both protocols, under one set of caps.

mod fetch;
mod serve;

pub use self::fetch::{BATCH, FetchError, FetchOptions, Progress, WINDOW, fetch};
pub use self::serve::{
    Admitted, Answer, BlockServer, MAX_RESPONSE_BYTES, MAX_WANTS, MAX_WANTS_PER_PEER,
    SERVE_CONCURRENCY, WantKind,
};
pub(crate) use self::serve::{BLOCK_QUEUE, BlockJob, serve};
