//! Shared harness of the integration suites (the `[[test]]` targets under
//! `tests/`): one deadline helper, tracing for tests, guests from
//! `wasm-examples/out`, and [`TestNet`], nodes on loopback QUIC in process.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use phase_node::config::NodeConfig;
use phase_node::node::{Node, NodeHandle};
use phase_node::store::BlockStore;
use phase_protocol::Keypair;

/// One deadline for every wait of a test: generous, since the suite shares
/// two cores.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// `fut`, or a panic once [`TEST_TIMEOUT`] has passed.
///
/// # Panics
/// When the deadline passes.
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test deadline passed")
}

/// Logs to the test's output, filtered by `RUST_LOG`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A guest program built by `scripts/build-wasm-examples.sh`.
///
/// # Panics
/// When it has not been built.
#[must_use]
pub fn guest(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../wasm-examples/out")
        .join(format!("{name}.wasm"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/build-wasm-examples.sh first",
            path.display()
        )
    });
    Bytes::from(bytes)
}

/// Adds `bytes` to `node`'s store as a file and pins it; its root.
///
/// # Panics
/// When the store fails.
pub async fn add(node: &NodeHandle, bytes: Bytes) -> phase_protocol::Cid {
    let root = phase_node::store::files::add_bytes(node.store(), bytes)
        .await
        .expect("added");
    node.store().pin(&root.cid).await.expect("pinned");
    root.cid
}

/// The `hello` guest on "Hello, World" (stored on `node`), with small
/// limits and `nonce` (a new job id for each).
///
/// # Panics
/// When the guest has not been built, or the store fails.
pub async fn hello_spec(node: &NodeHandle, nonce: u64) -> phase_protocol::JobSpec {
    let mut spec = phase_protocol::JobSpec::new(add(node, guest("hello")).await);
    spec.stdin = Some(add(node, Bytes::from_static(b"Hello, World")).await);
    spec.limits = phase_protocol::Limits {
        fuel: 100_000_000,
        memory: phase_protocol::ByteSize(64 << 20),
        timeout: Duration::from_secs(30),
        max_output: phase_protocol::ByteSize(1 << 20),
    };
    spec.nonce = nonce;
    spec
}

/// Pseudo-random bytes (xorshift), so no two chunks are alike.
#[must_use]
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
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

/// A node config for tests: QUIC on 127.0.0.1 with an OS-picked port, no
/// mDNS, re-bootstrap every second, not a worker; the DHT settings a user
/// gets (`dht_mode = auto`: loopback nodes meet in the LAN DHT).
#[must_use]
pub fn loopback_config() -> NodeConfig {
    let mut config = NodeConfig::default();
    config.network.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("valid")];
    config.network.mdns = false;
    config.network.bootstrap_interval = Duration::from_secs(1);
    config.worker.enabled = false;
    config
}

/// Nodes on 127.0.0.1, all bootstrapped to node 0; node stores on disk
/// under `dir`.
#[derive(Debug)]
pub struct TestNet {
    /// The nodes, in the order they were started.
    pub nodes: Vec<Node>,
    /// Where their stores live (`node{i}`).
    pub dir: tempfile::TempDir,
}

impl TestNet {
    /// `n` nodes with [`loopback_config`] (none of them a worker).
    ///
    /// # Panics
    /// When a node cannot start.
    pub async fn new(n: usize) -> Self {
        Self::with_configs((0..n).map(|_| loopback_config()).collect()).await
    }

    /// One node per config; node 0 is the bootstrap node of the others.
    ///
    /// # Panics
    /// When a node cannot start.
    pub async fn with_configs(configs: Vec<NodeConfig>) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut nodes: Vec<Node> = Vec::new();
        for (i, mut config) in configs.into_iter().enumerate() {
            if i > 0 {
                config.network.bootstrap = within(nodes[0].listen_addrs())
                    .await
                    .expect("node 0 listens");
            }
            let store = BlockStore::open(dir.path().join(format!("node{i}")))
                .await
                .expect("a store");
            let node = Node::builder(config)
                .key(Keypair::generate_ed25519())
                .store(store)
                .spawn()
                .await
                .expect("the node starts");
            within(node.listen_addrs()).await.expect("the node listens");
            nodes.push(node);
        }
        Self { nodes, dir }
    }

    /// The on-disk file of a block in node `i`'s store.
    #[must_use]
    pub fn block_file(&self, i: usize, cid: &phase_protocol::Cid) -> std::path::PathBuf {
        let name = cid.to_string();
        let shard = &name[name.len() - 3..name.len() - 1];
        self.dir
            .path()
            .join(format!("node{i}/blocks/{shard}/{name}"))
    }

    /// Waits until every node has every other in its routing table: an
    /// event-driven wait on each node's routing-table size (the nodes
    /// re-bootstrap every second).
    ///
    /// # Panics
    /// When the deadline passes or a node stops.
    pub async fn converge(&self) {
        for node in &self.nodes {
            within(node.network().wait_routing_peers(self.nodes.len() - 1))
                .await
                .expect("the node runs");
        }
    }

    /// Waits until every node is part of the DHT (connected to node 0, a
    /// bootstrap query completed): what a network of any size can promise,
    /// where [`TestNet::converge`] needs every routing table to hold every
    /// node, which Kademlia's 20-peer buckets allow only in small networks.
    ///
    /// # Panics
    /// When the deadline passes or a node stops.
    pub async fn ready(&self) {
        for node in &self.nodes {
            within(node.network().wait_dht_ready(1))
                .await
                .expect("the node runs");
        }
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}

/// An HTTP/1.1 server on 127.0.0.1 (an OS-picked port) that answers every
/// request with `200 OK` and one body, one connection at a time, counting
/// requests; it stops when dropped. What a job's `permissions.net` reaches
/// in the tests.
#[derive(Debug)]
pub struct HttpServer {
    addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HttpServer {
    /// Starts serving `body`.
    ///
    /// # Panics
    /// When no port can be bound.
    #[must_use]
    pub fn serve(body: &'static [u8]) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                // The request head, at most 64 KiB; the body (none) is not read.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(body);
            }
        });
        Self {
            addr,
            requests,
            stop,
        }
    }

    /// `127.0.0.1:PORT`, as `permissions.net` and `net_allow` name it.
    #[must_use]
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Requests answered so far.
    #[must_use]
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wakes the accept loop so it sees `stop`.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}
