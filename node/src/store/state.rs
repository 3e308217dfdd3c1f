//! What must survive a restart besides blocks, in one embedded
//! transactional database (redb, as iroh-blobs uses: pure Rust, ACID, one
//! file) at `<store>/state.redb`:
//! - **pins with their owners**: a user's pins in one table, and each kept
//!   job's receipt and result held by the job's record itself; a root stays
//!   pinned while any owner holds it, so a job's retention ending never
//!   unpins what a user pinned by hand (or another job kept);
//! - **the worker's job records** (state, receipt, requester, times, and
//!   the roots the job holds pinned), one row each: writing or forgetting a
//!   job is one insert or remove;
//! - **the requester's records** of the jobs it submitted;
//! - **the work ledger** ([`super::ledger`]), each entry appended in the
//!   transaction of the record that holds its receipt.
//!
//! Values are opaque serialized bytes to this module: the worker and the
//! requester own their record types. Every write is one transaction that
//! is durable when it returns, so a SIGKILL loses nothing committed.
//! Calls are blocking: callers run them on the blocking pool.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use phase_protocol::Cid;
use phase_protocol::job::JobId;
use phase_protocol::ledger::Entry;

use super::ledger::{self, Draft, Summary, Totals};

/// Roots (CID bytes) a user pinned.
const PINS: TableDefinition<&[u8], ()> = TableDefinition::new("user_pins");
/// Job id → the roots it holds pinned and the worker's record of it
/// ([`encode_job`]).
const WORKER_JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("worker_jobs");
/// Job id → the requester's record of it, as earlier versions wrote it
/// (bare JSON, no roots); still read.
const SUBMITTED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("submitted");
/// Job id → the roots the requester's record holds pinned (the spec, each
/// receipt and result) and the record ([`encode_job`]).
const REQUESTER_JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("requester_jobs");

