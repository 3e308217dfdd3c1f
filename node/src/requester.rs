//! The requester side of `/phase/job/1.0.0`: find workers, submit, wait,
//! verify, fetch the result.
//!
//! - Workers are found through the DHT (provider records on capability
//!   keys), asked what they offer (limits, free slots) and ranked by free
//!   slots, then round-trip time.
//! - A submission is acknowledged at once; the receipt arrives later,
//!   delivered by the worker ([`Deliveries`]) or fetched by job id when a
//!   status poll says the job is done. Jobs that run longer than one request
//!   timeout complete this way.
//! - A worker that is busy is asked again later (backing off); one that
//!   rejects, stops answering or forgets the job is dropped and the job goes
//!   to the next candidate, at most [`SubmitOptions::attempts`] times. A job
//!   that the worker reports `failed` (its inputs could not be had, its
//!   module is not runnable) is not retried: another worker would fail too.
//! - Every receipt is checked: signature, signer = the worker it was
//!   submitted to, and that it is about this job, this requester and these
//!   inputs. With several replicas the result CIDs are compared.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use phase_protocol::job::{JobId, JobRequest, JobResponse, JobState, Rejection, WorkerInfo};
use phase_protocol::{Capability, Cid, JobSpec, SignedReceipt};

use crate::fetch::{self, FetchError};
use crate::network::{NetworkClient, NetworkError};
use crate::store::BlockStore;

/// Deadline of one status or capability query.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(10);
/// Status queries in a row a worker may fail before the job is moved.
pub const MAX_MISSED_POLLS: u32 = 3;
/// Receipts awaited at once; past this, jobs still complete by polling.
pub const MAX_PENDING_DELIVERIES: usize = 10_000;
/// Candidates asked for their capabilities at most: the DHT's providers
/// first, topped up from the routing table (a provider lookup can end
/// before every provider has answered, and in a small network the routing
/// table holds everyone).
pub const MAX_CANDIDATES: usize = 32;
/// Longest pause between asking busy workers again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How to submit a job.
#[derive(Clone, Debug)]
pub struct SubmitOptions {
    /// Submit to this worker only.
    pub worker: Option<PeerId>,
    /// Distinct workers to run the job on (deterministic jobs compare results).
    pub replicas: usize,
    /// Workers to try per replica before giving up (busy answers do not
    /// count; the caller's overall deadline bounds those).
    pub attempts: u32,
    /// How often to ask a worker how the job is going.
    pub poll_interval: Duration,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        Self {
            worker: None,
            replicas: 1,
            attempts: 5,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Where a submission is, for progress displays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Looking up workers in the DHT.
    FindingWorkers,
    /// Workers found and ranked.
    FoundWorkers {
        /// How many can run the job.
        count: usize,
    },
    /// Submitted to a worker; it fetches the inputs from us (uploading).
    Submitted {
        /// The worker.
        worker: String,
    },
    /// The worker reports progress.
    Worker {
        /// The worker.
        worker: String,
        /// `queued`, `fetching` or `running`.
        state: String,
    },
    /// An attempt failed; trying another worker.
    Retrying {
        /// The worker that failed.
        worker: String,
        /// Why.
        reason: String,
    },
    /// Receipt verified; fetching the result.
    FetchingResult {
        /// The worker.
        worker: String,
    },
}

/// One run of the job, verified.
#[derive(Clone, Debug)]
pub struct ReplicaResult {
    /// The worker that ran it and signed the receipt.
    pub worker: PeerId,
    /// Its verified receipt.
    pub receipt: SignedReceipt,
}

/// A failed attempt, for the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    /// The worker.
    pub worker: String,
    /// What went wrong.
    pub error: String,
}

/// Whether replicas agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Agreement {
    /// All result CIDs are equal.
    pub agreed: bool,
    /// The result most replicas produced.
    pub result: String,
    /// Workers whose result differs from it.
    pub dissenters: Vec<String>,
}

/// What a submission produced.
#[derive(Clone, Debug)]
pub struct SubmitReport {
    /// The job id.
    pub job: JobId,
    /// One verified result per replica.
    pub results: Vec<ReplicaResult>,
    /// Attempts that failed on the way.
    pub failed_attempts: Vec<Attempt>,
    /// With more than one replica: whether they agree.
    pub agreement: Option<Agreement>,
}

