//! The composed libp2p behaviour: connection limits first, then Kademlia,
//! identify, ping, mDNS, NAT traversal (relay client and server, DCUtR,
//! AutoNAT v2 client and server, UPnP), the block protocol and the job
//! protocol.

use std::time::Duration;

use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, autonat, dcutr, identify, kad, mdns, ping, relay, request_response, upnp,
};

use phase_protocol::block::{BLOCK_PROTOCOL, BlockRequest, BlockResponse};
use phase_protocol::job::{JOB_PROTOCOL, JobRequest, JobResponse};

use super::codec::MessageCodec;
use crate::config::{DhtMode, NetworkConfig};

/// Protocol id of the phase Kademlia DHT (not the public IPFS one).
pub const KAD_PROTOCOL: &str = "/phase/kad/1.0.0";
/// Protocol id of the LAN DHT: the phase DHT among peers reached over
/// private or loopback addresses, where every node is a server (Kubo's
/// `/ipfs/lan/kad/1.0.0`).
pub const LAN_KAD_PROTOCOL: &str = "/phase/lan/kad/1.0.0";
/// Concurrent inbound plus outbound block streams per connection: enough
/// for a window of requests in flight, few enough that a peer opening
/// streams without end is cut off.
const MAX_BLOCK_STREAMS: usize = 64;
/// Providers of one key a DHT server keeps (libp2p's default is 20, the
/// first to come). Every worker provides the same capability keys, so this
/// is how many workers one record holder can name; a lookup asks about
/// twenty holders and joins their answers.
const MAX_PROVIDERS_PER_KEY: usize = 256;
/// Largest Kademlia message: an answer naming [`MAX_PROVIDERS_PER_KEY`]
/// providers with a few addresses each (libp2p's default is 16 KiB).
const MAX_KAD_MESSAGE: usize = 256 * 1024;
/// Concurrent job streams per connection: a requester with many jobs in
/// flight polls them all; a peer flooding submits is cut off here first and
/// answered `busy` by the scheduler after that.
const MAX_JOB_STREAMS: usize = 128;

pub(crate) type BlockCodec = MessageCodec<BlockRequest, BlockResponse>;
pub(crate) type JobCodec = MessageCodec<JobRequest, JobResponse>;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) lan_kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    pub(crate) dcutr: dcutr::Behaviour,
    pub(crate) autonat: autonat::v2::client::Behaviour,
    pub(crate) autonat_server: Toggle<autonat::v2::server::Behaviour>,
    pub(crate) upnp: Toggle<upnp::tokio::Behaviour>,
    pub(crate) stream: libp2p_stream::Behaviour,
    pub(crate) blocks: request_response::Behaviour<BlockCodec>,
    pub(crate) jobs: request_response::Behaviour<JobCodec>,
}

impl Behaviour {
    /// Puts an address the node was given (a bootstrap peer, `swarm
    /// connect`) into the DHT it belongs to: a private or loopback one into
    /// the LAN DHT, any other into the phase DHT, which keeps private
    /// addresses out (a peer that serves the phase DHT enters it when it
    /// connects). Without a LAN DHT, everything goes to the phase DHT.
    pub(crate) fn add_known_address(&mut self, peer: &libp2p::PeerId, addr: &libp2p::Multiaddr) {
        match self.lan_kad.as_mut() {
            Some(lan) if super::nat::is_lan(addr) => {
                lan.add_address(peer, addr.clone());
            }
            _ => {
                self.kad.add_address(peer, addr.clone());
            }
        }
    }

    pub(crate) fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        config: &NetworkConfig,
    ) -> std::io::Result<Self> {
        let peer_id = key.public().to_peer_id();
        let limits = ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(config.max_connections_per_peer))
            .with_max_pending_incoming(Some(config.max_connections / 2));
        let mut kad = kademlia(peer_id, KAD_PROTOCOL, config);
        // Never libp2p's automatic mode: it turns a server on any confirmed
        // external address, a relayed one included. The event loop sets the
        // mode from what it knows of reachability.
        kad.set_mode(Some(match config.dht_mode {
            DhtMode::Server => kad::Mode::Server,
            DhtMode::Auto | DhtMode::Client => kad::Mode::Client,
        }));
        // The LAN DHT: always a server, and its routing table holds only
        // the peers the event loop puts there (reached over a private or
        // loopback address, with those addresses only).
        let lan_kad = config.lan_dht.then(|| {
            let mut lan = kademlia(peer_id, LAN_KAD_PROTOCOL, config);
            lan.set_mode(Some(kad::Mode::Server));
            lan
        });
        let identify = identify::Behaviour::new(
            identify::Config::new("/ipfs/id/1.0.0".into(), key.public())
                .with_agent_version(format!("phase-node/{}", env!("CARGO_PKG_VERSION"))),
        );
        let mdns = if config.mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config::default(),
                peer_id,
            )?)
        } else {
            None
        };
        let blocks = request_response::Behaviour::new(
            [(
                StreamProtocol::new(BLOCK_PROTOCOL),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(MAX_BLOCK_STREAMS),
        );
        let jobs = request_response::Behaviour::new(
            [(
                StreamProtocol::new(JOB_PROTOCOL),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(MAX_JOB_STREAMS),
        );
        let relay_server = config.serves_relay().then(|| {
            let r = &config.relay_server;
            relay::Behaviour::new(
                peer_id,
                relay::Config {
                    max_reservations: r.max_reservations,
                    max_reservations_per_peer: r.max_reservations_per_peer,
                    reservation_duration: r.reservation_duration,
                    max_circuits: r.max_circuits,
                    max_circuits_per_peer: r.max_circuits_per_peer,
                    max_circuit_duration: r.max_circuit_duration,
                    max_circuit_bytes: r.max_circuit_bytes.0,
                    ..relay::Config::default()
                },
            )
        });
        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            kad,
            lan_kad: lan_kad.into(),
            identify,
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(30))),
            mdns: mdns.into(),
            relay_client,
            relay_server: relay_server.into(),
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: autonat::v2::client::Behaviour::default(),
            autonat_server: config
                .known_public()
                .then(autonat::v2::server::Behaviour::default)
                .into(),
            upnp: config.upnp.then(upnp::tokio::Behaviour::default).into(),
            stream: libp2p_stream::Behaviour::new(),
            blocks,
            jobs,
        })
    }
}

/// A Kademlia behaviour on `protocol` with the node's DHT settings. The
/// routing table is filled by hand ([`kad::BucketInserts::Manual`]) only
/// for the LAN DHT, whose peers the event loop filters by address.
fn kademlia(
    peer_id: libp2p::PeerId,
    protocol: &'static str,
    config: &NetworkConfig,
) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut kad_config = kad::Config::new(StreamProtocol::new(protocol));
    kad_config
        .set_query_timeout(config.request_timeout)
        .set_periodic_bootstrap_interval(Some(config.bootstrap_interval))
        .set_provider_record_ttl(Some(config.provider_ttl))
        .set_provider_publication_interval(Some(config.provider_republish))
        .set_max_packet_size(MAX_KAD_MESSAGE);
    if protocol == LAN_KAD_PROTOCOL {
        kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
    }
    let store = kad::store::MemoryStore::with_config(
        peer_id,
        kad::store::MemoryStoreConfig {
            max_providers_per_key: MAX_PROVIDERS_PER_KEY,
            ..kad::store::MemoryStoreConfig::default()
        },
    );
    kad::Behaviour::with_config(peer_id, store, kad_config)
}
