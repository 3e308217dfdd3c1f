//! The content-addressed block store, and files and directories on top of it.
//!
//! - [`BlockStore`] is a cheap-to-clone handle over a backend: [`fs`] (one
//!   file per block under the data dir, sharded, written temp file + fsync +
//!   rename) or [`mem`] (for tests). A block is hashed once, when it enters
//!   the node (`put` checks that the bytes hash to the CID); reads trust the
//!   node's own disk, as Kubo's `Datastore.HashOnRead = false` does (every
//!   fetcher verifies what a provider serves). `store.hash_on_read`
//!   ([`BlockStore::with_hash_on_read`]) re-hashes on every read, and
//!   [`BlockStore::verify`] (`phase-node store verify`) always does: a
//!   corrupt block is then reported, never returned.
//! - [`files`] imports files and directories as UnixFS DAGs (streaming, in
//!   bounded memory) and reads them back, [`dirs`] plain or sharded ones.
//! - Pins name the roots to keep; [`BlockStore::gc`] deletes every block not
//!   reachable from a pin.

pub mod car;
pub mod dirs;
pub mod files;
pub mod fs;
mod gc;
mod group;
pub mod guest_state;
mod inline;
mod leases;
pub mod ledger;
pub mod mem;
pub mod room;
pub mod state;
pub mod untrusted;
mod verify;

pub use self::gc::Held;
pub use self::inline::INLINE_MAX;
pub use self::leases::Lease;
pub use self::verify::Verified;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tracing::warn;

use phase_protocol::cid::{self, Cid, SHA2_256};
use phase_protocol::unixfs::{self, UnixfsError};
use phase_protocol::wire::MAX_BLOCK_SIZE;

