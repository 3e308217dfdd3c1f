//! Jobs: the spec a requester submits, its limits, and the messages of
//! `/phase/job/1.0.0`.
//!
//! A [`JobSpec`] names everything a run needs by CID (module, stdin, input
//! directory) plus args, env, limits and flags. Its canonical DAG-CBOR bytes
//! hash to its [`JobId`], so a job is identified by exactly what it asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cid::{self, Cid};
use crate::receipt::{SignedReceipt, Status};
use crate::units::ByteSize;
use crate::wire::{MAX_JOB_REQUEST, MAX_JOB_RESPONSE, MAX_JOB_SPEC, Message};

/// Protocol id of the job protocol.
pub const JOB_PROTOCOL: &str = "/phase/job/1.0.0";
/// Most args a job may pass (plus `argv[0]`).
pub const MAX_ARGS: usize = 1024;
/// Most environment variables a job may set.
pub const MAX_ENV: usize = 1024;
/// Most bytes of args and env together: what fits comfortably in one request.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;
/// Most capabilities a job may require.
pub const MAX_CAPABILITIES: usize = 16;
/// Longest capability name.
pub const MAX_CAPABILITY_LEN: usize = 64;
/// Most `host:port` entries a job's network permission may name.
pub const MAX_NET_HOSTS: usize = 16;
/// Longest `host:port` entry (a DNS name is at most 253 bytes).
pub const MAX_NET_HOST_LEN: usize = 261;

/// Default fuel: about ten billion wasm instructions, minutes of work.
pub const DEFAULT_FUEL: u64 = 10_000_000_000;
/// Upper bound on fuel a job may ask for (about a day of one core).
pub const MAX_FUEL: u64 = 10_000_000_000_000;
/// Default linear memory cap: enough for most guests, small enough that a
/// 2-core volunteer can run one job per core.
pub const DEFAULT_MEMORY: ByteSize = ByteSize(256 << 20);
/// Upper bound on memory: wasm32's 4 GiB address space.
pub const MAX_MEMORY: ByteSize = ByteSize(4 << 30);
/// Default wall-clock limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound on wall time of one job.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Default cap on each of stdout and stderr, and on the files under `/output`.
pub const DEFAULT_MAX_OUTPUT: ByteSize = ByteSize(16 << 20);
/// Upper bound on output: results travel back as blocks and must stay movable.
pub const MAX_OUTPUT: ByteSize = ByteSize(1 << 30);
/// Default (and maximum) elements of any one table: guards against a guest
/// allocating huge tables, which are host memory outside linear memory.
pub const DEFAULT_TABLE_ELEMENTS: u32 = 100_000;

/// What one run may consume. Every field has a default and an upper bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Fuel: the deterministic instruction budget.
    pub fuel: u64,
    /// Bytes of linear memory, summed over the instance's memories.
    pub memory: ByteSize,
    /// Wall-clock time.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Bytes of stdout and of stderr each, and of the `/output` files.
    pub max_output: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            memory: DEFAULT_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

/// A limit above its upper bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Fuel above [`MAX_FUEL`].
    #[error("fuel {0} is above the maximum of {MAX_FUEL}")]
    Fuel(u64),
    /// Memory above [`MAX_MEMORY`].
    #[error("memory {0} is above the maximum of {MAX_MEMORY}")]
    Memory(ByteSize),
    /// Timeout above [`MAX_TIMEOUT`], or zero.
    #[error("timeout of {0:?} is outside 1ms..=24h")]
    Timeout(Duration),
    /// Output above [`MAX_OUTPUT`].
    #[error("output limit {0} is above the maximum of {MAX_OUTPUT}")]
    Output(ByteSize),
}

