//! Bitswap 1.2.0 and 1.1.0, server and client, beside the block protocol:
//! how Kubo and Helia move blocks.
//!
//! One actor ([`run`]) owns the Bitswap state; streams come and go through
//! a `libp2p-stream` [`Control`] of the node's swarm.
//!
//! - Inbound streams (Kubo keeps one open per peer for its wants and opens
//!   one per message for its answers; Helia opens one per batch) are read
//!   by a task each, message by message (varint length prefix, at most
//!   [`MAX_MESSAGE`]), until EOF; a peer's streams beyond those read at
//!   once wait their turn (`inbound`).
//!   A frame that is not a Bitswap message ends that stream, logged once
//!   with the peer's id.
//! - Answers go on this node's own outbound stream to the peer (never back
//!   on the request stream), one writer task per peer.
//! - Wants are served from the store: blocks for want-block, `Have` for
//!   want-have, `DontHave` when asked; at most [`MAX_WANTS_PER_PEER`] of a
//!   peer's wants are being answered at once, the rest are dropped.
//! - [`BitswapClient::request`] sends want-blocks to one peer and collects
//!   blocks and don't-haves until every CID is answered or the deadline
//!   passes. A block nobody asked that peer for is a wrong block: its
//!   requests fail and the peer is not asked again.

mod inbound;
pub use phase_protocol::bitswap as message;
mod requests;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use phase_protocol::Cid;
use phase_protocol::block::BlockResponse;

use self::inbound::{Admit, Inbound};
use self::message::{Entry, Presence, WantType};
pub use self::message::{MAX_MESSAGE, Message};
use self::requests::{Delivery, Requests};
use crate::store::BlockStore;

/// The protocols served and spoken, newest first.
pub const PROTOCOLS: [StreamProtocol; 2] = [
    StreamProtocol::new("/ipfs/bitswap/1.2.0"),
    StreamProtocol::new("/ipfs/bitswap/1.1.0"),
];
/// A peer's wants being answered at once at most.
pub const MAX_WANTS_PER_PEER: usize = 1024;
/// Block bytes in one answer message at most (under [`MAX_MESSAGE`]).
const ANSWER_BYTES: usize = 2 << 20;
/// Wants of all peers being answered at once at most.
const MAX_WANTS: usize = 16 * MAX_WANTS_PER_PEER;
/// Messages queued to one peer's writer at most.
const WRITER_QUEUE: usize = 32;
/// A writer with nothing to send for this long closes its stream and ends
/// (a peer that went away leaves no task behind).
const WRITER_IDLE: Duration = Duration::from_secs(60);
/// Peers remembered as bad at most (then the memory starts over).
const MAX_BAD: usize = 4096;
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
    /// No stream to the peer.
    #[error("cannot open a bitswap stream to {peer}: {reason}")]
    Stream {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
}

