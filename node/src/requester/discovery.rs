//! Finding workers: the connected peers that speak the job protocol (a
//! bootstrap or mDNS peer is found at once, as Bitswap asks its connected
//! peers first) and the providers of the job's capability key in the DHT
//! (Kademlia provider records in the phase DHT and the LAN DHT, never a
//! scan of the routing table), at most [`MAX_CANDIDATES`] of them picked at
//! random, each asked what it offers (limits, free slots), kept if the
//! offer covers the job, and ranked by free slots, then round-trip time in
//! 50 ms steps, ties in random order. What they offer is remembered
//! ([`super::offers`]): the next job is ranked from it, and a round runs
//! again in the background when it is due. While nobody answers, discovery is
//! tried again every [`RETRY`] until the caller's wait is over; then (or at
//! once when workers answered and none fits) the error says what was tried
//! ([`Tried`]).

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use rand::seq::SliceRandom;
use tracing::debug;

use phase_protocol::job::{JobRequest, JobResponse, WorkerInfo};
use phase_protocol::{Capability, JobSpec};

use super::SubmitError;
use super::offers::{Offer, Offers};
use crate::network::{NetworkClient, NetworkError};

/// Deadline of one status or capability query.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(10);
/// Candidates asked for their capabilities at most, picked at random from
/// the providers found, so that many requesters spread over many workers.
pub const MAX_CANDIDATES: usize = 32;

/// The capability looked up in the DHT to find workers for `spec`.
#[must_use]
pub fn search_capability(spec: &JobSpec) -> Capability {
    spec.required_capabilities()
        .into_iter()
        .next()
        .unwrap_or(if spec.deterministic {
            Capability::DETERMINISTIC
        } else {
            Capability::WASI_P1
        })
}

/// How often discovery is tried again while nobody answers.
pub const RETRY: Duration = Duration::from_secs(1);

/// What a discovery tried, for the one line that says why nobody was
/// found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tried {
    /// Connected peers that speak the job protocol.
    pub connected: usize,
    /// Providers of the capability found in the DHTs.
    pub providers: usize,
    /// Peers asked for their offer.
    pub asked: usize,
    /// Peers that answered with an offer.
    pub answered: usize,
    /// Whether this node is a server of the phase DHT.
    pub dht_server: bool,
    /// Peers in the phase DHT's routing table.
    pub routing_peers: usize,
    /// Peers in the LAN DHT's routing table.
    pub lan_peers: usize,
    /// How long discovery went on.
    pub waited: Duration,
}

impl std::fmt::Display for Tried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "for {}s: {} connected phase peers and {} DHT providers, {} asked, {} answered, none fits; \
             DHT {} with {} peers, LAN DHT {} peers",
            self.waited.as_secs(),
            self.connected,
            self.providers,
            self.asked,
            self.answered,
            if self.dht_server { "server" } else { "client" },
            self.routing_peers,
            self.lan_peers,
        )?;
        if self.connected == 0 && self.routing_peers == 0 && self.lan_peers == 0 {
            write!(
                f,
                "; no peers at all: pass --bootstrap MULTIADDR/p2p/PEERID (an address \
                 that `phase-node id` prints on a running node), or run one on this LAN \
                 with mDNS on"
            )?;
        }
        Ok(())
    }
}

/// Whether a discovery may answer from the requester's cache of offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asking {
    /// Ranked from what workers offered lately when that fits the job
    /// (refreshed in the background when due): a job on a warm network
    /// asks nobody before its submission.
    Cached,
    /// A round of its own: the provider lookup and the candidates asked
    /// (when every worker found before has failed the job).
    Fresh,
}

