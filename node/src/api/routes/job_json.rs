//! Jobs for clients in other languages: a job given in JSON (the fields of
//! `job.json`, with CIDs) made into its canonical spec here, and a
//! finished job's answer with its outputs inline and what a client needs
//! to check the receipt's signature itself.

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use phase_protocol::job::JobId;
use phase_protocol::{Cid, JobSpec, Message, Status};

use super::super::extract::{CidPath, internal};
use super::super::types::{
    ApiError, ErrorCode, FinishedJob, JobResultAnswer, MAX_INLINE_OUTPUT, ResultState,
};
use super::{ApiResult, ApiState, REQUEST_DEADLINE, within};
use crate::error_line;
use crate::jobfile::{JobFile, Source};
use crate::requester::{Progress, ReplicaResult};
use crate::store::{BlockStore, files};

/// The canonical spec of a job given in JSON: its stdin text stored (and
/// pinned) here, every CID it names checked to be in this node's store, a
/// random nonce; the spec's block stored.
pub(super) async fn spec_from_json(
    s: &ApiState,
    job: serde_json::Map<String, serde_json::Value>,
) -> Result<JobSpec, ApiError> {
    let bad = |field: &str, message: String| {
        ApiError::new(ErrorCode::BadRequest, format!("job.{field}: {message}"))
    };
    let text = serde_json::Value::Object(job).to_string();
    let file = JobFile::parse(&text).map_err(|e| {
        let field = if e.field == "job" {
            String::new()
        } else {
            e.field.clone()
        };
        // The parser's hint for a CID that does not parse is the CLI's
        // (a local path); a client uploads first.
        let message = match e.message.split_once("; for a local file write") {
            Some((what, _)) => {
                format!("{what}; upload the file with POST /api/v1/add and give its CID")
            }
            None => e.message,
        };
        ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "job{}{field}: {message}",
                if field.is_empty() { "" } else { "." },
            ),
        )
    })?;
    let store = s.node.store();
    // Everything is checked before anything is written: a refused job
    // leaves nothing behind in the store.
    let mut cids = [None, None, None];
    let mut text = None;
    for (i, (field, source)) in [
        ("module", Some(&file.module)),
        ("stdin", file.stdin.as_ref()),
        ("input", file.input.as_ref()),
    ]
    .into_iter()
    .enumerate()
    {
        match source {
            None => {}
            Some(Source::Cid(cid)) => {
                if !store.has(cid).await.map_err(|e| internal(&e))? {
                    return Err(bad(
                        field,
                        format!(
                            "{cid} is not in this node's store (upload it with POST /api/v1/add)"
                        ),
                    ));
                }
                cids[i] = Some(*cid);
            }
            Some(Source::Path(_)) => {
                return Err(bad(
                    field,
                    "the daemon reads no paths: upload the file with POST /api/v1/add and give its CID".into(),
                ));
            }
            Some(Source::Text(t)) => text = Some((i, t.clone())),
        }
    }
    if let Some(root) = file.state
        && !store.has(&root).await.map_err(|e| internal(&e))?
    {
        return Err(bad("state", format!("{root} is not in this node's store")));
    }
    let [module, _, _] = cids;
    let module = module.ok_or_else(|| bad("module", "give the CID of the module".into()))?;
    // Validation looks at which fields are set, not at their CIDs: the
    // module's CID stands in for a text not stored yet.
    let mut standin = cids;
    if let Some((i, _)) = &text {
        standin[*i] = Some(module);
    }
    file.check(module, standin[1], standin[2])
        .map_err(|e| bad(&e.field, e.message))?;
    if let Some((i, t)) = text {
        let root = files::add_bytes(store, Bytes::from(t.into_bytes()))
            .await
            .map_err(|e| internal(&e))?;
        store.pin(&root.cid).await.map_err(|e| internal(&e))?;
        cids[i] = Some(root.cid);
    }
    let [_, stdin, input] = cids;
    let spec = file
        .into_spec(module, stdin, input, rand::random())
        .map_err(|e| bad(&e.field, e.message))?;
    store
        .put(spec.id().0, Bytes::from(spec.encode()))
        .await
        .map_err(|e| internal(&e))?;
    Ok(spec)
}

/// `GET /api/v1/jobs/{id}/result`: where a job this node submitted is,
/// and once done what it gave.
pub(super) async fn result(
    State(s): State<ApiState>,
    CidPath(job): CidPath,
) -> ApiResult<JobResultAnswer> {
    let job = JobId(job);
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
                format!("job {job} was not submitted from this node"),
            )
        })?;
    let (state, error, done) = match &record.progress {
        Progress::Submitting => (ResultState::Submitting, None, None),
        Progress::Running => (ResultState::Running, None, None),
        Progress::Failed { error } => (ResultState::Failed, Some(error.clone()), None),
        Progress::Done { report } => {
            let first = report.results.first().ok_or_else(|| {
                ApiError::new(ErrorCode::Internal, format!("job {job} has no result"))
            })?;
            let done = within(REQUEST_DEADLINE, finished(s.node.store(), first)).await?;
            (ResultState::Done, None, Some(Box::new(done)))
        }
    };
    Ok(Json(JobResultAnswer {
        job,
        state,
        error,
        done,
    }))
}

/// What a verified run gave, for a client.
async fn finished(store: &BlockStore, run: &ReplicaResult) -> Result<FinishedJob, ApiError> {
    let receipt = run.receipt.receipt();
    let (stdout, stdout_truncated) = head(store, receipt.result, "stdout").await?;
    let (stderr, stderr_truncated) = head(store, receipt.result, "stderr").await?;
    let key = run
        .receipt
        .worker_key()
        .map_err(|e| ApiError::new(ErrorCode::Internal, error_line(&e)))?;
    Ok(FinishedJob {
        worker: run.worker,
        status: receipt.status.to_string(),
        exit_code: match receipt.status {
            Status::Exited { code } => Some(code),
            _ => None,
        },
        result: receipt.result,
        stdout,
        stdout_truncated,
        stderr,
        stderr_truncated,
        receipt_cid: run.receipt.cid(),
        receipt: run.receipt.clone(),
        signed_bytes: BASE64.encode(run.receipt.signed_bytes()),
        signature: BASE64.encode(run.receipt.signature()),
        public_key: BASE64.encode(key),
    })
}

/// The first [`MAX_INLINE_OUTPUT`] bytes of `name` in the result package
/// (as UTF-8, invalid sequences replaced), and whether there is more.
async fn head(store: &BlockStore, result: Cid, name: &str) -> Result<(String, bool), ApiError> {
    let Some(cid) = files::entry(store, result, name)
        .await
        .map_err(|e| internal(&e))?
    else {
        return Ok((String::new(), false));
    };
    let store = store.clone();
    let (bytes, total) = tokio::task::spawn_blocking(move || {
        let mut out = Head::default();
        files::cat_blocking(&store, &cid, &mut out).map(|total| (out.bytes, total))
    })
    .await
    .map_err(|e| internal(&e))?
    .map_err(|e| internal(&e))?;
    Ok((
        String::from_utf8_lossy(&bytes).into_owned(),
        total > MAX_INLINE_OUTPUT,
    ))
}

/// A writer that keeps the first [`MAX_INLINE_OUTPUT`] bytes.
#[derive(Default)]
struct Head {
    bytes: Vec<u8>,
}

impl std::io::Write for Head {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = usize::try_from(MAX_INLINE_OUTPUT).unwrap_or(usize::MAX) - self.bytes.len();
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