pub(crate) struct Request {
    peer: PeerId,
    cids: Vec<Cid>,
    deadline: Duration,
    reply: oneshot::Sender<Result<BlockResponse, BitswapError>>,
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

enum Done {
    Reader(PeerId),
    Writer(PeerId),
    Answered(PeerId, usize),
}

/// The actor: serves wants from `store` and runs client requests until
/// `cancel`.
pub(crate) async fn run(
    mut control: Control,
    store: BlockStore,
    mut requests: mpsc::Receiver<Request>,
    cancel: CancellationToken,
) {
    let mut incoming = futures::stream::select_all(
        PROTOCOLS
            .iter()
            .filter_map(|p| control.accept(p.clone()).ok()),
    );
    let (inbound_tx, mut inbound) = mpsc::channel::<(PeerId, Result<Message, String>)>(64);
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut readers = Inbound::default();
    let mut writers: HashMap<PeerId, mpsc::Sender<Message>> = HashMap::new();
    let mut answering: HashMap<PeerId, usize> = HashMap::new();
    let mut requests_in_flight = Requests::default();
    let mut bad: HashSet<PeerId> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            Some((peer, stream)) = incoming.next() => {
                if bad.contains(&peer) {
                    continue;
                }
                match readers.arrive(peer, stream) {
                    Admit::Read(stream) => {
                        tasks.spawn(read_stream(peer, stream, inbound_tx.clone()));
                    }
                    Admit::Waiting => {}
                    Admit::Refused => debug!(%peer, "bitswap stream refused: too many open"),
                }
            }
            Some((peer, message)) = inbound.recv() => {
                let message = match message {
                    Ok(m) => m,
                    Err(reason) => {
                        warn!(%peer, %reason, "bad bitswap message; stream dropped");
                        continue;
                    }
                };
                if bad.contains(&peer) {
                    continue;
                }
                debug!(
                    %peer,
                    wants = message.wantlist.len(),
                    blocks = message.blocks.len(),
                    presences = message.presences.len(),
                    "bitswap message"
                );
                // Wants: answered from the store, bounded per peer.
                let wants: Vec<Entry> = message.wantlist.iter().filter(|e| !e.cancel).cloned().collect();
                if !wants.is_empty() {
                    let all: usize = answering.values().sum();
                    let busy = answering.entry(peer).or_default();
                    let room = MAX_WANTS_PER_PEER
                        .saturating_sub(*busy)
                        .min(MAX_WANTS.saturating_sub(all));
                    if wants.len() > room {
                        debug!(%peer, dropped = wants.len() - room, "bitswap wants over the limit dropped");
                    }
                    let wants: Vec<Entry> = wants.into_iter().take(room).collect();
                    if !wants.is_empty() {
                        *busy += wants.len();
                        let writer = writer_for(&mut writers, &mut tasks, &control, peer);
                        tasks.spawn(answer(peer, store.clone(), wants, writer));
                    }
                }
                // Blocks and presences: for our requests.
                let mut wrong = false;
                for (cid, data) in &message.blocks {
                    wrong |= requests_in_flight.block(peer, *cid, data) == Delivery::Unasked;
                }
                for (cid, presence) in message.presences {
                    if presence == Presence::DontHave {
                        requests_in_flight.dont_have(peer, cid);
                    }
                }
                if wrong {
                    warn!(%peer, "bitswap peer sent a block it was not asked for; dropped");
                    if bad.len() >= MAX_BAD {
                        bad.clear();
                    }
                    bad.insert(peer);
                    readers.forget(peer);
                    requests_in_flight.fail_peer(peer, || BitswapError::WrongBlock { peer });
                }
                requests_in_flight.finish_answered();
            }
            Some(request) = requests.recv() => {
                let Request { peer, cids, deadline, reply } = request;
                if bad.contains(&peer) {
                    let _ = reply.send(Err(BitswapError::WrongBlock { peer }));
                    continue;
                }
                let wantlist: Vec<Entry> = cids.iter().map(|cid| Entry {
                    cid: *cid,
                    priority: 1,
                    cancel: false,
                    want_type: WantType::Block,
                    send_dont_have: true,
                }).collect();
                let id = requests_in_flight.add(peer, &cids, deadline, reply);
                let writer = writer_for(&mut writers, &mut tasks, &control, peer);
                let message = Message { wantlist, ..Message::default() };
                if writer.try_send(message).is_err() {
                    requests_in_flight.fail(id, BitswapError::Stream { peer, reason: "writer busy or gone".into() });
                }
            }
            Some(done) = tasks.join_next() => match done {
                Ok(Done::Reader(peer)) => {
                    if let Some(next) = readers.done(peer) {
                        tasks.spawn(read_stream(peer, next, inbound_tx.clone()));
                    }
                }
                Ok(Done::Writer(peer)) => {
                    // Its receiver is gone: the next message starts a new one.
                    if writers.get(&peer).is_some_and(mpsc::Sender::is_closed) {
                        writers.remove(&peer);
                    }
                }
                Ok(Done::Answered(peer, n)) => {
                    if let Some(busy) = answering.get_mut(&peer) {
                        *busy = busy.saturating_sub(n);
                        if *busy == 0 {
                            answering.remove(&peer);
                        }
                    }
                }
                Err(e) => warn!(error = %e, "bitswap task failed"),
            },
            _ = tick.tick() => requests_in_flight.expire(Instant::now()),
        }
    }
    tasks.shutdown().await;
}

/// The peer's writer (started when there is none).
fn writer_for(
    writers: &mut HashMap<PeerId, mpsc::Sender<Message>>,
    tasks: &mut JoinSet<Done>,
    control: &Control,
    peer: PeerId,
) -> mpsc::Sender<Message> {
    if let Some(w) = writers.get(&peer)
        && !w.is_closed()
    {
        return w.clone();
    }
    let (tx, rx) = mpsc::channel(WRITER_QUEUE);
    tasks.spawn(write_stream(peer, control.clone(), rx));
    writers.insert(peer, tx.clone());
    tx
}

