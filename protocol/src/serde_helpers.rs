//! Field encodings that differ between the wire (DAG-CBOR) and people (JSON):
//! a CID is a tag-42 link on the wire and a `bafy…` string in JSON; a PeerId
//! is its multihash bytes on the wire and its base58 string in JSON; a
//! signature is bytes on the wire and hex in JSON. Every type has one struct
//! that serves both, chosen by `is_human_readable()`.

use std::fmt;
use std::str::FromStr;

use libp2p_identity::PeerId;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cid::Cid;

pub mod cid {
    //! A CID as a tag-42 link on the wire and a `bafy…` string in JSON.
    use super::*;

    pub fn serialize<S: Serializer>(cid: &Cid, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(cid)
        } else {
            cid.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cid, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            Cid::from_str(&text)
                .map_err(|e| D::Error::custom(format!("`{text}` is not a CID: {e}")))
        } else {
            Cid::deserialize(d)
        }
    }
}

pub mod opt_cid {
    //! [`super::cid`] for an `Option<Cid>`.
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "super::cid")] Cid);

    pub fn serialize<S: Serializer>(cid: &Option<Cid>, s: S) -> Result<S::Ok, S::Error> {
        cid.map(Wrap).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cid>, D::Error> {
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

pub(crate) mod peer_id {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(peer)
        } else {
            s.serialize_bytes(&peer.to_bytes())
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            PeerId::from_str(&text)
                .map_err(|e| D::Error::custom(format!("`{text}` is not a PeerId: {e}")))
        } else {
            let bytes = serde_bytes::ByteBuf::deserialize(d)?;
            PeerId::from_bytes(&bytes).map_err(|e| D::Error::custom(format!("invalid PeerId: {e}")))
        }
    }
}

pub(crate) mod bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&Hex(bytes))
        } else {
            s.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            from_hex(&text).ok_or_else(|| D::Error::custom("expected an even number of hex digits"))
        } else {
            Ok(serde_bytes::ByteBuf::deserialize(d)?.into_vec())
        }
    }
}

/// Lowercase hex of bytes.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(Hex(&[0, 0xab, 0x10]).to_string(), "00ab10");
        assert_eq!(from_hex("00ab10").unwrap(), [0, 0xab, 0x10]);
        assert!(from_hex("abc").is_none());
        assert!(from_hex("zz").is_none());
    }
}