/// Why the state database failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database itself (open, transaction, table, commit).
    #[error("state database")]
    Db(#[from] redb::Error),
    /// Another process holds the database: a daemon runs on this data dir.
    #[error(
        "the state database is in use by another process (is a daemon running on this data dir?)"
    )]
    InUse,
    /// A new database file cannot be made.
    #[error("cannot create the state database {}", path.display())]
    Create {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stored record does not decode.
    #[error("a stored record does not decode")]
    Record(#[source] serde_json::Error),
    /// A stored job row is cut short.
    #[error("a stored job row is damaged")]
    Row,
    /// A stored CID does not decode.
    #[error("a stored CID does not decode")]
    Cid(#[source] cid::Error),
    /// The group commit this write joined failed (`super::group`; the
    /// cause, one line).
    #[error("state database commit failed: {0}")]
    Group(String),
}

pub(super) fn db_error(e: impl Into<redb::Error>) -> StateError {
    StateError::Db(e.into())
}

/// Applies the worker's `writes` in `txn`, with the ledger entries they
/// carry.
fn apply_job_writes(txn: &redb::WriteTransaction, writes: &[JobWrite]) -> Result<(), StateError> {
    let mut drafts = Vec::new();
    {
        let mut jobs = txn.open_table(WORKER_JOBS).map_err(db_error)?;
        for write in writes {
            match write {
                JobWrite::Put {
                    id,
                    record,
                    roots,
                    ledger,
                } => {
                    drafts.extend(ledger.as_deref().cloned());
                    let value = encode_job(roots, record);
                    jobs.insert(id.0.to_bytes().as_slice(), value.as_slice())
                        .map_err(db_error)?;
                }
                JobWrite::Forget(id) => {
                    jobs.remove(id.0.to_bytes().as_slice()).map_err(db_error)?;
                }
            }
        }
    }
    ledger::append(txn, &drafts)?;
    Ok(())
}

/// One change to the worker's job records.
#[derive(Clone, Debug)]
pub enum JobWrite {
    /// Write a job's record (serialized) and pin `roots` for it.
    Put {
        /// The job.
        id: JobId,
        /// Its record, as the worker serializes it.
        record: Vec<u8>,
        /// Blocks the job holds pinned from now on.
        roots: Vec<Cid>,
        /// The ledger's entry of the receipt the record holds, if it holds
        /// one (appended once, whatever the writes of the record).
        ledger: Option<Box<Draft>>,
    },
    /// Drop a job's record and its pins.
    Forget(JobId),
}

/// Handle to the state database. Cheap to clone.
#[derive(Clone)]
pub struct StateDb {
    db: Arc<Database>,
    /// Groups the writes of this process's threads into shared commits.
    group: Arc<super::group::GroupCommit>,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").finish_non_exhaustive()
    }
}

impl StateDb {
    /// Opens (creating if needed) the database file at `path`.
    ///
    /// # Errors
    /// [`StateError::InUse`] when another process has it open, else a
    /// database error.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if !path.exists() {
            Self::create(path)?;
        }
        match Database::open(path) {
            Ok(db) => Ok(Self::init(db)?),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(StateError::InUse),
            Err(e) => Err(db_error(e)),
        }
    }

    /// Makes a new database file at `path` whole or not at all: built in a
    /// temp file beside it, fsynced, and linked into place (a process
    /// killed while creating it leaves no half-made file that every later
    /// open would refuse). Someone else creating it first is fine.
    fn create(path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Create {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = tempfile::Builder::new()
            .prefix(".state-")
            .tempfile_in(dir)
            .map_err(io)?;
        // redb initializes an empty file.
        let made = Database::create(tmp.path()).map_err(db_error)?;
        Self::init(made)?;
        tmp.as_file().sync_all().map_err(io)?;
        match tmp.persist_noclobber(path) {
            Ok(_) => Ok(()),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io(e.error)),
        }
    }

    /// A database in memory (for memory stores).
    ///
    /// # Errors
    /// A database error.
    pub fn memory() -> Result<Self, StateError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db_error)?;
        Self::init(db)
    }

    /// Creates the tables, so reads never meet a missing one (no commit,
    /// and no fsync, when they all exist: a command opens the database for
    /// each use).
    fn init(db: Database) -> Result<Self, StateError> {
        use redb::TableHandle;
        let names = [
            PINS.name(),
            WORKER_JOBS.name(),
            SUBMITTED.name(),
            REQUESTER_JOBS.name(),
            ledger::LEDGER.name(),
            ledger::LEDGER_RECEIPTS.name(),
            ledger::LEDGER_PEERS.name(),
            super::inline::INLINE_BLOCKS.name(),
        ];
        let existing: Vec<String> = db
            .begin_read()
            .map_err(db_error)?
            .list_tables()
            .map_err(db_error)?
            .map(|t| t.name().to_owned())
            .collect();
        if names.iter().all(|n| existing.iter().any(|e| e == n)) {
            return Ok(Self::with(db));
        }
        let txn = db.begin_write().map_err(db_error)?;
        txn.open_table(PINS).map_err(db_error)?;
        txn.open_table(WORKER_JOBS).map_err(db_error)?;
        txn.open_table(SUBMITTED).map_err(db_error)?;
        txn.open_table(REQUESTER_JOBS).map_err(db_error)?;
        txn.open_table(ledger::LEDGER).map_err(db_error)?;
        txn.open_table(ledger::LEDGER_RECEIPTS).map_err(db_error)?;
        txn.open_table(ledger::LEDGER_PEERS).map_err(db_error)?;
        txn.open_table(super::inline::INLINE_BLOCKS)
            .map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        Ok(Self::with(db))
    }

    fn with(db: Database) -> Self {
        Self {
            db: Arc::new(db),
            group: Arc::default(),
        }
    }

    /// Applies `write` in the next group commit ([`super::group`]),
    /// durable when this returns. Blocking.
    ///
    /// # Errors
    /// The group's commit failed (then none of its writes is applied).
    pub(super) fn grouped(&self, write: super::group::Write) -> Result<(), StateError> {
        self.group.write(&self.db, write)
    }

    /// The database, for the store's own tables ([`super::inline`]).
    pub(super) fn raw(&self) -> &Database {
        &self.db
    }

    /// Pins `cid` for the user (again is a no-op).
    ///
    /// # Errors
    /// A database error.
    pub fn pin(&self, cid: &Cid) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut pins = txn.open_table(PINS).map_err(db_error)?;
            pins.insert(cid.to_bytes().as_slice(), ())
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }

    /// Drops the user's pin of `cid`; returns whether there was one. The
    /// root stays pinned while a kept job holds it.
    ///
    /// # Errors
    /// A database error.
    pub fn unpin(&self, cid: &Cid) -> Result<bool, StateError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let removed = {
            let mut pins = txn.open_table(PINS).map_err(db_error)?;
            pins.remove(cid.to_bytes().as_slice())
                .map_err(db_error)?
                .is_some()
        };
        txn.commit().map_err(db_error)?;
        Ok(removed)
    }

    /// Every pinned root, whoever holds it (a user, a kept job, or the
    /// ledger its receipts), sorted.
    ///
    /// # Errors
    /// A database error, or a stored CID that does not decode.
    pub fn pins(&self) -> Result<Vec<Cid>, StateError> {
        let mut all = self.user_pins()?;
        let txn = self.db.begin_read().map_err(db_error)?;
        for table in [WORKER_JOBS, REQUESTER_JOBS] {
            let jobs = txn.open_table(table).map_err(db_error)?;
            for entry in jobs.iter().map_err(db_error)? {
                let (_, value) = entry.map_err(db_error)?;
                all.extend(decode_job(value.value())?.0);
            }
        }
        all.extend(ledger::receipts(&txn)?);
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// The roots a user pinned.
    ///
    /// # Errors
    /// A database error, or a stored CID that does not decode.
    pub fn user_pins(&self) -> Result<Vec<Cid>, StateError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let pins = txn.open_table(PINS).map_err(db_error)?;
        let mut out = Vec::new();
        for entry in pins.iter().map_err(db_error)? {
            let (cid, _) = entry.map_err(db_error)?;
            out.push(Cid::try_from(cid.value()).map_err(StateError::Cid)?);
        }
        Ok(out)
    }

    /// Writes the worker's `record` of job `id` and, in the same
    /// transaction, pins `roots` for the job.
    ///
    /// # Errors
    /// A database error.
    pub fn put_job<T: Serialize>(
        &self,
        id: &JobId,
        record: &T,
        roots: &[Cid],
    ) -> Result<(), StateError> {
        let record = serde_json::to_vec(record).map_err(StateError::Record)?;
        self.write_jobs(&[JobWrite::Put {
            id: *id,
            record,
            roots: roots.to_vec(),
            ledger: None,
        }])
    }

    /// Forgets the worker's record of job `id` and drops the job's pins, in
    /// one transaction.
    ///
    /// # Errors
    /// A database error.
    pub fn forget_job(&self, id: &JobId) -> Result<(), StateError> {
        self.write_jobs(&[JobWrite::Forget(*id)])
    }

    /// Applies `writes` in order, in one transaction (one commit for many
    /// jobs: a worker under load groups its records), with the ledger
    /// entries they carry.
    ///
    /// # Errors
    /// A database error; then none of them is applied.
    pub fn write_jobs(&self, writes: &[JobWrite]) -> Result<(), StateError> {
        let writes = writes.to_vec();
        self.grouped(Box::new(move |txn| apply_job_writes(txn, &writes)))
    }

    /// Every worker job record.
    ///
    /// # Errors
    /// A database error, or a record that does not decode.
    pub fn jobs<T: DeserializeOwned>(&self) -> Result<Vec<(JobId, T)>, StateError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let jobs = txn.open_table(WORKER_JOBS).map_err(db_error)?;
        let mut out = Vec::new();
        for entry in jobs.iter().map_err(db_error)? {
            let (key, value) = entry.map_err(db_error)?;
            let id = JobId(Cid::try_from(key.value()).map_err(StateError::Cid)?);
            let (_, record) = decode_job(value.value())?;
            let record = serde_json::from_slice(record).map_err(StateError::Record)?;
            out.push((id, record));
        }
        Ok(out)
    }

    /// Writes the requester's `record` of job `id` and, in the same
    /// transaction, pins `roots` for it (instead of what it pinned before)
    /// and appends the ledger's entries of the receipts it holds (those not
    /// in the ledger yet), and stores `blocks` (small ones, checked: the
    /// spec and receipts the record pins) as inline blocks.
    ///
    /// # Errors
    /// A database error.
    pub fn put_submitted<T: Serialize>(
        &self,
        id: &JobId,
        record: &T,
        roots: &[Cid],
        entries: &[Draft],
        blocks: Vec<(Cid, bytes::Bytes)>,
    ) -> Result<(), StateError> {
        let record = serde_json::to_vec(record).map_err(StateError::Record)?;
        let value = encode_job(roots, &record);
        let (key, entries) = (id.0.to_bytes(), entries.to_vec());
        self.grouped(Box::new(move |txn| {
            {
                let mut table = txn.open_table(REQUESTER_JOBS).map_err(db_error)?;
                table
                    .insert(key.as_slice(), value.as_slice())
                    .map_err(db_error)?;
                let mut old = txn.open_table(SUBMITTED).map_err(db_error)?;
                old.remove(key.as_slice()).map_err(db_error)?;
            }
            ledger::append(txn, &entries)?;
            super::inline::insert(txn, &blocks)
        }))
    }

    /// Appends the ledger's entries of receipts not in it yet (a worker's
    /// finished jobs on start, written before the ledger was); how many.
    ///
    /// # Errors
    /// A database error; then none is appended.
    pub fn append_ledger(&self, entries: &[Draft]) -> Result<usize, StateError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let appended = ledger::append(&txn, entries)?;
        txn.commit().map_err(db_error)?;
        Ok(appended)
    }

    /// The ledger's totals, per peer and over all.
    ///
    /// # Errors
    /// A database error, or a row that does not decode.
    pub fn ledger_summary(&self) -> Result<Summary, StateError> {
        ledger::summary(&self.db.begin_read().map_err(db_error)?)
    }

    /// What the ledger says of `peer`.
    ///
    /// # Errors
    /// A database error, or a row that does not decode.
    pub fn ledger_totals(&self, peer: &libp2p::PeerId) -> Result<Totals, StateError> {
        ledger::totals_of(&self.db.begin_read().map_err(db_error)?, peer)
    }

    /// Every ledger entry, oldest first.
    ///
    /// # Errors
    /// A database error, or an entry that does not decode.
    pub fn ledger_entries(&self) -> Result<Vec<Entry>, StateError> {
        ledger::entries(&self.db.begin_read().map_err(db_error)?)
    }

    /// The newest `limit` ledger entries, newest first.
    ///
    /// # Errors
    /// A database error, or an entry that does not decode.
    pub fn ledger_recent(&self, limit: usize) -> Result<Vec<Entry>, StateError> {
        ledger::recent(&self.db.begin_read().map_err(db_error)?, limit)
    }

    /// Writes a requester record as earlier versions did: a bare report,
    /// no pins (the migration of their JSON files, and tests).
    pub(crate) fn put_submitted_legacy<T: Serialize>(
        &self,
        id: &JobId,
        record: &T,
    ) -> Result<(), StateError> {
        let value = serde_json::to_vec(record).map_err(StateError::Record)?;
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(SUBMITTED).map_err(db_error)?;
            table
                .insert(id.0.to_bytes().as_slice(), value.as_slice())
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }

    /// The requester's record of job `id`, if it submitted it.
    ///
    /// # Errors
    /// A database error, or a record that does not decode.
    pub fn submitted<T: DeserializeOwned>(&self, id: &JobId) -> Result<Option<T>, StateError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let key = id.0.to_bytes();
        let table = txn.open_table(REQUESTER_JOBS).map_err(db_error)?;
        if let Some(value) = table.get(key.as_slice()).map_err(db_error)? {
            let (_, record) = decode_job(value.value())?;
            return Ok(Some(
                serde_json::from_slice(record).map_err(StateError::Record)?,
            ));
        }
        let old = txn.open_table(SUBMITTED).map_err(db_error)?;
        match old.get(key.as_slice()).map_err(db_error)? {
            Some(value) => Ok(Some(
                serde_json::from_slice(value.value()).map_err(StateError::Record)?,
            )),
            None => Ok(None),
        }
    }

    /// Every requester record, each decoded or `None` where it does not
    /// decode (logged: one bad row does not hide the others).
    ///
    /// # Errors
    /// A database error, or a stored key that is not a CID.
    pub fn all_submitted<T: DeserializeOwned>(
        &self,
    ) -> Result<Vec<(JobId, Option<T>)>, StateError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let mut out = Vec::new();
        for (table, rooted) in [(REQUESTER_JOBS, true), (SUBMITTED, false)] {
            let table = txn.open_table(table).map_err(db_error)?;
            for entry in table.iter().map_err(db_error)? {
                let (key, value) = entry.map_err(db_error)?;
                let id = JobId(Cid::try_from(key.value()).map_err(StateError::Cid)?);
                let bytes = if rooted {
                    decode_job(value.value())?.1
                } else {
                    value.value()
                };
                let record = serde_json::from_slice(bytes)
                    .inspect_err(
                        |e| tracing::warn!(job = %id, error = %e, "a job record does not decode"),
                    )
                    .ok();
                out.push((id, record));
            }
        }
        Ok(out)
    }
}

