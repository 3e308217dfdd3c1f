//! The requester's record of every job it submits, owned here: written
//! before the first request leaves, updated when a worker accepts the job
//! and when the submission ends, kept in the state database
//! ([`crate::store::state`]) so that a requester killed mid-submit finds
//! the job again after a restart and can resume it.
//!
//! Records written by earlier versions (a bare [`SubmitReport`] in the
//! database) still read, as finished jobs; the JSON files under
//! `<data-dir>/jobs/` that older versions wrote are moved into the
//! database once, when a node or command first opens the data dir
//! ([`Records::migrate_legacy`]).

use std::path::Path;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use phase_protocol::job::JobId;
use phase_protocol::{JobSpec, Message};

use super::report::{Audit, SubmitReport};
use crate::now_ms;
use crate::store::ledger::Draft;
use crate::store::{BlockStore, StoreError};

/// Folder of the data dir where earlier versions recorded the jobs
/// submitted from it (one JSON file each; migrated into the database).
const LEGACY_DIR: &str = "jobs";

/// Where a submitted job is, as the requester last wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Progress {
    /// Recorded; no worker has accepted it yet.
    Submitting,
    /// Accepted by these workers; waiting for their receipts.
    Running,
    /// Every replica's receipt verified and result fetched.
    Done {
        /// What the submission produced.
        report: Box<SubmitReport>,
    },
    /// The submission failed.
    Failed {
        /// Why, one line.
        error: String,
    },
}

impl Progress {
    /// Whether the submission ended (done or failed).
    #[must_use]
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Done { .. } | Self::Failed { .. })
    }
}

/// The requester's record of one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id (the CID of its spec).
    pub job: JobId,
    /// The spec, so that the job can be resumed and its receipts checked.
    pub spec: JobSpec,
    /// Replicas asked for.
    pub replicas: usize,
    /// The worker it was submitted to by name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<PeerId>,
    /// Workers that accepted it, in order.
    pub accepted: Vec<PeerId>,
    /// When it was submitted, ms since the Unix epoch.
    pub submitted_ms: u64,
    /// When the record was last written, ms since the Unix epoch.
    pub updated_ms: u64,
    /// Where it is.
    #[serde(flatten)]
    pub progress: Progress,
}

impl JobRecord {
    /// A new record of `spec`, not yet sent to any worker.
    #[must_use]
    pub fn new(spec: &JobSpec, replicas: usize, worker: Option<PeerId>) -> Self {
        let now = now_ms();
        Self {
            job: spec.id(),
            spec: spec.clone(),
            replicas,
            worker,
            accepted: Vec::new(),
            submitted_ms: now,
            updated_ms: now,
            progress: Progress::Submitting,
        }
    }

    /// What the record holds pinned: the spec's block, and each receipt,
    /// result and new state (and log) once the job is done, an audit's
    /// too (with the first run's, the evidence of a failed one).
    #[must_use]
    pub fn roots(&self) -> Vec<phase_protocol::Cid> {
        let mut roots = vec![self.job.0];
        if let Some(report) = self.report() {
            for r in report.runs() {
                roots.push(r.receipt.cid());
                roots.push(r.receipt.receipt().result);
                if let Some(t) = &r.receipt.receipt().state {
                    roots.push(t.after);
                    roots.extend(t.log);
                }
            }
        }
        roots
    }

    /// The ledger's entries of the receipts the record holds: each verified
    /// run, the first with the audit's outcome if it was audited.
    #[must_use]
    pub fn ledger(&self) -> Vec<Draft> {
        let Some(report) = self.report() else {
            return Vec::new();
        };
        let outcome = report.audit.as_ref().and_then(Audit::outcome);
        report
            .runs()
            .enumerate()
            .map(|(i, r)| Draft::received(&r.receipt, outcome.filter(|_| i == 0)))
            .collect()
    }

    /// The final report, if the job is done.
    #[must_use]
    pub fn report(&self) -> Option<&SubmitReport> {
        match &self.progress {
            Progress::Done { report } => Some(report),
            _ => None,
        }
    }
}

/// A record as stored: this version's, or a bare report an earlier
/// version wrote when a submission ended.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Record(Box<JobRecord>),
    Report(Box<SubmitReport>),
}

