//! What the node knows of NAT traversal, owned by the swarm's event loop:
//! its reachability (from AutoNAT v2 and confirmed external addresses), its
//! relay reservations, and every connection as direct or relayed.
//!
//! - A node is `public` once a direct (not `/p2p-circuit`) external address
//!   is confirmed (by AutoNAT v2, UPnP or the operator's `external`),
//!   `private` once AutoNAT v2 found a candidate address unreachable and
//!   none reachable, `unknown` before.
//! - In `auto` DHT mode the node is a Kademlia server only while public:
//!   libp2p's own automatic mode would also turn server on a confirmed
//!   relayed address.
//! - A node that is not public reserves slots on up to `max_relays` relays:
//!   the configured ones, else connected peers that speak the relay hop
//!   protocol (bootstrap peers first, as they are dialled first).
//! - Job data and blocks never flow over a relay: a request to a peer goes
//!   out only when the peer has a direct connection and no relayed one (a
//!   request-response behaviour spreads requests over every connection to a
//!   peer). Until then it waits, bounded; see [`Route`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, kad};
use serde::{Deserialize, Serialize};

use crate::config::{DhtMode, NetworkConfig};

/// How long a relay that refused or dropped a reservation is left alone.
const RESERVE_RETRY: Duration = Duration::from_secs(5);
/// How long a node connected to an AutoNAT v2 server may stay without a
/// confirmed direct address before it counts as private. libp2p 0.57's
/// server gives up on a dial-back after 10 s, as long as a TCP dial into a
/// NAT that drops it takes, and then reports nothing at all: so silence is
/// the usual answer a node behind NAT gets.
pub(super) const PRIVATE_AFTER: Duration = Duration::from_secs(30);
/// The AutoNAT v2 server's protocol.
pub(super) const AUTONAT_SERVER_PROTOCOL: &str = "/libp2p/autonat/2/dial-request";

/// Whether this node can be dialled from the internet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// A direct external address is confirmed.
    Public,
    /// AutoNAT v2 found the node's addresses unreachable.
    Private,
    /// Nothing is known yet.
    Unknown,
}

impl Reachability {
    /// The lowercase name (`public`, `private`, `unknown`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One open connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The peer.
    pub peer: PeerId,
    /// The peer's address on this connection.
    pub addr: Multiaddr,
    /// Through a relay (`/p2p-circuit`) rather than direct.
    pub relayed: bool,
    /// This node dialled it.
    pub outbound: bool,
    /// The protocols the peer says it speaks (identify), once it has.
    #[serde(default)]
    pub protocols: Vec<String>,
}

/// A snapshot of the node's NAT state, for `id`, `peers` and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatStatus {
    /// Public, private or unknown.
    pub reachability: Reachability,
    /// Whether the node answers DHT queries now.
    pub dht_server: bool,
    /// Confirmed external addresses, relayed ones included.
    pub external: Vec<Multiaddr>,
    /// Relays this node holds a reservation on.
    pub relays: Vec<PeerId>,
    /// Open connections.
    pub connections: Vec<Connection>,
}

/// Where an outbound request to a peer goes now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Out now.
    Send,
    /// Wait: the peer is connected only through a relay (hole punching
    /// runs), or a direct connection is replacing a relayed one.
    Wait,
    /// Not connected: dial, then wait.
    Dial,
}

#[derive(Debug)]
struct Reservation {
    relay: PeerId,
    accepted: bool,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Nat {
    dht_mode: DhtMode,
    external: HashSet<Multiaddr>,
    probe_failed: bool,
    /// When an AutoNAT v2 server was first seen.
    autonat_since: Option<Instant>,
    configured_relays: Vec<(PeerId, Multiaddr)>,
    bootstrap: HashSet<PeerId>,
    max_relays: usize,
    candidates: HashMap<PeerId, Multiaddr>,
    reservations: HashMap<ListenerId, Reservation>,
    retry_after: HashMap<PeerId, Instant>,
    connections: HashMap<ConnectionId, Connection>,
    protocols: HashMap<PeerId, Vec<String>>,
}

/// The relay's PeerId at the end of `addr`.
pub(super) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// Whether `addr` is a direct address someone on the internet might dial:
/// not relayed, not loopback, private, link-local or unspecified.
pub(super) fn is_global(addr: &Multiaddr) -> bool {
    if is_relayed(addr) {
        return false;
    }
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => {
            !(ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified())
        }
        Some(Protocol::Ip6(ip)) => {
            let local =
                (ip.segments()[0] & 0xfe00) == 0xfc00 || (ip.segments()[0] & 0xffc0) == 0xfe80;
            !(ip.is_loopback() || ip.is_unspecified() || local)
        }
        _ => false,
    }
}

