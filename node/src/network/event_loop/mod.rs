//! The task that owns the swarm. Handlers are plain functions; the loop
//! awaits only inside `select!`, and never awaits a send: events go out with
//! `try_send`, and when the node is too busy to take one the inbound request
//! is dropped (the peer sees a failed request) rather than queued.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::metrics::Recorder;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

use phase_protocol::block::{BlockResponse, MAX_WANT};
use phase_protocol::job::{JobRequest, JobResponse, Rejection};

mod dht;
mod outbound;
mod traversal;

use self::dht::DhtBook;
pub use self::dht::DhtState;
use self::outbound::Outbound;
use self::traversal::on_upnp;
use super::behaviour::{Behaviour, BehaviourEvent};
use super::nat::{Connection, Nat};
use super::queries::{Dht, Queries, Start};
use super::{Command, NetworkError, NetworkEvent, NetworkMetrics, Reply, Unreachable};
use crate::config::NetworkConfig;
use crate::metrics::{BlockMetrics, NatMetrics};

/// How often reservations, bootstrap connections and waiting requests are
/// looked after.
const TICK: Duration = Duration::from_secs(1);
/// How often a bootstrap peer that is not connected is dialled again.
const REDIAL: Duration = Duration::from_secs(10);
/// Addresses taken from one mDNS answer at most (a hostile LAN host could
/// announce thousands).
const MAX_MDNS_FOUND: usize = 64;

/// The swarm actor; see the module docs.
pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    listen_addrs: watch::Sender<Vec<Multiaddr>>,
    dht_state: watch::Sender<DhtState>,
    cancel: CancellationToken,
    queries: Queries,
    dht: DhtBook,
    pending_blocks: HashMap<OutboundRequestId, Reply<BlockResponse>>,
    pending_jobs: HashMap<OutboundRequestId, Reply<JobResponse>>,
    nat: Nat,
    /// Connected peers that speak Bitswap and not the block protocol.
    bitswap_peers: std::collections::HashSet<PeerId>,
    waiting: HashMap<PeerId, Vec<(Outbound, Instant)>>,
    direct_wait: Duration,
    bootstrap: Vec<Multiaddr>,
    last_redial: Instant,
    p2p: libp2p::metrics::Metrics,
    metrics: BlockMetrics,
    nat_metrics: NatMetrics,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

