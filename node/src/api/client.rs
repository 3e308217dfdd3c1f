//! The API's client, as the CLI (and the tests) use it: one HTTP/1.1
//! exchange per call over the data dir's Unix socket, answers decoded into
//! the shared [`super::types`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::{Method, Request, StatusCode, header};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::SOCKET;
use super::types::{ApiError, ErrorBody, StreamLine};

/// Largest answer (or NDJSON line) the client reads.
pub const MAX_ANSWER: usize = 16 << 20;
/// Deadline of a plain call (streamed calls bring their own).
pub const CALL_DEADLINE: Duration = Duration::from_secs(120);

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach the daemon at {path}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("the daemon's answer broke off")]
    Http(#[from] hyper::Error),
    /// The daemon answered with an error.
    #[error("daemon: {0}")]
    Api(ApiError),
    /// The answer is not what the route promises.
    #[error("unexpected answer from the daemon ({status})")]
    Decode {
        /// Its HTTP status.
        status: StatusCode,
        /// Why it does not decode.
        #[source]
        source: serde_json::Error,
    },
    /// The answer is larger than [`MAX_ANSWER`].
    #[error("the daemon's answer is larger than {MAX_ANSWER} bytes")]
    TooLarge,
    /// No answer within the deadline.
    #[error("no answer from the daemon within {0:?}")]
    Timeout(Duration),
    /// A streamed answer ended without its result.
    #[error("the daemon's answer ended before its result")]
    Truncated,
    /// A downloaded answer cannot be written.
    #[error("cannot write the daemon's answer")]
    Write(#[source] std::io::Error),
}

/// Times a refused call is tried again (25 ms doubling to 1 s: about 12 s
/// in all, past the daemon's header timeout that frees idle connections).
const MAX_RETRIES: u32 = 16;

/// Whether `error` means the daemon refused the connection before it read
/// a request: the socket's backlog was full, or it closed the connection
/// unanswered (a connection cap). A closed connection is retried only for
/// an `idempotent` request.
fn refused(error: &ClientError, idempotent: bool) -> bool {
    match error {
        ClientError::Connect { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::WouldBlock
        ),
        ClientError::Http(e) => {
            let reset = std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|io| {
                    matches!(
                        io.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::UnexpectedEof
                    )
                });
            idempotent && (reset || e.is_incomplete_message() || e.is_closed() || e.is_canceled())
        }
        _ => false,
    }
}

/// A client of the daemon of one data dir.
#[derive(Clone, Debug)]
pub struct ApiClient {
    socket: PathBuf,
}

impl ApiClient {
    /// A client of `socket` (not checked).
    #[must_use]
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    /// The daemon of `data_dir`, if one answers on its socket.
    pub async fn find(data_dir: &Path) -> Option<Self> {
        let socket = data_dir.join(SOCKET);
        UnixStream::connect(&socket)
            .await
            .ok()
            .map(|_| Self { socket })
    }

