//! The job routes: submit (NDJSON stages, then the verified report), a
//! job's state and receipt (asked of its worker), and the record of a job
//! this node submitted.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use phase_protocol::job::{JobId, JobRequest, JobResponse};
use phase_protocol::{JobSpec, Message};

use super::super::extract::{CidPath, J, Q, internal, unavailable};
use super::super::types::{
    ApiError, ErrorCode, JobQuery, JobRef, JobStatusAnswer, JobsAnswer, ReceiptAnswer,
    SubmitRequest, SubmittedAnswer,
};
use super::{
    ApiResult, ApiState, BACKGROUND_SUBMITS, MAX_SUBMIT_DEADLINE, PROGRESS_QUEUE, REQUEST_DEADLINE,
    ndjson, within,
};
use crate::error_line;
use crate::requester::{JobRecord, SubmitOptions};

pub(super) async fn submit(State(s): State<ApiState>, J(request): J<SubmitRequest>) -> Response {
    let spec = match &request.job {
        JobRef::Id(text) => match text.parse::<JobId>() {
            Ok(job) => load_spec(&s, job).await,
            Err(_) => Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("job: `{text}` is not a CID (give a job id, or the job as an object)"),
            )),
        },
        JobRef::File(file) => super::job_json::spec_from_json(&s, file.clone()).await,
    };
    let spec = match spec {
        Ok(spec) => spec,
        Err(e) => return e.into_response(),
    };
    if request.replicas == 0 {
        return ApiError::new(ErrorCode::BadRequest, "replicas: must be at least 1")
            .into_response();
    }
    let audit = request.audit;
    if audit.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        return ApiError::new(ErrorCode::BadRequest, "audit: must be from 0 to 1").into_response();
    }
    let (tx, rx) = mpsc::channel(PROGRESS_QUEUE);
    let options = SubmitOptions {
        worker: request.worker,
        replicas: request.replicas,
        attempts: request.attempts,
        audit,
        audit_local: request.audit_local,
        ..SubmitOptions::default()
    };
    let deadline = request.timeout.min(MAX_SUBMIT_DEADLINE);
    if !request.wait {
        return in_background(s, spec, options, deadline)
            .await
            .map_or_else(IntoResponse::into_response, |answer| {
                (StatusCode::ACCEPTED, Json(answer)).into_response()
            });
    }
    let work = async move {
        let progress = move |stage| {
            let _ = tx.try_send(stage);
        };
        let report = within(deadline, async {
            s.node
                .requester()
                .submit(&spec, &options, &progress)
                .await
                .map_err(|e| ApiError::new(ErrorCode::Unavailable, error_line(&e)))
        })
        .await?;
        // The requester recorded it before it is answered: `status` finds
        // it after a restart.
        s.node.metrics().jobs.submitted.inc();
        Ok(report)
    };
    ndjson(rx, work)
}

/// Records `spec` and submits it in the background (bounded: at most
/// [`BACKGROUND_SUBMITS`] at once, then busy); a daemon stopped meanwhile
/// resumes it from its record when it starts again.
async fn in_background(
    s: ApiState,
    spec: JobSpec,
    options: SubmitOptions,
    deadline: std::time::Duration,
) -> Result<SubmittedAnswer, ApiError> {
    let job = spec.id();
    let permit = s.background.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("{BACKGROUND_SUBMITS} submissions are under way; try again when some end"),
        )
    })?;
    let records = s.node.requester().records();
    if records.get(job).await.map_err(|e| internal(&e))?.is_none() {
        let mut record = JobRecord::new(&spec, options.replicas.max(1), options.worker);
        records.put(&mut record).await.map_err(|e| internal(&e))?;
    }
    tokio::spawn(async move {
        let _permit = permit;
        let requester = s.node.requester();
        match tokio::time::timeout(deadline, requester.submit(&spec, &options, &|_| {})).await {
            Ok(Ok(_)) => {
                s.node.metrics().jobs.submitted.inc();
            }
            Ok(Err(e)) => {
                tracing::info!(%job, error = %error_line(&e), "a job submitted in the background failed");
            }
            Err(_) => {
                tracing::info!(%job, "a job submitted in the background got no result in time");
            }
        }
    });
    Ok(SubmittedAnswer { job })
}

/// The spec of `job`: its block in the store, else the requester's record
/// of it (a job being resumed), whose spec is put back in the store.
async fn load_spec(s: &ApiState, job: JobId) -> Result<JobSpec, ApiError> {
    let store = s.node.store();
    let Some(bytes) = store.get(&job.0).await.map_err(|e| internal(&e))? else {
        let record = s
            .node
            .requester()
            .records()
            .get(job)
            .await
            .map_err(|e| internal(&e))?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("job: spec {job} is not in the store"),
                )
            })?;
        store
            .put(job.0, Bytes::from(record.spec.encode()))
            .await
            .map_err(|e| internal(&e))?;
        return Ok(record.spec);
    };
    let spec = JobSpec::decode(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("job: {}", error_line(&e))))?;
    if spec.id() != job {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("job: block {job} is not a canonical job spec"),
        ));
    }
    Ok(spec)
}

