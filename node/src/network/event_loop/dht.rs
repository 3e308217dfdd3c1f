//! Kademlia on the swarm actor, in both DHTs (the phase DHT and the LAN
//! DHT, see [`Dht`]): query results, the node's place in the DHT
//! ([`DhtState`]: routing tables, bootstrap connection, completed bootstrap
//! queries, published for the node's clients), peer lookups, providing again as the network grows, and who
//! enters the LAN DHT's routing table.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::kad::store::MemoryStore;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, kad};
use tracing::{debug, trace};

use super::super::Reply;
use super::super::nat;
use super::super::queries::{Dht, QueryKey};
use super::EventLoop;

/// What a node knows of its place in the DHT, as the swarm task last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DhtState {
    /// Peers in the routing table of the phase DHT.
    pub routing_peers: usize,
    /// Peers in the routing table of the LAN DHT (private and loopback
    /// peers).
    #[serde(default)]
    pub lan_peers: usize,
    /// Connected to a configured bootstrap peer now, or none is configured.
    pub bootstrap_connected: bool,
    /// Bootstrap queries (a lookup of this node's own id, then one into
    /// each bucket) completed with a peer in the routing table, in either
    /// DHT.
    pub bootstraps: u64,
}

impl DhtState {
    /// Peers in the larger of the two routing tables (on a LAN both may
    /// hold the same peers).
    #[must_use]
    pub fn peers(&self) -> usize {
        self.routing_peers.max(self.lan_peers)
    }

    /// Part of the DHT (the phase DHT or the LAN DHT): connected to its bootstrap (if it has one), its
    /// routing table refreshed by a completed bootstrap query, and at least
    /// `min_peers` peers in it. Not a full routing table: Kademlia's
    /// buckets hold 20 peers each, so past a few dozen nodes no node knows
    /// every other; it finds them by lookup.
    #[must_use]
    pub fn ready(&self, min_peers: usize) -> bool {
        self.bootstrap_connected && self.bootstraps > 0 && self.peers() >= min_peers.max(1)
    }
}

/// How long after the routing table doubled this node's provider records
/// are announced again: while a network forms, tables double several
/// times in a few seconds, and one announcement covers them all.
const REPROVIDE_SETTLE: Duration = Duration::from_secs(5);
/// Peer lookups in flight at most; more are refused at once.
const MAX_PEER_LOOKUPS: usize = 256;
/// Providers found by one lookup that are dialled at most (their
/// addresses, relayed ones included, are known only while the query runs).
const DIAL_FOUND: usize = 64;
/// Addresses of one peer put into the LAN DHT's routing table at most.
const MAX_LAN_ADDRS: usize = 8;

/// What a peer lookup found: the peer's addresses, if it found the peer.
type Found = Option<Vec<Multiaddr>>;

/// One peer lookup, run as one query per DHT.
#[derive(Debug)]
struct PeerLookup {
    target: PeerId,
    /// Who waits for the answer: nobody for a lookup the loop started
    /// itself (addresses for a request to a peer it had none for).
    reply: Option<Reply<Found>>,
    /// Queries still running.
    running: usize,
}

/// The swarm actor's DHT bookkeeping.
#[derive(Debug, Default)]
pub(super) struct DhtBook {
    /// Peer lookups in flight, by their number.
    peer_lookups: HashMap<u64, PeerLookup>,
    /// Which peer lookup each query belongs to.
    peer_queries: HashMap<QueryKey, u64>,
    next_lookup: u64,
    /// Providers dialled per provider lookup in flight.
    dialled: HashMap<QueryKey, usize>,
    /// Routing-table size at the last announcement of provider records.
    provided_at: usize,
    /// When provider records are to be announced again.
    reprovide_at: Option<Instant>,
}

impl EventLoop {
    /// The Kademlia behaviours of this node, with which DHT each is.
    fn dhts(&mut self) -> [(Dht, Option<&mut kad::Behaviour<MemoryStore>>); 2] {
        let behaviour = self.swarm.behaviour_mut();
        [
            (Dht::Wan, Some(&mut behaviour.kad)),
            (Dht::Lan, behaviour.lan_kad.as_mut()),
        ]
    }

    /// Starts a query in each DHT; the keys of those that started.
    pub(super) fn in_each_dht(
        &mut self,
        mut start: impl FnMut(&mut kad::Behaviour<MemoryStore>) -> Option<kad::QueryId>,
    ) -> Vec<QueryKey> {
        self.dhts()
            .into_iter()
            .filter_map(|(dht, kad)| Some((dht, start(kad?)?)))
            .collect()
    }

