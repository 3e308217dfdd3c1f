//! The worker's jobs in the state database ([`crate::store::state`]): a
//! job's record is written while it runs (if it runs a while) and when it
//! ends (with its receipt and result pinned for the job, in the same
//! transaction), and
//! dropped with its pins when retention forgets it. On start, finished jobs
//! come back with their receipts, and jobs that were under way when the
//! worker stopped come back `interrupted`.

use std::time::Duration;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use phase_protocol::job::{JobId, JobState};
use phase_protocol::{Cid, SignedReceipt};

use crate::now_ms;
use crate::store::ledger::Draft;
use crate::store::state::JobWrite;
use crate::store::{BlockStore, StoreError};

/// What the worker keeps of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub(super) requester: PeerId,
    pub(super) state: JobState,
    /// When the record was written, in ms since the Unix epoch.
    pub(super) updated_ms: u64,
    /// A run under way: what its receipt names, should the worker stop
    /// before it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) started: Option<Started>,
    /// The receipt of an interrupted run (a finished one's is in `state`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "phase_protocol::serde_helpers::opt_cid"
    )]
    pub(super) receipt: Option<Cid>,
}

impl JobRecord {
    pub(super) fn new(requester: PeerId, state: JobState) -> Self {
        Self {
            requester,
            state,
            updated_ms: now_ms(),
            started: None,
            receipt: None,
        }
    }
}

/// What a receipt of a run names besides its outcome, kept while the run
/// is under way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Started {
    #[serde(with = "phase_protocol::serde_helpers::cid")]
    pub(super) module: Cid,
    #[serde(default, with = "phase_protocol::serde_helpers::opt_cid")]
    pub(super) stdin: Option<Cid>,
    #[serde(default, with = "phase_protocol::serde_helpers::opt_cid")]
    pub(super) input: Option<Cid>,
    pub(super) started_ms: u64,
}

impl Started {
    pub(super) fn of(spec: &phase_protocol::JobSpec) -> Self {
        Self {
            module: spec.module,
            stdin: spec.stdin,
            input: spec.input,
            started_ms: now_ms(),
        }
    }
}

/// A job as it comes back on start.
#[derive(Debug)]
pub(super) struct Restored {
    pub(super) id: JobId,
    pub(super) requester: PeerId,
    pub(super) state: JobState,
    pub(super) receipt: Option<SignedReceipt>,
    /// A run that was under way when the worker stopped: to be attested
    /// `interrupted` now.
    pub(super) interrupted: Option<Started>,
}

/// Record writes queued at most; a job's task waits for room.
const WRITE_QUEUE: usize = 256;
/// How long the writer waits for more records before it commits.
const LINGER: Duration = Duration::from_millis(10);
/// Record writes grouped into one commit at most.
const MAX_BATCH: usize = 256;

/// A write and who waits for its commit.
type Write = (JobWrite, oneshot::Sender<()>);

/// The sending side of the worker's record writer. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Writes {
    tx: mpsc::Sender<Write>,
}

/// The record writer: each commit takes every write queued meanwhile, so
/// a worker under load pays one commit (one fsync) for many jobs. Ends when
/// `cancel` fires or every [`Writes`] is dropped.
pub(super) fn writer(
    store: BlockStore,
    cancel: CancellationToken,
) -> (Writes, impl Future<Output = ()> + Send + 'static) {
    let (tx, mut rx) = mpsc::channel::<Write>(WRITE_QUEUE);
    let run = async move {
        loop {
            let first = tokio::select! {
                () = cancel.cancelled() => break,
                first = rx.recv() => match first {
                    Some(first) => first,
                    None => break,
                },
            };
            // A moment for the records of other jobs ending now to join this
            // commit (nobody waits on it: the job's slot and its receipt
            // have moved on).
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(LINGER) => {}
            }
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            let (writes, waiting): (Vec<JobWrite>, Vec<_>) = batch.into_iter().unzip();
            let store = store.clone();
            let committed = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
                Ok(store.state_blocking()?.write_jobs(&writes)?)
            })
            .await;
            match committed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "cannot record jobs"),
                Err(e) => warn!(error = %e, "cannot record jobs"),
            }
            for done in waiting {
                let _ = done.send(());
            }
        }
    };
    (Writes { tx }, run)
}

