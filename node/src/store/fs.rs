//! The filesystem backend: one file per block.
//!
//! Layout under the root (`<data-dir>/blocks`):
//! - `blocks/<XY>/<cid>`: the block, where `XY` are the next-to-last two
//!   characters of the CID's base32 form (Kubo's flatfs `next-to-last/2`
//!   sharding, so no folder grows past ~1,000 entries per million blocks);
//! - `tmp/`: blocks being written;
//! - `state.redb`: pins and job records ([`super::state`]); the
//!   `pins/<cid>` files of earlier versions are moved into it on first use.
//!
//! A block is written to `tmp/`, fsynced, then renamed into place: a crash at
//! any point leaves either no block or a whole one, never a torn one (and a
//! stray temp file, removed on the next open). Batches (an import, a fetch)
//! write all their temp files, sync the filesystem once, then rename.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use bytes::Bytes;

use phase_protocol::Cid;

use super::StoreError;

/// Blocks as files under a root folder.
#[derive(Debug)]
pub struct FsStore {
    blocks: PathBuf,
    tmp: PathBuf,
    /// Pins as files, as earlier versions kept them (moved into the state
    /// database on first use).
    old_pins: PathBuf,
    /// Whether a write that finds its block stored touches it: only a
    /// process whose `gc` may run in another process needs to (see
    /// `leases`); the data dir's exclusive holder turns it off.
    touch_existing: std::sync::atomic::AtomicBool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl FsStore {
    pub(super) fn open(root: PathBuf) -> Result<Self, StoreError> {
        let store = Self {
            blocks: root.join("blocks"),
            tmp: root.join("tmp"),
            old_pins: root.join("pins"),
            touch_existing: std::sync::atomic::AtomicBool::new(true),
        };
        for dir in [&store.blocks, &store.tmp] {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        Ok(store)
    }

    /// Removes the temp files crashed processes left (only the data dir's
    /// exclusive holder may: another process may be writing them).
    pub(super) fn clear_tmp(&self) -> usize {
        let mut removed = 0;
        if let Ok(entries) = std::fs::read_dir(&self.tmp) {
            for entry in entries.flatten() {
                removed += usize::from(std::fs::remove_file(entry.path()).is_ok());
            }
        }
        removed
    }

    /// Stops touching blocks a write finds stored: for the data dir's
    /// exclusive holder, whose own `gc` waits for its writers and which no
    /// other process's `gc` can run beside.
    pub(super) fn no_touch(&self) {
        self.touch_existing
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Marks a stored block as written now, if this process must.
    fn reuse(&self, path: &Path) {
        if self
            .touch_existing
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            touch(path);
        }
    }

    fn path(&self, cid: &Cid) -> PathBuf {
        let name = cid.to_string();
        let shard = &name[name.len() - 3..name.len() - 1];
        self.blocks.join(shard).join(name)
    }

    /// Whether the block's file exists (reused, as a write finding it
    /// would).
    pub(super) fn reuse_if_stored(&self, cid: &Cid) -> bool {
        let path = self.path(cid);
        let stored = path.exists();
        if stored {
            self.reuse(&path);
        }
        stored
    }

    pub(super) fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), StoreError> {
        let path = self.path(cid);
        if path.exists() {
            self.reuse(&path);
            return Ok(());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&self.tmp).map_err(io(&self.tmp))?;
        tmp.write_all(data).map_err(io(tmp.path()))?;
        tmp.as_file().sync_data().map_err(io(&path))?;
        self.place(cid, tmp.into_temp_path(), path, data.len())
    }

    /// Stores many blocks with one filesystem sync instead of one per
    /// block: each is written to `tmp/`, one `syncfs` makes them all
    /// durable, then each is renamed into place (so a crash still leaves
    /// whole blocks or none). One result per block, in order.
    pub(super) fn put_batch<'a>(
        &self,
        blocks: impl IntoIterator<Item = (&'a Cid, &'a [u8])>,
    ) -> Vec<Result<(), StoreError>> {
        let mut written = Vec::new();
        for (cid, data) in blocks {
            let path = self.path(cid);
            if path.exists() {
                self.reuse(&path);
                written.push(Ok(None));
                continue;
            }
            let tmp = tempfile::NamedTempFile::new_in(&self.tmp)
                .map_err(io(&self.tmp))
                .and_then(|mut tmp| {
                    tmp.write_all(data).map_err(io(tmp.path()))?;
                    Ok(tmp.into_temp_path())
                });
            written.push(tmp.map(|tmp| Some((*cid, tmp, path, data.len()))));
        }
        // Blocks that were all stored already need no sync.
        let new = written.iter().any(|w| matches!(w, Ok(Some(_))));
        if let Err(e) = if new { self.sync_all() } else { Ok(()) } {
            let reason = e.to_string();
            return written
                .into_iter()
                .map(|_| Err(io(&self.tmp)(std::io::Error::other(reason.clone()))))
                .collect();
        }
        written
            .into_iter()
            .map(|w| match w? {
                Some((cid, tmp, path, len)) => self.place(&cid, tmp, path, len),
                None => Ok(()),
            })
            .collect()
    }

