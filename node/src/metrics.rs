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

/// The registry and the node's metric handles.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Jobs and receipts.
    pub jobs: JobMetrics,
    /// Blocks and peers.
    pub blocks: BlockMetrics,
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
        (
            Self {
                registry,
                jobs,
                blocks,
            },
            p2p,
        )
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
        let text = metrics.encode().unwrap();
        assert!(text.contains("phase_jobs_admitted_total 1"), "{text}");
        assert!(
            text.contains("phase_jobs_rejected_total{reason=\"busy\"} 1"),
            "{text}"
        );
        assert!(text.contains("phase_job_run_seconds_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
