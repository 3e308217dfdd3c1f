//! The daemon's HTTP API with real `phase-node start` processes: bad input
//! is a JSON error naming the field, garbage and slow clients do not stop
//! it from answering others, TCP needs the token, and `/metrics` counts a
//! job.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

mod common;

use common::{DEADLINE, Daemon};

/// One raw HTTP/1.1 exchange on the socket: (status, body).
fn http(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

fn error_of(body: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (
        v["error"]["code"].as_str().unwrap().to_owned(),
        v["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn bad_input_is_a_json_error_that_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[], None);
    let socket = daemon.socket();
    let cases = [
        ("POST", "/api/v1/jobs", "{not json", 400, "bad_request", ""),
        (
            "POST",
            "/api/v1/jobs",
            r#"{"job": "nope", "timeout": "1m"}"#,
            400,
            "bad_request",
            "job",
        ),
        (
            "POST",
            "/api/v1/jobs",
            r#"{"job": "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"}"#,
            400,
            "bad_request",
            "timeout",
        ),
        (
            "POST",
            "/api/v1/jobs",
            r#"{"job": "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "timeout": "1m", "replicas": "x"}"#,
            400,
            "bad_request",
            "replicas",
        ),
        (
            "GET",
            "/api/v1/cat/notacid",
            "",
            400,
            "bad_request",
            "not a CID",
        ),
        (
            "GET",
            "/api/v1/peers?wait=many",
            "",
            400,
            "bad_request",
            "wait",
        ),
        (
            "GET",
            "/api/v1/jobs/bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
            "",
            404,
            "not_found",
            "did not run on this node",
        ),
        (
            "GET",
            "/api/v1/nothing",
            "",
            404,
            "not_found",
            "no such route",
        ),
    ];
    for (method, path, body, status, code, names) in cases {
        let (got, answer) = http(&socket, method, path, body);
        assert_eq!(got, status, "{method} {path}: {answer}");
        let (got_code, message) = error_of(&answer);
        assert_eq!(got_code, code, "{method} {path}: {answer}");
        assert!(message.contains(names), "{method} {path}: {message}");
        assert_eq!(message.lines().count(), 1, "{message}");
    }
    let big = "x".repeat(100 * 1024);
    let (got, answer) = http(
        &socket,
        "POST",
        "/api/v1/jobs",
        &format!("{{\"pad\": \"{big}\"}}"),
    );
    assert_eq!(
        (got, error_of(&answer).0.as_str()),
        (413, "too_large"),
        "{answer}"
    );
}

#[test]
fn garbage_idle_and_abandoned_clients_do_not_stop_the_daemon_answering() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[], None);
    let socket = daemon.socket();
    // 200 connections that send nothing at all.
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    // 40 requests that wait for peers that never come, abandoned unread.
    let waiting: Vec<UnixStream> = (0..40)
        .map(|_| {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(b"GET /api/v1/peers?wait=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    // A 10 MB header: refused (431) and closed, long before it is all sent.
    let mut huge = UnixStream::connect(&socket).unwrap();
    huge.set_write_timeout(Some(DEADLINE)).unwrap();
    let _ = huge.write_all(b"GET /api/v1/id HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    let sent = (0..10 * 1024)
        .take_while(|_| huge.write_all(&[b'a'; 1024]).is_ok())
        .count();
    assert!(sent < 10 * 1024, "the daemon read a 10 MB header");
    // Garbage that is not HTTP.
    let mut garbage = UnixStream::connect(&socket).unwrap();
    let _ = garbage.write_all(&[0xff; 4096]);
    // Meanwhile `phase-node id` answers.
    let out = daemon.cli(&["id", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(id["running"], true, "{id}");
    assert_eq!(id["listen"][0].as_str().unwrap(), daemon.addr);
    drop((idle, waiting, huge, garbage));
}

#[test]
fn tcp_needs_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, addr) = Daemon::start_with_tcp_api(dir.path(), &[]);
    let token = std::fs::read_to_string(dir.path().join("api.token")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("api.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let get = |auth: Option<&str>| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /api/v1/id HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(get(None).starts_with("HTTP/1.1 401"), "{}", get(None));
    assert!(get(Some("wrong")).starts_with("HTTP/1.1 401"));
    let ok = get(Some(token.trim()));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("peer_id"), "{ok}");
}

/// Every line of OpenMetrics text is a comment or `name{labels} value`, and
/// it ends with `# EOF`; returns the value of `name` (no labels).
fn metric(text: &str, name: &str) -> f64 {
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let metric = key.split('{').next().unwrap();
        assert!(
            metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name in {line}"
        );
        if key == name {
            found = Some(value);
        }
    }
    found.unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn metrics_parse_and_count_a_submitted_job() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Daemon::start(&dir.path().join("worker"), &[], None);
    let requester = Daemon::start(
        &dir.path().join("requester"),
        &["--no-worker", "--bootstrap", &worker.addr],
        None,
    );
    let out = requester.cli(&["peers", "--wait", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.job.json");
    let out = requester.cli(&["submit", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"dlroW ,olleH\n");
    let (status, text) = http(&worker.socket(), "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "phase_jobs_admitted_total"), 1.0);
    assert_eq!(metric(&text, "phase_receipts_signed_total"), 1.0);
    assert_eq!(metric(&text, "phase_job_run_seconds_count"), 1.0);
    assert!(
        metric(&text, "phase_blocks_fetched_total") >= 2.0,
        "module and stdin"
    );
    let (_, text) = http(&requester.socket(), "GET", "/metrics", "");
    assert_eq!(metric(&text, "phase_jobs_submitted_total"), 1.0);
    assert!(metric(&text, "phase_blocks_served_total") >= 2.0);
    // The work ledger's gauges: one run received, none worked or audited.
    assert_eq!(metric(&text, "phase_ledger_jobs{kind=\"received\"}"), 1.0);
    assert_eq!(metric(&text, "phase_ledger_jobs{kind=\"worked\"}"), 0.0);
    assert!(metric(&text, "phase_ledger_fuel{kind=\"received\"}") > 0.0);
    assert_eq!(metric(&text, "phase_ledger_audits{kind=\"failed\"}"), 0.0);
    // And the ledger route says the same, naming the worker.
    let (status, body) = http(&requester.socket(), "GET", "/api/v1/ledger", "");
    assert_eq!(status, 200, "{body}");
    let ledger: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ledger["entries"], 1, "{ledger}");
    assert_eq!(ledger["peers"][0]["peer"], worker.peer_id(), "{ledger}");
    assert_eq!(ledger["peers"][0]["received"]["jobs"], 1, "{ledger}");
}

/// One raw exchange with a binary body: (status, body, de-chunked).
fn http_bytes(socket: &Path, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let mut rest = &answer[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (status, rest.to_vec());
    }
    let mut out = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap(), 16).unwrap();
        rest = &rest[end + 2..];
        if size == 0 {
            return (status, out);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[test]
fn add_cat_get_pins_and_gc_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[], None);
    let socket = daemon.socket();
    // Three chunks and a bit: a DAG, not a single block.
    let data: Vec<u8> = (0..800_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (status, body) = http_bytes(&socket, "POST", "/api/v1/add", &data);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let added: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(added["size"], data.len());
    let cid = added["cid"].as_str().unwrap().to_owned();
    // The same CID as `phase-node add` (which matches `ipfs add --cid-version=1`).
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let out = daemon.cli(&["add", "--no-pin", file.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), cid);

    let (status, bytes) = http_bytes(&socket, "GET", &format!("/api/v1/cat/{cid}"), b"");
    assert_eq!(status, 200);
    assert_eq!(bytes, data, "cat streams the file back");
    let (status, car) = http_bytes(&socket, "GET", &format!("/api/v1/get/{cid}"), b"");
    assert_eq!(status, 200);
    let car_file = dir.path().join("x.car");
    std::fs::write(&car_file, &car).unwrap();
    let other = tempfile::tempdir().unwrap();
    let import = Command::new(env!("CARGO_BIN_EXE_phase-node"))
        .arg("--data-dir")
        .arg(other.path())
        .args(["car", "import", car_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(String::from_utf8_lossy(&import.stdout).contains(&cid));

    let (_, pins) = http(&socket, "GET", "/api/v1/pins", "");
    assert!(pins.contains(&cid), "{pins}");
    let (status, _) = http(&socket, "DELETE", &format!("/api/v1/pins/{cid}"), "");
    assert_eq!(status, 200);
    let (status, answer) = http(&socket, "DELETE", &format!("/api/v1/pins/{cid}"), "");
    assert_eq!((status, error_of(&answer).0.as_str()), (404, "not_found"));
    let (status, answer) = http(&socket, "POST", "/api/v1/gc", "");
    assert_eq!(status, 200, "{answer}");
    let gc: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(gc["removed"].as_u64().unwrap() >= 4, "{answer}");
}

#[test]
fn dht_lookups_find_a_peer_and_a_worker_and_refuse_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Daemon::start(&dir.path().join("worker"), &[], None);
    let requester = Daemon::start(
        &dir.path().join("requester"),
        &["--no-worker", "--bootstrap", &worker.addr],
        None,
    );
    let ok = |args: &[&str]| {
        let out = requester.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["peers", "--wait", "1"]);
    let peer = worker.peer_id();
    let found = ok(&["dht", "find-peer", peer]);
    assert!(
        found.contains("/ip4/127.0.0.1/"),
        "the worker's address: {found}"
    );
    // The worker's own record answers even one put while it was alone.
    let providers = ok(&["dht", "providers", "--capability", "wasi-p1"]);
    assert!(providers.lines().any(|l| l == peer), "{providers}");
    let (status, text) = http(&requester.socket(), "GET", "/api/v1/dht/providers", "");
    assert_eq!(status, 400, "{text}");
    let (status, text) = http(
        &requester.socket(),
        "GET",
        "/api/v1/dht/peer/not-a-peer",
        "",
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not a PeerId"), "{text}");
}

#[test]
fn guest_states_are_listed_read_and_compared_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[], None);
    let socket = daemon.socket();
    let made = |args: &[&str]| {
        let out = daemon.cli(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // Made beside the daemon, pinned by it.
    let a = made(&["state", "set", "count=1", "owner=alice"]);
    let b = made(&["state", "set", "--root", &a, "count=2", "--delete", "owner"]);
    let (_, pins) = http(&socket, "GET", "/api/v1/pins", "");
    assert!(pins.contains(&a) && pins.contains(&b), "{pins}");

    let (status, body) = http(&socket, "GET", &format!("/api/v1/state/{a}"), "");
    assert_eq!(status, 200, "{body}");
    let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listing["root"], a.as_str());
    assert_eq!(
        (listing["count"].as_u64(), listing["bytes"].as_u64()),
        (Some(2), Some(16))
    );
    assert_eq!(listing["entries"][0]["key"], "count");
    assert_eq!(listing["entries"][1]["size"], 5);

    let (status, body) = http(
        &socket,
        "GET",
        &format!("/api/v1/state/{b}/value?key=count"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (value["key"].as_str(), value["value"].as_str()),
        (Some("count"), Some("2"))
    );

    let (status, body) = http(
        &socket,
        "GET",
        &format!("/api/v1/state/{a}/diff?to={b}"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let diff: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        diff,
        serde_json::json!([
            {"key": "count", "change": "changed", "before": "1", "after": "2"},
            {"key": "owner", "change": "removed", "before": "alice", "after": null},
        ])
    );

    // A state over what one answer lists or compares: 100,001 keys, set by
    // a guest (the CLI, beside the daemon, pins it).
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-examples/out/state-bench.wasm");
    let out = daemon.cli(&["run", "--json", bench.to_str().unwrap(), "set", "100001"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["state_keys"], 100_001, "{report}");
    let big = report["state_after"].as_str().unwrap().to_owned();

    // Bad input: a JSON error each.
    let absent = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    for (path, status, code, says) in [
        (
            format!("/api/v1/state/{b}/value?key=owner"),
            404,
            "not_found",
            "is not in state",
        ),
        (
            format!("/api/v1/state/{b}/value?key=hex:zz"),
            400,
            "bad_request",
            "key:",
        ),
        (
            format!("/api/v1/state/{a}/diff?to=nope"),
            400,
            "bad_request",
            "to:",
        ),
        (
            format!("/api/v1/state/{absent}"),
            404,
            "not_found",
            "not available",
        ),
        (
            "/api/v1/state/nope".to_owned(),
            400,
            "bad_request",
            "not a CID",
        ),
        (
            format!("/api/v1/state/{big}"),
            413,
            "too_large",
            "more than 100000 listed here",
        ),
        (
            format!("/api/v1/state/{a}/diff?to={big}"),
            413,
            "too_large",
            "too large to compare here (100001 keys in the larger",
        ),
    ] {
        let (got, body) = http(&socket, "GET", &path, "");
        assert_eq!(got, status, "{path}: {body}");
        let (c, message) = error_of(&body);
        assert_eq!(c, code, "{path}");
        assert!(message.contains(says), "{path}: {message}");
    }
}

#[test]
fn a_job_in_json_runs_in_the_background_and_its_result_carries_outputs_and_signed_bytes() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().unwrap();
    let (worker, requester) = Daemon::worker_and_requester(dir.path());
    let out = requester.cli(&["peers", "--wait", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let socket = requester.socket();
    // A client uploads the module, then gives the job in JSON.
    let module = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-examples/out/hello.wasm"),
    )
    .unwrap();
    let (status, body) = http_bytes(&socket, "POST", "/api/v1/add", &module);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let added: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let module = added["cid"].as_str().unwrap().to_owned();
    let submit = |job: serde_json::Value| {
        let request = serde_json::json!({"job": job, "timeout": "2m", "wait": false});
        http(&socket, "POST", "/api/v1/jobs", &request.to_string())
    };
    let (status, body) = submit(serde_json::json!({
        "module": module,
        "stdin": {"text": "Hello, World"},
        "limits": {"memory": "64MiB", "timeout": "10s"},
        "deterministic": true,
    }));
    assert_eq!(status, 202, "{body}");
    let job = serde_json::from_str::<serde_json::Value>(&body).unwrap()["job"]
        .as_str()
        .unwrap()
        .to_owned();
    // The client asks until it is done (as a client in any language would).
    let started = std::time::Instant::now();
    let answer = loop {
        let (status, body) = http(&socket, "GET", &format!("/api/v1/jobs/{job}/result"), "");
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        match answer["state"].as_str().unwrap() {
            "done" => break answer,
            "submitting" | "running" => {}
            other => panic!("{other}: {answer}"),
        }
        assert!(started.elapsed() < DEADLINE, "not done: {answer}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(answer["stdout"], "dlroW ,olleH\n", "{answer}");
    assert_eq!(answer["stderr"], "", "{answer}");
    assert_eq!(answer["exit_code"], 0, "{answer}");
    assert_eq!(answer["status"], "exited with code 0", "{answer}");
    assert_eq!(answer["worker"], worker.peer_id(), "{answer}");
    assert_eq!(answer["stdout_truncated"], false, "{answer}");
    assert_eq!(
        answer["receipt"]["receipt"]["job"],
        job.as_str(),
        "{answer}"
    );
    // The signature holds over the bytes given, with the key given, and
    // the key is the one the worker's PeerId holds.
    let signed = b64
        .decode(answer["signed_bytes"].as_str().unwrap())
        .unwrap();
    let signature = b64.decode(answer["signature"].as_str().unwrap()).unwrap();
    let key = b64.decode(answer["public_key"].as_str().unwrap()).unwrap();
    assert!(signed.starts_with(b"phase-receipt-v1"));
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key).unwrap();
    assert_eq!(
        libp2p::identity::PublicKey::from(key.clone())
            .to_peer_id()
            .to_string(),
        worker.peer_id()
    );
    assert!(key.verify(&signed, &signature));
    let mut tampered = signed.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(!key.verify(&tampered, &signature));

    // Bad jobs are refused at once, naming the field, and leave nothing
    // pinned behind (a stdin text is stored only once all else is checked).
    let (status, pins_before) = http(&socket, "GET", "/api/v1/pins", "");
    assert_eq!(status, 200, "{pins_before}");
    let missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    for (job, says) in [
        (
            serde_json::json!({"module": missing}),
            "job.module: bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy is not in this node's store",
        ),
        (
            serde_json::json!({"module": {"path": "/etc/passwd"}}),
            "job.module: the daemon reads no paths",
        ),
        (
            serde_json::json!({"module": module, "stdin": {"text": "left behind?"}, "input": missing}),
            "job.input: bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy is not in this node's store",
        ),
        (
            serde_json::json!({"module": module, "stdin": {"text": "left behind?"}, "limits": {"memory": "1000TiB"}}),
            "job.limits",
        ),
        (
            serde_json::json!({"module": "not-a-cid"}),
            "upload the file with POST /api/v1/add and give its CID",
        ),
        (
            serde_json::json!({"module": module, "limits": {"memory": "1000TiB"}}),
            "job.limits",
        ),
        (
            serde_json::json!({"module": module, "color": "red"}),
            "color",
        ),
    ] {
        let (status, body) = submit(job);
        assert_eq!(status, 400, "{body}");
        let (code, message) = error_of(&body);
        assert_eq!(code, "bad_request");
        assert!(message.contains(says), "{message}");
    }
    let (status, pins_after) = http(&socket, "GET", "/api/v1/pins", "");
    assert_eq!(status, 200, "{pins_after}");
    assert_eq!(pins_before, pins_after, "a refused job pinned something");
    let (status, body) = http(
        &socket,
        "POST",
        "/api/v1/jobs",
        r#"{"job": "not-a-cid", "timeout": "1m"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        error_of(&body).1.contains("job: `not-a-cid` is not a CID"),
        "{body}"
    );
    let (status, body) = http(
        &socket,
        "GET",
        &format!("/api/v1/jobs/{missing}/result"),
        "",
    );
    assert_eq!(status, 404, "{body}");
}