/// Whether `addr` is a direct private, loopback or link-local IP address:
/// what the LAN DHT holds.
pub(super) fn is_lan(addr: &Multiaddr) -> bool {
    let specified = match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => !ip.is_unspecified(),
        Some(Protocol::Ip6(ip)) => !ip.is_unspecified(),
        _ => false,
    };
    specified && !is_relayed(addr) && !is_global(addr)
}

/// Whether `addr` goes through a relay.
pub(super) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

impl Nat {
    pub(super) fn new(config: &NetworkConfig) -> Self {
        Self {
            dht_mode: config.dht_mode,
            external: HashSet::new(),
            probe_failed: false,
            autonat_since: None,
            configured_relays: config
                .relays
                .iter()
                .filter_map(|a| Some((peer_of(a)?, a.clone())))
                .collect(),
            bootstrap: config.bootstrap.iter().filter_map(peer_of).collect(),
            max_relays: config.max_relays,
            candidates: HashMap::new(),
            reservations: HashMap::new(),
            retry_after: HashMap::new(),
            connections: HashMap::new(),
            protocols: HashMap::new(),
        }
    }

    /// What a connected peer says it speaks (identify).
    pub(super) fn identified(&mut self, peer: PeerId, mut protocols: Vec<String>) {
        protocols.sort();
        protocols.truncate(64);
        self.protocols.insert(peer, protocols);
    }