/// Workers able to run `spec`, best first, trying again every [`RETRY`]
/// for up to `wait` while nobody answers. What they answer is remembered
/// in `offers`.
///
/// # Errors
/// [`SubmitError::NoWorkers`] saying what was tried, or the network is
/// gone.
pub async fn find_workers(
    network: &NetworkClient,
    offers: &Offers,
    spec: &JobSpec,
    wait: Duration,
    asking: Asking,
) -> Result<Vec<PeerId>, SubmitError> {
    let capability = search_capability(spec);
    if asking == Asking::Cached
        && let Some(cached) = offers.cached(&capability)
    {
        if cached.refresh {
            refresh_in_background(network, offers, &capability);
        }
        // Only workers still connected: one that went away since its
        // answer is not sent the job (a round finds who is there).
        let connected: HashSet<PeerId> = network.job_peers().await?.into_iter().collect();
        let fit: Vec<Offer> = cached
            .offers
            .into_iter()
            .filter(|o| connected.contains(&o.peer) && fits(spec, &o.info))
            .collect();
        if !fit.is_empty() {
            debug!(%capability, workers = fit.len(), "workers ranked from cached offers");
            return Ok(rank(fit));
        }
    }
    let started = Instant::now();
    loop {
        let (answers, mut tried) = round(network, &capability).await?;
        if !answers.is_empty() {
            offers.record(&capability, &answers);
        }
        let fit: Vec<Offer> = answers
            .into_iter()
            .filter(|o| fits(spec, &o.info))
            .collect();
        if !fit.is_empty() {
            return Ok(rank(fit));
        }
        let waited = started.elapsed();
        // Workers that answered and do not fit will not fit in a second
        // either: the wait is for finding someone, not for capacity.
        if waited >= wait || tried.answered > 0 {
            tried.waited = waited;
            return Err(SubmitError::NoWorkers { capability, tried });
        }
        tokio::time::sleep(RETRY.min(wait - waited)).await;
    }
}

/// Runs a round for `capability` on its own task, remembering what it
/// finds (the cache marked it as running: it ends one way or the other).
fn refresh_in_background(network: &NetworkClient, offers: &Offers, capability: &Capability) {
    let (network, offers, capability) = (network.clone(), offers.clone(), capability.clone());
    tokio::spawn(async move {
        match round(&network, &capability).await {
            Ok((answers, _)) if !answers.is_empty() => offers.record(&capability, &answers),
            _ => offers.refresh_failed(&capability),
        }
    });
}

/// One round of discovery: what the candidates found for `capability`
/// offered (fitting a job or not), and what was tried.
async fn round(
    network: &NetworkClient,
    capability: &Capability,
) -> Result<(Vec<Offer>, Tried), NetworkError> {
    let me = network.peer_id();
    let connected = network.job_peers().await?;
    let providers = network.find_capability(capability).await?;
    let dht = network.dht_state();
    let mut tried = Tried {
        connected: connected.len(),
        providers: providers.iter().filter(|p| **p != me).count(),
        dht_server: network.nat_status().await?.dht_server,
        routing_peers: dht.routing_peers,
        lan_peers: dht.lan_peers,
        ..Tried::default()
    };
    let mut found: Vec<PeerId> = connected
        .into_iter()
        .chain(providers)
        .filter(|p| *p != me)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    debug!(%capability, found = found.len(), "workers found (connected and in the DHT)");
    found.shuffle(&mut rand::rng());
    found.truncate(MAX_CANDIDATES);
    tried.asked = found.len();
    let queries = found.into_iter().map(|peer| async move {
        let started = Instant::now();
        let answer = tokio::time::timeout(
            QUERY_DEADLINE,
            network.request_job(peer, JobRequest::Capabilities),
        )
        .await;
        match answer {
            Ok(Ok(JobResponse::Capabilities(info))) => Some(Offer {
                peer,
                info,
                rtt: started.elapsed(),
            }),
            other => {
                debug!(%peer, ?other, "no capability answer");
                None
            }
        }
    });
    let answers: Vec<Offer> = futures::future::join_all(queries)
        .await
        .into_iter()
        .flatten()
        .collect();
    tried.answered = answers.len();
    Ok((answers, tried))
}

