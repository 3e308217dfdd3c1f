//! Canonical DAG-CBOR encoding of every message, with a size cap per type
//! that the decoder checks before it parses anything.
//!
//! Length-prefix framing lives in the node's codec; this module sees whole
//! message bodies. Decoding also rejects non-canonical input, so the bytes
//! a peer sent are exactly the bytes ids and signatures are computed over.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DecodeError;

/// Largest `/phase/job/1.0.0` request body. A job spec is CIDs, limits, and
/// at most [`crate::job::MAX_ARGS_BYTES`] of args and env; a delivered
/// receipt is under 2 KiB. 256 KiB leaves room for both with margin, and is
/// small enough that a flood of requests cannot exhaust memory.
pub const MAX_JOB_REQUEST: usize = 256 * 1024;
/// Largest `/phase/job/1.0.0` response body: a receipt, a status or a
/// capability answer, each a few KiB at most.
pub const MAX_JOB_RESPONSE: usize = 64 * 1024;
/// Largest `/phase/block/1.0.0` request body: [`crate::block::MAX_WANT`]
/// CIDs of at most 64 bytes each, plus framing.
pub const MAX_BLOCK_REQUEST: usize = 32 * 1024;
/// Largest single block accepted from a peer: 2 MiB, Bitswap's limit, which
/// any block written by an IPFS tool with default settings fits (chunks are
/// 256 KiB, Kubo's largest allowed chunk is 1 MiB).
pub const MAX_BLOCK_SIZE: usize = 2 * 1024 * 1024;
/// Largest `/phase/block/1.0.0` response body: a batch of blocks whose data
/// adds up to at most 8 MiB, so a response streams in well under a second
/// on loopback and a slow peer holds little memory.
pub const MAX_BLOCK_RESPONSE: usize = 8 * 1024 * 1024 + 64 * 1024;
/// Largest signed receipt block.
pub const MAX_RECEIPT: usize = 16 * 1024;
/// Largest job spec block.
pub const MAX_JOB_SPEC: usize = 128 * 1024;

/// A type with a canonical DAG-CBOR encoding and a size cap.
pub trait Message: Serialize + DeserializeOwned {
    /// Largest encoded size [`Message::decode`] accepts.
    const MAX: usize;

    /// Canonical DAG-CBOR bytes.
    fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Parses canonical DAG-CBOR of at most [`Message::MAX`] bytes.
    ///
    /// # Errors
    /// Oversized, malformed or non-canonical input.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_capped(bytes, Self::MAX)
    }

    /// [`Message::encode`] as pieces to write one after another: a type
    /// whose bytes are mostly payload (block data) shares them instead of
    /// copying them into one buffer.
    fn encode_pieces(&self) -> Vec<Bytes> {
        vec![Bytes::from(self.encode())]
    }

    /// [`Message::decode`] of a whole frame the caller owns: a type whose
    /// bytes are mostly payload keeps slices of `frame` instead of copying.
    ///
    /// # Errors
    /// As `decode`.
    fn decode_frame(frame: Vec<u8>) -> Result<Self, DecodeError> {
        Self::decode(&frame)
    }
}

/// Canonical DAG-CBOR of a value whose types all encode (no non-string map
/// keys, no floats that DAG-CBOR forbids).
pub(crate) fn to_cbor<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_ipld_dagcbor::to_vec(value)
        .expect("protocol types have string map keys and no NaN floats, so they always encode")
}

/// Decodes `bytes` (at most `max`) and checks they are canonical.
pub(crate) fn decode_capped<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    max: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let value: T = serde_ipld_dagcbor::from_slice(bytes).map_err(DecodeError::Cbor)?;
    if !encodes_to(&value, bytes) {
        return Err(DecodeError::NonCanonical);
    }
    Ok(value)
}

/// Whether `value`'s canonical encoding is exactly `bytes`: compared as it
/// is produced, without building a second copy (a block response is
/// megabytes).
fn encodes_to<T: Serialize>(value: &T, bytes: &[u8]) -> bool {
    /// Compares what is written against `expected`, from the start.
    struct Compare<'a> {
        expected: &'a [u8],
        same: bool,
    }
    impl std::io::Write for Compare<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match self.expected.split_at_checked(buf.len()) {
                Some((head, rest)) if self.same && head == buf => self.expected = rest,
                _ => self.same = false,
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut compare = Compare {
        expected: bytes,
        same: true,
    };
    serde_ipld_dagcbor::to_writer(&mut compare, value).is_ok()
        && compare.same
        && compare.expected.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_comparison_catches_every_difference() {
        let value = vec![1u32, 2, 3];
        let bytes = to_cbor(&value);
        assert!(encodes_to(&value, &bytes));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(!encodes_to(&value, &longer), "trailing bytes");
        assert!(!encodes_to(&value, &bytes[..bytes.len() - 1]), "truncated");
        let mut changed = bytes.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(!encodes_to(&value, &changed), "a changed byte");
        assert!(!encodes_to(&value, &[]), "empty");
    }
}

/// Serde for a `Bytes` field as a CBOR byte string (like `serde_bytes`
/// does for `Vec<u8>`).
pub(crate) mod shared_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(data)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        serde_bytes::ByteBuf::deserialize(d).map(|b| Bytes::from(b.into_vec()))
    }
}

/// Deserializes a `Vec` without trusting the length prefix: serde would
/// preallocate up to 1 MiB for a claimed 2^32 elements; this grows only with
/// elements actually present in the (capped) input.
pub(crate) mod seq {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::Deserialize;
    use serde::de::{Deserializer, SeqAccess, Visitor};

    pub(crate) fn deserialize<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct SeqVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqVisitor<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(items)
            }
        }
        d.deserialize_seq(SeqVisitor(PhantomData))
    }
}
