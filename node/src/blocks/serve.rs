//! One server answers other peers' wants from the store, for both block
//! exchanges: `/phase/block/1.0.0` requests (which the node's dispatcher
//! queues here, bounded by [`BLOCK_QUEUE`]) and Bitswap wants (which the
//! Bitswap actor hands to [`BlockServer::answer`]). One set of caps holds
//! for both:
//!
//! - at most [`SERVE_CONCURRENCY`] answers are read from the store at
//!   once, so block traffic never delays job admission or status polls;
//! - at most [`MAX_WANTS_PER_PEER`] of one peer's wants, and
//!   [`MAX_WANTS`] of all peers', are being answered at once
//!   ([`BlockServer::admit`]); wants past that are left unanswered (the
//!   peer asks again, or asks someone else);
//! - one answer carries at most [`MAX_RESPONSE_BYTES`] of blocks (a
//!   Bitswap answer is then sent as messages of at most 2 MiB).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, warn};

use phase_protocol::Cid;
use phase_protocol::block::{BlockRequest, BlockResponse, WireBlock};

use crate::network::NetworkClient;
use crate::store::{BlockStore, StoreError};

/// Block bytes in one answer at most (the block protocol's wire cap is a
/// little larger).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Answers read from the store at once, both protocols together.
pub const SERVE_CONCURRENCY: usize = 16;
/// One peer's wants being answered at once at most, both protocols
/// together (a block request counts each CID it names).
pub const MAX_WANTS_PER_PEER: usize = 1024;
/// All peers' wants being answered at once at most.
pub const MAX_WANTS: usize = 16 * MAX_WANTS_PER_PEER;
/// Blocks read from the store in one blocking task at most (a fetcher
/// asks for 32 at a time).
const READ_BATCH: usize = 32;
/// Block requests waiting for a serving slot at most; past this a block
/// request is dropped (the peer's request fails and it asks again or asks
/// someone else).
pub(crate) const BLOCK_QUEUE: usize = 64;

/// A block request, as the dispatcher hands it to the block server.
pub(crate) type BlockJob = (PeerId, BlockRequest, ResponseChannel<BlockResponse>);

/// What a want asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WantKind {
    /// The block's bytes.
    Block,
    /// Whether the block is here.
    Have,
}

/// The server's answer to some wants, in the order asked.
#[derive(Debug, Default)]
pub struct Answer {
    /// Blocks asked for and found (each re-hashed as it was read).
    pub blocks: Vec<(Cid, Bytes)>,
    /// Blocks asked about (`Have`) and found.
    pub have: Vec<Cid>,
    /// Blocks not here (or corrupt here).
    pub missing: Vec<Cid>,
    /// How many of the wants this answers; the rest did not fit in the
    /// answer's bytes.
    pub answered: usize,
}

/// The server: the store and the caps. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BlockServer {
    store: BlockStore,
    reading: Arc<Semaphore>,
    wants: Arc<Mutex<Wants>>,
}

/// Wants being answered, per peer and in all.
#[derive(Debug, Default)]
struct Wants {
    per_peer: HashMap<PeerId, usize>,
    total: usize,
}

/// Wants admitted for one peer; dropping it makes room for more.
#[derive(Debug)]
#[must_use = "the wants count as being answered until this is dropped"]
pub struct Admitted {
    server: BlockServer,
    peer: PeerId,
    /// How many of the wants offered were admitted.
    pub count: usize,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if self.count == 0 {
            return;
        }
        let mut wants = self.server.lock();
        wants.total = wants.total.saturating_sub(self.count);
        if let Some(n) = wants.per_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(self.count);
            if *n == 0 {
                wants.per_peer.remove(&self.peer);
            }
        }
    }
}

