//! Which inbound Bitswap streams are read, and which wait their turn.
//!
//! Each stream read costs a task and a frame buffer, so at most
//! [`MAX_READING`] are read at once, [`MAX_READING_PER_PEER`] of one peer.
//! A peer's streams beyond that wait, without being read, rather than being
//! refused: Kubo opens a new stream for every message it sends, several at
//! once, and a stream refused is a message (blocks it was asked for) lost.
//! Waiting is bounded too ([`MAX_WAITING_PER_PEER`], [`MAX_WAITING`]); past
//! it a stream is refused.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;

/// Streams read at once at most, and per peer.
const MAX_READING: usize = 256;
const MAX_READING_PER_PEER: usize = 8;
/// Streams waiting to be read at most, per peer and in all. A waiting
/// stream still receives up to its yamux window (256 KiB) before its sender
/// stalls: 8 MiB per peer, 64 MiB in all at most.
const MAX_WAITING_PER_PEER: usize = 32;
const MAX_WAITING: usize = 256;

/// What to do with a stream that arrived.
pub(super) enum Admit<S> {
    /// Read it now.
    Read(S),
    /// It waits until one of the peer's readers ends.
    Waiting,
    /// Over every bound: dropped.
    Refused,
}

/// The streams (`S`: a libp2p stream) being read and waiting.
pub(super) struct Inbound<S> {
    reading: HashMap<PeerId, usize>,
    waiting: HashMap<PeerId, VecDeque<S>>,
    total_reading: usize,
    total_waiting: usize,
}

impl<S> Default for Inbound<S> {
    fn default() -> Self {
        Self {
            reading: HashMap::new(),
            waiting: HashMap::new(),
            total_reading: 0,
            total_waiting: 0,
        }
    }
}

impl<S> Inbound<S> {
    /// A stream from `peer` arrived.
    pub(super) fn arrive(&mut self, peer: PeerId, stream: S) -> Admit<S> {
        let of_peer = self.reading.get(&peer).copied().unwrap_or(0);
        if of_peer < MAX_READING_PER_PEER && self.total_reading < MAX_READING {
            *self.reading.entry(peer).or_default() += 1;
            self.total_reading += 1;
            return Admit::Read(stream);
        }
        let queue = self.waiting.entry(peer).or_default();
        if of_peer == 0 || queue.len() >= MAX_WAITING_PER_PEER || self.total_waiting >= MAX_WAITING
        {
            // A peer with no reader would wait for nothing to end.
            if queue.is_empty() {
                self.waiting.remove(&peer);
            }
            return Admit::Refused;
        }
        queue.push_back(stream);
        self.total_waiting += 1;
        Admit::Waiting
    }

    /// One of `peer`'s readers ended: the next of its streams to read.
    pub(super) fn done(&mut self, peer: PeerId) -> Option<S> {
        if let Some(queue) = self.waiting.get_mut(&peer)
            && let Some(next) = queue.pop_front()
        {
            self.total_waiting -= 1;
            if queue.is_empty() {
                self.waiting.remove(&peer);
            }
            // The reader's slot passes to the next stream.
            return Some(next);
        }
        if let Some(n) = self.reading.get_mut(&peer) {
            *n -= 1;
            self.total_reading -= 1;
            if *n == 0 {
                self.reading.remove(&peer);
            }
        }
        None
    }

    /// Drops the streams of `peer` still waiting (a bad peer).
    pub(super) fn forget(&mut self, peer: PeerId) {
        if let Some(queue) = self.waiting.remove(&peer) {
            self.total_waiting -= queue.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_streams_past_its_readers_wait_their_turn_in_order() {
        let (kubo, other) = (PeerId::random(), PeerId::random());
        let mut inbound = Inbound::default();
        for i in 0..MAX_READING_PER_PEER {
            assert!(matches!(inbound.arrive(kubo, i), Admit::Read(n) if n == i));
        }
        // Not refused: waiting, in order, each taking a reader's slot.
        for i in 100..100 + MAX_WAITING_PER_PEER {
            assert!(matches!(inbound.arrive(kubo, i), Admit::Waiting));
        }
        assert!(matches!(inbound.arrive(kubo, 999), Admit::Refused));
        // Another peer reads at once.
        assert!(matches!(inbound.arrive(other, 7), Admit::Read(7)));
        for i in 100..100 + MAX_WAITING_PER_PEER {
            assert_eq!(inbound.done(kubo), Some(i));
        }
        for _ in 0..MAX_READING_PER_PEER {
            assert_eq!(inbound.done(kubo), None);
        }
        assert!(!inbound.reading.contains_key(&kubo));
        assert_eq!(inbound.total_reading, 1);
        assert_eq!(inbound.total_waiting, 0);
    }

    #[test]
    fn a_bad_peers_waiting_streams_are_dropped() {
        let peer = PeerId::random();
        let mut inbound = Inbound::default();
        for i in 0..MAX_READING_PER_PEER + 3 {
            inbound.arrive(peer, i);
        }
        assert_eq!(inbound.total_waiting, 3);
        inbound.forget(peer);
        assert_eq!(inbound.total_waiting, 0);
        assert_eq!(inbound.done(peer), None);
    }
}
