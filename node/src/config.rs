//! Node configuration: where the node keeps its data, and how it joins the
//! network. Precedence: defaults < `--config FILE.toml` < flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use phase_protocol::{ByteSize, Limits};

/// Errors finding the data directory or reading the config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No home directory to put the default data dir in.
    #[error("cannot find a home directory for the default data dir; pass --data-dir")]
    NoHome,
    /// The config file cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("config file {path} is invalid")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause (names the field).
        #[source]
        source: toml::de::Error,
    },
}

/// The folder a node keeps everything in: identity key, block store,
/// module cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// `path` if given, else the platform default (`~/.local/share/phase-node`
    /// on Linux).
    ///
    /// # Errors
    /// [`ConfigError::NoHome`] when no path is given and there is no home.
    pub fn resolve(path: Option<&Path>) -> Result<Self, ConfigError> {
        let root = match path {
            Some(p) => p.to_path_buf(),
            None => directories::ProjectDirs::from("org", "phase", "phase-node")
                .ok_or(ConfigError::NoHome)?
                .data_dir()
                .to_path_buf(),
        };
        Ok(Self { root })
    }

    /// The data directory itself.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the block store lives.
    #[must_use]
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Where compiled modules are cached.
    #[must_use]
    pub fn module_cache(&self) -> PathBuf {
        self.root.join("module-cache")
    }
}

/// Everything `phase-node start` is configured with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// How the node joins the network.
    pub network: NetworkConfig,
    /// Which jobs the node runs for others.
    pub worker: WorkerConfig,
    /// What the node does with the jobs it submits.
    pub requester: RequesterConfig,
    /// The block store.
    pub store: StoreConfig,
    /// The daemon's HTTP API.
    pub api: ApiConfig,
}

/// The requester section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequesterConfig {
    /// The chance, from 0 to 1, that a deterministic job is audited: run
    /// again on a second, different worker and compared (`submit --audit`
    /// overrides it).
    #[serde(deserialize_with = "chance")]
    pub audit: f64,
    /// Workers with a failed audit in this node's work ledger are not sent
    /// jobs (unless named with `--worker`).
    pub skip_failed_audits: bool,
    /// A worker with at least this many passed audits in the ledger and
    /// none failed is trusted: `audit` falls for it to
    /// `audit × trust_after / passed`, never below a tenth (adaptive
    /// replication, as BOINC does it). 0 turns it off. An explicit
    /// `submit --audit` is always used as given.
    pub trust_after: u32,
    /// How long what workers answered to a capability query ranks the next
    /// jobs before it is asked again, in the background; answers older than
    /// six times this are not used (the job asks for itself). 0: every job
    /// asks.
    #[serde(with = "humantime_serde")]
    pub offer_cache: Duration,
}

/// Default `[requester] offer_cache`.
pub const DEFAULT_OFFER_CACHE: Duration = Duration::from_secs(5);

impl Default for RequesterConfig {
    fn default() -> Self {
        Self {
            audit: 0.0,
            skip_failed_audits: true,
            trust_after: 10,
            offer_cache: DEFAULT_OFFER_CACHE,
        }
    }
}

/// A chance from 0 to 1.
fn chance<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let p = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(serde::de::Error::custom(format!(
            "{p} is not a chance from 0 to 1"
        )))
    }
}

/// Default free-space reserve (`store.reserve`).
pub const DEFAULT_RESERVE: ByteSize = ByteSize(1 << 30);

/// The store section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Free disk space that new work (jobs, uploads, fetches) may not take:
    /// below it they are refused, and the node still has room for what it
    /// must write (failure receipts, job records). 0 turns it off.
    pub reserve: ByteSize,
    /// Re-hash every block read from the store (what the node serves,
    /// exports and runs), not only what enters it. Off: the node's own disk
    /// is trusted and every fetcher verifies what it receives; `store
    /// verify` finds a block corrupted on disk either way.
    pub hash_on_read: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            reserve: DEFAULT_RESERVE,
            hash_on_read: false,
        }
    }
}

/// The API section: the Unix socket is always served; TCP only when asked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Also serve the API on this loopback address (bearer token required),
    /// e.g. `127.0.0.1:5001`.
    pub listen: Option<std::net::SocketAddr>,
}

