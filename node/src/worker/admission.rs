//! Admission: whether a job may be taken here. What the job asks (limits,
//! capabilities, a well-formed spec) and who asks (allow/deny lists) are
//! checked first; then whether there is room: `slots + queue` jobs admitted
//! at most, and each requester at most its share of them. A worker that is
//! full answers `busy`; it never queues without bound.
//!
//! Owned by the worker's actor; plain data, no I/O.

use std::collections::HashMap;

use libp2p::PeerId;
use tracing::{debug, warn};

use phase_protocol::job::Rejection;
use phase_protocol::{Capability, JobSpec};

use super::worker_capabilities;
use crate::config::WorkerConfig;

/// The admission state: jobs admitted (queued or running), per requester.
#[derive(Debug)]
pub(super) struct Admission {
    config: WorkerConfig,
    capabilities: Vec<Capability>,
    /// Jobs admitted at most: `slots + queue`.
    capacity: usize,
    admitted: usize,
    /// Jobs admitted per requester; no zero entries.
    per_requester: HashMap<PeerId, usize>,
}

impl Admission {
    pub(super) fn new(config: WorkerConfig) -> Self {
        Self {
            capacity: config.slots.max(1) as usize + config.queue as usize,
            capabilities: worker_capabilities(&config),
            admitted: 0,
            per_requester: HashMap::new(),
            config,
        }
    }

    /// Takes a volunteer's changed preferences (slots, the memory cap).
    pub(super) fn update(&mut self, config: WorkerConfig) {
        self.capacity = config.slots.max(1) as usize + config.queue as usize;
        self.config = config;
    }

    /// Whether `spec` from `peer` may run here at all (room aside).
    ///
    /// # Errors
    /// The [`Rejection`] to answer.
    pub(super) fn check(&self, peer: &PeerId, spec: &JobSpec) -> Result<(), Rejection> {
        if !self.config.admits(peer) {
            warn!(%peer, "job from a denied requester refused");
            return Err(Rejection::Denied);
        }
        spec.validate().map_err(|e| Rejection::Malformed {
            message: e.to_string(),
        })?;
        if let Some((limit, requested, max)) =
            spec.limits.first_exceeding(&self.config.max_limits())
        {
            return Err(Rejection::LimitsTooHigh {
                limit,
                requested,
                max,
            });
        }
        if let Some(missing) = spec
            .required_capabilities()
            .into_iter()
            .find(|c| !self.capabilities.contains(c))
        {
            return Err(Rejection::UnsupportedCapability {
                capability: missing,
            });
        }
        Ok(())
    }

    /// Takes a place for a job of `peer`, if the worker and the requester's
    /// share have room.
    ///
    /// # Errors
    /// [`Rejection::Busy`].
    pub(super) fn reserve(&mut self, peer: PeerId) -> Result<(), Rejection> {
        let mine = self.per_requester.get(&peer).copied().unwrap_or(0);
        if mine >= self.config.per_requester() {
            debug!(%peer, admitted = mine, "requester at its share of this worker; busy");
            return Err(Rejection::Busy);
        }
        if self.admitted >= self.capacity {
            debug!(%peer, "all slots and the queue are full; busy");
            return Err(Rejection::Busy);
        }
        self.admitted += 1;
        *self.per_requester.entry(peer).or_default() += 1;
        Ok(())
    }

    /// Gives back the place of a job of `peer` that is over.
    pub(super) fn release(&mut self, peer: &PeerId) {
        self.admitted = self.admitted.saturating_sub(1);
        if let Some(n) = self.per_requester.get_mut(peer) {
            *n -= 1;
            if *n == 0 {
                self.per_requester.remove(peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::{ByteSize, LimitKind, Limits};

    fn config(slots: u32, queue: u32, share: u32) -> WorkerConfig {
        WorkerConfig {
            slots,
            queue,
            max_per_requester: share,
            ..WorkerConfig::default()
        }
    }

    #[test]
    fn limits_above_the_maximum_name_the_limit() {
        let admission = Admission::new(WorkerConfig::default());
        let peer = PeerId::random();
        let mut spec = JobSpec::new(phase_protocol::cid::raw_cid(b"m"));
        assert_eq!(admission.check(&peer, &spec), Ok(()));
        spec.limits = Limits {
            memory: ByteSize(2 << 30),
            ..Limits::default()
        };
        assert_eq!(
            admission.check(&peer, &spec),
            Err(Rejection::LimitsTooHigh {
                limit: LimitKind::Memory,
                requested: 2 << 30,
                max: 1 << 30
            })
        );
    }

    #[test]
    fn unknown_capabilities_and_denied_peers_are_refused() {
        let denied = PeerId::random();
        let admission = Admission::new(WorkerConfig {
            deny: vec![denied],
            ..WorkerConfig::default()
        });
        let mut spec = JobSpec::new(phase_protocol::cid::raw_cid(b"m"));
        assert_eq!(admission.check(&denied, &spec), Err(Rejection::Denied));
        let gpu: Capability = "gpu".parse().unwrap();
        spec.capabilities.insert(gpu.clone());
        assert_eq!(
            admission.check(&PeerId::random(), &spec),
            Err(Rejection::UnsupportedCapability { capability: gpu })
        );
    }

    #[test]
    fn a_job_that_may_use_the_network_is_refused_by_a_worker_without_http() {
        let admission = Admission::new(WorkerConfig::default());
        let mut spec = JobSpec::new(phase_protocol::cid::raw_cid(b"m"));
        spec.permissions.net = vec!["127.0.0.1:8080".into()];
        assert_eq!(
            admission.check(&PeerId::random(), &spec),
            Err(Rejection::UnsupportedCapability {
                capability: Capability::WASI_HTTP
            })
        );
        // Folders are the worker's to give at every level.
        spec.permissions.net.clear();
        spec.permissions.fs = phase_protocol::job::FsAccess::None;
        assert_eq!(admission.check(&PeerId::random(), &spec), Ok(()));
        // A worker that allows some host takes it (which hosts a request
        // may reach is the run's to check).
        let open = Admission::new(WorkerConfig {
            net_allow: vec!["127.0.0.1:9".into()],
            ..WorkerConfig::default()
        });
        spec.permissions.net = vec!["127.0.0.1:8080".into()];
        assert_eq!(open.check(&PeerId::random(), &spec), Ok(()));
    }

    #[test]
    fn a_requester_gets_its_share_and_the_worker_its_capacity() {
        let mut admission = Admission::new(config(1, 2, 2));
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(admission.reserve(a), Ok(()));
        assert_eq!(admission.reserve(a), Ok(()));
        assert_eq!(admission.reserve(a), Err(Rejection::Busy), "a's share");
        assert_eq!(admission.reserve(b), Ok(()));
        assert_eq!(admission.reserve(b), Err(Rejection::Busy), "capacity 3");
        admission.release(&a);
        assert_eq!(admission.reserve(b), Ok(()));
        admission.release(&a);
        admission.release(&b);
        admission.release(&b);
        assert!(admission.per_requester.is_empty());
        assert_eq!(admission.admitted, 0);
    }
}
