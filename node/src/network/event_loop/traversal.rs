//! NAT traversal on the swarm actor: reachability, relay reservations,
//! hole punching and connection reversal, bootstrap redials (the state is
//! [`Nat`]'s; this acts on it).

use std::time::Instant;

use libp2p::kad::store::RecordStore;
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, autonat, dcutr, identify, kad, relay, upnp};
use tracing::{debug, info};

use super::super::behaviour::{KAD_PROTOCOL, LAN_KAD_PROTOCOL};
use super::super::nat;
use super::{EventLoop, REDIAL};

impl EventLoop {
    /// Looks after reservations, bootstrap peers and waiting requests.
    pub(super) fn on_tick(&mut self, now: Instant) {
        if self.nat.tick(now) {
            info!("no address confirmed reachable: private");
            self.nat_changed();
        }
        self.reserve(now);
        if now.duration_since(self.last_redial) >= REDIAL {
            self.last_redial = now;
            for addr in self.bootstrap.clone() {
                if let Some(peer) = nat::peer_of(&addr)
                    && !self.swarm.is_connected(&peer)
                {
                    let opts = DialOpts::peer_id(peer)
                        .addresses(vec![addr])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
        }
        self.expire_waiting(now);
        self.dht_tick(now);
    }

    /// Reserves a slot on the relays this node wants and has none on.
    pub(super) fn reserve(&mut self, now: Instant) {
        for (relay, addr) in self.nat.relays_to_reserve(now) {
            match self.swarm.listen_on(addr.clone()) {
                Ok(listener) => {
                    info!(%addr, "reserving a slot on a relay");
                    self.nat.reserving(listener, relay);
                }
                Err(e) => {
                    debug!(%addr, error = %e, "cannot reserve on relay");
                    self.nat.reserve_failed(relay, now);
                }
            }
        }
    }

    /// Applies what changed in reachability: the DHT mode and the metrics.
    pub(super) fn nat_changed(&mut self) {
        // A node confirmed public needs no relay.
        for listener in self.nat.reservations_not_needed() {
            info!("publicly reachable: relay reservation dropped");
            self.swarm.remove_listener(listener);
        }
        let mode = self.nat.kad_mode();
        if self.swarm.behaviour().kad.mode() != mode {
            info!(%mode, reachability = %self.nat.reachability(), "DHT mode");
            self.swarm.behaviour_mut().kad.set_mode(Some(mode));
        }
        let status = self.nat.status();
        let relayed = status.connections.iter().filter(|c| c.relayed).count();
        self.nat_metrics.set(crate::metrics::NatGauges {
            reachability: status.reachability.as_str(),
            relays: status.relays.len(),
            direct: status.connections.len() - relayed,
            relayed,
        });
    }

    /// Announces every key this node provides again (its provider records
    /// carry its external addresses, which changed).
    pub(super) fn provide_again(&mut self) {
        self.queries.routing_changed();
        let keys: Vec<kad::RecordKey> = self
            .swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .provided()
            .map(|r| r.key.clone())
            .take(1024)
            .collect();
        for key in keys {
            self.in_each_dht(|kad| kad.start_providing(key.clone()).ok());
        }
    }

    /// What identify told of a peer: DHT server or not, Bitswap, AutoNAT
    /// server, relay; and a direct dial to a relayed peer with a public
    /// address.
    pub(super) fn on_identified(
        &mut self,
        peer_id: PeerId,
        connection: ConnectionId,
        info: identify::Info,
    ) {
        // The LAN DHT: a peer that speaks it, reached directly over a
        // private or loopback address, with its addresses of that kind.
        if self.nat.is_lan_connection(connection)
            && info
                .protocols
                .iter()
                .any(|p| p.as_ref() == LAN_KAD_PROTOCOL)
        {
            self.add_lan_peer(&peer_id, &info.listen_addrs);
        }
        // Only DHT servers belong in the routing table: a
        // private node in client mode would not answer.
        if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) {
            for addr in &info.listen_addrs {
                if !nat::is_relayed(addr) {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                    // Also for peers the routing table has no room for
                    // (workers found as providers): requests to them
                    // dial these once the connection has closed.
                    self.swarm.add_peer_address(peer_id, addr.clone());
                }
            }
        }
        self.nat.identified(
            peer_id,
            info.protocols.iter().map(ToString::to_string).collect(),
        );
        let speaks = |name: &str| info.protocols.iter().any(|p| p.as_ref() == name);
        if speaks(phase_protocol::block::BLOCK_PROTOCOL) {
            self.bitswap_peers.remove(&peer_id);
        } else if crate::network::bitswap::PROTOCOLS
            .iter()
            .any(|p| speaks(p.as_ref()))
        {
            self.bitswap_peers.insert(peer_id);
        }
        if info
            .protocols
            .iter()
            .any(|p| p.as_ref() == nat::AUTONAT_SERVER_PROTOCOL)
        {
            self.nat.autonat_server_seen(Instant::now());
        }
        if info.protocols.contains(&relay::HOP_PROTOCOL_NAME) {
            self.nat.relay_found(peer_id);
            self.reserve(Instant::now());
        }
        // Connection reversal: a peer reached only through a
        // relay that has a public address is dialled there
        // directly. Hole punching would have both sides act as
        // listener on the one connection a public peer accepts.
        if self.nat.only_relayed(peer_id) {
            let global: Vec<Multiaddr> = info
                .listen_addrs
                .into_iter()
                .filter(nat::is_global)
                .collect();
            if !global.is_empty() {
                debug!(peer = %peer_id, ?global, "dialling a relayed peer directly");
                let opts = DialOpts::peer_id(peer_id)
                    .addresses(global)
                    .condition(PeerCondition::Always)
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
    }

    pub(super) fn on_autonat(&mut self, event: autonat::v2::client::Event) {
        let autonat::v2::client::Event {
            tested_addr,
            server,
            result,
            ..
        } = event;
        debug!(%tested_addr, %server, ok = result.is_ok(), "AutoNAT v2 probe");
        self.nat.probed(result.is_ok());
        self.nat_changed();
    }

    pub(super) fn on_relay_client(&mut self, event: relay::client::Event) {
        if let relay::client::Event::ReservationReqAccepted {
            relay_peer_id,
            renewal,
            ..
        } = event
        {
            if !renewal {
                info!(relay = %relay_peer_id, "relay reservation accepted");
                // Provider records carry the circuit address, and a
                // relay that restarted has forgotten them.
                self.provide_again();
            }
            self.nat.reservation_accepted(relay_peer_id);
            self.nat_changed();
        }
    }

    pub(super) fn on_dcutr(&mut self, event: dcutr::Event) {
        let dcutr::Event {
            remote_peer_id,
            result,
        } = event;

        self.nat_metrics.hole_punch_attempts.inc();
        match result {
            Ok(_) => {
                self.nat_metrics.hole_punch_successes.inc();
                info!(peer = %remote_peer_id, "hole punched: direct connection");
            }
            Err(e) => info!(peer = %remote_peer_id, error = %e, "hole punch failed"),
        }
    }
}

pub(super) fn on_upnp(event: upnp::Event) {
    match event {
        upnp::Event::NewExternalAddr { external_addr, .. } => {
            info!(addr = %external_addr, "UPnP port mapped");
        }
        upnp::Event::GatewayNotFound => info!("UPnP: no gateway found"),
        upnp::Event::NonRoutableGateway => info!("UPnP: the gateway is not routable"),
        upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
            debug!(addr = %external_addr, "UPnP mapping expired");
        }
    }
}