impl Limits {
    /// Checks every limit against its upper bound.
    ///
    /// # Errors
    /// The first limit that is out of range.
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.fuel > MAX_FUEL {
            return Err(LimitError::Fuel(self.fuel));
        }
        if self.memory > MAX_MEMORY {
            return Err(LimitError::Memory(self.memory));
        }
        if self.timeout > MAX_TIMEOUT || self.timeout < Duration::from_millis(1) {
            return Err(LimitError::Timeout(self.timeout));
        }
        if self.max_output > MAX_OUTPUT {
            return Err(LimitError::Output(self.max_output));
        }
        Ok(())
    }

    /// The first of these limits above `max`: which, what was asked and the
    /// maximum (timeouts in milliseconds). Workers refuse such jobs and
    /// requesters pass such workers over.
    #[must_use]
    pub fn first_exceeding(&self, max: &Limits) -> Option<(LimitKind, u64, u64)> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        [
            (LimitKind::Fuel, self.fuel, max.fuel),
            (LimitKind::Memory, self.memory.0, max.memory.0),
            (LimitKind::Timeout, ms(self.timeout), ms(max.timeout)),
            (LimitKind::MaxOutput, self.max_output.0, max.max_output.0),
        ]
        .into_iter()
        .find(|(_, asked, max)| asked > max)
    }
}

/// One of the [`Limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// [`Limits::fuel`].
    Fuel,
    /// [`Limits::memory`], in bytes.
    Memory,
    /// [`Limits::timeout`], in milliseconds.
    Timeout,
    /// [`Limits::max_output`], in bytes.
    MaxOutput,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Fuel => "fuel",
            LimitKind::Memory => "memory",
            LimitKind::Timeout => "timeout",
            LimitKind::MaxOutput => "max_output",
        })
    }
}

/// A capability a worker advertises and a job may require, e.g. `wasi-p1`.
///
/// Names are lowercase ASCII letters, digits and `-`, at most
/// [`MAX_CAPABILITY_LEN`] bytes. Unknown names are valid: a worker that does
/// not have one rejects the job as unsupported.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Capability(std::borrow::Cow<'static, str>);

/// A capability name that is not well-formed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("capability `{0}` must be 1 to 64 of a-z, 0-9 and -")]
pub struct CapabilityError(String);

impl Capability {
    /// Runs WASI preview 1 core modules.
    pub const WASI_P1: Capability = Capability(std::borrow::Cow::Borrowed("wasi-p1"));
    /// Runs WASI preview 2 components.
    pub const WASI_P2: Capability = Capability(std::borrow::Cow::Borrowed("wasi-p2"));
    /// Runs jobs deterministically (virtual clocks, seeded randomness).
    pub const DETERMINISTIC: Capability = Capability(std::borrow::Cow::Borrowed("deterministic"));
    /// Lets components make outgoing HTTP requests (`wasi:http`) to the
    /// hosts both the job and the worker allow; needed by a job whose
    /// permissions name any host.
    pub const WASI_HTTP: Capability = Capability(std::borrow::Cow::Borrowed("wasi-http"));

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DHT key a worker provides for this capability:
    /// sha2-256 of `/phase/cap/<name>`.
    #[must_use]
    pub fn dht_key(&self) -> [u8; 32] {
        Sha256::digest(format!("/phase/cap/{}", self.0)).into()
    }
}

impl FromStr for Capability {
    type Err = CapabilityError;
    fn from_str(s: &str) -> Result<Self, CapabilityError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_CAPABILITY_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned().into()))
        } else {
            Err(CapabilityError(s.to_owned()))
        }
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a job: the CID (dag-cbor, sha2-256) of its spec's canonical bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(#[serde(with = "crate::serde_helpers::cid")] pub Cid);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = ::cid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cid::from_str(s).map(JobId)
    }
}

/// Everything a worker needs to run a job; nothing travels inline but small
/// strings: the module and inputs are blocks fetched by CID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The module or component (UnixFS file CID).
    #[serde(with = "crate::serde_helpers::cid")]
    pub module: Cid,
    /// All of stdin (UnixFS file CID).
    #[serde(with = "crate::serde_helpers::opt_cid")]
    pub stdin: Option<Cid>,
    /// A directory mounted read-only at `/input` (UnixFS directory CID).
    #[serde(with = "crate::serde_helpers::opt_cid")]
    pub input: Option<Cid>,
    /// Arguments after `argv[0]` (which is the module CID).
    #[serde(deserialize_with = "crate::wire::seq::deserialize")]
    pub args: Vec<String>,
    /// Environment variables; nothing else is inherited.
    pub env: BTreeMap<String, String>,
    /// What the run may consume.
    pub limits: Limits,
    /// Whether the run must be deterministic (virtual clocks, randomness
    /// seeded from the job id), so any worker gets the same result CID.
    pub deterministic: bool,
    /// Capabilities a worker must have, besides those implied by the
    /// module kind and `deterministic`.
    pub capabilities: BTreeSet<Capability>,
    /// Makes otherwise identical jobs distinct (a re-run gets a new id).
    pub nonce: u64,
    /// The guest state the run starts from
    /// ([`crate::guest_state`]); `None`: the empty state. Left out of the
    /// encoding when `None`, so a job without state keeps its id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_helpers::opt_cid"
    )]
    pub state: Option<Cid>,
    /// What the run may reach: folders and hosts. Left out of the encoding
    /// when it is the default, so a job that names none keeps the id it
    /// had before permissions existed.
    #[serde(default, skip_serializing_if = "Permissions::is_default")]
    pub permissions: Permissions,
}