    /// Makes every file written to this filesystem durable (`syncfs`).
    fn sync_all(&self) -> Result<(), StoreError> {
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(&self.tmp).map_err(io(&self.tmp))?;
        // SAFETY: `dir` is an open descriptor for the duration of the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io(&self.tmp)(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Renames a durable temp file to the block's path.
    fn place(
        &self,
        cid: &Cid,
        tmp: tempfile::TempPath,
        path: PathBuf,
        len: usize,
    ) -> Result<(), StoreError> {
        let failed = |e: tempfile::PathPersistError| StoreError::Io {
            path: path.clone(),
            source: e.error,
        };
        // The shard folder is made when the first block lands in it, not
        // checked for on every write.
        match tmp.persist(&path) {
            Ok(()) => {}
            Err(e) if e.error.kind() == ErrorKind::NotFound => {
                let dir = path.parent().expect("block paths are blocks/<shard>/<cid>");
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                e.path.persist(&path).map_err(failed)?;
            }
            Err(e) => return Err(failed(e)),
        }
        tracing::trace!(%cid, bytes = len, "stored block");
        Ok(())
    }

    pub(super) fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(cid);
        match std::fs::read(&path) {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub(super) fn has(&self, cid: &Cid) -> bool {
        self.path(cid).exists()
    }

    /// Deletes the block unless it was modified at `since` or later (a
    /// writer of another process may be using it: see `leases`).
    pub(super) fn delete_if_older(&self, cid: &Cid, since: SystemTime) -> Result<bool, StoreError> {
        let path = self.path(cid);
        match std::fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(modified) if modified >= since => Ok(false),
            Ok(_) => self.delete(cid),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub(super) fn delete(&self, cid: &Cid) -> Result<bool, StoreError> {
        let path = self.path(cid);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub(super) fn cids(&self) -> Result<Vec<Cid>, StoreError> {
        let mut cids = Vec::new();
        for shard in std::fs::read_dir(&self.blocks).map_err(io(&self.blocks))? {
            let shard = shard.map_err(io(&self.blocks))?.path();
            for entry in std::fs::read_dir(&shard).map_err(io(&shard))? {
                let entry = entry.map_err(io(&shard))?;
                if let Some(cid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| Cid::from_str(n).ok())
                {
                    cids.push(cid);
                }
            }
        }
        Ok(cids)
    }

    /// Moves the pin files of an earlier version into `db` as user pins,
    /// then removes them.
    pub(super) fn migrate_pins(&self, db: &super::state::StateDb) -> Result<(), StoreError> {
        let entries = match std::fs::read_dir(&self.old_pins) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&self.old_pins)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&self.old_pins))?;
            if let Some(cid) = entry
                .file_name()
                .to_str()
                .and_then(|n| Cid::from_str(n).ok())
            {
                db.pin(&cid)?;
            }
        }
        std::fs::remove_dir_all(&self.old_pins).map_err(io(&self.old_pins))
    }

    /// Overwrites a block's bytes in place (tests of corruption).
    #[cfg(test)]
    pub(super) fn corrupt(&self, cid: &Cid, data: &[u8]) {
        std::fs::write(self.path(cid), data).unwrap();
    }
}

/// Marks a block that is already stored as written now: a writer reusing
/// it protects it from another process's `gc` as it would a new block
/// (see `leases`). Best effort: a block that cannot be touched is still
/// whole.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}
