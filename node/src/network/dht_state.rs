//! What a node knows of its place in the DHT.

/// What a node knows of its place in the DHT, as the swarm task last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DhtState {
    /// Peers in the Kademlia routing table.
    pub routing_peers: usize,
    /// Connected to a configured bootstrap peer now, or none is configured.
    pub bootstrap_connected: bool,
    /// Bootstrap queries (a lookup of this node's own id, then one into
    /// each bucket) completed with a peer in the routing table.
    pub bootstraps: u64,
}

impl DhtState {
    /// Part of the DHT: connected to its bootstrap (if it has one), its
    /// routing table refreshed by a completed bootstrap query, and at least
    /// `min_peers` peers in it. Not a full routing table: Kademlia's
    /// buckets hold 20 peers each, so past a few dozen nodes no node knows
    /// every other; it finds them by lookup.
    #[must_use]
    pub fn ready(&self, min_peers: usize) -> bool {
        self.bootstrap_connected && self.bootstraps > 0 && self.routing_peers >= min_peers.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::DhtState;

    #[test]
    fn ready_means_bootstrap_connected_bootstrapped_and_enough_peers() {
        let ready = DhtState {
            routing_peers: 3,
            bootstrap_connected: true,
            bootstraps: 1,
        };
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
