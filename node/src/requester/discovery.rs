//! Finding workers: the providers of the job's capability key in the DHT,
//! topped up from the routing table, each asked what it offers (limits,
//! free slots), kept if the offer covers the job, and ranked by free slots,
//! then round-trip time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tracing::debug;

use phase_protocol::job::{JobRequest, JobResponse, WorkerInfo};
use phase_protocol::{Capability, JobSpec};

use super::SubmitError;
use crate::network::NetworkClient;

/// Deadline of one status or capability query.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(10);
/// Candidates asked for their capabilities at most: the DHT's providers
/// first, topped up from the routing table (a provider lookup can end
/// before every provider has answered, and in a small network the routing
/// table holds everyone).
pub const MAX_CANDIDATES: usize = 32;

/// The capability looked up in the DHT to find workers for `spec`.
#[must_use]
pub fn search_capability(spec: &JobSpec) -> Capability {
    spec.capabilities
        .iter()
        .next()
        .cloned()
        .unwrap_or(if spec.deterministic {
            Capability::DETERMINISTIC
        } else {
            Capability::WASI_P1
        })
}

/// Workers able to run `spec`, best first.
///
/// # Errors
/// When the DHT lookup fails, or nobody fits.
pub async fn find_workers(
    network: &NetworkClient,
    spec: &JobSpec,
) -> Result<Vec<PeerId>, SubmitError> {
    let capability = search_capability(spec);
    let me = network.peer_id();
    let mut found: Vec<PeerId> = network
        .find_capability(&capability)
        .await?
        .into_iter()
        .filter(|p| *p != me)
        .collect();
    debug!(%capability, found = found.len(), "workers found in the DHT");
    for peer in network.routing_peers().await? {
        if found.len() >= MAX_CANDIDATES {
            break;
        }
        if !found.contains(&peer) {
            found.push(peer);
        }
    }
    let queries = found.into_iter().map(|peer| async move {
        let started = Instant::now();
        let answer = tokio::time::timeout(
            QUERY_DEADLINE,
            network.request_job(peer, JobRequest::Capabilities),
        )
        .await;
        match answer {
            Ok(Ok(JobResponse::Capabilities(info))) => Some((peer, info, started.elapsed())),
            other => {
                debug!(%peer, ?other, "no capability answer");
                None
            }
        }
    });
    let fit: Vec<_> = futures::future::join_all(queries)
        .await
        .into_iter()
        .flatten()
        .filter(|(_, info, _)| fits(spec, info))
        .collect();
    if fit.is_empty() {
        return Err(SubmitError::NoWorkers { capability });
    }
    Ok(rank(fit))
}

/// Most free slots first, then the quickest to answer.
fn rank(mut offers: Vec<(PeerId, WorkerInfo, Duration)>) -> Vec<PeerId> {
    offers.sort_by(|a, b| b.1.free_slots.cmp(&a.1.free_slots).then(a.2.cmp(&b.2)));
    offers.into_iter().map(|(peer, _, _)| peer).collect()
}

/// Whether a worker's offer covers the job.
fn fits(spec: &JobSpec, info: &WorkerInfo) -> bool {
    let mut needed: BTreeSet<Capability> = spec.capabilities.clone();
    if spec.deterministic {
        needed.insert(Capability::DETERMINISTIC);
    }
    needed.is_subset(&info.capabilities) && spec.limits.first_exceeding(&info.max_limits).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::cid::raw_cid;
    use phase_protocol::{ByteSize, Limits};

    fn offer(free_slots: u32, memory: u64) -> WorkerInfo {
        WorkerInfo {
            capabilities: [Capability::WASI_P1, Capability::DETERMINISTIC].into(),
            max_limits: Limits {
                memory: ByteSize(memory),
                ..Limits::default()
            },
            slots: 4,
            free_slots,
            runtime: "test".into(),
        }
    }

    #[test]
    fn offers_that_fit_are_ranked_by_free_slots_then_speed() {
        let mut spec = JobSpec::new(raw_cid(b"m"));
        spec.deterministic = true;
        assert_eq!(search_capability(&spec), Capability::DETERMINISTIC);
        assert!(fits(&spec, &offer(1, 1 << 30)));
        assert!(!fits(&spec, &offer(1, 1 << 20)), "too little memory");
        spec.capabilities.insert(Capability::WASI_P2);
        assert!(!fits(&spec, &offer(1, 1 << 30)), "no wasi-p2");
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let ms = Duration::from_millis;
        let ranked = rank(vec![
            (a, offer(1, 0), ms(1)),
            (b, offer(2, 0), ms(9)),
            (c, offer(2, 0), ms(3)),
        ]);
        assert_eq!(ranked, vec![c, b, a]);
    }
}
