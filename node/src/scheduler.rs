//! The worker side of `/phase/job/1.0.0`: admission, the job lifecycle and
//! receipt signing.
//!
//! - A submission is answered at once: accepted (with the job id) or
//!   rejected with a typed [`Rejection`]. Admission is a `try_acquire` on a
//!   semaphore of `slots + queue` permits: a full worker says `busy`, it
//!   never queues without bound.
//! - An accepted job runs in its own task under `job{id}`: it waits for one
//!   of `slots` run permits, fetches the module and inputs by CID (from the
//!   requester first, then any provider; every block is checked against its
//!   CID), runs them in the [`Executor`], stores the result package
//!   (`stdout`, `stderr`, `output/`) as a UnixFS directory, signs the
//!   receipt with the node's identity key, keeps it (by job id, and as a
//!   pinned block), provides the result CID, and delivers the receipt to the
//!   requester.
//! - A job whose inputs cannot be had, or whose module is not a runnable
//!   WASI command, ends [`JobState::Failed`] without a receipt: no run
//!   happened to attest. Every run that happened gets a signed receipt,
//!   whatever its status. A job abandoned because the worker shuts down is
//!   forgotten instead (a status query answers "not found"), so its
//!   requester takes it to another worker.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use libp2p::PeerId;
use libp2p::identity::Keypair;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use phase_protocol::job::{JobId, JobRequest, JobResponse, JobState, Rejection, WorkerInfo};
use phase_protocol::unixfs::{self, Root};
use phase_protocol::{Capability, Cid, JobSpec, Limits, Receipt, SignedReceipt};

use crate::config::WorkerConfig;
use crate::error_line;
use crate::executor::{ExecError, Executor, ModuleKind, RunSpec};
use crate::fetch::{self, FetchError};
use crate::network::NetworkClient;
use crate::store::files::{self, FilesError};
use crate::store::{BlockStore, StoreError};

/// Deadline for fetching a job's module and inputs.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(300);
/// Largest stdin a job may have: it is held in memory while the job runs.
pub const MAX_JOB_STDIN: u64 = 256 << 20;
/// Largest module a worker loads: compiled code is a multiple of this.
pub const MAX_MODULE_SIZE: u64 = 256 << 20;
/// Attempts to deliver a receipt to its requester (it can also ask for it).
const DELIVERY_ATTEMPTS: u32 = 3;
/// Job state changes buffered for subscribers (tests, status displays);
/// a slow subscriber misses some and is told it lagged.
const EVENT_BUFFER: usize = 1024;

/// The runtime a receipt names.
#[must_use]
pub fn runtime_version() -> String {
    format!("phase-node/{} wasmtime/48.0.8", env!("CARGO_PKG_VERSION"))
}

/// Capabilities every worker has.
#[must_use]
pub fn worker_capabilities() -> Vec<Capability> {
    [
        Capability::WASI_P1,
        Capability::WASI_P2,
        Capability::DETERMINISTIC,
    ]
    .iter()
    .map(|c| c.parse().expect("built-in capability names are valid"))
    .collect()
}

