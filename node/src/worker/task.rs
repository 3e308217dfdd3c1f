//! The task of one job, as the actor spawns it: the pipeline under the
//! job's cancellation, its records in the state database, and its work
//! directory cleaned for the next job.
//!
//! - A job that runs longer than [`RECORD_RUNNING_AFTER`] is recorded as
//!   under way while it runs (off its critical path), so a worker killed
//!   then restarted reports it `interrupted`; a shorter one is recorded
//!   only at its end (killed before, it is simply unknown after a restart,
//!   and its requester takes it elsewhere all the same).
//! - The task ends as soon as the job does; the actor delivers the receipt
//!   and records the end (with the receipt and result pinned for the job,
//!   in one transaction) while the job's slot goes to the next job, and
//!   marks the job done once that commit is made.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libp2p::PeerId;
use tokio_util::sync::CancellationToken;
use tracing::info;

use phase_protocol::SignedReceipt;
use phase_protocol::job::{JobId, JobState};

use super::pipeline::{self, Context, Job, JobError};
use super::record;
use super::workdirs::WorkDir;
use crate::store::Held;

/// How long a job runs before it is recorded as under way.
pub(super) const RECORD_RUNNING_AFTER: Duration = Duration::from_millis(50);

/// How a job's task ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// A run happened: its signed receipt, and its receipt and result held
    /// against `gc`.
    Ran(Box<SignedReceipt>, Held),
    /// No run happened.
    Failed(JobError),
    /// The worker is shutting down.
    Abandoned,
}

/// How a job's task ended, and what it hands back.
#[derive(Debug)]
pub(super) struct JobDone {
    pub(super) id: JobId,
    pub(super) requester: PeerId,
    pub(super) outcome: Outcome,
    /// The work directory, to clean and reuse.
    pub(super) dir: Option<PathBuf>,
}

/// A finished job whose end is committed.
#[derive(Debug)]
pub(super) struct Recorded {
    pub(super) id: JobId,
    pub(super) state: JobState,
    pub(super) receipt: Option<SignedReceipt>,
}

/// Records a finished job's end (waiting for the commit).
pub(super) async fn record_end(
    ctx: Arc<Context>,
    id: JobId,
    requester: PeerId,
    state: JobState,
    receipt: Option<SignedReceipt>,
    result: Option<Held>,
) -> Task {
    let record = record::JobRecord::new(requester, state.clone());
    record::save(&ctx.writes, id, record, receipt.as_ref()).await;
    drop(result);
    Task::Recorded(Box::new(Recorded { id, state, receipt }))
}

/// What a task of the worker returns to the actor.
#[derive(Debug)]
pub(super) enum Task {
    Job(Box<JobDone>),
    /// A spare directory removed, old jobs forgotten.
    Background,
    /// A work directory cleaned for the next job (`None`: removed).
    Cleaned(Option<PathBuf>),
    /// A receipt delivered (or given up on).
    Delivered,
    /// A finished job's end, recorded: it now reads as finished.
    Recorded(Box<Recorded>),
}

/// Runs `job` in `dir` until it ends or `cancel` fires.
pub(super) async fn job(
    ctx: Arc<Context>,
    job: Job,
    dir: WorkDir,
    cancel: CancellationToken,
) -> Task {
    let (id, requester, writes) = (job.id, job.requester, &ctx.writes);
    let started = record::Started::of(&job.spec);
    let marking = AtomicBool::new(false);
    let mark = async {
        tokio::time::sleep(RECORD_RUNNING_AFTER).await;
        marking.store(true, Ordering::SeqCst);
        let mut record = record::JobRecord::new(requester, JobState::Running);
        record.started = Some(started);
        record::save(writes, id, record, None).await;
        info!("job recorded as under way");
    };
    tokio::pin!(mark);
    let mut marked = false;
    let result = {
        let run = pipeline::run(&ctx, &job, &dir);
        tokio::pin!(run);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break None,
                result = &mut run => break Some(result),
                () = &mut mark, if !marked => marked = true,
            }
        }
    };
    // A record of "under way" that has begun is let finish, so it never
    // lands after the record of the end.
    if marking.load(Ordering::SeqCst) && !marked {
        mark.await;
    }
    // The end is recorded by the actor (its slot is free meanwhile).
    let outcome = match result {
        None => Outcome::Abandoned,
        Some(Ok((receipt, held))) => Outcome::Ran(Box::new(receipt), held),
        Some(Err(e)) => Outcome::Failed(e),
    };
    let dir = match outcome {
        // The sandbox may still be writing into it.
        Outcome::Abandoned => None,
        _ => Some(dir.path),
    };
    drop(job);
    Task::Job(Box::new(JobDone {
        id,
        requester,
        outcome,
        dir,
    }))
}
