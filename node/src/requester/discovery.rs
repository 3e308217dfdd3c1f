//! Finding workers: the providers of the job's capability key in the DHT
//! (Kademlia provider records, never a scan of the routing table), at most
//! [`MAX_CANDIDATES`] of them picked at random, each asked what it offers
//! (limits, free slots), kept if the offer covers the job, and ranked by
//! free slots, then round-trip time in 50 ms steps, ties in random order.

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
/// Candidates asked for their capabilities at most, picked at random from
/// the providers found, so that many requesters spread over many workers.
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
    shuffle(&mut found);
    found.truncate(MAX_CANDIDATES);
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

/// Round trips within one step of this count as equal: on one LAN (or
/// loopback) any idle worker is as good as another.
const RTT_STEP: Duration = Duration::from_millis(50);

/// Most free slots first, then the nearest (round trip in [`RTT_STEP`]s);
/// workers equal on both in random order, so one requester's jobs spread
/// over the idle workers instead of piling on whichever answered first.
fn rank(mut offers: Vec<(PeerId, WorkerInfo, Duration)>) -> Vec<PeerId> {
    // A stable sort keeps the shuffled order among ties.
    shuffle(&mut offers);
    offers.sort_by_key(|(_, info, rtt)| {
        let step = rtt.as_millis() / RTT_STEP.as_millis();
        (std::cmp::Reverse(info.free_slots), step)
    });
    offers.into_iter().map(|(peer, _, _)| peer).collect()
}

/// Fisher-Yates.
fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = usize::try_from(rand::random::<u64>() % (i as u64 + 1)).unwrap_or(i);
        items.swap(i, j);
    }
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
            (a, offer(2, 0), ms(300)),
            (b, offer(1, 0), ms(1)),
            (c, offer(2, 0), ms(3)),
        ]);
        assert_eq!(ranked, vec![c, a, b], "slots first, then a far round trip");
    }

    #[test]
    fn equally_good_workers_are_ranked_in_random_order() {
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let ms = Duration::from_millis;
        let firsts: BTreeSet<PeerId> = (0..100)
            .map(|i| {
                // Found in the same order every time, answering within 50 ms.
                let offers = peers
                    .iter()
                    .enumerate()
                    .map(|(n, p)| (*p, offer(2, 0), ms((n as u64 * 7 + i) % 40)))
                    .collect();
                rank(offers)[0]
            })
            .collect();
        // All four first in turn (each missing from 100 draws: 4 x 0.75^100).
        assert_eq!(firsts.len(), 4, "ties are broken at random");
    }
}
