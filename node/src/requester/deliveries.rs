//! Receipts awaited from workers: the node routes each delivered receipt
//! here, and the attempt that waits for it takes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use libp2p::PeerId;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use phase_protocol::SignedReceipt;
use phase_protocol::job::{JobId, JobResponse};

/// Receipts awaited at once; past this, jobs still complete by polling.
pub const MAX_PENDING_DELIVERIES: usize = 10_000;

/// Receipts awaited, by job and worker.
type Awaited = HashMap<(JobId, PeerId), oneshot::Sender<SignedReceipt>>;

/// The registry of awaited receipts. Cheap to clone; the lock is held only
/// to insert or remove one entry, never across an await.
#[derive(Clone, Debug, Default)]
pub struct Deliveries {
    waiting: Arc<Mutex<Awaited>>,
}

impl Deliveries {
    fn lock(&self) -> std::sync::MutexGuard<'_, Awaited> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for `worker`'s receipt of `job`. `None` when too many are awaited.
    pub(super) fn expect(
        &self,
        job: JobId,
        worker: PeerId,
    ) -> Option<oneshot::Receiver<SignedReceipt>> {
        let mut waiting = self.lock();
        waiting.retain(|_, tx| !tx.is_closed());
        if waiting.len() >= MAX_PENDING_DELIVERIES {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        waiting.insert((job, worker), tx);
        Some(rx)
    }

    /// A receipt `peer` delivered (already signature-checked as it decoded).
    /// Only a receipt signed by the peer that sends it, for a job we await
    /// from that peer, is taken.
    #[must_use]
    pub fn deliver(&self, peer: PeerId, receipt: SignedReceipt) -> JobResponse {
        let job = receipt.receipt().job;
        if receipt.receipt().worker != peer {
            warn!(%peer, "delivered receipt signed by another peer; ignored");
        } else if let Some(tx) = self.lock().remove(&(job, peer)) {
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
        assert!(rx.try_recv().is_err());
        let _ = deliveries.deliver(peer, r.clone());
        assert_eq!(rx.try_recv().unwrap(), r);
    }
}
