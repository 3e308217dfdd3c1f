//! The local control interface: how `phase-node add/get/cat/id/peers` talk
//! to a daemon running on the same data dir (as Kubo's CLI talks to its
//! daemon).
//!
//! A Unix socket at `<data-dir>/api.sock` (mode 0600: only the node's user).
//! Each connection carries one request line of JSON and gets one response
//! line of JSON:
//!
//! | request | response |
//! | --- | --- |
//! | `{"cmd":"id"}` | `{"ok":{"peer_id":…,"listen":[…]}}` |
//! | `{"cmd":"fetch","cid":…}` | `{"progress":{…}}` lines, then `{"ok":{"blocks":N}}` once the DAG is in the store |
//! | `{"cmd":"provide","cid":…}` | `{"ok":null}` once announced |
//! | `{"cmd":"wait_peers","n":N}` | `{"ok":{"peers":M}}` once the routing table holds N |
//! | `{"cmd":"submit","job":…,"replicas":K,"attempts":N,"timeout_ms":T,"worker":null}` | `{"stage":{…}}` lines, then `{"ok":REPORT}` (the spec is the block `job` in the shared store; receipts and results are in the store when it answers) |
//! | `{"cmd":"job_status","job":…,"worker":null}` | `{"ok":{"state":…}}`: this node's own job (as a worker), else the named worker's answer |
//! | `{"cmd":"job_receipt","job":…,"worker":null}` | `{"ok":{"receipt":CID}}`, the receipt stored in the shared store |
//!
//! Failures answer `{"error":"one line"}`. Requests are capped at
//! [`MAX_REQUEST`] bytes, connections at [`MAX_CONNECTIONS`] at once, and
//! every request at [`REQUEST_DEADLINE`] (a submission at its own timeout
//! plus a minute).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use bytes::Bytes;
use libp2p::PeerId;

use phase_protocol::job::{JobId, JobRequest, JobResponse};
use phase_protocol::{Cid, JobSpec, Message};

use crate::blocks::{self, FetchOptions, Progress};
use crate::error_line;
use crate::node::NodeHandle;
use crate::requester::{Stage, SubmitOptions};

/// Socket file name inside the data dir.
pub const SOCKET: &str = "api.sock";
/// Largest request line.
pub const MAX_REQUEST: u64 = 64 * 1024;
/// Largest response line a client reads.
pub const MAX_RESPONSE: u64 = 1024 * 1024;
/// Connections served at once; more wait for the listener's backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// Longest a submission through the daemon may wait: a job's own timeout
/// is at most a day, and a deadline past this would overflow the clock.
pub const MAX_SUBMIT_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Deadline of one request (a fetch of a large DAG may take this long).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(600);

/// A control request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The daemon's identity and addresses.
    Id,
    /// Fetch a DAG from the network into the shared store.
    Fetch {
        /// Its root.
        #[serde(with = "cid_string")]
        cid: Cid,
    },
    /// Announce a root the CLI just added.
    Provide {
        /// The root.
        #[serde(with = "cid_string")]
        cid: Cid,
    },
    /// Wait until the routing table holds `n` peers.
    WaitPeers {
        /// How many.
        n: usize,
    },
    /// Submit the job whose spec is the block `job` in the shared store.
    Submit {
        /// The job id: the CID of the spec block.
        #[serde(with = "cid_string")]
        job: Cid,
        /// Only this worker.
        #[serde(default, with = "opt_peer")]
        worker: Option<PeerId>,
        /// Distinct workers to run it on.
        replicas: usize,
        /// Workers to try per replica.
        attempts: u32,
        /// Give up after this many milliseconds.
        timeout_ms: u64,
    },
    /// A job's state: as this node's worker knows it, else as `worker` says.
    JobStatus {
        /// The job.
        #[serde(with = "cid_string")]
        job: Cid,
        /// The worker to ask.
        #[serde(default, with = "opt_peer")]
        worker: Option<PeerId>,
    },
    /// A job's signed receipt, put into the shared store.
    JobReceipt {
        /// The job.
        #[serde(with = "cid_string")]
        job: Cid,
        /// The worker to ask.
        #[serde(default, with = "opt_peer")]
        worker: Option<PeerId>,
    },
}

