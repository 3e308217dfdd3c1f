//! Bitswap 1.2.0 and 1.1.0, server and client, beside the block protocol:
//! how Kubo and Helia move blocks.
//!
//! One actor ([`run`]) owns the Bitswap state; streams come and go through
//! a `libp2p-stream` [`Control`] of the node's swarm.
//!
//! - Inbound streams (Kubo keeps one open per peer for its wants and opens
//!   one per message for its answers; Helia opens one per batch) are read
//!   by a task each, message by message (unsigned-varint length prefix, at
//!   most [`MAX_MESSAGE`]; prost-derived messages), until EOF; a peer's streams beyond those read at
//!   once wait their turn (`inbound`).
//!   A frame that is not a Bitswap message ends that stream, logged once
//!   with the peer's id.
//! - Answers go on this node's own outbound stream to the peer (never back
//!   on the request stream), one writer task per peer.
//! - Wants are answered by the node's block server ([`BlockServer`]),
//!   under the caps it holds for both block exchanges (wants per peer and in
//!   all, reads at once): blocks for want-block, `Have` for want-have,
//!   `DontHave` when asked; wants past the caps are dropped.
//! - [`BitswapClient::request`](crate::network::bitswap::BitswapClient::request) sends want-blocks to one peer and collects
//!   blocks and don't-haves until every CID is answered or the deadline
//!   passes. A block nobody asked that peer for is a wrong block: its
//!   requests fail and the peer is not asked again.

mod inbound;
pub use phase_protocol::bitswap as message;
mod requests;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use asynchronous_codec::FramedRead;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::PeerId;
use libp2p_stream::Control;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use phase_protocol::Cid;

use self::inbound::{Admit, Inbound};
use self::message::{Entry, Presence, WantType};
pub use self::message::{MAX_MESSAGE, Message};
use self::requests::{Delivery, Requests};
use crate::blocks::{BlockServer, WantKind};
use crate::network::bitswap::{BitswapError, PROTOCOLS, Request};

/// Block bytes in one answer message at most (under [`MAX_MESSAGE`]).
const ANSWER_BYTES: usize = 2 << 20;
/// Messages queued to one peer's writer at most.
const WRITER_QUEUE: usize = 32;
/// A writer with nothing to send for this long closes its stream and ends
/// (a peer that went away leaves no task behind).
const WRITER_IDLE: Duration = Duration::from_secs(60);
/// Peers remembered as bad at most (then the memory starts over).
const MAX_BAD: usize = 4096;
enum Done {
    Reader(PeerId),
    Writer(PeerId),
    Answered,
}

