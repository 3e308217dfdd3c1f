//! The routes of `/api/v1/` and their handlers. [`routes`] is the one list
//! of what the server answers: the router is built from it, and a test holds
//! it to `node/openapi.json` both ways.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};
use tracing::debug;

use phase_protocol::Cid;

use super::extract::{CidPath, Q, internal, unavailable};
use super::types::{
    AddAnswer, AddFormat, AddQuery, ApiError, ConnectAnswer, ConnectQuery, ErrorCode, FetchAnswer,
    GcAnswer, IdAnswer, PeersAnswer, PeersQuery, PinAnswer, PinsAnswer, StreamLine,
};
mod dht;
mod job_json;
mod jobs;
mod ledger;
mod state;
mod worker;

use self::jobs::{job_receipt, job_status, list_jobs, submit, submitted};
use crate::blocks::{self, FetchOptions};
use crate::error_line;
use crate::node::NodeHandle;
use crate::store::{car, files, untrusted};

/// Largest JSON request body.
pub const MAX_JSON_BODY: usize = 64 * 1024;
/// Largest upload to `POST /api/v1/add`.
pub const MAX_UPLOAD: u64 = 64 << 30;
/// Deadline of a request that is not a stream (a `wait` for peers included).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Most bytes `/api/v1/cat` streams of a file that is not pinned here (the
/// CLI's `cat --max-size` default).
const UNTRUSTED_CAT_BYTES: u64 = 1 << 30;
/// How long an upload may send nothing before it is ended (nginx's
/// `client_body_timeout` is 60 s): `gc` waits for uploads under way.
const UPLOAD_IDLE: Duration = Duration::from_secs(30);
/// How long a DAG fetched for a client is kept from gc after the fetch:
/// the client (`get`, `cat`) reads it from the store next.
const FETCHED_HOLD: Duration = Duration::from_secs(600);
/// Deadline of a streamed fetch, or of fetching what `cat` and `get` lack.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(600);
/// Longest a submission may wait: a job's own timeout is at most a day.
pub const MAX_SUBMIT_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Progress lines buffered per streamed answer; a slow reader misses some.
const PROGRESS_QUEUE: usize = 16;
/// Bytes buffered between a blocking export and the response body.
const PIPE_BYTES: usize = 256 * 1024;

/// What every handler gets.
#[derive(Clone, Debug)]
pub(crate) struct ApiState {
    pub(crate) node: NodeHandle,
    /// Room for submissions answered at once and run in the background.
    pub(crate) background: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Submissions (`"wait": false`) under way in the background at most.
pub(crate) const BACKGROUND_SUBMITS: usize = 1024;

/// One route: method, path (axum's and OpenAPI's `{param}` syntax), handler.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) handler: MethodRouter<ApiState>,
}

