//! Bitswap messages (`ipfs/specs` bitswap-protocol.md, 1.1.0 and 1.2.0):
//! protobuf, encoded and decoded by hand, every length checked against the
//! frame it sits in.
//!
//! ```text
//! Message { Wantlist wantlist = 1; repeated bytes blocks = 2 (1.0.0);
//!           repeated Block payload = 3; repeated BlockPresence blockPresences = 4;
//!           int32 pendingBytes = 5; }
//! Wantlist { repeated Entry entries = 1; bool full = 2; }
//! Entry { bytes block = 1; int32 priority = 2; bool cancel = 3;
//!         WantType wantType = 4 (Block 0, Have 1); bool sendDontHave = 5; }
//! Block { bytes prefix = 1; bytes data = 2; }
//! BlockPresence { bytes cid = 1; BlockPresenceType type = 2 (Have 0, DontHave 1); }
//! ```

use bytes::Bytes;

use crate::Cid;
use crate::cid::{SHA2_256, sha256_multihash};

/// Largest message accepted or sent (what Kubo and Helia use).
pub const MAX_MESSAGE: usize = 4 << 20;
/// Wantlist entries, blocks or presences in one message at most.
pub const MAX_ENTRIES: usize = 8192;

/// Why a frame is not a Bitswap message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// The frame ends inside a field.
    #[error("truncated message")]
    Truncated,
    /// A wire type protobuf does not have, or a varint over 10 bytes.
    #[error("malformed protobuf")]
    Malformed,
    /// A CID or block prefix that does not parse.
    #[error("bad CID: {0}")]
    Cid(String),
    /// A block hashed with something else than sha2-256.
    #[error("unsupported hash in a block prefix")]
    UnsupportedHash,
    /// Over [`MAX_MESSAGE`] or [`MAX_ENTRIES`].
    #[error("message over the limit")]
    TooLarge,
}

/// What a wantlist entry asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WantType {
    /// The block itself.
    Block,
    /// Whether the peer has it.
    Have,
}

/// One wantlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The block wanted (or no longer wanted).
    pub cid: Cid,
    /// Higher first.
    pub priority: i32,
    /// Withdraws an earlier want.
    pub cancel: bool,
    /// Block or have.
    pub want_type: WantType,
    /// Answer `DontHave` when the block is missing.
    pub send_dont_have: bool,
}

/// A peer's answer about one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// It has the block.
    Have,
    /// It has not.
    DontHave,
}

/// One Bitswap message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Wants and cancels.
    pub wantlist: Vec<Entry>,
    /// Whether the wantlist replaces the previous one.
    pub full: bool,
    /// Blocks, each with the CID its prefix and bytes make.
    pub blocks: Vec<(Cid, Bytes)>,
    /// Haves and don't-haves.
    pub presences: Vec<(Cid, Presence)>,
}

