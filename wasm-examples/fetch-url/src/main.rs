//! GETs a URL through `wasi:http/outgoing-handler` and writes the body to
//! `/output/body` (or the path given second), printing the status and the
//! number of bytes. A refused request prints the error the host gave, as
//! WIT names it (`HTTP-request-denied` when the job or the worker does not
//! allow the host), and exits 1 (a component's exit carries only success or
//! failure).
//!
//! `phase-node run --net 127.0.0.1:8080 fetch-url.wasm http://127.0.0.1:8080/`

use std::io::Write;

use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        fail("usage: fetch-url URL [FILE]");
    };
    let to = args.next().unwrap_or_else(|| "/output/body".to_owned());
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => fail(&format!("{url}: not an http:// or https:// URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };

    let request = OutgoingRequest::new(Fields::new());
    let set = request
        .set_scheme(Some(&scheme))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(path)));
    if set.is_err() {
        fail(&format!("{url}: not a valid request"));
    }
    let future = match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(e) => fail(&describe(&e)),
    };
    let response = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(e))) => fail(&describe(&e)),
            Some(Err(())) => fail("the response was already taken"),
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let body = response.consume().unwrap_or_else(|()| fail("no body"));
    let mut file = std::fs::File::create(&to)
        .unwrap_or_else(|e| fail(&format!("cannot create {to}: {e}")));
    let mut bytes = 0usize;
    {
        let stream = body.stream().unwrap_or_else(|()| fail("no body stream"));
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    bytes += chunk.len();
                    file.write_all(&chunk)
                        .unwrap_or_else(|e| fail(&format!("cannot write {to}: {e}")));
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    fail(&format!("reading the body: {}", e.to_debug_string()))
                }
            }
        }
    }
    println!("{status} {bytes} bytes");
}

/// The error as WIT names it.
fn describe(e: &ErrorCode) -> String {
    match e {
        ErrorCode::HttpRequestDenied => "HTTP-request-denied".to_owned(),
        other => format!("{other:?}"),
    }
}

fn fail(why: &str) -> ! {
    eprintln!("fetch-url: {why}");
    std::process::exit(1)
}
