//! CAR v1 files (the IPFS interchange format): export a DAG, import one.
//!
//! A CAR v1 is a varint-prefixed DAG-CBOR header `{roots, version: 1}` and
//! then, per block, a varint length followed by the CID bytes and the block.
//! Import checks every block against its CID before storing it, so a
//! truncated or corrupted CAR stops with an error and leaves only whole,
//! valid blocks behind.

use std::collections::HashSet;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use phase_protocol::Cid;
use phase_protocol::unixfs;
use phase_protocol::wire::MAX_BLOCK_SIZE;

use super::{BlockStore, MAX_DEPTH, StoreError};

/// Largest CAR header read: a version and a few root CIDs.
const MAX_HEADER: usize = 64 * 1024;
/// Largest section (CID + block) read.
const MAX_SECTION: usize = MAX_BLOCK_SIZE + 128;

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
    #[error("{path} is not a valid CAR v1: {reason} (after {blocks} blocks)")]
    Invalid {
        /// The CAR file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// Blocks imported before the problem.
        blocks: usize,
    },
    /// A task panicked.
    #[error("CAR task failed")]
    Join(#[from] tokio::task::JoinError),
}

#[derive(Serialize, Deserialize)]
struct Header {
    roots: Vec<Cid>,
    version: u64,
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(unsigned_varint::encode::u64(
        v,
        &mut unsigned_varint::encode::u64_buffer(),
    ));
}

/// Reads a varint; `Ok(None)` at a clean end of input.
fn read_varint(r: &mut impl Read) -> std::io::Result<Option<u64>> {
    let mut first = [0u8];
    match r.read_exact(&mut first) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    // The first byte read, then the rest through the crate's reader.
    let mut chained = std::io::Read::chain(&first[..], r);
    match unsigned_varint::io::read_u64(&mut chained) {
        Ok(v) => Ok(Some(v)),
        Err(unsigned_varint::io::ReadError::Io(e)) => Err(e),
        Err(e) => Err(std::io::Error::new(ErrorKind::InvalidData, e)),
    }
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
    let header = serde_ipld_dagcbor::to_vec(&Header {
        roots: vec![*root],
        version: 1,
    })
    .expect("a header of CIDs always encodes");
    let mut prefix = Vec::new();
    put_varint(&mut prefix, header.len() as u64);
    out.write_all(&prefix).map_err(io)?;
    out.write_all(&header).map_err(io)?;

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
        let cid_bytes = cid.to_bytes();
        let mut prefix = Vec::new();
        put_varint(&mut prefix, (cid_bytes.len() + data.len()) as u64);
        out.write_all(&prefix).map_err(io)?;
        out.write_all(&cid_bytes).map_err(io)?;
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
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut blocks = 0usize;
    let invalid = |reason: String, blocks: usize| CarError::Invalid {
        path: path.to_owned(),
        reason,
        blocks,
    };

    let header_len = match read_varint(&mut r) {
        Ok(Some(n)) => n as usize,
        Ok(None) => return Err(invalid("empty file".into(), 0)),
        Err(e) => return Err(invalid(format!("header length: {e}"), 0)),
    };
    if header_len > MAX_HEADER {
        return Err(invalid(format!("header of {header_len} bytes"), 0));
    }
    let mut header = vec![0u8; header_len];
    r.read_exact(&mut header)
        .map_err(|e| invalid(format!("header: {e}"), 0))?;
    let header: Header =
        serde_ipld_dagcbor::from_slice(&header).map_err(|e| invalid(format!("header: {e}"), 0))?;
    if header.version != 1 {
        return Err(invalid(
            format!("version {} (only 1 is supported)", header.version),
            0,
        ));
    }

    let mut section = Vec::new();
    loop {
        let len = match read_varint(&mut r) {
            Ok(Some(n)) => n as usize,
            Ok(None) => break,
            Err(e) => return Err(invalid(format!("section length: {e}"), blocks)),
        };
        if len > MAX_SECTION {
            return Err(invalid(format!("section of {len} bytes"), blocks));
        }
        section.resize(len, 0);
        r.read_exact(&mut section)
            .map_err(|e| invalid(format!("truncated block: {e}"), blocks))?;
        let mut cursor = &section[..];
        let cid =
            Cid::read_bytes(&mut cursor).map_err(|e| invalid(format!("block CID: {e}"), blocks))?;
        store.put_blocking(&cid, cursor)?;
        blocks += 1;
    }
    Ok((header.roots, blocks))
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