impl NodeConfig {
    /// Reads a TOML config file over the defaults.
    ///
    /// # Errors
    /// When the file cannot be read or does not parse (the error names the field).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// The effective config as TOML, for `config show`.
    #[must_use]
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config always serializes")
    }
}

/// Default port of both transports.
pub const DEFAULT_PORT: u16 = 4001;

/// The network section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Addresses to listen on; port 0 picks a free port.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through, as `/ip4/…/udp/…/quic-v1/p2p/PEERID`.
    pub bootstrap: Vec<Multiaddr>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Most connections in total.
    pub max_connections: u32,
    /// Most connections to one peer.
    pub max_connections_per_peer: u32,
    /// How often to re-run the Kademlia bootstrap.
    #[serde(with = "humantime_serde")]
    pub bootstrap_interval: Duration,
    /// How long a provider record (of a capability or of content) lives
    /// on the DHT peers that store it; records of a node that went away
    /// expire after this.
    #[serde(with = "humantime_serde")]
    pub provider_ttl: Duration,
    /// How often this node announces its provider records again; keep it
    /// well under `provider_ttl`. Records are also announced again whenever
    /// the routing table has doubled (a network forming around the node).
    #[serde(with = "humantime_serde")]
    pub provider_republish: Duration,
    /// Deadline of one request to a peer.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// When this node answers DHT queries: `auto` (only once it is
    /// confirmed publicly reachable), `server` (always: public nodes whose
    /// operator knows it, loopback and LAN testnets) or `client` (never).
    pub dht_mode: DhtMode,
    /// Also join the LAN DHT (`/phase/lan/kad/1.0.0`), as Kubo does: a
    /// second Kademlia network among the peers reached over private or
    /// loopback addresses, in which every node is a server whatever its
    /// reachability, and which holds only those addresses. Nodes on one
    /// machine or one LAN find each other's workers and content there with
    /// the default `dht_mode`, and no private address enters the public
    /// DHT.
    pub lan_dht: bool,
    /// Addresses this node is known to be reachable at from the internet
    /// (a public node's, e.g. `/ip4/198.51.100.1/tcp/4001`); taken as
    /// confirmed at start, so the node counts as public.
    pub external: Vec<Multiaddr>,
    /// Ask the home router for port mappings with UPnP.
    pub upnp: bool,
    /// Relays to reserve a slot on when this node is not publicly
    /// reachable, as `/…/p2p/PEERID`. Empty: relays found among the
    /// bootstrap peers and other connected peers (via identify).
    pub relays: Vec<Multiaddr>,
    /// Most relays a private node keeps a reservation on.
    pub max_relays: usize,
    /// How long a job or block request to a peer reachable only through a
    /// relay waits for a direct connection (hole punching) before it fails.
    #[serde(with = "humantime_serde")]
    pub direct_wait: Duration,
    /// Serving as a relay for private nodes.
    pub relay_server: RelayServerConfig,
}

/// When the node is a Kademlia server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DhtMode {
    /// A server once confirmed publicly reachable, a client before.
    #[default]
    Auto,
    /// Always a server.
    Server,
    /// Never a server.
    Client,
}

/// The relay section: circuit relay v2 limits (the defaults are
/// libp2p's). Relayed connections only carry the DHT, identify and the
/// hole-punch handshake; job data and blocks wait for a direct connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayServerConfig {
    /// Serve as a relay. Unset: when `external` addresses are configured
    /// (a public bootstrap node offers it by default).
    pub enabled: Option<bool>,
    /// Reservations held at once.
    pub max_reservations: usize,
    /// Reservations one peer may hold at once.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts (clients renew it at 3/4).
    #[serde(with = "humantime_serde")]
    pub reservation_duration: Duration,
    /// Relayed connections at once.
    pub max_circuits: usize,
    /// Relayed connections one peer may have at once.
    pub max_circuits_per_peer: usize,
    /// Longest one relayed connection lasts.
    #[serde(with = "humantime_serde")]
    pub max_circuit_duration: Duration,
    /// Most bytes one relayed connection carries (each way).
    pub max_circuit_bytes: ByteSize,
}

impl Default for RelayServerConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            max_reservations: 128,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: 16,
            max_circuits_per_peer: 4,
            max_circuit_duration: Duration::from_secs(120),
            max_circuit_bytes: ByteSize(128 << 10),
        }
    }
}

