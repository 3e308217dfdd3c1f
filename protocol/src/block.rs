//! The messages of `/phase/block/1.0.0`: ask a peer for blocks by CID.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cid::Cid;
use crate::error::DecodeError;
use crate::wire::{MAX_BLOCK_REQUEST, MAX_BLOCK_RESPONSE, Message};

/// Protocol id of the block protocol.
pub const BLOCK_PROTOCOL: &str = "/phase/block/1.0.0";
/// Most CIDs one request may ask for: a window of blocks in flight, not a
/// whole DAG. A request for more is refused whole.
pub const MAX_WANT: usize = 256;

/// Requester → provider: send me these blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// The blocks wanted, at most [`MAX_WANT`].
    #[serde(deserialize_with = "crate::wire::seq::deserialize")]
    pub want: Vec<Cid>,
}

impl Message for BlockRequest {
    const MAX: usize = MAX_BLOCK_REQUEST;
}

/// One block as it travels: the receiver re-hashes `data` against `cid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireBlock {
    /// What the sender claims this block is.
    pub cid: Cid,
    /// The block's bytes.
    #[serde(with = "crate::wire::shared_bytes")]
    pub data: Bytes,
}

/// Provider → requester: the blocks it has (in request order), and the CIDs
/// it does not have. Blocks that did not fit under the response cap are in
/// neither list: ask again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockResponse {
    /// Blocks found.
    #[serde(deserialize_with = "crate::wire::seq::deserialize")]
    pub blocks: Vec<WireBlock>,
    /// CIDs not held by this peer.
    #[serde(deserialize_with = "crate::wire::seq::deserialize")]
    pub missing: Vec<Cid>,
}

/// A response is megabytes of block data and a few bytes of structure, so
/// it is encoded by hand as pieces that share the blocks' bytes, and decoded
/// into blocks that are slices of the received frame: the data is never
/// copied between the store and the stream. Both directions produce or
/// accept only the canonical DAG-CBOR that the derived serde form encodes
/// to (a property test holds the two encoders to each other).
impl Message for BlockResponse {
    const MAX: usize = MAX_BLOCK_RESPONSE;

    fn encode(&self) -> Vec<u8> {
        self.encode_pieces().concat()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > Self::MAX {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: Self::MAX,
            });
        }
        Self::decode_frame(bytes.to_vec())
    }

    fn encode_pieces(&self) -> Vec<Bytes> {
        let mut pieces = Vec::with_capacity(2 * self.blocks.len() + 1);
        let mut head = Vec::with_capacity(96);
        cbor::head(&mut head, cbor::MAP, 2);
        cbor::text(&mut head, "blocks");
        cbor::head(&mut head, cbor::ARRAY, self.blocks.len() as u64);
        for block in &self.blocks {
            cbor::head(&mut head, cbor::MAP, 2);
            cbor::text(&mut head, "cid");
            cbor::cid(&mut head, &block.cid);
            cbor::text(&mut head, "data");
            cbor::head(&mut head, cbor::BYTES, block.data.len() as u64);
            pieces.push(Bytes::from(std::mem::replace(
                &mut head,
                Vec::with_capacity(96),
            )));
            pieces.push(block.data.clone());
        }
        cbor::text(&mut head, "missing");
        cbor::head(&mut head, cbor::ARRAY, self.missing.len() as u64);
        for cid in &self.missing {
            cbor::cid(&mut head, cid);
        }
        pieces.push(Bytes::from(head));
        pieces
    }

    fn decode_frame(frame: Vec<u8>) -> Result<Self, DecodeError> {
        if frame.len() > Self::MAX {
            return Err(DecodeError::TooLarge {
                len: frame.len(),
                max: Self::MAX,
            });
        }
        let frame = Bytes::from(frame);
        let view: ResponseView<'_> =
            serde_ipld_dagcbor::from_slice(&frame).map_err(DecodeError::Cbor)?;
        let response = Self {
            blocks: view
                .blocks
                .into_iter()
                .map(|b| WireBlock {
                    cid: b.cid,
                    data: frame.slice_ref(b.data),
                })
                .collect(),
            missing: view.missing,
        };
        if !pieces_are(&response.encode_pieces(), &frame) {
            return Err(DecodeError::NonCanonical);
        }
        Ok(response)
    }
}

/// A response borrowing its blocks' bytes from the frame being decoded.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseView<'a> {
    #[serde(borrow, deserialize_with = "crate::wire::seq::deserialize")]
    blocks: Vec<BlockView<'a>>,
    #[serde(deserialize_with = "crate::wire::seq::deserialize")]
    missing: Vec<Cid>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockView<'a> {
    cid: Cid,
    data: &'a [u8],
}

