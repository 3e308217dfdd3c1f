//! Work directories: one per running job, each with an `output/` (and an
//! `input/` while a job with an input directory runs). They are reused:
//! creating and deleting a tree per job made inode allocation the largest
//! cost of a small job.
//!
//! The pool ([`WorkDirs`]) is owned by the worker's actor, which hands a
//! directory to each job it starts; the job cleans it ([`clean`]) on its
//! way out and hands it back with its outcome.

use std::path::{Path, PathBuf};

/// The spare work directories under one temporary folder (removed with the
/// pool).
#[derive(Debug)]
pub(super) struct WorkDirs {
    root: tempfile::TempDir,
    spare: Vec<PathBuf>,
    /// Spare directories kept at most (one per slot).
    keep: usize,
    made: u64,
}

/// A directory handed to a job.
#[derive(Debug)]
pub(super) struct WorkDir {
    pub(super) path: PathBuf,
    /// Not made yet: the job makes it (off the actor).
    pub(super) fresh: bool,
}

impl WorkDirs {
    /// A pool in a new folder under `parent`, keeping `keep` spares.
    ///
    /// # Errors
    /// When the folder cannot be made.
    pub(super) fn new(parent: &Path, keep: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        Ok(Self {
            root: tempfile::Builder::new()
                .prefix("jobs-")
                .tempdir_in(parent)?,
            spare: Vec::with_capacity(keep),
            keep,
            made: 0,
        })
    }

    /// Keeps `keep` spares from now on (the slots changed).
    pub(super) fn keep(&mut self, keep: usize) {
        self.keep = keep;
        self.spare.truncate(keep);
    }

    /// A clean directory: a spare one, or the name of a new one.
    pub(super) fn take(&mut self) -> WorkDir {
        if let Some(path) = self.spare.pop() {
            return WorkDir { path, fresh: false };
        }
        self.made += 1;
        WorkDir {
            path: self.root.path().join(format!("w{}", self.made)),
            fresh: true,
        }
    }

    /// Takes back a directory its job cleaned; returns the one to remove
    /// when enough spares are kept.
    pub(super) fn give_back(&mut self, path: PathBuf) -> Option<PathBuf> {
        if self.spare.len() < self.keep {
            self.spare.push(path);
            None
        } else {
            Some(path)
        }
    }
}

/// Makes a fresh work directory's `output/` (blocking).
///
/// # Errors
/// I/O.
pub(super) fn make(dir: &WorkDir) -> std::io::Result<()> {
    if dir.fresh {
        std::fs::create_dir_all(dir.path.join("output"))?;
    }
    Ok(())
}

/// Readies a used directory for the next job (blocking): `input/` removed,
/// `output/` emptied if the guest wrote anything. A directory that cannot be
/// cleaned is removed and `None` returned.
pub(super) fn clean(path: PathBuf) -> Option<PathBuf> {
    let clean = || -> std::io::Result<()> {
        let input = path.join("input");
        if input.exists() {
            std::fs::remove_dir_all(&input)?;
        }
        let output = path.join("output");
        if std::fs::read_dir(&output)?.next().is_some() {
            std::fs::remove_dir_all(&output)?;
            std::fs::create_dir(&output)?;
        }
        Ok(())
    };
    match clean() {
        Ok(()) => Some(path),
        Err(_) => {
            let _ = std::fs::remove_dir_all(&path);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_reused_clean_and_spares_are_bounded() {
        let parent = tempfile::tempdir().unwrap();
        let mut pool = WorkDirs::new(parent.path(), 1).unwrap();
        let a = pool.take();
        let b = pool.take();
        assert!(a.fresh && b.fresh);
        assert_ne!(a.path, b.path);
        make(&a).unwrap();
        make(&b).unwrap();
        std::fs::create_dir(a.path.join("input")).unwrap();
        std::fs::write(a.path.join("output/x"), b"x").unwrap();
        let a_path = clean(a.path).unwrap();
        assert!(!a_path.join("input").exists());
        assert_eq!(std::fs::read_dir(a_path.join("output")).unwrap().count(), 0);
        assert_eq!(pool.give_back(a_path.clone()), None);
        let b_path = clean(b.path).unwrap();
        assert_eq!(
            pool.give_back(b_path.clone()),
            Some(b_path),
            "one spare kept"
        );
        let again = pool.take();
        assert!(!again.fresh);
        assert_eq!(again.path, a_path);
    }
}
