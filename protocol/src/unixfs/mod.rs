//! UnixFS files as Kubo builds them: fixed 256 KiB chunks, raw leaves, and a
//! balanced dag-pb tree of at most 174 links per node. Directories are one
//! dag-pb node, or, once their links pass 256 KiB, a HAMT-sharded trie of
//! them ([`hamt`]), as Kubo and Helia shard them.
//!
//! [`FileBuilder`] is streaming: it holds at most one chunk plus one pending
//! row of links per tree level, so a file of any size is imported in bounded
//! memory. The root CID equals what `ipfs add --cid-version=1` prints.

use bytes::Bytes;

use crate::cid::{self, Cid};

pub mod hamt;
pub use hamt::{Shard, ShardLink};

/// Size of every chunk but the last (Kubo's `size-262144` chunker).
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Links per dag-pb node (Kubo's balanced layout default).
pub const MAX_LINKS: usize = 174;

/// UnixFS `Data.Type` of a file node.
const UNIXFS_FILE: u64 = 2;

/// The root of an imported file or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    /// Root CID.
    pub cid: Cid,
    /// Bytes of the whole DAG (what a parent directory's link records).
    pub tsize: u64,
    /// Bytes of file content (0 for a directory).
    pub filesize: u64,
}

/// One content-addressed block: its CID and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// CID of `data`.
    pub cid: Cid,
    /// The encoded block.
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Link {
    cid: Cid,
    /// Bytes of the whole subtree (encoded nodes plus leaves), dag-pb `Tsize`.
    tsize: u64,
    /// File bytes covered by the subtree, UnixFS `blocksizes`.
    filesize: u64,
}

/// Streaming builder of a UnixFS file DAG.
///
/// Feed bytes with [`FileBuilder::write`]; each call appends the blocks it
/// completed to `out`, children before parents. [`FileBuilder::finish`]
/// flushes the rest and returns the root CID.
#[derive(Debug, Default)]
pub struct FileBuilder {
    chunk: Vec<u8>,
    /// `levels[0]` holds leaf links, `levels[i]` links to nodes of height `i`.
    levels: Vec<Vec<Link>>,
}

impl FileBuilder {
    /// A builder for an empty file.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds file bytes; completed blocks are appended to `out`.
    pub fn write(&mut self, mut data: &[u8], out: &mut Vec<Block>) {
        while !data.is_empty() {
            let take = (CHUNK_SIZE - self.chunk.len()).min(data.len());
            self.chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.chunk.len() == CHUNK_SIZE {
                self.flush_chunk(out);
            }
        }
    }

    /// Ends the file: appends the remaining blocks to `out` and returns the
    /// root (a raw CID for files of at most one chunk).
    pub fn finish(mut self, out: &mut Vec<Block>) -> Root {
        if !self.chunk.is_empty() || self.levels.is_empty() {
            self.flush_chunk(out);
        }
        // Rows below the top are never full (push folds them at MAX_LINKS), so
        // each one becomes one more link in the row above it.
        let top = self.levels.len() - 1;
        for height in 0..top {
            let row = std::mem::take(&mut self.levels[height]);
            if !row.is_empty() {
                let link = Self::parent(row, out);
                self.levels[height + 1].push(link);
            }
        }
        let mut row = std::mem::take(&mut self.levels[top]);
        let root = match row.pop() {
            Some(only) if row.is_empty() => only,
            Some(last) => {
                row.push(last);
                Self::parent(row, out)
            }
            None => Self::parent(row, out),
        };
        Root {
            cid: root.cid,
            tsize: root.tsize,
            filesize: root.filesize,
        }
    }

    fn flush_chunk(&mut self, out: &mut Vec<Block>) {
        let data = std::mem::take(&mut self.chunk);
        let link = Link {
            cid: cid::raw_cid(&data),
            tsize: data.len() as u64,
            filesize: data.len() as u64,
        };
        out.push(Block {
            cid: link.cid,
            data,
        });
        self.chunk.reserve(CHUNK_SIZE);
        self.push(0, link, out);
    }

    /// Adds a link at `height`, folding full rows upwards.
    fn push(&mut self, height: usize, link: Link, out: &mut Vec<Block>) {
        if self.levels.len() <= height {
            self.levels.resize_with(height + 1, Vec::new);
        }
        self.levels[height].push(link);
        if self.levels[height].len() == MAX_LINKS {
            let row = std::mem::take(&mut self.levels[height]);
            let parent = Self::parent(row, out);
            self.push(height + 1, parent, out);
        }
    }

