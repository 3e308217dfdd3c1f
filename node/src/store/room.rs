//! Disk room: the free-space reserve new work may not take
//! ([`BlockStore::check_room`]), and the ballast: a file of [`BALLAST`] bytes the store keeps beside its
//! blocks, so that a node whose disk fills up (another program, or a job's
//! output) can still write what it must: a failed run's small result
//! package, its signed receipt and the job's record. The worker releases
//! the ballast when such a write fails for want of space, writes again,
//! and the ballast comes back once the disk has room for it above the
//! reserve ([`super::BlockStore::check_room`]). A free-space threshold alone
//! cannot promise this: the threshold is checked when work starts, and a
//! disk can fill between then and the receipt.

use std::io::Write;
use std::path::Path;

use super::{BlockStore, StoreError};

/// Bytes the ballast holds: a result package of a few small blocks, a
/// receipt and a database commit need far less.
pub const BALLAST: u64 = 8 << 20;

/// The ballast's file name in the store's root.
const FILE: &str = "ballast";

/// Makes the ballast under `root` if it is missing (blocking): written in
/// full (a sparse file would reserve nothing), synced, then renamed into
/// place, so a half-made ballast never counts.
///
/// # Errors
/// The file cannot be written (no room: the ballast stays missing).
pub(super) fn keep(root: &Path) -> std::io::Result<bool> {
    let path = root.join(FILE);
    if path.exists() {
        return Ok(false);
    }
    // In the store's `tmp/`, which a starting daemon clears of what a
    // crash left.
    let tmp_dir = root.join("tmp");
    std::fs::create_dir_all(&tmp_dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".ballast-")
        .tempfile_in(tmp_dir)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..BALLAST >> 20 {
        tmp.write_all(&zeros)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(true)
}

/// Removes the ballast under `root` (blocking); whether there was one.
pub(super) fn release(root: &Path) -> bool {
    std::fs::remove_file(root.join(FILE)).is_ok()
}

impl BlockStore {
    /// This handle (and its clones) keeps `reserve` bytes of the disk free
    /// of new work: [`BlockStore::check_room`] refuses below it.
    #[must_use]
    pub fn with_reserve(mut self, reserve: u64) -> Self {
        self.reserve = reserve;
        self
    }

    /// Bytes free on the disk the store is on, for an unprivileged user
    /// (`None` in memory, or when it cannot be told).
    #[must_use]
    pub fn free_space(&self) -> Option<u64> {
        let root = self.state_path.as_deref()?.parent()?;
        let vfs = rustix::fs::statvfs(root).ok()?;
        Some(vfs.f_bavail.saturating_mul(vfs.f_frsize))
    }

    /// Whether new work (a job, an upload, a fetch) may write here: the
    /// disk's free space is at least the reserve. What the node must write
    /// anyway (a failure receipt, a job's record) comes out of the reserve.
    ///
    /// # Errors
    /// [`StoreError::LowOnDisk`].
    pub fn check_room(&self) -> Result<(), StoreError> {
        match self.free_space() {
            Some(free) if free < self.reserve => Err(StoreError::LowOnDisk {
                free,
                reserve: self.reserve,
            }),
            Some(free) => {
                if free >= self.reserve.saturating_add(BALLAST) {
                    self.keep_ballast();
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Makes the ballast ([`ballast`]) if it is missing, in the background.
    pub fn keep_ballast(&self) {
        let Some(root) = self.state_path.as_deref().and_then(Path::parent) else {
            return;
        };
        if root.join("ballast").exists() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // One writer at a time: a burst of checks makes one ballast.
        let making = std::sync::Arc::clone(&self.making_ballast);
        if making.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let root = root.to_owned();
        runtime.spawn_blocking(move || {
            match keep(&root) {
                Ok(true) => tracing::debug!("ballast made"),
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "cannot make the ballast"),
            }
            making.store(false, std::sync::atomic::Ordering::Release);
        });
    }

    /// Frees the ballast's bytes for what must be written on a full disk
    /// (blocking; quick); whether there was a ballast to free.
    #[must_use]
    pub fn release_ballast(&self) -> bool {
        let released = self
            .state_path
            .as_deref()
            .and_then(Path::parent)
            .is_some_and(release);
        if released {
            tracing::warn!("the disk is full: the ballast was released for receipts and records");
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ballast_is_written_whole_released_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        assert!(keep(dir.path()).unwrap());
        assert!(!keep(dir.path()).unwrap(), "made once");
        let meta = std::fs::metadata(dir.path().join(FILE)).unwrap();
        assert_eq!(meta.len(), BALLAST);
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 >= BALLAST, "allocated, not sparse");
        assert!(release(dir.path()));
        assert!(!release(dir.path()));
        assert!(keep(dir.path()).unwrap());
    }
}
