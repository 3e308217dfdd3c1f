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
//!
//! Failures answer `{"error":"one line"}`. Requests are capped at
//! [`MAX_REQUEST`] bytes, connections at [`MAX_CONNECTIONS`] at once, and
//! every request at [`REQUEST_DEADLINE`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use phase_protocol::Cid;

use crate::fetch::Progress;
use crate::node::NodeHandle;

/// Socket file name inside the data dir.
pub const SOCKET: &str = "api.sock";
/// Largest request line.
pub const MAX_REQUEST: u64 = 64 * 1024;
/// Largest response line a client reads.
pub const MAX_RESPONSE: u64 = 1024 * 1024;
/// Connections served at once; more wait for the listener's backlog.
pub const MAX_CONNECTIONS: usize = 32;
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
                if tokio::time::timeout(REQUEST_DEADLINE, handle(stream, &node))
                    .await
                    .is_err()
                {
                    warn!("control request timed out");
                }
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
    let response = match request {
        Ok(Request::Fetch { cid }) => {
            // Progress goes out while the fetch runs; the answer comes last.
            let (tx, mut rx) = tokio::sync::mpsc::channel(PROGRESS_QUEUE);
            let fetch = node.fetch_with_progress(cid, |p| {
                let _ = tx.try_send(p);
            });
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
        Ok(request) => {
            debug!(?request, "control request");
            answer(request, node).await
        }
        Err(e) => Response::Error(e),
    };
    let _ = write_line(&mut write, &response).await;
}

async fn write_line(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(response).expect("responses always serialize");
    out.push(b'\n');
    write.write_all(&out).await
}

async fn answer(request: Request, node: &NodeHandle) -> Response {
    let result = match request {
        Request::Id => node
            .listen_addrs()
            .await
            .map_err(|e| e.to_string())
            .map(|listen| {
                serde_json::json!({
                    "peer_id": node.peer_id().to_string(),
                    "listen": listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            }),
        Request::Fetch { cid } => node
            .fetch(cid)
            .await
            .map(|blocks| serde_json::json!({ "blocks": blocks }))
            .map_err(|e| error_line(&e)),
        Request::Provide { cid } => node
            .pin_and_provide(cid)
            .await
            .map(|()| serde_json::Value::Null)
            .map_err(|e| error_line(&e)),
        Request::WaitPeers { n } => match node.network().wait_routing_peers(n).await {
            Ok(()) => node
                .network()
                .routing_peers()
                .await
                .map(|p| serde_json::json!({ "peers": p.len() }))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
    };
    match result {
        Ok(v) => Response::Ok(v),
        Err(e) => Response::Error(e),
    }
}

/// An error and its causes on one line.
fn error_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
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
        let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
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
                Response::Ok(v) => return Ok(v),
                Response::Error(e) => return Err(ControlError::Daemon(e)),
            }
        }
    }
}