/// A job's state or receipt: from this node's worker, else from `worker`.
async fn ask_about(
    s: &ApiState,
    job: JobId,
    worker: Option<libp2p::PeerId>,
    receipt: bool,
) -> Result<JobResponse, ApiError> {
    let local = match s.node.worker() {
        Some(w) if receipt => match w.receipt(job).await {
            Some(r) => Some(JobResponse::Receipt(Box::new(r))),
            // Known here without a receipt: say where it is, as `status` does.
            None => match w.state(job).await {
                Some(state) if worker.is_none() => {
                    return Err(ApiError::new(
                        ErrorCode::NotFound,
                        format!(
                            "job {job} has no receipt on this node: {}",
                            state_word(&state)
                        ),
                    ));
                }
                _ => None,
            },
        },
        Some(w) => w
            .state(job)
            .await
            .map(|state| JobResponse::Status { job, state }),
        None => None,
    };
    match (local, worker) {
        (Some(r), _) => Ok(r),
        (None, Some(worker)) => {
            let request = if receipt {
                JobRequest::Receipt(job)
            } else {
                JobRequest::Status(job)
            };
            within(REQUEST_DEADLINE, async {
                s.node
                    .network()
                    .request_job(worker, request)
                    .await
                    .map_err(|e| unavailable(&e))
            })
            .await
        }
        (None, None) => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("job {job} did not run on this node; name its worker with worker=PEERID"),
        )),
    }
}

/// The error for a worker's answer that is not the one asked for.
fn not_an_answer(job: JobId, answer: &JobResponse) -> ApiError {
    match answer {
        JobResponse::NotFound(_) => ApiError::new(
            ErrorCode::NotFound,
            format!("the worker does not know job {job}"),
        ),
        other => ApiError::new(
            ErrorCode::Internal,
            format!("unexpected answer from the worker: {other:?}"),
        ),
    }
}

pub(super) async fn job_status(
    State(s): State<ApiState>,
    CidPath(job): CidPath,
    Q(query): Q<JobQuery>,
) -> ApiResult<JobStatusAnswer> {
    let job = JobId(job);
    match ask_about(&s, job, query.worker, false).await? {
        JobResponse::Status { state, .. } => Ok(Json(JobStatusAnswer { job, state })),
        other => Err(not_an_answer(job, &other)),
    }
}

pub(super) async fn job_receipt(
    State(s): State<ApiState>,
    CidPath(job): CidPath,
    Q(query): Q<JobQuery>,
) -> ApiResult<ReceiptAnswer> {
    let job = JobId(job);
    match ask_about(&s, job, query.worker, true).await? {
        JobResponse::Receipt(receipt) => {
            let cid = receipt.cid();
            s.node
                .store()
                .put(cid, Bytes::from(receipt.to_cbor()))
                .await
                .map_err(|e| internal(&e))?;
            Ok(Json(ReceiptAnswer {
                cid,
                receipt: *receipt,
            }))
        }
        other => Err(not_an_answer(job, &other)),
    }
}

pub(super) async fn submitted(
    State(s): State<ApiState>,
    CidPath(job): CidPath,
) -> ApiResult<crate::requester::SubmitReport> {
    let job = JobId(job);
    let found = s
        .node
        .requester()
        .records()
        .report(job)
        .await
        .map_err(|e| internal(&e))?;
    found.map(Json).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("job {job} was not submitted from this node, or has not ended"),
        )
    })
}

pub(super) async fn list_jobs(State(s): State<ApiState>) -> ApiResult<JobsAnswer> {
    JobsAnswer::read(s.node.store())
        .await
        .map(Json)
        .map_err(|e| internal(&e))
}

/// A job's state in a few words, for errors.
fn state_word(state: &phase_protocol::job::JobState) -> String {
    use phase_protocol::job::JobState;
    match state {
        JobState::Queued => "it is queued".into(),
        JobState::Fetching => "it is fetching its inputs".into(),
        JobState::Running => "it is running".into(),
        JobState::Done { receipt, .. } => format!("its receipt {receipt} is gone from the store"),
        JobState::Failed { message } => format!("it failed: {message}"),
        JobState::ModuleTooComplex { message } => format!("module too complex: {message}"),
        JobState::Interrupted => "interrupted: the worker stopped while it ran".into(),
    }
}
