//! The requester side of `/phase/job/1.0.0`: find workers, submit, wait,
//! verify, fetch the result.
//!
//! - [`discovery`]: workers are found through the DHT and ranked;
//! - [`attempt`]: one worker, one submission, one typed outcome;
//! - [`replicas`]: the driver that owns the worker pool and the failed
//!   attempts and runs one attempt per replica at a time
//!   (`FuturesUnordered`, no locks): a busy worker is asked again later
//!   (backing off); one that rejects, stops answering or forgets the job is
//!   dropped and the job goes to the next, at most
//!   [`SubmitOptions::attempts`] times per replica; a job the worker
//!   reports `failed` is not retried;
//! - [`verify`]: every receipt is checked (signature, signer, job,
//!   requester, inputs); with several replicas the result CIDs are
//!   compared ([`report::agreement`]);
//! - [`deliveries`]: receipts the worker delivers reach the attempt that
//!   waits for them; [`report`]: what a submission produced;
//! - [`records`]: the record of every job submitted, written before the
//!   first request leaves and at every acceptance and end, so that a
//!   requester that stopped mid-submit shows the job and resumes it
//!   ([`Requester::resume`]).

mod attempt;
mod deliveries;
mod discovery;
pub mod offers;
mod records;
mod replicas;
mod report;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use phase_protocol::job::{JobResponse, JobState, Rejection, SpecError};
use phase_protocol::{Capability, Cid, JobSpec, SignedReceipt};

pub use self::attempt::MAX_MISSED_POLLS;
use self::deliveries::Deliveries;
pub use self::deliveries::MAX_PENDING_DELIVERIES;
pub use self::discovery::{
    Asking, MAX_CANDIDATES, QUERY_DEADLINE, RETRY, Tried, find_workers, search_capability,
};
pub use self::records::{JobRecord, Progress, RecordError, Records};
pub use self::report::{Agreement, Attempt, Audit, ReplicaResult, SubmitReport, agreement};
pub use self::verify::{ReceiptError, check_receipt};
use crate::blocks::FetchError;
use crate::config::RequesterConfig;
use crate::executor::{Executor, ExecutorConfig};
use crate::network::{NetworkClient, NetworkError};
use crate::store::BlockStore;
use crate::store::ledger::Totals;