/// Why a job could not be run (it ends `Failed`, without a receipt).
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("cannot fetch the job's inputs")]
    Fetch(#[source] FetchError),
    #[error("fetching the job's inputs took longer than {0:?}")]
    FetchTimeout(Duration),
    #[error("cannot read the job's inputs")]
    Files(#[from] FilesError),
    #[error("cannot store the result")]
    Store(#[from] StoreError),
    #[error("module {0} is not runnable")]
    Module(Cid, #[source] ExecError),
    #[error("the run failed")]
    Exec(#[source] ExecError),
    #[error("cannot make a work directory")]
    WorkDir(#[source] std::io::Error),
    #[error("cannot sign the receipt")]
    Sign(#[source] phase_protocol::SignError),
    #[error("module is a {0}, which this job's capabilities do not allow")]
    Kind(&'static str),
}

struct Entry {
    state: JobState,
    receipt: Option<SignedReceipt>,
}

#[derive(Default)]
struct JobTable {
    jobs: HashMap<JobId, Entry>,
    finished: VecDeque<JobId>,
    /// Kept jobs per result CID: a result stays pinned while one of them is
    /// kept (deterministic jobs share results).
    results: HashMap<Cid, usize>,
    /// Finished jobs kept.
    keep: usize,
    /// Jobs admitted (running or queued) per requester; no zero entries.
    admitted: HashMap<PeerId, usize>,
}

impl JobTable {
    /// Records a finished job and forgets the oldest past `keep`. Returns the
    /// blocks no kept job needs pinned any more: the forgotten jobs'
    /// receipts, and their results unless a kept job has the same.
    fn finish(&mut self, id: JobId) -> Vec<Cid> {
        if let Some(r) = self.jobs.get(&id).and_then(|e| e.receipt.as_ref()) {
            *self.results.entry(r.receipt().result).or_default() += 1;
        }
        self.finished.push_back(id);
        let mut unpin = Vec::new();
        while self.finished.len() > self.keep {
            let Some(old) = self.finished.pop_front() else {
                break;
            };
            let Some(receipt) = self.jobs.remove(&old).and_then(|e| e.receipt) else {
                continue;
            };
            unpin.push(receipt.cid());
            let result = receipt.receipt().result;
            if let Some(n) = self.results.get_mut(&result) {
                *n -= 1;
                if *n == 0 {
                    self.results.remove(&result);
                    unpin.push(result);
                }
            }
        }
        unpin
    }
}

struct Inner {
    config: WorkerConfig,
    key: Keypair,
    network: NetworkClient,
    store: BlockStore,
    executor: Executor,
    admission: Arc<Semaphore>,
    running: Arc<Semaphore>,
    table: Mutex<JobTable>,
    events: broadcast::Sender<(JobId, JobState)>,
    work_dirs: WorkDirs,
    cancel: CancellationToken,
}

/// The worker. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("slots", &self.inner.config.slots)
            .field("free", &self.inner.admission.available_permits())
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A worker that runs jobs with `executor`, keeping work files in a
    /// folder of its own under `work_dir` (removed when the worker is).
    ///
    /// # Errors
    /// When that folder cannot be made.
    pub fn new(
        config: WorkerConfig,
        key: Keypair,
        network: NetworkClient,
        store: BlockStore,
        executor: Executor,
        work_dir: PathBuf,
        cancel: CancellationToken,
    ) -> std::io::Result<Self> {
        let slots = config.slots.max(1) as usize;
        let admitted = slots + config.queue as usize;
        let keep = config.keep_jobs as usize;
        std::fs::create_dir_all(&work_dir)?;
        let work_dirs = WorkDirs {
            root: tempfile::Builder::new()
                .prefix("jobs-")
                .tempdir_in(&work_dir)?,
            spare: Arc::new(Mutex::new(Vec::with_capacity(slots))),
            keep: slots,
            made: std::sync::atomic::AtomicU64::new(0),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                admission: Arc::new(Semaphore::new(admitted)),
                running: Arc::new(Semaphore::new(slots)),
                config,
                key,
                network,
                store,
                executor,
                table: Mutex::new(JobTable {
                    keep,
                    ..JobTable::default()
                }),
                events: broadcast::channel(EVENT_BUFFER).0,
                work_dirs,
                cancel,
            }),
        })
    }

    /// Job state changes, as they happen.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<(JobId, JobState)> {
        self.inner.events.subscribe()
    }

    /// What this worker offers now.
    #[must_use]
    pub fn info(&self) -> WorkerInfo {
        let config = &self.inner.config;
        WorkerInfo {
            capabilities: worker_capabilities().into_iter().collect(),
            max_limits: config.max_limits(),
            slots: config.slots.max(1),
            free_slots: u32::try_from(self.inner.running.available_permits()).unwrap_or(u32::MAX),
            runtime: runtime_version(),
        }
    }

    /// A job's state here, if this worker knows it.
    #[must_use]
    pub fn state(&self, id: &JobId) -> Option<JobState> {
        self.table().jobs.get(id).map(|e| e.state.clone())
    }

    /// A job's signed receipt, if it ran here.
    #[must_use]
    pub fn receipt(&self, id: &JobId) -> Option<SignedReceipt> {
        self.table().jobs.get(id).and_then(|e| e.receipt.clone())
    }

    fn table(&self) -> std::sync::MutexGuard<'_, JobTable> {
        self.inner
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_state(&self, id: JobId, state: JobState) {
        let mut table = self.table();
        if let Some(entry) = table.jobs.get_mut(&id) {
            entry.state = state.clone();
        }
        let unpin = if matches!(state, JobState::Done { .. } | JobState::Failed { .. }) {
            table.finish(id)
        } else {
            Vec::new()
        };
        drop(table);
        if !unpin.is_empty() {
            // Under the table lock, so a job that finishes meanwhile with
            // the same result (it counts before it pins) keeps its pin.
            let inner = Arc::clone(&self.inner);
            tokio::task::spawn_blocking(move || {
                let table = inner
                    .table
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for cid in unpin.iter().filter(|c| !table.results.contains_key(c)) {
                    if let Err(e) = inner.store.unpin_blocking(cid) {
                        debug!(%cid, error = %e, "cannot unpin an old job's block");
                    }
                }
            });
        }
        let _ = self.inner.events.send((id, state));
    }

    /// Answers a job request at once (never waits on the job itself).
    /// Deliveries are not for the worker; they are answered by the node.
    #[must_use]
    pub fn handle(&self, peer: PeerId, request: JobRequest) -> JobResponse {
        match request {
            JobRequest::Submit(spec) => match self.admit(peer, *spec) {
                Ok(id) => JobResponse::Accepted(id),
                Err(rejection) => JobResponse::Rejected(rejection),
            },
            JobRequest::Status(job) => match self.state(&job) {
                Some(state) => JobResponse::Status { job, state },
                None => JobResponse::NotFound(job),
            },
            JobRequest::Receipt(job) => match self.receipt(&job) {
                Some(r) => JobResponse::Receipt(Box::new(r)),
                None => JobResponse::NotFound(job),
            },
            JobRequest::Capabilities => JobResponse::Capabilities(self.info()),
            JobRequest::Deliver(_) => JobResponse::Rejected(Rejection::Malformed {
                message: "receipts are delivered to requesters, not workers".into(),
            }),
        }
    }

    /// Checks and admits a job, spawning its task.
    fn admit(&self, peer: PeerId, spec: JobSpec) -> Result<JobId, Rejection> {
        let config = &self.inner.config;
        if !config.enabled {
            return Err(Rejection::Malformed {
                message: "this node does not run jobs".into(),
            });
        }
        if !config.admits(&peer) {
            warn!(%peer, "job from a denied requester refused");
            return Err(Rejection::Denied);
        }
        spec.validate().map_err(|e| Rejection::Malformed {
            message: e.to_string(),
        })?;
        check_limits(&spec.limits, &config.max_limits())?;
        let have = worker_capabilities();
        if let Some(missing) = spec.capabilities.iter().find(|c| !have.contains(c)) {
            return Err(Rejection::UnsupportedCapability {
                capability: missing.clone(),
            });
        }
        let id = spec.id();
        let mut table = self.table();
        if table.jobs.contains_key(&id) {
            return Ok(id); // a repeated submission: the job already runs here
        }
        let mine = table.admitted.get(&peer).copied().unwrap_or(0);
        if mine >= config.per_requester() {
            debug!(%peer, admitted = mine, "requester at its share of this worker; busy");
            return Err(Rejection::Busy);
        }
        let Ok(permit) = Arc::clone(&self.inner.admission).try_acquire_owned() else {
            debug!(%peer, "all slots and the queue are full; busy");
            return Err(Rejection::Busy);
        };
        *table.admitted.entry(peer).or_default() += 1;
        let permit = Admitted {
            _permit: permit,
            peer,
            inner: Arc::clone(&self.inner),
        };
        table.jobs.insert(
            id,
            Entry {
                state: JobState::Queued,
                receipt: None,
            },
        );
        drop(table);
        info!(job = %id, %peer, "job accepted");
        let this = self.clone();
        let span = info_span!("job", id = %id);
        tokio::spawn(this.run_job(id, peer, spec, permit).instrument(span));
        Ok(id)
    }

    async fn run_job(self, id: JobId, requester: PeerId, spec: JobSpec, admitted: Admitted) {
        let cancel = self.inner.cancel.clone();
        let work = async {
            let _slot = Arc::clone(&self.inner.running)
                .acquire_owned()
                .await
                .expect("the run semaphore is never closed");
            self.execute(id, requester, &spec).await
        };
        let result = tokio::select! {
            () = cancel.cancelled() => {
                // Not `failed`: nothing is wrong with the job. Forgotten, it
                // reads as not found, and the requester takes it elsewhere.
                self.table().jobs.remove(&id);
                debug!("job abandoned: the worker is shutting down");
                return;
            }
            result = work => result,
        };
        // The job is over: its place goes to the next one before the
        // (possibly slow) delivery.
        drop(admitted);
        match result {
            Ok(receipt) => {
                info!(status = %receipt.receipt().status, "job finished");
                let result = receipt.receipt().result;
                self.deliver(requester, receipt).await;
                // Announced after delivery: a DHT query is not on the
                // requester's critical path (it fetches from this worker).
                if let Err(e) = self.inner.network.provide(result).await {
                    debug!(error = %e, "cannot announce the result");
                }
            }
            Err(e) => {
                let message = error_line(&e);
                warn!(%message, "job failed");
                self.set_state(id, JobState::Failed { message });
            }
        }
    }

    async fn execute(
        &self,
        id: JobId,
        requester: PeerId,
        spec: &JobSpec,
    ) -> Result<SignedReceipt, JobError> {
        let inner = &self.inner;
        self.set_state(id, JobState::Fetching);
        // A warm worker has the module compiled already: no need to fetch,
        // read or hash it again.
        let cached = inner.executor.cached(&spec.module);
        let module_root = cached.is_none().then_some(spec.module);
        let roots: Vec<Cid> = [module_root, spec.stdin, spec.input]
            .into_iter()
            .flatten()
            .collect();
        tokio::time::timeout(FETCH_DEADLINE, self.fetch_all(requester, &roots))
            .await
            .map_err(|_| JobError::FetchTimeout(FETCH_DEADLINE))?
            .map_err(JobError::Fetch)?;

        let module = match cached {
            Some(module) => module,
            None => {
                let bytes =
                    files::cat_to_vec_capped(&inner.store, spec.module, MAX_MODULE_SIZE).await?;
                inner
                    .executor
                    .load(Bytes::from(bytes))
                    .await
                    .map_err(|e| JobError::Module(spec.module, e))?
            }
        };
        if spec
            .capabilities
            .iter()
            .any(|c| c.as_str() == Capability::WASI_P1)
            && module.kind() == ModuleKind::Component
        {
            return Err(JobError::Kind("component"));
        }
        if spec
            .capabilities
            .iter()
            .any(|c| c.as_str() == Capability::WASI_P2)
            && module.kind() == ModuleKind::CoreModule
        {
            return Err(JobError::Kind("core module"));
        }
        let stdin = match spec.stdin {
            Some(cid) => {
                Bytes::from(files::cat_to_vec_capped(&inner.store, cid, MAX_JOB_STDIN).await?)
            }
            None => Bytes::new(),
        };
        let work = inner.work_dirs.take().await.map_err(JobError::WorkDir)?;
        let input_dir = match spec.input {
            Some(cid) => {
                let dir = work.path().join("input");
                // What the export writes is bounded, not just what was
                // fetched: a DAG may link the same blocks many times.
                let limit = files::Limit {
                    bytes: inner.config.max_input.0,
                    entries: files::MAX_ENTRIES,
                };
                files::get_capped(&inner.store, cid, dir.clone(), limit).await?;
                Some(dir)
            }
            None => None,
        };
        let output_dir = work.path().join("output");

        self.set_state(id, JobState::Running);
        let started = SystemTime::now();
        let outcome = inner
            .executor
            .run(
                &module,
                RunSpec {
                    program_name: spec.module.to_string(),
                    args: spec.args.clone(),
                    env: spec
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    stdin,
                    input_dir,
                    output_dir: Some(output_dir.clone()),
                    preopens: Vec::new(),
                    limits: spec.limits,
                    deterministic: spec.deterministic.then(|| spec.seed()),
                },
            )
            .await
            .map_err(JobError::Exec)?;
        let ended = SystemTime::now();

        let result = self
            .store_result(&outcome.stdout, &outcome.stderr, output_dir)
            .await?;
        drop(work);
        let receipt = Receipt {
            job: id,
            module: spec.module,
            stdin: spec.stdin,
            input: spec.input,
            result: result.cid,
            status: outcome.status,
            fuel_consumed: outcome.fuel_consumed,
            wall_time_ms: u64::try_from(outcome.wall_time.as_millis()).unwrap_or(u64::MAX),
            peak_memory: outcome.peak_memory_bytes,
            worker: inner.key.public().to_peer_id(),
            requester,
            started_at_ms: unix_ms(started),
            ended_at_ms: unix_ms(ended),
            runtime: runtime_version(),
        };
        let signed = SignedReceipt::sign(receipt, &inner.key).map_err(JobError::Sign)?;
        let receipt_cid = signed.cid();
        inner
            .store
            .put(receipt_cid, Bytes::from(signed.to_cbor()))
            .await?;
        {
            let mut table = self.table();
            if let Some(entry) = table.jobs.get_mut(&id) {
                entry.receipt = Some(signed.clone());
            }
        }
        // Done first: the job counts as keeping its result before the
        // result is pinned, so retention never unpins it under this job.
        self.set_state(
            id,
            JobState::Done {
                status: signed.receipt().status.clone(),
                receipt: receipt_cid,
            },
        );
        for cid in [receipt_cid, result.cid] {
            if let Err(e) = inner.store.pin(&cid).await {
                warn!(%cid, error = %e, "cannot pin the job's block; gc may remove it");
            }
        }
        Ok(signed)
    }

    /// Fetches what the store lacks of each root: from the requester first,
    /// then from any provider the DHT knows; at most the worker's
    /// `max_input` bytes for all roots together.
    async fn fetch_all(&self, requester: PeerId, roots: &[Cid]) -> Result<(), FetchError> {
        let (network, store) = (&self.inner.network, &self.inner.store);
        let max = self.inner.config.max_input.0;
        let mut fetched = 0u64;
        for root in roots {
            let mut got = 0u64;
            let left = max.saturating_sub(fetched);
            let first = fetch::fetch_dag_capped(network, store, *root, [requester], left, |p| {
                got = p.bytes
            })
            .await;
            fetched += got;
            match first {
                Ok(_) => continue,
                Err(
                    e @ (FetchError::Store(_)
                    | FetchError::TooLarge { .. }
                    | FetchError::Network(crate::network::NetworkError::Shutdown)),
                ) => {
                    return Err(e);
                }
                Err(e) => {
                    debug!(%root, error = %e, "requester could not deliver; asking providers")
                }
            }
            let providers = network.find_providers(*root).await?;
            let mut got = 0u64;
            let left = max.saturating_sub(fetched);
            fetch::fetch_dag_capped(network, store, *root, providers, left, |p| got = p.bytes)
                .await?;
            fetched += got;
        }
        Ok(())
    }

    /// The result package: a UnixFS directory of `stdout`, `stderr` and
    /// `output/`.
    async fn store_result(
        &self,
        stdout: &Bytes,
        stderr: &Bytes,
        output_dir: PathBuf,
    ) -> Result<Root, JobError> {
        let store = &self.inner.store;
        let out = files::add_bytes(store, stdout.clone()).await?;
        let err = files::add_bytes(store, stderr.clone()).await?;
        let (output, _) = files::add_path(store, output_dir, true).await?;
        let (block, root) = unixfs::directory(vec![
            ("stdout".into(), out),
            ("stderr".into(), err),
            ("output".into(), output),
        ])
        .map_err(|e| StoreError::Unixfs {
            cid: out.cid,
            source: Box::new(e),
        })?;
        store.put(block.cid, Bytes::from(block.data)).await?;
        Ok(root)
    }

    /// Sends the receipt to the requester (bounded attempts; the requester
    /// can also ask for it by job id).
    async fn deliver(&self, requester: PeerId, receipt: SignedReceipt) {
        for attempt in 1..=DELIVERY_ATTEMPTS {
            let request = JobRequest::Deliver(Box::new(receipt.clone()));
            match self.inner.network.request_job(requester, request).await {
                Ok(_) => return,
                Err(e) => debug!(attempt, error = %e, "receipt not delivered"),
            }
        }
        debug!(%requester, "receipt kept for the requester to fetch");
    }
}

/// The worker's work directories: one per running job, each with an
/// `output/` (and an `input/` while a job with an input directory runs).
/// Directories are reused: creating and deleting a tree per job made inode
/// allocation the largest cost of a small job.
struct WorkDirs {
    root: tempfile::TempDir,
    spare: Arc<Mutex<Vec<PathBuf>>>,
    /// Spare directories kept at most (one per slot).
    keep: usize,
    made: std::sync::atomic::AtomicU64,
}

impl WorkDirs {
    /// A clean work directory: a spare one, or a new one.
    async fn take(&self) -> std::io::Result<WorkDir> {
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let path = match spare {
            Some(path) => path,
            None => {
                let n = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = self.root.path().join(format!("w{n}"));
                let output = path.join("output");
                tokio::task::spawn_blocking(move || std::fs::create_dir_all(output))
                    .await
                    .map_err(std::io::Error::other)??;
                path
            }
        };
        Ok(WorkDir {
            path: Some(path),
            spare: Arc::clone(&self.spare),
            keep: self.keep,
        })
    }
}

/// A job's work directory. When dropped (on every path out of a job) it is
/// cleaned on the blocking pool (`input/` removed, `output/` emptied if the
/// guest wrote anything) and handed back, or removed if it cannot be.
struct WorkDir {
    path: Option<PathBuf>,
    spare: Arc<Mutex<Vec<PathBuf>>>,
    keep: usize,
}

impl WorkDir {
    fn path(&self) -> &std::path::Path {
        self.path.as_deref().expect("present until dropped")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else { return };
        let (spare, keep) = (Arc::clone(&self.spare), self.keep);
        tokio::task::spawn_blocking(move || {
            let clean = || -> std::io::Result<()> {
                let input = path.join("input");
                if input.exists() {
                    std::fs::remove_dir_all(&input)?;
                }
                let output = path.join("output");
                if std::fs::read_dir(&output)?.next().is_some() {
                    std::fs::remove_dir_all(&output)?;
                    std::fs::create_dir(&output)?;
                }
                Ok(())
            };
            let mut spare = spare
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if spare.len() < keep && clean().is_ok() {
                spare.push(path);
            } else {
                drop(spare);
                let _ = std::fs::remove_dir_all(&path);
            }
        });
    }
}

/// A job's place among the admitted: a permit of `slots + queue`, and one
/// of its requester's share. Both are given back when it is dropped.
struct Admitted {
    _permit: OwnedSemaphorePermit,
    peer: PeerId,
    inner: Arc<Inner>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut table = self
            .inner
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = table.admitted.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                table.admitted.remove(&self.peer);
            }
        }
    }
}

