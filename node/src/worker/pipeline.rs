//! One job, start to end: fetch its module and inputs, run it in the
//! sandbox, package the result, sign the receipt. A plain async function
//! that returns a typed result to the worker's actor; it reports only its
//! progress (fetching, running) on the way.
//!
//! A job whose inputs cannot be had, or whose module is not a runnable WASI
//! command, ends with a [`JobError`] and no receipt: no run happened to
//! attest. Every run that happened gets a signed receipt, whatever its
//! status.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use libp2p::PeerId;
use libp2p::identity::Keypair;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use phase_protocol::guest_state::{self, BlockSource};
use phase_protocol::job::{JobId, JobState};
use phase_protocol::unixfs::{self, Root};
use phase_protocol::{Capability, Cid, JobSpec, Receipt, SignedReceipt, StateTransition};

use super::runtime_version;
use super::workdirs::{self, WorkDir};
use crate::blocks::{FetchError, FetchOptions};
use crate::executor::{
    CacheSource, ExecError, Executor, LoadedModule, MAX_DEPTH, ModuleKind, NetAccess, Over,
    RunSpec, SharedSource, StateInput, Stdin, dir_over,
};
use crate::metrics::JobMetrics;
use crate::network::{NetworkClient, NetworkError};
use crate::store::files::{self, FilesError};
use crate::store::untrusted;
use crate::store::{BlockStore, Held, StoreError};

/// Deadline for fetching a job's module and inputs.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(300);
/// Largest stdin a job may have: it is held in memory while the job runs.
pub const MAX_JOB_STDIN: u64 = 256 << 20;
/// Largest module a worker loads (the executor's cap, see there).
pub use crate::executor::MAX_MODULE_SIZE;
/// Attempts to deliver a receipt to its requester (it can also ask for it).
const DELIVERY_ATTEMPTS: u32 = 3;

