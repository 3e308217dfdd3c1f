//! The dashboard (`GET /`) in a real headless Chromium (Debian's
//! `chromium`, installed by scripts/test.sh): after two jobs, the worker's
//! page shows them with their receipts, its peer count, its worker and its
//! ledger as the API says them.

use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::{DEADLINE, Daemon};

/// The value of `attr` on the element whose `id` is `id` in `dom`.
fn attr_of_id<'a>(dom: &'a str, id: &str, attr: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let start = dom[..at].rfind('<').unwrap();
    let tag = &dom[start..start + dom[start..].find('>').unwrap()];
    attr_in(tag, attr).unwrap_or_else(|| panic!("#{id} has no {attr}: {tag}"))
}

fn attr_in<'a>(tag: &'a str, attr: &str) -> Option<&'a str> {
    let key = format!(" {attr}=\"");
    let from = tag.find(&key)? + key.len();
    Some(&tag[from..from + tag[from..].find('"')?])
}

/// Every `<tr data-job=…>` row of the jobs table: (job, state, receipt).
fn job_rows(dom: &str) -> Vec<(String, String, String)> {
    dom.match_indices("<tr data-job=")
        .map(|(i, _)| {
            let tag = &dom[i..i + dom[i..].find('>').unwrap()];
            let get = |a| attr_in(tag, a).unwrap_or_default().to_owned();
            (get("data-job"), get("data-state"), get("data-receipt"))
        })
        .collect()
}

/// `GET path` on the daemon's Unix socket, as JSON.
fn api(daemon: &Daemon, path: &str) -> Value {
    let out = Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(daemon.socket())
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "GET {path}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What headless Chromium has in the page's DOM once its scripts ran.
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=8000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium runs (scripts/test.sh installs Debian's chromium)");
    let out = common::finish_within(child, DEADLINE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_dashboard_shows_the_jobs_peers_worker_and_ledger_the_api_says() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, addr) = Daemon::start_with_tcp_api(&dir.path().join("w"), &[]);
    let requester = Daemon::start(
        &dir.path().join("r"),
        &["--no-worker", "--bootstrap", &worker.addr],
        None,
    );
    let hello = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.job.json");
    for _ in 0..2 {
        let out = requester.cli(&[
            "submit",
            "--worker",
            worker.peer_id(),
            hello.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The worker records each end (with its ledger entry) as it delivers
    // the receipt: wait until the API has both.
    let started = std::time::Instant::now();
    let jobs = loop {
        let jobs = api(&worker, "/api/v1/jobs");
        let ledger = api(&worker, "/api/v1/ledger");
        let done = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["state"] == "done" && j["receipt"].is_string())
            .count();
        if done == 2 && ledger["total"]["worked"]["jobs"] == 2 {
            break jobs;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the worker never recorded both: {jobs} {ledger}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let newest = api(&worker, "/api/v1/ledger/entries?limit=1");
    assert_eq!(newest["entries"].as_array().unwrap().len(), 1, "{newest}");
    assert_eq!(newest["entries"][0]["role"], "worked", "{newest}");
    assert_eq!(newest["entries"][0]["seq"], 1, "newest first: {newest}");
    let peers = api(&worker, "/api/v1/peers");
    let id = api(&worker, "/api/v1/id");

    let token = std::fs::read_to_string(dir.path().join("w/api.token")).unwrap();
    let dom = dump_dom(&format!("http://{addr}/#token={}", token.trim()));
    assert!(
        dom.contains("<body data-loaded=\"1\">"),
        "the page never read the API: {dom}"
    );
    assert_eq!(text_of_id(&dom, "error"), "", "the page shows an error");
    assert_eq!(text_of_id(&dom, "peer-id"), id["peer_id"].as_str().unwrap());
    assert_eq!(
        attr_of_id(&dom, "peer-count", "data-value"),
        peers["peers"].as_array().unwrap().len().to_string(),
        "the page's peer count is the API's"
    );
    assert_eq!(attr_of_id(&dom, "worker-state", "data-value"), "taking");
    assert_eq!(attr_of_id(&dom, "worked-jobs", "data-value"), "2");
    assert_eq!(attr_of_id(&dom, "received-jobs", "data-value"), "0");
    assert_eq!(attr_of_id(&dom, "ledger-plot", "data-points"), "2");
    assert!(
        dom.contains("data-series=\"worked\" data-total=\"2\""),
        "the plot draws both jobs as work done"
    );
    // The jobs table: the API's jobs, each with its state and receipt.
    let mut shown = job_rows(&dom);
    let mut said: Vec<_> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let get = |k: &str| j[k].as_str().unwrap_or_default().to_owned();
            (get("job"), get("state"), get("receipt"))
        })
        .collect();
    shown.sort();
    said.sort();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert_eq!(shown, said);
    // Without the token, the page asks for it and shows no data.
    let dom = dump_dom(&format!("http://{addr}/"));
    assert!(dom.contains("<body data-loaded=\"0\">"), "{dom}");
    assert_eq!(
        text_of_id(&dom, "error"),
        "cannot read the daemon: this API needs its token"
    );
    assert!(
        dom.contains("<form id=\"login\" style=\"display: block;\">"),
        "{dom}"
    );
    assert!(job_rows(&dom).is_empty());
}

/// The text of the element whose `id` is `id` (up to its first child).
fn text_of_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap();
    let from = at + dom[at..].find('>').unwrap() + 1;
    &dom[from..from + dom[from..].find('<').unwrap()]
}