impl Request {
    /// How long the daemon may take to answer.
    #[must_use]
    pub fn deadline(&self) -> Duration {
        match self {
            Request::Submit { timeout_ms, .. } => {
                Duration::from_millis(*timeout_ms).min(MAX_SUBMIT_DEADLINE)
                    + Duration::from_secs(60)
            }
            _ => REQUEST_DEADLINE,
        }
    }
}

/// PeerIds as their strings on the socket.
mod opt_peer {
    use libp2p::PeerId;
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub(super) fn serialize<S: Serializer>(peer: &Option<PeerId>, s: S) -> Result<S::Ok, S::Error> {
        match peer {
            Some(p) => s.collect_str(p),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PeerId>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                text.parse()
                    .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a PeerId: {e}")))
            })
            .transpose()
    }
}

/// CIDs as their `bafy…` strings on the socket.
mod cid_string {
    use std::str::FromStr;

    use phase_protocol::Cid;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(cid: &Cid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(cid)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cid, D::Error> {
        let text = String::deserialize(d)?;
        Cid::from_str(&text)
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a CID: {e}")))
    }
}

/// Why talking to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Socket I/O.
    #[error("control socket {path}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered with an error.
    #[error("daemon: {0}")]
    Daemon(String),
    /// The answer was not understood.
    #[error("unexpected answer from the daemon")]
    Protocol(#[source] serde_json::Error),
    /// A daemon already runs on this data dir.
    #[error("a daemon is already running on {0}")]
    AlreadyRunning(PathBuf),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Response {
    /// Interim: how a fetch is going (zero or more, before the answer).
    Progress(Progress),
    /// Interim: where a submission is (zero or more, before the answer).
    Stage(Stage),
    Ok(serde_json::Value),
    Error(String),
}

/// Progress lines queued per connection at most; a slow reader misses some.
const PROGRESS_QUEUE: usize = 16;

/// Binds the socket (replacing a stale one) and serves requests until cancelled.
///
/// # Errors
/// A daemon already answers on the socket, or it cannot be bound.
pub async fn serve(
    data_dir: &Path,
    node: Arc<NodeHandle>,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    let path = data_dir.join(SOCKET);
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    if UnixStream::connect(&path).await.is_ok() {
        return Err(ControlError::AlreadyRunning(data_dir.to_owned()));
    }
    let _ = std::fs::remove_file(&path); // stale socket of a crashed daemon
    let listener = UnixListener::bind(&path).map_err(io)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                () = cancel.cancelled() => break,
                permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let stream = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        warn!(error = %e, "control socket accept failed");
                        continue;
                    }
                },
            };
            let node = Arc::clone(&node);
            tokio::spawn(async move {
                let _permit = permit;
                handle(stream, &node).await;
            });
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn handle(stream: UnixStream, node: &NodeHandle) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    let request = match reader.read_line(&mut line).await {
        Ok(_) => serde_json::from_str::<Request>(&line).map_err(|e| format!("bad request: {e}")),
        Err(e) => Err(format!("cannot read request: {e}")),
    };
    let deadline = request.as_ref().map_or(REQUEST_DEADLINE, Request::deadline);
    debug!(request = ?request.as_ref().ok(), "control request");
    let respond = async {
        match request {
            Ok(Request::Submit {
                job,
                worker,
                replicas,
                attempts,
                timeout_ms,
            }) => {
                let (tx, mut rx) = tokio::sync::mpsc::channel(PROGRESS_QUEUE);
                let progress = move |stage: Stage| {
                    let _ = tx.try_send(stage);
                };
                let options = SubmitOptions {
                    worker,
                    replicas,
                    attempts,
                    ..SubmitOptions::default()
                };
                let submit = submit(
                    node,
                    job,
                    options,
                    Duration::from_millis(timeout_ms),
                    progress,
                );
                tokio::pin!(submit);
                let result = loop {
                    tokio::select! {
                        result = &mut submit => break result,
                        Some(stage) = rx.recv() => {
                            let _ = write_line(&mut write, &Response::Stage(stage)).await;
                        }
                    }
                };
                match result {
                    Ok(report) => Response::Ok(report),
                    Err(e) => Response::Error(e),
                }
            }
            Ok(Request::Fetch { cid }) => {
                // Progress goes out while the fetch runs; the answer comes last.
                let (tx, mut rx) = tokio::sync::mpsc::channel(PROGRESS_QUEUE);
                let fetch = blocks::fetch(
                    node.network(),
                    node.store(),
                    cid,
                    FetchOptions::default(),
                    |p| {
                        let _ = tx.try_send(p);
                    },
                );
                tokio::pin!(fetch);
                let result = loop {
                    tokio::select! {
                        result = &mut fetch => break result,
                        Some(p) = rx.recv() => {
                            let _ = write_line(&mut write, &Response::Progress(p)).await;
                        }
                    }
                };
                match result {
                    Ok(blocks) => Response::Ok(serde_json::json!({ "blocks": blocks })),
                    Err(e) => Response::Error(error_line(&e)),
                }
            }
            Ok(Request::Id) => to_response(
                node.listen_addrs()
                    .await
                    .map_err(|e| e.to_string())
                    .map(|listen| {
                        serde_json::json!({
                            "peer_id": node.peer_id().to_string(),
                            "listen": listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        })
                    }),
            ),
            Ok(Request::Provide { cid }) => to_response(
                node.pin_and_provide(cid)
                    .await
                    .map(|()| serde_json::Value::Null)
                    .map_err(|e| error_line(&e)),
            ),
            Ok(Request::JobStatus { job, worker }) => {
                to_response(job_query(node, JobId(job), worker, false).await)
            }
            Ok(Request::JobReceipt { job, worker }) => {
                to_response(job_query(node, JobId(job), worker, true).await)
            }
            Ok(Request::WaitPeers { n }) => {
                to_response(match node.network().wait_routing_peers(n).await {
                    Ok(()) => node
                        .network()
                        .routing_peers()
                        .await
                        .map(|p| serde_json::json!({ "peers": p.len() }))
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                })
            }
            Err(e) => Response::Error(e),
        }
    };
    let response = match tokio::time::timeout(deadline, respond).await {
        Ok(response) => response,
        Err(_) => {
            warn!("control request timed out");
            Response::Error(format!("no answer within {deadline:?}"))
        }
    };
    let _ = write_line(&mut write, &response).await;
}

