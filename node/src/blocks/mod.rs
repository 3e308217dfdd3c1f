//! Blocks between peers over `/phase/block/1.0.0`: [`fetch`] takes a DAG's
//! missing blocks from peers into the store, [`serve`] answers other peers'
//! requests from it.

mod fetch;
mod serve;

pub use self::fetch::{BATCH, FetchError, FetchOptions, Progress, WINDOW, fetch};
pub use self::serve::MAX_RESPONSE_BYTES;
pub(crate) use self::serve::{BLOCK_QUEUE, BlockJob, serve};