/// Why a job could not be run (it ends `Failed`, without a receipt).
#[derive(Debug, thiserror::Error)]
pub(super) enum JobError {
    #[error("cannot fetch the job's inputs")]
    Fetch(#[source] FetchError),
    #[error("fetching the job's inputs took longer than {0:?}")]
    FetchTimeout(Duration),
    #[error("cannot read the job's inputs")]
    Files(#[from] FilesError),
    #[error("cannot store the result")]
    Store(#[from] StoreError),
    #[error("cannot store the job's output")]
    Output(#[source] FilesError),
    #[error("module {0} is not runnable")]
    Module(Cid, #[source] Box<ExecError>),
    #[error("the run failed")]
    Exec(#[source] ExecError),
    #[error("cannot make a work directory")]
    WorkDir(#[source] std::io::Error),
    #[error("cannot sign the receipt")]
    Sign(#[source] phase_protocol::SignError),
    #[error("module is a {0}, which this job's capabilities do not allow")]
    Kind(&'static str),
    #[error("the worker's task for the job crashed")]
    Crashed,
}

/// What every job of a worker shares: read-only handles.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) key: Keypair,
    pub(super) network: NetworkClient,
    pub(super) store: BlockStore,
    pub(super) executor: Executor,
    /// Most new bytes a job's inputs may bring.
    pub(super) max_input: u64,
    /// Most bytes a job's guest state may hold.
    pub(super) max_state: u64,
    /// The hosts this worker lets jobs reach (`[worker] net_allow`).
    pub(super) net_allow: NetAccess,
    /// Sign a wrong result for every job (tests only: see
    /// `WorkerConfig::lies`).
    pub(super) lie: bool,
    /// Where progress goes (the actor).
    pub(super) progress: mpsc::Sender<(JobId, JobState)>,
    /// What the worker counts.
    pub(super) metrics: JobMetrics,
    /// Where job records go (grouped into few commits).
    pub(super) writes: super::record::Writes,
}

/// An admitted job.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) id: JobId,
    pub(super) requester: PeerId,
    pub(super) spec: JobSpec,
    /// The job's inputs, held against `gc` from admission to its end.
    #[expect(dead_code, reason = "kept for its Drop")]
    pub(super) inputs: Held,
}

impl Context {
    async fn report(&self, id: JobId, state: JobState) {
        // The actor outlives its jobs; if it is gone the job is abandoned.
        let _ = self.progress.send((id, state)).await;
    }
}

/// Runs `job` in `dir`: fetch, run, package, sign. The receipt is stored
/// (not pinned: the actor pins what it keeps).
pub(super) async fn run(
    ctx: &Context,
    job: &Job,
    dir: &WorkDir,
) -> Result<(SignedReceipt, Held), JobError> {
    let (id, spec) = (job.id, &job.spec);
    ctx.report(id, JobState::Fetching).await;
    // A warm worker has the module compiled already: no need to fetch, read
    // or hash it again.
    let cached = ctx.executor.cached(&spec.module);
    let module_root = cached.is_none().then_some(spec.module);
    let roots: Vec<Cid> = [module_root, spec.stdin, spec.input]
        .into_iter()
        .flatten()
        .collect();
    tokio::time::timeout(FETCH_DEADLINE, fetch_all(ctx, job.requester, &roots))
        .await
        .map_err(|_| JobError::FetchTimeout(FETCH_DEADLINE))?
        .map_err(JobError::Fetch)?;

    let (module, compile_time) = match cached {
        Some(module) => (module, Duration::ZERO),
        None => {
            let bytes =
                untrusted::cat_to_vec_capped(&ctx.store, spec.module, MAX_MODULE_SIZE).await?;
            let loading = std::time::Instant::now();
            let module = ctx
                .executor
                .load(Bytes::from(bytes))
                .await
                .map_err(|e| JobError::Module(spec.module, Box::new(e)))?;
            let took = match module.source() {
                CacheSource::Compiled => loading.elapsed(),
                CacheSource::Memory | CacheSource::Disk => Duration::ZERO,
            };
            (module, took)
        }
    };
    match module.source() {
        CacheSource::Compiled => ctx.metrics.cache_misses.inc(),
        CacheSource::Memory | CacheSource::Disk => ctx.metrics.cache_hits.inc(),
    };
    check_kind(spec, &module)?;
    let stdin = read_stdin(&ctx.store, spec).await?;
    let made = WorkDir {
        path: dir.path.clone(),
        fresh: dir.fresh,
    };
    tokio::task::spawn_blocking(move || workdirs::make(&made))
        .await
        .map_err(|e| JobError::WorkDir(std::io::Error::other(e)))?
        .map_err(JobError::WorkDir)?;
    let input_dir = export_input(&ctx.store, spec, &dir.path, ctx.max_input).await?;
    let output_dir = dir.path.join("output");
    // The state's blocks are read as the guest asks for them: from the
    // store, else from the requester.
    // A job without state starts from the empty one, in memory: nothing to
    // store or hold.
    let _state_held = spec.state.map(|root| ctx.store.hold([root]));
    let state = match spec.state {
        Some(root) => StateInput {
            root,
            source: SharedSource::new(PeerBlocks::new(ctx, job.requester)),
            caller: job.requester.to_bytes(),
            max_bytes: ctx.max_state,
        },
        None => StateInput::empty(job.requester.to_bytes(), ctx.max_state),
    };

    ctx.report(id, JobState::Running).await;
    let started = SystemTime::now();
    // Only hosts both the job and this worker allow.
    let net = NetAccess::new(&spec.permissions.net).intersect(&ctx.net_allow);
    let outcome = ctx
        .executor
        .run(
            &module,
            run_spec(spec, stdin, input_dir, &output_dir, state, net),
        )
        .await
        .map_err(JobError::Exec)?;
    let ended = SystemTime::now();

    // A run that happened gets a receipt, whatever becomes of its output.
    // `gc` waits until the package and receipt are held.
    let writing = ctx.store.writing().await;
    let transition = match &outcome.state {
        Some(effects) => keep_state(ctx, spec, effects).await?,
        None => None,
    };
    let mut result = package_outcome(
        &ctx.store,
        id,
        &outcome,
        &output_dir,
        spec.limits.max_output.0,
    )
    .await?;
    if ctx.lie {
        // The lie a test needs: another result, signed as if it were this
        // run's.
        let lie = Bytes::from_static(b"a lie\n");
        result = package(&ctx.store, &lie, &Bytes::new(), Kept::Cut("a lie".into())).await?;
    }
    let receipt = Receipt {
        job: id,
        module: spec.module,
        stdin: spec.stdin,
        input: spec.input,
        result: result.cid,
        status: outcome.status,
        fuel_consumed: outcome.fuel_consumed,
        wall_time_ms: u64::try_from(outcome.wall_time.as_millis()).unwrap_or(u64::MAX),
        compile_time_ms: u64::try_from(compile_time.as_millis()).unwrap_or(u64::MAX),
        peak_memory: outcome.peak_memory_bytes,
        worker: ctx.key.public().to_peer_id(),
        requester: job.requester,
        started_at_ms: unix_ms(started),
        ended_at_ms: unix_ms(ended),
        runtime: runtime_version(),
        state: transition,
        network: outcome.net,
    };
    let signed = SignedReceipt::sign(receipt, &ctx.key).map_err(JobError::Sign)?;
    let bytes = Bytes::from(signed.to_cbor());
    if let Err(e) = ctx.store.put(signed.cid(), bytes.clone()).await {
        // A full disk: the receipt comes out of the ballast.
        warn!(job = %id, error = %crate::error_line(&e), "cannot store the receipt; releasing the ballast");
        let _ = ctx.store.release_ballast();
        ctx.store.put(signed.cid(), bytes).await?;
    }
    let mut roots = vec![signed.cid(), result.cid];
    if let Some(t) = &signed.receipt().state {
        // The new state is partly here (what the run changed) and partly
        // with the requester: held, not pinned, while it fetches it.
        roots.extend([t.after].into_iter().chain(t.log));
        ctx.store
            .hold_for([t.after].into_iter().chain(t.log), STATE_HELD_FOR);
    }
    let held = ctx.store.hold(roots);
    drop(writing);
    Ok((signed, held))
}

/// Refuses a module of another kind than the job's capabilities allow.
pub(super) fn check_kind(spec: &JobSpec, module: &LoadedModule) -> Result<(), JobError> {
    if spec.capabilities.contains(&Capability::WASI_P1) && module.kind() == ModuleKind::Component {
        return Err(JobError::Kind("component"));
    }
    if spec.capabilities.contains(&Capability::WASI_P2) && module.kind() == ModuleKind::CoreModule {
        return Err(JobError::Kind("core module"));
    }
    Ok(())
}

/// The job's stdin, read from the store (at most [`MAX_JOB_STDIN`]).
pub(super) async fn read_stdin(store: &BlockStore, spec: &JobSpec) -> Result<Bytes, JobError> {
    Ok(match spec.stdin {
        Some(cid) => Bytes::from(untrusted::cat_to_vec_capped(store, cid, MAX_JOB_STDIN).await?),
        None => Bytes::new(),
    })
}

/// Writes the job's `/input` under `dir` (at most `max_input` bytes), if
/// its permissions mount one: validation refused an input for a job that
/// may see no folder.
pub(super) async fn export_input(
    store: &BlockStore,
    spec: &JobSpec,
    dir: &Path,
    max_input: u64,
) -> Result<Option<PathBuf>, JobError> {
    let Some(cid) = spec.input.filter(|_| spec.permissions.fs.input()) else {
        return Ok(None);
    };
    let input = dir.join("input");
    // What the export writes is bounded, not just what was fetched: a DAG
    // may link the same blocks many times.
    let limit = untrusted::Limit {
        bytes: max_input,
        entries: untrusted::MAX_ENTRIES,
    };
    untrusted::get_capped(store, cid, input.clone(), limit).await?;
    Ok(Some(input))
}

/// The RunSpec of a job: what every worker (and a rerun) gives its run.
pub(super) fn run_spec(
    spec: &JobSpec,
    stdin: Bytes,
    input_dir: Option<PathBuf>,
    output_dir: &Path,
    state: StateInput,
    net: NetAccess,
) -> RunSpec {
    RunSpec {
        program_name: spec.module.to_string(),
        args: spec.args.clone(),
        env: spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        stdin: Stdin::Bytes(stdin),
        stream_output: false,
        input_dir,
        // Not mounted, the folder stays empty: the result holds stdout and
        // stderr.
        output_dir: spec.permissions.fs.output().then(|| output_dir.to_owned()),
        preopens: Vec::new(),
        limits: spec.limits,
        deterministic: spec.deterministic.then(|| spec.seed()),
        state: Some(state),
        net,
    }
}

/// The result package of a run (stored): stdout, stderr and `/output`, or
/// a note in place of an output over the limits; when not even stdout and
/// stderr fit (a full disk), the note alone, out of the ballast.
pub(super) async fn package_outcome(
    store: &BlockStore,
    id: JobId,
    outcome: &crate::executor::Outcome,
    output_dir: &Path,
    max_output: u64,
) -> Result<Root, JobError> {
    let (out, err) = (&outcome.stdout, &outcome.stderr);
    let whole = match kept_output(output_dir.to_owned(), max_output).await {
        Ok(output) => package(store, out, err, output).await.map_err(Cut::NotKept),
        Err(cut) => Err(cut),
    };
    Ok(match whole {
        Ok(root) => root,
        Err(cut) => {
            let note = crate::error_line(&cut);
            warn!(job = %id, %note);
            match package(store, out, err, Kept::Cut(note.clone())).await {
                Ok(root) => root,
                Err(e) => {
                    // Not even stdout and stderr fit: the disk is full. The
                    // job's output goes, and a package of the note alone
                    // comes out of the ballast.
                    let note = format!(
                        "{note}; stdout and stderr were not kept either: {}",
                        crate::error_line(&e)
                    );
                    warn!(job = %id, %note);
                    let _ = tokio::fs::remove_dir_all(output_dir).await;
                    let _ = store.release_ballast();
                    package(store, &Bytes::new(), &Bytes::new(), Kept::Cut(note)).await?
                }
            }
        }
    })
}

/// How long a worker keeps a run's new state blocks for its requester.
const STATE_HELD_FOR: Duration = Duration::from_secs(600);

/// What a receipt says of a run's state, and its log block: nothing for a
/// job that names no state and neither changed the empty one nor logged.
pub(super) fn transition(
    spec: &JobSpec,
    effects: &crate::executor::Effects,
) -> Option<(StateTransition, Option<Vec<u8>>)> {
    let untouched = effects.state_after == effects.state_before && effects.log.is_empty();
    if spec.state.is_none() && untouched {
        return None;
    }
    let log = (!effects.log.is_empty()).then(|| guest_state::log_block(&effects.log));
    let transition = StateTransition {
        before: effects.state_before,
        after: effects.state_after,
        log: log.as_ref().map(|(cid, _)| *cid),
        host_fuel: effects.host_fuel,
    };
    Some((transition, log.map(|(_, bytes)| bytes)))
}

/// Stores what a run did to its state (the changed blocks, the log) and
/// says so for the receipt ([`transition`]).
async fn keep_state(
    ctx: &Context,
    spec: &JobSpec,
    effects: &crate::executor::Effects,
) -> Result<Option<StateTransition>, JobError> {
    let Some((transition, log)) = transition(spec, effects) else {
        return Ok(None);
    };
    let blocks: Vec<(Cid, Bytes)> = effects
        .blocks
        .iter()
        .map(|(cid, data)| (*cid, Bytes::copy_from_slice(data)))
        .collect();
    for result in ctx.store.put_many(blocks).await? {
        result?;
    }
    if let (Some(cid), Some(bytes)) = (transition.log, log) {
        ctx.store.put(cid, Bytes::from(bytes)).await?;
    }
    Ok(Some(transition))
}

/// A job's state blocks: from the store, else fetched from the requester
/// one at a time as the guest reads them, at most the worker's input
/// budget in all. Runs on the run's blocking thread.
struct PeerBlocks {
    store: BlockStore,
    network: NetworkClient,
    requester: PeerId,
    runtime: tokio::runtime::Handle,
    budget: u64,
}

/// Why a state block could not be fetched.
#[derive(Debug, thiserror::Error)]
enum PeerBlockError {
    #[error("the requester did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the requester does not have it")]
    NotProvided,
    #[error("fetching it would pass the worker's input limit")]
    OverBudget,
}

/// Deadline for one state block from the requester.
const STATE_BLOCK_DEADLINE: Duration = Duration::from_secs(30);

impl PeerBlocks {
    fn new(ctx: &Context, requester: PeerId) -> Self {
        Self {
            store: ctx.store.clone(),
            network: ctx.network.clone(),
            requester,
            runtime: tokio::runtime::Handle::current(),
            budget: ctx.max_input,
        }
    }
}

impl BlockSource for PeerBlocks {
    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(data) = self.store.get_blocking(cid)? {
            return Ok(data.to_vec());
        }
        let request = self.network.request_blocks(
            self.requester,
            phase_protocol::block::BlockRequest { want: vec![*cid] },
        );
        let response = self
            .runtime
            .block_on(tokio::time::timeout(STATE_BLOCK_DEADLINE, request))
            .map_err(|_| PeerBlockError::Timeout(STATE_BLOCK_DEADLINE))??;
        let block = response
            .blocks
            .into_iter()
            .find(|b| b.cid == *cid)
            .ok_or(PeerBlockError::NotProvided)?;
        let len = block.data.len() as u64;
        if len > self.budget {
            return Err(Box::new(PeerBlockError::OverBudget));
        }
        self.budget -= len;
        // The store checks the bytes against the CID.
        self.store.put_blocking(cid, &block.data)?;
        Ok(block.data.to_vec())
    }
}

/// The signed receipt of a run that the worker's stop interrupted: status
/// `interrupted`, and a result package of empty stdout and stderr and a
/// note saying so (no output of an unfinished run is kept).
pub(super) async fn attest_interrupted(
    ctx: &Context,
    id: JobId,
    requester: PeerId,
    started: &super::record::Started,
) -> Result<SignedReceipt, JobError> {
    let _writing = ctx.store.writing().await;
    let note =
        Kept::Cut("the worker stopped while the job ran; nothing of the run was kept".into());
    let result = package(&ctx.store, &Bytes::new(), &Bytes::new(), note).await?;
    let now = unix_ms(SystemTime::now());
    let receipt = Receipt {
        job: id,
        module: started.module,
        stdin: started.stdin,
        input: started.input,
        result: result.cid,
        status: phase_protocol::Status::Interrupted,
        fuel_consumed: 0,
        wall_time_ms: now.saturating_sub(started.started_ms),
        compile_time_ms: 0,
        peak_memory: 0,
        worker: ctx.key.public().to_peer_id(),
        requester,
        started_at_ms: started.started_ms,
        ended_at_ms: now,
        runtime: runtime_version(),
        state: None,
        network: None,
    };
    let signed = SignedReceipt::sign(receipt, &ctx.key).map_err(JobError::Sign)?;
    ctx.store
        .put(signed.cid(), Bytes::from(signed.to_cbor()))
        .await?;
    Ok(signed)
}

/// Fetches what the store lacks of each root: from the requester first,
/// then from any provider the DHT knows; at most the worker's `max_input`
/// bytes for all roots together.
async fn fetch_all(ctx: &Context, requester: PeerId, roots: &[Cid]) -> Result<(), FetchError> {
    let mut fetched = 0u64;
    for root in roots {
        let mut got = 0u64;
        let options = FetchOptions {
            providers: Some(vec![requester]),
            max_bytes: ctx.max_input.saturating_sub(fetched),
            ..FetchOptions::default()
        };
        let first =
            crate::blocks::fetch(&ctx.network, &ctx.store, *root, options, |p| got = p.bytes).await;
        fetched += got;
        match first {
            Ok(_) => continue,
            Err(
                e @ (FetchError::Store(_)
                | FetchError::TooLarge { .. }
                | FetchError::Network(NetworkError::Shutdown)),
            ) => return Err(e),
            Err(e) => debug!(%root, error = %e, "requester could not deliver; asking providers"),
        }
        let mut got = 0u64;
        let options = FetchOptions {
            max_bytes: ctx.max_input.saturating_sub(fetched),
            ..FetchOptions::default()
        };
        crate::blocks::fetch(&ctx.network, &ctx.store, *root, options, |p| got = p.bytes).await?;
        fetched += got;
    }
    Ok(())
}

/// What of `/output` goes into the result package.
#[derive(Debug)]
enum Kept {
    /// All of it: this folder.
    All(PathBuf),
    /// None of it (`output/` is empty), for this reason, which the package
    /// carries in a file `output-cut`.
    Cut(String),
}

/// The name of the note in a package whose output was cut.
pub(crate) const OUTPUT_CUT: &str = "output-cut";

/// Why `/output` was not kept (the note a package carries in `output-cut`).
#[derive(Debug, thiserror::Error)]
enum Cut {
    #[error("cannot measure /output")]
    Measure(#[source] tokio::task::JoinError),
    #[error("/output holds more than {} entries", untrusted::MAX_ENTRIES)]
    Entries,
    #[error("/output holds more than max_output ({0} bytes)")]
    Bytes(u64),
    #[error("/output nests folders more than {MAX_DEPTH} deep")]
    Depth,
    #[error("/output holds something that cannot be measured")]
    Unmeasurable,
    #[error("the output was not kept")]
    NotKept(#[source] JobError),
}

/// Whether `/output` fits the job's `max_output` (bytes of regular files)
/// and the entries a package may hold; measured without reading a byte,
/// and the walk stops as soon as it is over.
async fn kept_output(dir: PathBuf, max_output: u64) -> Result<Kept, Cut> {
    let walked = dir.clone();
    let over =
        tokio::task::spawn_blocking(move || dir_over(&walked, max_output, untrusted::MAX_ENTRIES))
            .await
            .map_err(Cut::Measure)?;
    match over {
        None => Ok(Kept::All(dir)),
        Some(Over::Entries) => Err(Cut::Entries),
        Some(Over::Bytes) => Err(Cut::Bytes(max_output)),
        Some(Over::Depth) => Err(Cut::Depth),
        Some(Over::Unmeasurable) => Err(Cut::Unmeasurable),
    }
}

/// The result package: a UnixFS directory of `stdout`, `stderr` and
/// `output/` (and, when the output was cut, `output-cut` saying why). Its
/// blocks (but those of `output/`, imported from the run's folder) are
/// built on the blocking pool (hashing up to `max_output` of stdout) and
/// stored together, with one filesystem sync.
async fn package(
    store: &BlockStore,
    stdout: &Bytes,
    stderr: &Bytes,
    output: Kept,
) -> Result<Root, JobError> {
    let output = match output {
        Kept::All(dir) => {
            let (output, _) = files::add_path(store, dir, true)
                .await
                .map_err(JobError::Output)?;
            Ok(output)
        }
        Kept::Cut(note) => Err(note),
    };
    let (store, stdout, stderr) = (store.clone(), stdout.clone(), stderr.clone());
    tokio::task::spawn_blocking(move || {
        let mut blocks = Vec::new();
        let out = file_blocks(&stdout, &mut blocks);
        let err = file_blocks(&stderr, &mut blocks);
        let mut entries = vec![("stdout".into(), out), ("stderr".into(), err)];
        match output {
            Ok(output) => entries.push(("output".into(), output)),
            Err(note) => {
                let empty = directory_blocks(Vec::new(), out.cid, &mut blocks)?;
                entries.push(("output".into(), empty));
                let note = file_blocks(format!("{note}\n").as_bytes(), &mut blocks);
                entries.push((OUTPUT_CUT.into(), note));
            }
        }
        let root = directory_blocks(entries, out.cid, &mut blocks)?;
        store.put_built_blocking(&blocks)?;
        Ok(root)
    })
    .await
    .map_err(StoreError::from)?
}

/// The blocks of a file of `bytes` (appended to `blocks`); its root.
fn file_blocks(bytes: &[u8], blocks: &mut Vec<unixfs::Block>) -> Root {
    let mut file = unixfs::FileBuilder::new();
    file.write(bytes, blocks);
    file.finish(blocks)
}

/// The blocks of the directory over `entries` (appended to `blocks`); its
/// root. `near` names a CID in errors.
fn directory_blocks(
    entries: Vec<(String, Root)>,
    near: Cid,
    blocks: &mut Vec<unixfs::Block>,
) -> Result<Root, JobError> {
    let (dir, root) = unixfs::directory(entries).map_err(|e| StoreError::Unixfs {
        cid: near,
        source: Box::new(e),
    })?;
    blocks.extend(dir);
    Ok(root)
}

/// After a run: sends the receipt to the requester (bounded attempts; it
/// can also ask for it by job id), then announces the result (a DHT query
/// is not on the requester's critical path: it fetches from this worker).
pub(super) async fn deliver(network: NetworkClient, requester: PeerId, receipt: SignedReceipt) {
    let result = receipt.receipt().result;
    let mut delivered = false;
    for attempt in 1..=DELIVERY_ATTEMPTS {
        let request = phase_protocol::JobRequest::Deliver(Box::new(receipt.clone()));
        match network.request_job(requester, request).await {
            Ok(_) => {
                delivered = true;
                break;
            }
            Err(e) => debug!(attempt, error = %e, "receipt not delivered"),
        }
    }
    if !delivered {
        debug!(%requester, "receipt kept for the requester to fetch");
    }
    if let Err(e) = network.provide(result).await {
        debug!(error = %e, "cannot announce the result");
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sandbox_stops_output_at_the_entries_a_package_may_hold() {
        assert_eq!(
            crate::executor::MAX_OUTPUT_ENTRIES,
            crate::store::untrusted::MAX_ENTRIES
        );
    }
}
