//! The node's DHT queries, coalesced. A provide or a provider lookup for a
//! key that already has one in flight joins it instead of starting another
//! query; a key provided in the last [`PROVIDED_FOR`] is not provided again,
//! and a lookup answered (with someone) in the last [`FOUND_FOR`] is
//! answered again from that. Both memories are forgotten when a new peer
//! enters the routing table, which may be one of a key's closest peers.
//!
//! Why: a Kademlia query costs the swarm real CPU however small the network
//! (libp2p-kad walks every bucket), and a busy node asks the same thing
//! over and over: a requester submitting many jobs looks up the same
//! capability for each, and a worker provides the same result for each job
//! that produces it. Kubo's provider queue and Bacalhau's node cache do the
//! same for the same reason.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use libp2p::{PeerId, kad};

/// How long a key once provided is not provided again.
pub(super) const PROVIDED_FOR: Duration = Duration::from_secs(60);
/// How long a provider lookup's answer is reused.
pub(super) const FOUND_FOR: Duration = Duration::from_secs(10);
/// Keys remembered at most, per memory.
const REMEMBERED: usize = 4096;

type Waiters<T> = Vec<super::Reply<T>>;

/// Which of the node's two Kademlia networks a query runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Dht {
    /// The phase DHT (`/phase/kad/1.0.0`): a server only when public.
    Wan,
    /// The LAN DHT (`/phase/lan/kad/1.0.0`): private and loopback peers,
    /// every one a server.
    Lan,
}

/// A Kademlia query: each DHT numbers its own.
pub(super) type QueryKey = (Dht, kad::QueryId);

/// See the module docs. Owned by the swarm's event loop. One provide or
/// lookup runs as one query per DHT; its waiters hear when all have ended.
#[derive(Debug, Default)]
pub(super) struct Queries {
    provides: HashMap<kad::RecordKey, Provide>,
    provide_queries: HashMap<QueryKey, kad::RecordKey>,
    provided: Recent<()>,
    lookups: HashMap<kad::RecordKey, Lookup>,
    lookup_queries: HashMap<QueryKey, kad::RecordKey>,
    found: Recent<HashSet<PeerId>>,
}

#[derive(Debug)]
struct Provide {
    waiters: Waiters<()>,
    /// Queries of this provide still running.
    running: usize,
}

#[derive(Debug)]
struct Lookup {
    waiters: Waiters<HashSet<PeerId>>,
    found: HashSet<PeerId>,
    /// Queries of this lookup still running.
    running: usize,
}

/// What the event loop does with a provide or a lookup.
#[derive(Debug)]
pub(super) enum Start<T> {
    /// Start a query in each DHT, then call the matching `started_*` with
    /// their ids.
    Query(super::Reply<T>),
    /// Nothing: joined a query in flight, or answered from memory.
    Done,
}

impl Queries {
    /// A provide of `key` was asked for.
    pub(super) fn provide(
        &mut self,
        key: &kad::RecordKey,
        reply: super::Reply<()>,
        now: Instant,
    ) -> Start<()> {
        if let Some(provide) = self.provides.get_mut(key) {
            provide.waiters.push(reply);
            return Start::Done;
        }
        if self.provided.get(key, now).is_some() {
            let _ = reply.send(Ok(()));
            return Start::Done;
        }
        Start::Query(reply)
    }

    /// The provide queries `ids` for `key` were started for `reply` (none
    /// started: `reply` hears at once).
    pub(super) fn started_provide(
        &mut self,
        ids: &[QueryKey],
        key: kad::RecordKey,
        reply: super::Reply<()>,
        now: Instant,
    ) {
        if ids.is_empty() {
            self.provided.insert(key, (), now);
            let _ = reply.send(Ok(()));
            return;
        }
        for id in ids {
            self.provide_queries.insert(*id, key.clone());
        }
        self.provides.insert(
            key,
            Provide {
                waiters: vec![reply],
                running: ids.len(),
            },
        );
    }

