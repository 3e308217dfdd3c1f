//! The one assembly: a data dir's node started through `Node::builder`
//! (as `phase-node start` starts it) serves its API, and shuts down
//! gracefully and within its bound while a request is held open: the
//! request is answered, the socket removed, the network stopped.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use phase_node::config::{DataDir, NodeConfig};
use phase_node::node::Node;

/// Shutdown's bound: the API's drain, then the tasks' grace, with room
/// for a loaded machine.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_built_for_a_data_dir_shuts_down_gracefully_with_a_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::resolve(Some(dir.path())).unwrap();
    let mut config = NodeConfig::default();
    config.network.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
    config.network.mdns = false;
    let node = Node::builder(config)
        .data_dir(data_dir.clone())
        .spawn()
        .await
        .unwrap();
    assert!(node.worker().is_some(), "a worker by default");
    assert!(
        dir.path().join("identity.key").exists(),
        "the data dir's identity"
    );
    let socket = dir.path().join(phase_node::api::SOCKET);

    // A request that waits (for a thousand DHT peers that never come).
    let held = std::thread::spawn({
        let socket = socket.clone();
        move || {
            let mut stream = UnixStream::connect(&socket).unwrap();
            stream
                .set_read_timeout(Some(SHUTDOWN_BOUND + Duration::from_secs(10)))
                .unwrap();
            stream
                .write_all(b"GET /api/v1/peers?wait=1000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            answer
        }
    });
    // Held once the API counts it in flight (a wait on the gauge, bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.metrics().api_in_flight.get() < 1 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the API"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let network = node.network().clone();
    let started = Instant::now();
    node.shutdown().await;
    let took = started.elapsed();
    assert!(took < SHUTDOWN_BOUND, "shutdown took {took:?}");

    let answer = held.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("shutting down"),
        "the held request is answered, not cut off: {answer:?}"
    );
    assert!(!socket.exists(), "the socket is removed");
    assert!(
        network.routing_peers().await.is_err(),
        "the network stopped"
    );
}
