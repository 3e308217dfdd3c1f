//! Guest stdout/stderr with a hard byte cap: captured in memory, or
//! streamed to the host's own stdout/stderr as the guest writes (a local
//! `run`).
//!
//! `MemoryOutputPipe` also caps, but a full pipe looks to the guest like any
//! other write error and the host cannot tell "output limit" from a trap.
//! [`CappedPipe`] keeps (or passes on) what fits, records the overflow and
//! stops the guest at once with a trap the executor recognises.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// The error a full pipe traps the guest with.
#[derive(Debug, thiserror::Error)]
#[error("output limit of {limit} bytes reached")]
pub(crate) struct OutputLimitHit {
    pub(super) limit: usize,
}

#[derive(Debug, Default)]
struct State {
    buf: BytesMut,
    /// Bytes taken so far (kept in `buf`, or passed to the sink).
    written: usize,
    overflowed: bool,
}

/// Where a streaming pipe passes the guest's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sink {
    /// The host process's stdout.
    Stdout,
    /// The host process's stderr.
    Stderr,
}

impl Sink {
    fn write(self, data: &[u8]) {
        use std::io::Write;
        // A closed host stream (a reader that went away) is not the
        // guest's fault: its bytes are dropped, as a pipe would.
        let _ = match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(data).and_then(|()| out.flush())
            }
            Sink::Stderr => std::io::stderr().lock().write_all(data),
        };
    }
}

/// A cloneable output stream that takes at most `limit` bytes: held in
/// memory, or passed to a [`Sink`] as they come.
#[derive(Clone, Debug)]
pub(crate) struct CappedPipe {
    limit: usize,
    sink: Option<Sink>,
    state: Arc<Mutex<State>>,
}

impl CappedPipe {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            sink: None,
            state: Arc::default(),
        }
    }

    /// A pipe that passes what fits to `sink` instead of keeping it.
    pub(crate) fn streaming(limit: usize, sink: Sink) -> Self {
        Self {
            limit,
            sink: Some(sink),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the buffer inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the guest wrote (at most `limit` bytes; nothing when streamed).
    pub(crate) fn contents(&self) -> Bytes {
        self.lock().buf.clone().freeze()
    }

    /// Whether the guest tried to write past the limit.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Appends what fits; returns whether everything fitted.
    fn append(&self, data: &[u8]) -> bool {
        let mut state = self.lock();
        let room = self.limit - state.written;
        let take = room.min(data.len());
        match self.sink {
            None => state.buf.extend_from_slice(&data[..take]),
            // Under the lock: the guest's writes reach the host in order.
            Some(sink) => sink.write(&data[..take]),
        }
        state.written += take;
        if take < data.len() {
            state.overflowed = true;
        }
        take == data.len()
    }

    fn limit_error(&self) -> StreamError {
        StreamError::Trap(wasmtime::Error::new(OutputLimitHit { limit: self.limit }))
    }
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if self.append(&bytes) {
            Ok(())
        } else {
            Err(self.limit_error())
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        let state = self.lock();
        match self.limit - state.written {
            // Let the guest's next write overflow and trap: a guest that writes
            // exactly `limit` bytes and stops has not hit the limit.
            0 => Ok(4096),
            room => Ok(room),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.append(buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::Error::other(OutputLimitHit { limit: self.limit })))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_fits_and_flags_overflow() {
        let mut p = CappedPipe::new(5);
        p.write(Bytes::from_static(b"abc")).unwrap();
        assert!(!p.overflowed());
        assert!(p.write(Bytes::from_static(b"defg")).is_err());
        assert!(p.overflowed());
        assert_eq!(&p.contents()[..], b"abcde");
    }

    #[test]
    fn exactly_full_is_not_overflow() {
        let mut p = CappedPipe::new(3);
        p.write(Bytes::from_static(b"abc")).unwrap();
        assert!(!p.overflowed());
        assert!(p.check_write().is_ok());
    }
}
