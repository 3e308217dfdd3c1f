//! Fetching a DAG from peers into the local store.
//!
//! Blocks are asked for in batches of [`BATCH`] with at most [`WINDOW`]
//! requests in flight, spread round-robin over the providers. Every block is
//! checked against its CID as it is stored: a provider that sends a wrong or
//! unasked-for block, or fails a request, is dropped for this fetch and its
//! blocks are asked of the others.
//!
//! Every source is used: phase peers over `/phase/block/1.0.0`, and
//! connected peers that speak only Bitswap (Kubo, Helia) over Bitswap.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tracing::{debug, warn};

use phase_protocol::Cid;
use phase_protocol::block::BlockRequest;
use phase_protocol::unixfs;

use crate::network::{NetworkClient, NetworkError};
use crate::store::{BlockStore, StoreError};

/// CIDs per request.
pub const BATCH: usize = 32;
/// Requests in flight at once.
pub const WINDOW: usize = 8;
/// Connected phase peers asked beside the DHT's providers at most.
const MAX_CONNECTED_ASKED: usize = 16;
/// How long a Bitswap peer has to answer a batch.
const BITSWAP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Nobody (left) to ask.
    #[error("no provider of {cid} could deliver it")]
    NoProviders {
        /// A block nobody delivered.
        cid: Cid,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The network is gone.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The DAG is larger than the caller allows.
    #[error("{cid} is larger than the limit of {max} bytes")]
    TooLarge {
        /// The root being fetched.
        cid: Cid,
        /// The limit.
        max: u64,
    },
}

/// How far a fetch has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Blocks fetched and stored.
    pub blocks: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks known to be still wanted.
    pub queued: usize,
}

/// Where to fetch from and how much to take.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Ask these peers; `None`: the providers the DHT knows of the root.
    pub providers: Option<Vec<PeerId>>,
    /// Refuse to store more than this many bytes of new blocks (untrusted
    /// DAGs, such as a job's inputs, have no size a fetcher can check in
    /// advance).
    pub max_bytes: u64,
    /// Ask every provider over Bitswap, even a phase node that speaks the
    /// block protocol (to compare the two exchanges; see `bench_fetch`).
    pub bitswap_only: bool,
}

impl Default for FetchOptions {
    /// The DHT's providers, no size limit.
    fn default() -> Self {
        Self {
            providers: None,
            max_bytes: u64::MAX,
            bitswap_only: false,
        }
    }
}

impl FetchOptions {
    /// From these peers only, no size limit.
    #[must_use]
    pub fn from_peers(peers: impl IntoIterator<Item = PeerId>) -> Self {
        Self {
            providers: Some(peers.into_iter().collect()),
            ..Self::default()
        }
    }
}