impl SubmitReport {
    /// The report as JSON for people and scripts: the job id, each
    /// replica's worker, receipt CID, result CID and verified receipt, the
    /// failed attempts and, with replicas, the agreement.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let results: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|r| {
                let receipt: serde_json::Value =
                    serde_json::from_str(&r.receipt.to_json()).expect("a receipt's JSON parses");
                serde_json::json!({
                    "worker": r.worker.to_string(),
                    "receipt_cid": r.receipt.cid().to_string(),
                    "result": r.receipt.receipt().result.to_string(),
                    "status": r.receipt.receipt().status.to_string(),
                    "receipt": receipt,
                })
            })
            .collect();
        serde_json::json!({
            "job": self.job.to_string(),
            "results": results,
            "failed_attempts": self.failed_attempts,
            "agreement": self.agreement,
        })
    }
}

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// No worker advertises what the job needs.
    #[error("no worker found that can run the job (looked for `{capability}`)")]
    NoWorkers {
        /// The capability looked up.
        capability: Capability,
    },
    /// Fewer workers than replicas.
    #[error("found {found} workers that can run the job, but {replicas} replicas were asked for")]
    TooFewWorkers {
        /// Workers found.
        found: usize,
        /// Replicas asked for.
        replicas: usize,
    },
    /// The worker could not run the job (no run happened, no receipt).
    #[error("worker {worker} could not run the job: {message}")]
    Failed {
        /// The worker.
        worker: PeerId,
        /// Its reason.
        message: String,
    },
    /// Every attempt failed.
    #[error("gave up after {attempts} failed attempts; the last: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: usize,
        /// The last failure.
        last: String,
    },
    /// The result could not be fetched.
    #[error("cannot fetch the result {result}")]
    Fetch {
        /// The result CID.
        result: Cid,
        /// Why.
        #[source]
        source: FetchError,
    },
    /// The network is gone.
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// Receipts awaited from workers: the node routes each delivered receipt
/// here. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Deliveries {
    waiting: Arc<Mutex<Awaited>>,
}

/// Receipts awaited, by job and worker.
type Awaited = HashMap<(JobId, PeerId), oneshot::Sender<SignedReceipt>>;

impl Deliveries {
    fn lock(&self) -> std::sync::MutexGuard<'_, Awaited> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for `worker`'s receipt of `job`. `None` when too many are awaited.
    fn expect(&self, job: JobId, worker: PeerId) -> Option<oneshot::Receiver<SignedReceipt>> {
        let mut waiting = self.lock();
        waiting.retain(|_, tx| !tx.is_closed());
        if waiting.len() >= MAX_PENDING_DELIVERIES {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        waiting.insert((job, worker), tx);
        Some(rx)
    }

    /// A receipt `peer` delivered (already signature-checked as it decoded).
    /// Only a receipt signed by the peer that sends it, for a job we await
    /// from that peer, is taken.
    #[must_use]
    pub fn deliver(&self, peer: PeerId, receipt: SignedReceipt) -> JobResponse {
        let job = receipt.receipt().job;
        if receipt.receipt().worker != peer {
            warn!(%peer, "delivered receipt signed by another peer; ignored");
        } else if let Some(tx) = self.lock().remove(&(job, peer)) {
            let _ = tx.send(receipt);
        } else {
            debug!(%peer, %job, "receipt for a job not awaited");
        }
        JobResponse::Delivered
    }
}

/// The workers not yet taken by a replica, in order of preference.
#[derive(Debug)]
struct Pool {
    candidates: VecDeque<PeerId>,
}

impl Pool {
    fn take(&mut self) -> Option<PeerId> {
        self.candidates.pop_front()
    }

    /// Gives a worker back to be asked again later (`retry`), or drops it.
    fn release(&mut self, peer: PeerId, retry: bool) {
        if retry {
            self.candidates.push_back(peer);
        }
    }
}

/// The requester: submits jobs through a node's network and store.
#[derive(Clone, Debug)]
pub struct Requester {
    network: NetworkClient,
    store: BlockStore,
    deliveries: Deliveries,
}

/// How waiting on a worker ended without a receipt.
enum WaitError {
    /// The worker says the job failed: final.
    Failed(String),
    /// The worker stopped answering or forgot the job: try another.
    Lost(String),
}

impl Requester {
    /// A requester over a node's network, store and delivery routing.
    #[must_use]
    pub fn new(network: NetworkClient, store: BlockStore, deliveries: Deliveries) -> Self {
        Self {
            network,
            store,
            deliveries,
        }
    }

