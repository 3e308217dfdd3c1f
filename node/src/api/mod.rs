//! The daemon's API: HTTP/1.1 and JSON, versioned under `/api/v1/`, plus
//! Prometheus metrics at `/metrics`. `node/openapi.json` describes every
//! route; a test keeps the two in step.
//!
//! - Served on the Unix socket `<data-dir>/api.sock` (mode 0600: only the
//!   node's user) and, when asked (`start --api 127.0.0.1:5001` or `[api]
//!   listen`), on a loopback TCP port that requires `Authorization: Bearer
//!   <token>`, the token being `<data-dir>/api.token` (mode 0600, made on
//!   first start).
//! - Errors are `{"error": {"code": "...", "message": "one line"}}` with a
//!   fitting status; long operations (submit, fetch) stream NDJSON progress
//!   lines and end with a `result` (or `error`) line.
//! - Caps: [`MAX_CONNECTIONS`] connections at once on the Unix socket, and
//!   a budget of their own for TCP ([`MAX_TCP_CONNECTIONS`], at most
//!   [`MAX_TCP_PER_SOURCE`] from one address), so that connections anyone
//!   on the machine can open never take the owner's socket from its owner
//!   (more are closed at once); [`HEADER_TIMEOUT`] to send a request's head
//!   (idle keep-alive connections included; [`TCP_HEADER_TIMEOUT`] on TCP,
//!   where every request must carry the token), [`MAX_HEADER_BYTES`] of head, a body limit per
//!   route and a deadline per request ([`routes`]). A request's work is
//!   dropped when its client disconnects.
//! - One accept loop per listener and one task per connection, all in one
//!   `JoinSet`: [`ApiServer::shutdown`] ends them.

pub mod client;
mod dashboard;
mod extract;
mod routes;
pub mod types;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

pub use self::client::{ApiClient, ClientError};
use self::routes::{ApiState, BACKGROUND_SUBMITS};
pub use self::routes::{
    FETCH_DEADLINE, MAX_JSON_BODY, MAX_SUBMIT_DEADLINE, MAX_UPLOAD, REQUEST_DEADLINE,
};
use self::types::{ApiError, ErrorCode};
use crate::node::NodeHandle;

/// Socket file name inside the data dir.
pub const SOCKET: &str = "api.sock";
/// Bearer token file name inside the data dir.
pub const TOKEN_FILE: &str = "api.token";
/// Connections served at once; past this a new connection is closed at once
/// (idle ones time out after [`HEADER_TIMEOUT`], so this is not reached by
/// clients that merely connect).
pub const MAX_CONNECTIONS: usize = 1024;
/// TCP connections served at once, a budget apart from the Unix socket's.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// TCP connections from one address at once.
pub const MAX_TCP_PER_SOURCE: usize = 64;
/// How long a client has to send a request's head, on a new connection or
/// an idle kept-alive one.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The same on TCP, where anyone on the machine may connect and every
/// request must show the token: a connection that does not is closed soon.
pub const TCP_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head (request line and headers); a larger one is
/// answered 431 and the connection closed.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Deadline of an upload to `POST /api/v1/add`.
pub const UPLOAD_DEADLINE: Duration = Duration::from_secs(3600);
/// How long requests in flight get to end when the API shuts down (each
/// connection finishes its request, then closes); then they are dropped.
pub const DRAIN: Duration = Duration::from_secs(3);

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A daemon already answers on this data dir's socket.
    #[error("a daemon is already running on {0}")]
    AlreadyRunning(PathBuf),
    /// The socket, the port or the token file could not be set up.
    #[error("cannot set up the API at {what}")]
    Io {
        /// The socket, address or file.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TCP address is not a loopback address.
    #[error("the API listens on loopback addresses only, not {0}")]
    NotLoopback(SocketAddr),
}

/// The running API. Dropping it without [`ApiServer::shutdown`] leaves its
/// tasks to end with the cancellation token.
#[derive(Debug)]
#[must_use = "the API stops when shut down or cancelled"]
pub struct ApiServer {
    tasks: JoinSet<()>,
    cancel: CancellationToken,
    socket: PathBuf,
    tcp: Option<SocketAddr>,
}