/// A submission through the daemon: the spec is a block in the shared store.
async fn submit(
    node: &NodeHandle,
    job: Cid,
    options: SubmitOptions,
    timeout: Duration,
    progress: impl Fn(Stage) + Send + Sync,
) -> Result<serde_json::Value, String> {
    let bytes = node
        .store()
        .get(&job)
        .await
        .map_err(|e| error_line(&e))?
        .ok_or_else(|| format!("job spec {job} is not in the store"))?;
    let spec =
        JobSpec::decode(&bytes).map_err(|e| format!("job spec {job}: {}", error_line(&e)))?;
    let report = tokio::time::timeout(timeout, node.requester().submit(&spec, &options, &progress))
        .await
        .map_err(|_| format!("no result within {}", humantime::format_duration(timeout)))?
        .map_err(|e| error_line(&e))?;
    Ok(serde_json::to_value(&report).expect("reports always serialize"))
}

/// A job's state or receipt: from this node's worker, else from `worker`.
async fn job_query(
    node: &NodeHandle,
    job: JobId,
    worker: Option<PeerId>,
    receipt: bool,
) -> Result<serde_json::Value, String> {
    let local = match node.worker() {
        Some(w) if receipt => w
            .receipt(job)
            .await
            .map(|r| JobResponse::Receipt(Box::new(r))),
        Some(w) => w
            .state(job)
            .await
            .map(|state| JobResponse::Status { job, state }),
        None => None,
    };
    let response = match (local, worker) {
        (Some(r), _) => r,
        (None, Some(worker)) => {
            let request = if receipt {
                JobRequest::Receipt(job)
            } else {
                JobRequest::Status(job)
            };
            node.network()
                .request_job(worker, request)
                .await
                .map_err(|e| error_line(&e))?
        }
        (None, None) => {
            return Err(format!(
                "job {job} did not run on this node; name its worker with --worker"
            ));
        }
    };
    match response {
        JobResponse::Status { state, .. } => Ok(serde_json::json!({ "state": state })),
        JobResponse::Receipt(r) => {
            let cid = r.cid();
            node.store()
                .put(cid, Bytes::from(r.to_cbor()))
                .await
                .map_err(|e| error_line(&e))?;
            Ok(serde_json::json!({ "receipt": cid.to_string() }))
        }
        JobResponse::NotFound(_) => Err(format!("the worker does not know job {job}")),
        other => Err(format!("unexpected answer from the worker: {other:?}")),
    }
}