impl Stored {
    /// The record; an earlier version's report has no spec, so it reads as
    /// `None` here and is served by [`Records::report`] alone.
    fn into_record(self) -> Option<JobRecord> {
        match self {
            Self::Record(r) => Some(*r),
            Self::Report(_) => None,
        }
    }
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The store or its state database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A legacy record file cannot be read.
    #[error("cannot read {}", path.display())]
    Legacy {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A legacy record file is corrupt.
    #[error("{} is corrupt", path.display())]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The requester's records, in the node's state database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Records {
    store: BlockStore,
}

impl Records {
    /// The records kept in `store`'s state database.
    #[must_use]
    pub fn new(store: BlockStore) -> Self {
        Self { store }
    }

    /// Writes `record` (durable when this returns), stamping it.
    ///
    /// # Errors
    /// The state database failed.
    pub async fn put(&self, record: &mut JobRecord) -> Result<(), RecordError> {
        record.updated_ms = now_ms().max(record.updated_ms);
        // The record holds its spec's block (a daemon resumes from it) and
        // each receipt and result pinned: `gc` keeps what `receipt`,
        // `status` and `get` of the result need. No `gc` of this process
        // runs between looking for the spec's block and pinning it: the
        // block a `submit` stored may have lost its lease (the command was
        // killed), and a `gc` in between lost it (the hour-long chaos run
        // found 2 specs of 31,163 pinned roots missing this way).
        let _writing = self.store.writing().await;
        // The spec's block and each receipt's go in the record's own commit
        // where the store keeps small blocks inline (one fsync for all).
        let mut blocks = vec![(record.job.0, bytes::Bytes::from(record.spec.encode()))];
        if let Some(report) = record.report() {
            blocks.extend(
                report
                    .runs()
                    .map(|r| (r.receipt.cid(), bytes::Bytes::from(r.receipt.to_cbor()))),
            );
        }
        let (roots, entries) = (record.roots(), record.ledger());
        let (store, record) = (self.store.clone(), record.clone());
        tokio::task::spawn_blocking(move || {
            store.put_with_state_blocking(blocks, |db, blocks| {
                db.put_submitted(&record.job, &record, &roots, &entries, blocks)
            })
        })
        .await
        .map_err(StoreError::from)??;
        Ok(())
    }

    /// The record of `job`, if it was submitted from here (and written by
    /// this version).
    ///
    /// # Errors
    /// The state database failed, or the record does not decode.
    pub async fn get(&self, job: JobId) -> Result<Option<JobRecord>, RecordError> {
        Ok(self.stored(job).await?.and_then(Stored::into_record))
    }

    /// The final report of `job`, from this version's record or an earlier
    /// version's.
    ///
    /// # Errors
    /// The state database failed, or a record does not decode.
    pub async fn report(&self, job: JobId) -> Result<Option<SubmitReport>, RecordError> {
        Ok(match self.stored(job).await? {
            Some(Stored::Record(r)) => r.report().cloned(),
            Some(Stored::Report(report)) => Some(*report),
            None => None,
        })
    }

    /// Moves the JSON records older versions wrote under
    /// `data_dir/jobs/` into the database (as the bare reports they are),
    /// each file removed once its row is committed, then the folder; how
    /// many moved. Nothing to do (one `stat`) once done.
    ///
    /// # Errors
    /// A file that cannot be read or is corrupt (it stays, named), or the
    /// state database failed.
    pub async fn migrate_legacy(&self, data_dir: &Path) -> Result<usize, RecordError> {
        let dir = data_dir.join(LEGACY_DIR);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || migrate(&store, &dir))
            .await
            .map_err(StoreError::from)?
    }

    /// Every record this version wrote, newest first.
    ///
    /// # Errors
    /// The state database failed.
    pub async fn list(&self) -> Result<Vec<JobRecord>, RecordError> {
        let store = self.store.clone();
        let rows = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            Ok(store.state_blocking()?.all_submitted::<Stored>()?)
        })
        .await
        .map_err(StoreError::from)??;
        let mut records: Vec<JobRecord> = rows
            .into_iter()
            .filter_map(|(_, stored)| stored.and_then(Stored::into_record))
            .collect();
        records.sort_by_key(|r| std::cmp::Reverse(r.submitted_ms));
        Ok(records)
    }

    async fn stored(&self, job: JobId) -> Result<Option<Stored>, RecordError> {
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            Ok(store.state_blocking()?.submitted::<Stored>(&job)?)
        })
        .await
        .map_err(StoreError::from)??;
        Ok(stored)
    }
}

