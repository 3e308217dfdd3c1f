//! The messages of `/phase/block/1.0.0`: ask a peer for blocks by CID.

use serde::{Deserialize, Serialize};

use crate::cid::Cid;
use crate::wire::{MAX_BLOCK_REQUEST, MAX_BLOCK_RESPONSE, Message};

/// Protocol id of the block protocol.
pub const BLOCK_PROTOCOL: &str = "/phase/block/1.0.0";
/// Most CIDs one request may ask for: a window of blocks in flight, not a
/// whole DAG. A request for more is refused whole.
pub const MAX_WANT: usize = 256;

/// Requester → provider: send me these blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// The blocks wanted, at most [`MAX_WANT`].
    #[serde(deserialize_with = "crate::wire::seq::deserialize")]
    pub want: Vec<Cid>,
}

impl Message for BlockRequest {
    const MAX: usize = MAX_BLOCK_REQUEST;
}

/// One block as it travels: the receiver re-hashes `data` against `cid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireBlock {
    /// What the sender claims this block is.
    pub cid: Cid,
    /// The block's bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Provider → requester: the blocks it has (in request order), and the CIDs
/// it does not have. Blocks that did not fit under the response cap are in
/// neither list: ask again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockResponse {
    /// Blocks found.
    #[serde(deserialize_with = "crate::wire::seq::deserialize")]
    pub blocks: Vec<WireBlock>,
    /// CIDs not held by this peer.
    #[serde(deserialize_with = "crate::wire::seq::deserialize")]
    pub missing: Vec<Cid>,
}

impl Message for BlockResponse {
    const MAX: usize = MAX_BLOCK_RESPONSE;
}