    pub(super) fn reachability(&self) -> Reachability {
        if self.external.iter().any(|a| !is_relayed(a)) {
            Reachability::Public
        } else if self.probe_failed {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }

    /// The Kademlia mode the node should be in now.
    pub(super) fn kad_mode(&self) -> kad::Mode {
        match self.dht_mode {
            DhtMode::Server => kad::Mode::Server,
            DhtMode::Client => kad::Mode::Client,
            DhtMode::Auto if self.reachability() == Reachability::Public => kad::Mode::Server,
            DhtMode::Auto => kad::Mode::Client,
        }
    }

    pub(super) fn external_confirmed(&mut self, addr: Multiaddr) {
        self.external.insert(addr);
    }

    pub(super) fn external_expired(&mut self, addr: &Multiaddr) {
        self.external.remove(addr);
    }

    /// An AutoNAT v2 probe of one of this node's addresses ended.
    pub(super) fn probed(&mut self, reachable: bool) {
        if !reachable {
            self.probe_failed = true;
        }
    }

    /// A connected peer serves AutoNAT v2.
    pub(super) fn autonat_server_seen(&mut self, now: Instant) {
        self.autonat_since.get_or_insert(now);
    }

    /// Counts the node private once an AutoNAT v2 server had
    /// [`PRIVATE_AFTER`] to confirm an address and confirmed none; true
    /// when that changed the reachability.
    pub(super) fn tick(&mut self, now: Instant) -> bool {
        let silent = self
            .autonat_since
            .is_some_and(|t| now.duration_since(t) >= PRIVATE_AFTER);
        if silent && !self.probe_failed && self.reachability() == Reachability::Unknown {
            self.probe_failed = true;
            return true;
        }
        false
    }

    /// A connected peer speaks the relay hop protocol; `addr` is where this
    /// node dialled it, if it did.
    pub(super) fn relay_found(&mut self, peer: PeerId) {
        let addr = self
            .connections
            .values()
            .find(|c| c.peer == peer && c.outbound && !c.relayed)
            .map(|c| c.addr.clone());
        if let Some(addr) = addr {
            let addr = if peer_of(&addr).is_some() {
                addr
            } else {
                addr.with(Protocol::P2p(peer))
            };
            self.candidates.insert(peer, addr);
        }
    }

    /// Relays to reserve a slot on now, as `/…/p2p/RELAY/p2p-circuit`.
    pub(super) fn relays_to_reserve(&mut self, now: Instant) -> Vec<(PeerId, Multiaddr)> {
        if self.reachability() == Reachability::Public {
            return Vec::new();
        }
        let held: HashSet<PeerId> = self.reservations.values().map(|r| r.relay).collect();
        let room = self.max_relays.saturating_sub(held.len());
        let mut auto: Vec<(PeerId, Multiaddr)> = self
            .candidates
            .iter()
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        // Bootstrap peers first: an operator listed them.
        auto.sort_by_key(|(p, _)| !self.bootstrap.contains(p));
        let pool = if self.configured_relays.is_empty() {
            auto
        } else {
            self.configured_relays.clone()
        };
        let wanted: Vec<_> = pool
            .into_iter()
            .filter(|(p, _)| !held.contains(p))
            .filter(|(p, _)| self.retry_after.get(p).is_none_or(|t| *t <= now))
            .take(room)
            .map(|(p, a)| (p, a.with(Protocol::P2pCircuit)))
            .collect();
        wanted
    }

    pub(super) fn reserving(&mut self, listener: ListenerId, relay: PeerId) {
        self.reservations.insert(
            listener,
            Reservation {
                relay,
                accepted: false,
            },
        );
    }

    /// The reservation listeners to close: all of them once public.
    pub(super) fn reservations_not_needed(&mut self) -> Vec<ListenerId> {
        if self.reachability() != Reachability::Public {
            return Vec::new();
        }
        self.reservations.drain().map(|(id, _)| id).collect()
    }

    pub(super) fn reservation_accepted(&mut self, relay: PeerId) {
        for r in self.reservations.values_mut() {
            if r.relay == relay {
                r.accepted = true;
            }
        }
    }

    /// A listener closed; true when it was a reservation.
    pub(super) fn listener_closed(&mut self, listener: ListenerId, now: Instant) -> bool {
        match self.reservations.remove(&listener) {
            Some(r) => {
                self.retry_after.insert(r.relay, now + RESERVE_RETRY);
                true
            }
            None => false,
        }
    }

    /// A reservation that could not start.
    pub(super) fn reserve_failed(&mut self, relay: PeerId, now: Instant) {
        self.retry_after.insert(relay, now + RESERVE_RETRY);
    }

    pub(super) fn connected(&mut self, id: ConnectionId, connection: Connection) {
        self.connections.insert(id, connection);
    }

    pub(super) fn disconnected(&mut self, id: ConnectionId) -> Option<Connection> {
        let gone = self.connections.remove(&id)?;
        // A bootstrap relay stays a candidate while away: its reservation
        // is tried again (every RESERVE_RETRY) until it is back.
        if !self.connections.values().any(|c| c.peer == gone.peer) {
            self.protocols.remove(&gone.peer);
            if !self.bootstrap.contains(&gone.peer) {
                self.candidates.remove(&gone.peer);
            }
        }
        Some(gone)
    }

    /// The relayed connections to `peer`.
    pub(super) fn relayed_to(&self, peer: PeerId) -> Vec<ConnectionId> {
        self.connections
            .iter()
            .filter(|(_, c)| c.peer == peer && c.relayed)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether every connection to `peer` goes through a relay.
    pub(super) fn only_relayed(&self, peer: PeerId) -> bool {
        let mut any = false;
        for c in self.connections.values().filter(|c| c.peer == peer) {
            if !c.relayed {
                return false;
            }
            any = true;
        }
        any
    }

    /// Whether the connection `id` is a direct one over a private or
    /// loopback address (a peer of the LAN DHT).
    pub(super) fn is_lan_connection(&self, id: ConnectionId) -> bool {
        self.connections.get(&id).is_some_and(|c| is_lan(&c.addr))
    }

    /// Connected peers whose identify lists `protocol`.
    pub(super) fn peers_speaking(&self, protocol: &str) -> Vec<PeerId> {
        self.protocols
            .iter()
            .filter(|(_, protocols)| protocols.iter().any(|p| p == protocol))
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// Whether `peer` has any connection.
    pub(super) fn is_connected(&self, peer: PeerId) -> bool {
        self.connections.values().any(|c| c.peer == peer)
    }

    /// Where a request to `peer` goes; `relay_ok` for small control
    /// messages that may cross a relay.
    pub(super) fn route(&self, peer: PeerId, relay_ok: bool) -> Route {
        let (mut direct, mut relayed) = (0, 0);
        for c in self.connections.values().filter(|c| c.peer == peer) {
            if c.relayed {
                relayed += 1;
            } else {
                direct += 1;
            }
        }
        match (direct, relayed) {
            (0, 0) => Route::Dial,
            (_, 0) => Route::Send,
            _ if relay_ok => Route::Send,
            _ => Route::Wait,
        }
    }

    pub(super) fn status(&self) -> NatStatus {
        let mut relays: Vec<PeerId> = self
            .reservations
            .values()
            .filter(|r| r.accepted)
            .map(|r| r.relay)
            .collect();
        relays.sort();
        relays.dedup();
        let mut external: Vec<Multiaddr> = self.external.iter().cloned().collect();
        external.sort();
        let mut connections: Vec<Connection> = self
            .connections
            .values()
            .map(|c| Connection {
                protocols: self.protocols.get(&c.peer).cloned().unwrap_or_default(),
                ..c.clone()
            })
            .collect();
        connections.sort_by(|a, b| a.peer.cmp(&b.peer).then(a.addr.cmp(&b.addr)));
        NatStatus {
            reachability: self.reachability(),
            dht_server: self.kad_mode() == kad::Mode::Server,
            external,
            relays,
            connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn conn(peer: PeerId, relayed: bool) -> Connection {
        let a = if relayed {
            format!(
                "/ip4/198.51.100.1/tcp/4001/p2p/{}/p2p-circuit",
                PeerId::random()
            )
        } else {
            "/ip4/198.51.100.2/tcp/4001".to_owned()
        };
        Connection {
            peer,
            addr: addr(&a),
            relayed,
            outbound: true,
            protocols: Vec::new(),
        }
    }

    #[test]
    fn only_a_direct_address_makes_a_node_public_and_a_dht_server() {
        let mut nat = Nat::new(&NetworkConfig::default());
        assert_eq!(nat.reachability(), Reachability::Unknown);
        assert_eq!(nat.kad_mode(), kad::Mode::Client);
        nat.probed(false);
        assert_eq!(nat.reachability(), Reachability::Private);
        let circuit = addr(&format!(
            "/ip4/198.51.100.1/tcp/4001/p2p/{}/p2p-circuit",
            PeerId::random()
        ));
        nat.external_confirmed(circuit);
        assert_eq!(nat.reachability(), Reachability::Private);
        assert_eq!(nat.kad_mode(), kad::Mode::Client, "relayed is not public");
        let direct = addr("/ip4/198.51.100.7/udp/4001/quic-v1");
        nat.external_confirmed(direct.clone());
        assert_eq!(nat.reachability(), Reachability::Public);
        assert_eq!(nat.kad_mode(), kad::Mode::Server);
        nat.external_expired(&direct);
        assert_eq!(nat.kad_mode(), kad::Mode::Client);
    }

    #[test]
    fn silence_from_an_autonat_server_means_private() {
        let mut nat = Nat::new(&NetworkConfig::default());
        let start = Instant::now();
        assert!(!nat.tick(start + PRIVATE_AFTER), "no server seen: unknown");
        nat.autonat_server_seen(start);
        assert!(!nat.tick(start + PRIVATE_AFTER / 2));
        assert_eq!(nat.reachability(), Reachability::Unknown);
        assert!(nat.tick(start + PRIVATE_AFTER));
        assert_eq!(nat.reachability(), Reachability::Private);
        nat.external_confirmed(addr("/ip4/198.51.100.7/tcp/4001"));
        assert_eq!(
            nat.reachability(),
            Reachability::Public,
            "a confirmation wins"
        );
    }

    #[test]
    fn the_operator_overrides_the_dht_mode() {
        let config = NetworkConfig {
            dht_mode: DhtMode::Server,
            ..NetworkConfig::default()
        };
        assert_eq!(Nat::new(&config).kad_mode(), kad::Mode::Server);
        let config = NetworkConfig {
            dht_mode: DhtMode::Client,
            ..NetworkConfig::default()
        };
        let mut nat = Nat::new(&config);
        nat.external_confirmed(addr("/ip4/198.51.100.7/tcp/4001"));
        assert_eq!(nat.kad_mode(), kad::Mode::Client);
    }

    #[test]
    fn only_direct_private_and_loopback_addresses_belong_to_the_lan_dht() {
        for lan in [
            "/ip4/127.0.0.1/udp/4001/quic-v1",
            "/ip4/192.168.1.7/tcp/4001",
            "/ip4/10.0.0.2/tcp/4001",
            "/ip6/::1/tcp/4001",
            "/ip6/fd00::7/tcp/4001",
        ] {
            assert!(is_lan(&addr(lan)), "{lan}");
        }
        for not_lan in [
            "/ip4/198.51.100.1/tcp/4001",
            "/ip4/0.0.0.0/tcp/4001",
            "/ip4/192.168.1.7/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA/p2p-circuit",
            "/dns4/example.com/tcp/4001",
        ] {
            assert!(!is_lan(&addr(not_lan)), "{not_lan}");
        }
    }

    #[test]
    fn only_global_direct_addresses_are_worth_a_reversal_dial() {
        assert!(is_global(&addr("/ip4/198.51.100.2/tcp/4001")));
        assert!(is_global(&addr("/ip6/2001:db8::1/udp/4001/quic-v1")));
        for local in [
            "/ip4/10.0.1.2/tcp/4001",
            "/ip4/192.168.1.5/tcp/4001",
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/169.254.1.1/tcp/4001",
            "/ip6/::1/tcp/4001",
            "/ip6/fe80::1/tcp/4001",
            "/ip6/fd00::1/tcp/4001",
        ] {
            assert!(!is_global(&addr(local)), "{local}");
        }
        let circuit = format!(
            "/ip4/198.51.100.1/tcp/4001/p2p/{}/p2p-circuit",
            PeerId::random()
        );
        assert!(!is_global(&addr(&circuit)));
    }

    #[test]
    fn requests_wait_while_a_relayed_connection_is_open() {
        let mut nat = Nat::new(&NetworkConfig::default());
        let peer = PeerId::random();
        assert_eq!(nat.route(peer, false), Route::Dial);
        assert!(!nat.only_relayed(peer));
        let relayed = ConnectionId::new_unchecked(1);
        nat.connected(relayed, conn(peer, true));
        assert!(nat.only_relayed(peer));
        assert_eq!(nat.route(peer, false), Route::Wait);
        assert_eq!(nat.route(peer, true), Route::Send, "control messages may");
        let direct = ConnectionId::new_unchecked(2);
        nat.connected(direct, conn(peer, false));
        assert_eq!(
            nat.route(peer, false),
            Route::Wait,
            "until the relayed one closes"
        );
        assert_eq!(nat.relayed_to(peer), vec![relayed]);
        nat.disconnected(relayed);
        assert_eq!(nat.route(peer, false), Route::Send);
    }

    #[test]
    fn a_private_node_reserves_on_bootstrap_relays_first_up_to_the_limit() {
        let bootstrap = PeerId::random();
        let config = NetworkConfig {
            bootstrap: vec![addr(&format!("/ip4/198.51.100.1/tcp/4001/p2p/{bootstrap}"))],
            max_relays: 1,
            ..NetworkConfig::default()
        };
        let mut nat = Nat::new(&config);
        let other = PeerId::random();
        for (i, peer) in [other, bootstrap].into_iter().enumerate() {
            nat.connected(ConnectionId::new_unchecked(i), conn(peer, false));
            nat.relay_found(peer);
        }
        let now = Instant::now();
        nat.probed(false);
        let wanted = nat.relays_to_reserve(now);
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].0, bootstrap);
        assert!(is_relayed(&wanted[0].1));
        let listener = ListenerId::next();
        nat.reserving(listener, bootstrap);
        assert!(nat.relays_to_reserve(now).is_empty(), "one is the limit");
        assert!(nat.listener_closed(listener, now));
        assert!(
            nat.relays_to_reserve(now)
                .iter()
                .all(|(p, _)| *p != bootstrap),
            "a relay that dropped us is left alone for a while"
        );
        nat.external_confirmed(addr("/ip4/198.51.100.7/tcp/4001"));
        assert!(
            nat.relays_to_reserve(now + RESERVE_RETRY).is_empty(),
            "public nodes need no relay"
        );
    }
}
