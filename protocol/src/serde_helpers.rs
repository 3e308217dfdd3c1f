//! Field encodings that differ between the wire (DAG-CBOR) and people (JSON):
//! a CID is a tag-42 link on the wire and a `bafy…` string in JSON; a
//! signature is bytes on the wire and hex in JSON. (A PeerId does the same
//! by itself: multihash bytes on the wire, base58 in JSON, through
//! libp2p-identity's `serde` feature.) Every type has one struct
//! that serves both, chosen by `is_human_readable()`.

use std::str::FromStr;

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

pub(crate) mod bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(bytes))
        } else {
            s.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            hex::decode(&text).map_err(|e| D::Error::custom(format!("not hex: {e}")))
        } else {
            Ok(serde_bytes::ByteBuf::deserialize(d)?.into_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sig(#[serde(with = "super::bytes")] Vec<u8>);

    #[test]
    fn bytes_are_hex_in_json() {
        let json = serde_json::to_string(&Sig(vec![0, 0xab, 0x10])).unwrap();
        assert_eq!(json, r#""00ab10""#);
        assert_eq!(
            serde_json::from_str::<Sig>(&json).unwrap().0,
            [0, 0xab, 0x10]
        );
        assert!(serde_json::from_str::<Sig>(r#""abc""#).is_err());
        assert!(serde_json::from_str::<Sig>(r#""zz""#).is_err());
    }
}
