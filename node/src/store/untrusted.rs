//! Reading untrusted files and trees (a job's input, a worker's result)
//! within limits on what they would write out, checked before a byte is
//! written.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use phase_protocol::Cid;
use phase_protocol::unixfs::Node;

use super::files::{FilesError, cat_blocking, decode, get_blocking};
use super::{BlockStore, MAX_DEPTH, StoreError, dirs};

/// How much an untrusted file or tree may hold when it is read or exported.
///
/// A DAG can link one block, or one directory, many times: a few KiB of
/// blocks can stand for terabytes of files or 2^256 entries. Limits are
/// checked against what reading or exporting would produce, not against
/// the blocks stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// File bytes, summed over every file (each time it is linked).
    pub bytes: u64,
    /// Files and directories under the root (the root not counted).
    pub entries: u64,
}

/// Entries an untrusted tree may have, whatever its bytes: a job's input
/// or result directory with more is refused rather than written out.
pub const MAX_ENTRIES: u64 = 100_000;

/// Checks that exporting `cid` stays within `limit`, reading only the
/// directory nodes and each file's root (whose size claim `decode` and
/// `cat` hold the file to). Stops as soon as the limit is passed.
///
/// # Errors
/// [`FilesError::TreeTooLarge`], or a missing, corrupt or undecodable block.
pub fn check_tree_blocking(store: &BlockStore, cid: &Cid, limit: Limit) -> Result<(), FilesError> {
    let too_large = || FilesError::TreeTooLarge {
        cid: *cid,
        max_bytes: limit.bytes,
        max_entries: limit.entries,
    };
    /// A node as the walk needs it: a file's size, or a directory's children.
    enum Seen {
        File(u64),
        Dir(Vec<Cid>),
    }
    // Each distinct block is read once, however often it is linked.
    let mut seen: HashMap<Cid, Seen> = HashMap::new();
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut stack = vec![(*cid, 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(StoreError::TooDeep.into());
        }
        if depth > 0 {
            entries += 1;
        }
        if entries > limit.entries {
            return Err(too_large());
        }
        let summary = match seen.entry(node) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(match decode(store, &node)? {
                Node::Raw(data) => Seen::File(data.len() as u64),
                Node::File { filesize, .. } => Seen::File(filesize),
                dir @ (Node::Directory(_) | Node::Shard(_)) => {
                    let max = limit.entries.saturating_sub(entries);
                    let links =
                        dirs::entries_blocking(store, node, dir, max).map_err(|e| match e {
                            FilesError::TooManyEntries { .. } => too_large(),
                            other => other,
                        })?;
                    Seen::Dir(links.into_iter().map(|l| l.cid).collect())
                }
            }),
        };
        match summary {
            Seen::File(size) => bytes = bytes.saturating_add(*size),
            Seen::Dir(children) => stack.extend(children.iter().map(|c| (*c, depth + 1))),
        }
        if bytes > limit.bytes {
            return Err(too_large());
        }
    }
    Ok(())
}

/// [`get`] of an untrusted tree: refused whole, before anything is
/// written, if it would write more than `limit`.
///
/// # Errors
/// As `get`, and [`FilesError::TreeTooLarge`].
pub async fn get_capped(
    store: &BlockStore,
    cid: Cid,
    target: PathBuf,
    limit: Limit,
) -> Result<(), FilesError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        check_tree_blocking(&store, &cid, limit)?;
        get_blocking(&store, &cid, &target)
    })
    .await?
}

/// The whole file `cid` in memory, refused past `max_bytes` (stopping as
/// soon as it passes them).
///
/// # Errors
/// As `cat_blocking`, and [`FilesError::TooLarge`].
pub async fn cat_to_vec_capped(
    store: &BlockStore,
    cid: Cid,
    max_bytes: u64,
) -> Result<Vec<u8>, FilesError> {
    /// A `Vec` writer that fails past `max` bytes.
    struct Capped {
        buf: Vec<u8>,
        max: u64,
    }
    impl Write for Capped {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if (self.buf.len() + data.len()) as u64 > self.max {
                return Err(ErrorKind::FileTooLarge.into());
            }
            self.buf.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Capped {
            buf: Vec::new(),
            max: max_bytes,
        };
        match cat_blocking(&store, &cid, &mut out) {
            Ok(_) => Ok(out.buf),
            Err(FilesError::Io { source, .. }) if source.kind() == ErrorKind::FileTooLarge => {
                Err(FilesError::TooLarge { cid, max_bytes })
            }
            Err(e) => Err(e),
        }
    })
    .await?
}