impl Message {
    /// Whether there is nothing in it.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.wantlist.is_empty() && self.blocks.is_empty() && self.presences.is_empty()
    }

    /// The protobuf bytes (without the length prefix).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.wantlist.is_empty() || self.full {
            let mut list = Vec::new();
            for e in &self.wantlist {
                let mut entry = Vec::new();
                put_bytes(&mut entry, 1, &e.cid.to_bytes());
                if e.priority != 0 {
                    // int32: negative values are ten-byte varints.
                    put_varint_field(&mut entry, 2, i64::from(e.priority) as u64);
                }
                if e.cancel {
                    put_varint_field(&mut entry, 3, 1);
                }
                if e.want_type == WantType::Have {
                    put_varint_field(&mut entry, 4, 1);
                }
                if e.send_dont_have {
                    put_varint_field(&mut entry, 5, 1);
                }
                put_bytes(&mut list, 1, &entry);
            }
            if self.full {
                put_varint_field(&mut list, 2, 1);
            }
            put_bytes(&mut out, 1, &list);
        }
        for (cid, data) in &self.blocks {
            let mut block = Vec::new();
            put_bytes(&mut block, 1, &prefix(cid));
            put_bytes(&mut block, 2, data);
            put_bytes(&mut out, 3, &block);
        }
        for (cid, presence) in &self.presences {
            let mut p = Vec::new();
            put_bytes(&mut p, 1, &cid.to_bytes());
            if *presence == Presence::DontHave {
                put_varint_field(&mut p, 2, 1);
            }
            put_bytes(&mut out, 4, &p);
        }
        out
    }

    /// Parses a message; blocks get the CID their prefix and bytes make
    /// (sha2-256 only), so a block that is not what was asked for simply
    /// has another CID.
    ///
    /// # Errors
    /// Anything that is not a well-formed message within the limits.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(MessageError::TooLarge);
        }
        let mut msg = Self::default();
        let mut r = Reader(bytes);
        let mut count = 0usize;
        while let Some((field, value)) = r.field()? {
            count += 1;
            if count > 4 * MAX_ENTRIES {
                return Err(MessageError::TooLarge);
            }
            match (field, value) {
                (1, Value::Bytes(list)) => {
                    let mut r = Reader(list);
                    while let Some((field, value)) = r.field()? {
                        match (field, value) {
                            (1, Value::Bytes(entry)) => {
                                if msg.wantlist.len() >= MAX_ENTRIES {
                                    return Err(MessageError::TooLarge);
                                }
                                msg.wantlist.push(decode_entry(entry)?);
                            }
                            (2, Value::Varint(v)) => msg.full = v != 0,
                            _ => {}
                        }
                    }
                }
                (2, Value::Bytes(data)) => {
                    // Bitswap 1.0.0: CIDv0 blocks without a prefix.
                    let cid = Cid::new_v0(sha256_multihash(data))
                        .map_err(|e| MessageError::Cid(e.to_string()))?;
                    msg.push_block(cid, data)?;
                }
                (3, Value::Bytes(block)) => {
                    let (mut pre, mut data) = (None, None);
                    let mut r = Reader(block);
                    while let Some((field, value)) = r.field()? {
                        match (field, value) {
                            (1, Value::Bytes(p)) => pre = Some(p),
                            (2, Value::Bytes(d)) => data = Some(d),
                            _ => {}
                        }
                    }
                    let (Some(pre), Some(data)) = (pre, data) else {
                        return Err(MessageError::Truncated);
                    };
                    let cid = cid_from_prefix(pre, data)?;
                    msg.push_block(cid, data)?;
                }
                (4, Value::Bytes(p)) => {
                    let (mut cid, mut kind) = (None, Presence::Have);
                    let mut r = Reader(p);
                    while let Some((field, value)) = r.field()? {
                        match (field, value) {
                            (1, Value::Bytes(c)) => {
                                cid = Some(
                                    Cid::try_from(c)
                                        .map_err(|e| MessageError::Cid(e.to_string()))?,
                                );
                            }
                            (2, Value::Varint(1)) => kind = Presence::DontHave,
                            _ => {}
                        }
                    }
                    let cid = cid.ok_or(MessageError::Truncated)?;
                    if msg.presences.len() >= MAX_ENTRIES {
                        return Err(MessageError::TooLarge);
                    }
                    msg.presences.push((cid, kind));
                }
                _ => {}
            }
        }
        Ok(msg)
    }

    fn push_block(&mut self, cid: Cid, data: &[u8]) -> Result<(), MessageError> {
        if self.blocks.len() >= MAX_ENTRIES {
            return Err(MessageError::TooLarge);
        }
        self.blocks.push((cid, Bytes::copy_from_slice(data)));
        Ok(())
    }
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, MessageError> {
    let mut entry = Entry {
        cid: Cid::default(),
        priority: 0,
        cancel: false,
        want_type: WantType::Block,
        send_dont_have: false,
    };
    let mut seen_cid = false;
    let mut r = Reader(bytes);
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Bytes(c)) => {
                entry.cid = Cid::try_from(c).map_err(|e| MessageError::Cid(e.to_string()))?;
                seen_cid = true;
            }
            // int32 on the wire: the low 32 bits of the varint.
            #[allow(clippy::cast_possible_truncation)]
            (2, Value::Varint(v)) => entry.priority = v as i32,
            (3, Value::Varint(v)) => entry.cancel = v != 0,
            (4, Value::Varint(v)) => {
                entry.want_type = if v == 1 {
                    WantType::Have
                } else {
                    WantType::Block
                };
            }
            (5, Value::Varint(v)) => entry.send_dont_have = v != 0,
            _ => {}
        }
    }
    if !seen_cid {
        return Err(MessageError::Truncated);
    }
    Ok(entry)
}

/// A CID's prefix: version, codec, hash code, digest length.
fn prefix(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, cid.version() as u64);
    put_varint(&mut out, cid.codec());
    put_varint(&mut out, cid.hash().code());
    put_varint(&mut out, u64::from(cid.hash().size()));
    out
}

