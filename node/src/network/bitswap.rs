//! The Bitswap client's side, as the network hands it out
//! ([`super::NetworkClient::bitswap`]): requests to the Bitswap actor
//! ([`crate::bitswap`]), which the node runs beside the swarm task over
//! the swarm's stream control.

use std::time::Duration;

use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot};

use phase_protocol::Cid;
use phase_protocol::block::BlockResponse;

/// The protocols served and spoken, newest first.
pub const PROTOCOLS: [StreamProtocol; 2] = [
    StreamProtocol::new("/ipfs/bitswap/1.2.0"),
    StreamProtocol::new("/ipfs/bitswap/1.1.0"),
];
/// Client requests queued to the actor at most.
pub(crate) const COMMAND_QUEUE: usize = 64;

/// Why a Bitswap request failed.
#[derive(Debug, thiserror::Error)]
pub enum BitswapError {
    /// The actor has stopped.
    #[error("bitswap has shut down")]
    Shutdown,
    /// Nothing came back in time.
    #[error("{peer} answered no want within {}s", waited.as_secs())]
    Timeout {
        /// The peer.
        peer: PeerId,
        /// How long.
        waited: Duration,
    },
    /// The peer sent a block that was not asked of it, or garbage.
    #[error("{peer} sent a block it was not asked for")]
    WrongBlock {
        /// The peer.
        peer: PeerId,
    },
    /// The peer's writer has too much queued, or has stopped.
    #[error("the bitswap stream to {peer} is busy or gone")]
    WriterBusy {
        /// The peer.
        peer: PeerId,
    },
}

pub(crate) struct Request {
    pub(crate) peer: PeerId,
    pub(crate) cids: Vec<Cid>,
    pub(crate) deadline: Duration,
    pub(crate) reply: oneshot::Sender<Result<BlockResponse, BitswapError>>,
}

/// Handle to the actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BitswapClient {
    commands: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("peer", &self.peer)
            .field("cids", &self.cids.len())
            .finish_non_exhaustive()
    }
}

impl BitswapClient {
    pub(crate) fn new(commands: mpsc::Sender<Request>) -> Self {
        Self { commands }
    }

    /// Asks `peer` for `cids` (want-block, answer don't-have); the blocks
    /// it sends (each under the CID its bytes make) and the CIDs it says it
    /// lacks. CIDs it did not answer within `deadline` are in neither.
    ///
    /// # Errors
    /// Nothing answered in time, a wrong block, no stream, or shutdown.
    pub async fn request(
        &self,
        peer: PeerId,
        cids: Vec<Cid>,
        deadline: Duration,
    ) -> Result<BlockResponse, BitswapError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Request {
                peer,
                cids,
                deadline,
                reply,
            })
            .await
            .map_err(|_| BitswapError::Shutdown)?;
        rx.await.map_err(|_| BitswapError::Shutdown)?
    }
}
