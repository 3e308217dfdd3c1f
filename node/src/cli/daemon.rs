//! `phase-node start`, `id`, `config show` and `peers`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use libp2p::Multiaddr;

use super::GlobalArgs;
use crate::api::types::{ConnectAnswer, IdAnswer, PeersAnswer};
use crate::api::{self, ApiClient};
use crate::config::{DhtMode, NodeConfig};
use crate::identity;
use crate::lock::DirLock;
use crate::node::Node;

/// Network settings shared by `start` and `config show`.
#[derive(Debug, Args)]
pub(super) struct NodeArgs {
    /// A TOML config file (see `phase-node config show` for every field).
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Listen on this address instead of the configured ones (repeatable);
    /// port 0 picks a free port.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Join the network through this peer (repeatable).
    #[arg(long, value_name = "MULTIADDR/p2p/PEERID")]
    bootstrap: Vec<Multiaddr>,
    /// Do not look for peers on the local network with mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// When to answer queries of the phase DHT: auto (once confirmed
    /// publicly reachable; the default, and what nodes on one machine or
    /// LAN need: they meet in the LAN DHT), server (always: public nodes
    /// whose operator knows it) or client (never).
    #[arg(long, value_name = "MODE")]
    dht_mode: Option<DhtMode>,
    /// An address this node is reachable at from the internet (repeatable);
    /// makes it public, and by default a relay.
    #[arg(long, value_name = "MULTIADDR")]
    external: Vec<Multiaddr>,
    /// Reserve a slot on this relay when not publicly reachable
    /// (repeatable; default: relays among the bootstrap and other peers).
    #[arg(long, value_name = "MULTIADDR/p2p/PEERID")]
    relay: Vec<Multiaddr>,
    /// Serve as a relay for private nodes (needs a public address: see
    /// --external).
    #[arg(long)]
    relay_server: bool,
    /// Ask the home router for port mappings with UPnP.
    #[arg(long)]
    upnp: bool,
}

impl NodeArgs {
    /// Whether neither a config file nor `--listen` chose the addresses.
    pub(super) fn listen_is_default(&self) -> bool {
        self.config.is_none() && self.listen.is_empty()
    }

    /// Defaults < config file < flags.
    pub(super) fn effective(&self) -> anyhow::Result<NodeConfig> {
        let mut config = match &self.config {
            Some(path) => NodeConfig::from_file(path)?,
            None => NodeConfig::default(),
        };
        if !self.listen.is_empty() {
            config.network.listen.clone_from(&self.listen);
        }
        if !self.bootstrap.is_empty() {
            config.network.bootstrap.clone_from(&self.bootstrap);
        }
        if self.no_mdns {
            config.network.mdns = false;
        }
        if let Some(mode) = self.dht_mode {
            config.network.dht_mode = mode;
        }
        if !self.external.is_empty() {
            config.network.external.clone_from(&self.external);
        }
        if !self.relay.is_empty() {
            if let Some(bad) = self
                .relay
                .iter()
                .find(|a| !matches!(a.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))))
            {
                bail!("--relay {bad} must end in /p2p/PEERID");
            }
            config.network.relays.clone_from(&self.relay);
        }
        if self.relay_server {
            config.network.relay_server.enabled = Some(true);
        }
        if self.upnp {
            config.network.upnp = true;
        }
        Ok(config)
    }
}

/// Start a node: join the network, serve and fetch blocks for the other
/// commands of this data dir. Prints each listen address (ending in
/// /p2p/PEERID) on stdout; stops cleanly on Ctrl-C or SIGTERM.
#[derive(Debug, Args)]
pub(super) struct StartArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Jobs to run at once (default: the number of cores, or the config's
    /// `worker.slots`).
    #[arg(long, value_name = "N")]
    slots: Option<u32>,
    /// Do not run jobs for others (and do not advertise capabilities).
    #[arg(long)]
    no_worker: bool,
    /// Start paused: take no job until `phase-node resume` (the config's
    /// `worker.paused`).
    #[arg(long)]
    paused: bool,
    /// Also serve the HTTP API on this loopback address, e.g.
    /// 127.0.0.1:5001 (requests need `Authorization: Bearer` with the token
    /// in <data-dir>/api.token). The Unix socket <data-dir>/api.sock is
    /// always served.
    #[arg(long, value_name = "ADDR:PORT")]
    api: Option<std::net::SocketAddr>,
}

