//! Files and directories as UnixFS DAGs in a [`BlockStore`].
//!
//! Import streams: a file is read 256 KiB at a time, each chunk becomes a
//! block as soon as it is full, and only one chunk plus one pending row of
//! links per tree level is ever held, whatever the file's size. Export streams
//! the same way, checking every node's size claims against the blocks it
//! reads. Entry names are checked on the way in and on the way out, so
//! nothing is ever written outside the target folder.
//!
//! The cores are blocking (`std::io`); the async functions run them on
//! tokio's blocking pool.

use std::fs::File;
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;

use phase_protocol::Cid;
use phase_protocol::unixfs::{self, Block, CHUNK_SIZE, FileBuilder, Node, Root};

use super::{BlockStore, MAX_DEPTH, StoreError, dirs};

pub use super::dirs::entry;

/// Entries a directory read here may have: as many as one built here.
const MAX_DIR_ENTRIES: u64 = unixfs::MAX_DIR_ENTRIES as u64;

/// Why a file or directory could not be imported or exported.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing a local path failed.
    #[error("{path}")]
    Io {
        /// The local path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory given without `-r`.
    #[error("{0} is a directory (add it with -r)")]
    IsADirectory(PathBuf),
    /// `cat` of a directory.
    #[error("{0} is a directory, not a file (use get)")]
    CidIsADirectory(Cid),
    /// Symlinks and special files are not imported.
    #[error("{0} is a symlink or special file; only regular files and directories are added")]
    NotRegular(PathBuf),
    /// An uploaded tar archive that cannot be a directory: malformed, an
    /// entry that is not a file or a directory, a path that leaves the
    /// archive, a name given twice, too many entries or too deep.
    #[error("tar upload: {0}")]
    Tar(String),
    /// A local name that is not valid UTF-8 or not a valid entry name.
    #[error("{0} has a name that cannot be a directory entry")]
    BadName(PathBuf),
    /// A folder that cannot be a UnixFS directory (too many entries).
    #[error("cannot add directory {path}")]
    Directory {
        /// The local folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: unixfs::UnixfsError,
    },
    /// An untrusted file is larger than the caller allows.
    #[error("file {cid} is larger than {}", phase_protocol::ByteSize(*max_bytes))]
    TooLarge {
        /// The file.
        cid: Cid,
        /// The limit.
        max_bytes: u64,
    },
    /// An untrusted tree would write more than the caller allows.
    #[error(
        "{cid} holds more than {} of files or more than {max_entries} entries",
        phase_protocol::ByteSize(*max_bytes)
    )]
    TreeTooLarge {
        /// The root.
        cid: Cid,
        /// The file bytes it may hold (each file as often as it is linked).
        max_bytes: u64,
        /// The entries it may hold under its root.
        max_entries: u64,
    },
    /// A CID that should be a directory is a file.
    #[error("{0} is a file, not a directory")]
    NotADirectory(Cid),
    /// A directory with more entries than the reader allows.
    #[error("directory {cid} has more than {max} entries")]
    TooManyEntries {
        /// The directory.
        cid: Cid,
        /// The limit.
        max: u64,
    },
    /// `get` into a path that exists.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// A task running the import or export panicked.
    #[error("import or export task failed")]
    Join(#[from] tokio::task::JoinError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One file or directory of an import, for `add --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Added {
    /// Path relative to the folder that was added ("" for the root).
    pub path: String,
    /// Its CID.
    #[serde(serialize_with = "display")]
    pub cid: Cid,
    /// File bytes (0 for a directory).
    pub size: u64,
}

fn display<S: serde::Serializer>(v: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Blocks an import has made and not yet stored. They are stored in
/// batches with one filesystem sync each: a sync per block made adding
/// 100,000 small files take over a minute.
struct Batch<'a> {
    store: &'a BlockStore,
    blocks: Vec<Block>,
    bytes: usize,
}

/// Blocks, and bytes, a batch holds at most before it is stored.
const BATCH_BLOCKS: usize = 1024;
const BATCH_BYTES: usize = 16 * 1024 * 1024;

impl<'a> Batch<'a> {
    fn new(store: &'a BlockStore) -> Self {
        Self {
            store,
            blocks: Vec::new(),
            bytes: 0,
        }
    }

