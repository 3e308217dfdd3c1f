//! The network: one task owns the libp2p `Swarm`; everything else talks to
//! it through a [`NetworkClient`] (commands over a bounded channel, each with
//! a oneshot reply) and reads [`NetworkEvent`]s from a bounded channel.
//!
//! - Transports: QUIC, and TCP + Noise + Yamux as fallback.
//! - Behaviours: connection limits, Kademlia on `/phase/kad/1.0.0` (a
//!   server only when publicly reachable, see [`nat`]), identify (the
//!   listen addresses of DHT servers fill the routing table), ping, mDNS
//!   (optional), NAT traversal (relay v2 client and server, DCUtR, AutoNAT
//!   v2, UPnP), `/phase/block/1.0.0` and `/phase/job/1.0.0`.
//! - Job data and blocks go only over direct connections: a request to a
//!   peer reached through a relay waits (bounded) for hole punching.
//! - The network never touches the store or the executor: an inbound block
//!   or job request becomes a [`NetworkEvent`] that the node answers with
//!   [`NetworkClient::respond_blocks`] or [`NetworkClient::respond_job`].
//!   When the node is too busy to take an event, a job submission is
//!   answered `busy` by the swarm task itself.

mod behaviour;
pub mod bitswap;
mod codec;
mod event_loop;
mod nat;
mod queries;

use std::collections::HashSet;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId, kad, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use phase_protocol::Cid;
use phase_protocol::block::{BlockRequest, BlockResponse};
use phase_protocol::job::{Capability, JobRequest, JobResponse};

use self::behaviour::Behaviour;
pub use self::behaviour::{KAD_PROTOCOL, LAN_KAD_PROTOCOL};
use self::bitswap::BitswapClient;
pub use self::event_loop::DhtState;
pub(crate) use self::event_loop::EventLoop;
pub use self::nat::{Connection, NatStatus, Reachability};
use crate::config::NetworkConfig;

/// Commands queued to the swarm task at most.
const COMMAND_QUEUE: usize = 256;
/// Events queued to the node at most; beyond this, inbound requests are
/// refused rather than queued without bound.
const EVENT_QUEUE: usize = 256;
/// Lookups [`NetworkClient::find_peer`] makes at most.
pub const FIND_PEER_LOOKUPS: usize = 3;
/// How long an idle connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The swarm task has stopped.
    #[error("the network has shut down")]
    Shutdown,
    /// Setting up the transports or behaviours failed.
    #[error("cannot set up the network")]
    Setup(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An address could not be listened on.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        #[source]
        source: libp2p::TransportError<std::io::Error>,
    },
    /// A peer could not be dialled.
    #[error("cannot dial {addr}")]
    Dial {
        /// The address.
        addr: Multiaddr,
        /// Why.
        #[source]
        source: Box<libp2p::swarm::DialError>,
    },
    /// A request to a peer failed (timeout, refused, connection lost).
    #[error("request to {peer} failed")]
    Request {
        /// The peer.
        peer: PeerId,
        /// What happened.
        #[source]
        source: libp2p::request_response::OutboundFailure,
    },
    /// Announcing a provider record failed.
    #[error("cannot announce provider record")]
    Provide(#[source] kad::store::Error),
    /// A peer was reached only through a relay, and hole punching gave no
    /// direct connection in time: job data and blocks never cross a relay.
    #[error("{peer} is reachable only through a relay (no direct connection within {}s)", waited.as_secs())]
    RelayOnly {
        /// The peer.
        peer: PeerId,
        /// How long the request waited.
        waited: Duration,
    },
    /// A Bitswap request failed.
    #[error(transparent)]
    Bitswap(bitswap::BitswapError),
    /// A peer could not be connected to.
    #[error("cannot reach {peer}")]
    Unreachable {
        /// The peer.
        peer: PeerId,
        /// Why.
        #[source]
        cause: Unreachable,
    },
}

