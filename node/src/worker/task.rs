//! The task of one job, as the actor spawns it: the pipeline under the
//! job's cancellation, its records in the state database, and its work
//! directory cleaned for the next job.
//!
//! - A job that runs longer than [`RECORD_RUNNING_AFTER`] is recorded as
//!   under way while it runs (off its critical path), so a worker killed
//!   then restarted reports it `interrupted`; a shorter one is recorded
//!   only at its end (killed before, it is simply unknown after a restart,
//!   and its requester takes it elsewhere all the same).
//! - A signed receipt goes to the actor for delivery at once, while its end
//!   is recorded (with its receipt and result pinned for the job, in one
//!   transaction); the actor marks the job done only after that commit.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libp2p::PeerId;
use tokio_util::sync::CancellationToken;
use tracing::info;

use phase_protocol::SignedReceipt;
use phase_protocol::job::{JobId, JobState};

use super::pipeline::{self, Context, Job, JobError, JobEvent};
use super::record;
use super::workdirs::{self, WorkDir};
use crate::error_line;

/// How long a job runs before it is recorded as under way.
pub(super) const RECORD_RUNNING_AFTER: Duration = Duration::from_millis(50);

/// How a job's task ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// A run happened: its signed receipt.
    Ran(Box<SignedReceipt>),
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
    /// The work directory, cleaned, to reuse.
    pub(super) dir: Option<PathBuf>,
}

/// What a task of the worker returns to the actor.
#[derive(Debug)]
pub(super) enum Task {
    Job(Box<JobDone>),
    /// A receipt delivered (or given up on), a spare directory removed,
    /// old jobs forgotten.
    Background,
}

/// Runs `job` in `dir` until it ends or `cancel` fires.
pub(super) async fn job(
    ctx: Arc<Context>,
    job: Job,
    dir: WorkDir,
    cancel: CancellationToken,
) -> Task {
    let (id, requester, writes) = (job.id, job.requester, &ctx.writes);
    let marking = AtomicBool::new(false);
    let mark = async {
        tokio::time::sleep(RECORD_RUNNING_AFTER).await;
        marking.store(true, Ordering::SeqCst);
        record::save(writes, id, requester, JobState::Running, Vec::new()).await;
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
    let outcome = match result {
        None => Outcome::Abandoned,
        Some(Ok(receipt)) => {
            let _ = ctx
                .progress
                .send((id, JobEvent::Signed(Box::new(receipt.clone()))))
                .await;
            let state = JobState::Done {
                status: receipt.receipt().status.clone(),
                receipt: receipt.cid(),
            };
            let roots = vec![receipt.cid(), receipt.receipt().result];
            record::save(writes, id, requester, state, roots).await;
            Outcome::Ran(Box::new(receipt))
        }
        Some(Err(e)) => {
            let state = JobState::Failed {
                message: error_line(&e),
            };
            record::save(writes, id, requester, state, Vec::new()).await;
            Outcome::Failed(e)
        }
    };
    let dir = match outcome {
        // The sandbox may still be writing into it.
        Outcome::Abandoned => None,
        _ => tokio::task::spawn_blocking(move || workdirs::clean(dir.path))
            .await
            .ok()
            .flatten(),
    };
    Task::Job(Box::new(JobDone {
        id,
        requester,
        outcome,
        dir,
    }))
}