use self::state::{StateDb, StateError};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk the store is on has less free space than the node keeps in
    /// reserve (for the records and receipts it must still write).
    #[error("the disk has {} free, below the reserve of {} this node keeps", phase_protocol::ByteSize(*free), phase_protocol::ByteSize(*reserve))]
    LowOnDisk {
        /// Bytes free (for an unprivileged user).
        free: u64,
        /// The reserve.
        reserve: u64,
    },
    /// A stored block no longer hashes to its CID (disk corruption or tampering).
    #[error("block {cid} is corrupt: its bytes do not hash to its CID")]
    Corrupt {
        /// The block.
        cid: Cid,
    },
    /// Bytes offered for a CID do not hash to it.
    #[error("bytes do not hash to {cid}")]
    HashMismatch {
        /// The CID claimed.
        cid: Cid,
    },
    /// A CID whose hash is not sha2-256.
    #[error("{cid} does not use sha2-256, the only hash this store accepts")]
    UnsupportedHash {
        /// The CID.
        cid: Cid,
    },
    /// A block over [`MAX_BLOCK_SIZE`].
    #[error("block {cid} of {len} bytes is larger than the maximum of {MAX_BLOCK_SIZE}")]
    TooLarge {
        /// The block.
        cid: Cid,
        /// Its size.
        len: usize,
    },
    /// A block that is needed is not in the store.
    #[error("block {cid} not found in the local store")]
    NotFound {
        /// The block.
        cid: Cid,
    },
    /// A block that is not valid UnixFS where UnixFS was expected.
    #[error("block {cid} is not readable UnixFS")]
    Unixfs {
        /// The block.
        cid: Cid,
        /// Why (boxed: keeps every `Result` of the store small).
        #[source]
        source: Box<UnixfsError>,
    },
    /// A DAG nested deeper than [`MAX_DEPTH`].
    #[error("DAG is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A file DAG whose blocks disagree with the sizes its nodes claim.
    #[error("file DAG under {cid} is inconsistent: {reason}")]
    Inconsistent {
        /// The node whose claim failed.
        cid: Cid,
        /// What did not match.
        reason: &'static str,
    },
    /// Filesystem I/O failed.
    #[error("block store I/O on {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task panicked.
    #[error("block store task failed")]
    Join(#[from] tokio::task::JoinError),
    /// The state database (pins) failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The state database's file name under the store's root.
pub const STATE_FILE: &str = "state.redb";

/// Deepest DAG walked: a balanced file tree of 174-link nodes is 5 levels deep
/// at 1 PiB; directories nest as deep as a path can. Deeper input is refused
/// rather than walked (a crafted chain of 10,000 nodes, say).
pub const MAX_DEPTH: usize = 256;

/// A copy of a store error for each of many results it failed (the
/// source of an I/O error becomes its message).
fn one_of(e: &StoreError) -> StoreError {
    match e {
        StoreError::Io { path, source } => StoreError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => StoreError::State(StateError::Group(crate::error_line(other))),
    }
}

/// Checks that `data` is an acceptable block for `cid`.
fn check_block(cid: &Cid, data: &[u8]) -> Result<(), StoreError> {
    if cid.hash().code() != SHA2_256 {
        return Err(StoreError::UnsupportedHash { cid: *cid });
    }
    if data.len() > MAX_BLOCK_SIZE {
        return Err(StoreError::TooLarge {
            cid: *cid,
            len: data.len(),
        });
    }
    if !cid::matches(cid, data) {
        return Err(StoreError::HashMismatch { cid: *cid });
    }
    Ok(())
}

#[derive(Debug)]
enum Backend {
    Mem(mem::MemStore),
    Fs(fs::FsStore),
}

/// How long a command waits for another command to close the state
/// database.
const STATE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Handle to the node's block store. Cheap to clone; all clones share one store.
///
/// The async methods run filesystem work on tokio's blocking pool; the
/// `*_blocking` ones are for code already on a blocking thread (importers,
/// exporters).
#[derive(Clone, Debug)]
pub struct BlockStore {
    backend: Arc<Backend>,
    /// The state database, opened when first needed: commands that only
    /// read or write blocks work beside a daemon that holds it.
    state: Arc<Mutex<Option<StateDb>>>,
    /// Its file (`None`: in memory).
    state_path: Option<PathBuf>,
    /// Whether the state database stays open once opened (a daemon, a
    /// node in a test); a command opens it for each use and closes it
    /// after, so commands beside each other take turns.
    keep_state: bool,
    /// Taken shared by work that stores a new DAG until it holds or pins
    /// its root, and exclusively by [`BlockStore::gc`]: a DAG being
    /// written is never collected from under its writer. (Another
    /// process's writer takes a lease instead: [`BlockStore::lease`].)
    gc_lock: Arc<tokio::sync::RwLock<()>>,
    /// Roots held by work under way (a job's inputs and result): kept by
    /// [`BlockStore::gc`] like pins, but only in memory.
    held: Arc<Mutex<HashMap<Cid, usize>>>,
    /// Roots held until a deadline ([`BlockStore::hold_for`]): what a
    /// client fetched through the daemon, until it has read it.
    held_until: Arc<Mutex<HashMap<Cid, std::time::Instant>>>,
    /// Bytes of free disk new work may not take ([`BlockStore::check_room`]).
    reserve: u64,
    /// Set while the ballast is being written, so that calls to
    /// [`BlockStore::keep_ballast`] in the meantime start no second writer.
    making_ballast: Arc<std::sync::atomic::AtomicBool>,
    /// Whether reads re-hash what they read (`store.hash_on_read`).
    hash_on_read: bool,
}

impl BlockStore {
    /// A store in memory, for tests and short-lived tools.
    #[must_use]
    pub fn memory() -> Self {
        Self {
            backend: Arc::new(Backend::Mem(mem::MemStore::default())),
            state: Arc::default(),
            state_path: None,
            keep_state: true,
            gc_lock: Arc::default(),
            held: Arc::default(),
            held_until: Arc::default(),
            reserve: 0,
            making_ballast: Arc::default(),
            hash_on_read: false,
        }
    }

    /// Opens (creating if needed) the store under `root`, usually
    /// `<data-dir>/blocks`.
    ///
    /// # Errors
    /// When the folders cannot be created.
    pub async fn open(root: PathBuf) -> Result<Self, StoreError> {
        let state_path = root.join(STATE_FILE);
        let store = tokio::task::spawn_blocking(move || fs::FsStore::open(root)).await??;
        Ok(Self {
            backend: Arc::new(Backend::Fs(store)),
            state: Arc::default(),
            state_path: Some(state_path),
            keep_state: true,
            gc_lock: Arc::default(),
            held: Arc::default(),
            held_until: Arc::default(),
            reserve: 0,
            making_ballast: Arc::default(),
            hash_on_read: false,
        })
    }

    /// Removes the temp files that crashed processes left in the store;
    /// returns how many. Call only while holding the data dir exclusively
    /// ([`crate::lock`]): other processes may be writing theirs.
    pub async fn clear_tmp(&self) -> usize {
        match self.backend.as_ref() {
            Backend::Mem(_) => 0,
            Backend::Fs(_) => {
                let s = self.clone();
                tokio::task::spawn_blocking(move || match s.backend.as_ref() {
                    Backend::Fs(f) => f.clear_tmp(),
                    Backend::Mem(_) => 0,
                })
                .await
                .unwrap_or(0)
            }
        }
    }

    /// The state database (pins, job records), opened on first use.
    ///
    /// # Errors
    /// [`StateError::InUse`] when a daemon holds it, else a database error.
    pub fn state_blocking(&self) -> Result<StateDb, StoreError> {
        let mut slot = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db = match &self.state_path {
            None => StateDb::memory()?,
            Some(path) => {
                let db = self.open_state(path)?;
                if let Backend::Fs(f) = self.backend.as_ref() {
                    f.migrate_pins(&db)?;
                }
                db
            }
        };
        if self.keep_state {
            *slot = Some(db.clone());
        }
        Ok(db)
    }

    /// Opens the state file; a command that finds another command using it
    /// waits its turn (bounded: a daemon holds it for good).
    fn open_state(&self, path: &std::path::Path) -> Result<StateDb, StateError> {
        let deadline = std::time::Instant::now() + STATE_WAIT;
        loop {
            match StateDb::open(path) {
                Err(StateError::InUse)
                    if !self.keep_state && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Tells the store that this process holds its data dir alone (a
    /// daemon): no other process's `gc` can run beside it and its own waits
    /// for its writers, so a write that finds its block stored leaves the
    /// file untouched instead of marking it written now (see `leases`).
    #[must_use]
    pub fn held_alone(self) -> Self {
        if let Backend::Fs(f) = self.backend.as_ref() {
            f.no_touch();
        }
        self
    }

    /// This handle (and its clones) re-hashes every block it reads when
    /// `on` (`store.hash_on_read`): a block corrupted on disk is then
    /// [`StoreError::Corrupt`] instead of its bytes. Off by default: a block
    /// is hashed when it enters the node.
    #[must_use]
    pub fn with_hash_on_read(mut self, on: bool) -> Self {
        self.hash_on_read = on;
        self
    }

    /// This handle (and its clones) opens the state database for each use
    /// and closes it after, instead of keeping it open: for commands, so
    /// that several can run on one data dir.
    #[must_use]
    pub fn with_transient_state(mut self) -> Self {
        self.keep_state = false;
        self.state = Arc::default();
        self
    }

    /// [`BlockStore::state_blocking`] on the blocking pool.
    ///
    /// # Errors
    /// As `state_blocking`.
    pub async fn state(&self) -> Result<StateDb, StoreError> {
        self.blocking(Self::state_blocking).await
    }

    /// Runs a blocking operation on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Self) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || op(&this)).await?
    }

    /// Stores a block after checking that `data` hashes to `cid`.
    ///
    /// # Errors
    /// A hash mismatch, an oversized block, or I/O.
    pub async fn put(&self, cid: Cid, data: Bytes) -> Result<(), StoreError> {
        self.blocking(move |s| s.put_blocking(&cid, &data)).await
    }

    /// Stores many blocks (each checked against its CID) in one blocking
    /// task and one filesystem sync; one result per block, in order.
    ///
    /// # Errors
    /// Only when the blocking task itself fails; per-block errors are in the list.
    pub async fn put_many(
        &self,
        blocks: Vec<(Cid, Bytes)>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let this = self.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let checked: Vec<_> = blocks.iter().map(|(c, d)| check_block(c, d)).collect();
            let good = blocks.iter().zip(&checked).filter(|(_, c)| c.is_ok());
            let mut stored = this
                .put_hashed_batch(good.map(|((c, d), _)| (c, &d[..])))
                .into_iter();
            checked
                .into_iter()
                .map(|c| c.and_then(|()| stored.next().unwrap_or(Ok(()))))
                .collect()
        })
        .await?)
    }

    /// Stores blocks this node built itself ([`unixfs::FileBuilder`],
    /// [`unixfs::directory`]: a worker's result package), with one
    /// filesystem sync, on the caller's (blocking) thread. Their CIDs were
    /// computed from their bytes as they were built: they are not hashed
    /// again.
    ///
    /// # Errors
    /// The first block that could not be stored.
    pub fn put_built_blocking(&self, blocks: &[unixfs::Block]) -> Result<(), StoreError> {
        self.put_hashed_batch(blocks.iter().map(|b| (&b.cid, &b.data[..])))
            .into_iter()
            .collect()
    }

    /// Stores blocks an importer just hashed: the small ones in one commit
    /// of the state database (when this process holds it: [`inline`]), the
    /// others with one filesystem sync. One result per block, in order.
    fn put_hashed_batch<'a>(
        &self,
        blocks: impl Iterator<Item = (&'a Cid, &'a [u8])>,
    ) -> Vec<Result<(), StoreError>> {
        let f = match self.backend.as_ref() {
            Backend::Mem(m) => {
                return blocks
                    .map(|(cid, data)| {
                        m.put(*cid, Bytes::copy_from_slice(data));
                        Ok(())
                    })
                    .collect();
            }
            Backend::Fs(f) => f,
        };
        let blocks: Vec<_> = blocks.collect();
        let db = match self.inline_db(true) {
            Ok(db) => db,
            Err(e) => return blocks.iter().map(|_| Err(one_of(&e))).collect(),
        };
        let Some(db) = db.filter(|_| blocks.iter().any(|(_, d)| d.len() <= INLINE_MAX)) else {
            return f.put_batch(blocks);
        };
        let mut small = Vec::new();
        let mut large = Vec::new();
        let mut results: Vec<Option<Result<(), StoreError>>> = Vec::with_capacity(blocks.len());
        for (cid, data) in &blocks {
            if data.len() > INLINE_MAX {
                large.push((*cid, *data));
                results.push(None);
                continue;
            }
            match self.stored_small(&db, f, cid) {
                Ok(true) => results.push(Some(Ok(()))),
                Ok(false) => {
                    small.push((**cid, Bytes::copy_from_slice(data)));
                    results.push(Some(Ok(())));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !small.is_empty()
            && let Err(e) = inline::put(&db, small)
        {
            let e = StoreError::from(e);
            for r in results.iter_mut().flatten() {
                if r.is_ok() {
                    *r = Err(one_of(&e));
                }
            }
        }
        let mut stored = f.put_batch(large).into_iter();
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| stored.next().unwrap_or(Ok(()))))
            .collect()
    }

    /// Stores `blocks` with a write to the state database: the small ones
    /// this store keeps inline go to `write` (for the same commit: one
    /// fsync for both), the others are stored first, as files. Blocks
    /// already stored are skipped. Blocking.
    ///
    /// # Errors
    /// A block that does not hash to its CID, I/O, or the database.
    pub fn put_with_state_blocking(
        &self,
        blocks: Vec<(Cid, Bytes)>,
        write: impl FnOnce(&StateDb, Vec<(Cid, Bytes)>) -> Result<(), StateError>,
    ) -> Result<(), StoreError> {
        let db = self.inline_db(true)?;
        let mut inline = Vec::new();
        for (cid, data) in blocks {
            check_block(&cid, &data)?;
            match (&db, self.backend.as_ref()) {
                (Some(db), Backend::Fs(f)) if data.len() <= INLINE_MAX => {
                    if !self.stored_small(db, f, &cid)? {
                        inline.push((cid, data));
                    }
                }
                _ => self.put_blocking(&cid, &data)?,
            }
        }
        Ok(write(&self.state_blocking()?, inline)?)
    }

    /// Whether a small block is stored already, inline or as a file (a
    /// file found is reused as [`fs::FsStore::put`] would).
    fn stored_small(&self, db: &StateDb, f: &fs::FsStore, cid: &Cid) -> Result<bool, StoreError> {
        Ok(inline::has(db, cid)? || f.reuse_if_stored(cid))
    }

    /// The state database, when small blocks may be in it: held by this
    /// process (`None` when another holds it), or, for a command's
    /// transient handle, opened for a read or a removal if no daemon holds
    /// it. A command never adds blocks inline (`adding`): it takes turns on
    /// the database with other commands, and a daemon may start beside it.
    fn inline_db(&self, adding: bool) -> Result<Option<StateDb>, StoreError> {
        let Some(path) = self.state_path.as_deref() else {
            return Ok(None);
        };
        if self.keep_state {
            return match self.state_blocking() {
                Ok(db) => Ok(Some(db)),
                Err(StoreError::State(StateError::InUse)) => Ok(None),
                Err(e) => Err(e),
            };
        }
        if adding || !path.exists() {
            return Ok(None);
        }
        match StateDb::open(path) {
            Ok(db) => Ok(Some(db)),
            Err(StateError::InUse) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every block's CID, inline or in a file (blocking).
    fn cids_blocking(&self) -> Result<Vec<Cid>, StoreError> {
        match self.backend.as_ref() {
            Backend::Mem(m) => Ok(m.cids()),
            Backend::Fs(f) => {
                let mut cids = f.cids()?;
                if let Some(db) = self.inline_db(false)? {
                    let files: std::collections::HashSet<Cid> = cids.iter().copied().collect();
                    cids.extend(
                        inline::cids(&db)?
                            .into_iter()
                            .filter(|c| !files.contains(c)),
                    );
                }
                Ok(cids)
            }
        }
    }

    /// [`BlockStore::export_inline_blocking`] on the blocking pool.
    ///
    /// # Errors
    /// As `export_inline_blocking`.
    pub async fn export_inline(&self, root: Cid) -> Result<usize, StoreError> {
        self.blocking(move |s| s.export_inline_blocking(&root))
            .await
    }

    /// Writes the inline blocks of the DAG under `root` out as files, so
    /// that a command beside this process (which cannot open its state
    /// database) reads the whole DAG (a UnixFS tree, a guest state); how
    /// many. Raw leaves are not read. Blocking.
    ///
    /// # Errors
    /// I/O or the database; a block missing from the DAG is skipped.
    pub fn export_inline_blocking(&self, root: &Cid) -> Result<usize, StoreError> {
        let (Backend::Fs(f), Some(db)) = (self.backend.as_ref(), self.inline_db(false)?) else {
            return Ok(0);
        };
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![(*root, 0usize)];
        let mut out: Vec<(Cid, Bytes)> = Vec::new();
        let mut written = 0;
        while let Some((cid, depth)) = stack.pop() {
            if depth > MAX_DEPTH || !seen.insert(cid) {
                continue;
            }
            let inline = inline::get(&db, &cid)?;
            if let Some(data) = &inline
                && !f.has(&cid)
            {
                out.push((cid, data.clone()));
            }
            // Raw leaves link nowhere; dag-pb nodes and guest state nodes
            // (dag-cbor) are read for their links.
            if cid.codec() != cid::RAW {
                let data = match inline {
                    Some(data) => Some(data),
                    None => f.get(&cid)?,
                };
                if let Some(links) = data.and_then(|d| unixfs::links(&cid, &d).ok()) {
                    stack.extend(links.into_iter().map(|c| (c, depth + 1)));
                }
            }
            if out.len() >= 256 {
                written += out.len();
                f.put_batch(out.iter().map(|(c, d)| (c, &d[..])))
                    .into_iter()
                    .collect::<Result<(), _>>()?;
                out.clear();
            }
        }
        written += out.len();
        f.put_batch(out.iter().map(|(c, d)| (c, &d[..])))
            .into_iter()
            .collect::<Result<(), _>>()?;
        Ok(written)
    }

    /// Reads many blocks in one blocking task, in order.
    ///
    /// # Errors
    /// Only when the blocking task itself fails; per-block errors are in the list.
    pub async fn get_many(
        &self,
        cids: Vec<Cid>,
    ) -> Result<Vec<(Cid, Result<Option<Bytes>, StoreError>)>, StoreError> {
        let this = self.clone();
        Ok(tokio::task::spawn_blocking(move || {
            cids.into_iter()
                .map(|cid| {
                    let r = this.get_blocking(&cid);
                    (cid, r)
                })
                .collect()
        })
        .await?)
    }

    /// [`BlockStore::put`] on the caller's (blocking) thread.
    ///
    /// # Errors
    /// As `put`.
    pub fn put_blocking(&self, cid: &Cid, data: &[u8]) -> Result<(), StoreError> {
        check_block(cid, data)?;
        match self.backend.as_ref() {
            Backend::Mem(m) => {
                m.put(*cid, Bytes::copy_from_slice(data));
                Ok(())
            }
            Backend::Fs(f) => match self.inline_db(true)? {
                Some(db) if data.len() <= INLINE_MAX => {
                    if !self.stored_small(&db, f, cid)? {
                        inline::put(&db, vec![(*cid, Bytes::copy_from_slice(data))])?;
                    }
                    Ok(())
                }
                _ => f.put(cid, data),
            },
        }
    }

    /// The block's bytes (re-hashed only with `hash_on_read`); `None` if
    /// absent.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when re-hashing finds the stored bytes no
    /// longer match, or I/O.
    pub async fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        let cid = *cid;
        self.blocking(move |s| s.get_blocking(&cid)).await
    }

    /// [`BlockStore::get`] on the caller's (blocking) thread.
    ///
    /// # Errors
    /// As `get`.
    pub fn get_blocking(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        self.read_blocking(cid, self.hash_on_read)
    }

    /// The block's bytes, re-hashed if `hash`.
    fn read_blocking(&self, cid: &Cid, hash: bool) -> Result<Option<Bytes>, StoreError> {
        let data = match self.backend.as_ref() {
            Backend::Mem(m) => m.get(cid),
            // The holder of the database looks there first (an open table);
            // a command's handle opens the database for each look, so it
            // looks for a file first and opens it only for a block that
            // has none.
            Backend::Fs(f) if self.keep_state => match self.inline_db(false)? {
                Some(db) => match inline::get(&db, cid)? {
                    Some(data) => Some(data),
                    None => f.get(cid)?,
                },
                None => f.get(cid)?,
            },
            Backend::Fs(f) => match f.get(cid)? {
                Some(data) => Some(data),
                None => match self.inline_db(false)? {
                    Some(db) => inline::get(&db, cid)?,
                    None => None,
                },
            },
        };
        match data {
            Some(data) if hash && !cid::matches(cid, &data) => {
                warn!(%cid, "corrupt block in the store");
                Err(StoreError::Corrupt { cid: *cid })
            }
            other => Ok(other),
        }
    }

    /// [`BlockStore::get_blocking`], with absence as an error.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or as `get`.
    pub fn require_blocking(&self, cid: &Cid) -> Result<Bytes, StoreError> {
        self.get_blocking(cid)?
            .ok_or(StoreError::NotFound { cid: *cid })
    }

    /// Whether the block is present (not re-hashed).
    ///
    /// # Errors
    /// I/O.
    pub async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        let cid = *cid;
        self.blocking(move |s| s.has_blocking(&cid)).await
    }

    /// [`BlockStore::has`] on the caller's (blocking) thread.
    ///
    /// # Errors
    /// I/O or the state database.
    pub fn has_blocking(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(match self.backend.as_ref() {
            Backend::Mem(m) => m.has(cid),
            Backend::Fs(f) => {
                f.has(cid)
                    || match self.inline_db(false)? {
                        Some(db) => inline::has(&db, cid)?,
                        None => false,
                    }
            }
        })
    }

    /// Removes a block; returns whether it was there.
    ///
    /// # Errors
    /// I/O.
    pub async fn delete(&self, cid: &Cid) -> Result<bool, StoreError> {
        let cid = *cid;
        self.blocking(move |s| match s.backend.as_ref() {
            Backend::Mem(m) => Ok(m.delete(&cid)),
            Backend::Fs(f) => {
                let file = f.delete(&cid)?;
                let inline = match s.inline_db(false)? {
                    Some(db) => inline::delete(&db, &[cid])?[0],
                    None => false,
                };
                Ok(file || inline)
            }
        })
        .await
    }

    /// Every block's CID.
    ///
    /// # Errors
    /// I/O.
    pub async fn cids(&self) -> Result<Vec<Cid>, StoreError> {
        self.blocking(Self::cids_blocking).await
    }

    /// Pins a root: it and everything it links to survive [`BlockStore::gc`].
    ///
    /// # Errors
    /// I/O.
    pub async fn pin(&self, cid: &Cid) -> Result<(), StoreError> {
        let cid = *cid;
        self.blocking(move |s| Ok(s.state_blocking()?.pin(&cid)?))
            .await
    }

    /// Drops a user's pin of a root; returns whether there was one (the
    /// root stays pinned while a kept job holds it).
    ///
    /// # Errors
    /// I/O.
    pub async fn unpin(&self, cid: &Cid) -> Result<bool, StoreError> {
        let cid = *cid;
        self.blocking(move |s| s.unpin_blocking(&cid)).await
    }

    /// [`BlockStore::unpin`] on the caller's (blocking) thread.
    ///
    /// # Errors
    /// I/O.
    pub fn unpin_blocking(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.state_blocking()?.unpin(cid)?)
    }

    /// The pinned roots, whoever pinned them.
    ///
    /// # Errors
    /// I/O.
    pub async fn pins(&self) -> Result<Vec<Cid>, StoreError> {
        self.blocking(|s| Ok(s.state_blocking()?.pins()?)).await
    }

    /// Overwrites a stored block without any check (tests of corruption).
    #[cfg(test)]
    pub(crate) fn corrupt_for_test(&self, cid: &Cid, data: &[u8]) {
        match self.backend.as_ref() {
            Backend::Mem(m) => m.corrupt(cid, Bytes::copy_from_slice(data)),
            Backend::Fs(f) => match self.inline_db(false).unwrap() {
                Some(db) if inline::has(&db, cid).unwrap() => inline::corrupt(&db, cid, data),
                _ => f.corrupt(cid, data),
            },
        }
    }
}

#[cfg(test)]
mod tests;