/// What a job's run may reach beyond its stdin, args and env.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Which folders are mounted.
    #[serde(default)]
    pub fs: FsAccess,
    /// Hosts (`host:port`) the run may send HTTP requests to; empty (the
    /// default) is no network at all.
    #[serde(default, deserialize_with = "crate::wire::seq::deserialize")]
    pub net: Vec<String>,
}

impl Permissions {
    /// Whether this is what a job gets when it names no permissions:
    /// `/input` and `/output` mounted, no network.
    #[must_use]
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Which of a job's folders the guest sees.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FsAccess {
    /// No folder at all: the guest has only stdin, args and env.
    None,
    /// `/input` (read-only), no `/output`.
    Read,
    /// `/input` (read-only) and `/output` (writable): what a job gets by
    /// default.
    #[default]
    Write,
}

impl FsAccess {
    /// Whether `/input` is mounted.
    #[must_use]
    pub fn input(self) -> bool {
        self >= Self::Read
    }

    /// Whether `/output` is mounted.
    #[must_use]
    pub fn output(self) -> bool {
        self == Self::Write
    }

    /// The name used in job files and flags.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

impl fmt::Display for FsAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FsAccess {
    type Err = PermissionError;
    fn from_str(s: &str) -> Result<Self, PermissionError> {
        match s {
            "none" => Ok(Self::None),
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            other => Err(PermissionError::Fs(other.to_owned())),
        }
    }
}

/// A permission that is not well-formed, or that contradicts the job.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    /// Not one of the folder access levels.
    #[error("`{0}` is not one of none, read, write")]
    Fs(String),
    /// A network entry that is not `host:port`.
    #[error(
        "`{0}` is not host:port (a lowercase DNS name or an IP address, and a port from 1 to 65535)"
    )]
    Host(String),
    /// Too many network entries.
    #[error("more than {MAX_NET_HOSTS} hosts")]
    TooManyHosts,
    /// An `/input` folder given to a job that may see no folder.
    #[error("`none` mounts nothing, but the job has an input folder (use `read` or `write`)")]
    InputNotMounted,
    /// A deterministic job that may use the network.
    #[error("a job with network access cannot be deterministic")]
    NetNotDeterministic,
}

impl PermissionError {
    /// The permission it is about: `fs` or `net`.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::Fs(_) | Self::InputNotMounted => "fs",
            Self::Host(_) | Self::TooManyHosts | Self::NetNotDeterministic => "net",
        }
    }
}