    /// The provide query `id` ended: once all of its provide's queries have,
    /// every waiter hears it, and the key is remembered as provided.
    pub(super) fn provide_ended(&mut self, id: QueryKey, now: Instant) {
        let Some(key) = self.provide_queries.remove(&id) else {
            return;
        };
        let Some(provide) = self.provides.get_mut(&key) else {
            return;
        };
        provide.running = provide.running.saturating_sub(1);
        if provide.running > 0 {
            return;
        }
        if let Some(provide) = self.provides.remove(&key) {
            self.provided.insert(key, (), now);
            for reply in provide.waiters {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// A lookup of `key`'s providers was asked for.
    pub(super) fn lookup(
        &mut self,
        key: &kad::RecordKey,
        reply: super::Reply<HashSet<PeerId>>,
        now: Instant,
    ) -> Start<HashSet<PeerId>> {
        if let Some(lookup) = self.lookups.get_mut(key) {
            lookup.waiters.push(reply);
            return Start::Done;
        }
        if let Some(found) = self.found.get(key, now) {
            let _ = reply.send(Ok(found.clone()));
            return Start::Done;
        }
        Start::Query(reply)
    }

    /// The lookup queries `ids` for `key` were started for `reply` (none
    /// started: `reply` hears "nobody" at once).
    pub(super) fn started_lookup(
        &mut self,
        ids: &[QueryKey],
        key: kad::RecordKey,
        reply: super::Reply<HashSet<PeerId>>,
    ) {
        if ids.is_empty() {
            let _ = reply.send(Ok(HashSet::new()));
            return;
        }
        for id in ids {
            self.lookup_queries.insert(*id, key.clone());
        }
        self.lookups.insert(
            key,
            Lookup {
                waiters: vec![reply],
                found: HashSet::new(),
                running: ids.len(),
            },
        );
    }

    /// The lookup query `id` found `providers` (more may come).
    pub(super) fn lookup_found(&mut self, id: QueryKey, providers: HashSet<PeerId>) {
        if let Some(key) = self.lookup_queries.get(&id)
            && let Some(lookup) = self.lookups.get_mut(key)
        {
            lookup.found.extend(providers);
        }
    }

    /// The lookup query `id` ended: once all of its lookup's queries have,
    /// every waiter gets what they found together, and a non-empty answer
    /// is remembered (an empty one is asked again: the providers may be on
    /// their way).
    pub(super) fn lookup_ended(&mut self, id: QueryKey, now: Instant) {
        let Some(key) = self.lookup_queries.remove(&id) else {
            return;
        };
        let Some(lookup) = self.lookups.get_mut(&key) else {
            return;
        };
        lookup.running = lookup.running.saturating_sub(1);
        if lookup.running > 0 {
            return;
        }
        if let Some(Lookup { waiters, found, .. }) = self.lookups.remove(&key) {
            for reply in waiters {
                let _ = reply.send(Ok(found.clone()));
            }
            if !found.is_empty() {
                self.found.insert(key, found, now);
            }
        }
    }

    /// A new peer entered a routing table: forget what was provided and
    /// found (queries in flight go on).
    pub(super) fn routing_changed(&mut self) {
        self.provided.clear();
        self.found.clear();
    }
}

/// Keys remembered for a while, at most [`REMEMBERED`]; the oldest go first.
#[derive(Debug)]
struct Recent<T> {
    ttl: Duration,
    entries: HashMap<kad::RecordKey, (Instant, T)>,
    order: VecDeque<(kad::RecordKey, Instant)>,
}

impl Default for Recent<()> {
    fn default() -> Self {
        Self::new(PROVIDED_FOR)
    }
}

impl Default for Recent<HashSet<PeerId>> {
    fn default() -> Self {
        Self::new(FOUND_FOR)
    }
}

impl<T> Recent<T> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, key: &kad::RecordKey, now: Instant) -> Option<&T> {
        self.entries
            .get(key)
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(_, value)| value)
    }

    fn insert(&mut self, key: kad::RecordKey, value: T, now: Instant) {
        while let Some((_, at)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) >= self.ttl;
            if !expired && self.order.len() < REMEMBERED {
                break;
            }
            if let Some((old, at)) = self.order.pop_front()
                && self.entries.get(&old).is_some_and(|(t, _)| *t == at)
            {
                self.entries.remove(&old);
            }
        }
        self.order.push_back((key.clone(), now));
        self.entries.insert(key, (now, value));
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    fn key(n: u8) -> kad::RecordKey {
        kad::RecordKey::new(&[n])
    }

    fn query_id() -> QueryKey {
        query_in(Dht::Wan)
    }

    fn query_in(dht: Dht) -> QueryKey {
        // QueryIds come only from a Behaviour; make real ones.
        let peer = PeerId::random();
        let store = kad::store::MemoryStore::new(peer);
        let mut kad = kad::Behaviour::new(peer, store);
        (dht, kad.get_providers(key(0)))
    }

    #[test]
    fn a_second_provide_joins_the_first_and_both_hear_its_end() {
        let mut q = Queries::default();
        let now = Instant::now();
        let (a, mut a_rx) = oneshot::channel();
        let Start::Query(a) = q.provide(&key(1), a, now) else {
            panic!("the first provide starts a query");
        };
        let id = query_id();
        q.started_provide(&[id], key(1), a, now);
        let (b, mut b_rx) = oneshot::channel();
        assert!(matches!(q.provide(&key(1), b, now), Start::Done));
        assert!(b_rx.try_recv().is_err(), "waits for the query");
        q.provide_ended(id, now);
        assert!(matches!(a_rx.try_recv(), Ok(Ok(()))));
        assert!(matches!(b_rx.try_recv(), Ok(Ok(()))));
    }

