//! Wiring: a node is its identity, its block store and its network, plus the
//! task that answers other peers' block requests from the store.
//!
//! Topology:
//! - the swarm task ([`crate::network`]) owns the libp2p swarm;
//! - the block server reads [`NetworkEvent::BlockRequest`]s and answers them
//!   from the store, at most [`MAX_RESPONSE_BYTES`] per response;
//! - [`NodeHandle`] holds the handles and the cancellation token.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use phase_protocol::Cid;
use phase_protocol::block::{BlockResponse, WireBlock};

use crate::config::NodeConfig;
use crate::fetch::{self, FetchError};
use crate::network::{self, NetworkClient, NetworkError, NetworkEvent};
use crate::store::{BlockStore, StoreError};

/// Block bytes in one response at most (the wire cap is a little larger).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Block requests served at once.
const SERVE_CONCURRENCY: usize = 16;
/// How long shutdown waits for the node's tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running node. Dropping it without [`NodeHandle::shutdown`] cancels its
/// tasks.
#[must_use = "the node stops when its handle is dropped"]
#[derive(Debug)]
pub struct NodeHandle {
    network: NetworkClient,
    store: BlockStore,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl NodeHandle {
    /// Starts a node: network, block server, and provider records for every
    /// pinned root.
    ///
    /// # Errors
    /// When the network cannot be set up (bad listen address, port taken).
    pub async fn spawn(
        config: NodeConfig,
        key: Keypair,
        store: BlockStore,
    ) -> Result<Self, NetworkError> {
        let peer = key.public().to_peer_id();
        let span = info_span!("node", peer = %short(&peer));
        let cancel = CancellationToken::new();
        let (network, events, event_loop) =
            network::new(key, &config.network, cancel.child_token())?;
        let mut tasks = JoinSet::new();
        tasks.spawn(event_loop.run().instrument(span.clone()));
        tasks.spawn(serve_blocks(network.clone(), store.clone(), events).instrument(span.clone()));
        let handle = Self {
            network,
            store,
            cancel,
            tasks,
        };
        if let Ok(pins) = handle.store.pins().await {
            for pin in pins {
                let _ = handle.network.provide(pin).await;
            }
        }
        Ok(handle)
    }

    /// This node's PeerId.
    #[must_use]
    pub fn peer_id(&self) -> PeerId {
        self.network.peer_id()
    }

    /// The network handle.
    #[must_use]
    pub fn network(&self) -> &NetworkClient {
        &self.network
    }

    /// The block store.
    #[must_use]
    pub fn store(&self) -> &BlockStore {
        &self.store
    }

    /// Listen addresses ending in `/p2p/PEERID`, once bound.
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`].
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetworkError> {
        self.network.listen_addrs().await
    }

    /// Pins `cid` and announces this node as its provider.
    ///
    /// # Errors
    /// When the store or the announcement fails.
    pub async fn pin_and_provide(&self, cid: Cid) -> Result<(), FetchError> {
        self.store.pin(&cid).await?;
        self.network.provide(cid).await?;
        Ok(())
    }

    /// Finds providers of `root` and fetches the DAG's missing blocks.
    ///
    /// # Errors
    /// No provider found, or none could deliver some block.
    pub async fn fetch(&self, root: Cid) -> Result<usize, FetchError> {
        self.fetch_with_progress(root, |_| {}).await
    }

    /// [`NodeHandle::fetch`], reporting progress after every response.
    ///
    /// # Errors
    /// As `fetch`.
    pub async fn fetch_with_progress(
        &self,
        root: Cid,
        progress: impl FnMut(fetch::Progress),
    ) -> Result<usize, FetchError> {
        let providers = self.network.find_providers(root).await?;
        if providers.is_empty() && !self.store.has(&root).await? {
            return Err(FetchError::NoProviders { cid: root });
        }
        fetch::fetch_dag_with_progress(&self.network, &self.store, root, providers, progress).await
    }

    /// Stops the node: cancels its tasks and waits for them (bounded).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            warn!("node tasks did not stop in time; aborting them");
            self.tasks.abort_all();
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The first characters of a PeerId's base58 tail, for log spans.
fn short(peer: &PeerId) -> String {
    let s = peer.to_base58();
    s[s.len().saturating_sub(6)..].to_owned()
}

async fn serve_blocks(
    network: NetworkClient,
    store: BlockStore,
    mut events: mpsc::Receiver<NetworkEvent>,
) {
    // Requests are served concurrently, at most SERVE_CONCURRENCY at once;
    // beyond that the event queue fills and the network refuses new ones.
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(SERVE_CONCURRENCY));
    let mut serving = JoinSet::new();
    while let Some(event) = events.recv().await {
        let NetworkEvent::BlockRequest {
            peer,
            request,
            channel,
        } = event;
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        while serving.try_join_next().is_some() {}
        let (network, store) = (network.clone(), store.clone());
        serving.spawn(async move {
            let _permit = permit;
            let response = answer_blocks(&store, request.want).await;
            debug!(%peer, blocks = response.blocks.len(), "served blocks");
            let _ = network.respond_blocks(channel, response).await;
        });
    }
    serving.abort_all();
}

/// Blocks the store has, up to [`MAX_RESPONSE_BYTES`]; the rest as missing
/// (or left out, to be asked again, when over the cap).
async fn answer_blocks(store: &BlockStore, want: Vec<Cid>) -> BlockResponse {
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
                response.blocks.push(WireBlock {
                    cid,
                    data: data.to_vec(),
                });
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
