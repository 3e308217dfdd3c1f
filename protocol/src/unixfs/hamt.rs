//! HAMT-sharded UnixFS directories, as Kubo and Helia build them.
//!
//! A directory whose links would pass [`SHARD_THRESHOLD`] bytes (names plus
//! CIDs, Kubo's `HAMTShardingSize` estimate) becomes a hash array mapped trie:
//! each entry name is hashed with the first 64 bits of murmur3-x64-128, and
//! each level of the trie takes the next 8 bits of that hash as a slot among
//! 256. A slot holds one entry (link name: two upper-case hex digits of the
//! slot, then the entry name) or, where several entries share it, a
//! sub-shard (link name: the two hex digits alone). The trie is canonical:
//! a slot holds an entry exactly when one entry's hash leads there, so the
//! same entries always give the same root CID, whatever order they came in.

use super::{Block, PbLink, Root, UnixfsError, check_name, cid, put_bytes_field, put_varint_field};
use crate::Cid;

/// Estimated bytes of a directory's links (names plus CIDs) above which it
/// is sharded: Kubo's and Helia's `HAMTShardingSize` (256 KiB).
pub const SHARD_THRESHOLD: usize = 256 * 1024;
/// Slots per shard node when writing (Kubo's and Helia's default).
pub const FANOUT: u32 = 256;
/// UnixFS `Data.Type` of a HAMT shard node.
pub(super) const UNIXFS_HAMT: u64 = 5;
/// Multicodec of the hash UnixFS shards use: murmur3-x64-64.
pub(super) const MURMUR3_X64_64: u64 = 0x22;
/// Largest fanout read: 2^10 slots (a node's bitfield is then 128 bytes).
const MAX_FANOUT: u64 = 1024;

/// One node of a HAMT-sharded directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Slots per node (a power of two).
    pub fanout: u32,
    /// The node's links by slot, in slot order.
    pub links: Vec<(u32, ShardLink)>,
}

/// What a slot of a shard node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardLink {
    /// A directory entry; `name` is the entry's name (the slot prefix cut off).
    Entry(PbLink),
    /// A sub-shard one level down.
    Shard(Cid),
}

impl Shard {
    /// Bits of the name hash each level of this trie takes.
    #[must_use]
    pub fn bits(&self) -> u32 {
        self.fanout.trailing_zeros()
    }

    /// Levels a trie of this fanout can have before its 64-bit hash runs out.
    #[must_use]
    pub fn max_depth(&self) -> u32 {
        64 / self.bits()
    }
}

/// The 64-bit hash of an entry name, which the trie reads from its most
/// significant bit down: the first half (`h1`) of murmur3-x64-128 with seed
/// 0, Go's `murmur3.Sum64` (Helia's `hamtHashFn` gives its bytes in
/// little-endian order).
#[must_use]
pub fn name_hash(name: &[u8]) -> u64 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let mut h1 = 0u64;
    let mut h2 = 0u64;
    let mut blocks = name.chunks_exact(16);
    for block in &mut blocks {
        let (a, b) = block.split_at(8);
        let k1 = u64::from_le_bytes(a.try_into().unwrap_or_default());
        let k2 = u64::from_le_bytes(b.try_into().unwrap_or_default());
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let word = |bytes: &[u8]| {
        bytes
            .iter()
            .enumerate()
            .fold(0u64, |k, (i, b)| k | (u64::from(*b) << (8 * i)))
    };
    if tail.len() > 8 {
        h2 ^= word(&tail[8..])
            .wrapping_mul(C2)
            .rotate_left(33)
            .wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= word(&tail[..tail.len().min(8)])
            .wrapping_mul(C1)
            .rotate_left(31)
            .wrapping_mul(C2);
    }
    h1 ^= name.len() as u64;
    h2 ^= name.len() as u64;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    fmix64(h1).wrapping_add(fmix64(h2))
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The slot a name with hash `hash` takes at `depth` (0 is the root) of a
/// trie with `bits` bits per level: the hash's bits read from the most
/// significant end. `None` once the hash is used up.
#[must_use]
pub fn slot(hash: u64, depth: u32, bits: u32) -> Option<u32> {
    let used = depth.checked_mul(bits)?;
    if bits == 0 || bits > 32 || used + bits > 64 {
        return None;
    }
    u32::try_from((hash << used) >> (64 - bits)).ok()
}

/// Whether `entries` would be sharded: Kubo's estimate of the directory
/// node's size (each link's name plus its CID's bytes) passes
/// [`SHARD_THRESHOLD`].
#[must_use]
pub fn needs_sharding(entries: &[(String, Root)]) -> bool {
    let estimate: usize = entries
        .iter()
        .map(|(name, root)| name.len() + root.cid.encoded_len())
        .sum();
    estimate > SHARD_THRESHOLD
}

/// Encodes `entries` (checked, distinct names) as a HAMT-sharded directory;
/// appends the shard nodes to `out`, children first, and returns the root.
///
/// # Errors
/// [`UnixfsError::HashCollision`] if two names share all 64 hash bits.
pub(super) fn build(
    entries: Vec<(String, Root)>,
    out: &mut Vec<Block>,
) -> Result<Root, UnixfsError> {
    let mut hashed: Vec<(u64, String, Root)> = entries
        .into_iter()
        .map(|(name, root)| (name_hash(name.as_bytes()), name, root))
        .collect();
    hashed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    node(&hashed, 0, out)
}

fn node(
    items: &[(u64, String, Root)],
    depth: u32,
    out: &mut Vec<Block>,
) -> Result<Root, UnixfsError> {
    let bits = FANOUT.trailing_zeros();
    let mut bitfield = [0u8; (FANOUT / 8) as usize];
    let mut links: Vec<(String, Root)> = Vec::new();
    let mut rest = items;
    while let Some(first) = rest.first() {
        let at = slot(first.0, depth, bits).ok_or(UnixfsError::HashCollision)?;
        let same = rest
            .iter()
            .take_while(|e| slot(e.0, depth, bits) == Some(at))
            .count();
        let (group, tail) = rest.split_at(same);
        rest = tail;
        // Big-endian: slot i is bit i % 8 of the i / 8-th byte from the end.
        bitfield[bitfield.len() - 1 - at as usize / 8] |= 1 << (at % 8);
        if let [(_, name, root)] = group {
            links.push((format!("{at:02X}{name}"), *root));
        } else {
            let sub = node(group, depth + 1, out)?;
            links.push((format!("{at:02X}"), sub));
        }
    }
    let mut node = Vec::new();
    for (name, root) in &links {
        let mut link = Vec::with_capacity(48 + name.len());
        put_bytes_field(&mut link, 1, &root.cid.to_bytes());
        put_bytes_field(&mut link, 2, name.as_bytes());
        put_varint_field(&mut link, 3, root.tsize);
        put_bytes_field(&mut node, 2, &link);
    }
    // Go's bitfield drops its leading zero bytes; so does Helia's.
    let first = bitfield
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bitfield.len());
    let mut unixfs = Vec::new();
    put_varint_field(&mut unixfs, 1, UNIXFS_HAMT);
    put_bytes_field(&mut unixfs, 2, &bitfield[first..]);
    put_varint_field(&mut unixfs, 5, MURMUR3_X64_64);
    put_varint_field(&mut unixfs, 6, u64::from(FANOUT));
    put_bytes_field(&mut node, 1, &unixfs);
    let cid = cid::cid_of(cid::DAG_PB, &node);
    let tsize = node.len() as u64 + links.iter().map(|(_, r)| r.tsize).sum::<u64>();
    out.push(Block { cid, data: node });
    Ok(Root {
        cid,
        tsize,
        filesize: 0,
    })
}