/// The CID a prefix and the bytes make.
fn cid_from_prefix(prefix: &[u8], data: &[u8]) -> Result<Cid, MessageError> {
    let mut r = Reader(prefix);
    let version = r.varint()?;
    let codec = r.varint()?;
    let code = r.varint()?;
    let len = r.varint()?;
    if code != SHA2_256 || len != 32 {
        return Err(MessageError::UnsupportedHash);
    }
    let hash = sha256_multihash(data);
    match version {
        0 => Cid::new_v0(hash).map_err(|e| MessageError::Cid(e.to_string())),
        1 => Ok(Cid::new_v1(codec, hash)),
        _ => Err(MessageError::Cid(format!("version {version}"))),
    }
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, MessageError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.0.split_first().ok_or(MessageError::Truncated)?;
            self.0 = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(MessageError::Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        if n > self.0.len() {
            return Err(MessageError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next field, or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, MessageError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Other
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| MessageError::TooLarge)?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Other
            }
            _ => return Err(MessageError::Malformed),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// Appends `v` as a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        #[allow(clippy::cast_possible_truncation)]
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{DAG_PB, cid_of, raw_cid};
    use proptest::prelude::*;

    fn entry(cid: Cid, want_type: WantType, cancel: bool, priority: i32) -> Entry {
        Entry {
            cid,
            priority,
            cancel,
            want_type,
            send_dont_have: true,
        }
    }

    #[test]
    fn blocks_get_the_cid_of_their_prefix_and_bytes() {
        let v1 = raw_cid(b"abc");
        let v0 = Cid::new_v0(sha256_multihash(b"node")).unwrap();
        let msg = Message {
            blocks: vec![
                (v1, Bytes::from_static(b"abc")),
                (v0, Bytes::from_static(b"node")),
            ],
            ..Message::default()
        };
        let back = Message::decode(&msg.encode()).unwrap();
        assert_eq!(back, msg);
        assert_eq!(
            back.blocks[1]
                .0
                .to_string()
                .chars()
                .take(2)
                .collect::<String>(),
            "Qm"
        );
        // A block whose bytes were changed arrives under another CID.
        let mut wire = msg.encode();
        let at = wire.windows(3).position(|w| w == b"abc").unwrap();
        wire[at] = b'x';
        let changed = Message::decode(&wire).unwrap();
        assert_ne!(changed.blocks[0].0, v1);
    }

    #[test]
    fn garbage_and_oversized_frames_are_refused() {
        assert!(Message::decode(&[0xff; 11]).is_err());
        assert_eq!(
            Message::decode(&[0x0a, 0x05, 0x01]),
            Err(MessageError::Truncated)
        );
        assert_eq!(
            Message::decode(&vec![0u8; MAX_MESSAGE + 1]),
            Err(MessageError::TooLarge)
        );
        // A block hashed with something else.
        let mut block = Vec::new();
        put_bytes(&mut block, 1, &[1, 0x55, 0x13, 64]);
        put_bytes(&mut block, 2, b"x");
        let mut wire = Vec::new();
        put_bytes(&mut wire, 3, &block);
        assert_eq!(Message::decode(&wire), Err(MessageError::UnsupportedHash));
    }

    proptest! {
        #[test]
        fn messages_round_trip(
            wants in proptest::collection::vec((any::<Vec<u8>>(), any::<bool>(), any::<bool>(), any::<i32>()), 0..20),
            blocks in proptest::collection::vec(any::<Vec<u8>>(), 0..5),
            haves in proptest::collection::vec((any::<Vec<u8>>(), any::<bool>()), 0..10),
            full in any::<bool>(),
        ) {
            let msg = Message {
                wantlist: wants.iter().map(|(b, have, cancel, p)| entry(
                    cid_of(DAG_PB, b),
                    if *have { WantType::Have } else { WantType::Block },
                    *cancel,
                    *p,
                )).collect(),
                full,
                blocks: blocks.iter().map(|b| (raw_cid(b), Bytes::from(b.clone()))).collect(),
                presences: haves.iter().map(|(b, dont)| (
                    raw_cid(b),
                    if *dont { Presence::DontHave } else { Presence::Have },
                )).collect(),
            };
            prop_assert_eq!(Message::decode(&msg.encode()).unwrap(), msg);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in any::<Vec<u8>>()) {
            let _ = Message::decode(&bytes);
        }
    }
}
