//! Networks in process on loopback QUIC with the DHT settings a user gets
//! (`dht_mode = auto`: loopback nodes are never public, so they meet in
//! the LAN DHT): 10 nodes, and 50, more than Kademlia's 20-peer buckets let
//! any one node know, so everything below goes through DHT lookups: peers
//! by id, content and workers by provider records.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use phase_node::config::NodeConfig;
use phase_node::requester::SubmitOptions;
use phase_node::store::files;
use phase_protocol::{PeerId, Status};

use phase_tests::{TestNet, add, hello_spec, loopback_config, pattern, within};

/// Deadline of each step that involves the whole network: the 2,450
/// lookups take 80-90 s of a debug build's two cores alone, more when the
/// suite runs beside.
const STEP_DEADLINE: Duration = Duration::from_secs(600);

async fn step<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP_DEADLINE, fut)
        .await
        .expect("step deadline passed")
}

/// Jobs submitted at once.
const AT_ONCE: usize = 20;

fn config(worker: bool) -> NodeConfig {
    let mut config = loopback_config();
    // Kademlia bootstraps by itself while a node's table is small; one
    // re-bootstrap a second on 50 nodes would only load the two cores.
    config.network.bootstrap_interval = Duration::from_secs(120);
    config.worker.enabled = worker;
    config.worker.slots = 2;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_default_nodes_find_each_other_content_and_workers() {
    network_finds_everything(10, 30, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_nodes_find_each_other_content_and_workers_through_the_dht() {
    network_finds_everything(50, 100, 20).await;
}

/// `nodes` nodes: every node finds every other by lookup, a file added on
/// the first is fetched on the last, and `jobs` jobs from the last run on
/// at least `min_workers` distinct workers, every receipt verified.
async fn network_finds_everything(nodes: usize, jobs: u64, min_workers: usize) {
    // Node 0 bootstraps the others; the last node is the requester, every
    // other one a worker.
    let configs = (0..nodes).map(|i| config(i + 1 < nodes)).collect();
    let started = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1}s {what}", started.elapsed().as_secs_f64());
    let net = TestNet::with_configs(configs).await;
    phase("started");
    // Part of the DHT: connected to node 0, a bootstrap query completed.
    step(async {
        for node in &net.nodes {
            node.network().wait_dht_ready(1).await.unwrap();
        }
    })
    .await;
    phase("every node part of the DHT");
    let ids: Vec<PeerId> = net.nodes.iter().map(|n| n.peer_id()).collect();

    // Every node finds every other by a lookup of its id.
    let lookups = net.nodes.iter().flat_map(|node| {
        ids.iter()
            .filter(move |id| **id != node.peer_id())
            .map(move |id| async move {
                let found = node.network().find_peer(*id).await.unwrap();
                (node.peer_id(), *id, found.is_none())
            })
    });
    let missed: Vec<(PeerId, PeerId)> = step(
        futures::stream::iter(lookups)
            .buffer_unordered(16)
            .filter_map(|(from, to, missed)| async move { missed.then_some((from, to)) })
            .collect::<Vec<_>>(),
    )
    .await;
    assert!(
        missed.is_empty(),
        "{} of {} lookups missed, e.g. {:?}",
        missed.len(),
        nodes * (nodes - 1),
        missed.first()
    );

    phase("every node found every other");

    // A file added on the first node is fetched on the last through a
    // provider lookup.
    let data = pattern(300_000, 50);
    let root = add(&net.nodes[0], Bytes::from(data.clone())).await;
    within(net.nodes[0].pin_and_provide(root)).await.unwrap();
    let requester = &net.nodes[nodes - 1];
    within(requester.fetch(root)).await.unwrap();
    assert_eq!(
        files::cat_to_vec(requester.store(), root).await.unwrap(),
        data
    );

    phase("file fetched through a provider lookup");

    // The jobs from the last node spread over the workers it finds, and
    // every receipt verifies as signed by the worker named.
    let options = SubmitOptions {
        poll_interval: Duration::from_millis(200),
        ..SubmitOptions::default()
    };
    let runs = (0..jobs).map(|nonce| {
        let options = &options;
        async move {
            let spec = hello_spec(requester, nonce).await;
            requester
                .requester()
                .submit(&spec, options, &|_| {})
                .await
                .map(|report| (spec.id(), report))
        }
    });
    let reports: Vec<_> = step(
        futures::stream::iter(runs)
            .buffer_unordered(AT_ONCE)
            .collect::<Vec<_>>(),
    )
    .await;
    let mut workers = HashSet::new();
    for report in reports {
        let (job, report) = report.expect("the job completes");
        let run = &report.results[0];
        let receipt = run.receipt.verify_signer(&run.worker).unwrap();
        assert_eq!(receipt.job, job);
        assert_eq!(receipt.status, Status::Exited { code: 0 });
        assert!(ids[..nodes - 1].contains(&run.worker), "ran on a worker");
        workers.insert(run.worker);
    }
    phase(&format!("{jobs} jobs ran on {} workers", workers.len()));
    assert!(
        workers.len() >= min_workers,
        "{jobs} jobs ran on only {} distinct workers",
        workers.len()
    );
    net.shutdown().await;
}
