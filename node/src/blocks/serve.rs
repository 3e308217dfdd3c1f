//! Serving blocks: the node's dispatcher queues block requests (bounded,
//! [`BLOCK_QUEUE`]) for [`serve`], which answers them from the store, at
//! most [`SERVE_CONCURRENCY`] at once, so block traffic never delays job
//! admission or status polls.

use std::sync::Arc;

use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, warn};

use phase_protocol::Cid;
use phase_protocol::block::{BlockRequest, BlockResponse, WireBlock};

use crate::network::NetworkClient;
use crate::store::{BlockStore, StoreError};

/// Block bytes in one response at most (the wire cap is a little larger).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Block requests served at once.
const SERVE_CONCURRENCY: usize = 16;
/// Block requests waiting for a serving slot at most; past this a block
/// request is dropped (the peer's request fails and it asks again or asks
/// someone else), as it was when the event queue itself was full.
pub(crate) const BLOCK_QUEUE: usize = 64;

/// A block request, as the dispatcher hands it to the block server.
pub(crate) type BlockJob = (PeerId, BlockRequest, ResponseChannel<BlockResponse>);

/// Serves block requests from the store until the queue closes, at most
/// [`SERVE_CONCURRENCY`] at once; what is in flight then is dropped.
pub(crate) async fn serve(
    network: NetworkClient,
    store: BlockStore,
    mut queue: mpsc::Receiver<BlockJob>,
) {
    let limit = Arc::new(Semaphore::new(SERVE_CONCURRENCY));
    let mut serving = JoinSet::new();
    while let Some((peer, request, channel)) = queue.recv().await {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            break;
        };
        while serving.try_join_next().is_some() {}
        let (network, store) = (network.clone(), store.clone());
        serving.spawn(
            async move {
                let _permit = permit;
                let response = answer(&store, request.want).await;
                debug!(%peer, blocks = response.blocks.len(), "served blocks");
                let _ = network.respond_blocks(channel, response).await;
            }
            .in_current_span(),
        );
    }
    serving.shutdown().await;
}

/// Blocks the store has, up to [`MAX_RESPONSE_BYTES`]; the rest as missing
/// (or left out, to be asked again, when over the cap).
async fn answer(store: &BlockStore, want: Vec<Cid>) -> BlockResponse {
    let mut response = BlockResponse {
        blocks: Vec::new(),
        missing: Vec::new(),
    };
    let found = match store.get_many(want.clone()).await {
        Ok(found) => found,
        Err(e) => {
            warn!(error = %e, "cannot read blocks for a peer");
            response.missing = want;
            return response;
        }
    };
    let mut bytes = 0usize;
    for (cid, result) in found {
        match result {
            Ok(Some(data)) if bytes + data.len() <= MAX_RESPONSE_BYTES => {
                bytes += data.len();
                response.blocks.push(WireBlock { cid, data });
            }
            Ok(Some(_)) => {} // over the response cap: the peer asks again
            Ok(None) | Err(StoreError::Corrupt { .. }) => response.missing.push(cid),
            Err(e) => {
                warn!(%cid, error = %e, "cannot read block for a peer");
                response.missing.push(cid);
            }
        }
    }
    response
}