    /// The capability looked up in the DHT to find workers for `spec`.
    #[must_use]
    pub fn search_capability(spec: &JobSpec) -> Capability {
        let name = if spec.deterministic {
            Capability::DETERMINISTIC
        } else {
            Capability::WASI_P1
        };
        spec.capabilities
            .iter()
            .next()
            .cloned()
            .unwrap_or_else(|| name.parse().expect("built-in capability names are valid"))
    }

    /// Workers able to run `spec`, best first (most free slots, then
    /// lowest round-trip time): the providers of the job's capability key,
    /// topped up from the routing table to [`MAX_CANDIDATES`], each asked
    /// what it offers.
    ///
    /// # Errors
    /// When the DHT lookup fails, or nobody fits.
    pub async fn find_workers(&self, spec: &JobSpec) -> Result<Vec<PeerId>, SubmitError> {
        let capability = Self::search_capability(spec);
        let me = self.network.peer_id();
        let mut found: Vec<PeerId> = self
            .network
            .find_capability(&capability)
            .await?
            .into_iter()
            .filter(|p| *p != me)
            .collect();
        debug!(%capability, found = found.len(), "workers found in the DHT");
        for peer in self.network.routing_peers().await? {
            if found.len() >= MAX_CANDIDATES {
                break;
            }
            if !found.contains(&peer) {
                found.push(peer);
            }
        }
        let queries = found.into_iter().map(|peer| async move {
            let started = Instant::now();
            let answer = tokio::time::timeout(
                QUERY_DEADLINE,
                self.network.request_job(peer, JobRequest::Capabilities),
            )
            .await;
            match answer {
                Ok(Ok(JobResponse::Capabilities(info))) => Some((peer, info, started.elapsed())),
                other => {
                    debug!(%peer, ?other, "no capability answer");
                    None
                }
            }
        });
        let mut fit: Vec<(PeerId, WorkerInfo, Duration)> = futures::future::join_all(queries)
            .await
            .into_iter()
            .flatten()
            .filter(|(_, info, _)| fits(spec, info))
            .collect();
        fit.sort_by(|a, b| b.1.free_slots.cmp(&a.1.free_slots).then(a.2.cmp(&b.2)));
        if fit.is_empty() {
            return Err(SubmitError::NoWorkers { capability });
        }
        Ok(fit.into_iter().map(|(peer, _, _)| peer).collect())
    }

    /// Submits `spec` to `options.replicas` distinct workers, waits for
    /// their receipts, verifies them and fetches the results into the store.
    ///
    /// # Errors
    /// No (or too few) workers, the job failed on a worker, every attempt
    /// failed, or a result could not be fetched.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the job (workers still run it).
    pub async fn submit(
        &self,
        spec: &JobSpec,
        options: &SubmitOptions,
        progress: &(dyn Fn(Stage) + Send + Sync),
    ) -> Result<SubmitReport, SubmitError> {
        let job = spec.id();
        let replicas = options.replicas.max(1);
        let candidates = match options.worker {
            Some(worker) => vec![worker],
            None => {
                progress(Stage::FindingWorkers);
                self.find_workers(spec).await?
            }
        };
        progress(Stage::FoundWorkers {
            count: candidates.len(),
        });
        if candidates.len() < replicas {
            return Err(SubmitError::TooFewWorkers {
                found: candidates.len(),
                replicas,
            });
        }
        let pool = Mutex::new(Pool {
            candidates: candidates.into(),
        });
        let failed = Mutex::new(Vec::new());
        let runs =
            (0..replicas).map(|_| self.run_replica(spec, job, &pool, &failed, options, progress));
        let outcomes = futures::future::join_all(runs).await;
        let mut results = Vec::with_capacity(replicas);
        for outcome in outcomes {
            results.push(outcome?);
        }
        let agreement = (replicas > 1).then(|| agreement(&results));
        let failed_attempts = failed
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(SubmitReport {
            job,
            results,
            failed_attempts,
            agreement,
        })
    }

