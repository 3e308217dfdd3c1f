//! Prometheus metrics of a node, served at `GET /metrics`: the node's own
//! (jobs, receipts, blocks, peers, module cache) and libp2p's (swarm,
//! Kademlia, identify, ping) in one registry. Handles are cheap clones of
//! atomics; the component that sees an event counts it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use phase_protocol::job::Rejection;

/// Labels of a refused job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `busy`, `limits_too_high`, `unsupported_capability`, `malformed`, `denied`.
    pub reason: &'static str,
}

impl RejectLabels {
    /// The label of a rejection.
    #[must_use]
    pub fn of(rejection: &Rejection) -> Self {
        let reason = match rejection {
            Rejection::Busy => "busy",
            Rejection::LimitsTooHigh { .. } => "limits_too_high",
            Rejection::UnsupportedCapability { .. } => "unsupported_capability",
            Rejection::Malformed { .. } => "malformed",
            Rejection::Denied => "denied",
            Rejection::Paused => "paused",
            Rejection::LowOnDisk { .. } => "low_on_disk",
        };
        Self { reason }
    }
}

/// What the worker and the requester count.
#[derive(Clone, Debug)]
pub struct JobMetrics {
    /// Jobs admitted by the worker.
    pub admitted: Counter,
    /// Jobs refused by the worker, by reason.
    pub rejected: Family<RejectLabels, Counter>,
    /// Jobs running now.
    pub running: Gauge,
    /// Jobs admitted and waiting for a slot.
    pub queued: Gauge,
    /// Wall time of runs, in seconds.
    pub run_seconds: Histogram,
    /// Fuel runs consumed.
    pub fuel: Histogram,
    /// Receipts signed.
    pub receipts: Counter,
    /// Compiled modules found ready (memory or disk cache).
    pub cache_hits: Counter,
    /// Modules compiled.
    pub cache_misses: Counter,
    /// Jobs this node submitted and got verified results for.
    pub submitted: Counter,
    /// Capability queries the worker answered (what requesters' discovery
    /// costs it).
    pub capability_answers: Counter,
}

/// What the network counts.
#[derive(Clone, Debug)]
pub struct BlockMetrics {
    /// Blocks sent to peers.
    pub served_blocks: Counter,
    /// Their bytes.
    pub served_bytes: Counter,
    /// Blocks received from peers.
    pub fetched_blocks: Counter,
    /// Their bytes.
    pub fetched_bytes: Counter,
    /// Peers connected now.
    pub peers: Gauge,
}

/// Labels of a reachability state or a connection kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `public` / `private` / `unknown`, or `direct` / `relayed`.
    pub kind: &'static str,
}

/// What NAT traversal counts. Relayed bytes are libp2p's
/// `libp2p_bandwidth_bytes` whose `protocols` label has `p2p-circuit`.
#[derive(Clone, Debug)]
pub struct NatMetrics {
    /// Hole punches tried (DCUtR outcomes).
    pub hole_punch_attempts: Counter,
    /// Hole punches that gave a direct connection.
    pub hole_punch_successes: Counter,
    /// 1 for the node's reachability now, 0 for the others.
    reachability: Family<KindLabels, Gauge>,
    /// Relays this node holds a reservation on.
    relay_reservations: Gauge,
    /// Open connections, direct and relayed.
    connections: Family<KindLabels, Gauge>,
}

/// What the NAT gauges show: the network's snapshot, in plain numbers (so
/// metrics know nothing of the network's types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatGauges<'a> {
    /// `public`, `private` or `unknown`.
    pub reachability: &'a str,
    /// Relays this node holds a reservation on.
    pub relays: usize,
    /// Open direct connections.
    pub direct: usize,
    /// Open relayed connections.
    pub relayed: usize,
}

