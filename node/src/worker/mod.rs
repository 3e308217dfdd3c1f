//! The worker side of `/phase/job/1.0.0`: admission, the job lifecycle and
//! receipt signing.
//!
//! Topology (one owner per piece of state):
//! - the **actor** ([`actor`]) alone owns the job table ([`table`]), the
//!   admission state ([`admission`]), the queue of admitted jobs, the
//!   work-directory pool ([`workdirs`]) and the order of pin changes; it
//!   selects over commands from [`Worker`] handles, progress reports from
//!   its jobs, and their completions from one `JoinSet`;
//! - each admitted job runs [`pipeline::run`] (fetch → run → package →
//!   sign) as a task of that `JoinSet` ([`task`]), under `job{id}`; it
//!   records a job that runs a while as under way, and every job's end
//!   (with its receipt and result pinned for it, in one transaction) in the
//!   state database ([`record`]), and returns a typed result to the actor;
//!   delivering receipts and forgetting old jobs are tasks of the same set,
//!   so shutdown waits for (or, past a bound, aborts) every task the worker
//!   started;
//! - on start the actor restores the recorded jobs: finished ones answer
//!   `status` and `receipt` again, and jobs that were under way when the
//!   worker stopped answer `interrupted`.
//!
//! A submission is answered at once: accepted (with the job id) or rejected
//! with a typed [`Rejection`]. A job abandoned because the worker shuts down
//! is forgotten (a status query answers "not found"), so its requester takes
//! it to another worker.

mod actor;
mod admission;
mod answer;
mod pipeline;
mod record;
mod rerun;
mod table;
mod task;
mod workdirs;

use std::path::Path;
use std::sync::Arc;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use phase_protocol::job::{JobId, JobState, Rejection, WorkerInfo};
use phase_protocol::{ByteSize, Capability, JobSpec, SignedReceipt};
use serde::{Deserialize, Serialize};

pub use self::answer::{announce_capabilities, answer, overloaded};
pub use self::pipeline::{FETCH_DEADLINE, MAX_JOB_STDIN, MAX_MODULE_SIZE};
pub use self::record::{RanJob, ran_blocking};
pub use self::rerun::{Difference, Rerun, RerunError, rerun};
use crate::config::WorkerConfig;
use crate::executor::Executor;
use crate::metrics::JobMetrics;
use crate::network::NetworkClient;

/// Commands queued to the worker's actor at most.
const COMMAND_QUEUE: usize = 256;
/// Progress reports of running jobs queued to the actor at most.
const PROGRESS_QUEUE: usize = 256;
/// Job state changes buffered for subscribers (tests, status displays);
/// a slow subscriber misses some and is told it lagged.
const EVENT_BUFFER: usize = 1024;

/// The runtime a receipt names: this crate's version and the wasmtime it is
/// built with (pinned exactly in the workspace manifest).
#[must_use]
pub fn runtime_version() -> String {
    format!(
        "phase-node/{} wasmtime/{}",
        env!("CARGO_PKG_VERSION"),
        crate::executor::WASMTIME_VERSION
    )
}

/// Capabilities a worker with `config` has: those of every worker, and
/// `wasi-http` if it lets jobs reach some host (`net_allow`).
#[must_use]
pub fn worker_capabilities(config: &WorkerConfig) -> Vec<Capability> {
    let mut all = vec![
        Capability::WASI_P1,
        Capability::WASI_P2,
        Capability::DETERMINISTIC,
    ];
    if !config.net_allow.is_empty() {
        all.push(Capability::WASI_HTTP);
    }
    all
}

#[derive(Debug)]
enum Command {
    Submit {
        peer: PeerId,
        spec: Box<JobSpec>,
        reply: oneshot::Sender<Result<JobId, Rejection>>,
    },
    State {
        id: JobId,
        reply: oneshot::Sender<Option<JobState>>,
    },
    Receipt {
        id: JobId,
        reply: oneshot::Sender<Option<SignedReceipt>>,
    },
    Info {
        reply: oneshot::Sender<WorkerInfo>,
    },
    Volunteer {
        change: Preferences,
        reply: oneshot::Sender<Standing>,
    },
}

/// What a volunteer may change while the worker runs (each field left out
/// stays as it is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Jobs run at once (at least 1).
    pub slots: Option<u32>,
    /// Most memory running jobs may ask for together; 0: no cap beyond
    /// `slots × max_memory`.
    pub max_memory_total: Option<ByteSize>,
    /// Take no new job (running and queued ones finish), or take them again.
    pub paused: Option<bool>,
}

