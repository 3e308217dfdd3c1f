//! Kademlia on the swarm actor: query results, the node's place in the DHT
//! ([`DhtState`]: routing table, bootstrap connection, completed bootstrap
//! queries), peer lookups, and providing again as the network grows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, kad};
use tracing::{debug, trace};

use super::super::Reply;
use super::EventLoop;

/// How long after the routing table doubled this node's provider records
/// are announced again: while a network forms, tables double several
/// times in a few seconds, and one announcement covers them all.
const REPROVIDE_SETTLE: Duration = Duration::from_secs(5);
/// Peer lookups in flight at most; more are refused at once.
const MAX_PEER_LOOKUPS: usize = 256;
/// Providers found by one lookup that are dialled at most (their
/// addresses, relayed ones included, are known only while the query runs).
const DIAL_FOUND: usize = 64;

/// What a peer lookup found: the peer's addresses, if it found the peer.
type Found = Option<Vec<Multiaddr>>;

/// The swarm actor's DHT bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Dht {
    /// Peer lookups in flight, with whom they look for.
    peer_lookups: HashMap<kad::QueryId, (PeerId, Reply<Found>)>,
    /// Providers dialled per provider lookup in flight.
    dialled: HashMap<kad::QueryId, usize>,
    /// Routing-table size at the last announcement of provider records.
    provided_at: usize,
    /// When provider records are to be announced again.
    reprovide_at: Option<Instant>,
}

impl EventLoop {
    pub(super) fn routing_table(&mut self) -> Vec<PeerId> {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
            .collect()
    }

    /// Peers in the routing table, counted without listing them (this runs
    /// on every routing update).
    fn routing_table_len(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum()
    }

    /// `peer`'s addresses in the routing table.
    fn routing_addrs(&mut self, peer: &PeerId) -> Vec<Multiaddr> {
        self.swarm
            .behaviour_mut()
            .kad
            .kbucket(*peer)
            .and_then(|bucket| {
                bucket
                    .iter()
                    .find(|e| e.node.key.preimage() == peer)
                    .map(|e| e.node.value.iter().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// Whether `peer` is one of the configured bootstrap peers.
    fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.bootstrap
            .iter()
            .any(|addr| super::super::nat::peer_of(addr).as_ref() == Some(peer))
    }

    /// A connection to `peer` opened or closed: the bootstrap connection of
    /// [`DhtState`] follows.
    pub(super) fn dht_connection_changed(&mut self, peer: PeerId) {
        if self.bootstrap.is_empty() || !self.is_bootstrap(&peer) {
            return;
        }
        let connected = self
            .bootstrap
            .iter()
            .filter_map(super::super::nat::peer_of)
            .any(|p| self.swarm.is_connected(&p));
        self.dht_state.send_if_modified(|dht| {
            std::mem::replace(&mut dht.bootstrap_connected, connected) != connected
        });
    }

    /// Starts a lookup of `peer`'s id.
    pub(super) fn find_peer(&mut self, peer: PeerId, reply: Reply<Found>) {
        if self.dht.peer_lookups.len() >= MAX_PEER_LOOKUPS {
            let _ = reply.send(Err(super::NetworkError::Unreachable {
                peer,
                reason: "too many peer lookups in flight".into(),
            }));
            return;
        }
        let id = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
        self.dht.peer_lookups.insert(id, (peer, reply));
    }

    /// Announces provider records again once the routing table has settled
    /// after doubling (see [`REPROVIDE_SETTLE`]).
    pub(super) fn dht_tick(&mut self, now: Instant) {
        if self.dht.reprovide_at.is_some_and(|at| now >= at) {
            self.dht.reprovide_at = None;
            debug!(
                routing_peers = self.dht.provided_at,
                "the routing table doubled: providing again"
            );
            self.provide_again();
        }
    }

    fn routing_updated(&mut self, is_new_peer: bool) {
        if is_new_peer {
            self.queries.routing_changed();
        }
        let n = self.routing_table_len();
        self.dht_state
            .send_if_modified(|dht| std::mem::replace(&mut dht.routing_peers, n) != n);
        // Records put while the network was smaller sit on peers that may
        // no longer be the closest to their keys.
        if n >= 2 * self.dht.provided_at.max(1) {
            self.dht.provided_at = n;
            self.dht
                .reprovide_at
                .get_or_insert_with(|| Instant::now() + REPROVIDE_SETTLE);
        }
    }

    pub(super) fn on_kad_event(&mut self, event: kad::Event) {
        let (id, result, step) = match event {
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => (id, result, step),
            kad::Event::RoutingUpdated { is_new_peer, .. } => {
                self.routing_updated(is_new_peer);
                return;
            }
            other => {
                trace!(?other, "kad event");
                return;
            }
        };
        match result {
            kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                providers,
                ..
            })) => {
                self.dial_found(id, &providers);
                self.queries.lookup_found(id, providers);
            }
            kad::QueryResult::GetProviders(Ok(
                kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. },
            )) => {}
            kad::QueryResult::GetProviders(Err(e)) => {
                debug!(%e, "provider query ended");
            }
            kad::QueryResult::StartProviding(result) => {
                // A timeout (no peers to store the record on, or none
                // answering) is not an error: the local record still answers
                // queries that reach this node.
                if let Err(kad::AddProviderError::Timeout { key }) = result {
                    debug!(?key, "provider record stored on no peer");
                }
                self.queries.provide_ended(id, Instant::now());
            }
            kad::QueryResult::Bootstrap(result) => {
                if let Err(e) = &result {
                    debug!(%e, "bootstrap query ended");
                }
                if step.last {
                    let n = self.routing_table_len();
                    self.dht_state.send_modify(|dht| {
                        dht.routing_peers = n;
                        if n > 0 {
                            dht.bootstraps += 1;
                        }
                    });
                }
            }
            kad::QueryResult::GetClosestPeers(result) => {
                let (peers, timed_out) = match result {
                    Ok(ok) => (ok.peers, false),
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => (peers, true),
                };
                if let Some((target, reply)) = self.dht.peer_lookups.remove(&id) {
                    // The lookup gives the addresses peers told it; a target
                    // it asked straight from the routing table (a small
                    // network) has its addresses there.
                    let found = peers.into_iter().find(|p| p.peer_id == target).map(|p| {
                        if p.addrs.is_empty() {
                            self.routing_addrs(&target)
                        } else {
                            p.addrs
                        }
                    });
                    debug!(peer = %target, found = found.is_some(), timed_out, "peer lookup ended");
                    let _ = reply.send(Ok(found));
                }
            }
            other => trace!(?other, "kad query result"),
        }
        if step.last {
            self.dht.dialled.remove(&id);
            self.queries.lookup_ended(id, Instant::now());
        }
    }

    /// Dials the providers a lookup found that are not connected, up to
    /// [`DIAL_FOUND`] per lookup: a private provider's (relayed) addresses
    /// come only in its record and are known only while the query runs.
    fn dial_found(&mut self, id: kad::QueryId, providers: &std::collections::HashSet<PeerId>) {
        let me = *self.swarm.local_peer_id();
        let dialled = self.dht.dialled.entry(id).or_default();
        let unknown: Vec<PeerId> = providers
            .iter()
            .filter(|p| **p != me && !self.swarm.is_connected(p))
            .take(DIAL_FOUND.saturating_sub(*dialled))
            .copied()
            .collect();
        *dialled += unknown.len();
        for peer in unknown {
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }
}