    /// `GET path`, its JSON answer.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// `POST path` with an optional JSON body, its JSON answer.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, body).await
    }

    /// `PATCH path` with a JSON body, its JSON answer.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// `DELETE path`, its JSON answer.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None::<&()>).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let idempotent = method == Method::GET;
        let exchange = async {
            let mut pause = Duration::from_millis(25);
            let mut tries = 0;
            loop {
                let request = request(method.clone(), path, body);
                let result = self
                    .exchange(request, |response| async move {
                        let status = response.status();
                        let bytes = read_capped(response.into_body()).await?;
                        decode(status, &bytes)
                    })
                    .await;
                // A daemon at its connection cap closes a new connection
                // at once: try again (bounded) when nothing can have
                // happened twice.
                match result {
                    Err(e) if tries < MAX_RETRIES && refused(&e, idempotent) => {
                        tries += 1;
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                    other => return other,
                }
            }
        };
        tokio::time::timeout(CALL_DEADLINE, exchange)
            .await
            .map_err(|_| ClientError::Timeout(CALL_DEADLINE))?
    }

    /// `GET path` whose answer is bytes (a CAR file), written to `out` as
    /// they come, with no cap on their size; how many bytes.
    ///
    /// # Errors
    /// See [`ClientError`]; nothing of an error answer is written.
    pub async fn download(
        &self,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let request = request(Method::GET, path, None::<&()>);
        let exchange = self.exchange(request, |response| async move {
            let status = response.status();
            if !status.is_success() {
                let bytes = read_capped(response.into_body()).await?;
                return decode(status, &bytes);
            }
            let mut body = response.into_body();
            let mut written = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    out.write_all(&data).await.map_err(ClientError::Write)?;
                    written += data.len() as u64;
                }
            }
            out.flush().await.map_err(ClientError::Write)?;
            Ok(written)
        });
        tokio::time::timeout(CALL_DEADLINE, exchange)
            .await
            .map_err(|_| ClientError::Timeout(CALL_DEADLINE))?
    }

    /// `POST path` whose answer is NDJSON: `progress` gets each progress
    /// line, and the `result` line is returned.
    ///
    /// # Errors
    /// See [`ClientError`]; an `error` line is [`ClientError::Api`].
    pub async fn stream<B, P, R>(
        &self,
        path: &str,
        body: Option<&B>,
        deadline: Duration,
        mut progress: impl FnMut(P) + Send,
    ) -> Result<R, ClientError>
    where
        B: Serialize,
        P: DeserializeOwned + Send,
        R: DeserializeOwned + Send,
    {
        let request = request(Method::POST, path, body);
        let exchange = self.exchange(request, |response| async move {
            let status = response.status();
            if !status.is_success() {
                let bytes = read_capped(response.into_body()).await?;
                return decode(status, &bytes);
            }
            let mut body = response.into_body();
            let mut buf = BytesMut::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    buf.extend_from_slice(&data);
                }
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line = buf.split_to(end + 1);
                    let parsed: StreamLine<P, R> = serde_json::from_slice(&line)
                        .map_err(|source| ClientError::Decode { status, source })?;
                    match parsed {
                        StreamLine::Progress(p) => progress(p),
                        StreamLine::Result(r) => return Ok(r),
                        StreamLine::Error(e) => return Err(ClientError::Api(e)),
                    }
                }
                if buf.len() > MAX_ANSWER {
                    return Err(ClientError::TooLarge);
                }
            }
            Err(ClientError::Truncated)
        });
        tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| ClientError::Timeout(deadline))?
    }

    /// One request on a new connection; `consume` reads the answer while
    /// the connection is driven beside it.
    async fn exchange<T, F>(
        &self,
        request: Request<Full<Bytes>>,
        consume: impl FnOnce(hyper::Response<Incoming>) -> F,
    ) -> Result<T, ClientError>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let work = async move {
            let response = sender.send_request(request).await?;
            consume(response).await
        };
        tokio::pin!(work, connection);
        tokio::select! {
            result = &mut work => result,
            ended = &mut connection => {
                ended?;
                work.await
            }
        }
    }
}

fn request<B: Serialize>(method: Method, path: &str, body: Option<&B>) -> Request<Full<Bytes>> {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost");
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                serde_json::to_vec(body).expect("requests always serialize"),
            ))),
        None => builder.body(Full::new(Bytes::new())),
    }
    .expect("a path and method make a valid request")
}

async fn read_capped(mut body: Incoming) -> Result<Bytes, ClientError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.len() + data.len() > MAX_ANSWER {
                return Err(ClientError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn decode<T: DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<T, ClientError> {
    if status.is_success() {
        serde_json::from_slice(bytes).map_err(|source| ClientError::Decode { status, source })
    } else {
        let body: ErrorBody = serde_json::from_slice(bytes)
            .map_err(|source| ClientError::Decode { status, source })?;
        Err(ClientError::Api(body.error))
    }
}