/// Where a worker stands: its volunteer's preferences and its load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standing {
    /// Paused by its volunteer: new jobs are refused as `paused`.
    pub paused: bool,
    /// Jobs run at once.
    pub slots: u32,
    /// Jobs running now.
    pub running: u32,
    /// Admitted jobs waiting for a slot (or for memory).
    pub queued: u32,
    /// Most memory running jobs may ask for together, in bytes (0: no cap).
    pub max_memory_total: ByteSize,
    /// Memory the running jobs asked for, together, in bytes.
    pub memory_running: ByteSize,
    /// The highest memory one job may ask for now, in bytes.
    pub max_memory: ByteSize,
}

/// What a worker runs with: the node's identity (it signs receipts), its
/// network and store, the sandbox, and the metrics it counts into.
#[derive(Debug)]
pub struct WorkerParts {
    /// The node's identity key.
    pub key: Keypair,
    /// The network handle.
    pub network: NetworkClient,
    /// The block store.
    pub store: crate::store::BlockStore,
    /// The sandbox.
    pub executor: Executor,
    /// Where the worker counts jobs.
    pub metrics: JobMetrics,
}

/// Handle to the worker's actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Worker {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<(JobId, JobState)>,
}

impl Worker {
    /// A worker that runs jobs with `executor`, keeping work files in a
    /// folder of its own under `work_dir` (removed when the worker stops).
    /// Returns the handle and the actor, which the caller runs (it ends when
    /// `cancel` fires, after its jobs, or when every handle is dropped).
    ///
    /// # Errors
    /// When that folder cannot be made.
    pub fn spawn(
        config: WorkerConfig,
        parts: WorkerParts,
        work_dir: &Path,
        cancel: CancellationToken,
    ) -> std::io::Result<(Self, impl Future<Output = ()> + Send + 'static)> {
        let WorkerParts {
            key,
            network,
            store,
            executor,
            metrics,
        } = parts;
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (progress, progress_rx) = mpsc::channel(PROGRESS_QUEUE);
        let events = broadcast::channel(EVENT_BUFFER).0;
        let (writes, writer) = record::writer(store.clone(), cancel.child_token());
        let context = Arc::new(pipeline::Context {
            key,
            network,
            store,
            executor,
            max_input: config.max_input.0,
            max_state: config.max_state.0,
            net_allow: crate::executor::NetAccess::new(&config.net_allow),
            lie: config.lies(),
            progress,
            metrics,
            writes,
        });
        let actor = actor::Actor::new(
            config,
            context,
            work_dir,
            commands_rx,
            progress_rx,
            events.clone(),
            cancel,
        )?;
        let run = async move {
            // The writer stops with the actor (its token is the actor's child).
            tokio::join!(actor.run(), writer);
        };
        Ok((Self { commands, events }, run))
    }

    /// Job state changes, as they happen.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<(JobId, JobState)> {
        self.events.subscribe()
    }

    async fn call<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(cmd(reply)).await.ok()?;
        rx.await.ok()
    }

    /// What this worker offers now; `None` once it has stopped.
    pub async fn info(&self) -> Option<WorkerInfo> {
        self.call(|reply| Command::Info { reply }).await
    }

    /// Changes the volunteer's preferences (`Preferences::default()`
    /// changes nothing) and says where the worker stands; `None` once it
    /// has stopped.
    pub async fn volunteer(&self, change: Preferences) -> Option<Standing> {
        self.call(|reply| Command::Volunteer { change, reply })
            .await
    }

    /// A job's state here, if this worker knows it.
    pub async fn state(&self, id: JobId) -> Option<JobState> {
        self.call(|reply| Command::State { id, reply })
            .await
            .flatten()
    }

    /// A job's signed receipt, if it ran here.
    pub async fn receipt(&self, id: JobId) -> Option<SignedReceipt> {
        self.call(|reply| Command::Receipt { id, reply })
            .await
            .flatten()
    }

    /// Admits (or refuses) `spec` from `peer`; an accepted job is recorded
    /// before this answers. Never waits on the job itself.
    pub async fn submit(&self, peer: PeerId, spec: Box<JobSpec>) -> Result<JobId, Rejection> {
        self.call(|reply| Command::Submit { peer, spec, reply })
            .await
            .unwrap_or(Err(Rejection::Busy)) // stopped: try another worker
    }
}
