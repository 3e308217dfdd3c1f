//! Wiring: a node is its identity, its block store and its network, a
//! [`Worker`] (unless disabled) and a [`Requester`].
//!
//! Topology, every task in one `JoinSet` so shutdown has one path:
//! - the swarm task ([`crate::network`]) owns the libp2p swarm;
//! - the dispatcher reads [`NetworkEvent`]s and never serves them itself:
//!   job requests go to the worker's actor, delivered receipts to the
//!   requester, block requests to the block server's bounded queue;
//! - the block server ([`blocks::serve`]) answers block requests from the
//!   store;
//! - the worker's actor ([`crate::worker`]) owns the job table and its jobs;
//! - the announcers provide the worker's capability keys (again once the
//!   first peer is known) and every pinned root;
//! - [`NodeHandle`] holds the handles and the cancellation token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use phase_protocol::Cid;
use phase_protocol::job::{JobRequest, JobResponse, Rejection};

use crate::blocks::{self, BlockJob, FetchError, FetchOptions};
use crate::config::NodeConfig;
use crate::executor::{ExecError, Executor, ExecutorConfig};
use crate::metrics::Metrics;
use crate::network::{self, NetworkClient, NetworkError, NetworkEvent};
use crate::requester::{Deliveries, Requester};
use crate::store::BlockStore;
use crate::worker::{self, Worker, WorkerParts};

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

/// How long shutdown waits for the node's tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running node. Dropping it without [`NodeHandle::shutdown`] cancels its
/// tasks.
#[must_use = "the node stops when its handle is dropped"]
#[derive(Debug)]
pub struct NodeHandle {
    network: NetworkClient,
    store: BlockStore,
    worker: Option<Worker>,
    requester: Requester,
    metrics: Arc<Metrics>,
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
    #[allow(clippy::unused_async)] // kept async: callers start nodes from async code
    pub async fn spawn_with(
        config: NodeConfig,
        key: Keypair,
        store: BlockStore,
        executor: Option<Executor>,
        work_dir: PathBuf,
    ) -> Result<Self, NodeError> {
        let span = info_span!("node", peer = %short(&key.public().to_peer_id()));
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let (mut metrics, p2p) = Metrics::new();
        let (blocks, nat) = (metrics.blocks.clone(), metrics.nat.clone());
        let (network, events, event_loop, bitswap) = network::new(
            key.clone(),
            &config.network,
            cancel.child_token(),
            (p2p, blocks, nat),
            metrics.registry_mut(),
        )?;
        tasks.spawn(event_loop.run().instrument(span.clone()));
        tasks.spawn(
            crate::bitswap::run(
                bitswap.control,
                store.clone(),
                bitswap.requests,
                cancel.child_token(),
            )
            .instrument(span.clone()),
        );
        let worker = match executor {
            Some(executor) if config.worker.enabled => {
                let parts = WorkerParts {
                    key,
                    network: network.clone(),
                    store: store.clone(),
                    executor,
                    metrics: metrics.jobs.clone(),
                };
                let (worker, actor) = Worker::spawn(
                    config.worker.clone(),
                    parts,
                    Path::new(&work_dir),
                    cancel.child_token(),
                )
                .map_err(NodeError::WorkDir)?;
                tasks.spawn(actor.instrument(span.clone()));
                tasks.spawn(announce_capabilities(network.clone()).instrument(span.clone()));
                Some(worker)
            }
            _ => None,
        };
        let deliveries = Deliveries::default();
        let requester = Requester::new(network.clone(), store.clone(), deliveries.clone());
        let (blocks, queue) = mpsc::channel(blocks::BLOCK_QUEUE);
        tasks.spawn(blocks::serve(network.clone(), store.clone(), queue).instrument(span.clone()));
        let dispatcher = dispatch(network.clone(), worker.clone(), deliveries, events, blocks);
        tasks.spawn(dispatcher.instrument(span.clone()));
        tasks.spawn(announce_pins(network.clone(), store.clone()).instrument(span));
        Ok(Self {
            network,
            store,
            worker,
            requester,
            metrics: Arc::new(metrics),
            cancel,
            tasks,
        })
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
    pub fn worker(&self) -> Option<&Worker> {
        self.worker.as_ref()
    }

    /// The node's metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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

    /// Fetches the DAG under `root` from the providers the DHT knows, with
    /// [`blocks::fetch`]'s defaults.
    ///
    /// # Errors
    /// No provider found, or none could deliver some block.
    pub async fn fetch(&self, root: Cid) -> Result<usize, FetchError> {
        blocks::fetch(
            &self.network,
            &self.store,
            root,
            FetchOptions::default(),
            |_| {},
        )
        .await
    }

    /// Stops the node: cancels its tasks and waits for them (bounded).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            warn!("node tasks did not stop in time; aborting them");
            self.tasks.shutdown().await;
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
        for capability in worker::worker_capabilities() {
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

/// Provides every pinned root (Kademlia republishes them after).
async fn announce_pins(network: NetworkClient, store: BlockStore) {
    match store.pins().await {
        Ok(pins) => {
            for pin in pins {
                if let Err(e) = network.provide(pin).await {
                    debug!(%pin, error = %e, "cannot announce a pinned root");
                }
            }
        }
        Err(e) => warn!(error = %e, "cannot list pinned roots to announce"),
    }
}

/// Routes the network's events and never serves them itself: block
/// requests go to the block server's bounded queue, job requests to the
/// worker, delivered receipts to the requester. So a worker busy serving a
/// large fetch still admits jobs and answers status polls promptly.
async fn dispatch(
    network: NetworkClient,
    worker: Option<Worker>,
    deliveries: Deliveries,
    mut events: mpsc::Receiver<NetworkEvent>,
    blocks: mpsc::Sender<BlockJob>,
) {
    // Job requests the worker is answering; a submission waits for its
    // admission to be recorded, and must not hold up status polls.
    let mut answering = JoinSet::new();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            Some(_) = answering.join_next() => continue,
        };
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
                let Some(worker) = &worker else {
                    let response = not_a_worker(&deliveries, peer, request);
                    let _ = network.respond_job(channel, response).await;
                    continue;
                };
                if answering.len() >= MAX_ANSWERING {
                    match request {
                        // Dropped, not "not found": the peer asks again.
                        JobRequest::Status(_) | JobRequest::Receipt(_) => {
                            debug!(%peer, "too many job requests in hand; query dropped");
                        }
                        _ => {
                            debug!(%peer, "too many job requests in hand; busy");
                            let busy = JobResponse::Rejected(Rejection::Busy);
                            let _ = network.respond_job(channel, busy).await;
                        }
                    }
                    continue;
                }
                let (network, worker, deliveries) =
                    (network.clone(), worker.clone(), deliveries.clone());
                answering.spawn(
                    async move {
                        let response = answer_job(&worker, &deliveries, peer, request).await;
                        let _ = network.respond_job(channel, response).await;
                    }
                    .in_current_span(),
                );
            }
        }
    }
    answering.shutdown().await;
}

