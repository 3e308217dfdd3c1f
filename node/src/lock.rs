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
//!   holds the lock. The daemon also holds `<data-dir>/daemon.lock`, so a
//!   command that cannot share `lock` tells a daemon (hold nothing) from
//!   another command in its exclusive moment (wait for it, bounded): a
//!   command that wrote beside a clearing one unlocked would lose its
//!   temp files to the next command that finds the dir alone.
//!
//! The kernel drops the lock when the process ends, however it ends.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file's name in a data dir.
pub const LOCK_FILE: &str = "lock";

/// The file only a daemon holds, for its whole life.
const DAEMON_FILE: &str = "daemon.lock";

/// How long a command waits for another one's exclusive moment to end.
const COMMAND_WAIT: Duration = Duration::from_secs(10);

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
    /// The daemon's marker ([`DAEMON_FILE`]), held only by a daemon.
    _daemon: Option<File>,
    hold: Hold,
}

fn open(dir: &Path) -> Result<(File, PathBuf), LockError> {
    open_named(dir, LOCK_FILE)
}

fn open_named(dir: &Path, name: &str) -> Result<(File, PathBuf), LockError> {
    let path = dir.join(name);
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
        // Nobody else takes this one exclusively: whoever holds `lock`
        // exclusively gets it at once.
        let (marker, marker_path) = open_named(dir, DAEMON_FILE)?;
        marker.lock().map_err(|source| LockError::Io {
            path: marker_path,
            source,
        })?;
        Ok(Self {
            file: Some(file),
            _daemon: Some(marker),
            hold: Hold::Exclusive,
        })
    }

    /// Takes `dir` for a command's own short work. Exclusive when nobody
    /// else is there (the caller may then clear leftovers and
    /// [`share`](Self::share)), shared beside other commands, and
    /// [`Hold::None`] beside a daemon; waits (up to 10 s) while another
    /// command holds it alone.
    ///
    /// # Errors
    /// When the lock file cannot be opened or locked, or another command
    /// holds the dir alone for longer than the wait.
    pub fn command(dir: &Path) -> Result<Self, LockError> {
        let (file, path) = open(dir)?;
        let deadline = Instant::now() + COMMAND_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self::held(file, Hold::Exclusive)),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
            }
            match file.try_lock_shared() {
                Ok(()) => return Ok(Self::held(file, Hold::Shared)),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
            }
            // Held exclusively: by a daemon, or by a command clearing
            // leftovers for a moment.
            if daemon_runs(dir)? {
                return Ok(Self {
                    file: None,
                    _daemon: None,
                    hold: Hold::None,
                });
            }
            if Instant::now() >= deadline {
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    held_by: held_by(&path),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn held(file: File, hold: Hold) -> Self {
        Self {
            file: Some(file),
            _daemon: None,
            hold,
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

/// Whether a daemon holds `dir` (its marker file is locked).
fn daemon_runs(dir: &Path) -> Result<bool, LockError> {
    let (marker, path) = open_named(dir, DAEMON_FILE)?;
    match marker.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
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

    #[test]
    fn a_command_waits_out_another_commands_exclusive_moment_instead_of_holding_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = DirLock::command(dir.path()).unwrap();
        assert_eq!(first.hold(), Hold::Exclusive);
        let path = dir.path().to_owned();
        let second = std::thread::spawn(move || DirLock::command(&path).unwrap().hold());
        std::thread::sleep(Duration::from_millis(100));
        first.share();
        assert_eq!(second.join().unwrap(), Hold::Shared);
    }
}
