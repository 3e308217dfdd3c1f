//! Answering `/phase/job/1.0.0`: what a worker (or a node that runs no
//! jobs) says to a submission, a status query, a receipt query or a
//! capability query, and the capability records it announces. A delivered
//! receipt is not a worker's business: the node routes it to the
//! requester before it comes here.

use libp2p::PeerId;
use tracing::debug;

use phase_protocol::job::{JobRequest, JobResponse, Rejection};

use super::{Worker, worker_capabilities};
use crate::config::WorkerConfig;
use crate::network::NetworkClient;

/// The answer to `request` from `peer`: the worker's, or, when this node
/// runs no jobs, "not found" to queries and "malformed" to submissions.
/// `Deliver` is answered "malformed" here: receipts go to the requester.
pub async fn answer(worker: Option<&Worker>, peer: PeerId, request: JobRequest) -> JobResponse {
    let Some(worker) = worker else {
        return not_a_worker(request);
    };
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
        JobRequest::Deliver(_) => malformed("a receipt is delivered to a requester"),
    }
}

/// The answer of a node that runs no jobs.
fn not_a_worker(request: JobRequest) -> JobResponse {
    match request {
        JobRequest::Status(job) | JobRequest::Receipt(job) => JobResponse::NotFound(job),
        JobRequest::Submit(_) | JobRequest::Capabilities => {
            malformed("this node does not run jobs")
        }
        JobRequest::Deliver(_) => malformed("a receipt is delivered to a requester"),
    }
}

fn malformed(message: &str) -> JobResponse {
    JobResponse::Rejected(Rejection::Malformed {
        message: message.into(),
    })
}

/// The answer when too many job requests are in hand: a submission is told
/// `busy`; a query gets no answer (`None`: the peer asks again, which
/// "not found" would not make it do).
#[must_use]
pub fn overloaded(request: &JobRequest) -> Option<JobResponse> {
    match request {
        JobRequest::Status(_) | JobRequest::Receipt(_) => None,
        _ => Some(JobResponse::Rejected(Rejection::Busy)),
    }
}

/// Provides the capability keys now, and again once a peer is known (a
/// record put while alone stays local); Kademlia republishes them after.
pub async fn announce_capabilities(network: NetworkClient, config: WorkerConfig) {
    let provide_all = || async {
        for capability in worker_capabilities(&config) {
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