    /// Every peer in either routing table, once.
    pub(super) fn routing_table(&mut self) -> Vec<PeerId> {
        let mut peers = HashSet::new();
        for (_, kad) in self.dhts() {
            if let Some(kad) = kad {
                for bucket in kad.kbuckets() {
                    peers.extend(bucket.iter().map(|e| *e.node.key.preimage()));
                }
            }
        }
        peers.into_iter().collect()
    }

    /// Peers in each routing table, counted without listing them (this
    /// runs on every routing update).
    fn routing_table_lens(&mut self) -> (usize, usize) {
        let [wan, lan] = self
            .dhts()
            .map(|(_, kad)| kad.map_or(0, |k| k.kbuckets().map(|b| b.num_entries()).sum()));
        (wan, lan)
    }

    /// `peer`'s addresses in either routing table.
    fn routing_addrs(&mut self, peer: &PeerId) -> Vec<Multiaddr> {
        let mut addrs = Vec::new();
        for (_, kad) in self.dhts() {
            if let Some(entry) = kad.and_then(|k| k.kbucket(*peer)).and_then(|bucket| {
                bucket
                    .iter()
                    .find(|e| e.node.key.preimage() == peer)
                    .map(|e| e.node.value.iter().cloned().collect::<Vec<_>>())
            }) {
                addrs.extend(entry);
            }
        }
        addrs.dedup();
        addrs
    }

    /// Puts `peer` into the LAN DHT's routing table with those of `addrs`
    /// that are private or loopback (never relayed or public ones): only
    /// called for peers reached over such an address.
    pub(super) fn add_lan_peer(&mut self, peer: &PeerId, addrs: &[Multiaddr]) {
        let Some(lan) = self.swarm.behaviour_mut().lan_kad.as_mut() else {
            return;
        };
        for addr in addrs.iter().filter(|a| nat::is_lan(a)).take(MAX_LAN_ADDRS) {
            lan.add_address(peer, addr.clone());
        }
    }

