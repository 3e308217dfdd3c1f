//! The replica driver: owns the pool of candidate workers and the record of
//! failed attempts, and keeps one attempt (or one backoff, or one result
//! fetch) in flight per replica in a `FuturesUnordered`. Everything it
//! decides happens between two awaits on that set: no locks.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tracing::warn;

use phase_protocol::{Cid, JobSpec, SignedReceipt};

use super::attempt::{self, Outcome};
use super::offers::Offers;
use super::records::{self, JobRecord};
use super::report::{Attempt, ReplicaResult, SubmitReport, agreement};
use super::verify::check_receipt;
use super::{AttemptError, Requester, Stage, SubmitError, SubmitOptions, max_result_bytes};
use crate::blocks::{self, FetchError, FetchOptions};
use crate::store::Held;

/// Longest pause between asking busy workers again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the DHT is asked again for workers when every candidate
/// failed (a worker that just joined may not have been found the first
/// time), and the pause before.
const REDISCOVERIES: u32 = 2;
const REDISCOVERY_PAUSE: Duration = Duration::from_secs(1);

type Progress<'a> = &'a (dyn Fn(Stage) + Send + Sync);

/// What finished in the set, for which replica.
enum Step {
    /// The worker accepted the job: record it, then wait for the receipt.
    Accepted {
        worker: PeerId,
        delivered: attempt::Delivered,
    },
    Attempted {
        worker: PeerId,
        outcome: Outcome,
    },
    /// A backoff after a busy answer is over.
    Woke,
    /// The DHT was asked again for workers.
    Rediscovered(Vec<PeerId>),
    Fetched {
        worker: PeerId,
        receipt: Box<SignedReceipt>,
        result: Result<Held, FetchError>,
    },
}

type InFlight<'a> = FuturesUnordered<Pin<Box<dyn Future<Output = (usize, Step)> + Send + 'a>>>;

/// A replica's attempts so far.
#[derive(Debug, Default)]
struct Replica {
    failures: usize,
    busy: u32,
    last: Option<String>,
}

pub(super) struct Driver<'a> {
    requester: &'a Requester,
    spec: &'a JobSpec,
    options: &'a SubmitOptions,
    progress: Progress<'a>,
    /// Workers not taken by a replica, in order of preference.
    pool: VecDeque<PeerId>,
    /// Every worker ever in the pool: rediscovery adds only new ones.
    seen: HashSet<PeerId>,
    rediscoveries: u32,
    failed: Vec<Attempt>,
    /// The job's record, written at every acceptance.
    record: &'a mut JobRecord,
    /// Receipts and results fetched, held against `gc` until the caller
    /// has recorded (and so pinned) them.
    held: Vec<Held>,
}

impl<'a> Driver<'a> {
    pub(super) fn new(
        requester: &'a Requester,
        spec: &'a JobSpec,
        options: &'a SubmitOptions,
        progress: Progress<'a>,
        candidates: Vec<PeerId>,
        record: &'a mut JobRecord,
    ) -> Self {
        Self {
            requester,
            spec,
            options,
            progress,
            seen: candidates.iter().copied().collect(),
            pool: candidates.into(),
            rediscoveries: if options.worker.is_some() {
                0
            } else {
                REDISCOVERIES
            },
            failed: Vec::new(),
            record,
            held: Vec::new(),
        }
    }