/// A job's row: the number of roots, each root's CID (length-prefixed),
/// then the worker's record.
fn encode_job(roots: &[Cid], record: &[u8]) -> Vec<u8> {
    let mut buf = unsigned_varint::encode::u64_buffer();
    let mut out = unsigned_varint::encode::u64(roots.len() as u64, &mut buf).to_vec();
    for root in roots {
        let bytes = root.to_bytes();
        out.extend_from_slice(unsigned_varint::encode::u64(bytes.len() as u64, &mut buf));
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(record);
    out
}

/// [`encode_job`] undone: the roots and the record's bytes.
fn decode_job(row: &[u8]) -> Result<(Vec<Cid>, &[u8]), StateError> {
    let bad = |_| StateError::Row;
    let (n, mut rest) = unsigned_varint::decode::u64(row).map_err(bad)?;
    let mut roots = Vec::new();
    for _ in 0..n {
        let (len, tail) = unsigned_varint::decode::u64(rest).map_err(bad)?;
        let len = usize::try_from(len).map_err(|_| StateError::Row)?;
        let cid = tail.get(..len).ok_or(StateError::Row)?;
        roots.push(Cid::try_from(cid).map_err(StateError::Cid)?);
        rest = &tail[len..];
    }
    Ok((roots, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::cid::raw_cid;

    fn job(n: u8) -> JobId {
        JobId(phase_protocol::cid::cid_of(0x71, &[n]))
    }

    #[test]
    fn a_root_stays_pinned_while_any_owner_holds_it() {
        let db = StateDb::memory().unwrap();
        let x = raw_cid(b"x");
        db.pin(&x).unwrap();
        db.put_job(&job(1), &"done", &[x, raw_cid(b"receipt")])
            .unwrap();
        assert_eq!(db.pins().unwrap().len(), 2);
        assert_eq!(db.jobs::<String>().unwrap(), vec![(job(1), "done".into())]);
        // Retention forgets the job: the user's pin of x stays.
        db.forget_job(&job(1)).unwrap();
        assert_eq!(db.pins().unwrap(), vec![x]);
        assert_eq!(db.user_pins().unwrap(), vec![x]);
        assert!(db.jobs::<String>().unwrap().is_empty());
        assert!(db.unpin(&x).unwrap());
        assert!(!db.unpin(&x).unwrap());
        assert!(db.pins().unwrap().is_empty());
    }

    #[test]
    fn two_jobs_with_one_result_keep_it_until_both_are_forgotten() {
        let db = StateDb::memory().unwrap();
        let r = raw_cid(b"result");
        db.put_job(&job(1), &1, &[r]).unwrap();
        db.put_job(&job(2), &2, &[r]).unwrap();
        db.forget_job(&job(1)).unwrap();
        assert_eq!(db.pins().unwrap(), vec![r]);
        assert!(db.user_pins().unwrap().is_empty());
        assert_eq!(db.jobs::<u32>().unwrap(), vec![(job(2), 2)]);
        db.forget_job(&job(2)).unwrap();
        assert!(db.pins().unwrap().is_empty());
    }

    #[test]
    fn records_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let db = StateDb::open(&path).unwrap();
            db.put_job(&job(1), &"running", &[]).unwrap();
            db.put_submitted(&job(2), &"report", &[raw_cid(b"r")], &[], Vec::new())
                .unwrap();
            db.pin(&raw_cid(b"x")).unwrap();
            assert!(matches!(StateDb::open(&path), Err(StateError::InUse)));
        }
        let db = StateDb::open(&path).unwrap();
        assert_eq!(
            db.jobs::<String>().unwrap(),
            vec![(job(1), "running".into())]
        );
        assert_eq!(
            db.submitted::<String>(&job(2)).unwrap().as_deref(),
            Some("report")
        );
        assert_eq!(db.submitted::<String>(&job(3)).unwrap(), None);
        assert_eq!(db.user_pins().unwrap(), vec![raw_cid(b"x")]);
    }
}
