//! One attempt: submit the job to one worker and wait for its receipt,
//! delivered by the worker or fetched once a status poll says the job is
//! done. Returns a typed [`Outcome`]; deciding what to do next is the
//! replica driver's business.

use libp2p::PeerId;
use tracing::{debug, info};

use phase_protocol::job::{JobId, JobRequest, JobResponse, JobState, Rejection};
use phase_protocol::{JobSpec, SignedReceipt};

use super::discovery::QUERY_DEADLINE;
use super::{Requester, Stage, SubmitOptions};
use crate::network::NetworkError;

/// Status queries in a row a worker may fail before the job is moved.
pub const MAX_MISSED_POLLS: u32 = 3;

/// How one attempt ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The worker is full: ask it again later.
    Busy,
    /// The worker refused the job.
    Rejected(Rejection),
    /// The worker could not be reached, stopped answering or forgot the job:
    /// try another.
    Lost(Lost),
    /// The worker says the job failed without a run: final, another worker
    /// would fail too.
    Failed(String),
    /// The worker refused the module as too complex for its bounds.
    TooComplex(String),
    /// The worker's receipt (not yet checked).
    Done(Box<SignedReceipt>),
}

/// Why a worker was lost.
#[derive(Debug, thiserror::Error)]
pub(super) enum Lost {
    #[error("submission failed")]
    Submit(#[source] NetworkError),
    #[error("worker reachable only through a relay: no direct connection (hole punching failed) within {}s", .0.as_secs())]
    RelayOnly(std::time::Duration),
    #[error("answered a submission with {0}")]
    Unexpected(&'static str),
    #[error("accepted another job ({0})")]
    OtherJob(JobId),
    #[error("the worker no longer knows the job")]
    Forgot,
    #[error("no answer to {0} status queries in a row")]
    Silent(u32),
    #[error("the worker stopped while the job ran")]
    Interrupted,
}

/// A receipt the worker will deliver, if a place to wait for it was free.
pub(super) type Delivered = Option<super::deliveries::Awaiting>;

/// Submits `spec` to `worker`: accepted (then [`wait`] for the receipt),
/// or how the attempt ended.
pub(super) async fn submit(
    requester: &Requester,
    spec: &JobSpec,
    worker: PeerId,
) -> Result<Delivered, Outcome> {
    let job = spec.id();
    let delivered = requester.deliveries.expect(job, worker);
    let answer = requester
        .network
        .request_job(worker, JobRequest::Submit(Box::new(spec.clone())))
        .await;
    match answer {
        Ok(JobResponse::Accepted(id)) if id == job => {}
        Ok(JobResponse::Rejected(Rejection::Busy)) => return Err(Outcome::Busy),
        Ok(JobResponse::Rejected(rejection)) => return Err(Outcome::Rejected(rejection)),
        Ok(JobResponse::Accepted(other)) => return Err(Outcome::Lost(Lost::OtherJob(other))),
        Ok(other) => return Err(Outcome::Lost(Lost::Unexpected(other.kind()))),
        Err(NetworkError::RelayOnly { waited, .. }) => {
            return Err(Outcome::Lost(Lost::RelayOnly(waited)));
        }
        Err(e) => return Err(Outcome::Lost(Lost::Submit(e))),
    }
    info!(%worker, %job, "job accepted");
    Ok(delivered)
}

/// Waits for the receipt: delivered, or fetched once a poll says done.
pub(super) async fn wait(
    requester: &Requester,
    job: JobId,
    worker: PeerId,
    mut delivered: Delivered,
    options: &SubmitOptions,
    progress: &(dyn Fn(Stage) + Send + Sync),
) -> Outcome {
    let mut poll = tokio::time::interval(options.poll_interval);
    // A slow query must not be followed by a burst of catch-up polls.
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await; // the first tick is immediate; the job just started
    let mut missed = 0u32;
    let mut shown: Option<JobState> = None;
    loop {
        let receipt_in = async {
            match delivered.as_mut() {
                Some(rx) => rx.await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            receipt = receipt_in => match receipt {
                Some(receipt) => return Outcome::Done(Box::new(receipt)),
                None => delivered = None,
            },
            _ = poll.tick() => {
                match query(requester, worker, JobRequest::Status(job)).await {
                    Some(JobResponse::Status { state: JobState::Done { .. }, .. }) => {
                        match query(requester, worker, JobRequest::Receipt(job)).await {
                            Some(JobResponse::Receipt(r)) => return Outcome::Done(r),
                            _ => missed += 1,
                        }
                    }
                    Some(JobResponse::Status { state: JobState::Interrupted, .. }) => {
                        return Outcome::Lost(Lost::Interrupted);
                    }
                    Some(JobResponse::Status { state: JobState::Failed { message }, .. }) => {
                        return Outcome::Failed(message);
                    }
                    Some(JobResponse::Status {
                        state: JobState::ModuleTooComplex { message },
                        ..
                    }) => return Outcome::TooComplex(message),
                    Some(JobResponse::Status { state, .. }) => {
                        missed = 0;
                        if shown.as_ref() != Some(&state) {
                            shown = Some(state.clone());
                            progress(Stage::Worker { worker, state });
                        }
                    }
                    Some(JobResponse::NotFound(_)) => return Outcome::Lost(Lost::Forgot),
                    _ => missed += 1,
                }
                if missed >= MAX_MISSED_POLLS {
                    return Outcome::Lost(Lost::Silent(missed));
                }
            }
        }
    }
}

async fn query(requester: &Requester, worker: PeerId, request: JobRequest) -> Option<JobResponse> {
    match tokio::time::timeout(
        QUERY_DEADLINE,
        requester.network.request_job(worker, request),
    )
    .await
    {
        Ok(Ok(response)) => Some(response),
        Ok(Err(e)) => {
            debug!(%worker, error = %e, "query failed");
            None
        }
        Err(_) => None,
    }
}