/// Writes job `id`'s record, waiting for the commit; with the `receipt`
/// the worker signed for it, pins the receipt and its result for the job
/// and appends the receipt's entry to the ledger in the same commit. A
/// failure is logged: the job goes on, it just would not survive a restart.
pub(super) async fn save(
    writes: &Writes,
    id: JobId,
    record: JobRecord,
    receipt: Option<&SignedReceipt>,
) {
    let record = serde_json::to_vec(&record).expect("job records always serialize");
    let (done, committed) = oneshot::channel();
    let roots = receipt
        .map(|r| vec![r.cid(), r.receipt().result])
        .unwrap_or_default();
    let write = JobWrite::Put {
        id,
        record,
        roots,
        ledger: receipt.map(|r| Box::new(Draft::worked(r))),
    };
    if writes.tx.send((write, done)).await.is_err() || committed.await.is_err() {
        debug!(job = %id, "job not recorded: the worker is stopping");
    }
}

/// Drops forgotten jobs' records and pins (blocking).
pub(super) fn forget_blocking(store: &BlockStore, ids: &[JobId]) {
    let db = match store.state_blocking() {
        Ok(db) => db,
        Err(e) => {
            warn!(error = %e, "cannot forget old jobs");
            return;
        }
    };
    for id in ids {
        if let Err(e) = db.forget_job(id) {
            warn!(job = %id, error = %e, "cannot forget an old job");
        }
    }
}

/// The jobs recorded, oldest first (blocking). Jobs that were under way are
/// recorded `interrupted` before they are returned; the receipts of
/// finished jobs that the ledger lacks (recorded by a version without one)
/// are appended to it.
///
/// # Errors
/// The state database cannot be read.
pub(super) fn load_blocking(store: &BlockStore) -> Result<Vec<Restored>, StoreError> {
    let db = store.state_blocking()?;
    let mut records: Vec<(JobId, JobRecord)> = db.jobs()?;
    records.sort_by_key(|(_, r)| r.updated_ms);
    let mut restored = Vec::with_capacity(records.len());
    for (id, mut record) in records {
        let mut interrupted = None;
        let receipt = match (&record.state, &record.receipt) {
            (JobState::Done { receipt, .. }, _) | (JobState::Interrupted, Some(receipt)) => {
                let loaded = store
                    .get_blocking(receipt)
                    .ok()
                    .flatten()
                    .and_then(|bytes| SignedReceipt::from_cbor(&bytes).ok());
                if loaded.is_none() {
                    warn!(job = %id, %receipt, "a finished job's receipt is gone from the store");
                }
                loaded
            }
            (
                JobState::Failed { .. } | JobState::ModuleTooComplex { .. } | JobState::Interrupted,
                _,
            ) => None,
            (JobState::Queued | JobState::Fetching | JobState::Running, _) => {
                record.state = JobState::Interrupted;
                record.updated_ms = now_ms();
                interrupted = record.started.take();
                db.put_job(&id, &record, &[])?;
                None
            }
        };
        restored.push(Restored {
            id,
            requester: record.requester,
            state: record.state,
            receipt,
            interrupted,
        });
    }
    let drafts: Vec<Draft> = restored
        .iter()
        .filter_map(|r| r.receipt.as_ref().map(Draft::worked))
        .collect();
    let appended = db.append_ledger(&drafts)?;
    if appended > 0 {
        tracing::info!(appended, "finished jobs entered in the work ledger");
    }
    Ok(restored)
}

/// A job this node ran (or is running), as its record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RanJob {
    /// The job.
    pub id: JobId,
    /// Who submitted it.
    pub requester: PeerId,
    /// Its state when the record was last written.
    pub state: JobState,
    /// When that was, ms since the Unix epoch.
    pub updated_ms: u64,
}

/// The jobs this node's worker recorded, newest first (blocking).
///
/// # Errors
/// The state database cannot be read.
pub fn ran_blocking(store: &BlockStore) -> Result<Vec<RanJob>, StoreError> {
    let mut ran: Vec<RanJob> = store
        .state_blocking()?
        .jobs::<JobRecord>()?
        .into_iter()
        .map(|(id, r)| RanJob {
            id,
            requester: r.requester,
            state: r.state,
            updated_ms: r.updated_ms,
        })
        .collect();
    ran.sort_by_key(|r| std::cmp::Reverse(r.updated_ms));
    Ok(ran)
}
