//! `/output` measured while the guest runs, not only after, in a way no
//! guest can hide from.
//!
//! A run whose one writable folder is `/output` gets an epoch callback at
//! every tick ([`EPOCH_TICK`], 10 ms) instead of one deadline at its
//! timeout. The callback runs on the guest's own thread, so the guest
//! writes nothing while it runs. It ends the run at the timeout, as the
//! deadline did, and in between decides whether to measure `/output`:
//!
//! - **Cheaply, every tick**: `fstatvfs` of the filesystem `/output` is on
//!   (O(1)). When the filesystem has grown, since the last measurement, by
//!   more bytes or inodes than the job has left, the folder is measured at
//!   once.
//! - **Fully, now and then**: [`dir_over`] walks the folder, at the latest
//!   ten times as long after a walk as the walk took (so the guest's run is
//!   never mostly measuring), which catches what the filesystem's totals
//!   hide when others free space at the same moment.
//!
//! The walk goes from directory descriptor to directory descriptor
//! (`openat`, no path is ever built, so no depth of long names escapes it),
//! counts every entry (files, folders, links) and the apparent size of
//! files, folders and links (a sparse file counts at its full length), and
//! stops as soon as it is over. What it cannot open or stat, and folders
//! nested deeper than [`MAX_DEPTH`], count as over the limit, never as
//! nothing.
//!
//! So what a guest can put on the volunteer's disk is `max_output` bytes
//! and [`MAX_OUTPUT_ENTRIES`] entries, plus what
//! it writes in one tick (at most one WASI call's buffer is in flight, and
//! that is in its capped memory). wasmtime-wasi offers no hook inside its
//! file writes (its preview 1 functions cannot be wrapped: they read the
//! calling instance's memory), which is why this measures rather than
//! refuses each write.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use wasmtime::{Store, UpdateDeadline};

use super::io::OutputLimitHit;
use super::limits::{EPOCH_TICK, epoch_ticks};

/// Entries `/output` may hold (files, folders, links): as many as a
/// result package may (`store::untrusted::MAX_ENTRIES`).
pub const MAX_OUTPUT_ENTRIES: u64 = 100_000;

/// Folders nested deeper than this under `/output` count as over the
/// limit: a walk holds one descriptor per level, and no honest result
/// nests this deep (UnixFS readers stop at 256).
pub const MAX_DEPTH: usize = 64;

/// What of a folder is over a bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// Its files, folders and links hold more bytes.
    Bytes,
    /// It has more entries (files, folders, links).
    Entries,
    /// Folders nest deeper than [`MAX_DEPTH`].
    Depth,
    /// Something in it cannot be opened or measured: counted as over,
    /// never as nothing.
    Unmeasurable,
}

/// Walks `dir` until what it holds passes `max_bytes` or its entries pass
/// `max_entries`, and says which; `None` when it fits. See the module
/// docs for what counts.
#[must_use]
pub fn dir_over(dir: &Path, max_bytes: u64, max_entries: u64) -> Option<Over> {
    measure(dir, max_bytes, max_entries).err()
}

/// What a folder holds, as far as a walk got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Held {
    bytes: u64,
    entries: u64,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn measure(dir: &Path, max_bytes: u64, max_entries: u64) -> Result<Held, Over> {
    let fd = rustix::fs::open(dir, DIR_FLAGS, Mode::empty()).map_err(|_| Over::Unmeasurable)?;
    let mut walk = Walk {
        held: Held::default(),
        max_bytes,
        max_entries,
    };
    walk.dir(fd, 0)?;
    Ok(walk.held)
}

struct Walk {
    held: Held,
    max_bytes: u64,
    max_entries: u64,
}

impl Walk {
    fn dir(&mut self, fd: OwnedFd, depth: usize) -> Result<(), Over> {
        if depth > MAX_DEPTH {
            return Err(Over::Depth);
        }
        let mut subdirs = Vec::new();
        for entry in Dir::read_from(&fd).map_err(|_| Over::Unmeasurable)? {
            let entry = entry.map_err(|_| Over::Unmeasurable)?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            self.held.entries += 1;
            if self.held.entries > self.max_entries {
                return Err(Over::Entries);
            }
            let stat = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|_| Over::Unmeasurable)?;
            let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
            self.held.bytes = self.held.bytes.saturating_add(size);
            if self.held.bytes > self.max_bytes {
                return Err(Over::Bytes);
            }
            if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                subdirs.push(name.to_owned());
            }
        }
        for name in subdirs {
            let sub = rustix::fs::openat(&fd, &name, DIR_FLAGS, Mode::empty())
                .map_err(|_| Over::Unmeasurable)?;
            self.dir(sub, depth + 1)?;
        }
        Ok(())
    }
}

/// Bytes and inodes in use on the filesystem of `fd` (`fstatvfs`).
fn filesystem_use(fd: impl AsFd) -> Option<(u64, u64)> {
    let vfs = rustix::fs::fstatvfs(fd).ok()?;
    let bytes = vfs
        .f_blocks
        .saturating_sub(vfs.f_bfree)
        .saturating_mul(vfs.f_frsize);
    Some((bytes, vfs.f_files.saturating_sub(vfs.f_ffree)))
}

