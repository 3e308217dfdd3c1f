//! CAR v1 files (the IPFS interchange format): export a DAG, import one.
//!
//! A CAR v1 is a varint-prefixed DAG-CBOR header `{roots, version: 1}` and
//! then, per block, a varint length followed by the CID bytes and the block.
//! Import checks every block against its CID before storing it, so a
//! truncated or corrupted CAR stops with an error and leaves only whole,
//! valid blocks behind.

use std::collections::HashSet;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use phase_protocol::Cid;
use phase_protocol::car::{CarFormatError, CarReader, header, section_prefix};
use phase_protocol::unixfs;

use super::{BlockStore, MAX_DEPTH, StoreError};

/// Why a CAR could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CarError {
    /// The store failed (a missing block on export, a bad one on import).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// File I/O failed.
    #[error("{path}")]
    Io {
        /// The CAR file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a CAR v1, or damaged.
    #[error("{path} is not a valid CAR v1 (after {blocks} blocks)")]
    Invalid {
        /// The CAR file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        reason: CarFormatError,
        /// Blocks imported before the problem.
        blocks: usize,
    },
    /// A task panicked.
    #[error("CAR task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Writes the DAG under `root` as a CAR v1 to `path` (created, must not
/// exist); returns the number of blocks.
///
/// # Errors
/// A block of the DAG is missing or corrupt, or I/O.
pub fn export_blocking(store: &BlockStore, root: &Cid, path: &Path) -> Result<usize, CarError> {
    let io = |source| CarError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    let mut out = BufWriter::new(file);
    let blocks = write_blocking(store, root, &mut out).map_err(|e| match e {
        CarError::Io { source, .. } => io(source),
        other => other,
    })?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(blocks)
}

/// Writes the DAG under `root` as a CAR v1 to `out` (depth first, root
/// first); returns the number of blocks.
///
/// # Errors
/// A block of the DAG is missing or corrupt, or a write fails.
pub fn write_blocking(
    store: &BlockStore,
    root: &Cid,
    out: &mut impl Write,
) -> Result<usize, CarError> {
    let io = |source| CarError::Io {
        path: "(stream)".into(),
        source,
    };
    out.write_all(&header(&[*root])).map_err(io)?;

    let mut seen = HashSet::new();
    let mut stack = vec![(*root, 0usize)];
    while let Some((cid, depth)) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        if depth > MAX_DEPTH {
            return Err(StoreError::TooDeep.into());
        }
        let data = store.require_blocking(&cid)?;
        out.write_all(&section_prefix(&cid, &data)).map_err(io)?;
        out.write_all(&cid.to_bytes()).map_err(io)?;
        out.write_all(&data).map_err(io)?;
        let links = unixfs::links(&cid, &data).map_err(|source| StoreError::Unixfs {
            cid,
            source: Box::new(source),
        })?;
        stack.extend(links.into_iter().rev().map(|c| (c, depth + 1)));
    }
    out.flush().map_err(io)?;
    Ok(seen.len())
}

/// Imports every block of the CAR v1 at `path`, checking each against its
/// CID; returns the roots and the number of blocks.
///
/// # Errors
/// A damaged or truncated CAR, a block that does not match its CID, or I/O.
/// Blocks stored before the error are whole and valid.
pub fn import_blocking(store: &BlockStore, path: &Path) -> Result<(Vec<Cid>, usize), CarError> {
    let file = std::fs::File::open(path).map_err(|source| CarError::Io {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |reason, blocks| CarError::Invalid {
        path: path.to_owned(),
        reason,
        blocks,
    };
    let mut car = CarReader::new(BufReader::with_capacity(1 << 20, file))
        .map_err(|reason| invalid(reason, 0))?;
    let mut blocks = 0usize;
    while let Some((cid, data)) = car.next_block().map_err(|reason| invalid(reason, blocks))? {
        store.put_blocking(&cid, data)?;
        blocks += 1;
    }
    Ok((car.roots().to_vec(), blocks))
}

/// [`export_blocking`] on the blocking pool.
///
/// # Errors
/// As `export_blocking`.
pub async fn export(store: &BlockStore, root: Cid, path: PathBuf) -> Result<usize, CarError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || export_blocking(&store, &root, &path)).await?
}

/// [`import_blocking`] on the blocking pool.
///
/// # Errors
/// As `import_blocking`.
pub async fn import(store: &BlockStore, path: PathBuf) -> Result<(Vec<Cid>, usize), CarError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || import_blocking(&store, &path)).await?
}
