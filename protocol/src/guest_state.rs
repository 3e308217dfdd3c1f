//! A job's guest state: a byte-keyed map stored as a HAMT of DAG-CBOR
//! blocks, so the same map always has the same root CID, a state transition
//! is a pair of CIDs a receipt can bind, and a job that touches a few keys
//! reads only the blocks on their paths.
//!
//! Named *guest* state so it is never confused with the node's own durable
//! records (`StateDb` in the node crate).
//!
//! # Why a HAMT (and not a prolly tree)
//! Both are deterministic and content-addressed. A HAMT places a key by the
//! hash of the key alone, so a lookup or an update touches exactly one path
//! of at most [`MAX_DEPTH`] nodes (about log32(n / 3): three nodes for
//! 10,000 keys), with no chunk-boundary cascade on update, and it is what
//! IPLD's HashMap and Filecoin's state trees use. A prolly tree keeps keys
//! in order (range scans), which the host API does not offer; `ls` sorts.
//!
//! # Layout (canonical; the decoder refuses anything else)
//! - The root block is `[count, bytes, node]`: the number of keys, the sum of
//!   their key and value lengths (what the worker's state size limit is
//!   checked against), and the top node.
//! - A node is `[bucket_bits, link_bits, buckets, links]`. Slot `i` (0..32)
//!   of a node at depth `d` holds the keys whose sha2-256 has `i` as bits
//!   `5d..5d+5`, counted from the most significant bit. A set bit in
//!   `bucket_bits` means the slot holds a bucket, in `link_bits` a child
//!   node; `buckets` and `links` list them in slot order.
//! - A bucket holds 1 to [`BUCKET_SIZE`] entries `[key, value]` sorted by
//!   key. A slot with more keys than that is a child node, and a child node
//!   whose subtree has at most [`BUCKET_SIZE`] keys is collapsed back into a
//!   bucket, so the shape is a function of the map, not of its history.
//! - A value of at most [`MAX_INLINE`] bytes is `{"i": bytes}`; a longer one
//!   is `{"l": [cid, len]}`, a raw block of its own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cid::{self, Cid, DAG_CBOR, RAW};
use crate::error::DecodeError;
use crate::wire::{MAX_BLOCK_SIZE, decode_capped, to_cbor};

/// Bits of the key's hash consumed per level: 32 slots a node.
pub const BIT_WIDTH: u32 = 5;
/// Entries a slot holds before it becomes a child node.
pub const BUCKET_SIZE: usize = 3;
/// Deepest node: 51 levels use 255 of the hash's 256 bits.
pub const MAX_DEPTH: usize = 50;
/// Longest key.
pub const MAX_KEY: usize = 1024;
/// Longest value.
pub const MAX_VALUE: usize = 1024 * 1024;
/// Longest value stored inside its bucket; longer ones get a block.
pub const MAX_INLINE: usize = 1024;

/// Where a state's blocks come from: a store, or peers through it.
pub trait BlockSource {
    /// The block's bytes (the caller checks them against the CID).
    ///
    /// # Errors
    /// The block is not available.
    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;
}

impl BlockSource for BTreeMap<Cid, Vec<u8>> {
    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        self.get(cid)
            .cloned()
            .ok_or_else(|| "not in this map of blocks".into())
    }
}

/// Why a state could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A block of the state could not be had.
    #[error("state block {cid} is not available: {source}")]
    Missing {
        /// The block.
        cid: Cid,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A block is not canonical DAG-CBOR of the state's shape.
    #[error("state block {cid} does not decode: {source}")]
    Decode {
        /// The block.
        cid: Cid,
        /// Why.
        #[source]
        source: Box<DecodeError>,
    },
    /// A block decodes but breaks the layout.
    #[error("state block {cid} is not a valid state: {reason}")]
    Invalid {
        /// The block.
        cid: Cid,
        /// Which rule it breaks.
        reason: Invalid,
    },
    /// A key longer than [`MAX_KEY`].
    #[error("a key of {0} bytes is longer than the limit of {MAX_KEY}")]
    KeyTooLong(usize),
    /// A value longer than [`MAX_VALUE`].
    #[error("a value of {0} bytes is longer than the limit of {MAX_VALUE}")]
    ValueTooLarge(usize),
}