impl NetworkConfig {
    /// Whether this node serves as a relay.
    #[must_use]
    pub fn serves_relay(&self) -> bool {
        self.relay_server
            .enabled
            .unwrap_or(!self.external.is_empty())
    }

    /// Whether the operator says this node is public (it then also serves
    /// AutoNAT, so private nodes can learn what they are).
    #[must_use]
    pub fn known_public(&self) -> bool {
        !self.external.is_empty() || self.serves_relay()
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1")
                    .parse()
                    .expect("a valid multiaddr"),
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}")
                    .parse()
                    .expect("a valid multiaddr"),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            max_connections: 256,
            max_connections_per_peer: 4,
            bootstrap_interval: Duration::from_secs(300),
            provider_ttl: Duration::from_secs(48 * 3600),
            provider_republish: Duration::from_secs(12 * 3600),
            request_timeout: Duration::from_secs(30),
            dht_mode: DhtMode::Auto,
            lan_dht: true,
            external: Vec::new(),
            upnp: false,
            relays: Vec::new(),
            max_relays: 2,
            direct_wait: Duration::from_secs(15),
            relay_server: RelayServerConfig::default(),
        }
    }
}

/// Finished jobs a worker keeps by default (`worker.keep_jobs`): their
/// states and receipts in memory, their receipts and results pinned. At
/// most a few KiB of memory each.
pub const DEFAULT_KEEP_JOBS: u32 = 10_000;

/// The worker section: what a volunteer's node runs for others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Run jobs for other peers (and advertise the capabilities).
    pub enabled: bool,
    /// Jobs run at once; default: the number of cores.
    pub slots: u32,
    /// Accepted jobs that may wait for a slot; beyond this, submissions are
    /// answered `busy`.
    pub queue: u32,
    /// Most fuel a job may ask for.
    pub max_fuel: u64,
    /// Most linear memory a job may ask for.
    pub max_memory: ByteSize,
    /// Most memory all running jobs may ask for together (the sum of their
    /// `limits.memory`): a job whose memory does not fit beside the running
    /// ones waits in the queue. 0 (the default): no cap beyond
    /// `slots × max_memory`. A job may ask for at most this much.
    pub max_memory_total: ByteSize,
    /// Start paused: take no job until `phase-node resume` (or the API).
    pub paused: bool,
    /// Longest wall time a job may ask for.
    #[serde(with = "humantime_serde")]
    pub max_timeout: Duration,
    /// Most output (stdout, stderr, `/output` each) a job may ask for.
    pub max_output: ByteSize,
    /// Most bytes of module, stdin and input directory a job may bring
    /// (fetched blocks the store did not have yet).
    pub max_input: ByteSize,
    /// Most bytes (keys and values) a job's guest state may hold after its
    /// run; a `state_set` past it returns -1 to the guest.
    pub max_state: ByteSize,
    /// Longest a small module may take to compile (in a child process;
    /// past this, the job fails as `module too complex`); larger modules
    /// get 2 s more per MiB.
    #[serde(with = "humantime_serde")]
    pub max_compile_time: Duration,
    /// Most resident memory compiling one small module may take; larger
    /// modules get 24 bytes more per byte. At least 256 MiB (the
    /// compiler's own set-up takes about 100).
    pub max_compile_memory: ByteSize,
    /// Finished jobs whose states and receipts are kept (in memory) and
    /// whose receipts and results stay pinned; older ones are forgotten and
    /// unpinned, so `gc` can reclaim their blocks.
    pub keep_jobs: u32,
    /// Jobs one requester may have admitted (running or queued) at once, so
    /// one peer cannot take every slot; 0: half of `slots + queue`.
    pub max_per_requester: u32,
    /// Only these requesters may submit (empty: everyone not denied).
    pub allow: Vec<PeerId>,
    /// These requesters are refused.
    pub deny: Vec<PeerId>,
    /// `host:port`s a job's component may send HTTP requests to, if its
    /// `permissions.net` names them too. Empty (the default): no network
    /// for jobs, and `wasi-http` is not advertised.
    #[serde(deserialize_with = "net_hosts")]
    pub net_allow: Vec<String>,
    /// Sign a wrong result for every job (tests of audits and reruns only:
    /// never read from a config file).
    #[cfg(feature = "test-lies")]
    #[serde(skip)]
    pub lie: bool,
}