impl StartArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let mut config = self.node.effective()?;
        if let Some(slots) = self.slots {
            if slots == 0 {
                bail!("--slots must be at least 1");
            }
            config.worker.slots = slots;
        }
        if self.no_worker {
            config.worker.enabled = false;
        }
        if self.paused {
            config.worker.paused = true;
        }
        if self.api.is_some() {
            config.api.listen = self.api;
        }
        let data_dir = global.data_dir()?;
        std::fs::create_dir_all(data_dir.root())
            .with_context(|| format!("cannot create data dir {}", data_dir.root().display()))?;
        // Before anything is touched: one daemon per data dir.
        let _lock = DirLock::daemon(data_dir.root())?;
        let listeners = config.network.listen.len();
        let node = Node::builder(config)
            .data_dir(data_dir.clone())
            .spawn()
            .await?;
        if let Some(addr) = node.api().and_then(api::ApiServer::tcp_addr) {
            eprintln!(
                "API on http://{addr}/api/v1/ (token in {}); dashboard: http://{addr}/#token=…",
                data_dir.root().join(api::TOKEN_FILE).display()
            );
        }

        let addrs = node.network().listen_addrs_at_least(listeners).await?;
        let mut out = std::io::stdout().lock();
        for addr in addrs {
            writeln!(out, "{addr}")?;
        }
        out.flush()?;
        drop(out);
        if node.resuming() > 0 {
            eprintln!(
                "resuming {} submitted jobs that did not end",
                node.resuming()
            );
        }

        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
        eprintln!("stopping");
        node.shutdown().await;
        Ok(ExitCode::SUCCESS)
    }
}

