//! A node: its identity, block store and network, a worker (unless
//! disabled), a requester and, for a data dir's daemon, the HTTP API.
//!
//! [`Node::builder`] is the one assembly (the daemon, `submit` without a
//! daemon, the tests and the examples all start nodes through it). The
//! [`Node`] it spawns owns every task (one `JoinSet`), the cancellation
//! token and the API server, and stops them in [`Node::shutdown`], which is
//! graceful and bounded; it hands out [`NodeHandle`]s, cheap clones of the
//! handles to the parts.
//!
//! Topology:
//! - the swarm task ([`crate::network`]) owns the libp2p swarm;
//! - the dispatcher ([`dispatch`]) routes the network's events and serves
//!   none: job requests to the worker ([`worker::answer`]), delivered
//!   receipts to the requester ([`Requester::deliver`]), block requests to
//!   the block server's bounded queue;
//! - the block server ([`blocks::serve`]) and the Bitswap actor
//!   ([`crate::bitswap`]) answer peers' wants from the store;
//! - the worker's actor ([`crate::worker`]) owns the job table and its jobs;
//! - the announcers provide the worker's capability keys and every pinned
//!   root.

mod builder;
mod dispatch;

use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use phase_protocol::Cid;

pub use self::builder::NodeBuilder;
use crate::api::ApiServer;
use crate::blocks::{self, FetchError, FetchOptions};
use crate::config::NodeConfig;
use crate::executor::ExecError;
use crate::metrics::Metrics;
use crate::network::{NetworkClient, NetworkError};
use crate::requester::Requester;
use crate::store::BlockStore;
use crate::worker::Worker;

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
    /// The data dir's block store could not be opened.
    #[error("cannot open the block store in {}", path.display())]
    Store {
        /// The store's folder.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<crate::store::StoreError>,
    },
    /// The data dir's identity key could not be loaded or made.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The compile budget needs this binary, which cannot be found.
    #[error("cannot find the phase-node binary to compile modules with")]
    CompileBinary(#[source] std::io::Error),
    /// A worker setting is out of range.
    #[error("{0}")]
    Config(&'static str),
    /// The HTTP API could not be served.
    #[error(transparent)]
    Api(#[from] crate::api::ServeError),
}

/// How long shutdown waits for the node's tasks, after the API drained.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running node: owns its tasks. Dropping it without
/// [`Node::shutdown`] cancels them (without waiting).
#[must_use = "the node stops when it is dropped"]
#[derive(Debug)]
pub struct Node {
    handle: NodeHandle,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    api: Option<ApiServer>,
    resuming: usize,
}

/// The handles to a node's parts. Cheap to clone; holding one does not
/// keep the node running.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    network: NetworkClient,
    store: BlockStore,
    worker: Option<Worker>,
    requester: Requester,
    metrics: Arc<Metrics>,
    /// The node's identity: signs its ledger's head.
    key: libp2p::identity::Keypair,
}

impl Node {
    /// Starts assembling a node with `config`; see [`NodeBuilder`].
    pub fn builder(config: NodeConfig) -> NodeBuilder {
        NodeBuilder::new(config)
    }

    /// A handle to the node's parts.
    #[must_use]
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// How many submissions from this data dir that did not end the node
    /// resumed when it started (a data dir's daemon only).
    #[must_use]
    pub fn resuming(&self) -> usize {
        self.resuming
    }

    /// The API server, when the node serves its data dir's API.
    #[must_use]
    pub fn api(&self) -> Option<&ApiServer> {
        self.api.as_ref()
    }

    /// Stops the node, gracefully and within a bound: the API stops
    /// accepting and its requests in flight get [`crate::api::DRAIN`] to
    /// end (the rest of the node still serving them), then every task is
    /// cancelled and waited for ([`SHUTDOWN_GRACE`]), and what is left is
    /// aborted.
    pub async fn shutdown(mut self) {
        if let Some(api) = self.api.take() {
            api.shutdown().await;
        }
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            warn!("node tasks did not stop in time; aborting them");
            self.tasks.shutdown().await;
        }
    }
}

impl std::ops::Deref for Node {
    type Target = NodeHandle;

    fn deref(&self) -> &NodeHandle {
        &self.handle
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl NodeHandle {
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

    /// The work ledger's totals, per peer and over all.
    ///
    /// # Errors
    /// The state database failed.
    pub async fn ledger(&self) -> Result<crate::store::ledger::Summary, crate::store::StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || Ok(store.state_blocking()?.ledger_summary()?)).await?
    }

    /// The newest `limit` entries of the work ledger, newest first.
    ///
    /// # Errors
    /// The state database failed.
    pub async fn ledger_recent(
        &self,
        limit: usize,
    ) -> Result<Vec<phase_protocol::ledger::Entry>, crate::store::StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || Ok(store.state_blocking()?.ledger_recent(limit)?))
            .await?
    }

    /// The work ledger as a CAR file, its head signed by this node.
    ///
    /// # Errors
    /// The state database or store failed, or a receipt is missing.
    pub async fn ledger_export(&self) -> Result<Vec<u8>, crate::store::ledger::ExportError> {
        let (store, key) = (self.store.clone(), self.key.clone());
        tokio::task::spawn_blocking(move || store.ledger_export_blocking(&key))
            .await
            .map_err(crate::store::StoreError::from)?
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
}