/// `net_allow`, each entry checked as a job's `permissions.net` entries are.
fn net_hosts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let hosts = Vec::<String>::deserialize(d)?;
    for host in &hosts {
        phase_protocol::job::check_net_host(host).map_err(serde::de::Error::custom)?;
    }
    Ok(hosts)
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self {
            enabled: true,
            slots: u32::try_from(cores).unwrap_or(1),
            queue: 64,
            max_fuel: 1_000_000_000_000,
            max_memory: ByteSize(1 << 30),
            max_memory_total: ByteSize(0),
            paused: false,
            max_timeout: Duration::from_secs(600),
            max_output: ByteSize(64 << 20),
            max_input: ByteSize(1 << 30),
            max_state: ByteSize(crate::executor::DEFAULT_MAX_STATE),
            max_compile_time: crate::executor::DEFAULT_COMPILE_TIME,
            max_compile_memory: crate::executor::DEFAULT_COMPILE_MEMORY,
            keep_jobs: DEFAULT_KEEP_JOBS,
            max_per_requester: 0,
            allow: Vec::new(),
            deny: Vec::new(),
            net_allow: Vec::new(),
            #[cfg(feature = "test-lies")]
            lie: false,
        }
    }
}

impl WorkerConfig {
    /// The highest limits this worker accepts.
    #[must_use]
    pub fn max_limits(&self) -> Limits {
        Limits {
            fuel: self.max_fuel,
            memory: ByteSize(self.max_memory.0.min(self.memory_total())),
            timeout: self.max_timeout,
            max_output: self.max_output,
        }
    }

    /// Most memory running jobs may ask for together (`max_memory_total`,
    /// where 0 is no cap).
    #[must_use]
    pub fn memory_total(&self) -> u64 {
        match self.max_memory_total.0 {
            0 => u64::MAX,
            n => n,
        }
    }

    /// Jobs one requester may have admitted at once (at least 1).
    #[must_use]
    pub fn per_requester(&self) -> usize {
        match self.max_per_requester {
            0 => ((self.slots.max(1) + self.queue) as usize / 2).max(1),
            n => n as usize,
        }
    }

    /// Whether this worker signs wrong results (only ever in tests).
    #[must_use]
    pub fn lies(&self) -> bool {
        #[cfg(feature = "test-lies")]
        return self.lie;
        #[cfg(not(feature = "test-lies"))]
        false
    }

    /// Whether `peer` may submit jobs here.
    #[must_use]
    pub fn admits(&self, peer: &PeerId) -> bool {
        !self.deny.contains(peer) && (self.allow.is_empty() || self.allow.contains(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let config = NodeConfig::default();
        let text = config.to_toml();
        assert!(text.contains("/ip4/0.0.0.0/udp/4001/quic-v1"), "{text}");
        assert_eq!(toml::from_str::<NodeConfig>(&text).unwrap(), config);
    }

    #[test]
    fn the_audit_chance_is_from_0_to_1() {
        let config: NodeConfig = toml::from_str("[requester]\naudit = 0.1\n").unwrap();
        assert!((config.requester.audit - 0.1).abs() < f64::EPSILON);
        let err = toml::from_str::<NodeConfig>("[requester]\naudit = 1.5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("1.5 is not a chance from 0 to 1"), "{err}");
    }

    #[test]
    fn net_allow_entries_are_checked_as_job_permissions_are() {
        let config: NodeConfig =
            toml::from_str("[worker]\nnet_allow = [\"127.0.0.1:8080\", \"[::1]:80\"]\n").unwrap();
        assert_eq!(config.worker.net_allow.len(), 2);
        let err = toml::from_str::<NodeConfig>("[worker]\nnet_allow = [\"example.org\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`example.org` is not host:port"), "{err}");
    }

    #[test]
    fn a_file_overrides_defaults_and_unknown_fields_are_named() {
        let config: NodeConfig = toml::from_str(
            "[network]\nmdns = false\nlisten = [\"/ip4/127.0.0.1/udp/0/quic-v1\"]\nrequest_timeout = \"5s\"\n",
        )
        .unwrap();
        assert!(!config.network.mdns);
        assert_eq!(config.network.listen.len(), 1);
        assert_eq!(config.network.request_timeout, Duration::from_secs(5));
        assert_eq!(config.network.max_connections, 256);
        let err = toml::from_str::<NodeConfig>("[network]\nmdsn = true\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `mdsn`"), "{err}");
        let config: NodeConfig = toml::from_str(
            "[worker]\nslots = 3\nmax_memory = \"64MiB\"\nmax_timeout = \"30s\"\ndeny = [\"12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA\"]\n",
        )
        .unwrap();
        assert_eq!(config.worker.slots, 3);
        assert_eq!(config.worker.max_limits().memory, ByteSize(64 << 20));
        assert_eq!(config.worker.max_timeout, Duration::from_secs(30));
        assert!(!config.worker.admits(&config.worker.deny[0]));
        assert!(config.worker.admits(&PeerId::random()));
        assert_eq!(
            config.worker.per_requester(),
            33,
            "half of 3 slots + 64 queued"
        );
        let err = toml::from_str::<NodeConfig>("[worker]\nslot = 3\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `slot`"), "{err}");
    }