impl NatMetrics {
    /// Sets the gauges.
    pub fn set(&self, now: NatGauges<'_>) {
        for state in ["public", "private", "unknown"] {
            let on = i64::from(now.reachability == state);
            self.reachability
                .get_or_create(&KindLabels { kind: state })
                .set(on);
        }
        self.relay_reservations
            .set(i64::try_from(now.relays).unwrap_or(i64::MAX));
        for (kind, n) in [("direct", now.direct), ("relayed", now.relayed)] {
            self.connections
                .get_or_create(&KindLabels { kind })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// The work ledger's totals, set from the ledger when metrics are read (so
/// they count since the ledger began, not since the node started).
#[derive(Clone, Debug, Default)]
pub struct LedgerMetrics {
    /// Receipts in the ledger, `worked` (signed here) and `received`.
    jobs: Family<KindLabels, Gauge>,
    /// Fuel they name.
    fuel: Family<KindLabels, Gauge>,
    /// Audits of workers' runs, `passed` and `failed`.
    audits: Family<KindLabels, Gauge>,
}

/// What the ledger gauges show, in plain numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerGauges {
    /// Jobs this node ran, and their fuel.
    pub worked: (u64, u64),
    /// Jobs other nodes ran for this one, and their fuel.
    pub received: (u64, u64),
    /// Audits passed.
    pub audits_passed: u64,
    /// Audits failed.
    pub audits_failed: u64,
}

impl LedgerMetrics {
    /// Sets the gauges.
    pub fn set(&self, now: LedgerGauges) {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (kind, (jobs, fuel)) in [("worked", now.worked), ("received", now.received)] {
            self.jobs.get_or_create(&KindLabels { kind }).set(n(jobs));
            self.fuel.get_or_create(&KindLabels { kind }).set(n(fuel));
        }
        for (kind, count) in [("passed", now.audits_passed), ("failed", now.audits_failed)] {
            self.audits
                .get_or_create(&KindLabels { kind })
                .set(n(count));
        }
    }
}

/// The registry and the node's metric handles.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Jobs and receipts.
    pub jobs: JobMetrics,
    /// Blocks and peers.
    pub blocks: BlockMetrics,
    /// Reachability, relays, hole punching.
    pub nat: NatMetrics,
    /// HTTP API requests being answered now.
    pub api_in_flight: Gauge,
    /// The work ledger's totals.
    pub ledger: LedgerMetrics,
}

impl Metrics {
    /// A registry with the node's metrics, and libp2p's recorder over it
    /// (for the swarm task to own).
    #[must_use]
    pub fn new() -> (Self, libp2p::metrics::Metrics) {
        let mut registry = Registry::default();
        let p2p = libp2p::metrics::Metrics::new(&mut registry);
        let phase = registry.sub_registry_with_prefix("phase");
        let jobs = JobMetrics {
            admitted: Counter::default(),
            rejected: Family::default(),
            running: Gauge::default(),
            queued: Gauge::default(),
            run_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 12)),
            fuel: Histogram::new(exponential_buckets(1_000.0, 10.0, 12)),
            receipts: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            submitted: Counter::default(),
            capability_answers: Counter::default(),
        };
        phase.register(
            "jobs_admitted",
            "Jobs admitted by the worker",
            jobs.admitted.clone(),
        );
        phase.register(
            "jobs_rejected",
            "Jobs refused by the worker, by reason",
            jobs.rejected.clone(),
        );
        phase.register("jobs_running", "Jobs running now", jobs.running.clone());
        phase.register(
            "jobs_queued",
            "Jobs admitted and waiting for a slot",
            jobs.queued.clone(),
        );
        phase.register(
            "job_run_seconds",
            "Wall time of runs in the sandbox",
            jobs.run_seconds.clone(),
        );
        phase.register("job_fuel", "Fuel consumed by runs", jobs.fuel.clone());
        phase.register("receipts_signed", "Receipts signed", jobs.receipts.clone());
        phase.register(
            "module_cache_hits",
            "Modules found compiled in the cache",
            jobs.cache_hits.clone(),
        );
        phase.register(
            "module_cache_misses",
            "Modules compiled",
            jobs.cache_misses.clone(),
        );
        phase.register(
            "jobs_submitted",
            "Jobs submitted from this node with verified results",
            jobs.submitted.clone(),
        );
        phase.register(
            "capability_answers",
            "Capability queries the worker answered",
            jobs.capability_answers.clone(),
        );
        let blocks = BlockMetrics {
            served_blocks: Counter::default(),
            served_bytes: Counter::default(),
            fetched_blocks: Counter::default(),
            fetched_bytes: Counter::default(),
            peers: Gauge::default(),
        };
        phase.register(
            "blocks_served",
            "Blocks sent to peers",
            blocks.served_blocks.clone(),
        );
        phase.register(
            "block_bytes_served",
            "Bytes of blocks sent to peers",
            blocks.served_bytes.clone(),
        );
        phase.register(
            "blocks_fetched",
            "Blocks received from peers",
            blocks.fetched_blocks.clone(),
        );
        phase.register(
            "block_bytes_fetched",
            "Bytes of blocks received from peers",
            blocks.fetched_bytes.clone(),
        );
        phase.register(
            "peers_connected",
            "Peers connected now",
            blocks.peers.clone(),
        );
        let nat = NatMetrics {
            hole_punch_attempts: Counter::default(),
            hole_punch_successes: Counter::default(),
            reachability: Family::default(),
            relay_reservations: Gauge::default(),
            connections: Family::default(),
        };
        phase.register(
            "hole_punch_attempts",
            "Hole punches tried (DCUtR)",
            nat.hole_punch_attempts.clone(),
        );
        phase.register(
            "hole_punch_successes",
            "Hole punches that gave a direct connection",
            nat.hole_punch_successes.clone(),
        );
        phase.register(
            "reachability",
            "1 for the node's reachability now (public, private, unknown)",
            nat.reachability.clone(),
        );
        phase.register(
            "relay_reservations",
            "Relays this node holds a reservation on",
            nat.relay_reservations.clone(),
        );
        phase.register(
            "connections",
            "Open connections, direct and relayed",
            nat.connections.clone(),
        );
        let api_in_flight = Gauge::default();
        phase.register(
            "api_requests_in_flight",
            "HTTP API requests being answered now",
            api_in_flight.clone(),
        );
        let ledger = LedgerMetrics::default();
        phase.register(
            "ledger_jobs",
            "Receipts in the work ledger: worked (signed here) and received",
            ledger.jobs.clone(),
        );
        phase.register(
            "ledger_fuel",
            "Fuel the work ledger's receipts name: worked and received",
            ledger.fuel.clone(),
        );
        phase.register(
            "ledger_audits",
            "Audits of workers' runs in the work ledger: passed and failed",
            ledger.audits.clone(),
        );
        (
            Self {
                registry,
                jobs,
                blocks,
                nat,
                api_in_flight,
                ledger,
            },
            p2p,
        )
    }

    /// The registry, for libp2p's bandwidth counters (added when the swarm
    /// is built).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The metrics in the OpenMetrics text format Prometheus reads.
    ///
    /// # Errors
    /// Only if formatting fails.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_metric_once_counted() {
        let (metrics, _p2p) = Metrics::new();
        metrics.jobs.admitted.inc();
        metrics
            .jobs
            .rejected
            .get_or_create(&RejectLabels::of(&Rejection::Busy))
            .inc();
        metrics.jobs.run_seconds.observe(0.5);
        metrics.ledger.set(LedgerGauges {
            worked: (3, 300),
            audits_failed: 1,
            ..LedgerGauges::default()
        });
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("phase_ledger_jobs{kind=\"worked\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("phase_ledger_fuel{kind=\"received\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("phase_ledger_audits{kind=\"failed\"} 1"),
            "{text}"
        );
        assert!(text.contains("phase_jobs_admitted_total 1"), "{text}");
        assert!(
            text.contains("phase_jobs_rejected_total{reason=\"busy\"} 1"),
            "{text}"
        );
        assert!(text.contains("phase_job_run_seconds_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