/// Checks one `host:port` entry of a network permission.
///
/// # Errors
/// [`PermissionError::Host`].
pub fn check_net_host(entry: &str) -> Result<(), PermissionError> {
    let bad = || PermissionError::Host(entry.to_owned());
    if entry.len() > MAX_NET_HOST_LEN {
        return Err(bad());
    }
    let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = !port.starts_with('0') && port.parse::<u16>().is_ok_and(|p| p > 0);
    // An IPv6 address in brackets, an IPv4 address, or a DNS name.
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                })
        }
    };
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A job spec that is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A limit out of range.
    #[error("limits: {0}")]
    Limits(#[from] LimitError),
    /// Too many args or env vars, or too many bytes of them.
    #[error("args and env: {0}")]
    TooMuch(String),
    /// Too many capabilities.
    #[error("capabilities: more than {MAX_CAPABILITIES}")]
    Capabilities,
    /// An env name that cannot be a variable name.
    #[error("env: `{0}` is not a valid variable name (empty, or contains `=` or NUL)")]
    EnvName(String),
    /// Permissions not well-formed, or contradicting the job.
    #[error("permissions.{field}: {0}", field = .0.field())]
    Permissions(#[from] PermissionError),
}

impl JobSpec {
    /// A job running `module` with default limits and nothing else.
    #[must_use]
    pub fn new(module: Cid) -> Self {
        Self {
            module,
            stdin: None,
            input: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            limits: Limits::default(),
            deterministic: false,
            capabilities: BTreeSet::new(),
            nonce: 0,
            state: None,
            permissions: Permissions::default(),
        }
    }

    /// The job id: CID of the canonical encoding.
    #[must_use]
    pub fn id(&self) -> JobId {
        JobId(cid::cid_of(cid::DAG_CBOR, &self.encode()))
    }

    /// The seed of a deterministic run: a function of the job id only.
    #[must_use]
    pub fn seed(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"phase-job-seed-v1\0");
        h.update(self.id().0.to_bytes());
        h.finalize().into()
    }

    /// Checks limits, sizes and names.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.limits.validate()?;
        if self.args.len() > MAX_ARGS {
            return Err(SpecError::TooMuch(format!("more than {MAX_ARGS} args")));
        }
        if self.env.len() > MAX_ENV {
            return Err(SpecError::TooMuch(format!("more than {MAX_ENV} env vars")));
        }
        let bytes: usize = self.args.iter().map(String::len).sum::<usize>()
            + self
                .env
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if bytes > MAX_ARGS_BYTES {
            return Err(SpecError::TooMuch(format!(
                "{bytes} bytes, more than {MAX_ARGS_BYTES}"
            )));
        }
        if let Some(bad) = self
            .env
            .keys()
            .find(|k| k.is_empty() || k.contains(['=', '\0']))
        {
            return Err(SpecError::EnvName(bad.clone()));
        }
        if self.capabilities.len() > MAX_CAPABILITIES {
            return Err(SpecError::Capabilities);
        }
        let permissions = &self.permissions;
        if permissions.net.len() > MAX_NET_HOSTS {
            return Err(PermissionError::TooManyHosts.into());
        }
        for host in &permissions.net {
            check_net_host(host)?;
        }
        if self.input.is_some() && !permissions.fs.input() {
            return Err(PermissionError::InputNotMounted.into());
        }
        if self.deterministic && !permissions.net.is_empty() {
            return Err(PermissionError::NetNotDeterministic.into());
        }
        Ok(())
    }

    /// Every capability a worker needs for this job: those it names, and
    /// `wasi-http` if it may use the network.
    #[must_use]
    pub fn required_capabilities(&self) -> BTreeSet<Capability> {
        let mut all = self.capabilities.clone();
        if !self.permissions.net.is_empty() {
            all.insert(Capability::WASI_HTTP);
        }
        all
    }
}

impl Message for JobSpec {
    const MAX: usize = MAX_JOB_SPEC;
}

/// Why a worker refused a job, at once, without running it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    /// All slots and the queue are full: try another worker or later.
    Busy,
    /// A limit is above what this worker allows.
    LimitsTooHigh {
        /// Which limit.
        limit: LimitKind,
        /// What the job asked for.
        requested: u64,
        /// What this worker allows.
        max: u64,
    },
    /// The job needs a capability this worker does not have.
    UnsupportedCapability {
        /// The capability.
        capability: Capability,
    },
    /// The spec is invalid.
    Malformed {
        /// What is wrong, one line.
        message: String,
    },
    /// This worker does not take jobs from this requester.
    Denied,
    /// This worker's volunteer has paused it: it finishes the jobs it has
    /// and takes no new one until resumed.
    Paused,
    /// This worker's disk is below its free-space reserve: it takes no new
    /// job until it has room again.
    LowOnDisk {
        /// Bytes free on its disk.
        free: u64,
        /// The reserve it keeps free.
        reserve: u64,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Busy => f.write_str("worker is busy"),
            Rejection::LimitsTooHigh {
                limit,
                requested,
                max,
            } => write!(
                f,
                "{limit} of {requested} is above this worker's maximum of {max}"
            ),
            Rejection::UnsupportedCapability { capability } => {
                write!(f, "worker does not support `{capability}`")
            }
            Rejection::Malformed { message } => write!(f, "malformed job: {message}"),
            Rejection::Denied => f.write_str("worker does not accept jobs from this requester"),
            Rejection::Paused => f.write_str(
                "worker is paused by its volunteer: it finishes the jobs it has and takes no new ones",
            ),
            Rejection::LowOnDisk { free, reserve } => write!(
                f,
                "worker is low on disk: {} free, below its reserve of {}",
                crate::ByteSize(*free),
                crate::ByteSize(*reserve)
            ),
        }
    }
}

