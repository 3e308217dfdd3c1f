//! The API's request and answer types, shared by the server, the CLI's
//! client and the tests. PeerIds, CIDs and multiaddrs stay typed: they are
//! strings only in the JSON itself.

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use phase_protocol::job::{JobId, JobState};
use phase_protocol::serde_helpers::cid as cid_string;
use phase_protocol::{Cid, SignedReceipt};

use crate::network::{Connection, Reachability};
use crate::requester::{Stage, SubmitReport};
use crate::store::ledger::Summary;

/// What went wrong, as every failed request answers it:
/// `{"error": {"code": "...", "message": "one line"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The kind of failure; it also picks the HTTP status.
    pub code: ErrorCode,
    /// One line for people.
    pub message: String,
}

impl ApiError {
    /// An error of `code` saying `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Kinds of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed (400); the message names the field.
    BadRequest,
    /// A bearer token is missing or wrong (401).
    Unauthorized,
    /// No such route, job, block or pin (404).
    NotFound,
    /// The body is larger than the route allows (413).
    TooLarge,
    /// The request took longer than its deadline (504).
    Timeout,
    /// The node cannot do it now: shutting down, no peers (503).
    Unavailable,
    /// Something failed inside the node (500).
    Internal,
}

/// The body of an error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// One line of a streamed (NDJSON) answer: progress lines, then exactly one
/// `result` or `error` line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamLine<P, R> {
    /// How the work is going.
    Progress(P),
    /// The work's result; the last line.
    Result(R),
    /// Why the work failed; the last line.
    Error(ApiError),
}

/// `GET /api/v1/id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdAnswer {
    /// The node's PeerId.
    pub peer_id: PeerId,
    /// Its listen addresses, each ending in `/p2p/PEERID`.
    pub listen: Vec<Multiaddr>,
    /// `public`, `private` or `unknown`.
    pub reachability: Reachability,
    /// Whether it answers DHT queries now.
    pub dht_server: bool,
    /// Confirmed external addresses (relayed `/p2p-circuit` ones included).
    pub external: Vec<Multiaddr>,
    /// Relays it holds a reservation on.
    pub relays: Vec<PeerId>,
}

/// Query of `GET /api/v1/peers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersQuery {
    /// Wait (bounded) until the node is part of the DHT (connected to its
    /// bootstrap, a bootstrap query completed) with at least this many
    /// peers (at least 1) in its routing table.
    pub wait: Option<usize>,
}

/// `GET /api/v1/peers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersAnswer {
    /// Peers in the Kademlia routing table.
    pub peers: Vec<PeerId>,
    /// This node's reachability.
    pub reachability: Reachability,
    /// Every open connection, direct or relayed, with the peer's address.
    pub connections: Vec<Connection>,
    /// The node's place in the DHT.
    pub dht: crate::network::DhtState,
}

/// `GET /api/v1/dht/peer/{peer}`: a Kademlia lookup of a PeerId.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindPeerAnswer {
    /// Whom the lookup looked for.
    pub peer: PeerId,
    /// Whether the lookup found it.
    pub found: bool,
    /// Its addresses, as the DHT knows them.
    pub addrs: Vec<Multiaddr>,
    /// How long the lookup took.
    pub millis: u64,
}

/// Query of `GET /api/v1/dht/providers`: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersQuery {
    /// Providers of this content root.
    pub cid: Option<String>,
    /// Workers that advertise this capability (e.g. `wasi-p1`).
    pub capability: Option<String>,
}

/// `GET /api/v1/dht/providers`: a Kademlia provider lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvidersAnswer {
    /// The providers found (this node included if it provides the key).
    pub providers: Vec<PeerId>,
    /// How long the lookup took (a lookup of the same key in the last few
    /// seconds is answered from memory).
    pub millis: u64,
}

/// Query of `POST /api/v1/swarm/connect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectQuery {
    /// Whom to dial, ending in `/p2p/PEERID`.
    pub addr: Multiaddr,
}

/// `POST /api/v1/swarm/connect`: the connection made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectAnswer {
    /// The peer.
    pub peer: PeerId,
    /// The connection(s) to it now, with the protocols it speaks once
    /// identify has told.
    pub connections: Vec<Connection>,
}

/// Query of `POST /api/v1/add`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddQuery {
    /// Pin the root (default) and announce it.
    #[serde(default = "yes")]
    pub pin: bool,
    /// What the body is: one file (the default), or a tar archive made a
    /// directory.
    #[serde(default)]
    pub format: AddFormat,
}