    /// Encodes a dag-pb file node over `links` and returns the link to it.
    fn parent(links: Vec<Link>, out: &mut Vec<Block>) -> Link {
        let filesize: u64 = links.iter().map(|l| l.filesize).sum();
        let mut unixfs = Vec::with_capacity(8 + 4 * links.len());
        put_varint_field(&mut unixfs, 1, UNIXFS_FILE);
        put_varint_field(&mut unixfs, 3, filesize);
        for l in &links {
            put_varint_field(&mut unixfs, 4, l.filesize);
        }
        let mut node = Vec::with_capacity(unixfs.len() + 48 * links.len());
        for l in &links {
            let mut link = Vec::with_capacity(48);
            put_bytes_field(&mut link, 1, &l.cid.to_bytes());
            put_bytes_field(&mut link, 2, b"");
            put_varint_field(&mut link, 3, l.tsize);
            put_bytes_field(&mut node, 2, &link);
        }
        put_bytes_field(&mut node, 1, &unixfs);
        let cid = cid::cid_of(cid::DAG_PB, &node);
        let tsize = node.len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>();
        out.push(Block { cid, data: node });
        Link {
            cid,
            tsize,
            filesize,
        }
    }
}

/// Root CID of `bytes` imported as a UnixFS file, without keeping the blocks.
#[must_use]
pub fn file_cid(bytes: &[u8]) -> Cid {
    let mut builder = FileBuilder::new();
    let mut sink = Vec::new();
    for chunk in bytes.chunks(CHUNK_SIZE) {
        builder.write(chunk, &mut sink);
        sink.clear();
    }
    builder.finish(&mut sink).cid
}

/// UnixFS `Data.Type` of a directory node.
const UNIXFS_DIRECTORY: u64 = 1;
/// UnixFS `Data.Type` of a raw node (data inline in a dag-pb node).
const UNIXFS_RAW: u64 = 0;
/// Longest entry name in a directory (as most filesystems).
pub const MAX_NAME_LEN: usize = 255;
/// Most entries a directory may have when it is built here. (Read
/// directories are bounded by their blocks and by the reader's limits.)
pub const MAX_DIR_ENTRIES: usize = 1_000_000;

/// Why a block is not a UnixFS node this implementation reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnixfsError {
    /// Bytes that are not a valid dag-pb node.
    #[error("invalid dag-pb: {0}")]
    DagPb(&'static str),
    /// A dag-pb node whose UnixFS data is invalid.
    #[error("invalid UnixFS data: {0}")]
    Data(&'static str),
    /// A UnixFS kind this implementation does not read.
    #[error("unsupported UnixFS node type {0} (symlinks and metadata are not supported)")]
    Unsupported(u64),
    /// A block whose codec is neither raw nor dag-pb.
    #[error("block codec {0:#x} is not raw or dag-pb")]
    Codec(u64),
    /// A directory entry name that could escape or break a path.
    #[error("invalid entry name {0:?}: empty, `.`, `..`, or containing `/` or NUL")]
    Name(String),
    /// A directory with two entries of the same name.
    #[error("duplicate entry name {0:?}")]
    DuplicateName(String),
    /// A directory with too many entries.
    #[error("directory has more than {MAX_DIR_ENTRIES} entries")]
    TooManyEntries,
    /// Two entry names whose 64-bit HAMT hashes are equal (about one
    /// directory in 10^8 of 100,000 entries): no shard can hold both.
    #[error("two entry names share a HAMT hash; rename one")]
    HashCollision,
}

/// A link in a dag-pb node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbLink {
    /// Target block.
    pub cid: Cid,
    /// Name (entry name in a directory; empty in a file).
    pub name: String,
    /// Bytes of the target's whole DAG.
    pub tsize: u64,
}

/// A decoded UnixFS node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A raw block: file bytes (the block itself, shared, not copied).
    Raw(Bytes),
    /// A file node: inline bytes (if any), then the children in order, with
    /// the file bytes each covers.
    File {
        /// Bytes stored in the node itself (before the children's).
        data: Vec<u8>,
        /// Children and the file bytes each one covers.
        children: Vec<(Cid, u64)>,
        /// Total file size the node claims.
        filesize: u64,
    },
    /// A directory: entries sorted by name.
    Directory(Vec<PbLink>),
    /// One node of a HAMT-sharded directory: some of its entries, and
    /// sub-shards holding the others.
    Shard(Shard),
}

/// Checks a directory entry name: non-empty, not `.` or `..`, no `/` or NUL,
/// at most [`MAX_NAME_LEN`] bytes.
///
/// # Errors
/// [`UnixfsError::Name`].
pub fn check_name(name: &str) -> Result<(), UnixfsError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > MAX_NAME_LEN
        || name.contains(['/', '\0']);
    if bad {
        Err(UnixfsError::Name(name.to_owned()))
    } else {
        Ok(())
    }
}