    /// Takes `blocks`; stores the batch once it is full.
    fn add(&mut self, blocks: &mut Vec<Block>) -> Result<(), StoreError> {
        self.bytes += blocks.iter().map(|b| b.data.len()).sum::<usize>();
        self.blocks.append(blocks);
        if self.blocks.len() >= BATCH_BLOCKS || self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Stores every block taken so far.
    fn flush(&mut self) -> Result<(), StoreError> {
        let stored = self
            .store
            .put_hashed_batch(self.blocks.iter().map(|b| (&b.cid, &b.data[..])));
        self.blocks.clear();
        self.bytes = 0;
        stored.into_iter().collect()
    }
}

/// Imports everything `reader` yields as one UnixFS file.
///
/// # Errors
/// Reading fails, or the store does.
pub fn add_reader_blocking(
    store: &BlockStore,
    reader: impl Read,
    name: &Path,
) -> Result<Root, FilesError> {
    let mut batch = Batch::new(store);
    let root = import_file(&mut batch, reader, name)?;
    batch.flush()?;
    Ok(root)
}

fn import_file(batch: &mut Batch, mut reader: impl Read, name: &Path) -> Result<Root, FilesError> {
    let mut builder = FileBuilder::new();
    let mut chunk = vec![0u8; CHUNK_SIZE];
    let mut blocks = Vec::new();
    loop {
        let n = read_full(&mut reader, &mut chunk).map_err(io(name))?;
        builder.write(&chunk[..n], &mut blocks);
        batch.add(&mut blocks)?;
        if n < chunk.len() {
            break;
        }
    }
    let root = builder.finish(&mut blocks);
    batch.add(&mut blocks)?;
    Ok(root)
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Imports a file, or with `recursive` a directory tree, from the local disk.
/// Returns the root and every entry imported (root first).
///
/// # Errors
/// A directory without `recursive`, a symlink or special file, an
/// unrepresentable name, or I/O.
pub fn add_path_blocking(
    store: &BlockStore,
    path: &Path,
    recursive: bool,
) -> Result<(Root, Vec<Added>), FilesError> {
    let mut added = Vec::new();
    let mut batch = Batch::new(store);
    let root = add_entry(&mut batch, path, "", recursive, 0, &mut added)?;
    batch.flush()?;
    added.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((root, added))
}

fn add_entry(
    batch: &mut Batch,
    path: &Path,
    rel: &str,
    recursive: bool,
    depth: usize,
    added: &mut Vec<Added>,
) -> Result<Root, FilesError> {
    if depth > MAX_DEPTH {
        return Err(StoreError::TooDeep.into());
    }
    let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
    let root = if meta.is_file() {
        let file = File::open(path).map_err(io(path))?;
        import_file(batch, file, path)?
    } else if meta.is_dir() {
        if !recursive {
            return Err(FilesError::IsADirectory(path.to_owned()));
        }
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io(path))? {
            let entry = entry.map_err(io(path))?;
            let child = entry.path();
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| FilesError::BadName(child.clone()))?;
            unixfs::check_name(&name).map_err(|_| FilesError::BadName(child.clone()))?;
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let child_root = add_entry(batch, &child, &child_rel, true, depth + 1, added)?;
            entries.push((name, child_root));
        }
        let (mut blocks, root) =
            unixfs::directory(entries).map_err(|source| FilesError::Directory {
                path: path.to_owned(),
                source,
            })?;
        batch.add(&mut blocks)?;
        root
    } else {
        return Err(FilesError::NotRegular(path.to_owned()));
    };
    added.push(Added {
        path: rel.to_owned(),
        cid: root.cid,
        size: root.filesize,
    });
    Ok(root)
}

/// Entries a tar upload may hold at most (as many as a job's input may).
pub const MAX_TAR_ENTRIES: u64 = super::untrusted::MAX_ENTRIES;

/// A directory being built from a tar archive.
#[derive(Default)]
struct TarDir(std::collections::BTreeMap<String, TarNode>);

enum TarNode {
    File(Root),
    Dir(TarDir),
}