/// Whether `pieces`, one after another, are exactly `frame`. A piece that
/// is the very slice of `frame` it would be compared with (a decoded
/// block's data) is equal without reading it.
fn pieces_are(pieces: &[Bytes], frame: &[u8]) -> bool {
    let mut rest = frame;
    for piece in pieces {
        let Some((head, tail)) = rest.split_at_checked(piece.len()) else {
            return false;
        };
        if head.as_ptr() != piece.as_ptr() && head != &piece[..] {
            return false;
        }
        rest = tail;
    }
    rest.is_empty()
}

/// The few canonical DAG-CBOR items a block response is built of.
mod cbor {
    use crate::cid::Cid;

    pub(super) const BYTES: u8 = 2;
    pub(super) const TEXT: u8 = 3;
    pub(super) const ARRAY: u8 = 4;
    pub(super) const MAP: u8 = 5;
    const TAG: u8 = 6;
    /// The CBOR tag of a CID in DAG-CBOR.
    const CID_TAG: u64 = 42;

    /// An item's head: major type and length (or tag), in the shortest form.
    pub(super) fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let major = major << 5;
        if n < 24 {
            out.push(major | n as u8);
        } else if let Ok(n) = u8::try_from(n) {
            out.extend_from_slice(&[major | 24, n]);
        } else if let Ok(n) = u16::try_from(n) {
            out.push(major | 25);
            out.extend_from_slice(&n.to_be_bytes());
        } else if let Ok(n) = u32::try_from(n) {
            out.push(major | 26);
            out.extend_from_slice(&n.to_be_bytes());
        } else {
            out.push(major | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }

    pub(super) fn text(out: &mut Vec<u8>, s: &str) {
        head(out, TEXT, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    /// Tag 42 over the CID's bytes behind the identity multibase prefix.
    pub(super) fn cid(out: &mut Vec<u8>, cid: &Cid) {
        let bytes = cid.to_bytes();
        head(out, TAG, CID_TAG);
        head(out, BYTES, bytes.len() as u64 + 1);
        out.push(0);
        out.extend_from_slice(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::raw_cid;

    fn response(sizes: &[usize], missing: usize) -> BlockResponse {
        BlockResponse {
            blocks: sizes
                .iter()
                .map(|&n| {
                    let data: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
                    WireBlock {
                        cid: raw_cid(&data),
                        data: data.into(),
                    }
                })
                .collect(),
            missing: (0..missing).map(|i| raw_cid(&i.to_le_bytes())).collect(),
        }
    }

    #[test]
    fn large_responses_match_serde_and_decode_into_slices_of_the_frame() {
        // Lengths on every head width: 0, < 24, u8, u16, u32.
        let resp = response(&[0, 5, 200, 60_000, 300_000], 30);
        let frame = serde_ipld_dagcbor::to_vec(&resp).unwrap();
        assert_eq!(resp.encode(), frame);
        let range = frame.as_ptr_range();
        let decoded = BlockResponse::decode_frame(frame).unwrap();
        assert_eq!(decoded, resp);
        // `decode_frame` took the frame without copying it, and the blocks
        // are slices of it.
        for block in decoded.blocks.iter().filter(|b| !b.data.is_empty()) {
            assert!(range.contains(&block.data.as_ptr()));
        }
    }

    #[test]
    fn non_canonical_and_oversized_responses_are_refused() {
        let resp = response(&[10, 20], 1);
        let good = resp.encode();
        // The "blocks" array's length, 2, in a longer form than needed.
        let at = good.iter().position(|&b| b == 0x82).unwrap();
        let mut long = good.clone();
        long.splice(at..=at, [0x98, 2]);
        assert!(BlockResponse::decode(&long).is_err());
        // The two keys in the wrong order. (The DAG-CBOR decoder refuses
        // both itself; the re-encoding check behind it is tested below.)
        let missing_at = good.windows(8).position(|w| w == b"\x67missing").unwrap();
        let (blocks, missing) = (&good[1..missing_at], &good[missing_at..]);
        let swapped = [&good[..1], missing, blocks].concat();
        assert!(BlockResponse::decode(&swapped).is_err());
        // Trailing bytes.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(BlockResponse::decode(&trailing).is_err());
        // Truncated.
        assert!(BlockResponse::decode(&good[..good.len() - 1]).is_err());
        // The check against the re-encoding: equal, shorter, longer, changed.
        let pieces = resp.encode_pieces();
        assert!(pieces_are(&pieces, &good));
        assert!(!pieces_are(&pieces, &good[..good.len() - 1]));
        assert!(!pieces_are(&pieces, &trailing));
        let mut changed = good.clone();
        changed[good.len() / 2] ^= 1;
        assert!(!pieces_are(&pieces, &changed));
        let big = vec![0u8; BlockResponse::MAX + 1];
        assert!(matches!(
            BlockResponse::decode_frame(big),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