/// Encodes a UnixFS directory over `entries`: one node (entries sorted by
/// name), or a HAMT-sharded trie when its links would pass
/// [`hamt::SHARD_THRESHOLD`]. Returns the blocks, the root's last, and the
/// root.
///
/// # Errors
/// An invalid or duplicate name, too many entries, or a hash collision.
pub fn directory(mut entries: Vec<(String, Root)>) -> Result<(Vec<Block>, Root), UnixfsError> {
    if entries.len() > MAX_DIR_ENTRIES {
        return Err(UnixfsError::TooManyEntries);
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for pair in entries.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(UnixfsError::DuplicateName(pair[0].0.clone()));
        }
    }
    for (name, _) in &entries {
        check_name(name)?;
    }
    if hamt::needs_sharding(&entries) {
        let mut blocks = Vec::new();
        let root = hamt::build(entries, &mut blocks)?;
        return Ok((blocks, root));
    }
    let mut node = Vec::new();
    for (name, root) in &entries {
        let mut link = Vec::with_capacity(48 + name.len());
        put_bytes_field(&mut link, 1, &root.cid.to_bytes());
        put_bytes_field(&mut link, 2, name.as_bytes());
        put_varint_field(&mut link, 3, root.tsize);
        put_bytes_field(&mut node, 2, &link);
    }
    let mut unixfs = Vec::new();
    put_varint_field(&mut unixfs, 1, UNIXFS_DIRECTORY);
    put_bytes_field(&mut node, 1, &unixfs);
    let cid = cid::cid_of(cid::DAG_PB, &node);
    let tsize = node.len() as u64 + entries.iter().map(|(_, r)| r.tsize).sum::<u64>();
    let root = Root {
        cid,
        tsize,
        filesize: 0,
    };
    Ok((vec![Block { cid, data: node }], root))
}

/// Decodes a raw or dag-pb block into a UnixFS node.
///
/// # Errors
/// Anything but a raw block, a UnixFS file, a directory or a HAMT shard node.
pub fn decode(cid: &Cid, bytes: &Bytes) -> Result<Node, UnixfsError> {
    match cid.codec() {
        cid::RAW => Ok(Node::Raw(bytes.clone())),
        cid::DAG_PB => {
            let (links, data) = decode_pb(bytes)?;
            let data = data.ok_or(UnixfsError::Data("dag-pb node without UnixFS data"))?;
            let fields = decode_unixfs(&data)?;
            match fields.kind {
                UNIXFS_FILE | UNIXFS_RAW => {
                    if links.len() != fields.blocksizes.len() {
                        return Err(UnixfsError::Data("blocksizes do not match the links"));
                    }
                    let inline = fields.data.len() as u64;
                    let covered = fields
                        .blocksizes
                        .iter()
                        .try_fold(inline, |a, b| a.checked_add(*b));
                    let filesize = fields.filesize.unwrap_or(inline);
                    if covered != Some(filesize) {
                        return Err(UnixfsError::Data("filesize does not match the blocks"));
                    }
                    let children = links
                        .into_iter()
                        .map(|l| l.cid)
                        .zip(fields.blocksizes)
                        .collect();
                    Ok(Node::File {
                        data: fields.data,
                        children,
                        filesize,
                    })
                }
                UNIXFS_DIRECTORY => {
                    if links.len() > MAX_DIR_ENTRIES {
                        return Err(UnixfsError::TooManyEntries);
                    }
                    for l in &links {
                        check_name(&l.name)?;
                    }
                    for pair in links.windows(2) {
                        if pair[0].name == pair[1].name {
                            return Err(UnixfsError::DuplicateName(pair[0].name.clone()));
                        }
                    }
                    Ok(Node::Directory(links))
                }
                hamt::UNIXFS_HAMT => Ok(Node::Shard(hamt::decode(
                    links,
                    fields.fanout,
                    fields.hash_type,
                )?)),
                other => Err(UnixfsError::Unsupported(other)),
            }
        }
        other => Err(UnixfsError::Codec(other)),
    }
}

/// The CIDs a block links to (dag-pb links, the links of a job's guest
/// state ([`crate::guest_state::links`]); none for raw blocks and other
/// dag-cbor). For walking a DAG without interpreting it (fetch, export,
/// pinning, garbage collection).
///
/// # Errors
/// A dag-pb block that does not decode.
pub fn links(cid: &Cid, bytes: &[u8]) -> Result<Vec<Cid>, UnixfsError> {
    match cid.codec() {
        cid::DAG_PB => Ok(decode_pb(bytes)?.0.into_iter().map(|l| l.cid).collect()),
        cid::DAG_CBOR => Ok(crate::guest_state::links(bytes)),
        _ => Ok(Vec::new()),
    }
}

struct UnixfsFields {
    kind: u64,
    data: Vec<u8>,
    filesize: Option<u64>,
    blocksizes: Vec<u64>,
    hash_type: Option<u64>,
    fanout: Option<u64>,
}

