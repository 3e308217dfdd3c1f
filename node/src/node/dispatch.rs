//! Routing between the network and the parts that own the answers: the
//! dispatcher reads the swarm's events and serves none of them itself.

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, warn};

use phase_protocol::job::JobRequest;

use crate::blocks::BlockJob;
use crate::network::{NetworkClient, NetworkEvent};
use crate::requester::Requester;
use crate::store::BlockStore;
use crate::worker::{self, Worker};

/// Job requests being answered at once at most (a submission waits for its
/// admission to be recorded); past this, submissions are told `busy` and
/// queries are dropped (the peer asks again).
const MAX_ANSWERING: usize = 256;

/// Routes the network's events: block requests to the block server's
/// bounded queue, delivered receipts to the requester, every other job
/// request to the worker (or the answer of a node that runs none). So a
/// worker busy serving a large fetch still admits jobs and answers status
/// polls promptly.
pub(super) async fn dispatch(
    network: NetworkClient,
    worker: Option<Worker>,
    requester: Requester,
    mut events: mpsc::Receiver<NetworkEvent>,
    blocks: mpsc::Sender<BlockJob>,
) {
    let mut answering = JoinSet::new();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            Some(_) = answering.join_next() => continue,
        };
        match event {
            NetworkEvent::BlockRequest {
                peer,
                request,
                channel,
            } => {
                if blocks.try_send((peer, request, channel)).is_err() {
                    debug!(%peer, "block server busy; block request dropped");
                }
            }
            NetworkEvent::JobRequest {
                peer,
                request: JobRequest::Deliver(receipt),
                channel,
            } => {
                let response = requester.deliver(peer, *receipt);
                let _ = network.respond_job(channel, response).await;
            }
            NetworkEvent::JobRequest {
                peer,
                request,
                channel,
            } => {
                if answering.len() >= MAX_ANSWERING {
                    match worker::overloaded(&request) {
                        Some(busy) => {
                            debug!(%peer, "too many job requests in hand; busy");
                            let _ = network.respond_job(channel, busy).await;
                        }
                        None => debug!(%peer, "too many job requests in hand; query dropped"),
                    }
                    continue;
                }
                let (network, worker) = (network.clone(), worker.clone());
                answering.spawn(
                    async move {
                        let response = worker::answer(worker.as_ref(), peer, request).await;
                        let _ = network.respond_job(channel, response).await;
                    }
                    .in_current_span(),
                );
            }
        }
    }
    answering.shutdown().await;
}

/// Provides every pinned root (Kademlia republishes them after).
pub(super) async fn announce_pins(network: NetworkClient, store: BlockStore) {
    match store.pins().await {
        Ok(pins) => {
            for pin in pins {
                if let Err(e) = network.provide(pin).await {
                    debug!(%pin, error = %e, "cannot announce a pinned root");
                }
            }
        }
        Err(e) => warn!(error = %e, "cannot list pinned roots to announce"),
    }
}
