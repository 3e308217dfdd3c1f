//! `phase-node store verify`: every block read back and hashed, and every
//! pinned root's DAG walked to its leaves, so a crash, a full disk or a
//! collection at the wrong moment shows as a named block, not as a later
//! surprise.

use std::collections::HashSet;

use serde::{Deserialize, Deserializer, Serialize};

use phase_protocol::Cid;
use phase_protocol::unixfs;

use super::{BlockStore, MAX_DEPTH, StoreError};

/// What [`BlockStore::verify`] found (and `POST /api/v1/store/verify`
/// answers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Blocks read and hashed.
    pub blocks: usize,
    /// Pinned roots walked.
    pub roots: usize,
    /// Blocks whose bytes do not hash to their CID.
    #[serde(serialize_with = "strings", deserialize_with = "parsed")]
    pub corrupt: Vec<Cid>,
    /// Blocks a pinned DAG links to that the store lacks.
    #[serde(serialize_with = "strings", deserialize_with = "parsed")]
    pub missing: Vec<Cid>,
}

impl Verified {
    /// Whether nothing is wrong.
    #[must_use]
    pub fn intact(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty()
    }
}

fn parsed<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cid>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

fn strings<S: serde::Serializer>(cids: &[Cid], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(cids.iter().map(ToString::to_string))
}

impl BlockStore {
    /// Reads and hashes every block, and walks every root in `pins` (links
    /// of dag-pb and raw blocks, at most `MAX_DEPTH` deep).
    ///
    /// # Errors
    /// I/O other than a corrupt block.
    pub async fn verify(&self, pins: Vec<Cid>) -> Result<Verified, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.verify_blocking(&pins)).await?
    }

    fn verify_blocking(&self, pins: &[Cid]) -> Result<Verified, StoreError> {
        let all = self.cids_blocking()?;
        let mut found = Verified {
            blocks: all.len(),
            roots: pins.len(),
            ..Verified::default()
        };
        let mut corrupt = HashSet::new();
        for cid in &all {
            match self.read_blocking(cid, true) {
                Ok(_) => {}
                Err(StoreError::Corrupt { .. }) => {
                    corrupt.insert(*cid);
                }
                Err(e) => return Err(e),
            }
        }
        let mut seen = HashSet::new();
        let mut stack: Vec<(Cid, usize)> = pins.iter().map(|c| (*c, 0)).collect();
        while let Some((cid, depth)) = stack.pop() {
            if depth > MAX_DEPTH || !seen.insert(cid) || corrupt.contains(&cid) {
                continue;
            }
            match self.read_blocking(&cid, true) {
                Ok(Some(data)) => {
                    if let Ok(links) = unixfs::links(&cid, &data) {
                        stack.extend(links.into_iter().map(|c| (c, depth + 1)));
                    }
                }
                Ok(None) => found.missing.push(cid),
                Err(StoreError::Corrupt { .. }) => {
                    corrupt.insert(cid);
                }
                Err(e) => return Err(e),
            }
        }
        found.corrupt = corrupt.into_iter().collect();
        found.corrupt.sort();
        found.missing.sort();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use phase_protocol::cid::raw_cid;

    #[tokio::test]
    async fn a_corrupt_block_and_a_missing_link_are_named() {
        let store = BlockStore::memory();
        let good = Bytes::from_static(b"good");
        store.put(raw_cid(&good), good.clone()).await.unwrap();
        let bad = Bytes::from_static(b"bad");
        store.put(raw_cid(&bad), bad.clone()).await.unwrap();
        store.corrupt_for_test(&raw_cid(&bad), b"not bad");
        let gone = raw_cid(b"never stored");
        let found = store.verify(vec![raw_cid(&good), gone]).await.unwrap();
        assert_eq!(found.blocks, 2);
        assert_eq!(found.corrupt, vec![raw_cid(&bad)]);
        assert_eq!(found.missing, vec![gone]);
        assert!(!found.intact());
        store.delete(&raw_cid(&bad)).await.unwrap();
        let found = store.verify(vec![raw_cid(&good)]).await.unwrap();
        assert!(found.intact(), "{found:?}");
    }
}
