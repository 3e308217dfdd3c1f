//! Receipts awaited from workers: the node routes each delivered receipt
//! here, and the attempt that waits for it takes it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use libp2p::PeerId;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use phase_protocol::SignedReceipt;
use phase_protocol::job::{JobId, JobResponse};

/// Receipts awaited at once; past this, jobs still complete by polling.
pub const MAX_PENDING_DELIVERIES: usize = 10_000;

/// Receipts awaited, by job and worker: which wait (its number) and where
/// the receipt goes.
type Awaited = HashMap<(JobId, PeerId), (u64, oneshot::Sender<SignedReceipt>)>;

/// The registry of awaited receipts. Cheap to clone; the lock is held only
/// to insert or remove one entry, never across an await. Each wait removes
/// its own entry when it ends ([`Awaiting`]), so nothing is ever scanned.
#[derive(Clone, Debug, Default)]
pub(super) struct Deliveries {
    waiting: Arc<Mutex<Awaited>>,
    next: Arc<AtomicU64>,
}

/// A receipt awaited: resolves to it once delivered (`Err` if the registry
/// dropped the wait); dropping it withdraws the wait.
#[derive(Debug)]
pub(super) struct Awaiting {
    rx: oneshot::Receiver<SignedReceipt>,
    key: (JobId, PeerId),
    id: u64,
    waiting: Arc<Mutex<Awaited>>,
}

impl Future for Awaiting {
    type Output = Result<SignedReceipt, oneshot::error::RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx)
    }
}

impl Drop for Awaiting {
    fn drop(&mut self) {
        let mut waiting = lock(&self.waiting);
        if waiting.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            waiting.remove(&self.key);
        }
    }
}

fn lock(waiting: &Mutex<Awaited>) -> std::sync::MutexGuard<'_, Awaited> {
    waiting
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Deliveries {
    fn lock(&self) -> std::sync::MutexGuard<'_, Awaited> {
        lock(&self.waiting)
    }

    /// Waits for `worker`'s receipt of `job`. `None` when too many are awaited.
    pub(super) fn expect(&self, job: JobId, worker: PeerId) -> Option<Awaiting> {
        let mut waiting = self.lock();
        if waiting.len() >= MAX_PENDING_DELIVERIES {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        waiting.insert((job, worker), (id, tx));
        Some(Awaiting {
            rx,
            key: (job, worker),
            id,
            waiting: Arc::clone(&self.waiting),
        })
    }

    /// Waits awaited now.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.lock().len()
    }

    /// A receipt `peer` delivered (already signature-checked as it decoded).
    /// Only a receipt signed by the peer that sends it, for a job we await
    /// from that peer, is taken.
    #[must_use]
    pub(super) fn deliver(&self, peer: PeerId, receipt: SignedReceipt) -> JobResponse {
        let job = receipt.receipt().job;
        if receipt.receipt().worker != peer {
            warn!(%peer, "delivered receipt signed by another peer; ignored");
        } else if let Some((_, tx)) = self.lock().remove(&(job, peer)) {
            let _ = tx.send(receipt);
        } else {
            debug!(%peer, %job, "receipt for a job not awaited");
        }
        JobResponse::Delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requester::verify::tests::receipt;
    use phase_protocol::cid::raw_cid;
    use phase_protocol::{JobSpec, Keypair};

    #[test]
    fn a_delivery_is_taken_only_from_its_signer_for_an_awaited_job() {
        let deliveries = Deliveries::default();
        let worker = Keypair::generate_ed25519();
        let peer = worker.public().to_peer_id();
        let spec = JobSpec::new(raw_cid(b"m"));
        let me = PeerId::random();
        let mut rx = deliveries.expect(spec.id(), peer).unwrap();
        let r = receipt(&worker, &spec, me, raw_cid(b"r"));
        // From someone else: ignored.
        let _ = deliveries.deliver(PeerId::random(), r.clone());
        assert!(rx.rx.try_recv().is_err());
        let _ = deliveries.deliver(peer, r.clone());
        assert_eq!(rx.rx.try_recv().unwrap(), r);
    }

    #[test]
    fn a_wait_that_ends_takes_its_entry_with_it() {
        let deliveries = Deliveries::default();
        let spec = JobSpec::new(raw_cid(b"m"));
        let (a, b) = (PeerId::random(), PeerId::random());
        let first = deliveries.expect(spec.id(), a).unwrap();
        let _second = deliveries.expect(spec.id(), b).unwrap();
        // A second wait for the same worker replaces the first, whose end
        // then leaves the new one alone.
        let again = deliveries.expect(spec.id(), a).unwrap();
        drop(first);
        assert_eq!(deliveries.pending(), 2);
        drop(again);
        assert_eq!(deliveries.pending(), 1);
    }
}
