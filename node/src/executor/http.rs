//! Outgoing HTTP for components (`wasi:http/outgoing-handler`), through a
//! gate: a request goes out only to a `host:port` the run allows
//! ([`NetAccess`]), and only within the run's caps ([`MAX_HTTP_REQUESTS`],
//! [`MAX_HTTP_BYTES`], the per-request timeouts). Every other request fails
//! inside the guest with the error WIT names (`HTTP-request-denied`,
//! `connection-limit-reached`, `HTTP-response-body-size`, ...), never a trap
//! of the host. What went out is counted ([`NetworkUse`]).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use phase_protocol::NetworkUse;
use tracing::debug;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Most requests a run may make.
pub const MAX_HTTP_REQUESTS: u64 = 64;
/// Most bytes of bodies a run may send and receive, in all.
pub const MAX_HTTP_BYTES: u64 = 64 << 20;
/// Longest a connection (and TLS handshake) may take.
pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a response may take to start, and to send its next bytes.
pub const HTTP_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// The `host:port`s a run may reach; empty reaches nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetAccess {
    hosts: BTreeSet<String>,
}

impl NetAccess {
    /// Access to `hosts`, each `host:port` (host names compare without
    /// case).
    pub fn new<S: AsRef<str>>(hosts: impl IntoIterator<Item = S>) -> Self {
        Self {
            hosts: hosts
                .into_iter()
                .map(|h| h.as_ref().to_ascii_lowercase())
                .collect(),
        }
    }

    /// The hosts both `self` and `other` allow.
    #[must_use]
    pub fn intersect(&self, other: &Self) -> Self {
        Self {
            hosts: self.hosts.intersection(&other.hosts).cloned().collect(),
        }
    }

    /// Whether it reaches nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Whether `uri` (its host and port, the scheme's default if none) is
    /// allowed.
    #[must_use]
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let port = match (uri.port_u16(), uri.scheme_str()) {
            (Some(port), _) => port,
            (None, Some("https")) => 443,
            (None, _) => 80,
        };
        self.hosts
            .contains(&format!("{}:{port}", host.to_ascii_lowercase()))
    }
}

/// Counters shared by a run's gate and the bodies it wraps.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    denied: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

impl Counters {
    /// Takes `n` bytes of the run's budget into `counter`; false (nothing
    /// taken) past it.
    fn take(&self, counter: &AtomicU64, n: u64) -> bool {
        let both = self.sent.load(Ordering::Relaxed) + self.received.load(Ordering::Relaxed);
        if both + n > MAX_HTTP_BYTES {
            return false;
        }
        counter.fetch_add(n, Ordering::Relaxed);
        true
    }
}

/// A run's HTTP hooks: the allow list, the caps and the counters.
#[derive(Debug, Default)]
pub(super) struct HttpGate {
    access: NetAccess,
    counters: Arc<Counters>,
}

impl HttpGate {
    pub(super) fn new(access: NetAccess) -> Self {
        Self {
            access,
            counters: Arc::default(),
        }
    }

    /// What the run did.
    pub(super) fn used(&self) -> NetworkUse {
        let c = &self.counters;
        NetworkUse {
            requests: c.requests.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
            bytes_sent: c.sent.load(Ordering::Relaxed),
            bytes_received: c.received.load(Ordering::Relaxed),
        }
    }
}

type Sent = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Sent,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, Sent), Error>> + Send> {
        let counters = Arc::clone(&self.counters);
        if !self.access.allows(request.uri()) {
            debug!(uri = %request.uri(), "outgoing request denied");
            counters.denied.fetch_add(1, Ordering::Relaxed);
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        if counters.requests.load(Ordering::Relaxed) >= MAX_HTTP_REQUESTS {
            counters.denied.fetch_add(1, Ordering::Relaxed);
            return Box::new(async { Err(Error::ConnectionLimitReached) });
        }
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let cap =
            |asked: Option<Duration>, ours: Duration| Some(asked.map_or(ours, |a| a.min(ours)));
        let options = RequestOptions {
            connect_timeout: cap(
                options.and_then(|o| o.connect_timeout),
                HTTP_CONNECT_TIMEOUT,
            ),
            first_byte_timeout: cap(
                options.and_then(|o| o.first_byte_timeout),
                HTTP_BYTE_TIMEOUT,
            ),
            between_bytes_timeout: cap(
                options.and_then(|o| o.between_bytes_timeout),
                HTTP_BYTE_TIMEOUT,
            ),
        };
        let request = request.map(|body| {
            Counted {
                inner: body,
                counters: Arc::clone(&counters),
                direction: Direction::Sent,
            }
            .boxed_unsync()
        });
        Box::new(async move {
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let response = response.map(|body| {
                Counted {
                    inner: body.boxed_unsync(),
                    counters,
                    direction: Direction::Received,
                }
                .boxed_unsync()
            });
            Ok((response, Box::new(io) as Sent))
        })
    }
}

#[derive(Clone, Copy, Debug)]
enum Direction {
    Sent,
    Received,
}

/// A body whose data bytes count against the run's budget.
struct Counted {
    inner: WasiBody,
    counters: Arc<Counters>,
    direction: Direction,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let c = &self.counters;
            let (counter, over) = match self.direction {
                Direction::Sent => (&c.sent, Error::HttpRequestBodySize(None)),
                Direction::Received => (&c.received, Error::HttpResponseBodySize(None)),
            };
            if !c.take(counter, data.len() as u64) {
                return Poll::Ready(Some(Err(over)));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_matches_host_and_port_with_the_schemes_default() {
        let access = NetAccess::new(["127.0.0.1:8080", "Example.org:443", "plain.net:80"]);
        let allows = |u: &str| access.allows(&u.parse().unwrap());
        assert!(allows("http://127.0.0.1:8080/x"));
        assert!(!allows("http://127.0.0.1:8081/x"));
        assert!(!allows("http://127.0.0.1/x"), "port 80 is not 8080");
        assert!(allows("https://example.org/"), "https means 443");
        assert!(allows("https://EXAMPLE.org:443/"));
        assert!(!allows("http://example.org/"), "http means 80");
        assert!(allows("http://plain.net/"));
        assert!(!NetAccess::default().allows(&"http://127.0.0.1:8080/".parse().unwrap()));
    }

    #[test]
    fn access_of_job_and_worker_is_what_both_allow() {
        let job = NetAccess::new(["a.org:443", "127.0.0.1:8080"]);
        let worker = NetAccess::new(["127.0.0.1:8080", "b.org:443"]);
        assert_eq!(job.intersect(&worker), NetAccess::new(["127.0.0.1:8080"]));
        assert!(job.intersect(&NetAccess::default()).is_empty());
    }

    #[test]
    fn the_byte_budget_is_shared_by_both_directions() {
        let c = Counters::default();
        assert!(c.take(&c.sent, MAX_HTTP_BYTES - 10));
        assert!(!c.take(&c.received, 11));
        assert!(c.take(&c.received, 10));
        assert!(!c.take(&c.sent, 1));
    }
}
