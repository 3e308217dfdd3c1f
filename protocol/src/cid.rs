//! CIDv1 constructors for the three block kinds the network stores.
//!
//! Every CID here is version 1 with a sha2-256 multihash, printed in base32
//! (`bafy…` for dag-pb and dag-cbor, `bafk…` for raw), exactly as Kubo and
//! Helia print them.

pub use ::cid::Cid;
use multihash::Multihash;
use sha2::{Digest, Sha256};

/// Multicodec of raw bytes: a file chunk, or a whole file of one chunk.
pub const RAW: u64 = 0x55;
/// Multicodec of dag-pb: UnixFS file and directory nodes.
pub const DAG_PB: u64 = 0x70;
/// Multicodec of dag-cbor: job specs and receipts.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of sha2-256, the only hash this network accepts.
pub const SHA2_256: u64 = 0x12;

/// The sha2-256 multihash of `bytes`.
#[must_use]
pub fn sha256_multihash(bytes: &[u8]) -> Multihash<64> {
    multihash_of_digest(&Sha256::digest(bytes).into())
}

/// Wraps an already computed sha2-256 digest as a multihash.
#[must_use]
pub fn multihash_of_digest(digest: &[u8; 32]) -> Multihash<64> {
    Multihash::wrap(SHA2_256, digest).expect("a 32-byte digest fits a 64-byte multihash")
}

/// CIDv1 of a block with the given codec.
#[must_use]
pub fn cid_of(codec: u64, bytes: &[u8]) -> Cid {
    Cid::new_v1(codec, sha256_multihash(bytes))
}

/// CIDv1 of a raw block.
#[must_use]
pub fn raw_cid(bytes: &[u8]) -> Cid {
    cid_of(RAW, bytes)
}

/// Whether `bytes` hash to `cid` (sha2-256 is the only accepted hash).
#[must_use]
pub fn matches(cid: &Cid, bytes: &[u8]) -> bool {
    cid.hash().code() == SHA2_256 && cid.hash().digest() == Sha256::digest(bytes).as_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_cids_match_kubo() {
        // `ipfs add --cid-version=1` of an empty file and of "hello world\n".
        assert_eq!(
            raw_cid(b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(
            raw_cid(b"hello world\n").to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
    }

    #[test]
    fn matches_detects_a_changed_byte() {
        let cid = raw_cid(b"abc");
        assert!(matches(&cid, b"abc"));
        assert!(!matches(&cid, b"abd"));
    }
}
