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
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad, mdns};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

use phase_protocol::block::{BlockResponse, MAX_WANT};
use phase_protocol::job::{JobRequest, JobResponse, Rejection};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::queries::{Queries, Start};
use super::{Command, NetworkError, NetworkEvent, Reply};
use crate::metrics::BlockMetrics;

/// The swarm actor; see the module docs.
pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    listen_addrs: watch::Sender<Vec<Multiaddr>>,
    routing_peers: watch::Sender<usize>,
    cancel: CancellationToken,
    bootstrap_interval: Duration,
    queries: Queries,
    pending_blocks: HashMap<OutboundRequestId, Reply<BlockResponse>>,
    pending_jobs: HashMap<OutboundRequestId, Reply<JobResponse>>,
    p2p: libp2p::metrics::Metrics,
    metrics: BlockMetrics,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
        (listen_addrs, routing_peers): (watch::Sender<Vec<Multiaddr>>, watch::Sender<usize>),
        cancel: CancellationToken,
        bootstrap_interval: Duration,
        (p2p, metrics): (libp2p::metrics::Metrics, BlockMetrics),
    ) -> Self {
        Self {
            swarm,
            commands,
            events,
            listen_addrs,
            routing_peers,
            cancel,
            bootstrap_interval,
            queries: Queries::default(),
            pending_blocks: HashMap::new(),
            pending_jobs: HashMap::new(),
            p2p,
            metrics,
        }
    }

    /// Runs until cancelled or every client is dropped.
    pub(crate) async fn run(mut self) {
        let mut bootstrap = tokio::time::interval(self.bootstrap_interval);
        bootstrap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = bootstrap.tick() => self.bootstrap(),
            }
        }
        debug!("network stopped");
    }

    fn bootstrap(&mut self) {
        // No known peers yet is normal for the first node of a network.
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial { addr, reply } => {
                if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
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
                let Start::Query(reply) = self.queries.provide(&key, reply, Instant::now()) else {
                    return;
                };
                match self.swarm.behaviour_mut().kad.start_providing(key.clone()) {
                    Ok(id) => self.queries.started_provide(id, key, reply),
                    Err(e) => {
                        let _ = reply.send(Err(NetworkError::Provide(e)));
                    }
                }
            }
            Command::FindProviders { key, reply } => {
                let Start::Query(reply) = self.queries.lookup(&key, reply, Instant::now()) else {
                    return;
                };
                let id = self.swarm.behaviour_mut().kad.get_providers(key.clone());
                self.queries.started_lookup(id, key, reply);
            }
            Command::RequestBlocks {
                peer,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .blocks
                    .send_request(&peer, request);
                self.pending_blocks.insert(id, reply);
            }
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
            } => {
                let id = self.swarm.behaviour_mut().jobs.send_request(&peer, request);
                self.pending_jobs.insert(id, reply);
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
                endpoint,
                num_established,
                ..
            } => {
                if num_established.get() == 1 {
                    self.metrics.peers.inc();
                }
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
            }
            SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            } => {
                self.metrics.peers.dec();
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => {
                self.p2p.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => self.p2p.record(&event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => {
                self.p2p.record(&event);
                self.on_kad_event(event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Blocks(event)) => self.on_block_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Jobs(event)) => self.on_job_event(event),
            other => trace!(?other, "swarm event"),
        }
    }

    fn routing_table(&mut self) -> Vec<PeerId> {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
            .collect()
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        let (id, result, step) = match event {
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => (id, result, step),
            kad::Event::RoutingUpdated { is_new_peer, .. } => {
                if is_new_peer {
                    self.queries.routing_changed();
                }
                let n = self.routing_table().len();
                self.routing_peers.send_replace(n);
                return;
            }
            other => {
                trace!(?other, "kad event");
                return;
            }
        };
        match result {
            kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                providers,
                ..
            })) => {
                self.queries.lookup_found(id, providers);
            }
            kad::QueryResult::GetProviders(Ok(
                kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. },
            )) => {}
            kad::QueryResult::GetProviders(Err(e)) => {
                debug!(%e, "provider query ended");
            }
            kad::QueryResult::StartProviding(result) => {
                // A timeout (no peers to store the record on, or none
                // answering) is not an error: the local record still answers
                // queries that reach this node.
                if let Err(kad::AddProviderError::Timeout { key }) = result {
                    debug!(?key, "provider record stored on no peer");
                }
                self.queries.provide_ended(id, Instant::now());
            }
            kad::QueryResult::Bootstrap(_) => {}
            other => trace!(?other, "kad query result"),
        }
        if step.last {
            self.queries.lookup_ended(id, Instant::now());
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
