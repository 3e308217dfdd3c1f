//! The worker's actor: the one owner of the job table, admission, the queue
//! of admitted jobs, the work-directory pool and the order of pin changes.
//! Handlers are plain functions; the loop awaits only inside `select!`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use phase_protocol::job::{JobId, JobState, Rejection, WorkerInfo};
use phase_protocol::{JobSpec, SignedReceipt};

use super::admission::Admission;
use super::pipeline::{self, Context, Job, JobError};
use super::record;
use super::table::JobTable;
use super::task::{self, JobDone, Outcome, Recorded, Task};
use super::workdirs::{self, WorkDirs};
use super::{Command, Preferences, Standing, runtime_version, worker_capabilities};
use crate::config::WorkerConfig;
use crate::error_line;
use crate::executor::ExecError;
use crate::metrics::RejectLabels;

/// Receipt deliveries in flight at most: each may wait out a few request
/// timeouts on a requester that went away.
const MAX_DELIVERIES: usize = 256;

/// How long shutdown waits for the worker's tasks once they are cancelled
/// (a guest in the sandbox stops at its own deadline; the task waiting on it
/// is aborted past this).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub(super) struct Actor {
    ctx: Arc<Context>,
    commands: mpsc::Receiver<Command>,
    progress: mpsc::Receiver<(JobId, JobState)>,
    events: broadcast::Sender<(JobId, JobState)>,
    cancel: CancellationToken,
    config: WorkerConfig,
    table: JobTable,
    admission: Admission,
    /// Admitted jobs waiting for a slot (at most `queue` plus the slots,
    /// bounded by admission).
    queue: VecDeque<Job>,
    slots: usize,
    dirs: WorkDirs,
    tasks: JoinSet<Task>,
    /// The job (its requester and the memory it asked for) each running
    /// job's task runs: one entry per busy slot, and a task that panics
    /// still gives back its slot and memory and fails its job.
    job_tasks: HashMap<tokio::task::Id, (JobId, PeerId, u64)>,
    /// Memory the running jobs asked for, together (at most
    /// `config.memory_total()`, or one job's when it alone is over).
    memory_running: u64,
    /// Paused by the volunteer: new jobs are refused.
    paused: bool,
    /// Receipt deliveries under way (at most [`MAX_DELIVERIES`]).
    delivering: usize,
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("slots", &self.slots)
            .field("running", &self.job_tasks.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Actor {
    pub(super) fn new(
        config: WorkerConfig,
        ctx: Arc<Context>,
        work_dir: &Path,
        commands: mpsc::Receiver<Command>,
        progress: mpsc::Receiver<(JobId, JobState)>,
        events: broadcast::Sender<(JobId, JobState)>,
        cancel: CancellationToken,
    ) -> std::io::Result<Self> {
        let slots = config.slots.max(1) as usize;
        let paused = config.paused;
        Ok(Self {
            ctx,
            commands,
            progress,
            events,
            cancel,
            table: JobTable::new(config.keep_jobs as usize),
            admission: Admission::new(config.clone()),
            config,
            queue: VecDeque::new(),
            slots,
            dirs: WorkDirs::new(work_dir, slots)?,
            tasks: JoinSet::new(),
            job_tasks: HashMap::new(),
            memory_running: 0,
            paused,
            delivering: 0,
        })
    }

    /// Runs until cancelled (or every handle is dropped), then waits for its
    /// tasks, at most [`SHUTDOWN_GRACE`].
    pub(super) async fn run(mut self) {
        self.restore().await;
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                Some((id, state)) = self.progress.recv() => self.on_progress(id, state),
                Some(done) = self.tasks.join_next_with_id() => self.on_task(done),
            }
        }
        self.cancel.cancel();
        let drain = async {
            loop {
                tokio::select! {
                    Some((id, state)) = self.progress.recv() => self.on_progress(id, state),
                    done = self.tasks.join_next_with_id() => match done {
                        Some(done) => self.on_task(done),
                        None => break,
                    },
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            warn!("worker tasks did not stop in time; aborting them");
            self.tasks.shutdown().await;
        }
        debug!("worker stopped");
    }

    /// Takes back the jobs recorded before a restart: finished ones with
    /// their receipts, and those under way as interrupted.
    async fn restore(&mut self) {
        let store = self.ctx.store.clone();
        match tokio::task::spawn_blocking(move || record::load_blocking(&store)).await {
            Ok(Ok(jobs)) => {
                if !jobs.is_empty() {
                    info!(jobs = jobs.len(), "worker jobs restored");
                }
                for mut job in jobs {
                    let receipt = match job.interrupted.take() {
                        Some(started) => self.attest_interrupted(&job, started).await,
                        None => job.receipt,
                    };
                    let forgotten = self.table.finish(job.id, job.state, receipt);
                    self.forget(forgotten);
                }
            }
            Ok(Err(e)) => warn!(error = %e, "cannot restore the worker's jobs"),
            Err(e) => warn!(error = %e, "cannot restore the worker's jobs"),
        }
    }

    /// Signs the receipt of a run the worker's stop interrupted (status
    /// `interrupted`, a result package of a note saying so) and records it
    /// with the job: `status` and `receipt` then agree.
    async fn attest_interrupted(
        &self,
        job: &record::Restored,
        started: record::Started,
    ) -> Option<SignedReceipt> {
        match pipeline::attest_interrupted(&self.ctx, job.id, job.requester, &started).await {
            Ok(signed) => {
                let mut record = record::JobRecord::new(job.requester, JobState::Interrupted);
                record.receipt = Some(signed.cid());
                record::save(&self.ctx.writes, job.id, record, Some(&signed)).await;
                Some(signed)
            }
            Err(e) => {
                warn!(job = %job.id, error = %crate::error_line(&e), "cannot sign an interrupted run's receipt");
                None
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit { peer, spec, reply } => {
                let id = spec.id();
                self.on_submit(peer, *spec, id, reply);
            }
            Command::State { id, reply } => {
                let _ = reply.send(self.table.state(&id).cloned());
            }
            Command::Receipt { id, reply } => {
                let _ = reply.send(self.table.receipt(&id).cloned());
            }
            Command::Info { reply } => {
                self.ctx.metrics.capability_answers.inc();
                let _ = reply.send(self.info());
            }
            Command::Volunteer { change, reply } => {
                self.on_volunteer(change);
                let _ = reply.send(self.standing());
            }
        }
    }

    /// Takes the volunteer's changed preferences: more slots or memory start
    /// queued jobs now; fewer let running jobs finish.
    fn on_volunteer(&mut self, change: Preferences) {
        if let Some(paused) = change.paused
            && paused != self.paused
        {
            self.paused = paused;
            info!(
                paused,
                "worker {}",
                if paused { "paused" } else { "resumed" }
            );
        }
        if change.slots.is_none() && change.max_memory_total.is_none() {
            return;
        }
        if let Some(slots) = change.slots {
            self.config.slots = slots.max(1);
            self.slots = self.config.slots as usize;
            self.dirs.keep(self.slots);
        }
        if let Some(total) = change.max_memory_total {
            self.config.max_memory_total = total;
        }
        info!(slots = self.slots, max_memory_total = %self.config.max_memory_total, "worker preferences changed");
        self.admission.update(self.config.clone());
        if !self.cancel.is_cancelled() {
            self.start_queued();
        }
    }

    fn standing(&self) -> Standing {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Standing {
            paused: self.paused,
            slots: count(self.slots),
            running: count(self.job_tasks.len()),
            queued: count(self.queue.len()),
            max_memory_total: self.config.max_memory_total,
            memory_running: phase_protocol::ByteSize(self.memory_running),
            max_memory: self.config.max_limits().memory,
        }
    }

    fn on_submit(
        &mut self,
        peer: PeerId,
        spec: JobSpec,
        id: JobId,
        reply: oneshot::Sender<Result<JobId, Rejection>>,
    ) {
        match self.admit(peer, spec) {
            Ok(Some(job)) => {
                info!(job = %job.id, peer = %job.requester, "job accepted");
                let _ = reply.send(Ok(job.id));
                self.queue.push_back(job);
                self.start_queued();
            }
            Ok(None) => {
                // A repeated submission: the job is already here.
                let _ = reply.send(Ok(id));
            }
            Err(rejection) => {
                let labels = RejectLabels::of(&rejection);
                self.ctx.metrics.rejected.get_or_create(&labels).inc();
                let _ = reply.send(Err(rejection));
            }
        }
    }

    fn info(&self) -> WorkerInfo {
        WorkerInfo {
            capabilities: worker_capabilities(&self.config).into_iter().collect(),
            max_limits: self.config.max_limits(),
            slots: u32::try_from(self.slots).unwrap_or(u32::MAX),
            free_slots: if self.paused {
                0
            } else {
                u32::try_from(self.slots.saturating_sub(self.job_tasks.len())).unwrap_or(u32::MAX)
            },
            runtime: runtime_version(),
            paused: self.paused,
        }
    }

    /// Checks and admits a job; it starts when a slot is free.
    /// Checks a job and takes its place; `None` when it is already here.
    fn admit(&mut self, peer: PeerId, spec: JobSpec) -> Result<Option<Job>, Rejection> {
        if self.cancel.is_cancelled() {
            return Err(Rejection::Busy);
        }
        self.admission.check(&peer, &spec)?;
        let id = spec.id();
        // A repeated submission (a requester resuming) takes no new room.
        if self.table.contains(&id) {
            return Ok(None);
        }
        if self.paused {
            debug!(%peer, "job refused: the worker is paused");
            return Err(Rejection::Paused);
        }
        // A job writes its inputs, output and result: none below the
        // reserve, which is kept for the records and receipts of the jobs
        // already here.
        if let Err(crate::store::StoreError::LowOnDisk { free, reserve }) =
            self.ctx.store.check_room()
        {
            warn!(free, reserve, "job refused: the disk is below its reserve");
            return Err(Rejection::LowOnDisk { free, reserve });
        }
        self.admission.reserve(peer)?;
        self.table.insert(id);
        self.ctx.metrics.admitted.inc();
        let inputs = self.ctx.store.hold(
            [spec.module]
                .into_iter()
                .chain(spec.stdin)
                .chain(spec.input),
        );
        Ok(Some(Job {
            id,
            requester: peer,
            spec,
            inputs,
        }))
    }

    /// Starts queued jobs, in order, while slots are free and the next
    /// one's memory fits beside the running jobs' (`max_memory_total`; a job
    /// alone always starts, so a cap lowered below a queued job's memory
    /// delays it but never strands it).
    fn start_queued(&mut self) {
        while self.job_tasks.len() < self.slots {
            let Some(next) = self.queue.front() else {
                break;
            };
            let memory = next.spec.limits.memory.0;
            if !self.job_tasks.is_empty()
                && self.memory_running.saturating_add(memory) > self.config.memory_total()
            {
                debug!(job = %next.id, memory, running = self.memory_running, "job waits for memory");
                break;
            }
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.memory_running += memory;
            let dir = self.dirs.take();
            let ctx = Arc::clone(&self.ctx);
            let cancel = self.cancel.child_token();
            let span = info_span!("job", id = %job.id);
            let (id, requester) = (job.id, job.requester);
            let handle = self
                .tasks
                .spawn(task::job(ctx, job, dir, cancel).instrument(span));
            self.job_tasks.insert(handle.id(), (id, requester, memory));
        }
        let metrics = &self.ctx.metrics;
        metrics
            .running
            .set(i64::try_from(self.job_tasks.len()).unwrap_or(i64::MAX));
        metrics
            .queued
            .set(i64::try_from(self.queue.len()).unwrap_or(i64::MAX));
    }

    fn on_progress(&mut self, id: JobId, state: JobState) {
        if self.table.set_state(&id, state.clone()) {
            let _ = self.events.send((id, state));
        }
    }

    fn on_task(&mut self, done: Result<(tokio::task::Id, Task), tokio::task::JoinError>) {
        let task = match done {
            Ok((task_id, task)) => {
                if let Some((_, _, memory)) = self.job_tasks.remove(&task_id) {
                    self.memory_running -= memory;
                }
                task
            }
            Err(e) => {
                warn!(error = %e, "worker task ended abnormally");
                // A job's task gives back its slot and fails its job; for
                // any other task nothing waits on it.
                if let Some((id, requester, memory)) = self.job_tasks.remove(&e.id()) {
                    self.memory_running -= memory;
                    let outcome = if e.is_cancelled() {
                        Outcome::Abandoned
                    } else {
                        Outcome::Failed(JobError::Crashed)
                    };
                    self.on_job_done(id, requester, outcome, None);
                }
                return;
            }
        };
        match task {
            Task::Job(done) => {
                let JobDone {
                    id,
                    requester,
                    outcome,
                    dir,
                } = *done;
                self.on_job_done(id, requester, outcome, dir);
            }
            Task::Background => {}
            Task::Delivered => self.delivering -= 1,
            Task::Cleaned(dir) => {
                if let Some(remove) = dir.and_then(|d| self.dirs.give_back(d)) {
                    self.tasks.spawn_blocking(move || {
                        let _ = std::fs::remove_dir_all(remove);
                        Task::Background
                    });
                }
            }
            Task::Recorded(done) => {
                let Recorded { id, state, receipt } = *done;
                let forgotten = self.table.finish(id, state.clone(), receipt);
                self.forget(forgotten);
                let _ = self.events.send((id, state));
            }
        }
    }

    fn on_job_done(
        &mut self,
        id: JobId,
        requester: PeerId,
        outcome: Outcome,
        dir: Option<PathBuf>,
    ) {
        self.admission.release(&requester);
        if let Some(dir) = dir {
            // Cleaned off the job's slot, which goes to the next job now.
            self.tasks
                .spawn_blocking(move || Task::Cleaned(workdirs::clean(dir)));
        }
        match outcome {
            Outcome::Ran(receipt, result) => {
                let receipt = *receipt;
                info!(job = %id, status = %receipt.receipt().status, "job finished");
                let (metrics, r) = (&self.ctx.metrics, receipt.receipt());
                metrics.receipts.inc();
                metrics.run_seconds.observe(r.wall_time_ms as f64 / 1000.0);
                metrics.fuel.observe(r.fuel_consumed as f64);
                let state = JobState::Done {
                    status: receipt.receipt().status.clone(),
                    receipt: receipt.cid(),
                };
                // Readable here at once, and delivered while the end is
                // recorded: the requester does not wait for the worker's
                // disk. Past the bound (requesters that do not answer), it
                // fetches the receipt by polling.
                self.table.set_receipt(&id, receipt.clone());
                if self.delivering < MAX_DELIVERIES {
                    self.delivering += 1;
                    let network = self.ctx.network.clone();
                    let delivered = receipt.clone();
                    self.tasks.spawn(
                        async move {
                            pipeline::deliver(network, requester, delivered).await;
                            Task::Delivered
                        }
                        .instrument(info_span!("job", id = %id)),
                    );
                }
                let ctx = Arc::clone(&self.ctx);
                self.tasks.spawn(task::record_end(
                    ctx,
                    id,
                    requester,
                    state,
                    Some(receipt),
                    Some(result),
                ));
            }
            Outcome::Failed(e) => {
                let message = error_line(&e);
                warn!(job = %id, %message, "job failed");
                let state = if let JobError::Module(_, exec) = &e
                    && let ExecError::TooComplex(bound) = exec.as_ref()
                {
                    JobState::ModuleTooComplex {
                        message: bound.clone(),
                    }
                } else {
                    JobState::Failed { message }
                };
                let ctx = Arc::clone(&self.ctx);
                self.tasks
                    .spawn(task::record_end(ctx, id, requester, state, None, None));
            }
            Outcome::Abandoned => {
                // Not `failed`: nothing is wrong with the job. Forgotten, it
                // reads as not found, and the requester takes it elsewhere.
                debug!(job = %id, "job abandoned: the worker is shutting down");
                self.table.forget(&id);
            }
        }
        if !self.cancel.is_cancelled() {
            self.start_queued();
        }
        let metrics = &self.ctx.metrics;
        metrics
            .running
            .set(i64::try_from(self.job_tasks.len()).unwrap_or(i64::MAX));
    }

    /// Drops forgotten jobs' records and pins from the state database.
    fn forget(&mut self, ids: Vec<JobId>) {
        if ids.is_empty() {
            return;
        }
        let store = self.ctx.store.clone();
        self.tasks.spawn_blocking(move || {
            record::forget_blocking(&store, &ids);
            Task::Background
        });
    }
}
