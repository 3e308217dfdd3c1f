//! Nodes on loopback QUIC, in process: bootstrap, providing, and fetching
//! blocks from peers (including a peer that lies).

use std::time::Duration;

use bytes::Bytes;
use phase_node::blocks::{self, FetchOptions};
use phase_node::store::files;

use phase_tests::{TestNet, pattern, within};

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
async fn provider_records_expire_unless_announced_again() {
    // Records live 3 s on whoever stores them; each node announces its own
    // again every second.
    let configs = (0..3)
        .map(|_| {
            let mut config = phase_tests::loopback_config();
            config.network.provider_ttl = Duration::from_secs(3);
            config.network.provider_republish = Duration::from_secs(1);
            config
        })
        .collect();
    let mut net = TestNet::with_configs(configs).await;
    net.converge().await;
    let root = files::add_bytes(net.nodes[0].store(), Bytes::from(pattern(1000, 3)))
        .await
        .unwrap()
        .cid;
    for node in &net.nodes[..2] {
        within(node.pin_and_provide(root)).await.unwrap();
    }
    let (zero, one) = (net.nodes[0].peer_id(), net.nodes[1].peer_id());
    let found = within(net.nodes[2].network().find_providers(root))
        .await
        .unwrap();
    assert!(found.contains(&zero) && found.contains(&one), "{found:?}");
    // Node 1 goes away: its records expire; node 0's, announced again,
    // outlive their first 3 s.
    net.nodes.remove(1).shutdown().await;
    let found = within(async {
        loop {
            // A record's expiry has no event to wait on: ask again every
            // 2 s (answers are reused for 10 s; a lookup after that is
            // new), within the deadline `within` sets.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let found = net.nodes[1].network().find_providers(root).await.unwrap();
            if !found.contains(&one) {
                break found;
            }
        }
    })
    .await;
    assert!(
        found.contains(&zero),
        "node 0's record was announced again: {found:?}"
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
    let n = within(blocks::fetch(
        fetcher.network(),
        fetcher.store(),
        root,
        FetchOptions::from_peers(providers),
        |_| {},
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

mod hostile {
    use std::io;

    use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;
    use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
    use phase_protocol::Message;
    use phase_protocol::block::{BLOCK_PROTOCOL, BlockRequest};
    use phase_protocol::cid::raw_cid;

    use super::*;

    /// Sends whatever bytes it is given on `/phase/block/1.0.0`.
    #[derive(Clone, Default)]
    struct RawCodec;

    impl request_response::Codec for RawCodec {
        type Protocol = StreamProtocol;
        type Request = Vec<u8>;
        type Response = Vec<u8>;

        async fn read_request<T: AsyncRead + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            io: &mut T,
        ) -> io::Result<Vec<u8>> {
            let mut buf = Vec::new();
            io.take(1 << 20).read_to_end(&mut buf).await?;
            Ok(buf)
        }
        async fn read_response<T: AsyncRead + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            io: &mut T,
        ) -> io::Result<Vec<u8>> {
            let mut buf = Vec::new();
            io.take(16 << 20).read_to_end(&mut buf).await?;
            Ok(buf)
        }
        async fn write_request<T: AsyncWrite + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            io: &mut T,
            req: Vec<u8>,
        ) -> io::Result<()> {
            io.write_all(&req).await?;
            io.close().await
        }
        async fn write_response<T: AsyncWrite + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            io: &mut T,
            res: Vec<u8>,
        ) -> io::Result<()> {
            io.write_all(&res).await?;
            io.close().await
        }
    }

    type Raw = request_response::Behaviour<RawCodec>;

    fn raw_client() -> Swarm<Raw> {
        libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_quic()
            .with_behaviour(|_| {
                Raw::new(
                    [(
                        StreamProtocol::new(BLOCK_PROTOCOL),
                        ProtocolSupport::Outbound,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                )
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build()
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = body.len() as u64;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(body);
        out
    }

    /// Sends every request at once; returns how many got a (well-formed or
    /// not) response, and how many failed.
    async fn send_all(
        client: &mut Swarm<Raw>,
        peer: PeerId,
        addr: Multiaddr,
        requests: Vec<Vec<u8>>,
    ) -> (usize, usize) {
        client.add_peer_address(peer, addr);
        let total = requests.len();
        for r in requests {
            client.behaviour_mut().send_request(&peer, r);
        }
        let (mut answered, mut failed) = (0, 0);
        while answered + failed < total {
            match client.select_next_some().await {
                // The node closing the stream without a response reads as an
                // empty one: a refusal.
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                }) if !response.is_empty() => answered += 1,
                SwarmEvent::Behaviour(request_response::Event::Message { .. }) => failed += 1,
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                    failed += 1
                }
                _ => {}
            }
        }
        (answered, failed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_peers_are_cut_off_and_others_still_served() {
        let net = TestNet::new(2).await;
        net.converge().await;
        let (a, b) = (&net.nodes[0], &net.nodes[1]);
        let addr = within(a.listen_addrs()).await.unwrap()[0].clone();

        let hundred_thousand = BlockRequest {
            want: (0..100_000u32).map(|i| raw_cid(&i.to_le_bytes())).collect(),
        };
        let mut oversized = vec![0x80, 0x80, 0x80, 0x80, 0x08]; // claims 2 GiB
        oversized.extend_from_slice(&[0u8; 1024]);
        let requests = vec![
            // Control: a valid request is answered (with the CID as missing).
            frame(
                &BlockRequest {
                    want: vec![raw_cid(b"x")],
                }
                .encode(),
            ),
            vec![0xff; 100],                   // garbage
            oversized,                         // a length over the cap
            frame(&hundred_thousand.encode()), // 100,000 CIDs at once
            frame(
                &BlockRequest {
                    want: vec![raw_cid(b"x"); 300],
                }
                .encode(),
            ), // over MAX_WANT
        ];
        let mut client = raw_client();
        let (answered, failed) =
            within(send_all(&mut client, a.peer_id(), addr.clone(), requests)).await;
        assert_eq!(
            (answered, failed),
            (1, 4),
            "the valid request is answered, every bad one refused"
        );

        // A burst of streams: the node caps concurrent streams; none hangs.
        let burst = (0..300).map(|_| vec![0xff; 8]).collect();
        let (answered, failed) = within(send_all(&mut client, a.peer_id(), addr, burst)).await;
        assert_eq!(answered + failed, 300);
        assert_eq!(answered, 0);

        // The node still serves an honest peer.
        let data = pattern(1 << 20, 3);
        let root = files::add_bytes(a.store(), Bytes::from(data.clone()))
            .await
            .unwrap();
        within(a.pin_and_provide(root.cid)).await.unwrap();
        within(b.fetch(root.cid)).await.unwrap();
        assert_eq!(files::cat_to_vec(b.store(), root.cid).await.unwrap(), data);
        net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_root_is_not_taken_for_its_whole_dag() {
    let net = TestNet::new(2).await;
    net.converge().await;
    let data = pattern(3 << 20, 11);
    let root = files::add_bytes(net.nodes[0].store(), Bytes::from(data.clone()))
        .await
        .unwrap();
    within(net.nodes[0].pin_and_provide(root.cid))
        .await
        .unwrap();
    // The root alone, as a fetch cut short (or one still under way beside
    // this one) leaves it.
    let node = &net.nodes[1];
    let block = net.nodes[0].store().get(&root.cid).await.unwrap().unwrap();
    node.store().put(root.cid, block).await.unwrap();
    within(node.fetch(root.cid)).await.unwrap();
    assert_eq!(
        files::cat_to_vec(node.store(), root.cid).await.unwrap(),
        data,
        "the fetch got the blocks under the stored root"
    );
    net.shutdown().await;
}