/// A layout rule a state block breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Its bytes do not hash to its CID.
    #[error("its bytes do not match its CID")]
    Hash,
    /// A link that is not to a DAG-CBOR (node) or raw (value) block.
    #[error("a link has the wrong codec")]
    Codec,
    /// Bit maps and lists disagree, or overlap.
    #[error("its slot bit maps do not match its buckets and links")]
    Bitmap,
    /// A bucket empty, over-full, unsorted, or with a key in the wrong slot.
    #[error("a bucket is empty, over-full, unsorted or holds a key of another slot")]
    Bucket,
    /// A key or value over its limit, or a value stored the other way.
    #[error("a key or value is over its limit or not stored as the layout says")]
    Entry,
    /// A child node small enough to be a bucket.
    #[error("a child node holds so few keys it should be a bucket")]
    NotCollapsed,
    /// Deeper than [`MAX_DEPTH`].
    #[error("nodes nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A value block whose length is not the one its entry records.
    #[error("a value block's length differs from its entry")]
    ValueLength,
}

/// A value's length, and the value itself if it was read
/// ([`GuestState::get_within`]).
pub type Measured = (u64, Option<Vec<u8>>);

/// A value as stored: inline bytes, or a link to a raw block and its length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// At most [`MAX_INLINE`] bytes.
    #[serde(rename = "i")]
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A raw block of more than [`MAX_INLINE`] bytes, and its length.
    #[serde(rename = "l")]
    Link(Cid, u64),
}