/// Rejects limits above this worker's maxima, naming the first.
fn check_limits(asked: &Limits, max: &Limits) -> Result<(), Rejection> {
    let too_high = |limit: &str, requested: u64, max: u64| {
        (requested > max).then(|| Rejection::LimitsTooHigh {
            limit: limit.into(),
            requested,
            max,
        })
    };
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match too_high("fuel", asked.fuel, max.fuel)
        .or_else(|| too_high("memory", asked.memory.0, max.memory.0))
        .or_else(|| too_high("timeout", ms(asked.timeout), ms(max.timeout)))
        .or_else(|| too_high("max_output", asked.max_output.0, max.max_output.0))
    {
        Some(rejection) => Err(rejection),
        None => Ok(()),
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::ByteSize;
    use phase_protocol::Keypair;

    #[test]
    fn limits_above_the_maximum_name_the_limit() {
        let max = WorkerConfig::default().max_limits();
        assert_eq!(check_limits(&Limits::default(), &max), Ok(()));
        let asked = Limits {
            memory: ByteSize(2 << 30),
            ..Limits::default()
        };
        assert_eq!(
            check_limits(&asked, &max),
            Err(Rejection::LimitsTooHigh {
                limit: "memory".into(),
                requested: 2 << 30,
                max: 1 << 30
            })
        );
    }

    fn receipt(key: &Keypair, nonce: u64, result: &[u8]) -> (JobId, SignedReceipt) {
        let mut spec = JobSpec::new(phase_protocol::cid::raw_cid(b"m"));
        spec.nonce = nonce;
        let receipt = Receipt {
            job: spec.id(),
            module: spec.module,
            stdin: None,
            input: None,
            result: phase_protocol::cid::raw_cid(result),
            status: phase_protocol::Status::Exited { code: 0 },
            fuel_consumed: 1,
            wall_time_ms: 1,
            peak_memory: 0,
            worker: key.public().to_peer_id(),
            requester: PeerId::random(),
            started_at_ms: 0,
            ended_at_ms: 1,
            runtime: runtime_version(),
        };
        (spec.id(), SignedReceipt::sign(receipt, key).unwrap())
    }

    #[test]
    fn old_jobs_are_forgotten_and_unpinned_unless_a_kept_job_shares_the_result() {
        let key = Keypair::generate_ed25519();
        let mut table = JobTable {
            keep: 2,
            ..JobTable::default()
        };
        let mut finish = |nonce: u64, result: &[u8]| {
            let (id, r) = receipt(&key, nonce, result);
            table.jobs.insert(
                id,
                Entry {
                    state: JobState::Running,
                    receipt: Some(r.clone()),
                },
            );
            (r.cid(), table.finish(id))
        };
        let x = phase_protocol::cid::raw_cid(b"x");
        let (r1, unpin) = finish(1, b"x");
        assert!(unpin.is_empty());
        let (r2, unpin) = finish(2, b"x");
        assert!(unpin.is_empty());
        // Job 1 goes; its result is job 2's too, so only its receipt is unpinned.
        let (_, unpin) = finish(3, b"y");
        assert_eq!(unpin, vec![r1]);
        // Job 2 goes, and with it the last job that had result x.
        let (_, unpin) = finish(4, b"z");
        assert_eq!(unpin, vec![r2, x]);
        assert_eq!(table.jobs.len(), 2);
    }
}