    async fn run_replica(
        &self,
        spec: &JobSpec,
        job: JobId,
        pool: &Mutex<Pool>,
        failed: &Mutex<Vec<Attempt>>,
        options: &SubmitOptions,
        progress: &(dyn Fn(Stage) + Send + Sync),
    ) -> Result<ReplicaResult, SubmitError> {
        let take = || {
            pool.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        };
        let mut failures = 0usize;
        let mut busy = 0u32;
        let mut last = String::from("no worker was free");
        loop {
            if failures >= options.attempts as usize {
                return Err(SubmitError::GaveUp {
                    attempts: failures,
                    last,
                });
            }
            let Some(worker) = take() else {
                return Err(SubmitError::GaveUp {
                    attempts: failures,
                    last,
                });
            };
            // Gives the worker back (busy) or records why it is dropped.
            let fail = |reason: String, retry: bool| {
                pool.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .release(worker, retry);
                if !retry {
                    warn!(%worker, %reason, "attempt failed; trying another worker");
                    progress(Stage::Retrying {
                        worker: worker.to_string(),
                        reason: reason.clone(),
                    });
                    failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(Attempt {
                            worker: worker.to_string(),
                            error: reason.clone(),
                        });
                }
                reason
            };
            let delivered = self.deliveries.expect(job, worker);
            let answer = self
                .network
                .request_job(worker, JobRequest::Submit(Box::new(spec.clone())))
                .await;
            let refused = match answer {
                Ok(JobResponse::Accepted(id)) if id == job => None,
                Ok(JobResponse::Rejected(Rejection::Busy)) => {
                    last = fail(format!("worker {worker} is busy"), true);
                    busy += 1;
                    tokio::time::sleep(backoff(busy)).await;
                    continue;
                }
                Ok(JobResponse::Rejected(rejection)) => {
                    Some(format!("worker {worker} rejected the job: {rejection}"))
                }
                Ok(other) => Some(format!(
                    "worker {worker} answered a submission with {other:?}"
                )),
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = refused {
                last = fail(reason, false);
                failures += 1;
                continue;
            }
            info!(%worker, %job, "job accepted");
            progress(Stage::Submitted {
                worker: worker.to_string(),
            });
            let receipt = match self.wait(job, worker, delivered, options, progress).await {
                Ok(receipt) => receipt,
                Err(WaitError::Failed(message)) => {
                    return Err(SubmitError::Failed { worker, message });
                }
                Err(WaitError::Lost(reason)) => {
                    last = fail(format!("worker {worker}: {reason}"), false);
                    failures += 1;
                    continue;
                }
            };
            if let Err(reason) = check_receipt(&receipt, worker, spec, self.network.peer_id()) {
                last = fail(
                    format!("receipt from worker {worker} rejected: {reason}"),
                    false,
                );
                failures += 1;
                continue;
            }
            progress(Stage::FetchingResult {
                worker: worker.to_string(),
            });
            let result = receipt.receipt().result;
            self.fetch_result(worker, spec, result)
                .await
                .map_err(|source| SubmitError::Fetch { result, source })?;
            let cid = receipt.cid();
            self.store
                .put(cid, bytes::Bytes::from(receipt.to_cbor()))
                .await
                .map_err(|e| SubmitError::Fetch {
                    result,
                    source: e.into(),
                })?;
            return Ok(ReplicaResult { worker, receipt });
        }
    }

    /// Waits for the receipt: delivered, or fetched once a poll says done.
    async fn wait(
        &self,
        job: JobId,
        worker: PeerId,
        delivered: Option<oneshot::Receiver<SignedReceipt>>,
        options: &SubmitOptions,
        progress: &(dyn Fn(Stage) + Send + Sync),
    ) -> Result<SignedReceipt, WaitError> {
        let mut delivered = delivered;
        let mut poll = tokio::time::interval(options.poll_interval);
        // A slow query must not be followed by a burst of catch-up polls.
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await; // the first tick is immediate; the job just started
        let mut missed = 0u32;
        let mut shown = String::new();
        loop {
            let receipt_in = async {
                match delivered.as_mut() {
                    Some(rx) => rx.await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                receipt = receipt_in => match receipt {
                    Some(receipt) => return Ok(receipt),
                    None => delivered = None,
                },
                _ = poll.tick() => {
                    match self.query(worker, JobRequest::Status(job)).await {
                        Some(JobResponse::Status { state: JobState::Done { .. }, .. }) => {
                            match self.query(worker, JobRequest::Receipt(job)).await {
                                Some(JobResponse::Receipt(r)) => return Ok(*r),
                                _ => missed += 1,
                            }
                        }
                        Some(JobResponse::Status { state: JobState::Failed { message }, .. }) => {
                            return Err(WaitError::Failed(message));
                        }
                        Some(JobResponse::Status { state, .. }) => {
                            missed = 0;
                            let name = match state {
                                JobState::Queued => "queued",
                                JobState::Fetching => "fetching",
                                _ => "running",
                            };
                            if name != shown {
                                shown = name.to_owned();
                                progress(Stage::Worker { worker: worker.to_string(), state: shown.clone() });
                            }
                        }
                        Some(JobResponse::NotFound(_)) => {
                            return Err(WaitError::Lost("the worker no longer knows the job".into()));
                        }
                        _ => missed += 1,
                    }
                    if missed >= MAX_MISSED_POLLS {
                        return Err(WaitError::Lost(format!("no answer to {missed} status queries in a row")));
                    }
                }
            }
        }
    }

    async fn query(&self, worker: PeerId, request: JobRequest) -> Option<JobResponse> {
        match tokio::time::timeout(QUERY_DEADLINE, self.network.request_job(worker, request)).await
        {
            Ok(Ok(response)) => Some(response),
            Ok(Err(e)) => {
                debug!(%worker, error = %e, "query failed");
                None
            }
            Err(_) => None,
        }
    }

    /// Fetches the result DAG: from the worker first, then any provider;
    /// never more than an honest result of `spec` can hold.
    async fn fetch_result(
        &self,
        worker: PeerId,
        spec: &JobSpec,
        result: Cid,
    ) -> Result<(), FetchError> {
        let max = max_result_bytes(spec);
        let fetch = |providers: Vec<PeerId>| {
            fetch::fetch_dag_capped(&self.network, &self.store, result, providers, max, |_| {})
        };
        match fetch(vec![worker]).await {
            Ok(_) => Ok(()),
            Err(FetchError::NoProviders { .. }) => {
                let providers = self.network.find_providers(result).await?;
                fetch(providers.into_iter().collect()).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}

/// The most bytes a result package of `spec` can take: stdout, stderr and
/// the files under `/output` are each capped at `max_output`; the UnixFS
/// nodes around them add a little (a generous allowance, since `/output`
/// may hold many small files).
#[must_use]
pub fn max_result_bytes(spec: &JobSpec) -> u64 {
    spec.limits
        .max_output
        .0
        .saturating_mul(3)
        .saturating_add(16 << 20)
}

/// Whether a worker's offer covers the job.
fn fits(spec: &JobSpec, info: &WorkerInfo) -> bool {
    let max = &info.max_limits;
    let mut needed: BTreeSet<Capability> = spec.capabilities.clone();
    if spec.deterministic {
        needed.insert(
            Capability::DETERMINISTIC
                .parse()
                .expect("built-in capability names are valid"),
        );
    }
    needed.is_subset(&info.capabilities)
        && spec.limits.fuel <= max.fuel
        && spec.limits.memory <= max.memory
        && spec.limits.timeout <= max.timeout
        && spec.limits.max_output <= max.max_output
}

/// Checks a receipt against what was submitted: signature, signer, job,
/// requester and inputs.
///
/// # Errors
/// The first mismatch, one line.
pub fn check_receipt(
    receipt: &SignedReceipt,
    worker: PeerId,
    spec: &JobSpec,
    me: PeerId,
) -> Result<(), String> {
    let r = receipt.verify_signer(&worker).map_err(|e| e.to_string())?;
    if r.job != spec.id() {
        return Err(format!("it is about job {}, not {}", r.job, spec.id()));
    }
    if r.requester != me {
        return Err(format!(
            "it names requester {}, not this node {me}",
            r.requester
        ));
    }
    if r.module != spec.module || r.stdin != spec.stdin || r.input != spec.input {
        return Err("its module or inputs differ from the job's".into());
    }
    Ok(())
}

/// Compares the replicas' result CIDs.
#[must_use]
pub fn agreement(results: &[ReplicaResult]) -> Agreement {
    let mut counts: HashMap<Cid, usize> = HashMap::new();
    for r in results {
        *counts.entry(r.receipt.receipt().result).or_default() += 1;
    }
    let majority = counts
        .iter()
        .max_by_key(|(cid, n)| (**n, std::cmp::Reverse(cid.to_string())))
        .map(|(cid, _)| *cid)
        .expect("at least one replica");
    let dissenters: Vec<String> = results
        .iter()
        .filter(|r| r.receipt.receipt().result != majority)
        .map(|r| r.worker.to_string())
        .collect();
    Agreement {
        agreed: dissenters.is_empty(),
        result: majority.to_string(),
        dissenters,
    }
}

/// Pause before asking busy workers again: 25 ms doubling to [`MAX_BACKOFF`],
/// with jitter so many waiting jobs do not retry in lockstep.
fn backoff(busy: u32) -> Duration {
    let base = Duration::from_millis(25).saturating_mul(1 << busy.min(7));
    let capped = base.min(MAX_BACKOFF);
    let jitter = rand::random::<u64>() % (capped.as_millis() as u64 / 2 + 1);
    capped / 2 + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::cid::raw_cid;
    use phase_protocol::{Keypair, Receipt, Status};

    fn receipt(worker: &Keypair, spec: &JobSpec, requester: PeerId, result: Cid) -> SignedReceipt {
        let receipt = Receipt {
            job: spec.id(),
            module: spec.module,
            stdin: None,
            input: None,
            result,
            status: Status::Exited { code: 0 },
            fuel_consumed: 1,
            wall_time_ms: 1,
            peak_memory: 0,
            worker: worker.public().to_peer_id(),
            requester,
            started_at_ms: 0,
            ended_at_ms: 1,
            runtime: "test".into(),
        };
        SignedReceipt::sign(receipt, worker).unwrap()
    }

    #[test]
    fn a_receipt_signed_by_another_worker_is_rejected() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let me = PeerId::random();
        let spec = JobSpec::new(raw_cid(b"module"));
        let good = receipt(&a, &spec, me, raw_cid(b"r"));
        assert_eq!(
            check_receipt(&good, a.public().to_peer_id(), &spec, me),
            Ok(())
        );
        let by_b = receipt(&b, &spec, me, raw_cid(b"r"));
        let err = check_receipt(&by_b, a.public().to_peer_id(), &spec, me).unwrap_err();
        assert!(err.contains("not by the expected worker"), "{err}");
        let other_requester = receipt(&a, &spec, PeerId::random(), raw_cid(b"r"));
        let err = check_receipt(&other_requester, a.public().to_peer_id(), &spec, me).unwrap_err();
        assert!(err.contains("names requester"), "{err}");
        let mut other_job = spec.clone();
        other_job.nonce = 7;
        let err = check_receipt(&good, a.public().to_peer_id(), &other_job, me).unwrap_err();
        assert!(err.contains("about job"), "{err}");
    }

    #[test]
    fn replicas_that_differ_are_named() {
        let spec = JobSpec::new(raw_cid(b"module"));
        let me = PeerId::random();
        let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
        let result = |k: &Keypair, r: &[u8]| ReplicaResult {
            worker: k.public().to_peer_id(),
            receipt: receipt(k, &spec, me, raw_cid(r)),
        };
        let same: Vec<_> = keys.iter().map(|k| result(k, b"x")).collect();
        assert!(agreement(&same).agreed);
        let odd = vec![
            result(&keys[0], b"x"),
            result(&keys[1], b"y"),
            result(&keys[2], b"x"),
        ];
        let a = agreement(&odd);
        assert!(!a.agreed);
        assert_eq!(a.result, raw_cid(b"x").to_string());
        assert_eq!(
            a.dissenters,
            vec![keys[1].public().to_peer_id().to_string()]
        );
    }

    #[test]
    fn a_delivery_is_taken_only_from_its_signer_for_an_awaited_job() {
        let deliveries = Deliveries::default();
        let worker = Keypair::generate_ed25519();
        let peer = worker.public().to_peer_id();
        let spec = JobSpec::new(raw_cid(b"m"));
        let me = PeerId::random();
        let mut rx = deliveries.expect(spec.id(), peer).unwrap();
        let r = receipt(&worker, &spec, me, raw_cid(b"r"));
        // From someone else: ignored.
        let _ = deliveries.deliver(PeerId::random(), r.clone());
        assert!(rx.try_recv().is_err());
        let _ = deliveries.deliver(peer, r.clone());
        assert_eq!(rx.try_recv().unwrap(), r);
    }

    #[test]
    fn the_pool_hands_each_worker_to_one_replica_at_a_time() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut pool = Pool {
            candidates: [a, b].into(),
        };
        assert_eq!(pool.take(), Some(a));
        assert_eq!(pool.take(), Some(b));
        assert_eq!(pool.take(), None);
        pool.release(a, true);
        assert_eq!(pool.take(), Some(a));
        pool.release(b, false);
        pool.release(a, false);
        assert_eq!(pool.take(), None);
    }
}