/// The body of `POST /api/v1/add`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddFormat {
    /// The bytes of one file.
    #[default]
    File,
    /// A tar archive (ustar, GNU or pax) of regular files and directories:
    /// imported as a UnixFS directory (a job's input).
    Tar,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/add`: the uploaded file's root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddAnswer {
    /// Its CID, as `ipfs add --cid-version=1` makes it.
    #[serde(with = "cid_string")]
    pub cid: Cid,
    /// Bytes uploaded.
    pub size: u64,
}

/// `POST /api/v1/fetch/{cid}`: the last line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchAnswer {
    /// Blocks fetched (the store had the others).
    pub blocks: usize,
}

/// `GET /api/v1/pins`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinsAnswer {
    /// Roots pinned by a user.
    #[serde(with = "cids")]
    pub pins: Vec<Cid>,
}

/// `POST` and `DELETE /api/v1/pins/{cid}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinAnswer {
    /// The root.
    #[serde(with = "cid_string")]
    pub cid: Cid,
}

/// `POST /api/v1/gc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcAnswer {
    /// Blocks removed.
    pub removed: usize,
}

/// The job `POST /api/v1/jobs` submits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobRef {
    /// The job id: the CID of a spec block in the daemon's store.
    Id(String),
    /// The job in JSON: the fields of `job.json`, with CIDs (of blocks in
    /// the daemon's store, uploaded with `POST /api/v1/add`) for the
    /// module, stdin and input; stdin may be `{"text": "…"}`. The daemon
    /// builds the canonical spec.
    File(serde_json::Map<String, serde_json::Value>),
}

/// `POST /api/v1/jobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The job: its id, or the job in JSON.
    pub job: JobRef,
    /// Stream stages, then the verified report (NDJSON); `false`: answer
    /// `202 {"job": ID}` at once and go on in the background
    /// (`GET /api/v1/jobs/{id}/result` says when it is done).
    #[serde(default = "yes")]
    pub wait: bool,
    /// Only this worker.
    #[serde(default)]
    pub worker: Option<PeerId>,
    /// Distinct workers to run it on.
    #[serde(default = "one")]
    pub replicas: usize,
    /// Workers to try per replica.
    #[serde(default = "five")]
    pub attempts: u32,
    /// Give up after this long, e.g. `"5m"`.
    #[serde(with = "humantime_serde")]
    pub timeout: std::time::Duration,
    /// The chance (0 to 1) that the job, if deterministic, is audited on a
    /// second worker; absent: the daemon's `[requester] audit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<f64>,
    /// Audit the job, if deterministic, by rerunning it on this node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit_local: bool,
}

fn one() -> usize {
    1
}

fn five() -> u32 {
    5
}

/// A line of `POST /api/v1/jobs`'s answer.
pub type SubmitLine = StreamLine<Stage, SubmitReport>;

/// A line of `POST /api/v1/fetch/{cid}`'s answer.
pub type FetchLine = StreamLine<crate::blocks::Progress, FetchAnswer>;

/// Query of the job routes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// Ask this worker (else: this node's own worker).
    pub worker: Option<PeerId>,
}

/// `GET /api/v1/jobs/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatusAnswer {
    /// The job.
    pub job: JobId,
    /// Where it is.
    pub state: JobState,
}

/// `GET /api/v1/jobs/{id}/receipt`: the receipt (also put in the store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptAnswer {
    /// The receipt's CID.
    #[serde(with = "cid_string")]
    pub cid: Cid,
    /// The signed receipt (its signature checked as it is read).
    pub receipt: SignedReceipt,
}

/// `GET /api/v1/jobs`: the jobs this node submitted and the jobs it ran,
/// newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsAnswer {
    /// One entry per job and role.
    pub jobs: Vec<JobEntry>,
}

/// Which side of a job this node was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobRole {
    /// This node submitted it.
    Submitted,
    /// This node's worker ran it.
    Ran,
}

/// One job in [`JobsAnswer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEntry {
    /// The job.
    pub job: JobId,
    /// Submitted or ran.
    pub role: JobRole,
    /// One word: `submitting`, `running`, `done`, `failed` (submitted);
    /// `queued`, `fetching`, `running`, `done`, `failed`, `interrupted` (ran).
    pub state: String,
    /// One line about it: the run's status, or why it failed.
    pub detail: String,
    /// The workers that accepted it (submitted), or its requester (ran).
    pub peers: Vec<PeerId>,
    /// The receipt, once there is one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "phase_protocol::serde_helpers::opt_cid"
    )]
    pub receipt: Option<Cid>,
    /// When its record was last written, ms since the Unix epoch.
    pub updated_ms: u64,
}