    #[test]
    fn nat_settings_parse_and_an_external_address_makes_a_relay() {
        let config = NetworkConfig::default();
        assert_eq!(config.dht_mode, DhtMode::Auto);
        assert!(!config.serves_relay() && !config.known_public() && !config.upnp);
        let config: NodeConfig = toml::from_str(
            "[network]\ndht_mode = \"client\"\nupnp = true\nexternal = [\"/ip4/198.51.100.1/tcp/4001\"]\n\
             [network.relay_server]\nmax_circuits = 4\nmax_circuit_bytes = \"1MiB\"\nmax_circuit_duration = \"5m\"\n",
        )
        .unwrap();
        let n = &config.network;
        assert_eq!(n.dht_mode, DhtMode::Client);
        assert!(n.upnp && n.serves_relay() && n.known_public());
        assert_eq!(n.relay_server.max_circuits, 4);
        assert_eq!(n.relay_server.max_circuit_bytes, ByteSize(1 << 20));
        assert_eq!(
            n.relay_server.max_circuit_duration,
            Duration::from_secs(300)
        );
        let off: NodeConfig = toml::from_str(
            "[network]\nexternal = [\"/ip4/198.51.100.1/tcp/4001\"]\n[network.relay_server]\nenabled = false\n",
        )
        .unwrap();
        assert!(!off.network.serves_relay() && off.network.known_public());
        let err = toml::from_str::<NodeConfig>("[network]\ndht_mode = \"sever\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown variant `sever`"), "{err}");
    }

    /// Every key's dotted path in a TOML table.
    fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = format!("{prefix}{key}");
            match value {
                toml::Value::Table(inner) => keys(inner, &format!("{path}."), out),
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn the_memory_cap_across_jobs_caps_one_job_too() {
        let mut worker = WorkerConfig {
            max_memory: ByteSize(1 << 30),
            ..WorkerConfig::default()
        };
        assert_eq!(worker.memory_total(), u64::MAX, "0 is no cap");
        assert_eq!(worker.max_limits().memory, ByteSize(1 << 30));
        worker.max_memory_total = ByteSize(256 << 20);
        assert_eq!(worker.memory_total(), 256 << 20);
        assert_eq!(worker.max_limits().memory, ByteSize(256 << 20));
        worker.max_memory_total = ByteSize(4 << 30);
        assert_eq!(worker.max_limits().memory, ByteSize(1 << 30));
    }

    #[test]
    fn the_documented_config_is_the_default_and_names_every_key() {
        let doc = include_str!("../../docs/config.md");
        let block = doc
            .split_once("```toml\n")
            .and_then(|(_, rest)| rest.split_once("\n```"))
            .expect("docs/config.md has a toml block")
            .0;
        let mut documented: NodeConfig = toml::from_str(block).unwrap();
        let default = NodeConfig::default();
        // `slots` defaults to this machine's cores; the doc shows one value.
        documented.worker.slots = default.worker.slots;
        assert_eq!(documented, default);

        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        keys(&toml::from_str(&default.to_toml()).unwrap(), "", &mut ours);
        keys(&toml::from_str(block).unwrap(), "", &mut theirs);
        let missing: Vec<_> = ours.iter().filter(|k| !theirs.contains(k)).collect();
        assert!(missing.is_empty(), "docs/config.md lacks {missing:?}");
    }
}