async fn write_line(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(response).expect("responses always serialize");
    out.push(b'\n');
    write.write_all(&out).await
}

fn to_response(result: Result<serde_json::Value, String>) -> Response {
    match result {
        Ok(v) => Response::Ok(v),
        Err(e) => Response::Error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::cid::raw_cid;

    #[test]
    fn requests_are_the_documented_json() {
        let cid = raw_cid(b"x");
        let json = serde_json::to_string(&Request::Fetch { cid }).unwrap();
        assert_eq!(json, format!(r#"{{"cmd":"fetch","cid":"{cid}"}}"#));
        let back: Request =
            serde_json::from_str(&format!(r#"{{"cmd":"provide","cid":"{cid}"}}"#)).unwrap();
        assert_eq!(back, Request::Provide { cid });
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"wait_peers","n":3}"#).unwrap(),
            Request::WaitPeers { n: 3 }
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"fetch","cid":"nope"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"format_disk"}"#).is_err());
        let forever = Request::Submit {
            job: cid,
            worker: None,
            replicas: 1,
            attempts: 1,
            timeout_ms: u64::MAX,
        };
        let _ = tokio::time::Instant::now() + forever.deadline(); // no overflow
    }
}

/// Client side: a connection to the daemon of a data dir, if one runs.
#[derive(Debug, Clone)]
pub struct Daemon {
    path: PathBuf,
}

impl Daemon {
    /// The daemon of `data_dir`, if one answers on its socket.
    pub async fn find(data_dir: &Path) -> Option<Self> {
        let path = data_dir.join(SOCKET);
        UnixStream::connect(&path).await.ok().map(|_| Self { path })
    }

    /// Sends one request and waits (bounded) for the answer.
    ///
    /// # Errors
    /// Socket I/O, a daemon-side error, or a garbled answer.
    pub async fn call(&self, request: &Request) -> Result<serde_json::Value, ControlError> {
        self.call_with_progress(request, |_| {}).await
    }

    /// [`Daemon::call`], passing interim progress (of a fetch) to `progress`.
    ///
    /// # Errors
    /// As `call`.
    pub async fn call_with_progress(
        &self,
        request: &Request,
        mut progress: impl FnMut(Progress),
    ) -> Result<serde_json::Value, ControlError> {
        self.call_inner(request, &mut progress, &mut |_| {}).await
    }

    /// [`Daemon::call`], passing interim stages (of a submission) to `stage`.
    ///
    /// # Errors
    /// As `call`.
    pub async fn call_with_stages(
        &self,
        request: &Request,
        mut stage: impl FnMut(Stage),
    ) -> Result<serde_json::Value, ControlError> {
        self.call_inner(request, &mut |_| {}, &mut stage).await
    }

    async fn call_inner(
        &self,
        request: &Request,
        progress: &mut dyn FnMut(Progress),
        stage: &mut dyn FnMut(Stage),
    ) -> Result<serde_json::Value, ControlError> {
        let io = |source| ControlError::Io {
            path: self.path.clone(),
            source,
        };
        let stream = UnixStream::connect(&self.path).await.map_err(io)?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request).expect("requests always serialize");
        line.push(b'\n');
        write.write_all(&line).await.map_err(io)?;
        let mut reader = BufReader::new(read);
        let deadline = tokio::time::Instant::now() + request.deadline();
        loop {
            let mut answer = String::new();
            let mut line = (&mut reader).take(MAX_RESPONSE);
            tokio::time::timeout_at(deadline, line.read_line(&mut answer))
                .await
                .map_err(|_| {
                    io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no answer from the daemon",
                    ))
                })?
                .map_err(io)?;
            match serde_json::from_str::<Response>(&answer).map_err(ControlError::Protocol)? {
                Response::Progress(p) => progress(p),
                Response::Stage(s) => stage(s),
                Response::Ok(v) => return Ok(v),
                Response::Error(e) => return Err(ControlError::Daemon(e)),
            }
        }
    }
}
