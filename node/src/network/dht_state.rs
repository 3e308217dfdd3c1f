//! What a node knows of its place in the DHT.

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

#[cfg(test)]
mod tests {
    use super::DhtState;

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
