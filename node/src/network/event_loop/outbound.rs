//! Requests to peers, routed so that job data and blocks never cross a
//! relay: out now over a direct connection, or waiting (bounded) for one.

use std::sync::Arc;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};

use phase_protocol::block::{BlockRequest, BlockResponse};
use phase_protocol::job::{JobRequest, JobResponse};

use super::super::nat::Route;
use super::super::{NetworkError, Reply, Unreachable};
use super::EventLoop;

/// A request waiting for a direct connection to its peer.
#[derive(Debug)]
pub(super) enum Outbound {
    Blocks(BlockRequest, Reply<BlockResponse>),
    Job(JobRequest, Reply<JobResponse>),
}

impl Outbound {
    /// Small control messages may cross a relay; job data and blocks not.
    pub(super) fn relay_ok(&self) -> bool {
        matches!(self, Self::Job(JobRequest::Capabilities, _))
    }

    pub(super) fn fail(self, error: NetworkError) {
        match self {
            Self::Blocks(_, reply) => {
                let _ = reply.send(Err(error));
            }
            Self::Job(_, reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

impl EventLoop {
    /// Sends a request now, or once `peer` is connected directly.
    pub(super) fn send_outbound(&mut self, peer: PeerId, out: Outbound) {
        match self.nat.route(peer, out.relay_ok()) {
            Route::Send => self.send_now(peer, out),
            Route::Wait => self.wait(peer, out),
            Route::Dial => {
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                match self.swarm.dial(opts) {
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {
                        self.wait(peer, out);
                    }
                    // Not in a routing table: its addresses (a relay
                    // circuit's included) come from a lookup in the DHT,
                    // and the request waits for it, bounded.
                    Err(libp2p::swarm::DialError::NoAddresses) => {
                        let looking = self.waiting.contains_key(&peer);
                        self.wait(peer, out);
                        if !looking {
                            self.find_peer(peer, None);
                        }
                    }
                    Err(e) => out.fail(NetworkError::Unreachable {
                        peer,
                        cause: Unreachable::Dial(Arc::new(e)),
                    }),
                }
            }
        }
    }

    fn wait(&mut self, peer: PeerId, out: Outbound) {
        let deadline = Instant::now() + self.direct_wait;
        self.waiting.entry(peer).or_default().push((out, deadline));
    }

    fn send_now(&mut self, peer: PeerId, out: Outbound) {
        match out {
            Outbound::Blocks(request, reply) => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .blocks
                    .send_request(&peer, request);
                self.pending_blocks.insert(id, reply);
            }
            Outbound::Job(request, reply) => {
                let id = self.swarm.behaviour_mut().jobs.send_request(&peer, request);
                self.pending_jobs.insert(id, reply);
            }
        }
    }

    /// Sends what waits for `peer` that may go now.
    pub(super) fn flush(&mut self, peer: PeerId) {
        let Some(waiting) = self.waiting.remove(&peer) else {
            return;
        };
        let mut still = Vec::new();
        for (out, deadline) in waiting {
            if self.nat.route(peer, out.relay_ok()) == Route::Send {
                self.send_now(peer, out);
            } else {
                still.push((out, deadline));
            }
        }
        if !still.is_empty() {
            self.waiting.insert(peer, still);
        }
    }

    /// Fails what waits for `peer` once it cannot be reached at all.
    pub(super) fn fail_waiting(&mut self, peer: PeerId, cause: impl Fn() -> Unreachable) {
        if self.nat.is_connected(peer) {
            return;
        }
        for (out, _) in self.waiting.remove(&peer).unwrap_or_default() {
            out.fail(NetworkError::Unreachable {
                peer,
                cause: cause(),
            });
        }
    }

    /// Fails the requests whose wait for a direct connection is over.
    pub(super) fn expire_waiting(&mut self, now: Instant) {
        let expired: Vec<PeerId> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.iter().any(|(_, deadline)| *deadline <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            let Some(waiting) = self.waiting.remove(&peer) else {
                continue;
            };
            let (late, still): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|(_, d)| *d <= now);
            if !still.is_empty() {
                self.waiting.insert(peer, still);
            }
            let relayed = !self.nat.relayed_to(peer).is_empty();
            for (out, _) in late {
                out.fail(if relayed {
                    NetworkError::RelayOnly {
                        peer,
                        waited: self.direct_wait,
                    }
                } else {
                    NetworkError::Unreachable {
                        peer,
                        cause: Unreachable::NoAddress {
                            waited: self.direct_wait,
                        },
                    }
                });
            }
        }
    }
}