/// The actor: serves wants through the node's block server and runs
/// client requests until `cancel`.
pub(crate) async fn run(
    mut control: Control,
    server: BlockServer,
    mut requests: mpsc::Receiver<Request>,
    cancel: CancellationToken,
) {
    let mut incoming = futures::stream::select_all(
        PROTOCOLS
            .iter()
            .filter_map(|p| control.accept(p.clone()).ok()),
    );
    let (inbound_tx, mut inbound) = mpsc::channel::<FromStream>(64);
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut readers = Inbound::default();
    let mut writers: HashMap<PeerId, mpsc::Sender<Message>> = HashMap::new();
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
                    Err(bad) => {
                        warn!(%peer, reason = %crate::error_line(&bad), "bad bitswap message; stream dropped");
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
                // Wants: answered by the block server, within its caps.
                let wants: Vec<Entry> = message.wantlist.iter().filter(|e| !e.cancel).cloned().collect();
                if !wants.is_empty() {
                    let admitted = server.admit(peer, wants.len());
                    if admitted.count < wants.len() {
                        debug!(%peer, dropped = wants.len() - admitted.count, "bitswap wants over the limit dropped");
                    }
                    if admitted.count > 0 {
                        let wants: Vec<Entry> = wants.into_iter().take(admitted.count).collect();
                        let writer = writer_for(&mut writers, &mut tasks, &control, peer);
                        tasks.spawn(answer(server.clone(), admitted, wants, writer));
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
                    requests_in_flight.fail(id, BitswapError::WriterBusy { peer });
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
                Ok(Done::Answered) => {}
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
async fn read_stream(peer: PeerId, stream: libp2p::Stream, tx: mpsc::Sender<FromStream>) -> Done {
    let mut frames = FramedRead::new(stream, Frames);
    while let Some(frame) = frames.next().await {
        let message = match frame {
            Ok(frame) => Message::decode(&frame).map_err(BadFrame::Message),
            Err(FrameError::Io(e)) => {
                debug!(%peer, error = %e, "bitswap stream ended inside a frame");
                break;
            }
            Err(FrameError::Frame(e)) => Err(e),
        };
        debug!(%peer, ok = message.is_ok(), "bitswap frame read");
        let stop = message.is_err();
        if tx.send((peer, message)).await.is_err() || stop {
            break;
        }
    }
    Done::Reader(peer)
}

/// What an inbound stream hands the actor: a message, or why the stream
/// was dropped.
type FromStream = (PeerId, Result<Message, BadFrame>);

/// Why an inbound frame was not a message.
#[derive(Debug, thiserror::Error)]
enum BadFrame {
    /// Its length prefix is not an unsigned varint.
    #[error("bad length prefix")]
    Prefix(#[source] unsigned_varint::decode::Error),
    /// Over [`MAX_MESSAGE`].
    #[error("a frame of {0} bytes (at most {MAX_MESSAGE})")]
    TooLarge(usize),
    /// Not a Bitswap message.
    #[error(transparent)]
    Message(message::MessageError),
}

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(BadFrame),
}

/// Bitswap's framing: an unsigned-varint length, then that many bytes, at
/// most [`MAX_MESSAGE`]. Like `prost-codec`'s decoder, it reserves nothing
/// for a length until the bytes arrive; unlike it, it hands the frame on
/// undecoded, so [`Message::decode`] can count entries before prost
/// allocates them.
struct Frames;

impl asynchronous_codec::Decoder for Frames {
    type Item = bytes::BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> Result<Option<Self::Item>, FrameError> {
        let (len, rest) = match unsigned_varint::decode::usize(src) {
            Ok(v) => v,
            Err(unsigned_varint::decode::Error::Insufficient) => return Ok(None),
            Err(e) => return Err(FrameError::Frame(BadFrame::Prefix(e))),
        };
        if len > MAX_MESSAGE {
            return Err(FrameError::Frame(BadFrame::TooLarge(len)));
        }
        let prefix = src.len() - rest.len();
        if src.len() < prefix + len {
            return Ok(None);
        }
        bytes::Buf::advance(src, prefix);
        Ok(Some(src.split_to(len)))
    }
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
        if s.write_all(&message.encode_framed()).await.is_err() || s.flush().await.is_err() {
            break;
        }
    }
    if let Some(mut s) = stream {
        let _ = s.close().await;
    }
    Done::Writer(peer)
}

/// Answers wants through the block server on the peer's writer, in
/// messages of at most [`ANSWER_BYTES`] of blocks; the wants stay counted
/// (`admitted`) until the last message is queued.
async fn answer(
    server: BlockServer,
    admitted: crate::blocks::Admitted,
    wants: Vec<Entry>,
    writer: mpsc::Sender<Message>,
) -> Done {
    let asked: Vec<(Cid, WantKind)> = wants
        .iter()
        .map(|e| {
            let kind = match e.want_type {
                WantType::Block => WantKind::Block,
                WantType::Have => WantKind::Have,
            };
            (e.cid, kind)
        })
        .collect();
    let mut from = 0;
    while from < asked.len() {
        let answer = server.answer(&asked[from..], ANSWER_BYTES).await;
        let mut message = Message {
            blocks: answer.blocks,
            ..Message::default()
        };
        message
            .presences
            .extend(answer.have.into_iter().map(|cid| (cid, Presence::Have)));
        let dont_have: HashSet<Cid> = wants[from..from + answer.answered]
            .iter()
            .filter(|e| e.send_dont_have)
            .map(|e| e.cid)
            .collect();
        message.presences.extend(
            answer
                .missing
                .into_iter()
                .filter(|cid| dont_have.contains(cid))
                .map(|cid| (cid, Presence::DontHave)),
        );
        from += answer.answered.max(1);
        if !message.is_empty() && writer.send(message).await.is_err() {
            break;
        }
    }
    drop(admitted);
    Done::Answered
}
