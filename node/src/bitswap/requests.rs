//! This node's Bitswap requests in flight, owned by the actor: which
//! request waits for which (peer, CID), and what each has got so far.
//! Two requests may want the same block of the same peer (two fetches of
//! one DAG); a block or a don't-have answers both.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p::PeerId;
use tokio::sync::oneshot;

use phase_protocol::Cid;
use phase_protocol::block::{BlockResponse, WireBlock};

use super::BitswapError;

type Reply = oneshot::Sender<Result<BlockResponse, BitswapError>>;

struct Pending {
    peer: PeerId,
    wanted: HashSet<Cid>,
    response: BlockResponse,
    deadline: Instant,
    waited: Duration,
    reply: Reply,
}

/// What a received block was to this node.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Delivery {
    /// Some request wanted it.
    Wanted,
    /// Nobody asked that peer for it while requests to it are open.
    Unasked,
    /// Nobody asked, and nothing is asked of that peer (a late answer).
    Late,
}

/// See the module docs.
#[derive(Default)]
pub(super) struct Requests {
    pending: HashMap<u64, Pending>,
    by_want: HashMap<(PeerId, Cid), Vec<u64>>,
    next_id: u64,
}

impl Requests {
    /// Registers a request for `cids` of `peer`; its id.
    pub(super) fn add(
        &mut self,
        peer: PeerId,
        cids: &[Cid],
        deadline: Duration,
        reply: Reply,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        for cid in cids {
            self.by_want.entry((peer, *cid)).or_default().push(id);
        }
        self.pending.insert(
            id,
            Pending {
                peer,
                wanted: cids.iter().copied().collect(),
                response: BlockResponse {
                    blocks: Vec::new(),
                    missing: Vec::new(),
                },
                deadline: Instant::now() + deadline,
                waited: deadline,
                reply,
            },
        );
        id
    }

    /// A block from `peer`, under the CID its bytes make.
    pub(super) fn block(&mut self, peer: PeerId, cid: Cid, data: &Bytes) -> Delivery {
        let Some(ids) = self.by_want.remove(&(peer, cid)) else {
            return if self.pending.values().any(|p| p.peer == peer) {
                Delivery::Unasked
            } else {
                Delivery::Late
            };
        };
        for id in ids {
            if let Some(p) = self.pending.get_mut(&id) {
                p.wanted.remove(&cid);
                p.response.blocks.push(WireBlock {
                    cid,
                    data: data.clone(),
                });
            }
        }
        Delivery::Wanted
    }

    /// `peer` says it lacks `cid`.
    pub(super) fn dont_have(&mut self, peer: PeerId, cid: Cid) {
        for id in self.by_want.remove(&(peer, cid)).unwrap_or_default() {
            if let Some(p) = self.pending.get_mut(&id) {
                p.wanted.remove(&cid);
                p.response.missing.push(cid);
            }
        }
    }

    /// Removes one request, and its wants from the index.
    fn take(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        for cid in &p.wanted {
            if let Some(ids) = self.by_want.get_mut(&(p.peer, *cid)) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_want.remove(&(p.peer, *cid));
                }
            }
        }
        Some(p)
    }

    /// The requests `keep` selects.
    fn ids(&self, keep: impl Fn(&Pending) -> bool) -> Vec<u64> {
        self.pending
            .iter()
            .filter(|(_, p)| keep(p))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Fails one request (its message could not be sent).
    pub(super) fn fail(&mut self, id: u64, error: BitswapError) {
        if let Some(p) = self.take(id) {
            let _ = p.reply.send(Err(error));
        }
    }

    /// Fails every request to `peer`.
    pub(super) fn fail_peer(&mut self, peer: PeerId, error: impl Fn() -> BitswapError) {
        for id in self.ids(|p| p.peer == peer) {
            self.fail(id, error());
        }
    }

    /// Answers every request with nothing left to wait for.
    pub(super) fn finish_answered(&mut self) {
        for id in self.ids(|p| p.wanted.is_empty()) {
            if let Some(p) = self.take(id) {
                let _ = p.reply.send(Ok(p.response));
            }
        }
    }

    /// Ends the requests past their deadline: what they got, or a timeout
    /// when they got nothing.
    pub(super) fn expire(&mut self, now: Instant) {
        for id in self.ids(|p| p.deadline <= now) {
            let Some(p) = self.take(id) else { continue };
            let nothing = p.response.blocks.is_empty() && p.response.missing.is_empty();
            let _ = p.reply.send(if nothing {
                Err(BitswapError::Timeout {
                    peer: p.peer,
                    waited: p.waited,
                })
            } else {
                Ok(p.response)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::cid::raw_cid;

    #[test]
    fn two_requests_for_one_block_are_both_answered_and_nothing_is_left_behind() {
        let mut r = Requests::default();
        let peer = PeerId::random();
        let (a, b) = (raw_cid(b"a"), raw_cid(b"b"));
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        r.add(peer, &[a, b], Duration::from_secs(30), tx1);
        r.add(peer, &[a], Duration::from_secs(30), tx2);
        assert_eq!(
            r.block(peer, a, &Bytes::from_static(b"a")),
            Delivery::Wanted
        );
        r.finish_answered();
        let second = rx2.try_recv().unwrap().unwrap();
        assert_eq!(second.blocks.len(), 1);
        assert!(rx1.try_recv().is_err(), "still waits for b");
        r.dont_have(peer, b);
        r.finish_answered();
        let first = rx1.try_recv().unwrap().unwrap();
        assert_eq!((first.blocks.len(), first.missing), (1, vec![b]));
        assert!(r.pending.is_empty() && r.by_want.is_empty());
        assert_eq!(r.block(peer, a, &Bytes::new()), Delivery::Late);
    }

    #[test]
    fn unasked_blocks_are_told_from_late_ones_and_deadlines_end_requests() {
        let mut r = Requests::default();
        let peer = PeerId::random();
        let (tx, mut rx) = oneshot::channel();
        r.add(peer, &[raw_cid(b"x")], Duration::ZERO, tx);
        assert_eq!(
            r.block(peer, raw_cid(b"y"), &Bytes::new()),
            Delivery::Unasked
        );
        r.expire(Instant::now());
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(BitswapError::Timeout { .. })
        ));
        assert!(r.pending.is_empty() && r.by_want.is_empty());
    }
}
