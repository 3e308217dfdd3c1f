//! The owner can always reach the API: 2,000 idle TCP connections (anyone
//! on the machine can open them) do not take the Unix socket from its
//! owner, a flood of idle connections on the socket itself only delays
//! the CLI (it tries again, bounded, until the daemon frees them), and a
//! TCP connection without the token is closed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

mod common;

use common::Daemon;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn idle_connections_never_keep_the_owner_out() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let api = format!("127.0.0.1:{port}");
    let daemon = Daemon::start(&dir.path().join("d"), &["--no-worker", "--api", &api], None);

    // 2,000 idle TCP connections: their own budget.
    let idle: Vec<TcpStream> = (0..2000)
        .filter_map(|_| TcpStream::connect(&api).ok())
        .collect();
    assert!(idle.len() > 1000, "{} connected", idle.len());
    for _ in 0..5 {
        let out = daemon.cli(&["id"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(idle);

    // 1,200 idle connections on the socket itself: past its budget. The
    // CLI tries again until the daemon has closed the idle ones.
    let idle: Vec<UnixStream> = (0..1200)
        .filter_map(|_| UnixStream::connect(daemon.socket()).ok())
        .collect();
    let out = daemon.cli(&["id"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(idle);

    // Without the token: answered 401 and closed.
    let mut tcp = TcpStream::connect(&api).unwrap();
    tcp.write_all(b"GET /api/v1/id HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}