/// Print this node's PeerId, public key and addresses.
#[derive(Debug, Args)]
pub(super) struct IdArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl IdArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let data_dir = global.data_dir()?;
        let key = identity::load_or_create(data_dir.root())?;
        let peer_id = key.public().to_peer_id();
        let (listen, running, nat) = match ApiClient::find(data_dir.root()).await {
            Some(daemon) => {
                let id: IdAnswer = daemon.get("/api/v1/id").await?;
                let listen = id.listen.iter().map(ToString::to_string).collect();
                (listen, true, Some(id))
            }
            None => (
                self.node
                    .effective()?
                    .network
                    .listen
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                false,
                None,
            ),
        };
        let public_key = hex::encode(key.public().encode_protobuf());
        let reachability = nat.as_ref().map_or("unknown", |n| n.reachability.as_str());
        let mut out = std::io::stdout().lock();
        if self.json {
            let value = serde_json::json!({
                "peer_id": peer_id.to_string(),
                "public_key": public_key,
                "listen": listen,
                "running": running,
                "reachability": reachability,
                "dht_server": nat.as_ref().map(|n| n.dht_server),
                "external": nat.as_ref().map(|n| &n.external),
                "relays": nat.as_ref().map(|n| &n.relays),
            });
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        } else {
            writeln!(out, "peer id:    {peer_id}")?;
            writeln!(out, "public key: {public_key} (ed25519, libp2p protobuf)")?;
            writeln!(
                out,
                "listen:     {}",
                if running {
                    "(daemon running)"
                } else {
                    "(configured; not running)"
                }
            )?;
            for addr in listen {
                writeln!(out, "  {addr}")?;
            }
            if let Some(nat) = &nat {
                let dht = if nat.dht_server { "server" } else { "client" };
                writeln!(out, "reachable:  {reachability} (DHT {dht})")?;
                for addr in &nat.external {
                    writeln!(out, "  external {addr}")?;
                }
                for relay in &nat.relays {
                    writeln!(out, "  relay    {relay}")?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Show the configuration.
#[derive(Debug, Subcommand)]
pub(super) enum ConfigCommand {
    /// Print the effective config (defaults < --config file < flags) as TOML.
    Show {
        #[command(flatten)]
        node: NodeArgs,
    },
}

impl ConfigCommand {
    pub(super) fn execute(self) -> anyhow::Result<ExitCode> {
        let ConfigCommand::Show { node } = self;
        print!("{}", node.effective()?.to_toml());
        Ok(ExitCode::SUCCESS)
    }
}

/// List the running daemon's connections, each as `direct` or `relayed`
/// (through a circuit relay) with the peer's address and who dialled, then
/// the routing-table peers it is not connected to; its reachability and
/// its place in the DHT.
#[derive(Debug, Args)]
pub(super) struct PeersArgs {
    /// Wait (up to a minute) until the node is part of the DHT: connected
    /// to its bootstrap peer, its routing table refreshed by a completed
    /// bootstrap query, and at least N peers in it (default 1). Not every
    /// node of a network: past a few dozen nodes no routing table holds
    /// them all; `phase-node dht find-peer` finds any of them.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1")]
    wait: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl PeersArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let daemon = global.daemon().await?;
        let path = match self.wait {
            None => "/api/v1/peers".to_owned(),
            Some(n) => format!("/api/v1/peers?wait={n}"),
        };
        let answer: PeersAnswer = daemon.get(&path).await?;
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, &answer)?;
            writeln!(out)?;
        } else {
            writeln!(out, "reachability: {}", answer.reachability)?;
            let dht = &answer.dht;
            writeln!(
                out,
                "dht: {} in the routing table, {} in the LAN table, {} bootstrap queries done, bootstrap peer {}",
                dht.routing_peers,
                dht.lan_peers,
                dht.bootstraps,
                if dht.bootstrap_connected {
                    "connected"
                } else {
                    "not connected"
                }
            )?;
            for c in &answer.connections {
                let kind = if c.relayed { "relayed" } else { "direct" };
                let way = if c.outbound { "out" } else { "in" };
                writeln!(out, "{} {kind:<7} {way:<3} {}", c.peer, c.addr)?;
            }
            let connected: std::collections::HashSet<_> =
                answer.connections.iter().map(|c| c.peer).collect();
            for peer in answer.peers.iter().filter(|p| !connected.contains(p)) {
                writeln!(
                    out,
                    "{peer} -       -   (in the routing table, not connected)"
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Connections of the running daemon, as Kubo's `ipfs swarm` has them.
#[derive(Debug, Subcommand)]
pub(super) enum SwarmCommand {
    /// Dial a peer (a phase-node, a Kubo or a Helia node) and wait (up to
    /// 15 s) until it is connected and has said what it speaks; blocks it
    /// holds are then fetched from it over Bitswap if it is not a phase-node.
    Connect {
        /// The peer's address, ending in /p2p/PEERID.
        #[arg(value_name = "MULTIADDR/p2p/PEERID")]
        addr: Multiaddr,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List connections with the protocols each peer speaks.
    Peers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl SwarmCommand {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let daemon = global.daemon().await?;
        let mut out = std::io::stdout().lock();
        match self {
            Self::Connect { addr, json } => {
                if !matches!(
                    addr.iter().last(),
                    Some(libp2p::multiaddr::Protocol::P2p(_))
                ) {
                    bail!("{addr} must end in /p2p/PEERID");
                }
                let query = url_encode(&addr.to_string());
                let answer: ConnectAnswer = daemon
                    .post(&format!("/api/v1/swarm/connect?addr={query}"), None::<&()>)
                    .await?;
                if json {
                    serde_json::to_writer_pretty(&mut out, &answer)?;
                    writeln!(out)?;
                } else {
                    writeln!(out, "connected to {}", answer.peer)?;
                }
            }
            Self::Peers { json } => {
                let answer: PeersAnswer = daemon.get("/api/v1/peers").await?;
                if json {
                    serde_json::to_writer_pretty(&mut out, &answer.connections)?;
                    writeln!(out)?;
                } else {
                    for c in &answer.connections {
                        let kind = if c.relayed { "relayed" } else { "direct" };
                        writeln!(out, "{} {kind} {}", c.peer, c.addr)?;
                        if !c.protocols.is_empty() {
                            writeln!(out, "  {}", c.protocols.join(" "))?;
                        }
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Percent-encodes what a query value cannot hold as is.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