fn migrate(store: &BlockStore, dir: &Path) -> Result<usize, RecordError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(RecordError::Legacy {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let legacy = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecordError::Legacy { path, source }
    };
    let mut moved = 0;
    for entry in entries {
        let path = entry.map_err(legacy(dir))?.path();
        let Some(job) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<JobId>().ok())
            .filter(|_| path.extension().is_some_and(|e| e == "json"))
        else {
            continue;
        };
        // Another command may be moving the same file.
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(legacy(&path)(e)),
        };
        let report: SubmitReport =
            serde_json::from_slice(&bytes).map_err(|source| RecordError::Corrupt {
                path: path.clone(),
                source,
            })?;
        let state = store.state_blocking()?;
        if state
            .submitted::<Stored>(&job)
            .map_err(StoreError::from)?
            .is_none()
        {
            state
                .put_submitted_legacy(&job, &report)
                .map_err(StoreError::from)?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(legacy(&path)(e)),
        }
        moved += 1;
    }
    // Gone once empty (anything else a user put there stays).
    let _ = std::fs::remove_dir(dir);
    if moved > 0 {
        tracing::info!(
            moved,
            "moved the job records of an earlier version into the state database"
        );
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::cid::raw_cid;

    #[tokio::test]
    async fn a_record_goes_from_submitting_to_done_and_lists_newest_first() {
        let records = Records::new(BlockStore::memory());
        let first = JobSpec::new(raw_cid(b"a"));
        let mut a = JobRecord::new(&first, 1, None);
        records.put(&mut a).await.unwrap();
        let mut second = JobSpec::new(raw_cid(b"b"));
        second.nonce = 7;
        let mut b = JobRecord::new(&second, 1, None);
        b.submitted_ms = a.submitted_ms + 1;
        records.put(&mut b).await.unwrap();
        let got = records.get(a.job).await.unwrap().unwrap();
        assert_eq!(got.progress, Progress::Submitting);
        assert_eq!(got.spec, first);
        let worker = PeerId::random();
        a.accepted.push(worker);
        a.progress = Progress::Running;
        records.put(&mut a).await.unwrap();
        let report = SubmitReport {
            job: a.job,
            results: vec![],
            failed_attempts: vec![],
            agreement: None,
            audit: None,
        };
        a.progress = Progress::Done {
            report: Box::new(report.clone()),
        };
        records.put(&mut a).await.unwrap();
        assert_eq!(records.report(a.job).await.unwrap(), Some(report));
        let listed: Vec<JobId> = records
            .list()
            .await
            .unwrap()
            .iter()
            .map(|r| r.job)
            .collect();
        assert_eq!(listed, vec![b.job, a.job]);
        assert_eq!(
            records.get(a.job).await.unwrap().unwrap().accepted,
            vec![worker]
        );
    }

    #[tokio::test]
    async fn an_earlier_versions_bare_report_still_reads() {
        let store = BlockStore::memory();
        let spec = JobSpec::new(raw_cid(b"old"));
        let report = SubmitReport {
            job: spec.id(),
            results: vec![],
            failed_attempts: vec![],
            agreement: None,
            audit: None,
        };
        store
            .state()
            .await
            .unwrap()
            .put_submitted_legacy(&spec.id(), &report)
            .unwrap();
        let records = Records::new(store);
        assert_eq!(records.report(spec.id()).await.unwrap(), Some(report));
        assert!(records.get(spec.id()).await.unwrap().is_none());
        assert!(records.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_json_records_of_older_versions_move_into_the_database_once() {
        let data = tempfile::tempdir().unwrap();
        let store = BlockStore::memory();
        let spec = JobSpec::new(raw_cid(b"older"));
        let report = SubmitReport {
            job: spec.id(),
            results: vec![],
            failed_attempts: vec![],
            agreement: None,
            audit: None,
        };
        let dir = data.path().join(LEGACY_DIR);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{}.json", spec.id())),
            serde_json::to_vec(&report).unwrap(),
        )
        .unwrap();
        let records = Records::new(store);
        assert_eq!(
            records.report(spec.id()).await.unwrap(),
            None,
            "not read from files"
        );
        assert_eq!(records.migrate_legacy(data.path()).await.unwrap(), 1);
        assert!(!dir.exists(), "the folder is gone once moved");
        assert_eq!(records.report(spec.id()).await.unwrap(), Some(report));
        assert_eq!(records.migrate_legacy(data.path()).await.unwrap(), 0);

        // A corrupt file is named and stays.
        std::fs::create_dir(&dir).unwrap();
        let bad = dir.join(format!("{}.json", JobSpec::new(raw_cid(b"bad")).id()));
        std::fs::write(&bad, b"{not json").unwrap();
        let err = records.migrate_legacy(data.path()).await.unwrap_err();
        assert!(matches!(err, RecordError::Corrupt { .. }), "{err}");
        assert!(bad.exists());
    }
}