/// The loop's ends of the channels its [`super::NetworkClient`] and the
/// node hold the other ends of.
pub(super) struct Channels {
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) events: mpsc::Sender<NetworkEvent>,
    pub(super) listen_addrs: watch::Sender<Vec<Multiaddr>>,
    pub(super) dht_state: watch::Sender<DhtState>,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        channels: Channels,
        cancel: CancellationToken,
        config: &NetworkConfig,
        metrics: NetworkMetrics,
    ) -> Self {
        let Channels {
            commands,
            events,
            listen_addrs,
            dht_state,
        } = channels;
        let NetworkMetrics {
            p2p,
            blocks: metrics,
            nat: nat_metrics,
        } = metrics;
        let mut event_loop = Self {
            swarm,
            commands,
            events,
            listen_addrs,
            dht_state,
            cancel,
            queries: Queries::default(),
            dht: DhtBook::default(),
            pending_blocks: HashMap::new(),
            pending_jobs: HashMap::new(),
            nat: Nat::new(config),
            bitswap_peers: std::collections::HashSet::new(),
            waiting: HashMap::new(),
            direct_wait: config.direct_wait,
            bootstrap: config.bootstrap.clone(),
            last_redial: Instant::now(),
            p2p,
            metrics,
            nat_metrics,
        };
        // The operator's addresses are confirmed by the swarm without an
        // event: count them here.
        for addr in &config.external {
            event_loop.nat.external_confirmed(addr.clone());
        }
        event_loop.nat_changed();
        event_loop
    }

    /// Runs until cancelled or every client is dropped.
    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = tick.tick() => self.on_tick(Instant::now()),
            }
        }
        for (_, waiting) in self.waiting.drain() {
            for (out, _) in waiting {
                out.fail(NetworkError::Shutdown);
            }
        }
        debug!("network stopped");
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial { addr, reply } => {
                if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
                    self.swarm.behaviour_mut().add_known_address(&peer, &addr);
                }
                let result = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| NetworkError::Dial {
                        addr,
                        source: Box::new(e),
                    });
                let _ = reply.send(result);
            }
            Command::Provide { key, reply } => {
                let now = Instant::now();
                let Start::Query(reply) = self.queries.provide(&key, reply, now) else {
                    return;
                };
                let mut refused = None;
                let ids = self.in_each_dht(|kad| {
                    kad.start_providing(key.clone())
                        .map_err(|e| refused = Some(e))
                        .ok()
                });
                match refused {
                    Some(e) if ids.is_empty() => {
                        let _ = reply.send(Err(NetworkError::Provide(e)));
                    }
                    _ => self.queries.started_provide(&ids, key, reply, now),
                }
            }
            Command::FindProviders { key, reply } => {
                let Start::Query(reply) = self.queries.lookup(&key, reply, Instant::now()) else {
                    return;
                };
                let ids = self.in_each_dht(|kad| Some(kad.get_providers(key.clone())));
                self.queries.started_lookup(&ids, key, reply);
            }
            Command::RequestBlocks {
                peer,
                request,
                reply,
            } => self.send_outbound(peer, Outbound::Blocks(request, reply)),
            Command::RespondBlocks { channel, response } => {
                self.metrics
                    .served_blocks
                    .inc_by(response.blocks.len() as u64);
                let bytes: usize = response.blocks.iter().map(|b| b.data.len()).sum();
                self.metrics.served_bytes.inc_by(bytes as u64);
                if self
                    .swarm
                    .behaviour_mut()
                    .blocks
                    .send_response(channel, response)
                    .is_err()
                {
                    debug!("block response not sent: the requester went away");
                }
            }
            Command::RequestJob {
                peer,
                request,
                reply,
            } => self.send_outbound(peer, Outbound::Job(request, reply)),
            Command::BitswapPeers { reply } => {
                let _ = reply.send(Ok(self.bitswap_peers.iter().copied().collect()));
            }
            Command::PeersSpeaking { protocol, reply } => {
                let _ = reply.send(Ok(self.nat.peers_speaking(protocol)));
            }
            Command::NatStatus { reply } => {
                let _ = reply.send(Ok(self.nat.status()));
            }
            Command::RespondJob { channel, response } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .jobs
                    .send_response(channel, response)
                    .is_err()
                {
                    debug!("job response not sent: the requester went away");
                }
            }
            Command::RoutingPeers { reply } => {
                let _ = reply.send(Ok(self.routing_table()));
            }
            Command::FindPeer { peer, reply } => self.find_peer(peer, Some(reply)),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.p2p.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.listen_addrs.send_modify(|addrs| addrs.push(address));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs
                    .send_modify(|addrs| addrs.retain(|a| *a != address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if num_established.get() == 1 {
                    self.metrics.peers.inc();
                }
                let relayed = endpoint.is_relayed();
                let addr = endpoint.get_remote_address().clone();
                if relayed {
                    info!(peer = %peer_id, %addr, "connected through a relay");
                } else {
                    debug!(peer = %peer_id, %addr, "connected");
                }
                self.nat.connected(
                    connection_id,
                    Connection {
                        peer: peer_id,
                        addr,
                        relayed,
                        outbound: endpoint.is_dialer(),
                        protocols: Vec::new(),
                    },
                );
                if !relayed {
                    let relayed_before = self.nat.relayed_to(peer_id);
                    if !relayed_before.is_empty() {
                        info!(peer = %peer_id, "direct connection replaces a relayed one");
                    }
                    // Requests would keep crossing the relay otherwise.
                    for id in relayed_before {
                        self.swarm.close_connection(id);
                    }
                }
                self.flush(peer_id);
                self.dht_connection_changed(peer_id);
                self.nat_changed();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.metrics.peers.dec();
                    self.bitswap_peers.remove(&peer_id);
                }
                let gone = self.nat.disconnected(connection_id);
                self.flush(peer_id);
                // A relayed connection that closes leaves the requests
                // waiting (to their deadline): the peer closes it once its
                // own side of the hole punch gave a direct connection, which
                // may reach this node a moment later.
                if num_established == 0
                    && self.waiting.contains_key(&peer_id)
                    && gone.is_some_and(|c| !c.relayed)
                {
                    self.fail_waiting(peer_id, || Unreachable::Closed);
                }
                self.dht_connection_changed(peer_id);
                self.nat_changed();
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "dial failed");
                if let Some(peer) = peer_id
                    && self.waiting.contains_key(&peer)
                {
                    let error = std::sync::Arc::new(error);
                    self.fail_waiting(peer, || Unreachable::Dial(error.clone()));
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "external address confirmed");
                self.nat.external_confirmed(address);
                self.nat_changed();
                self.provide_again();
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                self.nat.external_expired(&address);
                self.nat_changed();
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                if self.nat.listener_closed(listener_id, Instant::now()) {
                    info!("relay reservation ended");
                    self.nat_changed();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => {
                self.p2p.record(&event);
                if let identify::Event::Received {
                    peer_id,
                    connection_id,
                    info,
                } = event
                {
                    self.on_identified(peer_id, connection_id, info);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => self.on_autonat(event),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => {
                self.on_relay_client(event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayServer(event)) => {
                debug!(?event, "relay");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => self.on_dcutr(event),
            SwarmEvent::Behaviour(BehaviourEvent::Upnp(event)) => on_upnp(event),
            SwarmEvent::Behaviour(BehaviourEvent::AutonatServer(event)) => {
                trace!(?event, "AutoNAT v2 server");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => self.p2p.record(&event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                self.on_mdns(found);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => {
                self.p2p.record(&event);
                self.on_kad_event(Dht::Wan, event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::LanKad(event)) => {
                self.on_kad_event(Dht::Lan, event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Blocks(event)) => self.on_block_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Jobs(event)) => self.on_job_event(event),
            other => trace!(?other, "swarm event"),
        }
    }

    /// Peers mDNS found on the local network: into the LAN DHT, and
    /// dialled (a few at a time) so that their workers and content are
    /// found among the connected peers at once, as Kubo does.
    fn on_mdns(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        let mut dial: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addr) in found.into_iter().take(MAX_MDNS_FOUND) {
            self.add_lan_peer(&peer, std::slice::from_ref(&addr));
            if !self.swarm.is_connected(&peer) {
                dial.entry(peer).or_default().push(addr);
            }
        }
        for (peer, addrs) in dial {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    fn on_block_event(
        &mut self,
        event: request_response::Event<phase_protocol::block::BlockRequest, BlockResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if request.want.len() > MAX_WANT {
                        warn!(%peer, wanted = request.want.len(), "block request over the limit; refused");
                        return; // dropping the channel fails the peer's request
                    }
                    let event = NetworkEvent::BlockRequest {
                        peer,
                        request,
                        channel,
                    };
                    if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
                        warn!(%peer, "node busy; block request refused");
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.metrics
                        .fetched_blocks
                        .inc_by(response.blocks.len() as u64);
                    let bytes: usize = response.blocks.iter().map(|b| b.data.len()).sum();
                    self.metrics.fetched_bytes.inc_by(bytes as u64);
                    resolve(&mut self.pending_blocks, request_id, Ok(response));
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                let failed = NetworkError::Request {
                    peer,
                    source: error,
                };
                resolve(&mut self.pending_blocks, request_id, Err(failed));
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                warn!(%peer, %error, "inbound block request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_job_event(&mut self, event: request_response::Event<JobRequest, JobResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let event = NetworkEvent::JobRequest {
                        peer,
                        request,
                        channel,
                    };
                    match self.events.try_send(event) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(NetworkEvent::JobRequest {
                            request: JobRequest::Submit(_),
                            channel,
                            ..
                        })) => {
                            debug!(%peer, "node busy; job refused");
                            let busy = JobResponse::Rejected(Rejection::Busy);
                            let _ = self.swarm.behaviour_mut().jobs.send_response(channel, busy);
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            warn!(%peer, "node busy; job request dropped");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    resolve(&mut self.pending_jobs, request_id, Ok(response));
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                let failed = NetworkError::Request {
                    peer,
                    source: error,
                };
                resolve(&mut self.pending_jobs, request_id, Err(failed));
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                // Streams over the limit of a flooding peer end here: one
                // line per stream would flood the log too.
                debug!(%peer, %error, "inbound job request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// Answers whoever waits on an outbound request (if anyone still does).
fn resolve<T>(
    pending: &mut HashMap<OutboundRequestId, Reply<T>>,
    id: OutboundRequestId,
    result: Result<T, NetworkError>,
) {
    if let Some(reply) = pending.remove(&id) {
        let _ = reply.send(result);
    }
}