/// Reads messages from one inbound stream until EOF or a bad frame.
async fn read_stream(
    peer: PeerId,
    mut stream: libp2p::Stream,
    tx: mpsc::Sender<(PeerId, Result<Message, String>)>,
) -> Done {
    loop {
        let len = match read_varint(&mut stream).await {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send((peer, Err(e))).await;
                break;
            }
        };
        if len > MAX_MESSAGE as u64 {
            let _ = tx
                .send((
                    peer,
                    Err(format!("a frame of {len} bytes (at most {MAX_MESSAGE})")),
                ))
                .await;
            break;
        }
        // Grown as bytes arrive: a length prefix alone reserves nothing.
        let mut frame = Vec::new();
        match (&mut stream).take(len).read_to_end(&mut frame).await {
            Ok(n) if n as u64 == len => {}
            Ok(_) => {
                debug!(%peer, len, "bitswap stream ended inside a frame");
                break;
            }
            Err(e) => {
                debug!(%peer, len, error = %e, "bitswap stream failed inside a frame");
                break;
            }
        }
        let message = Message::decode(&frame).map_err(|e| e.to_string());
        debug!(%peer, len, ok = message.is_ok(), "bitswap frame read");
        let stop = message.is_err();
        if tx.send((peer, message)).await.is_err() || stop {
            break;
        }
    }
    Done::Reader(peer)
}

/// A varint length prefix; `None` at a clean EOF.
async fn read_varint(stream: &mut libp2p::Stream) -> Result<Option<u64>, String> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut b = [0u8; 1];
        match stream.read(&mut b).await {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err("stream ended inside a length prefix".into()),
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
        value |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err("a length prefix over 10 bytes".into())
}

/// Writes messages to the peer on one outbound stream, opened on the
/// first message; ends when the queue closes or the stream fails.
async fn write_stream(peer: PeerId, mut control: Control, mut rx: mpsc::Receiver<Message>) -> Done {
    let mut stream = None;
    while let Ok(Some(message)) = tokio::time::timeout(WRITER_IDLE, rx.recv()).await {
        if stream.is_none() {
            for protocol in &PROTOCOLS {
                match control.open_stream(peer, protocol.clone()).await {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => debug!(%peer, %protocol, error = %e, "cannot open bitswap stream"),
                }
            }
        }
        let Some(s) = stream.as_mut() else { break };
        let body = message.encode();
        let mut frame = Vec::with_capacity(body.len() + 5);
        message::put_varint(&mut frame, body.len() as u64);
        frame.extend_from_slice(&body);
        if s.write_all(&frame).await.is_err() || s.flush().await.is_err() {
            break;
        }
    }
    if let Some(mut s) = stream {
        let _ = s.close().await;
    }
    Done::Writer(peer)
}

/// Answers wants from the store on the peer's writer.
async fn answer(
    peer: PeerId,
    store: BlockStore,
    wants: Vec<Entry>,
    writer: mpsc::Sender<Message>,
) -> Done {
    let n = wants.len();
    let mut message = Message::default();
    let mut bytes = 0usize;
    for want in wants {
        let block = match want.want_type {
            WantType::Block => store.get(&want.cid).await.ok().flatten(),
            // A have is answered without reading the block.
            WantType::Have => store.has(&want.cid).await.unwrap_or(false).then(Bytes::new),
        };
        match (block, want.want_type) {
            (Some(data), WantType::Block) => {
                if bytes + data.len() > ANSWER_BYTES && !message.is_empty() {
                    if writer.send(std::mem::take(&mut message)).await.is_err() {
                        return Done::Answered(peer, n);
                    }
                    bytes = 0;
                }
                bytes += data.len();
                message.blocks.push((want.cid, data));
            }
            (Some(_), WantType::Have) => message.presences.push((want.cid, Presence::Have)),
            (None, _) if want.send_dont_have => {
                message.presences.push((want.cid, Presence::DontHave));
            }
            (None, _) => {}
        }
    }
    if !message.is_empty() {
        let _ = writer.send(message).await;
    }
    Done::Answered(peer, n)
}