    /// Runs `replicas` replicas to their verified, fetched results; the
    /// receipts and results come held against `gc`: keep the guards until
    /// the record that pins them is written.
    pub(super) async fn run(
        mut self,
        replicas: usize,
    ) -> Result<(SubmitReport, Vec<Held>), SubmitError> {
        let mut state: Vec<Replica> = (0..replicas).map(|_| Replica::default()).collect();
        let mut results: Vec<Option<ReplicaResult>> = vec![None; replicas];
        let mut in_flight: InFlight<'a> = FuturesUnordered::new();
        for (replica, st) in state.iter().enumerate() {
            self.start(replica, st, &mut in_flight)?;
        }
        while let Some((replica, step)) = in_flight.next().await {
            let st = &mut state[replica];
            match step {
                Step::Woke => self.start(replica, st, &mut in_flight)?,
                Step::Rediscovered(found) => {
                    for worker in found {
                        if self.seen.insert(worker) {
                            self.pool.push_back(worker);
                        }
                    }
                    self.start(replica, st, &mut in_flight)?;
                }
                Step::Accepted { worker, delivered } => {
                    self.requester.offers.taken(&worker);
                    if !self.record.accepted.contains(&worker) {
                        self.record.accepted.push(worker);
                    }
                    self.record.progress = records::Progress::Running;
                    self.requester.records.put(self.record).await?;
                    (self.progress)(Stage::Submitted { worker });
                    let (requester, job, options, progress) =
                        (self.requester, self.spec.id(), self.options, self.progress);
                    in_flight.push(Box::pin(async move {
                        let outcome =
                            attempt::wait(requester, job, worker, delivered, options, progress)
                                .await;
                        (replica, Step::Attempted { worker, outcome })
                    }));
                }
                Step::Attempted { worker, outcome } => {
                    note(&self.requester.offers, &worker, &outcome);
                    match outcome {
                        Outcome::Busy => {
                            st.last = Some(AttemptError::Busy(worker).to_string());
                            self.pool.push_back(worker);
                            st.busy += 1;
                            let pause = backoff(st.busy);
                            in_flight.push(Box::pin(async move {
                                tokio::time::sleep(pause).await;
                                (replica, Step::Woke)
                            }));
                        }
                        Outcome::Failed(message) => {
                            return Err(SubmitError::Failed { worker, message });
                        }
                        Outcome::TooComplex(message) => {
                            return Err(SubmitError::ModuleTooComplex { worker, message });
                        }
                        Outcome::Rejected(rejection) => {
                            self.fail(st, AttemptError::Rejected(worker, rejection));
                            self.start(replica, st, &mut in_flight)?;
                        }
                        Outcome::Lost(lost) => {
                            self.fail(st, AttemptError::Lost(worker, lost));
                            self.start(replica, st, &mut in_flight)?;
                        }
                        Outcome::Done(receipt) => {
                            let me = self.requester.network.peer_id();
                            if let Err(e) = check_receipt(&receipt, worker, self.spec, me) {
                                self.fail(st, AttemptError::Receipt(worker, e));
                                self.start(replica, st, &mut in_flight)?;
                                continue;
                            }
                            (self.progress)(Stage::FetchingResult { worker });
                            let (requester, spec) = (self.requester, self.spec);
                            in_flight.push(Box::pin(async move {
                                let result = fetch_result(requester, worker, spec, &receipt).await;
                                let step = Step::Fetched {
                                    worker,
                                    receipt,
                                    result,
                                };
                                (replica, step)
                            }));
                        }
                    }
                }
                Step::Fetched {
                    worker,
                    receipt,
                    result,
                } => {
                    let cid = receipt.receipt().result;
                    let held = result.map_err(|source| SubmitError::Fetch {
                        result: cid,
                        source: Box::new(source),
                    })?;
                    self.held.push(held);
                    results[replica] = Some(ReplicaResult {
                        worker,
                        receipt: *receipt,
                    });
                }
            }
        }
        let results: Vec<ReplicaResult> = results.into_iter().flatten().collect();
        let agreement = (replicas > 1).then(|| agreement(&results));
        let report = SubmitReport {
            job: self.spec.id(),
            results,
            failed_attempts: self.failed,
            agreement,
            audit: None,
        };
        Ok((report, self.held))
    }

    /// Starts the replica's next attempt on the best worker left.
    fn start(
        &mut self,
        replica: usize,
        st: &Replica,
        in_flight: &mut InFlight<'a>,
    ) -> Result<(), SubmitError> {
        let gave_up = || SubmitError::GaveUp {
            attempts: st.failures,
            last: st
                .last
                .clone()
                .unwrap_or_else(|| "no worker was free".into()),
        };
        if st.failures >= self.options.attempts as usize {
            return Err(gave_up());
        }
        let Some(worker) = self.pool.pop_front() else {
            if self.rediscoveries == 0 {
                return Err(gave_up());
            }
            self.rediscoveries -= 1;
            let (network, offers, spec) =
                (&self.requester.network, &self.requester.offers, self.spec);
            in_flight.push(Box::pin(async move {
                tokio::time::sleep(REDISCOVERY_PAUSE).await;
                let found = super::find_workers(
                    network,
                    offers,
                    spec,
                    Duration::ZERO,
                    super::Asking::Fresh,
                )
                .await
                .unwrap_or_default();
                (replica, Step::Rediscovered(found))
            }));
            return Ok(());
        };
        let (requester, spec) = (self.requester, self.spec);
        in_flight.push(Box::pin(async move {
            let step = match attempt::submit(requester, spec, worker).await {
                Ok(delivered) => Step::Accepted { worker, delivered },
                Err(outcome) => Step::Attempted { worker, outcome },
            };
            (replica, step)
        }));
        Ok(())
    }