    /// Whether `peer` is one of the configured bootstrap peers.
    fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.bootstrap
            .iter()
            .any(|addr| nat::peer_of(addr).as_ref() == Some(peer))
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
            .filter_map(nat::peer_of)
            .any(|p| self.swarm.is_connected(&p));
        self.dht_state.send_if_modified(|dht| {
            std::mem::replace(&mut dht.bootstrap_connected, connected) != connected
        });
    }

    /// Starts a lookup of `peer`'s id in both DHTs; `reply` hears the
    /// first that finds it, or `None` once all ended without it. Without a
    /// `reply` the lookup is the loop's own: what it finds is dialled for
    /// the requests waiting on `peer`.
    pub(super) fn find_peer(&mut self, peer: PeerId, reply: Option<Reply<Found>>) {
        if self.dht.peer_lookups.len() >= MAX_PEER_LOOKUPS {
            if let Some(reply) = reply {
                let _ = reply.send(Err(super::NetworkError::Unreachable {
                    peer,
                    cause: super::Unreachable::TooManyLookups,
                }));
            }
            return;
        }
        let ids = self.in_each_dht(|kad| Some(kad.get_closest_peers(peer)));
        if ids.is_empty() {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(None));
            }
            return;
        }
        let n = self.dht.next_lookup;
        self.dht.next_lookup += 1;
        for id in &ids {
            self.dht.peer_queries.insert(*id, n);
        }
        self.dht.peer_lookups.insert(
            n,
            PeerLookup {
                target: peer,
                reply,
                running: ids.len(),
            },
        );
    }

    /// A query of a peer lookup ended with `found`.
    fn peer_lookup_ended(&mut self, id: QueryKey, found: Found) {
        let Some(n) = self.dht.peer_queries.remove(&id) else {
            return;
        };
        let Some(lookup) = self.dht.peer_lookups.get_mut(&n) else {
            return;
        };
        lookup.running = lookup.running.saturating_sub(1);
        let target = lookup.target;
        let done = lookup.running == 0;
        if let Some(addrs) = found.filter(|a| !a.is_empty()) {
            if let Some(reply) = lookup.reply.take() {
                let _ = reply.send(Ok(Some(addrs.clone())));
            }
            if self.waiting.contains_key(&target) && !self.swarm.is_connected(&target) {
                debug!(peer = %target, ?addrs, "found by lookup: dialling");
                let opts = DialOpts::peer_id(target)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
        // A request waiting on a peer that no lookup found waits on to
        // its deadline: a provider lookup may still dial it.
        if done && let Some(reply) = self.dht.peer_lookups.remove(&n).and_then(|l| l.reply) {
            let _ = reply.send(Ok(None));
        }
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
        let (wan, lan) = self.routing_table_lens();
        self.dht_state.send_if_modified(|dht| {
            let before = (dht.routing_peers, dht.lan_peers);
            dht.routing_peers = wan;
            dht.lan_peers = lan;
            before != (wan, lan)
        });
        // Records put while the network was smaller sit on peers that may
        // no longer be the closest to their keys.
        let n = wan.max(lan);
        if n >= 2 * self.dht.provided_at.max(1) {
            self.dht.provided_at = n;
            self.dht
                .reprovide_at
                .get_or_insert_with(|| Instant::now() + REPROVIDE_SETTLE);
        }
    }

    pub(super) fn on_kad_event(&mut self, dht: Dht, event: kad::Event) {
        let (id, result, step) = match event {
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => ((dht, id), result, step),
            kad::Event::RoutingUpdated { is_new_peer, .. } => {
                self.routing_updated(is_new_peer);
                return;
            }
            other => {
                trace!(?dht, ?other, "kad event");
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
                debug!(?dht, %e, "provider query ended");
            }
            kad::QueryResult::StartProviding(result) => {
                // A timeout (no peers to store the record on, or none
                // answering) is not an error: the local record still answers
                // queries that reach this node.
                if let Err(kad::AddProviderError::Timeout { key }) = result {
                    debug!(?dht, ?key, "provider record stored on no peer");
                }
                self.queries.provide_ended(id, Instant::now());
            }
            kad::QueryResult::Bootstrap(result) => {
                if let Err(e) = &result {
                    debug!(?dht, %e, "bootstrap query ended");
                }
                if step.last {
                    let (wan, lan) = self.routing_table_lens();
                    self.dht_state.send_modify(|state| {
                        state.routing_peers = wan;
                        state.lan_peers = lan;
                        let n = match dht {
                            Dht::Wan => wan,
                            Dht::Lan => lan,
                        };
                        if n > 0 {
                            state.bootstraps += 1;
                        }
                    });
                }
            }
            kad::QueryResult::GetClosestPeers(result) => {
                let (peers, timed_out) = match result {
                    Ok(ok) => (ok.peers, false),
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => (peers, true),
                };
                if let Some(target) = self
                    .dht
                    .peer_queries
                    .get(&id)
                    .and_then(|n| self.dht.peer_lookups.get(n))
                    .map(|l| l.target)
                {
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
                    debug!(?dht, peer = %target, found = found.is_some(), timed_out, "peer lookup ended");
                    self.peer_lookup_ended(id, found);
                }
            }
            other => trace!(?dht, ?other, "kad query result"),
        }
        if step.last {
            self.dht.dialled.remove(&id);
            self.queries.lookup_ended(id, Instant::now());
        }
    }

    /// Dials the providers a lookup found that are not connected, up to
    /// [`DIAL_FOUND`] per lookup, those that requests wait for first: a
    /// private provider's (relayed) addresses come only in its record and
    /// are known only while the query runs.
    fn dial_found(&mut self, id: QueryKey, providers: &HashSet<PeerId>) {
        let me = *self.swarm.local_peer_id();
        let dialled = self.dht.dialled.entry(id).or_default();
        let mut unknown: Vec<PeerId> = providers
            .iter()
            .filter(|p| **p != me && !self.swarm.is_connected(p))
            .copied()
            .collect();
        unknown.sort_by_key(|p| !self.waiting.contains_key(p));
        unknown.truncate(DIAL_FOUND.saturating_sub(*dialled));
        *dialled += unknown.len();
        for peer in unknown {
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_means_bootstrap_connected_bootstrapped_and_enough_peers() {
        let ready = DhtState {
            routing_peers: 3,
            lan_peers: 0,
            bootstrap_connected: true,
            bootstraps: 1,
        };
        let on_a_lan = DhtState {
            routing_peers: 0,
            lan_peers: 3,
            ..ready
        };
        assert!(on_a_lan.ready(3), "the LAN DHT counts");
        assert!(ready.ready(0) && ready.ready(1) && ready.ready(3));
        assert!(!ready.ready(4), "fewer peers than asked for");
        let alone = DhtState {
            routing_peers: 0,
            ..ready
        };
        assert!(!alone.ready(0), "at least one peer, whatever is asked");
        let never_bootstrapped = DhtState {
            bootstraps: 0,
            ..ready
        };
        assert!(!never_bootstrapped.ready(1));
        let cut_off = DhtState {
            bootstrap_connected: false,
            ..ready
        };
        assert!(!cut_off.ready(1));
    }
}
