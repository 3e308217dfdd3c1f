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
//! Writes join the state database's group commit ([`super::group`]): many
//! jobs ending at once pay one commit (one fsync) between them. A commit is
//! atomic: after a SIGKILL a block is whole or absent.
//!
//! A command beside a daemon cannot open the database (redb is one
//! process's); it reads a DAG the daemon holds inline after asking the
//! daemon to fetch it, which writes the DAG's inline blocks out as files
//! ([`super::BlockStore::export_inline`]).

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use phase_protocol::Cid;

use super::state::{StateDb, StateError, db_error};

/// Largest block kept inline (iroh-blobs' inline threshold).
pub const INLINE_MAX: usize = 16 * 1024;

/// CID bytes → the block.
pub(super) const INLINE_BLOCKS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("inline_blocks");

/// Stores `blocks` (already checked against their CIDs), durable when
/// this returns, in the group commit of `db` (with whatever else is
/// written meanwhile). Blocking.
pub(super) fn put(db: &StateDb, blocks: Vec<(Cid, Bytes)>) -> Result<(), StateError> {
    let n = blocks.len();
    db.grouped(Box::new(move |txn| insert(txn, &blocks)))?;
    tracing::trace!(blocks = n, "stored small blocks");
    Ok(())
}

/// Inserts `blocks` in `txn`.
pub(super) fn insert(
    txn: &redb::WriteTransaction,
    blocks: &[(Cid, Bytes)],
) -> Result<(), StateError> {
    let mut table = txn.open_table(INLINE_BLOCKS).map_err(db_error)?;
    for (cid, data) in blocks {
        table
            .insert(cid.to_bytes().as_slice(), &data[..])
            .map_err(db_error)?;
    }
    Ok(())
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
    put(db, vec![(*cid, Bytes::copy_from_slice(data))]).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_put_listed_read_and_deleted() {
        let db = StateDb::memory().unwrap();
        let blocks: Vec<(Cid, Bytes)> = (0..8u32)
            .map(|i| {
                let data = Bytes::from(i.to_le_bytes().to_vec());
                (phase_protocol::cid::raw_cid(&data), data)
            })
            .collect();
        put(&db, blocks.clone()).unwrap();
        for (cid, data) in &blocks {
            assert_eq!(get(&db, cid).unwrap().as_ref(), Some(data));
        }
        let mut all = cids(&db).unwrap();
        all.sort();
        let mut expected: Vec<Cid> = blocks.iter().map(|(c, _)| *c).collect();
        expected.sort();
        assert_eq!(all, expected);
        assert_eq!(
            delete(&db, &[blocks[0].0, blocks[0].0]).unwrap(),
            [true, false]
        );
        assert!(!has(&db, &blocks[0].0).unwrap());
        assert!(has(&db, &blocks[1].0).unwrap());
    }
}
