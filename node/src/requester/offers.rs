//! What workers offered, remembered: the requester's cache of capability
//! answers, so that a job on a warm network costs one request to one worker
//! instead of a DHT lookup and [`super::MAX_CANDIDATES`] capability queries.
//!
//! A discovery round (one provider lookup of a capability key, and the
//! candidates it found asked what they offer) is remembered per capability
//! key. A job whose key was searched less than `refresh` ago is ranked from
//! what is remembered (of the workers still connected: discovery checks);
//! older than that, it still is, and one round runs in
//! the background to refresh it (never two at once for one key). Offers
//! older than [`STALE_AFTER`] `× refresh` are not used: that job waits for a
//! round of its own, as the first job does. Free slots are kept current
//! between rounds from what this requester does: a job a worker accepted
//! takes one, one that ended gives it back, a "busy" answer sets them to
//! none, and a worker that refused a job or was lost is dropped until the
//! next round finds it again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use phase_protocol::Capability;
use phase_protocol::job::WorkerInfo;

/// Offers older than this many refresh periods are not used.
pub const STALE_AFTER: u32 = 6;

/// Capability keys remembered at most (the oldest round is forgotten
/// first): a job names its capabilities, so a stranger's jobs could
/// otherwise grow the cache without bound.
pub const MAX_KEYS: usize = 64;

/// One worker's answer to a capability query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The worker.
    pub peer: PeerId,
    /// What it offered (free slots kept current by this requester).
    pub info: WorkerInfo,
    /// How long its answer took.
    pub rtt: Duration,
}

#[derive(Debug)]
struct Round {
    at: Instant,
    peers: HashSet<PeerId>,
    refreshing: bool,
}

#[derive(Debug)]
struct Remembered {
    info: WorkerInfo,
    rtt: Duration,
    at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    rounds: HashMap<Capability, Round>,
    offers: HashMap<PeerId, Remembered>,
}

/// What [`Offers::cached`] found.
#[derive(Debug)]
pub struct Cached {
    /// The fresh offers remembered for the key.
    pub offers: Vec<Offer>,
    /// Whether the caller should run a round in the background (it is
    /// marked as running: call [`Offers::record`] or
    /// [`Offers::refresh_failed`] when it ends).
    pub refresh: bool,
}

/// The cache. Cheap to clone; clones share it.
#[derive(Clone, Debug)]
pub struct Offers {
    inner: Arc<Mutex<Inner>>,
    refresh: Duration,
}

