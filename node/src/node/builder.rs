//! Assembling a node: the one place that turns a config (and, for a data
//! dir's daemon, the data dir) into running parts.

use libp2p::identity::Keypair;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::dispatch::{announce_pins, dispatch};
use super::{Node, NodeError, NodeHandle};
use crate::blocks;
use crate::config::{DataDir, NodeConfig};
use crate::executor::{CompileBudget, Executor, ExecutorConfig};
use crate::metrics::Metrics;
use crate::network;
use crate::requester::{LocalRuns, Records, Requester};
use crate::store::BlockStore;
use crate::worker::{self, Worker, WorkerParts};

/// Compiling a module takes at least this much resident memory (the
/// compiler's own set-up takes about 100 MiB).
const MIN_COMPILE_MEMORY: u64 = 256 << 20;

/// How a node is put together; [`NodeBuilder::spawn`] starts it.
///
/// Without a data dir (tests, examples, `submit` without a daemon) the node
/// uses the key and store it is given (a new key and a memory store
/// otherwise), an in-memory module cache and work files in the system's
/// temp dir. With [`NodeBuilder::data_dir`] it is that data dir's daemon,
/// which the caller has locked for it alone: it loads (or makes) the
/// identity, opens the store with the configured reserve, removes the temp
/// files and job files of a crash, moves an earlier version's JSON records
/// into the state database, compiles strangers' modules under the compile
/// budget into the data dir's module cache, and serves the HTTP API on the
/// data dir's socket (and `[api] listen`).
#[derive(Debug)]
#[must_use = "a builder does nothing until spawned"]
pub struct NodeBuilder {
    config: NodeConfig,
    key: Option<Keypair>,
    store: Option<BlockStore>,
    data_dir: Option<DataDir>,
}

impl NodeBuilder {
    pub(super) fn new(config: NodeConfig) -> Self {
        Self {
            config,
            key: None,
            store: None,
            data_dir: None,
        }
    }

    /// The node's identity (default: the data dir's, else a new one).
    pub fn key(mut self, key: Keypair) -> Self {
        self.key = Some(key);
        self
    }

    /// The node's block store (default: the data dir's, else in memory).
    pub fn store(mut self, store: BlockStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Makes the node the daemon of `data_dir` (see [`NodeBuilder`]). The
    /// caller holds the data dir's lock alone.
    pub fn data_dir(mut self, data_dir: DataDir) -> Self {
        self.data_dir = Some(data_dir);
        self
    }

    /// Starts the node.
    ///
    /// # Errors
    /// When the identity, the store, the sandbox, the network or the API
    /// cannot be set up.
    pub async fn spawn(self) -> Result<Node, NodeError> {
        let Self {
            config,
            key,
            store,
            data_dir,
        } = self;
        let key = match (key, &data_dir) {
            (Some(key), _) => key,
            (None, Some(dir)) => crate::identity::load_or_create(dir.root())?,
            (None, None) => Keypair::generate_ed25519(),
        };
        let store = match (store, &data_dir) {
            (Some(store), _) => store,
            (None, Some(dir)) => open_store(dir, &config).await?,
            (None, None) => BlockStore::memory(),
        };
        let executor = if config.worker.enabled {
            Some(executor(&config, data_dir.as_ref())?)
        } else {
            None
        };
        let work_dir = match &data_dir {
            Some(dir) => {
                // Per-job files of a daemon that did not stop cleanly:
                // nothing in them is needed (inputs and results live in the
                // store).
                let work = dir.root().join("work");
                let old = work.clone();
                let cleared = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&old))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                if let Err(e) = cleared
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    warn!(error = %e, dir = %work.display(), "cannot clear old job files");
                }
                work
            }
            None => std::env::temp_dir(),
        };

        let span = info_span!("node", peer = %short(&key.public().to_peer_id()));
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let (mut metrics, p2p) = Metrics::new();
        let (blocks, nat) = (metrics.blocks.clone(), metrics.nat.clone());
        let network::Network {
            client: network,
            events,
            event_loop,
            bitswap,
        } = network::new(
            key.clone(),
            &config.network,
            cancel.child_token(),
            network::NetworkMetrics { p2p, blocks, nat },
            metrics.registry_mut(),
        )?;
        tasks.spawn(event_loop.run().instrument(span.clone()));
        // One server answers both block exchanges, under one set of caps.
        let server = blocks::BlockServer::new(store.clone());
        tasks.spawn(
            crate::bitswap::run(
                bitswap.control,
                server.clone(),
                bitswap.requests,
                cancel.child_token(),
            )
            .instrument(span.clone()),
        );
        // Local audits rerun jobs with the worker's executor, else with one
        // made when first needed.
        let local = match &executor {
            Some(executor) => LocalRuns::with(executor.clone()),
            None => {
                LocalRuns::lazy(executor_config(&config, data_dir.as_ref()).unwrap_or_default())
            }
        };
        let worker = match executor {
            Some(executor) => {
                let parts = WorkerParts {
                    key: key.clone(),
                    network: network.clone(),
                    store: store.clone(),
                    executor,
                    metrics: metrics.jobs.clone(),
                };
                let (worker, actor) = Worker::spawn(
                    config.worker.clone(),
                    parts,
                    &work_dir,
                    cancel.child_token(),
                )
                .map_err(NodeError::WorkDir)?;
                tasks.spawn(actor.instrument(span.clone()));
                tasks.spawn(
                    worker::announce_capabilities(network.clone(), config.worker.clone())
                        .instrument(span.clone()),
                );
                Some(worker)
            }
            None => None,
        };
        let requester = Requester::new(network.clone(), store.clone())
            .with_config(&config.requester)
            .with_local_runs(local);
        let (block_jobs, queue) = mpsc::channel(blocks::BLOCK_QUEUE);
        tasks.spawn(blocks::serve(network.clone(), server, queue).instrument(span.clone()));
        let dispatcher = dispatch(
            network.clone(),
            worker.clone(),
            requester.clone(),
            events,
            block_jobs,
        );
        tasks.spawn(dispatcher.instrument(span.clone()));
        tasks.spawn(announce_pins(network.clone(), store.clone()).instrument(span));
        let handle = NodeHandle {
            network,
            store,
            worker,
            requester,
            metrics: std::sync::Arc::new(metrics),
            key,
        };
        let mut node = Node {
            handle,
            cancel,
            tasks,
            api: None,
            resuming: 0,
        };
        if let Some(dir) = &data_dir {
            // Jobs submitted from this data dir whose submission did not
            // end (the daemon, or a `submit` without one, stopped mid-way).
            match node.handle.requester.unfinished().await {
                Ok(jobs) => {
                    node.resuming = jobs.len();
                    let requester = node.handle.requester.clone();
                    let span = info_span!("resume");
                    node.tasks.spawn(requester.resume(jobs).instrument(span));
                }
                Err(e) => {
                    warn!(error = %crate::error_line(&e), "cannot read the submitted jobs");
                }
            }
            // Dropping `node` on an error here cancels what was spawned.
            node.api = Some(
                crate::api::serve(
                    dir.root(),
                    node.handle(),
                    config.api.listen,
                    CancellationToken::new(),
                )
                .await?,
            );
        }
        Ok(node)
    }
}