/// How long a submission looks for workers by default before it says
/// nobody was found: long enough for a node that just started to meet its
/// bootstrap and mDNS peers and for provider records to arrive.
pub const DISCOVERY_WAIT: Duration = Duration::from_secs(20);

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
    /// How long to go on looking for workers while none is found (a node
    /// that just started is still meeting its peers).
    pub discovery_wait: Duration,
    /// The chance (0 to 1) that a deterministic job is audited: run again
    /// on a second, different worker and compared ([`Audit`]); `None`: the
    /// node's `[requester] audit`.
    pub audit: Option<f64>,
    /// Audit a deterministic job by rerunning it on this node instead of
    /// on a second worker (always, whatever `audit` says).
    pub audit_local: bool,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        Self {
            worker: None,
            replicas: 1,
            attempts: 5,
            poll_interval: Duration::from_secs(1),
            discovery_wait: DISCOVERY_WAIT,
            audit: None,
            audit_local: false,
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
        worker: PeerId,
    },
    /// The worker reports progress.
    Worker {
        /// The worker.
        worker: PeerId,
        /// Queued, fetching or running.
        state: JobState,
    },
    /// An attempt failed; trying another worker.
    Retrying {
        /// The worker that failed.
        worker: PeerId,
        /// Why, one line.
        reason: String,
    },
    /// Receipt verified; fetching the result.
    FetchingResult {
        /// The worker.
        worker: PeerId,
    },
}

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The spec does not validate: no worker would take it, so none is asked.
    #[error("malformed job: {0}")]
    Malformed(SpecError),
    /// No worker advertises what the job needs.
    #[error("no worker found that can run the job (looked for `{capability}` {tried})")]
    NoWorkers {
        /// The capability looked up.
        capability: Capability,
        /// What discovery tried.
        tried: Tried,
    },
    /// Fewer workers than replicas once those whose audits failed are
    /// left out.
    #[error(
        "found {found} workers that can run the job besides {skipped} whose audits failed in this node's ledger, but {replicas} replicas were asked for (`[requester] skip_failed_audits = false` uses them)"
    )]
    Distrusted {
        /// Workers found and used.
        found: usize,
        /// Workers left out.
        skipped: usize,
        /// Replicas asked for.
        replicas: usize,
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
    /// The worker refused the module as too complex to compile within its
    /// bounds (no run happened, no receipt).
    #[error("worker {worker} refused the module: module too complex: {message}")]
    ModuleTooComplex {
        /// The worker.
        worker: PeerId,
        /// Which bound.
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
        source: Box<FetchError>,
    },
    /// The network is gone.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The job's record cannot be written.
    #[error("cannot record the job")]
    Record(#[from] RecordError),
}

/// Why a worker was passed over, for the report and progress.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("worker {0} is busy")]
    Busy(PeerId),
    #[error("worker {0} rejected the job: {1}")]
    Rejected(PeerId, Rejection),
    // The reason follows as the source (error lines join the chain).
    #[error("worker {0}")]
    Lost(PeerId, #[source] attempt::Lost),
    #[error("receipt from worker {0} rejected")]
    Receipt(PeerId, #[source] ReceiptError),
}

/// Extra time a submission allows past the job's own timeout by default
/// (finding workers, moving inputs and results, retries).
pub const SUBMIT_MARGIN: Duration = Duration::from_secs(120);

/// Resumed submissions run at once at most (a daemon resumes every job it
/// had under way when it starts).
pub const RESUME_AT_ONCE: usize = 16;

/// The requester: submits jobs through a node's network and store.
#[derive(Clone, Debug)]
pub struct Requester {
    network: NetworkClient,
    store: BlockStore,
    deliveries: Deliveries,
    records: Records,
    /// How much it trusts workers: the audit chance and how the ledger
    /// moves it (`[requester]`).
    trust: RequesterConfig,
    /// Runs jobs here for local audits.
    local: LocalRuns,
    /// What workers offered lately (`[requester] offer_cache`).
    offers: offers::Offers,
}

/// The executor local audits rerun jobs with: the worker's when the node
/// has one, else made on the first local audit from `config`.
#[derive(Clone, Debug)]
pub struct LocalRuns {
    executor: Arc<tokio::sync::OnceCell<Executor>>,
    config: ExecutorConfig,
}

impl LocalRuns {
    /// Runs with `executor` (the worker's).
    #[must_use]
    pub fn with(executor: Executor) -> Self {
        Self {
            executor: Arc::new(tokio::sync::OnceCell::new_with(Some(executor))),
            config: ExecutorConfig::default(),
        }
    }

    /// Runs with an executor made from `config` when first needed.
    #[must_use]
    pub fn lazy(config: ExecutorConfig) -> Self {
        Self {
            executor: Arc::default(),
            config,
        }
    }

    async fn executor(&self) -> Result<&Executor, crate::executor::ExecError> {
        self.executor
            .get_or_try_init(|| async { Executor::new(self.config.clone()) })
            .await
    }
}

impl Requester {
    /// A requester over a node's network and store. The node routes the
    /// receipts workers deliver to [`Requester::deliver`].
    #[must_use]
    pub fn new(network: NetworkClient, store: BlockStore) -> Self {
        Self {
            network,
            records: Records::new(store.clone()),
            store,
            deliveries: Deliveries::default(),
            trust: RequesterConfig::default(),
            local: LocalRuns::lazy(ExecutorConfig::default()),
            offers: offers::Offers::new(crate::config::DEFAULT_OFFER_CACHE),
        }
    }

    /// The same requester, rerunning jobs for local audits with `local`.
    #[must_use]
    pub fn with_local_runs(mut self, local: LocalRuns) -> Self {
        self.local = local;
        self
    }

    /// The same requester, auditing and ranking workers as `config` says:
    /// deterministic jobs audited with chance `audit` unless a submission
    /// says otherwise, less often for workers with `trust_after` passed
    /// audits, and workers with a failed audit skipped if
    /// `skip_failed_audits`.
    #[must_use]
    pub fn with_config(mut self, config: &RequesterConfig) -> Self {
        self.trust = config.clone();
        self.trust.audit = config.audit.clamp(0.0, 1.0);
        self.offers = offers::Offers::new(config.offer_cache);
        self
    }

    /// Takes a receipt `peer` delivered (`JobRequest::Deliver`): to the
    /// submission awaiting it, if any; the answer for the peer.
    #[must_use]
    pub fn deliver(&self, peer: PeerId, receipt: SignedReceipt) -> JobResponse {
        self.deliveries.deliver(peer, receipt)
    }

    /// The records of the jobs submitted from this node.
    #[must_use]
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// Submits `spec` to `options.replicas` distinct workers, waits for
    /// their receipts, verifies them and fetches the results into the store.
    /// The job is recorded before the first request leaves, at every
    /// acceptance and when it ends ([`Records`]); a job recorded as under
    /// way (a requester that stopped mid-submit) is resumed: the workers
    /// that accepted it are asked first, and answer for the run they have.
    ///
    /// # Errors
    /// No (or too few) workers, the job failed on a worker, every attempt
    /// failed, a result could not be fetched, or the record could not be
    /// written.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the job (workers still run it), and
    /// its record stays under way, to be resumed.
    pub async fn submit(
        &self,
        spec: &JobSpec,
        options: &SubmitOptions,
        progress: &(dyn Fn(Stage) + Send + Sync),
    ) -> Result<SubmitReport, SubmitError> {
        spec.validate().map_err(SubmitError::Malformed)?;
        let (mut record, options) = match self.records.get(spec.id()).await? {
            // Resumed: as it was submitted.
            Some(r) if !r.progress.is_final() => {
                let options = SubmitOptions {
                    worker: r.worker,
                    replicas: r.replicas,
                    ..options.clone()
                };
                (r, options)
            }
            _ => (
                JobRecord::new(spec, options.replicas.max(1), options.worker),
                options.clone(),
            ),
        };
        self.records.put(&mut record).await?;
        let (outcome, held) = match self.run(spec, &options, progress, &mut record).await {
            Ok((report, held)) => (Ok(report), held),
            Err(e) => (Err(e), Vec::new()),
        };
        record.progress = match &outcome {
            Ok(report) => Progress::Done {
                report: Box::new(report.clone()),
            },
            Err(SubmitError::Record(_)) => return outcome,
            Err(e) => Progress::Failed {
                error: crate::error_line(e),
            },
        };
        // The record pins the receipts and results; until it is written
        // they are held.
        self.records.put(&mut record).await?;
        drop(held);
        outcome
    }

    /// The jobs recorded as under way: submissions that did not end (the
    /// requester stopped mid-submit), to [`Requester::resume`].
    ///
    /// # Errors
    /// The records cannot be read.
    pub async fn unfinished(&self) -> Result<Vec<JobRecord>, RecordError> {
        Ok(self
            .records
            .list()
            .await?
            .into_iter()
            .filter(|r| !r.progress.is_final())
            .collect())
    }

    /// Resumes `jobs`, at most [`RESUME_AT_ONCE`] at a time, each for at
    /// most its timeout plus [`SUBMIT_MARGIN`]; returns when all ended.
    /// The jobs end in their records (`phase-node jobs`, `status`).
    pub async fn resume(self, jobs: Vec<JobRecord>) {
        futures::stream::iter(jobs)
            .for_each_concurrent(RESUME_AT_ONCE, |record| {
                let this = self.clone();
                async move {
                    let spec = record.spec;
                    let timeout = spec.limits.timeout.saturating_add(SUBMIT_MARGIN);
                    tracing::info!(job = %record.job, "resuming a submitted job");
                    let options = SubmitOptions::default();
                    let run = this.submit(&spec, &options, &|_| {});
                    match tokio::time::timeout(timeout, run).await {
                        Ok(Ok(_)) => tracing::info!(job = %spec.id(), "resumed job done"),
                        Ok(Err(e)) => {
                            tracing::warn!(job = %spec.id(), error = %crate::error_line(&e), "resumed job failed");
                        }
                        Err(_) => this.give_up(&spec, timeout).await,
                    }
                }
            })
            .await;
    }

    /// Records that a resumed job got no result within `waited`.
    async fn give_up(&self, spec: &JobSpec, waited: Duration) {
        tracing::warn!(job = %spec.id(), "resumed job failed: no result within {}", humantime::format_duration(waited));
        let Ok(Some(mut record)) = self.records.get(spec.id()).await else {
            return;
        };
        record.progress = Progress::Failed {
            error: format!(
                "no result within {} of resuming",
                humantime::format_duration(waited)
            ),
        };
        if let Err(e) = self.records.put(&mut record).await {
            tracing::warn!(job = %spec.id(), error = %crate::error_line(&e), "cannot record a resumed job");
        }
    }

    async fn run(
        &self,
        spec: &JobSpec,
        options: &SubmitOptions,
        progress: &(dyn Fn(Stage) + Send + Sync),
        record: &mut JobRecord,
    ) -> Result<(SubmitReport, Vec<crate::store::Held>), SubmitError> {
        let replicas = options.replicas.max(1);
        // Workers that accepted the job before (a resumed submission) are
        // asked first: a repeated submission is answered for the run they have.
        let mut candidates: Vec<PeerId> = record.accepted.clone();
        match options.worker {
            Some(worker) => {
                if candidates.is_empty() {
                    self.look_up(worker, spec).await?;
                    candidates.push(worker);
                }
            }
            None if candidates.len() >= replicas => {}
            None => {
                progress(Stage::FindingWorkers);
                for found in find_workers(
                    &self.network,
                    &self.offers,
                    spec,
                    options.discovery_wait,
                    Asking::Cached,
                )
                .await?
                {
                    if !candidates.contains(&found) {
                        candidates.push(found);
                    }
                }
            }
        }
        // Workers that accepted the job before or were named are asked
        // whatever their record: the rest are ranked by the ledger.
        let keep = record
            .accepted
            .len()
            .max(usize::from(options.worker.is_some()));
        let skipped = self.skip_distrusted(&mut candidates, keep).await;
        progress(Stage::FoundWorkers {
            count: candidates.len(),
        });
        if candidates.len() < replicas {
            return Err(if skipped > 0 {
                SubmitError::Distrusted {
                    found: candidates.len(),
                    skipped,
                    replicas,
                }
            } else {
                SubmitError::TooFewWorkers {
                    found: candidates.len(),
                    replicas,
                }
            });
        }
        let found = candidates.clone();
        let (mut report, mut held) =
            replicas::Driver::new(self, spec, options, progress, candidates, record)
                .run(replicas)
                .await?;
        if spec.deterministic && options.audit_local {
            report.audit = Some(self.audit_here(&report.results[0]).await);
            return Ok((report, held));
        }
        let audit = match options.audit {
            Some(chance) => chance,
            None => self.audit_chance(report.results[0].worker).await,
        };
        if spec.deterministic && audit > 0.0 && rand::random::<f64>() < audit {
            let (audit, audit_held) = self
                .audit(spec, options, progress, found, &report, record)
                .await;
            report.audit = Some(audit);
            held.extend(audit_held);
        }
        Ok((report, held))
    }

    /// Reruns the job of `first`'s receipt on this node, from the inputs in
    /// its store (the requester's own), and compares.
    async fn audit_here(&self, first: &ReplicaResult) -> Audit {
        let receipt = first.receipt.receipt();
        let rerun = match self.local.executor().await {
            Ok(executor) => {
                crate::worker::rerun(&self.store, executor, receipt, &std::env::temp_dir()).await
            }
            Err(e) => {
                let reason = format!("cannot run it here: {}", crate::error_line(&e));
                return Audit::NoAuditor { reason };
            }
        };
        match rerun {
            Ok(rerun) if rerun.differences.is_empty() => Audit::LocalPassed,
            Ok(rerun) => {
                tracing::warn!(job = %receipt.job, worker = %first.worker, "local audit failed: the rerun differs from the signed receipt");
                Audit::LocalFailed {
                    differences: rerun
                        .differences
                        .iter()
                        .map(|d| {
                            format!(
                                "{}: the receipt says {}, the rerun gave {}",
                                d.field, d.receipt, d.rerun
                            )
                        })
                        .collect(),
                }
            }
            Err(e) => Audit::NoAuditor {
                reason: format!("cannot rerun it here: {}", crate::error_line(&e)),
            },
        }
    }

    /// Runs `spec` once more on a worker other than those in `report`
    /// (among `found`, else among the workers discovery finds now) and
    /// compares.
    async fn audit(
        &self,
        spec: &JobSpec,
        options: &SubmitOptions,
        progress: &(dyn Fn(Stage) + Send + Sync),
        found: Vec<PeerId>,
        report: &SubmitReport,
        record: &mut JobRecord,
    ) -> (Audit, Vec<crate::store::Held>) {
        let ran: Vec<PeerId> = report.results.iter().map(|r| r.worker).collect();
        let mut others: Vec<PeerId> = found.into_iter().filter(|w| !ran.contains(w)).collect();
        if others.is_empty() {
            match find_workers(
                &self.network,
                &self.offers,
                spec,
                options.discovery_wait,
                Asking::Cached,
            )
            .await
            {
                Ok(workers) => others = workers.into_iter().filter(|w| !ran.contains(w)).collect(),
                Err(e) => {
                    let reason = crate::error_line(&e);
                    return (Audit::NoAuditor { reason }, Vec::new());
                }
            }
            self.skip_distrusted(&mut others, 0).await;
        }
        if others.is_empty() {
            let reason = "no other worker found that can run the job".to_owned();
            return (Audit::NoAuditor { reason }, Vec::new());
        }
        // A random one of them: a worker cannot tell an audit from a job.
        rand::seq::SliceRandom::shuffle(others.as_mut_slice(), &mut rand::rng());
        let audit_options = SubmitOptions {
            worker: None,
            replicas: 1,
            ..options.clone()
        };
        let driver = replicas::Driver::new(self, spec, &audit_options, progress, others, record);
        match driver.run(1).await {
            Ok((mut second, held)) => {
                let auditor = second.results.remove(0);
                let audit = Audit::of(&report.results[0], auditor);
                if let Audit::Failed { auditor } = &audit {
                    tracing::warn!(job = %spec.id(), first = %report.results[0].worker, second = %auditor.worker, "audit failed: two workers signed different results");
                }
                (audit, held)
            }
            Err(e) => (
                Audit::NoAuditor {
                    reason: crate::error_line(&e),
                },
                Vec::new(),
            ),
        }
    }
}

impl Requester {
    /// Leaves out of `workers` (after the first `keep`) those with a failed
    /// audit in this node's ledger, unless `skip_failed_audits` is off; how
    /// many it left out. A ledger that cannot be read skips nobody (logged).
    async fn skip_distrusted(&self, workers: &mut Vec<PeerId>, keep: usize) -> usize {
        if !self.trust.skip_failed_audits || workers.len() <= keep {
            return 0;
        }
        let asked: Vec<PeerId> = workers[keep..].to_vec();
        let failed = match self.ledger_totals(asked).await {
            Ok(totals) => totals
                .into_iter()
                .filter(|(_, t)| t.audits_failed > 0)
                .map(|(peer, _)| peer)
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(error = %crate::error_line(&e), "cannot read the work ledger to rank workers");
                return 0;
            }
        };
        let before = workers.len();
        let mut i = 0;
        workers.retain(|w| {
            i += 1;
            i <= keep || !failed.contains(w)
        });
        let skipped = before - workers.len();
        if skipped > 0 {
            tracing::info!(skipped, "workers with failed audits skipped");
        }
        skipped
    }

    /// The chance that a job `worker` ran is audited, when the submission
    /// did not say: `[requester] audit`, falling for a worker the ledger
    /// trusts (at least `trust_after` passed audits and none failed) to
    /// `audit × trust_after / passed`, never below a tenth of `audit`.
    async fn audit_chance(&self, worker: PeerId) -> f64 {
        let base = self.trust.audit;
        if base <= 0.0 || self.trust.trust_after == 0 {
            return base;
        }
        let totals = match self.ledger_totals(vec![worker]).await {
            Ok(mut totals) => totals.pop().map(|(_, t)| t).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %crate::error_line(&e), "cannot read the work ledger to rank workers");
                return base;
            }
        };
        trusted_chance(base, self.trust.trust_after, &totals)
    }

    /// What this node's ledger says of each of `workers`.
    async fn ledger_totals(
        &self,
        workers: Vec<PeerId>,
    ) -> Result<Vec<(PeerId, Totals)>, crate::store::StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let db = store.state_blocking()?;
            workers
                .into_iter()
                .map(|w| Ok((w, db.ledger_totals(&w)?)))
                .collect()
        })
        .await?
    }
}