/// Why a peer could not be connected to.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// Dialling it failed (one error may fail several requests).
    #[error("dial failed")]
    Dial(#[source] std::sync::Arc<libp2p::swarm::DialError>),
    /// Its connection closed while requests waited for it.
    #[error("the connection closed")]
    Closed,
    /// Not connected, and no address of it found in the DHT in time.
    #[error("no connection within {}s (not connected, and no address found in the DHT)", waited.as_secs())]
    NoAddress {
        /// How long the request waited.
        waited: Duration,
    },
    /// Too many lookups of peers are under way to start another.
    #[error("too many peer lookups in flight")]
    TooManyLookups,
}

/// Something the network needs the node to handle.
#[derive(Debug)]
pub enum NetworkEvent {
    /// A peer asks for blocks; answer with [`NetworkClient::respond_blocks`].
    BlockRequest {
        /// Who asks.
        peer: PeerId,
        /// What for.
        request: BlockRequest,
        /// Where the answer goes.
        channel: ResponseChannel<BlockResponse>,
    },
    /// A peer sends a job request (or delivers a receipt); answer with
    /// [`NetworkClient::respond_job`].
    JobRequest {
        /// Who asks.
        peer: PeerId,
        /// The request.
        request: JobRequest,
        /// Where the answer goes.
        channel: ResponseChannel<JobResponse>,
    },
}

type Reply<T> = oneshot::Sender<Result<T, NetworkError>>;

#[derive(Debug)]
pub(crate) enum Command {
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    Provide {
        key: kad::RecordKey,
        reply: Reply<()>,
    },
    FindProviders {
        key: kad::RecordKey,
        reply: Reply<HashSet<PeerId>>,
    },
    RequestBlocks {
        peer: PeerId,
        request: BlockRequest,
        reply: Reply<BlockResponse>,
    },
    RespondBlocks {
        channel: ResponseChannel<BlockResponse>,
        response: BlockResponse,
    },
    RequestJob {
        peer: PeerId,
        request: JobRequest,
        reply: Reply<JobResponse>,
    },
    RespondJob {
        channel: ResponseChannel<JobResponse>,
        response: JobResponse,
    },
    RoutingPeers {
        reply: Reply<Vec<PeerId>>,
    },
    FindPeer {
        peer: PeerId,
        reply: Reply<Option<Vec<Multiaddr>>>,
    },
    NatStatus {
        reply: Reply<NatStatus>,
    },
    BitswapPeers {
        reply: Reply<Vec<PeerId>>,
    },
    PeersSpeaking {
        protocol: &'static str,
        reply: Reply<Vec<PeerId>>,
    },
}

/// Handle to the swarm task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NetworkClient {
    commands: mpsc::Sender<Command>,
    bitswap: BitswapClient,
    listen_addrs: watch::Receiver<Vec<Multiaddr>>,
    dht: watch::Receiver<DhtState>,
    peer_id: PeerId,
}

impl NetworkClient {
    async fn call<T>(&self, cmd: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(cmd(reply))
            .await
            .map_err(|_| NetworkError::Shutdown)?;
        rx.await.map_err(|_| NetworkError::Shutdown)?
    }