/// The watch's memory between ticks.
struct Watch {
    dir: PathBuf,
    root: Option<OwnedFd>,
    limit: u64,
    max_entries: u64,
    /// What the last walk found, and the filesystem's use then.
    held: Held,
    fs_then: Option<(u64, u64)>,
    /// When the next walk is due at the latest.
    next_walk: Instant,
}

impl Watch {
    /// Whether `/output` is over now (measured when it may be).
    fn over(&mut self) -> Option<Over> {
        let now = Instant::now();
        let fs_now = self.root.as_ref().and_then(filesystem_use);
        let grew_past_what_is_left = match (self.fs_then, fs_now) {
            (Some((bytes_then, inodes_then)), Some((bytes, inodes))) => {
                bytes.saturating_sub(bytes_then) > self.limit.saturating_sub(self.held.bytes)
                    || inodes.saturating_sub(inodes_then)
                        > self.max_entries.saturating_sub(self.held.entries)
            }
            // Without the filesystem's totals, every tick walks.
            _ => true,
        };
        if !grew_past_what_is_left && now < self.next_walk {
            return None;
        }
        let fs_before_walk = self.root.as_ref().and_then(filesystem_use);
        let measured = measure(&self.dir, self.limit, self.max_entries);
        let took = now.elapsed();
        self.next_walk = Instant::now() + (took * 10).max(EPOCH_TICK);
        match measured {
            Ok(held) => {
                self.held = held;
                self.fs_then = fs_before_walk;
                None
            }
            Err(over) => Some(over),
        }
    }
}

/// Watches `dir` against `limit` bytes and `max_entries` entries and the
/// run's `timeout` in `store`.
pub(super) fn watch<T: 'static>(
    store: &mut Store<T>,
    dir: PathBuf,
    limit: u64,
    max_entries: u64,
    timeout: Duration,
) {
    let ticks = epoch_ticks(timeout);
    let mut elapsed = 0u64;
    let root = rustix::fs::open(&dir, DIR_FLAGS, Mode::empty()).ok();
    let mut watch = Watch {
        dir,
        root,
        limit,
        max_entries,
        held: Held::default(),
        fs_then: None,
        next_walk: Instant::now(),
    };
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        // Ticks of this run: the deadline was one tick away.
        elapsed += 1;
        if elapsed >= ticks {
            return Err(wasmtime::Trap::Interrupt.into());
        }
        if watch.over().is_some() {
            return Err(wasmtime::Error::new(OutputLimitHit {
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            }));
        }
        Ok(UpdateDeadline::Continue(1))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_folder_is_over_by_entries_or_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for i in 0..4 {
            std::fs::write(dir.path().join(format!("sub/f{i}")), [0u8; 10]).unwrap();
        }
        let sub = std::fs::metadata(dir.path().join("sub")).unwrap().len();
        // Five entries (the folder and its four files), 40 bytes of files
        // and the folder's own size.
        assert!(dir_over(dir.path(), 40 + sub, 5).is_none());
        assert_eq!(dir_over(dir.path(), 40 + sub, 4), Some(Over::Entries));
        assert_eq!(dir_over(dir.path(), 39 + sub, 5), Some(Over::Bytes));
    }

    #[test]
    fn names_past_the_path_limit_are_measured() {
        // 20 folders of 250-character names: 5,000 bytes of path, past
        // PATH_MAX (4,096), created as a guest does, one level at a time.
        let dir = tempfile::tempdir().unwrap();
        let name = "d".repeat(250);
        let mut fd = rustix::fs::open(dir.path(), DIR_FLAGS, Mode::empty()).unwrap();
        for _ in 0..20 {
            rustix::fs::mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            fd = rustix::fs::openat(&fd, name.as_str(), DIR_FLAGS, Mode::empty()).unwrap();
        }
        let file = rustix::fs::openat(
            &fd,
            "big",
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rustix::fs::ftruncate(&file, 10 << 20).unwrap();
        assert_eq!(dir_over(dir.path(), 5 << 20, 1000), Some(Over::Bytes));
        let held = measure(dir.path(), u64::MAX, u64::MAX).unwrap();
        assert_eq!(held.entries, 21);
        assert!(held.bytes >= 10 << 20, "{held:?}");
        // (The temp dir's removal goes by descriptors too.)
    }

    #[test]
    fn empty_folders_count_as_entries_and_depth_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..50 {
            std::fs::create_dir(dir.path().join(format!("e{i}"))).unwrap();
        }
        assert_eq!(dir_over(dir.path(), u64::MAX, 49), Some(Over::Entries));
        let deep = dir.path().join("deep");
        let mut path = deep.clone();
        for _ in 0..=MAX_DEPTH + 1 {
            path.push("d");
        }
        std::fs::create_dir_all(&path).unwrap();
        assert_eq!(dir_over(&deep, u64::MAX, u64::MAX), Some(Over::Depth));
    }

    #[test]
    fn what_cannot_be_opened_counts_as_over() {
        assert_eq!(
            dir_over(Path::new("/nonexistent/output"), u64::MAX, u64::MAX),
            Some(Over::Unmeasurable)
        );
    }
}