/// Every route the API answers.
pub(crate) fn routes() -> Vec<Route> {
    let json_limit = || DefaultBodyLimit::max(MAX_JSON_BODY);
    let r = |method: Method, path, handler: MethodRouter<ApiState>| Route {
        method,
        path,
        handler,
    };
    vec![
        r(Method::GET, "/api/v1/id", get(id)),
        r(Method::GET, "/api/v1/peers", get(peers)),
        r(Method::POST, "/api/v1/swarm/connect", post(connect)),
        r(Method::GET, "/api/v1/dht/peer/{peer}", get(dht::find_peer)),
        r(Method::GET, "/api/v1/dht/providers", get(dht::providers)),
        r(
            Method::POST,
            "/api/v1/add",
            post(add).layer(DefaultBodyLimit::disable()),
        ),
        r(Method::GET, "/api/v1/cat/{cid}", get(cat)),
        r(Method::GET, "/api/v1/get/{cid}", get(get_car)),
        r(Method::POST, "/api/v1/fetch/{cid}", post(fetch)),
        r(Method::GET, "/api/v1/pins", get(pins)),
        r(Method::POST, "/api/v1/pins/{cid}", post(pin)),
        r(Method::DELETE, "/api/v1/pins/{cid}", delete(unpin)),
        r(Method::POST, "/api/v1/gc", post(gc)),
        r(Method::POST, "/api/v1/store/verify", post(store_verify)),
        r(Method::GET, "/api/v1/state/{cid}", get(state::listing)),
        r(Method::GET, "/api/v1/state/{cid}/value", get(state::value)),
        r(Method::GET, "/api/v1/state/{cid}/diff", get(state::diff)),
        r(
            Method::POST,
            "/api/v1/jobs",
            post(submit).layer(json_limit()),
        ),
        r(Method::GET, "/api/v1/jobs", get(list_jobs)),
        r(Method::GET, "/api/v1/jobs/{id}", get(job_status)),
        r(Method::GET, "/api/v1/jobs/{id}/receipt", get(job_receipt)),
        r(
            Method::GET,
            "/api/v1/jobs/{id}/result",
            get(job_json::result),
        ),
        r(Method::GET, "/api/v1/submitted/{id}", get(submitted)),
        r(Method::GET, "/api/v1/ledger", get(ledger::totals)),
        r(Method::GET, "/api/v1/ledger/export", get(ledger::export)),
        r(Method::GET, "/api/v1/ledger/entries", get(ledger::entries)),
        r(Method::GET, "/api/v1/worker", get(worker::standing)),
        r(
            Method::PATCH,
            "/api/v1/worker",
            patch(worker::change).layer(json_limit()),
        ),
        r(Method::POST, "/api/v1/worker/pause", post(worker::pause)),
        r(Method::POST, "/api/v1/worker/resume", post(worker::resume)),
        r(Method::GET, "/metrics", get(metrics)),
    ]
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `work` within `deadline`, or a timeout error.
async fn within<T>(
    deadline: Duration,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(deadline, work).await.map_err(|_| {
        ApiError::new(
            ErrorCode::Timeout,
            format!("no answer within {}", humantime::format_duration(deadline)),
        )
    })?
}

async fn id(State(s): State<ApiState>) -> ApiResult<IdAnswer> {
    let listen = s.node.listen_addrs().await.map_err(|e| unavailable(&e))?;
    let nat = s
        .node
        .network()
        .nat_status()
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Json(IdAnswer {
        peer_id: s.node.peer_id(),
        listen,
        reachability: nat.reachability,
        dht_server: nat.dht_server,
        external: nat.external,
        relays: nat.relays,
    }))
}

/// How long `swarm/connect` waits for the connection and identify.
const CONNECT_DEADLINE: Duration = Duration::from_secs(15);

async fn connect(State(s): State<ApiState>, Q(query): Q<ConnectQuery>) -> ApiResult<ConnectAnswer> {
    let Some(libp2p::multiaddr::Protocol::P2p(peer)) = query.addr.iter().last() else {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("addr: {} does not end in /p2p/PEERID", query.addr),
        ));
    };
    let network = s.node.network();
    network
        .dial(query.addr.clone())
        .await
        .map_err(|e| unavailable(&e))?;
    within(CONNECT_DEADLINE, async {
        loop {
            let nat = network.nat_status().await.map_err(|e| unavailable(&e))?;
            let connections: Vec<_> = nat
                .connections
                .into_iter()
                .filter(|c| c.peer == peer)
                .collect();
            // Connected, and identify has told what it speaks.
            if connections.iter().any(|c| !c.protocols.is_empty()) {
                return Ok(Json(ConnectAnswer { peer, connections }));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn peers(State(s): State<ApiState>, Q(query): Q<PeersQuery>) -> ApiResult<PeersAnswer> {
    let network = s.node.network();
    if let Some(n) = query.wait {
        within(REQUEST_DEADLINE, async {
            network.wait_dht_ready(n).await.map_err(|e| unavailable(&e))
        })
        .await?;
    }
    let peers = network.routing_peers().await.map_err(|e| unavailable(&e))?;
    let nat = network.nat_status().await.map_err(|e| unavailable(&e))?;
    Ok(Json(PeersAnswer {
        peers,
        reachability: nat.reachability,
        connections: nat.connections,
        dht: network.dht_state(),
    }))
}

async fn add(State(s): State<ApiState>, Q(query): Q<AddQuery>, body: Body) -> ApiResult<AddAnswer> {
    s.node
        .store()
        .check_room()
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, error_line(&e)))?;
    // An upload that stops sending is ended: it must not hold `gc` (which
    // waits for uploads under way) for as long as its client idles.
    let chunks = futures::stream::unfold(Some(body.into_data_stream()), |data| async move {
        let mut data = data?;
        match tokio::time::timeout(UPLOAD_IDLE, data.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(data))),
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the upload sent nothing for {}s", UPLOAD_IDLE.as_secs()),
                )),
                None,
            )),
        }
    });
    let reader = StreamReader::new(Box::pin(chunks));
    let store = s.node.store().clone();
    // `gc` waits until the upload's root is pinned (or the add is over).
    let writing = store.writing().await;
    let (root, size) = tokio::task::spawn_blocking(move || {
        let mut counted = Counted {
            inner: std::io::Read::take(SyncIoBridge::new(reader), MAX_UPLOAD + 1),
            n: 0,
        };
        let root = match query.format {
            AddFormat::File => {
                files::add_reader_blocking(&store, &mut counted, std::path::Path::new("upload"))
            }
            AddFormat::Tar => files::add_tar_blocking(&store, &mut counted),
        };
        // What the import left unread (a tar's padding after its end, or
        // the rest of one refused part way) is read and dropped, within the
        // upload cap and its idle deadline: a connection closed with bytes
        // unread is reset, and the client would see that, not the answer.
        let _ = std::io::copy(&mut counted, &mut std::io::sink());
        (root, counted.n)
    })
    .await
    .map_err(|e| internal(&e))?;
    if size > MAX_UPLOAD {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("uploads are at most {MAX_UPLOAD} bytes"),
        ));
    }
    let root = root.map_err(|e| ApiError::new(ErrorCode::BadRequest, error_line(&e)))?;
    if query.pin {
        s.node
            .store()
            .pin(&root.cid)
            .await
            .map_err(|e| internal(&e))?;
        drop(writing);
        s.node
            .pin_and_provide(root.cid)
            .await
            .map_err(|e| internal(&e))?;
    }
    Ok(Json(AddAnswer {
        cid: root.cid,
        size,
    }))
}