    /// This node's PeerId.
    #[must_use]
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the node listens on, each ending in `/p2p/PEERID`; waits
    /// until at least one is bound.
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`] if the swarm stops first.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetworkError> {
        let mut rx = self.listen_addrs.clone();
        let addrs = rx
            .wait_for(|a| !a.is_empty())
            .await
            .map_err(|_| NetworkError::Shutdown)?;
        let me = libp2p::multiaddr::Protocol::P2p(self.peer_id);
        Ok(addrs.iter().map(|a| a.clone().with(me.clone())).collect())
    }

    /// Like [`NetworkClient::listen_addrs`], but waits for at least `n`
    /// addresses (one per configured listener).
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`] if the swarm stops first.
    pub async fn listen_addrs_at_least(&self, n: usize) -> Result<Vec<Multiaddr>, NetworkError> {
        let mut rx = self.listen_addrs.clone();
        rx.wait_for(|a| a.len() >= n.max(1))
            .await
            .map_err(|_| NetworkError::Shutdown)?;
        self.listen_addrs().await
    }

    /// Dials a peer (the address should end in `/p2p/PEERID`).
    ///
    /// # Errors
    /// When the dial cannot start.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the reply; the dial still runs.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetworkError> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// Announces that this node provides `cid` (a Kademlia provider record).
    ///
    /// # Errors
    /// When the record cannot be stored or announced.
    pub async fn provide(&self, cid: Cid) -> Result<(), NetworkError> {
        let key = provider_key(&cid);
        self.call(|reply| Command::Provide { key, reply }).await
    }

    /// Announces that this node has `capability` (a provider record on the
    /// capability's DHT key).
    ///
    /// # Errors
    /// When the record cannot be stored or announced.
    pub async fn provide_capability(&self, capability: &Capability) -> Result<(), NetworkError> {
        let key = kad::RecordKey::new(&capability.dht_key());
        self.call(|reply| Command::Provide { key, reply }).await
    }

    /// Peers that advertise `capability`, found through the DHT.
    ///
    /// # Errors
    /// When the query fails.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the reply; the query still runs.
    pub async fn find_capability(
        &self,
        capability: &Capability,
    ) -> Result<HashSet<PeerId>, NetworkError> {
        let key = kad::RecordKey::new(&capability.dht_key());
        self.call(|reply| Command::FindProviders { key, reply })
            .await
    }

    /// Peers that provide `cid`, found through the DHT.
    ///
    /// # Errors
    /// When the query fails.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the reply; the query still runs.
    pub async fn find_providers(&self, cid: Cid) -> Result<HashSet<PeerId>, NetworkError> {
        let key = provider_key(&cid);
        self.call(|reply| Command::FindProviders { key, reply })
            .await
    }

    /// Sends a job request to `peer` and waits for its answer.
    ///
    /// # Errors
    /// When the request fails or times out.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the reply; the request still runs.
    pub async fn request_job(
        &self,
        peer: PeerId,
        request: JobRequest,
    ) -> Result<JobResponse, NetworkError> {
        self.call(|reply| Command::RequestJob {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Answers an inbound job request.
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`].
    pub async fn respond_job(
        &self,
        channel: ResponseChannel<JobResponse>,
        response: JobResponse,
    ) -> Result<(), NetworkError> {
        self.commands
            .send(Command::RespondJob { channel, response })
            .await
            .map_err(|_| NetworkError::Shutdown)
    }

    /// Asks `peer` for blocks.
    ///
    /// # Errors
    /// When the request fails or times out.
    pub async fn request_blocks(
        &self,
        peer: PeerId,
        request: BlockRequest,
    ) -> Result<BlockResponse, NetworkError> {
        self.call(|reply| Command::RequestBlocks {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Answers an inbound block request.
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`].
    pub async fn respond_blocks(
        &self,
        channel: ResponseChannel<BlockResponse>,
        response: BlockResponse,
    ) -> Result<(), NetworkError> {
        self.commands
            .send(Command::RespondBlocks { channel, response })
            .await
            .map_err(|_| NetworkError::Shutdown)
    }

    /// Peers in the Kademlia routing table.
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`].
    pub async fn routing_peers(&self) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::RoutingPeers { reply }).await
    }

    /// Reachability, external addresses, relay reservations and every open
    /// connection as direct or relayed.
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`].
    pub async fn nat_status(&self) -> Result<NatStatus, NetworkError> {
        self.call(|reply| Command::NatStatus { reply }).await
    }

    /// Connected peers that speak Bitswap but not the block protocol (Kubo,
    /// Helia): fetches ask them over Bitswap.
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`].
    pub async fn bitswap_peers(&self) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::BitswapPeers { reply }).await
    }

    /// Connected peers that can run jobs or serve blocks: those whose
    /// identify lists the job protocol, asked beside the DHT's providers
    /// (a bootstrap or mDNS peer is found at once).
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`].
    pub async fn job_peers(&self) -> Result<Vec<PeerId>, NetworkError> {
        self.peers_speaking(phase_protocol::job::JOB_PROTOCOL).await
    }

    /// Connected peers that serve `/phase/block/1.0.0`.
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`].
    pub async fn block_peers(&self) -> Result<Vec<PeerId>, NetworkError> {
        self.peers_speaking(phase_protocol::block::BLOCK_PROTOCOL)
            .await
    }

    async fn peers_speaking(&self, protocol: &'static str) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::PeersSpeaking { protocol, reply })
            .await
    }

    /// The Bitswap client of this node.
    #[must_use]
    pub fn bitswap(&self) -> &BitswapClient {
        &self.bitswap
    }

    /// Waits until a routing table (of either DHT) holds at least `n` peers.
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`] if the swarm stops first.
    pub async fn wait_routing_peers(&self, n: usize) -> Result<(), NetworkError> {
        let mut rx = self.dht.clone();
        rx.wait_for(|dht| dht.peers() >= n)
            .await
            .map_err(|_| NetworkError::Shutdown)?;
        Ok(())
    }

    /// The node's place in the DHT now.
    #[must_use]
    pub fn dht_state(&self) -> DhtState {
        *self.dht.borrow()
    }

    /// Waits until the node is part of the DHT ([`DhtState::ready`]).
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`] if the swarm stops first.
    pub async fn wait_dht_ready(&self, min_peers: usize) -> Result<DhtState, NetworkError> {
        let mut rx = self.dht.clone();
        let state = rx
            .wait_for(|dht| dht.ready(min_peers))
            .await
            .map_err(|_| NetworkError::Shutdown)?;
        Ok(*state)
    }

    /// Finds `peer` through the DHT (a Kademlia lookup of its id, even
    /// when it is connected or in the routing table): its addresses, or
    /// `None` when [`FIND_PEER_LOOKUPS`] lookups ended without it. A lookup
    /// counts only peers that answered it, so one whose target was slow to
    /// answer (a loaded machine) is tried again.
    ///
    /// # Errors
    /// [`NetworkError::Shutdown`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the reply; the lookup still runs.
    pub async fn find_peer(&self, peer: PeerId) -> Result<Option<Vec<Multiaddr>>, NetworkError> {
        for _ in 0..FIND_PEER_LOOKUPS {
            let found = self.call(|reply| Command::FindPeer { peer, reply }).await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

/// The metrics the swarm task records into.
pub(crate) struct NetworkMetrics {
    /// libp2p's own (swarm, Kademlia, identify, ping, relay, DCUtR).
    pub(crate) p2p: libp2p::metrics::Metrics,
    /// Blocks and peers.
    pub(crate) blocks: crate::metrics::BlockMetrics,
    /// Reachability, relays and hole punches.
    pub(crate) nat: crate::metrics::NatMetrics,
}

/// A network as [`new`] builds it: the handle, the events for the node,
/// and the tasks the node spawns.
pub(crate) struct Network {
    pub(crate) client: NetworkClient,
    pub(crate) events: mpsc::Receiver<NetworkEvent>,
    pub(crate) event_loop: EventLoop,
    pub(crate) bitswap: BitswapParts,
}

/// What the Bitswap actor needs from the swarm, for the node to spawn it.
pub(crate) struct BitswapParts {
    pub(crate) control: libp2p_stream::Control,
    pub(crate) requests: mpsc::Receiver<bitswap::Request>,
}

/// Kademlia key of a CID: its multihash, as IPFS uses.
pub(crate) fn provider_key(cid: &Cid) -> kad::RecordKey {
    kad::RecordKey::new(&cid.hash().to_bytes())
}

/// Builds the swarm, starts listening and dials the bootstrap peers. The
/// returned [`EventLoop`] must be spawned.
///
/// # Errors
/// When a transport or a listen address cannot be set up.
pub(crate) fn new(
    key: Keypair,
    config: &NetworkConfig,
    cancel: CancellationToken,
    metrics: NetworkMetrics,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Network, NetworkError> {
    let setup = |e: Box<dyn std::error::Error + Send + Sync>| NetworkError::Setup(e);
    let peer_id = key.public().to_peer_id();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux_config,
        )
        .map_err(|e| setup(e.into()))?
        .with_quic_config(|c| c.mtu_upper_bound(QUIC_MTU_UPPER_BOUND))
        .with_relay_client(noise::Config::new, yamux_config)
        .map_err(|e| setup(e.into()))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, relay_client, config)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
        })
        .map_err(|e| setup(e.into()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|source| NetworkError::Listen {
                addr: addr.clone(),
                source,
            })?;
    }
    for addr in &config.external {
        swarm.add_external_address(addr.clone());
    }
    for addr in &config.bootstrap {
        bootstrap_peer(&mut swarm, addr);
    }
    let control = swarm.behaviour().stream.new_control();
    let (bitswap_tx, bitswap_rx) = mpsc::channel(bitswap::COMMAND_QUEUE);
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (listen_tx, listen_rx) = watch::channel(Vec::new());
    let (dht_tx, dht_rx) = watch::channel(DhtState {
        bootstrap_connected: config.bootstrap.is_empty(),
        ..DhtState::default()
    });
    let channels = event_loop::Channels {
        commands: commands_rx,
        events: events_tx,
        listen_addrs: listen_tx,
        dht_state: dht_tx,
    };
    let event_loop = EventLoop::new(swarm, channels, cancel, config, metrics);
    let client = NetworkClient {
        commands: commands_tx,
        bitswap: BitswapClient::new(bitswap_tx),
        listen_addrs: listen_rx,
        dht: dht_rx,
        peer_id,
    };
    let parts = BitswapParts {
        control,
        requests: bitswap_rx,
    };
    Ok(Network {
        client,
        events: events_rx,
        event_loop,
        bitswap: parts,
    })
}

/// Largest UDP payload QUIC's path MTU discovery probes for (quinn's
/// default is 1,452, Ethernet's): a path that carries more (loopback, a
/// LAN with jumbo frames) then moves the same bytes in fewer datagrams, and
/// one that does not costs only a few lost probes (quinn: "safe to use an
/// arbitrarily high upper bound"). Below IPv4's 65,507 maximum.
const QUIC_MTU_UPPER_BOUND: u16 = 65_000;

/// Yamux streams per connection at most (yamux's default).
const YAMUX_STREAMS: usize = 512;

/// Yamux that JS peers can talk to: no stream's receive window grows past
/// 1 MiB. JS yamux sends each frame as large as the whole send window and
/// Rust yamux drops a stream on a frame over 1 MiB; each stream is
/// guaranteed 256 KiB, and the connection's limit leaves 768 KiB of growth
/// (see vendor/README.md).
fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(YAMUX_STREAMS);
    config.set_max_connection_receive_window(Some(YAMUX_STREAMS * (256 << 10) + (768 << 10)));
    config
}

/// Adds a `/…/p2p/PEERID` address to the routing table and dials it.
fn bootstrap_peer(swarm: &mut libp2p::Swarm<Behaviour>, addr: &Multiaddr) {
    let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
        tracing::warn!(%addr, "bootstrap address has no /p2p/PEERID; ignored");
        return;
    };
    swarm.behaviour_mut().add_known_address(&peer, addr);
    if let Err(e) = swarm.dial(addr.clone()) {
        tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
    }
}