/// Strict dag-pb: fields in canonical order (links, then data), no unknown
/// fields, every link with a hash.
fn decode_pb(bytes: &[u8]) -> Result<(Vec<PbLink>, Option<Vec<u8>>), UnixfsError> {
    let mut r = Reader(bytes);
    let mut links = Vec::new();
    let mut data = None;
    while !r.0.is_empty() {
        match r.key().map_err(UnixfsError::DagPb)? {
            (2, 2) if data.is_none() => {
                let link = r.bytes().map_err(UnixfsError::DagPb)?;
                links.push(decode_link(link)?);
            }
            (1, 2) if data.is_none() => {
                data = Some(r.bytes().map_err(UnixfsError::DagPb)?.to_vec())
            }
            _ => return Err(UnixfsError::DagPb("unexpected or out-of-order field")),
        }
    }
    Ok((links, data))
}

fn decode_link(bytes: &[u8]) -> Result<PbLink, UnixfsError> {
    let mut r = Reader(bytes);
    let mut cid = None;
    let mut name = None;
    let mut tsize = None;
    while !r.0.is_empty() {
        match r.key().map_err(UnixfsError::DagPb)? {
            (1, 2) if cid.is_none() && name.is_none() && tsize.is_none() => {
                let raw = r.bytes().map_err(UnixfsError::DagPb)?;
                cid = Some(
                    Cid::try_from(raw).map_err(|_| UnixfsError::DagPb("link hash is not a CID"))?,
                );
            }
            (2, 2) if name.is_none() && tsize.is_none() => {
                let raw = r.bytes().map_err(UnixfsError::DagPb)?;
                name = Some(
                    String::from_utf8(raw.to_vec())
                        .map_err(|_| UnixfsError::DagPb("link name is not UTF-8"))?,
                );
            }
            (3, 0) if tsize.is_none() => tsize = Some(r.varint().map_err(UnixfsError::DagPb)?),
            _ => return Err(UnixfsError::DagPb("unexpected or out-of-order link field")),
        }
    }
    Ok(PbLink {
        cid: cid.ok_or(UnixfsError::DagPb("link without hash"))?,
        name: name.unwrap_or_default(),
        tsize: tsize.unwrap_or(0),
    })
}

fn decode_unixfs(bytes: &[u8]) -> Result<UnixfsFields, UnixfsError> {
    let mut r = Reader(bytes);
    let mut f = UnixfsFields {
        kind: u64::MAX,
        data: Vec::new(),
        filesize: None,
        blocksizes: Vec::new(),
        hash_type: None,
        fanout: None,
    };
    while !r.0.is_empty() {
        match r.key().map_err(UnixfsError::Data)? {
            (1, 0) => f.kind = r.varint().map_err(UnixfsError::Data)?,
            (2, 2) => f.data = r.bytes().map_err(UnixfsError::Data)?.to_vec(),
            (3, 0) => f.filesize = Some(r.varint().map_err(UnixfsError::Data)?),
            (4, 0) => f.blocksizes.push(r.varint().map_err(UnixfsError::Data)?),
            (4, 2) => {
                // Packed encoding of blocksizes.
                let mut packed = Reader(r.bytes().map_err(UnixfsError::Data)?);
                while !packed.0.is_empty() {
                    f.blocksizes
                        .push(packed.varint().map_err(UnixfsError::Data)?);
                }
            }
            (5, 0) => f.hash_type = Some(r.varint().map_err(UnixfsError::Data)?),
            (6, 0) => f.fanout = Some(r.varint().map_err(UnixfsError::Data)?),
            // mode, mtime: read past them.
            (7, 0) => {
                r.varint().map_err(UnixfsError::Data)?;
            }
            (8, 2) => {
                r.bytes().map_err(UnixfsError::Data)?;
            }
            _ => return Err(UnixfsError::Data("unexpected field")),
        }
    }
    if f.kind == u64::MAX {
        return Err(UnixfsError::Data("missing Type"));
    }
    Ok(f)
}

/// A protobuf reader over a byte slice; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, &'static str> {
        let (value, rest) = unsigned_varint::decode::u64(self.0).map_err(|e| match e {
            unsigned_varint::decode::Error::Insufficient => "truncated varint",
            unsigned_varint::decode::Error::NotMinimal => "varint not minimally encoded",
            _ => "varint longer than 10 bytes",
        })?;
        self.0 = rest;
        Ok(value)
    }

    fn key(&mut self) -> Result<(u64, u64), &'static str> {
        let key = self.varint()?;
        Ok((key >> 3, key & 7))
    }

    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
        if len > self.0.len() {
            return Err("truncated field");
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(unsigned_varint::encode::u64(
        v,
        &mut unsigned_varint::encode::u64_buffer(),
    ));
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests;