/// A reader that counts what passes.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Fetches `cid` from the network unless the store has it.
async fn ensure_local(s: &ApiState, cid: Cid) -> Result<(), ApiError> {
    let (network, store) = (s.node.network(), s.node.store());
    if store.has(&cid).await.map_err(|e| internal(&e))? {
        return Ok(());
    }
    within(FETCH_DEADLINE, async {
        blocks::fetch(network, store, cid, FetchOptions::default(), |_| {})
            .await
            .map(|_| store.hold_for([cid], FETCHED_HOLD))
            .map_err(|e| ApiError::new(ErrorCode::NotFound, error_line(&e)))
    })
    .await
}

/// Streams what a blocking `export` writes as the response body. A client
/// that goes away breaks the pipe, which ends the export.
fn piped<E: std::error::Error>(
    content_type: &'static str,
    export: impl FnOnce(&mut SyncIoBridge<tokio::io::DuplexStream>) -> Result<(), E> + Send + 'static,
) -> Response {
    let (write, read) = tokio::io::duplex(PIPE_BYTES);
    tokio::task::spawn_blocking(move || {
        let mut out = SyncIoBridge::new(write);
        if let Err(e) = export(&mut out) {
            debug!(error = %error_line(&e), "export for an API client ended");
        }
    });
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(ReaderStream::new(read)),
    )
        .into_response()
}

async fn cat(State(s): State<ApiState>, CidPath(cid): CidPath) -> Result<Response, ApiError> {
    ensure_local(&s, cid).await?;
    // A directory is an error before any byte is sent.
    let store = s.node.store().clone();
    let root = store.get(&cid).await.map_err(|e| internal(&e))?;
    if let Some(data) = root
        && let Ok(
            phase_protocol::unixfs::Node::Directory(_) | phase_protocol::unixfs::Node::Shard(_),
        ) = phase_protocol::unixfs::decode(&cid, &data)
    {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("{cid} is a directory: get it with /api/v1/get/{cid}"),
        ));
    }
    // Content that is not pinned here (not the owner's own import) is
    // read under the untrusted limits: a file of a few blocks can claim
    // terabytes by linking one chunk over and over.
    if !store.pins().await.map_err(|e| internal(&e))?.contains(&cid) {
        let limit = untrusted::Limit {
            bytes: UNTRUSTED_CAT_BYTES,
            entries: untrusted::MAX_ENTRIES,
        };
        let checked = store.clone();
        tokio::task::spawn_blocking(move || untrusted::check_tree_blocking(&checked, &cid, limit))
            .await
            .map_err(|e| internal(&e))?
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, error_line(&e)))?;
    }
    Ok(piped("application/octet-stream", move |out| {
        files::cat_blocking(&store, &cid, out).map(|_| ())
    }))
}

async fn get_car(State(s): State<ApiState>, CidPath(cid): CidPath) -> Result<Response, ApiError> {
    ensure_local(&s, cid).await?;
    let store = s.node.store().clone();
    Ok(piped("application/vnd.ipld.car", move |out| {
        car::write_blocking(&store, &cid, out).map(|_| ())
    }))
}

/// One NDJSON line.
fn line<P: Serialize, R: Serialize>(l: &StreamLine<P, R>) -> Result<Bytes, std::io::Error> {
    let mut bytes = serde_json::to_vec(l).expect("answers always serialize");
    bytes.push(b'\n');
    Ok(Bytes::from(bytes))
}