    /// Records a failed attempt; its worker is not asked again.
    fn fail(&mut self, st: &mut Replica, error: AttemptError) {
        let worker = match &error {
            AttemptError::Busy(w)
            | AttemptError::Rejected(w, _)
            | AttemptError::Lost(w, _)
            | AttemptError::Receipt(w, _) => *w,
        };
        let reason = crate::error_line(&error);
        warn!(%worker, %reason, "attempt failed; trying another worker");
        (self.progress)(Stage::Retrying {
            worker,
            reason: reason.clone(),
        });
        self.failed.push(Attempt {
            worker,
            error: reason.clone(),
        });
        st.failures += 1;
        st.last = Some(reason);
    }
}

/// Keeps the cached offer of `worker` current with what an attempt found:
/// its slot back when the job ended (also after a refusal the submission
/// itself got; the count never passes the worker's slots, and the next
/// round corrects it), none when it was busy, and a worker that refused
/// or was lost is not offered again until a round finds it.
fn note(offers: &Offers, worker: &PeerId, outcome: &Outcome) {
    match outcome {
        Outcome::Busy => offers.busy(worker),
        Outcome::Rejected(_) | Outcome::Lost(_) => offers.forget(worker),
        Outcome::Failed(_) | Outcome::TooComplex(_) | Outcome::Done(_) => offers.released(worker),
    }
}

/// Most new bytes of a run's state and log a requester fetches: the
/// default most a worker lets a state hold, and a log.
const MAX_STATE_FETCH: u64 = crate::executor::DEFAULT_MAX_STATE + (4 << 20);

/// Fetches the result DAG: from the worker first, then any provider; never
/// more than an honest result of `spec` can hold. It and the receipt are
/// held against `gc` from the start until the guard is dropped; the
/// receipt's block is stored with the record that pins it
/// ([`super::Records::put`]).
async fn fetch_result(
    requester: &Requester,
    worker: PeerId,
    spec: &JobSpec,
    receipt: &SignedReceipt,
) -> Result<Held, FetchError> {
    let (network, store) = (&requester.network, &requester.store);
    let result: Cid = receipt.receipt().result;
    let state = receipt.receipt().state.as_ref();
    let state_roots: Vec<Cid> = state
        .map(|t| [t.after].into_iter().chain(t.log).collect())
        .unwrap_or_default();
    let held = store.hold(
        [result, receipt.cid()]
            .into_iter()
            .chain(state_roots.clone()),
    );
    let max_bytes = max_result_bytes(spec);
    let from_worker = FetchOptions {
        providers: Some(vec![worker]),
        max_bytes,
        ..FetchOptions::default()
    };
    match blocks::fetch(network, store, result, from_worker, |_| {}).await {
        Ok(_) => {}
        Err(FetchError::NoProviders { .. }) => {
            let anyone = FetchOptions {
                max_bytes,
                ..FetchOptions::default()
            };
            blocks::fetch(network, store, result, anyone, |_| {}).await?;
        }
        Err(e) => return Err(e),
    }
    // The new state: what the run changed is with the worker, the rest
    // here already (the worker read it from here).
    for root in state_roots {
        let from_worker = FetchOptions {
            providers: Some(vec![worker]),
            max_bytes: MAX_STATE_FETCH,
            ..FetchOptions::default()
        };
        blocks::fetch(network, store, root, from_worker, |_| {}).await?;
    }
    Ok(held)
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

    #[test]
    fn backoff_grows_to_its_cap() {
        assert!(backoff(0) <= Duration::from_millis(25));
        assert!(backoff(30) >= MAX_BACKOFF / 2 && backoff(30) <= MAX_BACKOFF);
    }
}
