//! Framing of request-response messages: a varint length, then the
//! message's canonical DAG-CBOR. The reader refuses a length over the
//! message type's `MAX` before reading (or allocating) anything.

use std::io;
use std::marker::PhantomData;

use bytes::Bytes;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

use phase_protocol::Message;

/// A request-response codec for one request and one response type.
#[derive(Debug)]
pub(crate) struct MessageCodec<Req, Resp> {
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Default for MessageCodec<Req, Resp> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for MessageCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Reads one framed message of at most `M::MAX` bytes.
pub(crate) async fn read_message<M: Message, T: AsyncRead + Unpin>(io: &mut T) -> io::Result<M> {
    let len = unsigned_varint::aio::read_u64(&mut *io)
        .await
        .map_err(|e| match e {
            unsigned_varint::io::ReadError::Io(e) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
    if len > M::MAX as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes is over the maximum of {}", M::MAX),
        ));
    }
    // Zeroed by `calloc`, which for a buffer this size is fresh pages the
    // kernel already zeroed (no pass over it, unlike `read_to_end`'s
    // zero-fill), and only pages that data arrives into become resident.
    let mut buf = vec![0u8; len as usize];
    io.read_exact(&mut buf).await?;
    M::decode_frame(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes one framed message, given as pieces (see
/// [`Message::encode_pieces`]). Callers encode before awaiting, so the future
/// holds only bytes.
async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, pieces: Vec<Bytes>) -> io::Result<()> {
    let len = pieces.iter().map(|p| p.len() as u64).sum::<u64>();
    let mut buf = unsigned_varint::encode::u64_buffer();
    let prefix = unsigned_varint::encode::u64(len, &mut buf);
    // Piece by piece rather than one copy of a body of megabytes.
    io.write_all(prefix).await?;
    for piece in &pieces {
        io.write_all(piece).await?;
    }
    io.close().await
}

impl<Req, Resp> request_response::Codec for MessageCodec<Req, Resp>
where
    Req: Message + Send + 'static,
    Resp: Message + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Req> {
        read_message(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Resp> {
        read_message(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Req,
    ) -> io::Result<()> {
        write_frame(io, req.encode_pieces()).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()> {
        write_frame(io, resp.encode_pieces()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phase_protocol::block::BlockRequest;
    use phase_protocol::cid::raw_cid;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_lengths_are_refused() {
        let msg = BlockRequest {
            want: vec![raw_cid(b"a"), raw_cid(b"b")],
        };
        let mut wire = futures::io::Cursor::new(Vec::new());
        write_frame(&mut wire, msg.encode_pieces()).await.unwrap();
        let bytes = wire.into_inner();
        let back: BlockRequest = read_message(&mut &bytes[..]).await.unwrap();
        assert_eq!(back, msg);
        // A length prefix claiming 2^40 bytes is refused before any read.
        let hostile = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
        let err = read_message::<BlockRequest, _>(&mut &hostile[..])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let garbage = [0x03, 0xff, 0xff, 0xff];
        assert!(
            read_message::<BlockRequest, _>(&mut &garbage[..])
                .await
                .is_err()
        );
        // A frame shorter than its prefix claims is an error, not a hang.
        let short = [&bytes[..1], &bytes[1..bytes.len() - 1]].concat();
        let err = read_message::<BlockRequest, _>(&mut &short[..])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