impl Value {
    /// The value's length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        match self {
            Self::Inline(v) => v.len() as u64,
            Self::Link(_, len) => *len,
        }
    }

    /// Whether the value is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `bytes`: inline, or as a raw block returned beside it.
    fn store(bytes: Vec<u8>) -> (Self, Option<(Cid, Vec<u8>)>) {
        if bytes.len() <= MAX_INLINE {
            (Self::Inline(bytes), None)
        } else {
            let cid = cid::raw_cid(&bytes);
            (Self::Link(cid, bytes.len() as u64), Some((cid, bytes)))
        }
    }

    fn valid(&self) -> bool {
        match self {
            Self::Inline(v) => v.len() <= MAX_INLINE,
            Self::Link(cid, len) => {
                cid.codec() == RAW && *len > MAX_INLINE as u64 && *len <= MAX_VALUE as u64
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Entry(#[serde(with = "serde_bytes")] Vec<u8>, Value);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct NodeWire(u32, u32, Vec<Vec<Entry>>, Vec<Cid>);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RootWire(u64, u64, NodeWire);

/// What a slot of a node in memory holds.
#[derive(Clone, Debug)]
enum Slot {
    Bucket(Vec<Entry>),
    Stored(Cid),
    Loaded(Box<Node>),
}

/// A node in memory: 32 slots, loaded children kept for re-encoding.
#[derive(Clone, Debug, Default)]
struct Node {
    slots: BTreeMap<u8, Slot>,
}

/// The hash of a key, which places it.
fn key_hash(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// The slot of a hash at `depth`: bits `5 * depth .. 5 * depth + 5`.
fn slot_of(hash: &[u8; 32], depth: usize) -> u8 {
    let bit = depth * BIT_WIDTH as usize;
    let mut index = 0u8;
    for b in bit..bit + BIT_WIDTH as usize {
        let set = b < 256 && hash[b / 8] & (0x80 >> (b % 8)) != 0;
        index = (index << 1) | u8::from(set);
    }
    index
}

/// A state's summary: its root, number of keys and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The root block's CID.
    pub root: Cid,
    /// Keys in the state.
    pub count: u64,
    /// Sum of key and value lengths.
    pub bytes: u64,
}

/// The root and blocks of the empty state.
#[must_use]
pub fn empty() -> (Cid, Vec<u8>) {
    let bytes = to_cbor(&RootWire(0, 0, NodeWire::default()));
    (cid::cid_of(DAG_CBOR, &bytes), bytes)
}

/// The blocks a guest-state block links to (child nodes and value blocks);
/// none for a block that is not one. For walking a DAG without
/// interpreting it (fetch, export, pinning, garbage collection).
#[must_use]
pub fn links(bytes: &[u8]) -> Vec<Cid> {
    let node = match decode_capped::<RootWire>(bytes, MAX_BLOCK_SIZE) {
        Ok(RootWire(_, _, node)) => node,
        Err(_) => match decode_capped::<NodeWire>(bytes, MAX_BLOCK_SIZE) {
            Ok(node) => node,
            Err(_) => return Vec::new(),
        },
    };
    let values = node.2.iter().flatten().filter_map(|Entry(_, v)| match v {
        Value::Link(cid, _) => Some(*cid),
        Value::Inline(_) => None,
    });
    node.3.iter().copied().chain(values).collect()
}

/// A run's log as a block: a DAG-CBOR list of byte strings, in order.
#[must_use]
pub fn log_block(entries: &[Vec<u8>]) -> (Cid, Vec<u8>) {
    let list: Vec<&serde_bytes::Bytes> =
        entries.iter().map(|e| serde_bytes::Bytes::new(e)).collect();
    let bytes = to_cbor(&list);
    (cid::cid_of(DAG_CBOR, &bytes), bytes)
}

/// The entries of a log block.
///
/// # Errors
/// Not a canonical list of byte strings, or over the block size cap.
pub fn decode_log(bytes: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let list: Vec<serde_bytes::ByteBuf> = decode_capped(bytes, MAX_BLOCK_SIZE)?;
    Ok(list
        .into_iter()
        .map(serde_bytes::ByteBuf::into_vec)
        .collect())
}

/// One change of a key between two states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyChange {
    /// The key.
    pub key: Vec<u8>,
    /// Its value before, if it had one.
    pub before: Option<Value>,
    /// Its value after, if it has one.
    pub after: Option<Value>,
}

/// A state opened for reading and for changes, loading only the blocks
/// on the paths it walks.
#[derive(Debug)]
pub struct GuestState<S> {
    source: S,
    count: u64,
    bytes: u64,
    root: Node,
    /// Value blocks written by changes, until [`GuestState::commit`].
    /// Each with the number of pending entries that point to it: a block
    /// no pending entry uses any more is dropped, so overwriting one key
    /// with large values again and again holds one block, not all of them.
    new_values: BTreeMap<Cid, (Vec<u8>, usize)>,
    /// Blocks loaded (node and value), for callers that count fetches.
    loaded: u64,
}

impl<S: BlockSource> GuestState<S> {
    /// Opens the state at `root`, reading its root block.
    ///
    /// # Errors
    /// The root block is missing or not a valid state root.
    pub fn open(mut source: S, root: &Cid) -> Result<Self, StateError> {
        let data = fetch(&mut source, root, DAG_CBOR)?;
        let wire: RootWire =
            decode_capped(&data, MAX_BLOCK_SIZE).map_err(|source| StateError::Decode {
                cid: *root,
                source: Box::new(source),
            })?;
        let RootWire(count, bytes, node) = wire;
        let root_node = from_wire(node, root, &[], true)?;
        Ok(Self {
            source,
            count,
            bytes,
            root: root_node,
            new_values: BTreeMap::new(),
            loaded: 1,
        })
    }

    /// Keys in the state, with changes so far.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of key and value lengths, with changes so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Blocks read from the source so far.
    #[must_use]
    pub fn blocks_loaded(&self) -> u64 {
        self.loaded
    }

    /// The value stored for `key`.
    ///
    /// # Errors
    /// A block on the key's path is missing or invalid.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.get_within(key, u64::MAX)?.and_then(|(_, v)| v))
    }

    /// The length of the value stored for `key`, and the value if it is at
    /// most `cap` bytes: a longer one's block is not read.
    ///
    /// # Errors
    /// The key over its limit, or a block missing or invalid.
    pub fn get_within(&mut self, key: &[u8], cap: u64) -> Result<Option<Measured>, StateError> {
        if key.len() > MAX_KEY {
            return Err(StateError::KeyTooLong(key.len()));
        }
        let hash = key_hash(key);
        let Some(value) = self.lookup(key, &hash)? else {
            return Ok(None);
        };
        let len = value.len();
        if len > cap {
            return Ok(Some((len, None)));
        }
        let bytes = match value {
            Value::Inline(v) => v,
            Value::Link(cid, len) => match self.new_values.get(&cid) {
                Some((data, _)) => data.clone(),
                None => self.value_block(&cid, len)?,
            },
        };
        Ok(Some((len, Some(bytes))))
    }

    /// The length of the value stored for `key`, without reading a value
    /// block of its own.
    ///
    /// # Errors
    /// A block on the key's path is missing or invalid.
    pub fn value_len(&mut self, key: &[u8]) -> Result<Option<u64>, StateError> {
        if key.len() > MAX_KEY {
            return Err(StateError::KeyTooLong(key.len()));
        }
        let hash = key_hash(key);
        Ok(self.lookup(key, &hash)?.map(|v| v.len()))
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// Key or value over its limit, or a block on the path missing or
    /// invalid.
    pub fn set(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StateError> {
        if key.len() > MAX_KEY {
            return Err(StateError::KeyTooLong(key.len()));
        }
        if value.len() > MAX_VALUE {
            return Err(StateError::ValueTooLarge(value.len()));
        }
        let hash = key_hash(&key);
        let (value, block) = Value::store(value);
        let added = key.len() as u64 + value.len();
        let old = {
            let mut path = Vec::new();
            let node = self.descend(&hash, &mut path)?;
            insert(node, Entry(key, value), &hash, path.len())
        };
        if let Some((cid, data)) = block {
            self.new_values.entry(cid).or_insert((data, 0)).1 += 1;
        }
        match old {
            Some(Entry(k, v)) => {
                self.bytes = self.bytes - (k.len() as u64 + v.len()) + added;
                self.release(&v);
            }
            None => {
                self.count += 1;
                self.bytes += added;
            }
        }
        Ok(())
    }

    /// Removes `key`; whether it was there.
    ///
    /// # Errors
    /// A block on the path missing or invalid.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, StateError> {
        if key.len() > MAX_KEY {
            return Err(StateError::KeyTooLong(key.len()));
        }
        let hash = key_hash(key);
        // Load the whole path first, then remove and collapse bottom-up.
        let mut path = Vec::new();
        self.descend(&hash, &mut path)?;
        let Some(Entry(k, v)) = remove(&mut self.root, key, &hash, 0) else {
            return Ok(false);
        };
        self.count -= 1;
        self.bytes -= k.len() as u64 + v.len();
        self.release(&v);
        Ok(true)
    }

    /// One pending entry less points to `value`'s block, if it is new.
    fn release(&mut self, value: &Value) {
        if let Value::Link(cid, _) = value
            && let Some((_, users)) = self.new_values.get_mut(cid)
        {
            *users -= 1;
            if *users == 0 {
                self.new_values.remove(cid);
            }
        }
    }

    /// Encodes every changed node: the new root and the blocks to store
    /// (nodes on the paths walked, and new value blocks).
    #[must_use]
    pub fn commit(&self) -> (Summary, Vec<(Cid, Vec<u8>)>) {
        let mut blocks = Vec::new();
        let node = to_wire(&self.root, &mut blocks);
        let bytes = to_cbor(&RootWire(self.count, self.bytes, node));
        let root = cid::cid_of(DAG_CBOR, &bytes);
        blocks.push((root, bytes));
        // Every pending value block is used by a pending entry.
        for (cid, (data, _)) in &self.new_values {
            blocks.push((*cid, data.clone()));
        }
        (
            Summary {
                root,
                count: self.count,
                bytes: self.bytes,
            },
            blocks,
        )
    }

    /// Every entry, in key order (loads the whole state).
    ///
    /// # Errors
    /// A block missing or invalid.
    pub fn entries(&mut self) -> Result<BTreeMap<Vec<u8>, Value>, StateError> {
        let mut out = BTreeMap::new();
        let mut root = std::mem::take(&mut self.root);
        let result = collect(
            &mut self.source,
            &mut root,
            &mut Vec::new(),
            &mut out,
            &mut self.loaded,
        );
        self.root = root;
        result?;
        Ok(out)
    }

    /// The value block of a linked value, checked against its entry.
    ///
    /// # Errors
    /// Missing or of another length.
    pub fn value_block(&mut self, cid: &Cid, len: u64) -> Result<Vec<u8>, StateError> {
        self.loaded += 1;
        value_block(&mut self.source, cid, len)
    }

    /// Walks to the deepest node on `hash`'s path, loading stored children;
    /// `path` gets the slots taken.
    fn descend(&mut self, hash: &[u8; 32], path: &mut Vec<u8>) -> Result<&mut Node, StateError> {
        let mut node = &mut self.root;
        loop {
            let slot = slot_of(hash, path.len());
            if let Some(Slot::Stored(cid)) = node.slots.get(&slot) {
                let cid = *cid;
                path.push(slot);
                let child = load_node(&mut self.source, &cid, path)?;
                path.pop();
                self.loaded += 1;
                node.slots.insert(slot, Slot::Loaded(Box::new(child)));
            }
            if !matches!(node.slots.get(&slot), Some(Slot::Loaded(_))) {
                return Ok(node);
            }
            let Some(Slot::Loaded(child)) = node.slots.get_mut(&slot) else {
                unreachable!("checked just above");
            };
            path.push(slot);
            node = child;
        }
    }

    fn lookup(&mut self, key: &[u8], hash: &[u8; 32]) -> Result<Option<Value>, StateError> {
        let mut path = Vec::new();
        let node = self.descend(hash, &mut path)?;
        let slot = slot_of(hash, path.len());
        Ok(match node.slots.get(&slot) {
            Some(Slot::Bucket(entries)) => entries
                .iter()
                .find(|Entry(k, _)| k == key)
                .map(|Entry(_, v)| v.clone()),
            _ => None,
        })
    }
}

/// The changes from state `a` to state `b`, in key order; subtrees with the
/// same CID in both are skipped without being read.
///
/// # Errors
/// A block missing or invalid.
pub fn diff<S: BlockSource>(
    source: &mut S,
    a: &Cid,
    b: &Cid,
) -> Result<Vec<KeyChange>, StateError> {
    if a == b {
        return Ok(Vec::new());
    }
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    let (_, _, na) = open_root(source, a)?;
    let (_, _, nb) = open_root(source, b)?;
    diff_nodes(source, na, nb, &mut Vec::new(), &mut before, &mut after)?;
    let mut changes = Vec::new();
    let keys: std::collections::BTreeSet<Vec<u8>> =
        before.keys().chain(after.keys()).cloned().collect();
    for key in keys {
        let (b0, a0) = (before.remove(&key), after.remove(&key));
        if b0 != a0 {
            changes.push(KeyChange {
                key,
                before: b0,
                after: a0,
            });
        }
    }
    Ok(changes)
}

/// A linked value's block, checked against the length its entry records.
///
/// # Errors
/// Missing, or of another length.
pub fn value_block<S: BlockSource>(
    source: &mut S,
    cid: &Cid,
    len: u64,
) -> Result<Vec<u8>, StateError> {
    let data = fetch(source, cid, RAW)?;
    if data.len() as u64 == len {
        Ok(data)
    } else {
        Err(StateError::Invalid {
            cid: *cid,
            reason: Invalid::ValueLength,
        })
    }
}

fn open_root<S: BlockSource>(source: &mut S, cid: &Cid) -> Result<(u64, u64, Node), StateError> {
    let data = fetch(source, cid, DAG_CBOR)?;
    let RootWire(count, bytes, node) =
        decode_capped(&data, MAX_BLOCK_SIZE).map_err(|source| StateError::Decode {
            cid: *cid,
            source: Box::new(source),
        })?;
    Ok((count, bytes, from_wire(node, cid, &[], true)?))
}

/// Collects the entries of slots that differ between two nodes at the same
/// path into `before` and `after`.
fn diff_nodes<S: BlockSource>(
    source: &mut S,
    mut a: Node,
    mut b: Node,
    path: &mut Vec<u8>,
    before: &mut BTreeMap<Vec<u8>, Value>,
    after: &mut BTreeMap<Vec<u8>, Value>,
) -> Result<(), StateError> {
    let mut loaded = 0;
    for slot in 0..32u8 {
        match (a.slots.remove(&slot), b.slots.remove(&slot)) {
            (None, None) => {}
            (Some(Slot::Stored(x)), Some(Slot::Stored(y))) if x == y => {}
            (Some(Slot::Stored(x)), Some(Slot::Stored(y))) => {
                path.push(slot);
                let nx = load_node(source, &x, path)?;
                let ny = load_node(source, &y, path)?;
                diff_nodes(source, nx, ny, path, before, after)?;
                path.pop();
            }
            (x, y) => {
                path.push(slot);
                for (side, out) in [(x, &mut *before), (y, &mut *after)] {
                    if let Some(mut s) = side {
                        collect_slot(source, &mut s, path, out, &mut loaded)?;
                    }
                }
                path.pop();
            }
        }
    }
    Ok(())
}

fn collect<S: BlockSource>(
    source: &mut S,
    node: &mut Node,
    path: &mut Vec<u8>,
    out: &mut BTreeMap<Vec<u8>, Value>,
    loaded: &mut u64,
) -> Result<(), StateError> {
    for (&slot, s) in &mut node.slots {
        path.push(slot);
        collect_slot(source, s, path, out, loaded)?;
        path.pop();
    }
    Ok(())
}

/// `path` already includes the slot.
fn collect_slot<S: BlockSource>(
    source: &mut S,
    slot: &mut Slot,
    path: &mut Vec<u8>,
    out: &mut BTreeMap<Vec<u8>, Value>,
    loaded: &mut u64,
) -> Result<(), StateError> {
    if let Slot::Stored(cid) = slot {
        let child = load_node(source, cid, path)?;
        *loaded += 1;
        *slot = Slot::Loaded(Box::new(child));
    }
    match slot {
        Slot::Bucket(entries) => {
            for Entry(k, v) in entries.iter() {
                out.insert(k.clone(), v.clone());
            }
            Ok(())
        }
        Slot::Loaded(child) => collect(source, child, path, out, loaded),
        Slot::Stored(_) => unreachable!("loaded just above"),
    }
}

fn fetch<S: BlockSource>(source: &mut S, cid: &Cid, codec: u64) -> Result<Vec<u8>, StateError> {
    if cid.codec() != codec {
        return Err(StateError::Invalid {
            cid: *cid,
            reason: Invalid::Codec,
        });
    }
    let data = source
        .block(cid)
        .map_err(|source| StateError::Missing { cid: *cid, source })?;
    if !cid::matches(cid, &data) {
        return Err(StateError::Invalid {
            cid: *cid,
            reason: Invalid::Hash,
        });
    }
    Ok(data)
}

/// Loads and checks the node at `path` (the slots from the root).
fn load_node<S: BlockSource>(source: &mut S, cid: &Cid, path: &[u8]) -> Result<Node, StateError> {
    if path.len() > MAX_DEPTH {
        return Err(StateError::Invalid {
            cid: *cid,
            reason: Invalid::TooDeep,
        });
    }
    let data = fetch(source, cid, DAG_CBOR)?;
    let wire: NodeWire =
        decode_capped(&data, MAX_BLOCK_SIZE).map_err(|source| StateError::Decode {
            cid: *cid,
            source: Box::new(source),
        })?;
    from_wire(wire, cid, path, false)
}

/// Checks a decoded node against the layout and builds it in memory.
fn from_wire(wire: NodeWire, cid: &Cid, path: &[u8], root: bool) -> Result<Node, StateError> {
    let invalid = |reason| StateError::Invalid { cid: *cid, reason };
    let NodeWire(bucket_bits, link_bits, buckets, links) = wire;
    if bucket_bits & link_bits != 0
        || bucket_bits.count_ones() as usize != buckets.len()
        || link_bits.count_ones() as usize != links.len()
    {
        return Err(invalid(Invalid::Bitmap));
    }
    let depth = path.len();
    let mut node = Node::default();
    let mut buckets = buckets.into_iter();
    let mut links = links.into_iter();
    let mut keys = 0;
    for slot in 0..32u8 {
        let bit = 1u32 << slot;
        if bucket_bits & bit != 0 {
            let entries = buckets.next().expect("counted above");
            if entries.is_empty()
                || entries.len() > BUCKET_SIZE
                || entries.windows(2).any(|w| w[0].0 >= w[1].0)
            {
                return Err(invalid(Invalid::Bucket));
            }
            for Entry(key, value) in &entries {
                if key.len() > MAX_KEY || !value.valid() {
                    return Err(invalid(Invalid::Entry));
                }
                let hash = key_hash(key);
                let placed = path
                    .iter()
                    .enumerate()
                    .all(|(d, &s)| slot_of(&hash, d) == s)
                    && slot_of(&hash, depth) == slot;
                if !placed {
                    return Err(invalid(Invalid::Bucket));
                }
            }
            keys += entries.len();
            node.slots.insert(slot, Slot::Bucket(entries));
        } else if link_bits & bit != 0 {
            let link = links.next().expect("counted above");
            if link.codec() != DAG_CBOR || depth >= MAX_DEPTH {
                return Err(invalid(if depth >= MAX_DEPTH {
                    Invalid::TooDeep
                } else {
                    Invalid::Codec
                }));
            }
            node.slots.insert(slot, Slot::Stored(link));
        }
    }
    if !root && link_bits == 0 && keys <= BUCKET_SIZE {
        return Err(invalid(Invalid::NotCollapsed));
    }
    Ok(node)
}

fn to_wire(node: &Node, blocks: &mut Vec<(Cid, Vec<u8>)>) -> NodeWire {
    let mut wire = NodeWire::default();
    for (&slot, s) in &node.slots {
        match s {
            Slot::Bucket(entries) => {
                wire.0 |= 1 << slot;
                wire.2.push(entries.clone());
            }
            Slot::Stored(cid) => {
                wire.1 |= 1 << slot;
                wire.3.push(*cid);
            }
            Slot::Loaded(child) => {
                let child_wire = to_wire(child, blocks);
                let bytes = to_cbor(&child_wire);
                let cid = cid::cid_of(DAG_CBOR, &bytes);
                blocks.push((cid, bytes));
                wire.1 |= 1 << slot;
                wire.3.push(cid);
            }
        }
    }
    wire
}

/// Inserts into the node at `depth` (whose path to `entry` is loaded);
/// returns the entry replaced.
fn insert(node: &mut Node, entry: Entry, hash: &[u8; 32], depth: usize) -> Option<Entry> {
    let slot = slot_of(hash, depth);
    match node.slots.get_mut(&slot) {
        None => {
            node.slots.insert(slot, Slot::Bucket(vec![entry]));
            None
        }
        Some(Slot::Bucket(entries)) => {
            match entries.binary_search_by(|e| e.0.as_slice().cmp(&entry.0)) {
                Ok(i) => Some(std::mem::replace(&mut entries[i], entry)),
                Err(i) if entries.len() < BUCKET_SIZE => {
                    entries.insert(i, entry);
                    None
                }
                Err(_) => {
                    // Over-full: the slot becomes a child node of all of them.
                    let mut child = Node::default();
                    for e in std::mem::take(entries).into_iter().chain([entry]) {
                        let h = key_hash(&e.0);
                        insert(&mut child, e, &h, depth + 1);
                    }
                    node.slots.insert(slot, Slot::Loaded(Box::new(child)));
                    None
                }
            }
        }
        Some(Slot::Loaded(child)) => insert(child, entry, hash, depth + 1),
        Some(Slot::Stored(_)) => unreachable!("the path was loaded before inserting"),
    }
}

/// Removes `key` below `node` (path loaded), collapsing a child that is
/// left with few enough keys into a bucket.
fn remove(node: &mut Node, key: &[u8], hash: &[u8; 32], depth: usize) -> Option<Entry> {
    let slot = slot_of(hash, depth);
    match node.slots.get_mut(&slot) {
        None | Some(Slot::Stored(_)) => None,
        Some(Slot::Bucket(entries)) => {
            let i = entries.iter().position(|e| e.0 == key)?;
            let removed = entries.remove(i);
            if entries.is_empty() {
                node.slots.remove(&slot);
            }
            Some(removed)
        }
        Some(Slot::Loaded(child)) => {
            let removed = remove(child, key, hash, depth + 1)?;
            let only_buckets = child.slots.values().all(|s| matches!(s, Slot::Bucket(_)));
            let keys: usize = child
                .slots
                .values()
                .map(|s| match s {
                    Slot::Bucket(e) => e.len(),
                    _ => 0,
                })
                .sum();
            if only_buckets && keys <= BUCKET_SIZE {
                let mut entries: Vec<Entry> = std::mem::take(&mut child.slots)
                    .into_values()
                    .flat_map(|s| match s {
                        Slot::Bucket(e) => e,
                        _ => Vec::new(),
                    })
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                node.slots.insert(slot, Slot::Bucket(entries));
            }
            Some(removed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (BTreeMap<Cid, Vec<u8>>, Cid) {
        let (cid, bytes) = empty();
        (BTreeMap::from([(cid, bytes)]), cid)
    }

    /// Applies `ops` and stores the blocks; returns the new root.
    fn apply(
        blocks: &mut BTreeMap<Cid, Vec<u8>>,
        root: &Cid,
        ops: &[(&[u8], Option<&[u8]>)],
    ) -> Summary {
        let mut state = GuestState::open(blocks.clone(), root).unwrap();
        for (k, v) in ops {
            match v {
                Some(v) => state.set(k.to_vec(), v.to_vec()).unwrap(),
                None => {
                    state.delete(k).unwrap();
                }
            }
        }
        let (summary, new) = state.commit();
        blocks.extend(new);
        summary
    }

    #[test]
    fn the_empty_state_is_eight_bytes_and_opens() {
        let (cid, bytes) = empty();
        assert_eq!(bytes, [0x83, 0x00, 0x00, 0x84, 0x00, 0x00, 0x80, 0x80]);
        let mut state = GuestState::open(BTreeMap::from([(cid, bytes)]), &cid).unwrap();
        assert_eq!((state.count(), state.bytes()), (0, 0));
        assert_eq!(state.get(b"anything").unwrap(), None);
        assert_eq!(state.commit().0.root, cid);
    }

    #[test]
    fn reads_see_writes_and_deletes() {
        let (mut blocks, root) = fresh();
        let s = apply(
            &mut blocks,
            &root,
            &[(b"a", Some(b"1")), (b"b", Some(b"2"))],
        );
        assert_eq!((s.count, s.bytes), (2, 4));
        let mut state = GuestState::open(blocks.clone(), &s.root).unwrap();
        assert_eq!(state.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(state.get(b"c").unwrap(), None);
        state.set(b"a".to_vec(), b"one".to_vec()).unwrap();
        assert_eq!(state.get(b"a").unwrap(), Some(b"one".to_vec()));
        assert!(state.delete(b"b").unwrap());
        assert!(!state.delete(b"b").unwrap());
        assert_eq!(state.get(b"b").unwrap(), None);
        assert_eq!((state.count(), state.bytes()), (1, 4));
    }

    #[test]
    fn large_values_live_in_their_own_block() {
        let (mut blocks, root) = fresh();
        let big = vec![7u8; MAX_INLINE + 1];
        let s = apply(&mut blocks, &root, &[(b"big", Some(&big))]);
        assert!(blocks.contains_key(&cid::raw_cid(&big)));
        let mut state = GuestState::open(blocks.clone(), &s.root).unwrap();
        assert_eq!(state.value_len(b"big").unwrap(), Some(big.len() as u64));
        assert_eq!(state.blocks_loaded(), 1, "the length is in the entry");
        let len = big.len() as u64;
        assert_eq!(state.get_within(b"big", 16).unwrap(), Some((len, None)));
        assert_eq!(state.blocks_loaded(), 1, "a value over the cap is not read");
        assert_eq!(
            state.get_within(b"big", len).unwrap(),
            Some((len, Some(big.clone())))
        );
        assert_eq!(state.blocks_loaded(), 2);
        assert_eq!(state.get(b"big").unwrap(), Some(big));
        let err = state
            .set(b"k".to_vec(), vec![0; MAX_VALUE + 1])
            .unwrap_err();
        assert!(matches!(err, StateError::ValueTooLarge(_)), "{err}");
        let err = state.set(vec![0; MAX_KEY + 1], Vec::new()).unwrap_err();
        assert!(matches!(err, StateError::KeyTooLong(_)), "{err}");
    }

    #[test]
    fn the_same_map_has_the_same_root_whatever_the_history() {
        let (mut blocks, root) = fresh();
        let keys: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let forward: Vec<(&[u8], Option<&[u8]>)> = keys
            .iter()
            .map(|k| (k.as_slice(), Some(b"v".as_slice())))
            .collect();
        let a = apply(&mut blocks, &root, &forward);
        // Backwards, with extra keys added and removed again.
        let mut ops: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        let extra: Vec<Vec<u8>> = (1000..1400u32).map(|i| i.to_be_bytes().to_vec()).collect();
        for k in &extra {
            ops.push((k, Some(b"x")));
        }
        for k in keys.iter().rev() {
            ops.push((k, Some(b"v")));
        }
        for k in &extra {
            ops.push((k, None));
        }
        let b = apply(&mut blocks, &root, &ops);
        assert_eq!(a, b);
        // Everything removed, in two commits: the empty state again.
        let half: Vec<(&[u8], Option<&[u8]>)> =
            keys[..150].iter().map(|k| (k.as_slice(), None)).collect();
        let c = apply(&mut blocks, &a.root, &half);
        let rest: Vec<(&[u8], Option<&[u8]>)> =
            keys[150..].iter().map(|k| (k.as_slice(), None)).collect();
        let d = apply(&mut blocks, &c.root, &rest);
        assert_eq!(d.root, root);
    }

    #[test]
    fn one_update_of_a_large_state_reads_one_path() {
        let (mut blocks, root) = fresh();
        let keys: Vec<Vec<u8>> = (0..10_000u32)
            .map(|i| format!("key{i}").into_bytes())
            .collect();
        let ops: Vec<(&[u8], Option<&[u8]>)> = keys
            .iter()
            .map(|k| (k.as_slice(), Some(b"0".as_slice())))
            .collect();
        let s = apply(&mut blocks, &root, &ops);
        let mut state = GuestState::open(blocks.clone(), &s.root).unwrap();
        state.set(b"key42".to_vec(), b"1".to_vec()).unwrap();
        let loaded = state.blocks_loaded();
        assert!(loaded <= 1 + 4, "{loaded} blocks for one key of 10,000");
        let (after, new) = state.commit();
        assert!(new.len() <= 5, "{} blocks written", new.len());
        blocks.extend(new);
        let changes = diff(&mut blocks, &s.root, &after.root).unwrap();
        assert_eq!(
            changes,
            [KeyChange {
                key: b"key42".to_vec(),
                before: Some(Value::Inline(b"0".to_vec())),
                after: Some(Value::Inline(b"1".to_vec())),
            }]
        );
    }

    #[test]
    fn invalid_blocks_are_refused_with_the_rule_they_break() {
        // A child node holding one key (should have been a bucket).
        let key = b"k".to_vec();
        let hash = key_hash(&key);
        let child = NodeWire(
            1 << slot_of(&hash, 1),
            0,
            vec![vec![Entry(key, Value::Inline(vec![]))]],
            vec![],
        );
        let child_bytes = to_cbor(&child);
        let child_cid = cid::cid_of(DAG_CBOR, &child_bytes);
        let root = RootWire(
            1,
            1,
            NodeWire(0, 1 << slot_of(&hash, 0), vec![], vec![child_cid]),
        );
        let root_bytes = to_cbor(&root);
        let root_cid = cid::cid_of(DAG_CBOR, &root_bytes);
        let blocks = BTreeMap::from([(child_cid, child_bytes), (root_cid, root_bytes)]);
        let mut state = GuestState::open(blocks, &root_cid).unwrap();
        let err = state.get(b"k").unwrap_err();
        assert!(
            matches!(
                err,
                StateError::Invalid {
                    reason: Invalid::NotCollapsed,
                    ..
                }
            ),
            "{err}"
        );
        // A root that is not DAG-CBOR of the layout.
        let junk = to_cbor(&("not", "a", "state"));
        let junk_cid = cid::cid_of(DAG_CBOR, &junk);
        let err = GuestState::open(BTreeMap::from([(junk_cid, junk)]), &junk_cid)
            .err()
            .unwrap();
        assert!(matches!(err, StateError::Decode { .. }), "{err}");
        // A missing root.
        let err = GuestState::open(BTreeMap::new(), &junk_cid).err().unwrap();
        assert!(matches!(err, StateError::Missing { .. }), "{err}");
    }
}
