//! Nodes on loopback QUIC, in process: bootstrap, providing, and fetching
//! blocks from peers (including a peer that lies).

use std::time::Duration;

use bytes::Bytes;
use phase_node::config::NodeConfig;
use phase_node::node::NodeHandle;
use phase_node::store::{BlockStore, files};
use phase_protocol::Keypair;

/// One deadline for every wait of a test: generous, since the suite shares
/// two cores.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test deadline passed")
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// `n` nodes on 127.0.0.1 (QUIC, OS-picked ports, no mDNS), each with a
/// memory store, all bootstrapped to node 0.
struct TestNet {
    nodes: Vec<NodeHandle>,
}

impl TestNet {
    async fn new(n: usize) -> Self {
        init_tracing();
        let mut nodes: Vec<NodeHandle> = Vec::new();
        for i in 0..n {
            let mut config = NodeConfig::default();
            config.network.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
            config.network.mdns = false;
            config.network.bootstrap_interval = Duration::from_secs(1);
            if i > 0 {
                config.network.bootstrap = within(nodes[0].listen_addrs()).await.unwrap();
            }
            let node = NodeHandle::spawn(config, Keypair::generate_ed25519(), BlockStore::memory())
                .await
                .unwrap();
            within(node.listen_addrs()).await.unwrap();
            nodes.push(node);
        }
        Self { nodes }
    }

    /// Waits until every node has every other in its routing table: an
    /// event-driven wait on each node's routing-table size (the nodes
    /// re-bootstrap every second, see `new`).
    async fn converge(&self) {
        for node in &self.nodes {
            within(node.network().wait_routing_peers(self.nodes.len() - 1))
                .await
                .unwrap();
        }
    }

    async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}

/// Pseudo-random bytes (xorshift), so no two chunks are alike.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_added_on_one_node_is_fetched_on_another() {
    let net = TestNet::new(2).await;
    net.converge().await;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let data = pattern(10 << 20, 1);
    let root = files::add_bytes(a.store(), Bytes::from(data.clone()))
        .await
        .unwrap();
    within(a.pin_and_provide(root.cid)).await.unwrap();

    let fetched = within(b.fetch(root.cid)).await.unwrap();
    assert_eq!(fetched, 41); // 40 leaves and a root
    assert_eq!(files::cat_to_vec(b.store(), root.cid).await.unwrap(), data);
    net.shutdown().await;
}