impl ApiServer {
    /// The loopback TCP address, when one was asked for (port 0 resolved).
    #[must_use]
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// Stops accepting, lets the requests in flight end within [`DRAIN`]
    /// (dropping what is still running then), and removes the socket.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        // The accept loops bound their own drain; this is the backstop.
        if tokio::time::timeout(DRAIN + Duration::from_secs(1), drain)
            .await
            .is_err()
        {
            self.tasks.shutdown().await;
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Serves the API of `node` on `<data_dir>/api.sock` (replacing a stale
/// socket) and, with `tcp`, on that loopback address with the token.
///
/// # Errors
/// A daemon already answers on the socket, or a listener or the token file
/// cannot be set up.
pub async fn serve(
    data_dir: &Path,
    node: NodeHandle,
    tcp: Option<SocketAddr>,
    cancel: CancellationToken,
) -> Result<ApiServer, ServeError> {
    let socket = data_dir.join(SOCKET);
    let io = |what: &dyn std::fmt::Display| {
        let what = what.to_string();
        move |source| ServeError::Io { what, source }
    };
    if UnixStream::connect(&socket).await.is_ok() {
        return Err(ServeError::AlreadyRunning(data_dir.to_owned()));
    }
    let _ = std::fs::remove_file(&socket); // stale socket of a crashed daemon
    let unix = UnixListener::bind(&socket).map_err(io(&socket.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(io(&socket.display()))?;
    }
    let stopping = Stopping {
        cancel: cancel.clone(),
        in_flight: node.metrics().api_in_flight.clone(),
    };
    let background = Arc::new(Semaphore::new(BACKGROUND_SUBMITS));
    let router = router(ApiState { node, background }, stopping);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    let span = tracing::Span::current();
    tasks.spawn(
        accept_loop(
            Listener::Unix(unix),
            dashboard::with_dashboard(router.clone()),
            Arc::clone(&limit),
            cancel.clone(),
        )
        .instrument(span.clone()),
    );
    let mut bound = None;
    if let Some(addr) = tcp {
        if !addr.ip().is_loopback() {
            return Err(ServeError::NotLoopback(addr));
        }
        let token =
            load_or_create_token(data_dir).map_err(io(&data_dir.join(TOKEN_FILE).display()))?;
        let listener = TcpListener::bind(addr).await.map_err(io(&addr))?;
        let local = listener.local_addr().map_err(io(&addr))?;
        info!(addr = %local, "API listening on TCP (bearer token required)");
        let authed = dashboard::with_dashboard(router.layer(middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        )));
        let tcp_limit = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        tasks.spawn(
            accept_loop(Listener::Tcp(listener), authed, tcp_limit, cancel.clone())
                .instrument(span),
        );
        bound = Some(local);
    }
    Ok(ApiServer {
        tasks,
        cancel,
        socket,
        tcp: bound,
    })
}

/// What the request middleware needs: the API's stop signal and the gauge
/// of requests in flight.
#[derive(Clone, Debug)]
struct Stopping {
    cancel: CancellationToken,
    in_flight: prometheus_client::metrics::gauge::Gauge,
}

fn router(state: ApiState, stopping: Stopping) -> Router {
    let mut router = Router::new();
    for route in routes::routes() {
        debug!(method = %route.method, path = route.path, "API route");
        router = router.route(route.path, route.handler);
    }
    router
        .fallback(|| async {
            ApiError::new(ErrorCode::NotFound, "no such route; see node/openapi.json")
        })
        .layer(middleware::from_fn_with_state(stopping, deadline))
        .with_state(state)
}

/// A request counted in the in-flight gauge until its answer is made (or
/// its work dropped).
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn count(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How long a request in flight when the API stops may still take to
/// answer before it is answered "shutting down" (within [`DRAIN`]).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Ends a request's work at its deadline (an upload's is longer), and,
/// once the API stops, [`STOP_GRACE`] later: a long wait (`peers?wait=`)
/// is answered 503 instead of being cut off.
async fn deadline(
    State(stopping): State<Stopping>,
    path: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let _counted = InFlight::count(&stopping.in_flight);
    let limit = match path.as_ref().map(MatchedPath::as_str) {
        Some("/api/v1/add") => UPLOAD_DEADLINE,
        _ => REQUEST_DEADLINE + Duration::from_secs(5),
    };
    let work = tokio::time::timeout(limit, next.run(request));
    tokio::pin!(work);
    let answered = tokio::select! {
        answered = work.as_mut() => answered,
        () = stopping.cancel.cancelled() => match tokio::time::timeout(STOP_GRACE, work).await {
            Ok(answered) => answered,
            Err(_) => {
                return ApiError::new(ErrorCode::Unavailable, "the daemon is shutting down")
                    .into_response();
            }
        },
    };
    answered.unwrap_or_else(|_| {
        ApiError::new(
            ErrorCode::Timeout,
            format!("no answer within {}", humantime::format_duration(limit)),
        )
        .into_response()
    })
}

/// Refuses a TCP request without the data dir's bearer token.
async fn require_token(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => {
            next.run(request).await
        }
        _ => {
            let mut refused = ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "send `Authorization: Bearer <token>` with the token in <data-dir>/{TOKEN_FILE}"
                ),
            )
            .into_response();
            // A client without the token gets no second try on this
            // connection.
            refused.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            refused
        }
    }
}

/// The data dir's API token, made (32 random bytes, hex, mode 0600) if it
/// does not exist yet.
///
/// # Errors
/// I/O.
pub fn load_or_create_token(data_dir: &Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => std::fs::remove_file(&path)?, // empty: a crash while making it
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let tmp = data_dir.join(format!(".{TOKEN_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Accepts connections until cancelled; each is served by a task of its
/// own set, at most [`MAX_CONNECTIONS`] at once.
async fn accept_loop(
    listener: Listener,
    router: Router,
    limit: Arc<Semaphore>,
    cancel: CancellationToken,
) {
    let mut connections = JoinSet::new();
    // Connections per source address (TCP), with the task that serves each.
    let mut sources: std::collections::HashMap<tokio::task::Id, std::net::IpAddr> =
        std::collections::HashMap::new();
    let mut per_source: std::collections::HashMap<std::net::IpAddr, usize> =
        std::collections::HashMap::new();
    let header_timeout = match listener {
        Listener::Unix(_) => HEADER_TIMEOUT,
        Listener::Tcp(_) => TCP_HEADER_TIMEOUT,
    };
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            Some(ended) = connections.join_next_with_id() => {
                let id = match ended {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                if let Some(ip) = sources.remove(&id)
                    && let Some(n) = per_source.get_mut(&ip)
                {
                    *n -= 1;
                    if *n == 0 {
                        per_source.remove(&ip);
                    }
                }
                continue;
            }
            accepted = accept(&listener) => accepted,
        };
        let (stream, source) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "API accept failed");
                continue;
            }
        };
        if let Some(ip) = source
            && per_source.get(&ip).copied().unwrap_or(0) >= MAX_TCP_PER_SOURCE
        {
            debug!(%ip, "API connection refused: too many from this address");
            continue;
        }
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            debug!("API connection refused: too many at once");
            continue; // dropping the stream closes it
        };
        let (router, cancel) = (router.clone(), cancel.clone());
        let task = connections.spawn(
            async move {
                let _permit = permit;
                serve_connection(stream, router, header_timeout, cancel).await;
            }
            .in_current_span(),
        );
        if let Some(ip) = source {
            *per_source.entry(ip).or_default() += 1;
            sources.insert(task.id(), ip);
        }
    }
    // Shutting down: each connection ends its request in flight, bounded.
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drain).await.is_err() {
        debug!(
            left = connections.len(),
            "API requests still running at shutdown dropped"
        );
        connections.shutdown().await;
    }
}

/// A connection of either listener.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A new connection, and its source address when it came over TCP.
async fn accept(
    listener: &Listener,
) -> std::io::Result<(Box<dyn Stream>, Option<std::net::IpAddr>)> {
    Ok(match listener {
        Listener::Unix(l) => (Box::new(l.accept().await?.0), None),
        Listener::Tcp(l) => {
            let (stream, from) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            (Box::new(stream), Some(from.ip()))
        }
    })
}

/// Serves one connection; once `cancel` fires, it finishes the request in
/// flight (if any) and closes (hyper's graceful shutdown).
async fn serve_connection(
    stream: Box<dyn Stream>,
    router: Router,
    header_timeout: Duration,
    cancel: CancellationToken,
) {
    let service = TowerToHyperService::new(router);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "API connection ended");
    }
}
