//! Small blocks kept in the state database instead of a file each.
//!
//! A job makes a handful of blocks of a few hundred bytes (its spec, a
//! signed receipt, a small result package), and a file each cost more than
//! the job: on ext4 most of a small job's CPU went to creating inodes
//! (`docs/performance.md`). As iroh-blobs inlines blobs under 16 KiB in
//! its redb database, a block of at most [`INLINE_MAX`] bytes written by
//! the process that holds the state database for good (a daemon, a node
//! of a test) is a row of the `inline_blocks` table; larger blocks, and
//! every block a command writes beside a daemon, stay files. A block can
//! be in both places; reads look in both, `gc` and `delete` clear both.
//!
//! Writes are grouped: every block put while a commit runs joins the next
//! one ([`InlineWriter::put`]), so many jobs ending at once pay one commit
//! (one fsync) between them. A commit is atomic: after a SIGKILL a block
//! is whole or absent.
//!
//! A command beside a daemon cannot open the database (redb is one
//! process's); it reads a DAG the daemon holds inline after asking the
//! daemon to fetch it, which writes the DAG's inline blocks out as files
//! ([`super::BlockStore::export_inline`]).

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, PoisonError};

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use phase_protocol::Cid;

use super::state::{StateDb, StateError, db_error};

/// Largest block kept inline (iroh-blobs' inline threshold).
pub const INLINE_MAX: usize = 16 * 1024;

/// CID bytes → the block.
pub(super) const INLINE_BLOCKS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("inline_blocks");

/// Failed commits remembered for the writers that wait on them.
const FAILURES_KEPT: usize = 64;

/// The group committer of inline blocks; one per store (its clones share it).
#[derive(Debug, Default)]
pub(super) struct InlineWriter {
    queue: Mutex<Queue>,
    committed: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    /// Blocks waiting for the next commit.
    pending: Vec<(Cid, Bytes)>,
    /// The number of the commit `pending` goes into.
    next: u64,
    /// Commits ended (committed or failed): 1..=done.
    done: u64,
    /// Whether a writer is committing now.
    committing: bool,
    /// Why recent commits failed, by number.
    failures: BTreeMap<u64, String>,
}

impl InlineWriter {
    /// Stores `blocks` (already checked against their CIDs) in `db`,
    /// durable when this returns: the caller commits them with every block
    /// queued meanwhile, or waits for the writer committing them.
    /// Blocking.
    pub(super) fn put(&self, db: &StateDb, blocks: Vec<(Cid, Bytes)>) -> Result<(), StateError> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.pending.extend(blocks);
        let mine = queue.next + 1;
        loop {
            if queue.done >= mine {
                return match queue.failures.get(&mine) {
                    None => Ok(()),
                    Some(reason) => Err(StateError::Inline(reason.clone())),
                };
            }
            if queue.committing {
                queue = self
                    .committed
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            queue.committing = true;
            queue.next += 1;
            let number = queue.next;
            let batch = std::mem::take(&mut queue.pending);
            drop(queue);
            let result = write(db, &batch);
            queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.committing = false;
            queue.done = number;
            if let Err(e) = result {
                queue.failures.insert(number, crate::error_line(&e));
                while queue.failures.len() > FAILURES_KEPT {
                    queue.failures.pop_first();
                }
            }
            self.committed.notify_all();
        }
    }
}

/// One transaction with every block of `batch`.
fn write(db: &StateDb, batch: &[(Cid, Bytes)]) -> Result<(), StateError> {
    let txn = db.raw().begin_write().map_err(db_error)?;
    {
        let mut table = txn.open_table(INLINE_BLOCKS).map_err(db_error)?;
        for (cid, data) in batch {
            table
                .insert(cid.to_bytes().as_slice(), &data[..])
                .map_err(db_error)?;
        }
    }
    txn.commit().map_err(db_error)
}

/// The block, if it is inline.
pub(super) fn get(db: &StateDb, cid: &Cid) -> Result<Option<Bytes>, StateError> {
    let txn = db.raw().begin_read().map_err(db_error)?;
    let table = txn.open_table(INLINE_BLOCKS).map_err(db_error)?;
    Ok(table
        .get(cid.to_bytes().as_slice())
        .map_err(db_error)?
        .map(|v| Bytes::copy_from_slice(v.value())))
}

/// Whether the block is inline.
pub(super) fn has(db: &StateDb, cid: &Cid) -> Result<bool, StateError> {
    let txn = db.raw().begin_read().map_err(db_error)?;
    let table = txn.open_table(INLINE_BLOCKS).map_err(db_error)?;
    Ok(table
        .get(cid.to_bytes().as_slice())
        .map_err(db_error)?
        .is_some())
}

/// Every inline block's CID.
pub(super) fn cids(db: &StateDb) -> Result<Vec<Cid>, StateError> {
    let txn = db.raw().begin_read().map_err(db_error)?;
    let table = txn.open_table(INLINE_BLOCKS).map_err(db_error)?;
    let mut cids = Vec::new();
    for row in table.iter().map_err(db_error)? {
        let (key, _) = row.map_err(db_error)?;
        cids.push(Cid::try_from(key.value()).map_err(StateError::Cid)?);
    }
    Ok(cids)
}

/// Removes `cids` in one transaction; which of them were there.
pub(super) fn delete(db: &StateDb, cids: &[Cid]) -> Result<Vec<bool>, StateError> {
    let txn = db.raw().begin_write().map_err(db_error)?;
    let removed = {
        let mut table = txn.open_table(INLINE_BLOCKS).map_err(db_error)?;
        let mut removed = Vec::with_capacity(cids.len());
        for cid in cids {
            removed.push(
                table
                    .remove(cid.to_bytes().as_slice())
                    .map_err(db_error)?
                    .is_some(),
            );
        }
        removed
    };
    txn.commit().map_err(db_error)?;
    Ok(removed)
}

/// Overwrites an inline block without any check (tests of corruption).
#[cfg(test)]
pub(super) fn corrupt(db: &StateDb, cid: &Cid, data: &[u8]) {
    write(db, &[(*cid, Bytes::copy_from_slice(data))]).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_at_once_share_commits_and_each_finds_its_block() {
        let db = StateDb::memory().unwrap();
        let writer = std::sync::Arc::new(InlineWriter::default());
        let blocks: Vec<(Cid, Bytes)> = (0..64u32)
            .map(|i| {
                let data = Bytes::from(i.to_le_bytes().to_vec());
                (phase_protocol::cid::raw_cid(&data), data)
            })
            .collect();
        std::thread::scope(|s| {
            for chunk in blocks.chunks(4) {
                let (db, writer) = (&db, &writer);
                s.spawn(move || writer.put(db, chunk.to_vec()).unwrap());
            }
        });
        for (cid, data) in &blocks {
            assert_eq!(get(&db, cid).unwrap().as_ref(), Some(data));
        }
        let mut all = cids(&db).unwrap();
        all.sort();
        let mut expected: Vec<Cid> = blocks.iter().map(|(c, _)| *c).collect();
        expected.sort();
        assert_eq!(all, expected);
        let queue = writer.queue.lock().unwrap();
        assert!(queue.pending.is_empty() && !queue.committing);
        assert!(
            queue.done >= 1 && queue.done <= 16,
            "{} commits",
            queue.done
        );
        drop(queue);
        assert_eq!(
            delete(&db, &[blocks[0].0, blocks[0].0]).unwrap(),
            [true, false]
        );
        assert!(!has(&db, &blocks[0].0).unwrap());
        assert!(has(&db, &blocks[1].0).unwrap());
    }
}