/// Fetches every block of the DAG under `root` that the store lacks,
/// calling `progress` after every response. Returns the number of blocks
/// fetched. The root is held against gc while the fetch runs; a caller
/// that reads the DAG after holds it itself (or pins it).
///
/// # Errors
/// No provider found, some block cannot be had from any provider, the store
/// fails, or [`FetchError::TooLarge`] past `options.max_bytes`.
pub async fn fetch(
    network: &NetworkClient,
    store: &BlockStore,
    root: Cid,
    options: FetchOptions,
    mut progress: impl FnMut(Progress),
) -> Result<usize, FetchError> {
    let (max_bytes, bitswap_only) = (options.max_bytes, options.bitswap_only);
    store.check_room()?;
    // What arrives is reachable from the root through what arrived before
    // it (a block is asked for once its parent is stored): holding the
    // root keeps the whole partial DAG from gc until the fetch ends.
    let _held = store.hold([root]);
    let bitswap: HashSet<PeerId> = network.bitswap_peers().await?.into_iter().collect();
    let mut providers = match options.providers {
        Some(peers) => peers,
        None => {
            // The DHT's providers first, then connected phase peers (a
            // peer on the LAN or the bootstrap may hold it without a
            // record reaching us), as Bitswap asks its connected peers.
            let mut found: Vec<PeerId> = network.find_providers(root).await?.into_iter().collect();
            let mut connected = network.block_peers().await?;
            connected.retain(|p| !found.contains(p));
            connected.truncate(MAX_CONNECTED_ASKED);
            found.extend(connected);
            if found.is_empty() && bitswap.is_empty() && !store.has(&root).await? {
                return Err(FetchError::NoProviders { cid: root });
            }
            found
        }
    };
    providers.extend(
        bitswap
            .iter()
            .filter(|p| !providers.contains(p))
            .copied()
            .collect::<Vec<_>>(),
    );
    let mut good: Vec<PeerId> = providers
        .into_iter()
        .filter(|p| *p != network.peer_id())
        .collect();
    let mut lacks: HashMap<Cid, HashSet<PeerId>> = HashMap::new();
    let mut queue = VecDeque::new();
    let mut queued = HashSet::new();
    enqueue(store, &mut queue, &mut queued, [root]).await?;
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0usize;
    let mut fetched = 0usize;
    let mut bytes = 0u64;

    loop {
        // Fill the window.
        while in_flight.len() < WINDOW && !queue.is_empty() {
            let Some((peer, batch)) = next_batch(&good, &lacks, &mut queue, &mut next) else {
                break;
            };
            let client = network.clone();
            let over_bitswap = bitswap_only || bitswap.contains(&peer);
            in_flight.push(async move {
                let result = if over_bitswap {
                    client
                        .bitswap()
                        .request(peer, batch.clone(), BITSWAP_DEADLINE)
                        .await
                        .map_err(NetworkError::Bitswap)
                } else {
                    client
                        .request_blocks(
                            peer,
                            BlockRequest {
                                want: batch.clone(),
                            },
                        )
                        .await
                };
                (peer, batch, result)
            });
        }
        let Some((peer, batch, result)) = in_flight.next().await else {
            match queue.front() {
                Some(cid) => return Err(FetchError::NoProviders { cid: *cid }),
                None => return Ok(fetched),
            }
        };
        let response = match result {
            Ok(r) => r,
            Err(NetworkError::Shutdown) => return Err(NetworkError::Shutdown.into()),
            Err(e) => {
                warn!(%peer, error = %e, "provider failed; asking others");
                good.retain(|p| *p != peer);
                queue.extend(batch);
                continue;
            }
        };
        let incoming: u64 = response.blocks.iter().map(|b| b.data.len() as u64).sum();
        if bytes.saturating_add(incoming) > max_bytes {
            return Err(FetchError::TooLarge {
                cid: root,
                max: max_bytes,
            });
        }
        let asked: HashSet<Cid> = batch.iter().copied().collect();
        let mut bad = response.blocks.iter().any(|b| !asked.contains(&b.cid));
        let mut delivered = HashSet::new();
        let mut children = Vec::new();
        if !bad {
            // Links come from the bytes in hand (checked by the store below).
            let blocks: Vec<(Cid, Bytes)> = response
                .blocks
                .into_iter()
                .map(|b| (b.cid, b.data))
                .collect();
            let links: Vec<_> = blocks
                .iter()
                .map(|(cid, data)| unixfs::links(cid, data))
                .collect();
            let results = store.put_many(blocks.clone()).await?;
            for (((cid, data), result), links) in blocks.iter().zip(results).zip(links) {
                match result {
                    Ok(()) => {
                        let links = links.map_err(|source| StoreError::Unixfs {
                            cid: *cid,
                            source: Box::new(source),
                        })?;
                        children.extend(links);
                        delivered.insert(*cid);
                        fetched += 1;
                        bytes += data.len() as u64;
                    }
                    Err(StoreError::HashMismatch { cid } | StoreError::TooLarge { cid, .. }) => {
                        warn!(%peer, %cid, "provider sent a block that does not match its CID; dropping it");
                        bad = true;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if bad {
            good.retain(|p| *p != peer);
        }
        for cid in &response.missing {
            lacks.entry(*cid).or_default().insert(peer);
        }
        queue.extend(batch.into_iter().filter(|c| !delivered.contains(c)));
        enqueue(store, &mut queue, &mut queued, children).await?;
        debug!(fetched, queued = queue.len(), "fetch progress");
        progress(Progress {
            blocks: fetched,
            bytes,
            queued: queue.len() + in_flight.len() * BATCH,
        });
    }
}

/// Queues what the store lacks of `cids` and of what they link to. A block
/// already stored is not proof of its DAG (another fetch of the same DAG
/// may be under way, or an earlier one was cut short), so the links of
/// stored dag-pb blocks are followed locally; raw leaves have none.
async fn enqueue(
    store: &BlockStore,
    queue: &mut VecDeque<Cid>,
    queued: &mut HashSet<Cid>,
    cids: impl IntoIterator<Item = Cid>,
) -> Result<(), StoreError> {
    let mut stack: Vec<Cid> = cids.into_iter().collect();
    while let Some(cid) = stack.pop() {
        if !queued.insert(cid) {
            continue;
        }
        if cid.codec() == phase_protocol::cid::RAW {
            if !store.has(&cid).await? {
                queue.push_back(cid);
            }
            continue;
        }
        match store.get(&cid).await? {
            None => queue.push_back(cid),
            Some(data) => {
                if let Ok(links) = unixfs::links(&cid, &data) {
                    stack.extend(links);
                }
            }
        }
    }
    Ok(())
}

/// The next provider (round-robin) and up to [`BATCH`] queued CIDs it has
/// not said it lacks. `None` when no provider is left for the queue's head.
fn next_batch(
    good: &[PeerId],
    lacks: &HashMap<Cid, HashSet<PeerId>>,
    queue: &mut VecDeque<Cid>,
    next: &mut usize,
) -> Option<(PeerId, Vec<Cid>)> {
    for _ in 0..good.len() {
        let peer = good[*next % good.len()];
        *next += 1;
        let mut batch = Vec::new();
        let mut skipped = VecDeque::new();
        while batch.len() < BATCH {
            let Some(cid) = queue.pop_front() else { break };
            if lacks.get(&cid).is_some_and(|l| l.contains(&peer)) {
                skipped.push_back(cid);
            } else {
                batch.push(cid);
            }
        }
        skipped.extend(queue.drain(..));
        *queue = skipped;
        if !batch.is_empty() {
            return Some((peer, batch));
        }
    }
    None
}