/// Where a job is, as its worker reports it.
///
/// Externally tagged (`{"done": {…}}`): serde buffers internally tagged enums
/// through a human-readable intermediate, which would read the CID inside
/// `Done` as a string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, waiting for a slot.
    Queued,
    /// Fetching the module and inputs.
    Fetching,
    /// Running in the sandbox.
    Running,
    /// Finished; the receipt is available.
    Done {
        /// How the run ended.
        status: Status,
        /// CID of the signed receipt.
        #[serde(with = "crate::serde_helpers::cid")]
        receipt: Cid,
    },
    /// The worker could not run it (inputs not found, module not runnable).
    Failed {
        /// Why, one line.
        message: String,
    },
    /// The module is over the worker's structural bounds or compile budget
    /// (`module_too_complex` on the wire); no run happened.
    ModuleTooComplex {
        /// Which bound, one line (e.g. "compiling takes more than the
        /// budget of 10s and 512 MiB").
        message: String,
    },
    /// The worker stopped (crashed, was killed) while the job was under
    /// way; no run is attested. Requesters take it to another worker.
    Interrupted,
}

/// What a worker offers, as it answers a capability query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerInfo {
    /// Capabilities it has.
    pub capabilities: BTreeSet<Capability>,
    /// The highest limits it accepts.
    pub max_limits: Limits,
    /// Jobs it runs at once.
    pub slots: u32,
    /// Slots free right now.
    pub free_slots: u32,
    /// Software and runtime version, e.g. `phase-node/0.1.0 wasmtime/48.0.8`.
    pub runtime: String,
    /// Paused by its volunteer: it takes no new job (then `free_slots` is
    /// 0). Left out of the encoding when false, so a running worker's answer
    /// is what it was before this field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A request on `/phase/job/1.0.0`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobRequest {
    /// Requester → worker: run this job.
    Submit(Box<JobSpec>),
    /// Requester → worker: where is this job?
    Status(JobId),
    /// Anyone → worker: the signed receipt of this job.
    Receipt(JobId),
    /// Requester → worker: what can you run, and how many slots are free?
    Capabilities,
    /// Worker → requester: the receipt of a job you submitted.
    Deliver(Box<SignedReceipt>),
}

impl Message for JobRequest {
    const MAX: usize = MAX_JOB_REQUEST;
}

/// A response on `/phase/job/1.0.0`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResponse {
    /// The job is accepted; its receipt comes later.
    Accepted(JobId),
    /// The job is refused.
    Rejected(Rejection),
    /// The job's state.
    Status {
        /// Which job.
        job: JobId,
        /// Its state.
        state: JobState,
    },
    /// The job's signed receipt.
    Receipt(Box<SignedReceipt>),
    /// No such job here.
    NotFound(JobId),
    /// The answer to a capability query.
    Capabilities(WorkerInfo),
    /// A delivered receipt was received.
    Delivered,
}

impl Message for JobResponse {
    const MAX: usize = MAX_JOB_RESPONSE;
}

