//! Write leases: how a process that writes blocks into a store another
//! process collects (a CLI `add`, `car import` or `submit` beside a running
//! daemon) keeps `gc` off what it writes, without a lock that `gc` would
//! wait on. The model is iroh-blobs' `TempTag`: a guard value the writer
//! holds, here a file `<store>/leases/<pid>-<n>` made when the write
//! starts and removed when the guard drops (a writer that dies leaves a
//! file whose pid is gone, which `gc` removes).
//!
//! `gc` never waits on another process's writer: it proceeds around what
//! is protected. While any lease is live it keeps every unpinned block
//! modified since the oldest lease began or since the `gc` began (a second
//! of slack: file times come from a coarser clock), looking at the leases
//! again as it deletes, so a write that starts meanwhile is seen too. A
//! writer that finds a block already stored touches it, so a block an
//! import reuses counts as written now. A writer holds its lease until its
//! root is pinned. (Work inside the daemon is kept by its `writing` guard,
//! which `gc` waits for; an idle upload ends after 30 s.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The folder of leases in a store's root.
const DIR: &str = "leases";

/// A write under way; `gc` keeps what it writes until this is dropped.
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes a lease in the store at `root` (blocking; one small file).
///
/// # Errors
/// The lease file cannot be made.
pub(super) fn take(root: &Path) -> std::io::Result<Lease> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = root.join(DIR);
    std::fs::create_dir_all(&dir)?;
    let name = format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    std::fs::File::create(&path)?;
    Ok(Lease { path })
}

/// When the oldest lease of a live process began, if there is one
/// (blocking). Leases of processes that are gone are removed.
pub(super) fn oldest_live(root: &Path) -> Option<SystemTime> {
    let entries = std::fs::read_dir(root.join(DIR)).ok()?;
    let mut oldest: Option<SystemTime> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        if let Ok(began) = entry.metadata().and_then(|m| m.modified()) {
            oldest = Some(oldest.map_or(began, |o| o.min(began)));
        }
    }
    oldest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_seen_while_held_and_a_dead_processs_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(oldest_live(dir.path()).is_none());
        let lease = take(dir.path()).unwrap();
        assert!(oldest_live(dir.path()).is_some());
        drop(lease);
        assert!(oldest_live(dir.path()).is_none());
        // pid 0 is never a process here.
        std::fs::write(dir.path().join(DIR).join("0-7"), b"").unwrap();
        assert!(oldest_live(dir.path()).is_none());
        assert!(!dir.path().join(DIR).join("0-7").exists());
    }
}
