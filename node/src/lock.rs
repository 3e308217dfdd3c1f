//! One owner of a data dir: an advisory lock (`flock`) on `<data-dir>/lock`.
//!
//! - The daemon holds it exclusively for its whole life, so a second
//!   `start` refuses before it touches anything, and only the daemon clears
//!   what a crash left in `store/tmp/` and `work/`.
//! - A command that works on the data dir itself (no daemon) holds it
//!   shared for its life, so a daemon cannot start under it; the first such
//!   command to find nobody else there (it gets the lock exclusively for a
//!   moment) clears `store/tmp/` before sharing it.
//! - A command beside a running daemon holds nothing: it reads blocks and
//!   writes them through temp files that nobody clears while the daemon
//!   holds the lock.
//!
//! The kernel drops the lock when the process ends, however it ends.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The lock file's name in a data dir.
pub const LOCK_FILE: &str = "lock";

/// Why a data dir cannot be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds it.
    #[error("{} is in use by another phase-node ({held_by})", dir.display())]
    Held {
        /// The data dir.
        dir: PathBuf,
        /// Who, as far as the lock file says.
        held_by: String,
    },
    /// The lock file cannot be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How a data dir is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Alone: this process may clear what crashed processes left.
    Exclusive,
    /// Beside other commands.
    Shared,
    /// Not at all: a daemon holds it.
    None,
}

/// A held lock on a data dir; dropping it releases it.
#[derive(Debug)]
pub struct DirLock {
    file: Option<File>,
    hold: Hold,
}

fn open(dir: &Path) -> Result<(File, PathBuf), LockError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| LockError::Io {
            path: path.clone(),
            source,
        })?;
    Ok((file, path))
}

impl DirLock {
    /// Takes `dir` exclusively, as the daemon does; never waits.
    ///
    /// # Errors
    /// [`LockError::Held`] when a daemon or a command holds it.
    pub fn daemon(dir: &Path) -> Result<Self, LockError> {
        let (file, path) = open(dir)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    held_by: held_by(&path),
                });
            }
            Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
        }
        write_owner(&file, &format!("daemon, pid {}", std::process::id()));
        Ok(Self {
            file: Some(file),
            hold: Hold::Exclusive,
        })
    }

    /// Takes `dir` for a command's own short work; never waits. Exclusive
    /// when nobody else is there (the caller may then clear leftovers and
    /// [`share`](Self::share)), shared beside other commands, and
    /// [`Hold::None`] beside a daemon.
    ///
    /// # Errors
    /// Only when the lock file cannot be opened or locked.
    pub fn command(dir: &Path) -> Result<Self, LockError> {
        let (file, path) = open(dir)?;
        match file.try_lock() {
            Ok(()) => {
                return Ok(Self {
                    file: Some(file),
                    hold: Hold::Exclusive,
                });
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
        }
        match file.try_lock_shared() {
            Ok(()) => Ok(Self {
                file: Some(file),
                hold: Hold::Shared,
            }),
            Err(TryLockError::WouldBlock) => Ok(Self {
                file: None,
                hold: Hold::None,
            }),
            Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }

    /// How this process holds the dir.
    #[must_use]
    pub fn hold(&self) -> Hold {
        self.hold
    }

    /// Turns an exclusive hold into a shared one (other commands may then
    /// take it too). Nothing for other holds.
    pub fn share(&mut self) {
        if self.hold != Hold::Exclusive {
            return;
        }
        if let Some(file) = &self.file {
            write_owner(file, "commands");
            // Converting an flock is not atomic, but nobody clears anything
            // in between: a daemon that slips in clears only what it owns.
            if file.lock_shared().is_ok() {
                self.hold = Hold::Shared;
            }
        }
    }
}

/// Who the lock file says holds it.
fn held_by(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => "a phase-node command".to_owned(),
    }
}

fn write_owner(file: &File, owner: &str) {
    use std::io::{Seek, Write};
    let mut file = file;
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = file.write_all(owner.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_is_refused_and_commands_hold_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = DirLock::daemon(dir.path()).unwrap();
        let err = DirLock::daemon(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("in use by another phase-node"),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert_eq!(DirLock::command(dir.path()).unwrap().hold(), Hold::None);
        drop(daemon);
        assert!(DirLock::daemon(dir.path()).is_ok(), "released on drop");
    }

    #[test]
    fn commands_share_and_keep_a_daemon_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = DirLock::command(dir.path()).unwrap();
        assert_eq!(first.hold(), Hold::Exclusive);
        first.share();
        assert_eq!(first.hold(), Hold::Shared);
        let second = DirLock::command(dir.path()).unwrap();
        assert_eq!(second.hold(), Hold::Shared);
        assert!(matches!(
            DirLock::daemon(dir.path()),
            Err(LockError::Held { .. })
        ));
        drop((first, second));
        assert!(DirLock::daemon(dir.path()).is_ok());
    }
}