/// The audit chance of a worker with `totals` in the ledger: `base`, or for
/// a trusted worker (at least `trust_after` passed audits, none failed)
/// `base × trust_after / passed`, never below `base / 10`.
fn trusted_chance(base: f64, trust_after: u32, totals: &Totals) -> f64 {
    let passed = totals.audits_passed;
    if trust_after == 0 || totals.audits_failed > 0 || passed < u64::from(trust_after) {
        return base;
    }
    #[allow(clippy::cast_precision_loss)]
    let factor = (f64::from(trust_after) / passed as f64).max(0.1);
    base * factor
}

impl Requester {
    /// Before submitting to `worker` by name: unless it is connected,
    /// look up the providers of the job's capability, which dials the
    /// worker with the addresses in its record (a private worker's relay
    /// circuit among them). The request itself looks the peer up in the
    /// DHT too, and waits (bounded) for a connection.
    async fn look_up(&self, worker: PeerId, spec: &JobSpec) -> Result<(), SubmitError> {
        if self.network.job_peers().await?.contains(&worker) {
            return Ok(());
        }
        let capability = search_capability(spec);
        match tokio::time::timeout(QUERY_DEADLINE, self.network.find_capability(&capability)).await
        {
            Ok(Ok(found)) => {
                tracing::debug!(%worker, listed = found.contains(&worker), "worker looked up");
            }
            Ok(Err(NetworkError::Shutdown)) => return Err(NetworkError::Shutdown.into()),
            Ok(Err(e)) => tracing::debug!(%worker, error = %e, "worker lookup failed"),
            Err(_) => tracing::debug!(%worker, "worker lookup timed out"),
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_worker_is_audited_less_and_never_below_a_tenth() {
        let totals = |passed, failed| Totals {
            audits_passed: passed,
            audits_failed: failed,
            ..Totals::default()
        };
        let chance = |t: &Totals| trusted_chance(0.5, 10, t);
        assert!((chance(&totals(0, 0)) - 0.5).abs() < 1e-9);
        assert!((chance(&totals(9, 0)) - 0.5).abs() < 1e-9);
        assert!((chance(&totals(10, 0)) - 0.5).abs() < 1e-9);
        assert!((chance(&totals(20, 0)) - 0.25).abs() < 1e-9);
        assert!((chance(&totals(1000, 0)) - 0.05).abs() < 1e-9);
        // One failed audit and it is not trusted at all.
        assert!((chance(&totals(1000, 1)) - 0.5).abs() < 1e-9);
        // Off.
        assert!((trusted_chance(0.5, 0, &totals(1000, 0)) - 0.5).abs() < 1e-9);
    }
}
