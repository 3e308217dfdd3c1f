//! The ballast: a file of [`BALLAST`] bytes the store keeps beside its
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