/// Imports a tar archive (ustar, GNU or pax; read from `reader`, entry by
/// entry, nothing written outside the store) as a UnixFS directory: its
/// regular files and directories, at the paths the archive gives (a
/// leading `./` is fine); its root. Refuses links, devices, absolute paths
/// and `..`, a name given twice, more than [`MAX_TAR_ENTRIES`] entries and
/// paths deeper than the store allows; the caller caps the bytes read.
///
/// # Errors
/// [`FilesError::Tar`] for such an archive, or the store's error.
pub fn add_tar_blocking(store: &BlockStore, reader: impl Read) -> Result<Root, FilesError> {
    let bad = |m: String| FilesError::Tar(m);
    let mut archive = tar::Archive::new(reader);
    let mut top = TarDir::default();
    let mut batch = Batch::new(store);
    let mut count = 0u64;
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        count += 1;
        if count > MAX_TAR_ENTRIES {
            return Err(bad(format!("more than {MAX_TAR_ENTRIES} entries")));
        }
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let shown = path.display().to_string();
        let mut names = Vec::new();
        for part in path.components() {
            match part {
                std::path::Component::Normal(name) => {
                    let name = name
                        .to_str()
                        .filter(|n| unixfs::check_name(n).is_ok())
                        .ok_or_else(|| {
                            bad(format!(
                                "`{shown}` has a name that cannot be a directory entry"
                            ))
                        })?;
                    names.push(name.to_owned());
                }
                std::path::Component::CurDir => {}
                _ => return Err(bad(format!("`{shown}` leaves the archive"))),
            }
        }
        if names.len() > MAX_DEPTH {
            return Err(bad(format!("`{shown}` is deeper than {MAX_DEPTH} folders")));
        }
        let kind = entry.header().entry_type();
        let node = if kind.is_file() {
            Some(TarNode::File(import_file(&mut batch, &mut entry, &path)?))
        } else if kind.is_dir() {
            None
        } else {
            return Err(bad(format!(
                "`{shown}` is not a regular file or a directory"
            )));
        };
        let Some((last, parents)) = names.split_last() else {
            if node.is_some() {
                return Err(bad(format!("`{shown}` is not a file name")));
            }
            continue; // `./` itself
        };
        let mut dir = &mut top;
        for name in parents {
            let child = dir
                .0
                .entry(name.clone())
                .or_insert_with(|| TarNode::Dir(TarDir::default()));
            dir = match child {
                TarNode::Dir(d) => d,
                TarNode::File(_) => return Err(bad(format!("`{shown}`: {name} is a file"))),
            };
        }
        match (node, dir.0.get(last)) {
            (Some(file), None) => {
                dir.0.insert(last.clone(), file);
            }
            (None, None) => {
                dir.0.insert(last.clone(), TarNode::Dir(TarDir::default()));
            }
            (None, Some(TarNode::Dir(_))) => {}
            _ => return Err(bad(format!("`{shown}` is in the archive twice"))),
        }
    }
    let root = tar_directory(&mut batch, top, "")?;
    batch.flush()?;
    Ok(root)
}

fn tar_directory(batch: &mut Batch, dir: TarDir, path: &str) -> Result<Root, FilesError> {
    let mut entries = Vec::with_capacity(dir.0.len());
    for (name, node) in dir.0 {
        let root = match node {
            TarNode::File(root) => root,
            TarNode::Dir(sub) => tar_directory(batch, sub, &format!("{path}/{name}"))?,
        };
        entries.push((name, root));
    }
    let (mut blocks, root) =
        unixfs::directory(entries).map_err(|source| FilesError::Directory {
            path: PathBuf::from(if path.is_empty() { "/" } else { path }),
            source,
        })?;
    batch.add(&mut blocks)?;
    Ok(root)
}

pub(super) fn decode(store: &BlockStore, cid: &Cid) -> Result<Node, StoreError> {
    let data = store.require_blocking(cid)?;
    unixfs::decode(cid, &data).map_err(|source| StoreError::Unixfs {
        cid: *cid,
        source: Box::new(source),
    })
}

/// Files at least this large are read ahead on a second thread while the
/// caller writes, so reading (and re-hashing) blocks and writing them out
/// run at once instead of taking turns.
const READ_AHEAD_FROM: u64 = 4 * 1024 * 1024;
/// Chunks read ahead at most: the memory a large export holds.
const READ_AHEAD: usize = 16;

/// Writes the file `cid` to `out`; returns its size. Checks every node's
/// size claims against what its blocks hold.
///
/// # Errors
/// A missing, corrupt or inconsistent block, a directory, or a write error.
pub fn cat_blocking(
    store: &BlockStore,
    cid: &Cid,
    out: &mut impl Write,
) -> Result<u64, FilesError> {
    let stdout = Path::new("output");
    let root = decode(store, cid)?;
    let written = match &root {
        Node::File { filesize, .. } if *filesize >= READ_AHEAD_FROM => {
            std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(READ_AHEAD);
                let reader =
                    scope.spawn(move || walk_file(store, *cid, root, |b| tx.send(b).is_ok()));
                let mut wrote = Ok(());
                for chunk in rx {
                    if let Err(e) = out.write_all(&chunk) {
                        wrote = Err(io(stdout)(e));
                        break; // drops `rx`: the reader stops at its next send
                    }
                }
                let read = reader
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                wrote.and(read)
            })?
        }
        _ => {
            let mut failed = None;
            let written = walk_file(store, *cid, root, |b| match out.write_all(&b) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            })?;
            if let Some(e) = failed {
                return Err(io(stdout)(e));
            }
            written
        }
    };
    out.flush().map_err(io(stdout))?;
    Ok(written)
}