/// Round trips within one step of this count as equal: on one LAN (or
/// loopback) any idle worker is as good as another.
const RTT_STEP: Duration = Duration::from_millis(50);

/// Most free slots first, then the nearest, round trips counted in steps
/// of [`RTT_STEP`] or of twice the fastest answer, whichever is longer (on
/// a loaded machine every answer is slow, and the noise would otherwise
/// pick the same few workers); workers equal on both in random order, so
/// one requester's jobs spread over the idle workers instead of piling on
/// whichever answered first.
fn rank(mut offers: Vec<Offer>) -> Vec<PeerId> {
    let fastest = offers.iter().map(|o| o.rtt).min().unwrap_or_default();
    let step = RTT_STEP.max(fastest * 2).as_millis().max(1);
    // A stable sort keeps the shuffled order among ties.
    offers.shuffle(&mut rand::rng());
    offers.sort_by_key(|o| {
        (
            std::cmp::Reverse(o.info.free_slots),
            o.rtt.as_millis() / step,
        )
    });
    offers.into_iter().map(|o| o.peer).collect()
}

/// Whether a worker's offer covers the job.
fn fits(spec: &JobSpec, info: &WorkerInfo) -> bool {
    let mut needed: BTreeSet<Capability> = spec.required_capabilities();
    if spec.deterministic {
        needed.insert(Capability::DETERMINISTIC);
    }
    !info.paused
        && needed.is_subset(&info.capabilities)
        && spec.limits.first_exceeding(&info.max_limits).is_none()
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
            paused: false,
        }
    }

    fn answer(peer: PeerId, info: WorkerInfo, rtt: Duration) -> Offer {
        Offer { peer, info, rtt }
    }

    #[test]
    fn offers_that_fit_are_ranked_by_free_slots_then_speed() {
        let mut spec = JobSpec::new(raw_cid(b"m"));
        spec.deterministic = true;
        assert_eq!(search_capability(&spec), Capability::DETERMINISTIC);
        assert!(fits(&spec, &offer(1, 1 << 30)));
        assert!(!fits(&spec, &offer(1, 1 << 20)), "too little memory");
        let paused = WorkerInfo {
            paused: true,
            ..offer(1, 1 << 30)
        };
        assert!(!fits(&spec, &paused), "a paused worker is not asked");
        spec.capabilities.insert(Capability::WASI_P2);
        assert!(!fits(&spec, &offer(1, 1 << 30)), "no wasi-p2");
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let ms = Duration::from_millis;
        let ranked = rank(vec![
            answer(a, offer(2, 0), ms(300)),
            answer(b, offer(1, 0), ms(1)),
            answer(c, offer(2, 0), ms(3)),
        ]);
        assert_eq!(ranked, vec![c, a, b], "slots first, then a far round trip");
        // Everyone slow (a loaded machine): within twice the fastest is
        // equal, so both orders come up.
        let firsts: BTreeSet<PeerId> = (0..64)
            .map(|_| {
                rank(vec![
                    answer(a, offer(2, 0), ms(400)),
                    answer(c, offer(2, 0), ms(700)),
                ])[0]
            })
            .collect();
        assert_eq!(firsts.len(), 2, "400 ms and 700 ms are equal");
        let ranked = rank(vec![
            answer(a, offer(2, 0), ms(900)),
            answer(c, offer(2, 0), ms(400)),
        ]);
        assert_eq!(ranked, vec![c, a], "past twice the fastest is farther");
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
                    .map(|(n, p)| answer(*p, offer(2, 0), ms((n as u64 * 7 + i) % 40)))
                    .collect();
                rank(offers)[0]
            })
            .collect();
        // All four first in turn (each missing from 100 draws: 4 x 0.75^100).
        assert_eq!(firsts.len(), 4, "ties are broken at random");
    }
}