    #[test]
    fn a_key_provided_lately_is_not_provided_again_until_it_expires_or_a_peer_joins() {
        let mut q = Queries::default();
        let now = Instant::now();
        let (a, _a_rx) = oneshot::channel();
        let Start::Query(a) = q.provide(&key(1), a, now) else {
            panic!("the first provide starts a query");
        };
        let id = query_id();
        q.started_provide(&[id], key(1), a, now);
        q.provide_ended(id, now);

        let (b, mut b_rx) = oneshot::channel();
        assert!(matches!(q.provide(&key(1), b, now), Start::Done));
        assert!(matches!(b_rx.try_recv(), Ok(Ok(()))));
        let (c, _) = oneshot::channel();
        assert!(matches!(q.provide(&key(2), c, now), Start::Query(_)));
        let (d, _) = oneshot::channel();
        let later = now + PROVIDED_FOR;
        assert!(matches!(q.provide(&key(1), d, later), Start::Query(_)));
        q.routing_changed();
        let (e, _) = oneshot::channel();
        assert!(matches!(q.provide(&key(1), e, now), Start::Query(_)));
    }

    #[test]
    fn lookups_share_a_query_and_only_answers_with_someone_are_reused() {
        let mut q = Queries::default();
        let now = Instant::now();
        let peer = PeerId::random();
        let (a, mut a_rx) = oneshot::channel();
        let Start::Query(a) = q.lookup(&key(1), a, now) else {
            panic!("the first lookup starts a query");
        };
        let id = query_id();
        q.started_lookup(&[id], key(1), a);
        let (b, mut b_rx) = oneshot::channel();
        assert!(matches!(q.lookup(&key(1), b, now), Start::Done));
        q.lookup_found(id, HashSet::from([peer]));
        q.lookup_ended(id, now);
        for rx in [&mut a_rx, &mut b_rx] {
            assert_eq!(rx.try_recv().unwrap().unwrap(), HashSet::from([peer]));
        }
        let (c, mut c_rx) = oneshot::channel();
        assert!(matches!(q.lookup(&key(1), c, now), Start::Done));
        assert_eq!(c_rx.try_recv().unwrap().unwrap(), HashSet::from([peer]));
        let (d, _) = oneshot::channel();
        assert!(matches!(
            q.lookup(&key(1), d, now + FOUND_FOR),
            Start::Query(_)
        ));

        // Nobody found: asked again next time.
        let (e, _) = oneshot::channel();
        let Start::Query(e) = q.lookup(&key(2), e, now) else {
            panic!("a new key starts a query");
        };
        let id = query_id();
        q.started_lookup(&[id], key(2), e);
        q.lookup_ended(id, now);
        let (f, _) = oneshot::channel();
        assert!(matches!(q.lookup(&key(2), f, now), Start::Query(_)));
    }

    #[test]
    fn a_lookup_in_both_dhts_answers_once_both_ended_with_what_both_found() {
        let mut q = Queries::default();
        let now = Instant::now();
        let (wan_peer, lan_peer) = (PeerId::random(), PeerId::random());
        let (a, mut a_rx) = oneshot::channel();
        let Start::Query(a) = q.lookup(&key(1), a, now) else {
            panic!("the first lookup starts a query");
        };
        // Both DHTs number their queries from the same start: the ids
        // alone would collide.
        let (wan, lan) = (query_in(Dht::Wan), query_in(Dht::Lan));
        assert_eq!(wan.1, lan.1);
        q.started_lookup(&[wan, lan], key(1), a);
        q.lookup_found(lan, HashSet::from([lan_peer]));
        q.lookup_ended(lan, now);
        assert!(a_rx.try_recv().is_err(), "the WAN query still runs");
        q.lookup_found(wan, HashSet::from([wan_peer]));
        q.lookup_ended(wan, now);
        assert_eq!(
            a_rx.try_recv().unwrap().unwrap(),
            HashSet::from([wan_peer, lan_peer])
        );

        let (b, mut b_rx) = oneshot::channel();
        let Start::Query(b) = q.provide(&key(2), b, now) else {
            panic!("the first provide starts a query");
        };
        q.started_provide(&[wan, lan], key(2), b, now);
        q.provide_ended(wan, now);
        assert!(b_rx.try_recv().is_err(), "the LAN query still runs");
        q.provide_ended(lan, now);
        assert!(matches!(b_rx.try_recv(), Ok(Ok(()))));

        let (c, mut c_rx) = oneshot::channel();
        let Start::Query(c) = q.lookup(&key(3), c, now) else {
            panic!("a new key starts a query");
        };
        q.started_lookup(&[], key(3), c);
        assert!(
            c_rx.try_recv().unwrap().unwrap().is_empty(),
            "no DHT: nobody"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut recent = Recent::<()>::new(Duration::from_secs(60));
        let now = Instant::now();
        for n in 0..(REMEMBERED + 10) {
            let k = kad::RecordKey::new(&n.to_be_bytes());
            recent.insert(k, (), now);
        }
        assert_eq!(recent.entries.len(), REMEMBERED);
        assert_eq!(recent.order.len(), REMEMBERED);
        assert!(
            recent
                .get(&kad::RecordKey::new(&0usize.to_be_bytes()), now)
                .is_none()
        );
    }
}