/// A worker's answer to a job request; delivered receipts go to the
/// requester.
async fn answer_job(
    worker: &Worker,
    deliveries: &Deliveries,
    peer: PeerId,
    request: JobRequest,
) -> JobResponse {
    match request {
        JobRequest::Submit(spec) => match worker.submit(peer, spec).await {
            Ok(id) => JobResponse::Accepted(id),
            Err(rejection) => JobResponse::Rejected(rejection),
        },
        JobRequest::Status(job) => match worker.state(job).await {
            Some(state) => JobResponse::Status { job, state },
            None => JobResponse::NotFound(job),
        },
        JobRequest::Receipt(job) => match worker.receipt(job).await {
            Some(r) => JobResponse::Receipt(Box::new(r)),
            None => JobResponse::NotFound(job),
        },
        JobRequest::Capabilities => match worker.info().await {
            Some(info) => JobResponse::Capabilities(info),
            None => JobResponse::Rejected(Rejection::Busy), // stopping
        },
        JobRequest::Deliver(receipt) => deliveries.deliver(peer, *receipt),
    }
}

/// The answer of a node that runs no jobs.
fn not_a_worker(deliveries: &Deliveries, peer: PeerId, request: JobRequest) -> JobResponse {
    match request {
        JobRequest::Deliver(receipt) => deliveries.deliver(peer, *receipt),
        JobRequest::Status(job) | JobRequest::Receipt(job) => JobResponse::NotFound(job),
        JobRequest::Submit(_) | JobRequest::Capabilities => {
            JobResponse::Rejected(Rejection::Malformed {
                message: "this node does not run jobs".into(),
            })
        }
    }
}

/// Job requests answered at once at most; past this a submission is
/// answered `busy` and a status query dropped (the peer asks again), as
/// when the network's event queue is full.
const MAX_ANSWERING: usize = 256;