impl JobResponse {
    /// What kind of answer this is, for a line that says one was unexpected.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Accepted(_) => "an acceptance",
            Self::Rejected(_) => "a rejection",
            Self::Status { .. } => "a status",
            Self::Receipt(_) => "a receipt",
            Self::NotFound(_) => "not found",
            Self::Capabilities(_) => "its capabilities",
            Self::Delivered => "a delivery acknowledgement",
        }
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_within_bounds() {
        Limits::default().validate().unwrap();
    }

    fn module() -> Cid {
        cid::raw_cid(b"module")
    }

    #[test]
    fn default_permissions_leave_the_encoding_and_the_id_as_before() {
        let spec = JobSpec::new(module());
        assert!(spec.permissions.is_default());
        let bytes = spec.encode();
        assert!(!bytes.windows(11).any(|w| w == b"permissions"));
        // The same spec decoded from bytes without the field.
        assert_eq!(JobSpec::decode(&bytes).unwrap(), spec);
        let mut read_only = spec.clone();
        read_only.permissions.fs = FsAccess::Read;
        assert_ne!(read_only.id(), spec.id());
        assert_eq!(JobSpec::decode(&read_only.encode()).unwrap(), read_only);
    }

    #[test]
    fn fs_levels_mount_what_they_name() {
        assert!(!FsAccess::None.input() && !FsAccess::None.output());
        assert!(FsAccess::Read.input() && !FsAccess::Read.output());
        assert!(FsAccess::Write.input() && FsAccess::Write.output());
        for level in [FsAccess::None, FsAccess::Read, FsAccess::Write] {
            assert_eq!(level.as_str().parse::<FsAccess>(), Ok(level));
        }
        assert_eq!(
            "rw".parse::<FsAccess>(),
            Err(PermissionError::Fs("rw".into()))
        );
    }

    #[test]
    fn net_entries_must_be_host_and_port() {
        for good in [
            "127.0.0.1:8080",
            "example.org:443",
            "a-b.c:1",
            "[::1]:65535",
        ] {
            assert_eq!(check_net_host(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "example.org",
            "example.org:",
            "example.org:0",
            "example.org:080",
            "example.org:65536",
            ":80",
            "Example.org:80",
            "-a.org:80",
            "a..org:80",
            "::1:80",
            "[::1:80",
            "http://a.org:80",
            "a.org:80/path",
        ] {
            assert_eq!(
                check_net_host(bad),
                Err(PermissionError::Host(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn permissions_that_contradict_the_job_are_malformed() {
        let mut spec = JobSpec::new(module());
        spec.input = Some(cid::raw_cid(b"input"));
        spec.permissions.fs = FsAccess::None;
        assert_eq!(
            spec.validate(),
            Err(SpecError::Permissions(PermissionError::InputNotMounted))
        );
        spec.permissions.fs = FsAccess::Read;
        assert_eq!(spec.validate(), Ok(()));

        let mut spec = JobSpec::new(module());
        spec.permissions.net = vec!["127.0.0.1:8080".into()];
        assert_eq!(spec.validate(), Ok(()));
        spec.deterministic = true;
        let err = spec.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "permissions.net: a job with network access cannot be deterministic"
        );
        spec.deterministic = false;
        spec.permissions.net = vec!["x.org:1".into(); MAX_NET_HOSTS + 1];
        assert_eq!(
            spec.validate(),
            Err(SpecError::Permissions(PermissionError::TooManyHosts))
        );
    }

    #[test]
    fn a_job_that_may_use_the_network_needs_wasi_http() {
        let mut spec = JobSpec::new(module());
        assert!(spec.required_capabilities().is_empty());
        spec.permissions.net = vec!["127.0.0.1:8080".into()];
        assert_eq!(
            spec.required_capabilities(),
            BTreeSet::from([Capability::WASI_HTTP])
        );
    }

    #[test]
    fn built_in_capabilities_are_well_formed_names() {
        for c in [
            Capability::WASI_P1,
            Capability::WASI_P2,
            Capability::DETERMINISTIC,
            Capability::WASI_HTTP,
        ] {
            assert_eq!(c.as_str().parse::<Capability>(), Ok(c.clone()));
        }
    }

    #[test]
    fn the_first_limit_above_the_maximum_is_named() {
        let max = Limits::default();
        assert_eq!(Limits::default().first_exceeding(&max), None);
        let asked = Limits {
            memory: ByteSize(max.memory.0 + 1),
            max_output: ByteSize(max.max_output.0 + 1),
            ..max
        };
        assert_eq!(
            asked.first_exceeding(&max),
            Some((LimitKind::Memory, max.memory.0 + 1, max.memory.0))
        );
        let slow = Limits {
            timeout: max.timeout + Duration::from_millis(5),
            ..max
        };
        let (kind, asked_ms, max_ms) = slow.first_exceeding(&max).unwrap();
        assert_eq!((kind, asked_ms - max_ms), (LimitKind::Timeout, 5));
        assert_eq!(LimitKind::MaxOutput.to_string(), "max_output");
    }

    #[test]
    fn absurd_limits_are_refused() {
        let l = Limits {
            fuel: u64::MAX,
            ..Limits::default()
        };
        assert_eq!(l.validate(), Err(LimitError::Fuel(u64::MAX)));
        let l = Limits {
            timeout: Duration::ZERO,
            ..Limits::default()
        };
        assert!(matches!(l.validate(), Err(LimitError::Timeout(_))));
    }
}