/// Reads a shard node's links: slot prefixes, entry names, fanout and hash.
pub(super) fn decode(
    links: Vec<PbLink>,
    fanout: Option<u64>,
    hash_type: Option<u64>,
) -> Result<Shard, UnixfsError> {
    if hash_type != Some(MURMUR3_X64_64) {
        return Err(UnixfsError::Data("HAMT shard hash is not murmur3-x64-64"));
    }
    let fanout = fanout
        .filter(|f| f.is_power_of_two() && (2..=MAX_FANOUT).contains(f))
        .ok_or(UnixfsError::Data(
            "HAMT fanout is not a power of two up to 1024",
        ))?;
    let fanout = u32::try_from(fanout).map_err(|_| UnixfsError::Data("HAMT fanout"))?;
    // Hex digits of the largest slot: 2 for 256.
    let width = format!("{:X}", fanout - 1).len();
    let mut out: Vec<(u32, ShardLink)> = Vec::with_capacity(links.len());
    for mut link in links {
        let prefix = link
            .name
            .get(..width)
            .filter(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(UnixfsError::Data("HAMT link name without a slot prefix"))?;
        let at = u32::from_str_radix(prefix, 16)
            .ok()
            .filter(|s| *s < fanout)
            .ok_or(UnixfsError::Data("HAMT slot out of range"))?;
        if out.last().is_some_and(|(last, _)| *last >= at) {
            return Err(UnixfsError::Data("HAMT slots repeated or out of order"));
        }
        let child = if link.name.len() == width {
            ShardLink::Shard(link.cid)
        } else {
            link.name.drain(..width);
            check_name(&link.name)?;
            ShardLink::Entry(link)
        };
        out.push((at, child));
    }
    Ok(Shard { fanout, links: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_known_values() {
        // Helia's `hamtHashFn` of the same names (ipfs-unixfs-importer 17),
        // whose bytes are these values little-endian.
        assert_eq!(name_hash(b""), 0);
        assert_eq!(name_hash(b"hello"), 0xcbd8_a7b3_41bd_9b02);
        assert_eq!(
            name_hash(b"The quick brown fox jumps over the lazy dog"),
            0xe34b_bc7b_bc07_1b6c
        );
        assert_eq!(name_hash(b"f00001"), 0x43e8_8a1e_6f74_f740);
        assert_eq!(name_hash(b"abcdefghijklmnopq"), 0x7564_747f_88bd_a657);
    }

    #[test]
    fn slots_read_the_hash_from_its_top() {
        let h = 0xAB_CD_00_00_00_00_00_12;
        assert_eq!(slot(h, 0, 8), Some(0xAB));
        assert_eq!(slot(h, 1, 8), Some(0xCD));
        assert_eq!(slot(h, 7, 8), Some(0x12));
        assert_eq!(slot(h, 8, 8), None);
        assert_eq!(slot(h, 0, 4), Some(0xA));
        assert_eq!(slot(h, 1, 4), Some(0xB));
    }
}