impl BlockServer {
    /// A server over `store`.
    #[must_use]
    pub fn new(store: BlockStore) -> Self {
        Self {
            store,
            reading: Arc::new(Semaphore::new(SERVE_CONCURRENCY)),
            wants: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Wants> {
        self.wants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits up to `offered` of `peer`'s wants, as many as its share and
    /// the total allow.
    pub fn admit(&self, peer: PeerId, offered: usize) -> Admitted {
        let mut wants = self.lock();
        let busy = wants.per_peer.get(&peer).copied().unwrap_or(0);
        let count = offered
            .min(MAX_WANTS_PER_PEER.saturating_sub(busy))
            .min(MAX_WANTS.saturating_sub(wants.total));
        if count > 0 {
            *wants.per_peer.entry(peer).or_default() += count;
            wants.total += count;
        }
        drop(wants);
        Admitted {
            server: self.clone(),
            peer,
            count,
        }
    }

    /// Answers `wants` in order, from the store, until the next block would
    /// pass `max_bytes` (at least one block is always answered); waits for
    /// a reading slot first. Blocks are read [`READ_BATCH`] at a time in
    /// one blocking task, as the block protocol read them before the two
    /// exchanges shared this server.
    pub async fn answer(&self, wants: &[(Cid, WantKind)], max_bytes: usize) -> Answer {
        let Ok(_slot) = self.reading.acquire().await else {
            return Answer::default();
        };
        let max_bytes = max_bytes.min(MAX_RESPONSE_BYTES);
        let mut answer = Answer::default();
        let mut bytes = 0usize;
        while answer.answered < wants.len() {
            let rest = &wants[answer.answered..];
            let run: Vec<Cid> = rest
                .iter()
                .take(READ_BATCH)
                .take_while(|(_, kind)| *kind == WantKind::Block)
                .map(|(cid, _)| *cid)
                .collect();
            if run.is_empty() {
                let cid = rest[0].0;
                match self.store.has(&cid).await {
                    Ok(true) => answer.have.push(cid),
                    Ok(false) => answer.missing.push(cid),
                    Err(e) => {
                        warn!(%cid, error = %e, "cannot look up a block for a peer");
                        answer.missing.push(cid);
                    }
                }
                answer.answered += 1;
                continue;
            }
            let found = match self.store.get_many(run.clone()).await {
                Ok(found) => found,
                Err(e) => {
                    warn!(error = %e, "cannot read blocks for a peer");
                    run.into_iter().map(|cid| (cid, Ok(None))).collect()
                }
            };
            for (cid, result) in found {
                match result {
                    Ok(Some(data)) => {
                        if bytes + data.len() > max_bytes && answer.answered > 0 {
                            return answer;
                        }
                        bytes += data.len();
                        answer.blocks.push((cid, data));
                    }
                    Ok(None) | Err(StoreError::Corrupt { .. }) => answer.missing.push(cid),
                    Err(e) => {
                        warn!(%cid, error = %e, "cannot read a block for a peer");
                        answer.missing.push(cid);
                    }
                }
                answer.answered += 1;
            }
        }
        answer
    }
}

/// Serves `/phase/block/1.0.0` requests until the queue closes, each as
/// one [`BlockServer::answer`] (what did not fit is left out: the peer
/// asks again); what is in flight then is dropped.
pub(crate) async fn serve(
    network: NetworkClient,
    server: BlockServer,
    mut queue: mpsc::Receiver<BlockJob>,
) {
    let mut serving = JoinSet::new();
    while let Some((peer, request, channel)) = queue.recv().await {
        while serving.try_join_next().is_some() {}
        if serving.len() >= SERVE_CONCURRENCY {
            // Back-pressure: the queue fills, and the dispatcher drops.
            let _ = serving.join_next().await;
        }
        let (network, server) = (network.clone(), server.clone());
        serving.spawn(
            async move {
                let admitted = server.admit(peer, request.want.len());
                let wants: Vec<(Cid, WantKind)> = request
                    .want
                    .iter()
                    .take(admitted.count)
                    .map(|cid| (*cid, WantKind::Block))
                    .collect();
                let answer = server.answer(&wants, MAX_RESPONSE_BYTES).await;
                drop(admitted);
                debug!(%peer, blocks = answer.blocks.len(), "served blocks");
                let response = BlockResponse {
                    blocks: answer
                        .blocks
                        .into_iter()
                        .map(|(cid, data)| WireBlock { cid, data })
                        .collect(),
                    missing: answer.missing,
                };
                let _ = network.respond_blocks(channel, response).await;
            }
            .in_current_span(),
        );
    }
    serving.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::cid::raw_cid;

    #[tokio::test]
    async fn wants_are_admitted_up_to_a_peers_share_and_answered_within_the_bytes() {
        let store = BlockStore::memory();
        let blocks: Vec<(Cid, Bytes)> = (0..4u8)
            .map(|i| {
                let data = Bytes::from(vec![i; 1000]);
                (raw_cid(&data), data)
            })
            .collect();
        for (cid, data) in &blocks {
            store.put(*cid, data.clone()).await.unwrap();
        }
        let server = BlockServer::new(store);
        let peer = PeerId::random();
        let first = server.admit(peer, MAX_WANTS_PER_PEER - 1);
        assert_eq!(first.count, MAX_WANTS_PER_PEER - 1);
        let second = server.admit(peer, 10);
        assert_eq!(second.count, 1, "one left in the peer's share");
        assert_eq!(server.admit(peer, 10).count, 0);
        assert_eq!(
            server.admit(PeerId::random(), 10).count,
            10,
            "others have theirs"
        );
        drop(first);
        assert_eq!(server.admit(peer, 10).count, 10, "room again once answered");

        let absent = raw_cid(b"absent");
        let mut wants: Vec<(Cid, WantKind)> = blocks
            .iter()
            .map(|(cid, _)| (*cid, WantKind::Block))
            .collect();
        wants.insert(1, (absent, WantKind::Block));
        wants.push((blocks[0].0, WantKind::Have));
        let answer = server.answer(&wants, 2500).await;
        assert_eq!(
            answer.blocks.len(),
            2,
            "two blocks of 1000 bytes fit in 2500"
        );
        assert_eq!(answer.missing, vec![absent]);
        assert_eq!(answer.answered, 3);
        let rest = server.answer(&wants[answer.answered..], 2500).await;
        assert_eq!(rest.blocks.len(), 2);
        assert_eq!(rest.have, vec![blocks[0].0]);
        assert_eq!(rest.answered, 3);
    }
}
