//! Group commit of the state database: every write that arrives while a
//! commit runs joins the next one, so many jobs writing at once (their
//! records, receipts, small blocks) share one commit and one fsync instead
//! of queueing for one each. A lone write commits at once: nothing waits
//! for company.
//!
//! The writer that finds no commit running commits what is queued, its own
//! write included; the others wait for the commit their writes joined and
//! get its outcome. A group is one transaction: if any of its writes fails,
//! none is applied and every writer of the group gets the error.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, PoisonError};

use redb::{Database, WriteTransaction};

use super::state::{StateError, db_error};

/// One write: applied to the group's transaction.
pub(super) type Write = Box<dyn FnOnce(&WriteTransaction) -> Result<(), StateError> + Send>;

/// Failed commits remembered for the writers that wait on them.
const FAILURES_KEPT: usize = 64;

/// The group committer of one database.
#[derive(Default)]
pub(super) struct GroupCommit {
    queue: Mutex<Queue>,
    committed: Condvar,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Queue {
    /// Writes waiting for the next commit.
    pending: Vec<Write>,
    /// The number of the commit `pending` goes into.
    next: u64,
    /// Commits ended (committed or failed): 1..=done.
    done: u64,
    /// Whether a writer is committing now.
    committing: bool,
    /// Why recent commits failed, by number.
    failures: BTreeMap<u64, String>,
}

impl GroupCommit {
    /// Applies `write` in a commit of `db`, durable when this returns.
    /// Blocking.
    pub(super) fn write(&self, db: &Database, write: Write) -> Result<(), StateError> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.pending.push(write);
        let mine = queue.next + 1;
        loop {
            if queue.done >= mine {
                return match queue.failures.get(&mine) {
                    None => Ok(()),
                    Some(reason) => Err(StateError::Group(reason.clone())),
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
            let result = commit(db, batch);
            queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.committing = false;
            queue.done = number;
            if let Err(e) = result {
                tracing::warn!(error = %crate::error_line(&e), "state database commit failed");
                queue.failures.insert(number, crate::error_line(&e));
                while queue.failures.len() > FAILURES_KEPT {
                    queue.failures.pop_first();
                }
            }
            self.committed.notify_all();
        }
    }
}

/// One transaction with every write of `batch`, or none of them.
fn commit(db: &Database, batch: Vec<Write>) -> Result<(), StateError> {
    let txn = db.begin_write().map_err(db_error)?;
    for write in batch {
        if let Err(e) = write(&txn) {
            let _ = txn.abort();
            return Err(e);
        }
    }
    txn.commit().map_err(db_error)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use redb::{ReadableDatabase, TableDefinition};

    use super::*;

    const T: TableDefinition<u32, u32> = TableDefinition::new("t");

    fn insert(i: u32) -> Write {
        Box::new(move |txn| {
            txn.open_table(T)
                .map_err(db_error)?
                .insert(i, i * 2)
                .map_err(db_error)?;
            Ok(())
        })
    }

    fn memory() -> Database {
        Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap()
    }

    #[test]
    fn writers_at_once_share_commits_and_each_write_lands() {
        let db = memory();
        let group = Arc::new(GroupCommit::default());
        std::thread::scope(|s| {
            for i in 0..64 {
                let (db, group) = (&db, &group);
                s.spawn(move || group.write(db, insert(i)).unwrap());
            }
        });
        let read = db.begin_read().unwrap();
        let table = read.open_table(T).unwrap();
        for i in 0..64 {
            assert_eq!(table.get(i).unwrap().unwrap().value(), i * 2);
        }
        let queue = group.queue.lock().unwrap();
        assert!(queue.pending.is_empty() && !queue.committing);
        assert!((1..=64).contains(&queue.done), "{} commits", queue.done);
    }

    #[test]
    fn a_failed_write_fails_its_group_and_applies_none_of_it() {
        let db = memory();
        let group = GroupCommit::default();
        group.write(&db, insert(1)).unwrap();
        let failing: Write = Box::new(|txn| {
            txn.open_table(T)
                .map_err(db_error)?
                .insert(2, 4)
                .map_err(db_error)?;
            Err(StateError::Row)
        });
        assert!(matches!(
            group.write(&db, failing),
            Err(StateError::Group(_))
        ));
        let read = db.begin_read().unwrap();
        let table = read.open_table(T).unwrap();
        assert!(table.get(2).unwrap().is_none(), "rolled back");
        assert!(table.get(1).unwrap().is_some());
        drop((table, read));
        group.write(&db, insert(3)).unwrap();
    }
}
