//! Nodes on loopback QUIC, in process: bootstrap, providing, and fetching
//! blocks from peers (including a peer that lies).

use std::time::Duration;

use bytes::Bytes;
use phase_node::config::NodeConfig;
use phase_node::fetch;
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

/// `n` nodes on 127.0.0.1 (QUIC, OS-picked ports, no mDNS), all
/// bootstrapped to node 0; node stores on disk under `dir`.
struct TestNet {
    nodes: Vec<NodeHandle>,
    dir: tempfile::TempDir,
}

impl TestNet {
    async fn new(n: usize) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let mut nodes: Vec<NodeHandle> = Vec::new();
        for i in 0..n {
            let mut config = NodeConfig::default();
            config.network.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
            config.network.mdns = false;
            config.network.bootstrap_interval = Duration::from_secs(1);
            if i > 0 {
                config.network.bootstrap = within(nodes[0].listen_addrs()).await.unwrap();
            }
            let store = BlockStore::open(dir.path().join(format!("node{i}")))
                .await
                .unwrap();
            let node = NodeHandle::spawn(config, Keypair::generate_ed25519(), store)
                .await
                .unwrap();
            within(node.listen_addrs()).await.unwrap();
            nodes.push(node);
        }
        Self { nodes, dir }
    }

    /// The on-disk file of a block in node `i`'s store.
    fn block_file(&self, i: usize, cid: &phase_protocol::Cid) -> std::path::PathBuf {
        let name = cid.to_string();
        let shard = &name[name.len() - 3..name.len() - 1];
        self.dir
            .path()
            .join(format!("node{i}/blocks/{shard}/{name}"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge_and_share() {
    let net = TestNet::new(5).await;
    net.converge().await;
    let data = pattern(600_000, 5);
    let root = files::add_bytes(net.nodes[1].store(), Bytes::from(data.clone()))
        .await
        .unwrap();
    within(net.nodes[1].pin_and_provide(root.cid))
        .await
        .unwrap();
    within(net.nodes[4].fetch(root.cid)).await.unwrap();
    assert_eq!(
        files::cat_to_vec(net.nodes[4].store(), root.cid)
            .await
            .unwrap(),
        data
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_converge() {
    let net = TestNet::new(20).await;
    net.converge().await;
    let data = pattern(1000, 20);
    let root = files::add_bytes(net.nodes[7].store(), Bytes::from(data.clone()))
        .await
        .unwrap();
    within(net.nodes[7].pin_and_provide(root.cid))
        .await
        .unwrap();
    within(net.nodes[19].fetch(root.cid)).await.unwrap();
    assert_eq!(
        files::cat_to_vec(net.nodes[19].store(), root.cid)
            .await
            .unwrap(),
        data
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_with_a_corrupted_block_is_passed_over() {
    let net = TestNet::new(3).await;
    net.converge().await;
    let data = pattern(3 << 20, 7);
    let mut root = None;
    for i in [0, 1] {
        let r = files::add_bytes(net.nodes[i].store(), Bytes::from(data.clone()))
            .await
            .unwrap();
        within(net.nodes[i].pin_and_provide(r.cid)).await.unwrap();
        root = Some(r.cid);
    }
    let root = root.unwrap();
    // Every leaf on node 1's disk is damaged: it must never reach node 2.
    for cid in net.nodes[1].store().cids().await.unwrap() {
        if cid != root {
            std::fs::write(net.block_file(1, &cid), b"rotten").unwrap();
        }
    }
    within(net.nodes[2].fetch(root)).await.unwrap();
    assert_eq!(
        files::cat_to_vec(net.nodes[2].store(), root).await.unwrap(),
        data
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_goes_away_is_replaced() {
    let mut net = TestNet::new(3).await;
    net.converge().await;
    let data = pattern(4 << 20, 9);
    let mut root = None;
    for i in [0, 1] {
        let r = files::add_bytes(net.nodes[i].store(), Bytes::from(data.clone()))
            .await
            .unwrap();
        within(net.nodes[i].pin_and_provide(r.cid)).await.unwrap();
        root = Some(r.cid);
    }
    let root = root.unwrap();
    let fetcher = &net.nodes[2];
    let providers = within(fetcher.network().find_providers(root))
        .await
        .unwrap();
    assert_eq!(providers.len(), 2);
    // Node 1 stops after it was found, before the transfer.
    let gone = net.nodes.remove(1);
    gone.shutdown().await;
    let fetcher = &net.nodes[1];
    let n = within(fetch::fetch_dag(
        fetcher.network(),
        fetcher.store(),
        root,
        providers,
    ))
    .await
    .unwrap();
    assert_eq!(n, 17);
    assert_eq!(
        files::cat_to_vec(fetcher.store(), root).await.unwrap(),
        data
    );
    net.shutdown().await;
}
