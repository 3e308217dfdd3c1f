//! Wiring: a node is its identity, its block store and its network, a
//! worker ([`Scheduler`], unless disabled) and a [`Requester`].
//!
//! Topology:
//! - the swarm task ([`crate::network`]) owns the libp2p swarm;
//! - the dispatcher reads [`NetworkEvent`]s and never waits on serving
//!   them: job requests are answered by the scheduler, delivered receipts
//!   routed to the requester, block requests queued (bounded) for
//! - the block server, which answers them from the store (at most
//!   [`MAX_RESPONSE_BYTES`] per response, 16 at once);
//! - the announcer provides the worker's capability keys, again once the
//!   first peer is known;
//! - [`NodeHandle`] holds the handles and the cancellation token.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use phase_protocol::Cid;
use phase_protocol::block::{BlockRequest, BlockResponse, WireBlock};
use phase_protocol::job::{JobRequest, JobResponse, Rejection};

use crate::config::NodeConfig;
use crate::executor::{ExecError, Executor, ExecutorConfig};
use crate::fetch::{self, FetchError};
use crate::network::{self, NetworkClient, NetworkError, NetworkEvent};
use crate::requester::{Deliveries, Requester};
use crate::scheduler::{self, Scheduler};
use crate::store::{BlockStore, StoreError};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The network could not be set up.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The worker's sandbox could not be set up.
    #[error("cannot set up the worker's sandbox")]
    Executor(#[from] ExecError),
    /// The worker's folder for job files could not be made.
    #[error("cannot make the worker's folder for job files")]
    WorkDir(#[source] std::io::Error),
}

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
    scheduler: Option<Scheduler>,
    requester: Requester,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl NodeHandle {
    /// Starts a node: network, block server, worker (with an in-memory
    /// module cache, work files in the system's temp dir) and provider
    /// records for every pinned root.
    ///
    /// # Errors
    /// When the network cannot be set up (bad listen address, port taken).
    pub async fn spawn(
        config: NodeConfig,
        key: Keypair,
        store: BlockStore,
    ) -> Result<Self, NodeError> {
        let executor = if config.worker.enabled {
            Some(Executor::new(ExecutorConfig::default())?)
        } else {
            None
        };
        Self::spawn_with(config, key, store, executor, std::env::temp_dir()).await
    }

    /// [`NodeHandle::spawn`] with a given executor (none: not a worker)
    /// and a folder for the worker's per-job files.
    ///
    /// # Errors
    /// When the network cannot be set up.
    pub async fn spawn_with(
        config: NodeConfig,
        key: Keypair,
        store: BlockStore,
        executor: Option<Executor>,
        work_dir: PathBuf,
    ) -> Result<Self, NodeError> {
        let peer = key.public().to_peer_id();
        let span = info_span!("node", peer = %short(&peer));
        let cancel = CancellationToken::new();
        let (network, events, event_loop) =
            network::new(key.clone(), &config.network, cancel.child_token())?;
        let scheduler = match executor {
            Some(executor) if config.worker.enabled => Some(
                Scheduler::new(
                    config.worker.clone(),
                    key,
                    network.clone(),
                    store.clone(),
                    executor,
                    work_dir,
                    cancel.child_token(),
                )
                .map_err(NodeError::WorkDir)?,
            ),
            _ => None,
        };
        let deliveries = Deliveries::default();
        let requester = Requester::new(network.clone(), store.clone(), deliveries.clone());
        let mut tasks = JoinSet::new();
        tasks.spawn(event_loop.run().instrument(span.clone()));
        let dispatcher = dispatch(
            network.clone(),
            store.clone(),
            scheduler.clone(),
            deliveries,
            events,
        );
        tasks.spawn(dispatcher.instrument(span.clone()));
        if scheduler.is_some() {
            tasks.spawn(announce_capabilities(network.clone()).instrument(span.clone()));
        }
        let handle = Self {
            network,
            store,
            scheduler,
            requester,
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

    /// The worker, unless this node does not run jobs.
    #[must_use]
    pub fn scheduler(&self) -> Option<&Scheduler> {
        self.scheduler.as_ref()
    }

    /// The requester: submits jobs to other nodes.
    #[must_use]
    pub fn requester(&self) -> &Requester {
        &self.requester
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

/// Provides the capability keys now, and again once a peer is known (a
/// record put while alone stays local); Kademlia republishes them after.
async fn announce_capabilities(network: NetworkClient) {
    let provide_all = || async {
        for capability in scheduler::worker_capabilities() {
            if let Err(e) = network.provide_capability(&capability).await {
                debug!(%capability, error = %e, "cannot announce capability");
            }
        }
    };
    provide_all().await;
    if network.wait_routing_peers(1).await.is_ok() {
        provide_all().await;
    }
}

/// Block requests waiting for a serving slot at most; past this a block
/// request is dropped (the peer's request fails and it asks again or asks
/// someone else), as it was when the event queue itself was full.
const BLOCK_QUEUE: usize = 64;

/// A block request, as the dispatcher hands it to the block server.
type BlockJob = (PeerId, BlockRequest, ResponseChannel<BlockResponse>);

/// Routes the network's events and never waits on serving them: block
/// requests go to the block server's bounded queue, job requests are
/// answered at once by the scheduler, delivered receipts by the requester.
/// So a worker busy serving a large fetch still admits jobs and answers
/// status polls promptly.
async fn dispatch(
    network: NetworkClient,
    store: BlockStore,
    scheduler: Option<Scheduler>,
    deliveries: Deliveries,
    mut events: mpsc::Receiver<NetworkEvent>,
) {
    let (blocks, queue) = mpsc::channel(BLOCK_QUEUE);
    let server = tokio::spawn(serve_blocks(network.clone(), store, queue).in_current_span());
    while let Some(event) = events.recv().await {
        match event {
            NetworkEvent::BlockRequest {
                peer,
                request,
                channel,
            } => {
                if blocks.try_send((peer, request, channel)).is_err() {
                    debug!(%peer, "block server busy; block request dropped");
                }
            }
            NetworkEvent::JobRequest {
                peer,
                request,
                channel,
            } => {
                let response = match (request, &scheduler) {
                    (JobRequest::Deliver(receipt), _) => deliveries.deliver(peer, *receipt),
                    (request, Some(scheduler)) => scheduler.handle(peer, request),
                    (JobRequest::Status(job) | JobRequest::Receipt(job), None) => {
                        JobResponse::NotFound(job)
                    }
                    (_, None) => JobResponse::Rejected(Rejection::Malformed {
                        message: "this node does not run jobs".into(),
                    }),
                };
                let _ = network.respond_job(channel, response).await;
            }
        }
    }
    server.abort();
}

/// Serves block requests from the store, at most [`SERVE_CONCURRENCY`] at
/// once.
async fn serve_blocks(
    network: NetworkClient,
    store: BlockStore,
    mut queue: mpsc::Receiver<BlockJob>,
) {
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(SERVE_CONCURRENCY));
    let mut serving = JoinSet::new();
    while let Some((peer, request, channel)) = queue.recv().await {
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