/// The data dir's store (a daemon's: it holds the data dir alone), with
/// the reserve, its crash leftovers cleared and the earlier version's
/// records moved in.
async fn open_store(dir: &DataDir, config: &NodeConfig) -> Result<BlockStore, NodeError> {
    let path = dir.store();
    let store = BlockStore::open(path.clone())
        .await
        .map_err(|source| NodeError::Store {
            path: path.clone(),
            source: Box::new(source),
        })?
        .with_reserve(config.store.reserve.0)
        .with_hash_on_read(config.store.hash_on_read)
        .held_alone();
    let cleared = store.clear_tmp().await;
    if cleared > 0 {
        info!(files = cleared, "temp files of an earlier crash removed");
    }
    // The ballast, for what must be written on a full disk (made in the
    // background, when there is room above the reserve).
    let _ = store.check_room();
    if let Err(e) = Records::new(store.clone()).migrate_legacy(dir.root()).await {
        warn!(error = %crate::error_line(&e), "cannot move an earlier version's job records");
    }
    Ok(store)
}

/// The worker's sandbox: for a data dir's daemon, strangers' modules
/// compile in a child process under the compile budget into the data dir's
/// module cache; otherwise an in-memory cache.
fn executor(config: &NodeConfig, data_dir: Option<&DataDir>) -> Result<Executor, NodeError> {
    Ok(Executor::new(executor_config(config, data_dir)?)?)
}

/// The executor's settings for `config`: compiled modules cached in the
/// data dir and compiled in a child process within the worker's budget
/// (in memory and in process without a data dir).
fn executor_config(
    config: &NodeConfig,
    data_dir: Option<&DataDir>,
) -> Result<ExecutorConfig, NodeError> {
    let Some(dir) = data_dir else {
        return Ok(ExecutorConfig::default());
    };
    if config.worker.max_compile_memory.0 < MIN_COMPILE_MEMORY {
        return Err(NodeError::Config(
            "worker.max_compile_memory must be at least 256 MiB",
        ));
    }
    let budget = CompileBudget::this_binary(
        config.worker.max_compile_time,
        config.worker.max_compile_memory,
    )
    .map_err(NodeError::CompileBinary)?;
    Ok(ExecutorConfig {
        cache_dir: Some(dir.module_cache()),
        compile: Some(budget),
        ..ExecutorConfig::default()
    })
}

/// The first characters of a PeerId's base58 tail, for log spans.
fn short(peer: &libp2p::PeerId) -> String {
    let s = peer.to_base58();
    s[s.len().saturating_sub(6)..].to_owned()
}