impl Offers {
    /// A cache whose rounds are refreshed when older than `refresh`
    /// (`[requester] offer_cache`); zero turns it off (every job runs its
    /// own round).
    #[must_use]
    pub fn new(refresh: Duration) -> Self {
        Self {
            inner: Arc::default(),
            refresh,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stale(&self) -> Duration {
        self.refresh.saturating_mul(STALE_AFTER)
    }

    /// The fresh offers remembered for `key`, or `None` when there are none
    /// (the caller runs a round itself).
    #[must_use]
    pub fn cached(&self, key: &Capability) -> Option<Cached> {
        self.cached_at(key, Instant::now())
    }

    fn cached_at(&self, key: &Capability, now: Instant) -> Option<Cached> {
        if self.refresh.is_zero() {
            return None;
        }
        let stale = self.stale();
        let mut inner = self.lock();
        let Inner { rounds, offers } = &mut *inner;
        let round = rounds.get_mut(key)?;
        let age = now.saturating_duration_since(round.at);
        if age >= stale {
            return None;
        }
        let found: Vec<Offer> = round
            .peers
            .iter()
            .filter_map(|peer| {
                let o = offers.get(peer)?;
                (now.saturating_duration_since(o.at) < stale).then(|| Offer {
                    peer: *peer,
                    info: o.info.clone(),
                    rtt: o.rtt,
                })
            })
            .collect();
        if found.is_empty() {
            return None;
        }
        let refresh = age >= self.refresh && !round.refreshing;
        round.refreshing |= refresh;
        Some(Cached {
            offers: found,
            refresh,
        })
    }

    /// Remembers a round of `key`: every answer it got.
    pub fn record(&self, key: &Capability, answers: &[Offer]) {
        self.record_at(key, answers, Instant::now());
    }

    fn record_at(&self, key: &Capability, answers: &[Offer], now: Instant) {
        if self.refresh.is_zero() {
            return;
        }
        let stale = self.stale();
        let mut inner = self.lock();
        let Inner { rounds, offers } = &mut *inner;
        for a in answers {
            offers.insert(
                a.peer,
                Remembered {
                    info: a.info.clone(),
                    rtt: a.rtt,
                    at: now,
                },
            );
        }
        rounds.insert(
            key.clone(),
            Round {
                at: now,
                peers: answers.iter().map(|a| a.peer).collect(),
                refreshing: false,
            },
        );
        while rounds.len() > MAX_KEYS {
            let oldest = rounds
                .iter()
                .min_by_key(|(_, r)| r.at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => rounds.remove(&k),
                None => break,
            };
        }
        // Offers no round names, or too old to be used, are let go.
        let named: HashSet<PeerId> = rounds
            .values()
            .flat_map(|r| r.peers.iter().copied())
            .collect();
        offers
            .retain(|peer, o| named.contains(peer) && now.saturating_duration_since(o.at) < stale);
    }

    /// A background round of `key` ended without answers to remember.
    pub fn refresh_failed(&self, key: &Capability) {
        if let Some(round) = self.lock().rounds.get_mut(key) {
            round.refreshing = false;
        }
    }

    fn with_offer(&self, peer: &PeerId, change: impl FnOnce(&mut WorkerInfo)) {
        if let Some(o) = self.lock().offers.get_mut(peer) {
            change(&mut o.info);
        }
    }

    /// `peer` accepted a job: one slot fewer.
    pub fn taken(&self, peer: &PeerId) {
        self.with_offer(peer, |i| i.free_slots = i.free_slots.saturating_sub(1));
    }

    /// A job of `peer`'s ended: its slot is free again.
    pub fn released(&self, peer: &PeerId) {
        self.with_offer(peer, |i| {
            i.free_slots = i.free_slots.saturating_add(1).min(i.slots);
        });
    }

    /// `peer` answered "busy": no free slot.
    pub fn busy(&self, peer: &PeerId) {
        self.with_offer(peer, |i| i.free_slots = 0);
    }

    /// `peer` refused a job or was lost: not offered again until a round
    /// finds it.
    pub fn forget(&self, peer: &PeerId) {
        self.lock().offers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::Limits;

    fn info(free_slots: u32) -> WorkerInfo {
        WorkerInfo {
            capabilities: [Capability::WASI_P1].into(),
            max_limits: Limits::default(),
            slots: 2,
            free_slots,
            runtime: "test".into(),
            paused: false,
        }
    }

    fn offer(peer: PeerId, free_slots: u32) -> Offer {
        Offer {
            peer,
            info: info(free_slots),
            rtt: Duration::from_millis(1),
        }
    }

    #[test]
    fn a_round_is_used_until_stale_and_refreshed_once_in_the_background() {
        let refresh = Duration::from_secs(5);
        let offers = Offers::new(refresh);
        let key = Capability::WASI_P1;
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(
            offers.cached_at(&key, t0).is_none(),
            "nothing yet: run a round"
        );
        let (a, b) = (PeerId::random(), PeerId::random());
        offers.record_at(&key, &[offer(a, 2), offer(b, 1)], t0);
        let cached = offers.cached_at(&key, at(1)).unwrap();
        assert_eq!(cached.offers.len(), 2);
        assert!(!cached.refresh, "fresh: no refresh");
        assert!(
            offers.cached_at(&Capability::WASI_P2, at(1)).is_none(),
            "another key"
        );
        assert!(
            offers.cached_at(&key, at(6)).unwrap().refresh,
            "due: one refresh"
        );
        assert!(
            !offers.cached_at(&key, at(7)).unwrap().refresh,
            "not two at once"
        );
        offers.refresh_failed(&key);
        assert!(
            offers.cached_at(&key, at(8)).unwrap().refresh,
            "a failed one may be tried again"
        );
        offers.record_at(&key, &[offer(a, 2)], at(9));
        let cached = offers.cached_at(&key, at(10)).unwrap();
        assert!(!cached.refresh);
        assert_eq!(
            cached.offers,
            vec![offer(a, 2)],
            "the new round replaces the old"
        );
        let stale = 9 + 5 * u64::from(STALE_AFTER);
        assert!(offers.cached_at(&key, at(stale - 1)).is_some());
        assert!(
            offers.cached_at(&key, at(stale)).is_none(),
            "stale: run a round"
        );
    }

    #[test]
    fn free_slots_follow_what_this_requester_did() {
        let offers = Offers::new(Duration::from_secs(60));
        let key = Capability::WASI_P1;
        let (a, b) = (PeerId::random(), PeerId::random());
        offers.record(&key, &[offer(a, 2), offer(b, 2)]);
        let slots = |p: PeerId| {
            offers
                .cached(&key)
                .and_then(|c| c.offers.into_iter().find(|o| o.peer == p))
                .map(|o| o.info.free_slots)
        };
        offers.taken(&a);
        offers.taken(&a);
        offers.taken(&a);
        assert_eq!(slots(a), Some(0), "never below none");
        offers.released(&a);
        assert_eq!(slots(a), Some(1));
        offers.released(&a);
        offers.released(&a);
        assert_eq!(slots(a), Some(2), "never above its slots");
        offers.busy(&a);
        assert_eq!(slots(a), Some(0));
        offers.forget(&b);
        assert_eq!(slots(b), None, "a worker that refused is not offered");
        offers.forget(&a);
        assert!(offers.cached(&key).is_none(), "none left: run a round");
    }

    #[test]
    fn off_remembers_nothing_and_keys_are_bounded() {
        let off = Offers::new(Duration::ZERO);
        off.record(&Capability::WASI_P1, &[offer(PeerId::random(), 1)]);
        assert!(off.cached(&Capability::WASI_P1).is_none());
        let offers = Offers::new(Duration::from_secs(60));
        for i in 0..MAX_KEYS + 10 {
            let key: Capability = format!("x-test-{i}").parse().unwrap();
            offers.record(&key, &[offer(PeerId::random(), 1)]);
        }
        let inner = offers.lock();
        assert_eq!(inner.rounds.len(), MAX_KEYS);
        assert_eq!(inner.offers.len(), MAX_KEYS);
    }
}
