//! UnixFS files as Kubo builds them: fixed 256 KiB chunks, raw leaves, and a
//! balanced dag-pb tree of at most 174 links per node.
//!
//! [`FileBuilder`] is streaming: it holds at most one chunk plus one pending
//! row of links per tree level, so a file of any size is imported in bounded
//! memory. The root CID equals what `ipfs add --cid-version=1` prints.

use crate::cid::{self, Cid};

/// Size of every chunk but the last (Kubo's `size-262144` chunker).
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Links per dag-pb node (Kubo's balanced layout default).
pub const MAX_LINKS: usize = 174;

/// UnixFS `Data.Type` of a file node.
const UNIXFS_FILE: u64 = 2;

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
    /// root CID (a raw CID for files of at most one chunk).
    pub fn finish(mut self, out: &mut Vec<Block>) -> Cid {
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
        match row.pop() {
            Some(only) if row.is_empty() => only.cid,
            Some(last) => {
                row.push(last);
                Self::parent(row, out).cid
            }
            None => Self::parent(row, out).cid,
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
    builder.finish(&mut sink)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
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
mod tests {
    use super::*;

    fn blocks_of(bytes: &[u8]) -> (Cid, Vec<Block>) {
        let mut b = FileBuilder::new();
        let mut out = Vec::new();
        b.write(bytes, &mut out);
        let root = b.finish(&mut out);
        (root, out)
    }

    #[test]
    fn small_files_are_one_raw_block() {
        let (root, blocks) = blocks_of(b"hello world\n");
        assert_eq!(
            root.to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
        assert_eq!(blocks.len(), 1);
        let (root, blocks) = blocks_of(b"");
        assert_eq!(
            root.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(blocks.len(), 1);
        assert_eq!(file_cid(&[7; CHUNK_SIZE]), cid::raw_cid(&[7; CHUNK_SIZE]));
    }

    #[test]
    fn tree_shape_is_balanced() {
        // 175 chunks: a full node of 174 leaves and a node of one leaf under the root.
        let data = vec![1u8; CHUNK_SIZE * 175];
        let (root, blocks) = blocks_of(&data);
        let leaves = blocks.iter().filter(|b| b.cid.codec() == cid::RAW).count();
        let nodes = blocks
            .iter()
            .filter(|b| b.cid.codec() == cid::DAG_PB)
            .count();
        assert_eq!(leaves, 175);
        assert_eq!(nodes, 3);
        assert_eq!(blocks.last().unwrap().cid, root);
        // Exactly 174 chunks fit one node: the root is that node.
        let (root, blocks) = blocks_of(&data[..CHUNK_SIZE * 174]);
        assert_eq!(
            blocks
                .iter()
                .filter(|b| b.cid.codec() == cid::DAG_PB)
                .count(),
            1
        );
        assert_eq!(root.codec(), cid::DAG_PB);
    }

    #[test]
    fn split_writes_give_the_same_root() {
        let data: Vec<u8> = (0..CHUNK_SIZE * 2 + 17).map(|i| (i % 251) as u8).collect();
        let mut b = FileBuilder::new();
        let mut out = Vec::new();
        for piece in data.chunks(1000) {
            b.write(piece, &mut out);
        }
        assert_eq!(b.finish(&mut out), file_cid(&data));
    }
}
