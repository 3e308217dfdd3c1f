//! Bitswap messages (`ipfs/specs` bitswap-protocol.md, 1.1.0 and 1.2.0):
//! the protobuf schema as `prost` derives (`pb`), and the checked types the
//! node uses. Blocks get the CID their prefix and bytes make.
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
//!
//! Protobuf puts no bound on a repeated field, and prost allocates each
//! element as it meets it: a 4 MiB frame of two-byte empty entries would
//! become two million structs (about 80 MB). So before prost sees a frame,
//! [`count`] walks its keys and lengths (no values are decoded) and refuses
//! more than [`MAX_ENTRIES`] of any repeated field.

use bytes::Bytes;
use prost::Message as _;

use crate::Cid;
use crate::cid::{SHA2_256, sha256_multihash};

/// Largest message accepted or sent (what Kubo and Helia use).
pub const MAX_MESSAGE: usize = 4 << 20;
/// Wantlist entries, blocks or presences in one message at most.
pub const MAX_ENTRIES: usize = 8192;

/// Why a frame is not a Bitswap message.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not protobuf of the Bitswap schema.
    #[error("malformed protobuf")]
    Malformed(#[source] prost::DecodeError),
    /// A key or length that ends early or is not a varint.
    #[error("truncated or malformed field")]
    Truncated,
    /// A CID that does not parse.
    #[error("bad CID")]
    Cid(#[source] cid::Error),
    /// A block prefix with a CID version other than 0 or 1.
    #[error("CID version {0} in a block prefix")]
    Version(u64),
    /// A block hashed with something else than sha2-256.
    #[error("unsupported hash in a block prefix")]
    UnsupportedHash,
    /// Over [`MAX_MESSAGE`] or [`MAX_ENTRIES`].
    #[error("message over the limit")]
    TooLarge,
}

/// The wire schema, as prost derives it.
mod pb {
    use bytes::Bytes;

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Message {
        #[prost(message, optional, tag = "1")]
        pub(super) wantlist: Option<Wantlist>,
        #[prost(bytes = "bytes", repeated, tag = "2")]
        pub(super) blocks: Vec<Bytes>,
        #[prost(message, repeated, tag = "3")]
        pub(super) payload: Vec<Block>,
        #[prost(message, repeated, tag = "4")]
        pub(super) block_presences: Vec<BlockPresence>,
        #[prost(int32, tag = "5")]
        pub(super) pending_bytes: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Wantlist {
        #[prost(message, repeated, tag = "1")]
        pub(super) entries: Vec<Entry>,
        #[prost(bool, tag = "2")]
        pub(super) full: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Entry {
        #[prost(bytes = "vec", tag = "1")]
        pub(super) block: Vec<u8>,
        #[prost(int32, tag = "2")]
        pub(super) priority: i32,
        #[prost(bool, tag = "3")]
        pub(super) cancel: bool,
        #[prost(enumeration = "WantType", tag = "4")]
        pub(super) want_type: i32,
        #[prost(bool, tag = "5")]
        pub(super) send_dont_have: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Block {
        #[prost(bytes = "vec", tag = "1")]
        pub(super) prefix: Vec<u8>,
        #[prost(bytes = "bytes", tag = "2")]
        pub(super) data: Bytes,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct BlockPresence {
        #[prost(bytes = "vec", tag = "1")]
        pub(super) cid: Vec<u8>,
        #[prost(enumeration = "PresenceType", tag = "2")]
        pub(super) r#type: i32,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub(super) enum WantType {
        Block = 0,
        Have = 1,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub(super) enum PresenceType {
        Have = 0,
        DontHave = 1,
    }
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

    fn to_pb(&self) -> pb::Message {
        let wantlist = (!self.wantlist.is_empty() || self.full).then(|| pb::Wantlist {
            entries: self
                .wantlist
                .iter()
                .map(|e| pb::Entry {
                    block: e.cid.to_bytes(),
                    priority: e.priority,
                    cancel: e.cancel,
                    want_type: match e.want_type {
                        WantType::Block => pb::WantType::Block,
                        WantType::Have => pb::WantType::Have,
                    } as i32,
                    send_dont_have: e.send_dont_have,
                })
                .collect(),
            full: self.full,
        });
        pb::Message {
            wantlist,
            blocks: Vec::new(),
            payload: self
                .blocks
                .iter()
                .map(|(cid, data)| pb::Block {
                    prefix: prefix(cid),
                    data: data.clone(),
                })
                .collect(),
            block_presences: self
                .presences
                .iter()
                .map(|(cid, presence)| pb::BlockPresence {
                    cid: cid.to_bytes(),
                    r#type: match presence {
                        Presence::Have => pb::PresenceType::Have,
                        Presence::DontHave => pb::PresenceType::DontHave,
                    } as i32,
                })
                .collect(),
            pending_bytes: 0,
        }
    }

    /// The protobuf bytes (without the length prefix).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        self.to_pb().encode_to_vec()
    }

    /// The protobuf bytes after their unsigned-varint length: one frame
    /// of a Bitswap stream.
    #[must_use]
    pub fn encode_framed(&self) -> Vec<u8> {
        self.to_pb().encode_length_delimited_to_vec()
    }

    /// Parses a message; blocks get the CID their prefix and bytes make
    /// (sha2-256 only), so a block that is not what was asked for simply
    /// has another CID.
    ///
    /// # Errors
    /// Anything that is not a well-formed message within the limits.
    pub fn decode(frame: &[u8]) -> Result<Self, MessageError> {
        if frame.len() > MAX_MESSAGE {
            return Err(MessageError::TooLarge);
        }
        count(frame)?;
        let pb = pb::Message::decode(frame).map_err(MessageError::Malformed)?;
        let (wantlist, full) = match pb.wantlist {
            Some(list) => (
                list.entries
                    .into_iter()
                    .map(|e| {
                        Ok(Entry {
                            cid: Cid::try_from(e.block.as_slice()).map_err(MessageError::Cid)?,
                            priority: e.priority,
                            cancel: e.cancel,
                            want_type: if e.want_type == pb::WantType::Have as i32 {
                                WantType::Have
                            } else {
                                WantType::Block
                            },
                            send_dont_have: e.send_dont_have,
                        })
                    })
                    .collect::<Result<Vec<_>, MessageError>>()?,
                list.full,
            ),
            None => (Vec::new(), false),
        };
        let mut blocks = Vec::with_capacity(pb.blocks.len() + pb.payload.len());
        for data in pb.blocks {
            // Bitswap 1.0.0: CIDv0 blocks without a prefix.
            let cid = Cid::new_v0(sha256_multihash(&data)).map_err(MessageError::Cid)?;
            blocks.push((cid, data));
        }
        for block in pb.payload {
            blocks.push((cid_from_prefix(&block.prefix, &block.data)?, block.data));
        }
        let presences = pb
            .block_presences
            .into_iter()
            .map(|p| {
                let cid = Cid::try_from(p.cid.as_slice()).map_err(MessageError::Cid)?;
                let presence = if p.r#type == pb::PresenceType::DontHave as i32 {
                    Presence::DontHave
                } else {
                    Presence::Have
                };
                Ok((cid, presence))
            })
            .collect::<Result<Vec<_>, MessageError>>()?;
        Ok(Self {
            wantlist,
            full,
            blocks,
            presences,
        })
    }
}

/// Refuses a frame with more than [`MAX_ENTRIES`] wantlist entries,
/// blocks or presences, before prost allocates them: walks keys and
/// lengths only, at the top level and inside each wantlist.
fn count(frame: &[u8]) -> Result<(), MessageError> {
    let (mut entries, mut blocks, mut presences) = (0usize, 0usize, 0usize);
    let mut fields = Fields(frame);
    while let Some((number, body)) = fields.next_field()? {
        let n = match number {
            1 => {
                let mut inner = Fields(body.unwrap_or_default());
                while let Some((number, _)) = inner.next_field()? {
                    entries += usize::from(number == 1);
                }
                &mut entries
            }
            2 | 3 => {
                blocks += 1;
                &mut blocks
            }
            4 => {
                presences += 1;
                &mut presences
            }
            _ => continue,
        };
        if *n > MAX_ENTRIES {
            return Err(MessageError::TooLarge);
        }
    }
    Ok(())
}

/// The fields of a protobuf message, one by one.
struct Fields<'a>(&'a [u8]);

/// A field's number and, when it is length-delimited, its bytes (`None`
/// for the others, which are skipped).
type Field<'a> = (u64, Option<&'a [u8]>);

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Option<Field<'a>>, MessageError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let body = match key & 7 {
            0 => {
                self.varint()?;
                None
            }
            1 => {
                self.take(8)?;
                None
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| MessageError::TooLarge)?;
                Some(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                None
            }
            _ => return Err(MessageError::Truncated),
        };
        Ok(Some((key >> 3, body)))
    }

    fn varint(&mut self) -> Result<u64, MessageError> {
        let (value, rest) =
            unsigned_varint::decode::u64(self.0).map_err(|_| MessageError::Truncated)?;
        self.0 = rest;
        Ok(value)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        if n > self.0.len() {
            return Err(MessageError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

/// A CID's prefix: version, codec, hash code, digest length.
fn prefix(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    let mut buf = unsigned_varint::encode::u64_buffer();
    for v in [
        cid.version() as u64,
        cid.codec(),
        cid.hash().code(),
        u64::from(cid.hash().size()),
    ] {
        out.extend_from_slice(unsigned_varint::encode::u64(v, &mut buf));
    }
    out
}

/// The CID a prefix and the bytes make.
fn cid_from_prefix(prefix: &[u8], data: &[u8]) -> Result<Cid, MessageError> {
    let mut r = Fields(prefix);
    let version = r.varint()?;
    let codec = r.varint()?;
    let code = r.varint()?;
    let len = r.varint()?;
    if code != SHA2_256 || len != 32 {
        return Err(MessageError::UnsupportedHash);
    }
    let hash = sha256_multihash(data);
    match version {
        0 => Cid::new_v0(hash).map_err(MessageError::Cid),
        1 => Ok(Cid::new_v1(codec, hash)),
        v => Err(MessageError::Version(v)),
    }
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
        assert!(matches!(
            Message::decode(&[0x0a, 0x05, 0x01]),
            Err(MessageError::Truncated)
        ));
        assert!(matches!(
            Message::decode(&vec![0u8; MAX_MESSAGE + 1]),
            Err(MessageError::TooLarge)
        ));
        // A block hashed with something else.
        let block = pb::Block {
            prefix: vec![1, 0x55, 0x13, 64],
            data: Bytes::from_static(b"x"),
        };
        let wire = pb::Message {
            payload: vec![block],
            ..pb::Message::default()
        }
        .encode_to_vec();
        assert!(matches!(
            Message::decode(&wire),
            Err(MessageError::UnsupportedHash)
        ));
    }

    #[test]
    fn a_frame_of_empty_entries_is_refused_before_prost_allocates_them() {
        // An empty wantlist entry is two bytes: field 1, length 0.
        let entries = [0x0a, 0x00].repeat(MAX_ENTRIES + 1);
        let mut wire = vec![0x0a];
        let mut buf = unsigned_varint::encode::usize_buffer();
        wire.extend_from_slice(unsigned_varint::encode::usize(entries.len(), &mut buf));
        wire.extend_from_slice(&entries);
        assert!(matches!(
            Message::decode(&wire),
            Err(MessageError::TooLarge)
        ));
        // Empty payload blocks at the top level, likewise.
        let blocks = [0x1a, 0x00].repeat(MAX_ENTRIES + 1);
        assert!(matches!(
            Message::decode(&blocks),
            Err(MessageError::TooLarge)
        ));
        // At the limit, the count passes (and the empty CIDs fail to parse).
        let blocks = [0x22, 0x00].repeat(MAX_ENTRIES);
        assert!(matches!(
            Message::decode(&blocks),
            Err(MessageError::Cid(_))
        ));
    }

    #[test]
    fn framed_messages_carry_their_length_as_an_unsigned_varint() {
        let msg = Message {
            blocks: vec![(raw_cid(b"abc"), Bytes::from_static(b"abc"))],
            ..Message::default()
        };
        let framed = msg.encode_framed();
        let (len, body) = unsigned_varint::decode::usize(&framed).unwrap();
        assert_eq!(len, body.len());
        assert_eq!(Message::decode(body).unwrap(), msg);
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