/// Streams `progress` as NDJSON lines while `work` runs, then its result.
/// Dropping the body (the client went away) drops `work`.
fn ndjson<P, R>(
    progress: mpsc::Receiver<P>,
    work: impl Future<Output = Result<R, ApiError>> + Send + 'static,
) -> Response
where
    P: Serialize + Send + 'static,
    R: Serialize + Send + 'static,
{
    let state = Some((Box::pin(work), progress));
    let stream = futures::stream::unfold(state, |state| async move {
        let (mut work, mut progress) = state?;
        tokio::select! {
            biased;
            Some(p) = progress.recv() => {
                Some((line::<P, R>(&StreamLine::Progress(p)), Some((work, progress))))
            }
            result = &mut work => {
                let last = match result {
                    Ok(r) => StreamLine::Result(r),
                    Err(e) => StreamLine::Error(e),
                };
                Some((line::<P, R>(&last), None))
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn fetch(State(s): State<ApiState>, CidPath(cid): CidPath) -> Response {
    let (tx, rx) = mpsc::channel(PROGRESS_QUEUE);
    let work = async move {
        within(FETCH_DEADLINE, async {
            let blocks = blocks::fetch(
                s.node.network(),
                s.node.store(),
                cid,
                FetchOptions::default(),
                |p| {
                    let _ = tx.try_send(p);
                },
            )
            .await
            .map_err(|e| ApiError::new(ErrorCode::NotFound, error_line(&e)))?;
            // The client reads it next, from the store: gc keeps it a
            // while, and what the daemon keeps in its database (small
            // blocks) is written out where a command can read it.
            s.node.store().hold_for([cid], FETCHED_HOLD);
            s.node
                .store()
                .export_inline(cid)
                .await
                .map_err(|e| internal(&e))?;
            Ok(FetchAnswer { blocks })
        })
        .await
    };
    ndjson(rx, work)
}

async fn pins(State(s): State<ApiState>) -> ApiResult<PinsAnswer> {
    let pins = s.node.store().pins().await.map_err(|e| internal(&e))?;
    Ok(Json(PinsAnswer { pins }))
}

async fn pin(State(s): State<ApiState>, CidPath(cid): CidPath) -> ApiResult<PinAnswer> {
    within(REQUEST_DEADLINE, async {
        s.node.pin_and_provide(cid).await.map_err(|e| internal(&e))
    })
    .await?;
    Ok(Json(PinAnswer { cid }))
}

async fn unpin(State(s): State<ApiState>, CidPath(cid): CidPath) -> ApiResult<PinAnswer> {
    match s.node.store().unpin(&cid).await {
        Ok(true) => Ok(Json(PinAnswer { cid })),
        Ok(false) => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("{cid} is not pinned"),
        )),
        Err(e) => Err(internal(&e)),
    }
}

async fn gc(State(s): State<ApiState>) -> ApiResult<GcAnswer> {
    let removed = s.node.store().gc().await.map_err(|e| internal(&e))?;
    Ok(Json(GcAnswer { removed }))
}

/// `phase-node store verify` beside a daemon: only the daemon can read
/// the blocks it keeps in its state database.
async fn store_verify(State(s): State<ApiState>) -> ApiResult<crate::store::Verified> {
    let store = s.node.store();
    let pins = store.pins().await.map_err(|e| internal(&e))?;
    let found = store.verify(pins).await.map_err(|e| internal(&e))?;
    Ok(Json(found))
}

async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    // The ledger's gauges count since the ledger began: read from it now.
    let summary = within(REQUEST_DEADLINE, async {
        s.node.ledger().await.map_err(|e| internal(&e))
    })
    .await?;
    let t = summary.total;
    s.node.metrics().ledger.set(crate::metrics::LedgerGauges {
        worked: (t.worked.jobs, t.worked.fuel),
        received: (t.received.jobs, t.received.fuel),
        audits_passed: t.audits_passed,
        audits_failed: t.audits_failed,
    });
    let text = s.node.metrics().encode().map_err(|e| internal(&e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The (method, path) pairs `node/openapi.json` documents.
    pub(crate) fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../openapi.json")).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut pairs = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                pairs.insert((method.to_uppercase(), path.clone()));
            }
        }
        pairs
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let served: BTreeSet<(String, String)> = routes()
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let missing: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "served but not in openapi.json: {undocumented:?}"
        );
        assert!(
            missing.is_empty(),
            "in openapi.json but not served: {missing:?}"
        );
    }
}