impl JobsAnswer {
    /// Reads both lists from `store`'s state database.
    ///
    /// # Errors
    /// The state database cannot be read.
    pub async fn read(
        store: &crate::store::BlockStore,
    ) -> Result<Self, crate::requester::RecordError> {
        use crate::requester::Progress;
        let mut jobs: Vec<JobEntry> = crate::requester::Records::new(store.clone())
            .list()
            .await?
            .into_iter()
            .map(|r| {
                let (state, detail, receipt) = match &r.progress {
                    Progress::Submitting => {
                        ("submitting", "no worker has accepted it yet".into(), None)
                    }
                    Progress::Running => ("running", "waiting for the receipt".into(), None),
                    Progress::Done { report } => {
                        let first = report.results.first();
                        (
                            "done",
                            first.map_or_else(String::new, |f| {
                                f.receipt.receipt().status.to_string()
                            }),
                            first.map(|f| f.receipt.cid()),
                        )
                    }
                    Progress::Failed { error } => ("failed", error.clone(), None),
                };
                JobEntry {
                    job: r.job,
                    role: JobRole::Submitted,
                    state: state.into(),
                    detail,
                    peers: r.accepted.clone(),
                    receipt,
                    updated_ms: r.updated_ms,
                }
            })
            .collect();
        let store = store.clone();
        let ran = tokio::task::spawn_blocking(move || crate::worker::ran_blocking(&store))
            .await
            .map_err(crate::store::StoreError::from)??;
        jobs.extend(ran.into_iter().map(|r| {
            let (state, detail, receipt) = match r.state {
                JobState::Queued => ("queued", String::new(), None),
                JobState::Fetching => ("fetching", "fetching the inputs".into(), None),
                JobState::Running => ("running", String::new(), None),
                JobState::Done { status, receipt } => ("done", status.to_string(), Some(receipt)),
                JobState::Failed { message } => ("failed", message, None),
                JobState::ModuleTooComplex { message } => {
                    ("failed", format!("module too complex: {message}"), None)
                }
                JobState::Interrupted => (
                    "interrupted",
                    "the worker stopped while it ran".into(),
                    None,
                ),
            };
            JobEntry {
                job: r.id,
                role: JobRole::Ran,
                state: state.into(),
                detail,
                peers: vec![r.requester],
                receipt,
                updated_ms: r.updated_ms,
            }
        }));
        jobs.sort_by_key(|j| std::cmp::Reverse(j.updated_ms));
        Ok(Self { jobs })
    }
}

/// A list of CIDs as strings in JSON.
mod cids {
    use phase_protocol::Cid;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct One(#[serde(with = "phase_protocol::serde_helpers::cid")] Cid);

    pub(super) fn serialize<S: Serializer>(cids: &[Cid], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(cids.iter().map(|c| One(*c)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cid>, D::Error> {
        Ok(Vec::<One>::deserialize(d)?
            .into_iter()
            .map(|o| o.0)
            .collect())
    }
}

/// `GET /api/v1/ledger`: the work ledger's totals (what `phase-node
/// ledger` prints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerAnswer {
    /// Whose ledger it is.
    pub node: PeerId,
    /// Its entries and totals.
    #[serde(flatten)]
    pub ledger: Summary,
}

/// `GET /api/v1/ledger/entries`: the newest entries of the work ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntries {
    /// Whose ledger it is.
    pub node: PeerId,
    /// Newest first.
    pub entries: Vec<phase_protocol::ledger::Entry>,
}

/// `POST /api/v1/jobs` with `"wait": false`: the job, recorded and under
/// way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedAnswer {
    /// The job id.
    pub job: JobId,
}

/// Where a submitted job is, in [`JobResultAnswer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultState {
    /// Recorded; no worker has accepted it yet.
    Submitting,
    /// A worker runs it.
    Running,
    /// Its receipt verified and its result fetched.
    Done,
    /// The submission failed (`error` says why).
    Failed,
}

/// `GET /api/v1/jobs/{id}/result`: a job this node submitted, and once it
/// is done what it gave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobResultAnswer {
    /// The job id.
    pub job: JobId,
    /// Where it is.
    pub state: ResultState,
    /// Why the submission failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it gave, once done.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Box<FinishedJob>>,
}

/// What a finished job gave, for clients: the outputs inline (up to
/// [`MAX_INLINE_OUTPUT`] each), the signed receipt, and what a client needs
/// to check its signature itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinishedJob {
    /// The worker that ran it.
    pub worker: PeerId,
    /// How it ended, one line (`exited with code 0`).
    pub status: String,
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// The result package (stdout, stderr, output/).
    #[serde(with = "cid_string")]
    pub result: Cid,
    /// stdout (as UTF-8, invalid sequences replaced), its first
    /// [`MAX_INLINE_OUTPUT`] bytes.
    pub stdout: String,
    /// stdout is longer than what is inline (`GET /api/v1/cat/{result}/…`).
    pub stdout_truncated: bool,
    /// stderr, as stdout.
    pub stderr: String,
    /// stderr is longer than what is inline.
    pub stderr_truncated: bool,
    /// The signed receipt's CID.
    #[serde(with = "cid_string")]
    pub receipt_cid: Cid,
    /// The signed receipt (`{"receipt": {…}, "signature": "hex"}`).
    pub receipt: SignedReceipt,
    /// The exact bytes the worker signed (`phase-receipt-v1` then the
    /// receipt's canonical DAG-CBOR), base64.
    pub signed_bytes: String,
    /// The ed25519 signature over `signed_bytes`, base64.
    pub signature: String,
    /// The worker's ed25519 public key (32 bytes, the one its PeerId
    /// holds), base64.
    pub public_key: String,
}

/// Most bytes of stdout and of stderr a job's result answer carries inline.
pub const MAX_INLINE_OUTPUT: u64 = 1 << 20;
