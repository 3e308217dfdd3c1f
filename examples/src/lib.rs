//! Example clients; see the [[example]] entries. This library holds what
//! the benchmarks share.

use anyhow::Context;
use phase_node::config::{DhtMode, NodeConfig};
use phase_node::node::Node;
use phase_node::store::BlockStore;
use phase_protocol::Keypair;

/// A node's config for a benchmark: listening on `listen` (a loopback
/// multiaddr with port 0), no mDNS, not a worker.
///
/// # Errors
/// `listen` is not a multiaddr.
pub fn bench_config(listen: &str) -> anyhow::Result<NodeConfig> {
    let mut config = NodeConfig::default();
    config.network.listen = vec![listen.parse().context("listen address")?];
    config.network.mdns = false;
    // Loopback never confirms an address: answer DHT queries regardless.
    config.network.dht_mode = DhtMode::Server;
    config.worker.enabled = false;
    Ok(config)
}

/// Two nodes in this process: the second bootstraps from the first and is
/// returned once the first is in its routing table. Their stores are in
/// memory with `mem`, else under a temporary folder removed on drop.
#[derive(Debug)]
pub struct NodePair {
    /// The node the other dials.
    pub first: Node,
    /// The node that dials.
    pub second: Node,
    _dir: tempfile::TempDir,
}

impl NodePair {
    /// Starts the pair.
    ///
    /// # Errors
    /// A store or a node fails to start.
    pub async fn start(
        first: NodeConfig,
        mut second: NodeConfig,
        mem: bool,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = async |name: &str| -> anyhow::Result<BlockStore> {
            Ok(if mem {
                BlockStore::memory()
            } else {
                // Each node's store is its own, as a daemon's is.
                BlockStore::open(dir.path().join(name)).await?.held_alone()
            })
        };
        let first = Node::builder(first)
            .key(Keypair::generate_ed25519())
            .store(store("first").await?)
            .spawn()
            .await?;
        second.network.bootstrap = first.listen_addrs().await?;
        let second = Node::builder(second)
            .key(Keypair::generate_ed25519())
            .store(store("second").await?)
            .spawn()
            .await?;
        second.network().wait_routing_peers(1).await?;
        Ok(Self {
            first,
            second,
            _dir: dir,
        })
    }

    /// Stops both nodes.
    pub async fn shutdown(self) {
        self.second.shutdown().await;
        self.first.shutdown().await;
    }
}