/// Walks the file DAG under `cid` (whose root block is `root`) in order,
/// handing each chunk of file bytes to `emit` until it returns `false`.
/// Returns the bytes emitted.
fn walk_file(
    store: &BlockStore,
    cid: Cid,
    root: Node,
    mut emit: impl FnMut(Bytes) -> bool,
) -> Result<u64, FilesError> {
    // (block, the file bytes its parent says it covers, depth)
    let mut stack: Vec<(Cid, Option<u64>, usize)> = Vec::new();
    let mut next = Some((root, cid, None, 0));
    let mut written = 0u64;
    while let Some((node, cid, expected, depth)) = next.take() {
        let (bytes, covered) = match node {
            Node::Raw(data) => {
                let len = data.len() as u64;
                (data, len)
            }
            Node::File {
                data,
                children,
                filesize,
            } => {
                for (child, size) in children.into_iter().rev() {
                    stack.push((child, Some(size), depth + 1));
                }
                (Bytes::from(data), filesize)
            }
            Node::Directory(_) | Node::Shard(_) if depth == 0 => {
                return Err(FilesError::CidIsADirectory(cid));
            }
            Node::Directory(_) | Node::Shard(_) => {
                return Err(StoreError::Inconsistent {
                    cid,
                    reason: "a file links to a directory",
                }
                .into());
            }
        };
        if expected.is_some_and(|e| e != covered) {
            return Err(StoreError::Inconsistent {
                cid,
                reason: "block size differs from its parent's blocksizes",
            }
            .into());
        }
        written += bytes.len() as u64;
        if !bytes.is_empty() && !emit(bytes) {
            return Ok(written);
        }
        if let Some((child, expected, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(StoreError::TooDeep.into());
            }
            next = Some((decode(store, &child)?, child, expected, depth));
        }
    }
    Ok(written)
}

/// Writes the file or directory `cid` to the new path `target`.
///
/// # Errors
/// `target` exists, a block is missing, corrupt or inconsistent, or I/O.
pub fn get_blocking(store: &BlockStore, cid: &Cid, target: &Path) -> Result<(), FilesError> {
    if target.symlink_metadata().is_ok() {
        return Err(FilesError::Exists(target.to_owned()));
    }
    get_entry(store, cid, target, 0)
}

fn get_entry(store: &BlockStore, cid: &Cid, target: &Path, depth: usize) -> Result<(), FilesError> {
    if depth > MAX_DEPTH {
        return Err(StoreError::TooDeep.into());
    }
    match decode(store, cid)? {
        node @ (Node::Directory(_) | Node::Shard(_)) => {
            let entries = dirs::entries_blocking(store, *cid, node, MAX_DIR_ENTRIES)?;
            std::fs::create_dir(target).map_err(io(target))?;
            for entry in entries {
                // `decode` checked the name: no `/`, `..` or NUL can reach here.
                get_entry(store, &entry.cid, &target.join(&entry.name), depth + 1)?;
            }
            Ok(())
        }
        Node::Raw(_) | Node::File { .. } => {
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(target)
                .map_err(io(target))?;
            let mut out = BufWriter::with_capacity(CHUNK_SIZE, file);
            cat_blocking(store, cid, &mut out)?;
            // Flushed, not fsynced: the store holds the durable copy, and an
            // export is as durable as any file the user writes (`ipfs get`
            // does not fsync either; syncing 1 GiB cost 5x the whole export).
            out.into_inner().map_err(|e| io(target)(e.into_error()))?;
            Ok(())
        }
    }
}

/// [`add_path_blocking`] on the blocking pool.
///
/// # Errors
/// As `add_path_blocking`.
pub async fn add_path(
    store: &BlockStore,
    path: PathBuf,
    recursive: bool,
) -> Result<(Root, Vec<Added>), FilesError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || add_path_blocking(&store, &path, recursive)).await?
}

/// [`add_reader_blocking`] of bytes in memory, on the blocking pool.
///
/// # Errors
/// As `add_reader_blocking`.
pub async fn add_bytes(store: &BlockStore, bytes: bytes::Bytes) -> Result<Root, FilesError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        add_reader_blocking(&store, &bytes[..], Path::new("<bytes>"))
    })
    .await?
}

/// [`get_blocking`] on the blocking pool.
///
/// # Errors
/// As `get_blocking`.
pub async fn get(store: &BlockStore, cid: Cid, target: PathBuf) -> Result<(), FilesError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || get_blocking(&store, &cid, &target)).await?
}

/// The whole file `cid` in memory, on the blocking pool (for small files:
/// receipts' results, job stdin).
///
/// # Errors
/// As `cat_blocking`.
pub async fn cat_to_vec(store: &BlockStore, cid: Cid) -> Result<Vec<u8>, FilesError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        cat_blocking(&store, &cid, &mut out)?;
        Ok(out)
    })
    .await?
}
