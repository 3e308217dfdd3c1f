//! Compute over the network, in process on loopback QUIC: workers advertise
//! capabilities, requesters find them, submit, and get signed receipts and
//! results back; busy, denied, vanished and lying peers are handled.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use phase_node::config::NodeConfig;
use phase_node::executor::{Executor, ExecutorConfig};
use phase_node::node::NodeHandle;
use phase_node::requester::{Audit, SubmitError, SubmitOptions, SubmitReport};
use phase_node::store::files;
use phase_protocol::guest_state::{self, GuestState};
use phase_protocol::job::{FsAccess, JobRequest, JobResponse, JobState, Rejection};
use phase_protocol::ledger;
use phase_protocol::{ByteSize, Cid, JobSpec, LimitKind, Message, PeerId, Status};

use phase_tests::{HttpServer, TestNet, add, guest, hello_spec, loopback_config, within};

fn worker_config(slots: u32, queue: u32) -> NodeConfig {
    let mut config = loopback_config();
    config.worker.enabled = true;
    config.worker.slots = slots;
    config.worker.queue = queue;
    config
}

/// Workers first (node 0 is also the bootstrap node), then one requester.
async fn net(workers: Vec<NodeConfig>) -> TestNet {
    let mut configs = workers;
    configs.push(loopback_config());
    let net = TestNet::with_configs(configs).await;
    net.converge().await;
    net
}

fn requester(net: &TestNet) -> &NodeHandle {
    net.nodes.last().expect("a requester")
}

async fn entry(node: &NodeHandle, result: Cid, name: &str) -> Vec<u8> {
    let cid = files::entry(node.store(), result, name)
        .await
        .unwrap()
        .unwrap();
    files::cat_to_vec(node.store(), cid).await.unwrap()
}

/// A core module that counts to `n` (about 2 ns a step), then exits 0.
fn counting_module(n: u32) -> Bytes {
    let wat = format!(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start") (local $i i32)
              (loop $l
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get $i) (i32.const {n}))))
              (call $exit (i32.const 0))))"#
    );
    Bytes::from(wat::parse_str(wat).unwrap())
}

/// Submits `spec` from the requester to the one worker (node 0), expecting
/// the worker to refuse it before it runs: the error, once checked that it
/// is `Failed` and that the worker never reported the job running.
async fn fails_before_running(net: &TestNet, spec: &JobSpec) -> SubmitError {
    let mut events = net.nodes[0].worker().unwrap().subscribe();
    let options = SubmitOptions {
        poll_interval: Duration::from_millis(200),
        ..SubmitOptions::default()
    };
    let err = within(requester(net).requester().submit(spec, &options, &quiet()))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::Failed { .. }), "{err}");
    while let Ok((_, state)) = events.try_recv() {
        assert_ne!(state, JobState::Running, "the worker never runs it");
    }
    err
}

fn quiet() -> impl Fn(phase_node::requester::Stage) + Send + Sync {
    |_| {}
}

/// Submits `spec` from `node` with the default options, within the
/// deadline, and expects a report.
async fn submit(node: &NodeHandle, spec: &JobSpec) -> SubmitReport {
    within(
        node.requester()
            .submit(spec, &SubmitOptions::default(), &quiet()),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_runs_on_a_worker_and_the_receipt_names_it() {
    let net = net(vec![worker_config(2, 4), worker_config(2, 4)]).await;
    let c = requester(&net);
    let spec = hello_spec(c, 1).await;
    let report = submit(c, &spec).await;
    let workers: HashSet<PeerId> = net.nodes[..2].iter().map(|n| n.peer_id()).collect();
    let run = &report.results[0];
    assert!(workers.contains(&run.worker), "ran on a worker");
    let receipt = run.receipt.verify_signer(&run.worker).unwrap();
    assert_eq!(receipt.job, spec.id());
    assert_eq!(receipt.requester, c.peer_id());
    assert_eq!(receipt.status, Status::Exited { code: 0 });
    assert_eq!(entry(c, receipt.result, "stdout").await, b"dlroW ,olleH\n");
    // The worker keeps the receipt, retrievable by job id.
    let answer = within(
        c.network()
            .request_job(run.worker, JobRequest::Receipt(spec.id())),
    )
    .await
    .unwrap();
    assert!(matches!(answer, JobResponse::Receipt(r) if *r == run.receipt));
    net.shutdown().await;
}

/// Capability queries the workers of `net` answered, all told.
fn capability_answers(net: &TestNet) -> u64 {
    net.nodes
        .iter()
        .map(|n| n.metrics().jobs.capability_answers.get())
        .sum()
}

/// The first job asks every worker what it offers; the next ones, on the
/// now warm network, ask none: the requester ranks from what they offered
/// (kept current by what it sent them) and the job costs one submission to
/// one worker. Spread over the workers all the same, by free slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_on_a_warm_network_ask_no_worker_what_it_offers() {
    let mut requester_config = loopback_config();
    // No background refresh within the test, however slow the machine.
    requester_config.requester.offer_cache = Duration::from_secs(3600);
    let net = TestNet::with_configs(vec![
        worker_config(2, 4),
        worker_config(2, 4),
        worker_config(2, 4),
        requester_config,
    ])
    .await;
    net.converge().await;
    let c = requester(&net);
    let first = submit(c, &hello_spec(c, 1).await).await;
    let cold = capability_answers(&net);
    assert_eq!(cold, 3, "the first job asks each worker once");
    let mut ran_on: HashSet<PeerId> = [first.results[0].worker].into();
    // Three at once: each takes a free slot from what is remembered.
    let specs = [
        hello_spec(c, 2).await,
        hello_spec(c, 3).await,
        hello_spec(c, 4).await,
    ];
    let options = SubmitOptions::default();
    let reports = within(futures::future::join_all(
        specs
            .iter()
            .map(|spec| c.requester().submit(spec, &options, &|_| {})),
    ))
    .await;
    for report in reports {
        ran_on.insert(report.unwrap().results[0].worker);
    }
    assert_eq!(capability_answers(&net), cold, "warm: no worker was asked");
    assert!(ran_on.len() >= 2, "spread by free slots: {ran_on:?}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_out_of_fuel_gets_a_signed_receipt_that_says_so() {
    let net = net(vec![worker_config(1, 4)]).await;
    let c = requester(&net);
    let mut spec = JobSpec::new(add(c, guest("loop")).await);
    spec.limits.fuel = 1_000_000;
    let report = submit(c, &spec).await;
    let run = &report.results[0];
    let receipt = run.receipt.verify_signer(&run.worker).unwrap();
    assert_eq!(receipt.status, Status::OutOfFuel);
    assert!(receipt.fuel_consumed >= 1_000_000);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_of_a_deterministic_job_agree() {
    let net = net(vec![worker_config(1, 4); 3]).await;
    let c = requester(&net);
    let mut spec = JobSpec::new(add(c, guest("clock-random")).await);
    spec.deterministic = true;
    let options = SubmitOptions {
        replicas: 3,
        ..SubmitOptions::default()
    };
    let report = within(c.requester().submit(&spec, &options, &quiet()))
        .await
        .unwrap();
    let workers: HashSet<PeerId> = report.results.iter().map(|r| r.worker).collect();
    assert_eq!(workers.len(), 3, "three distinct workers");
    let agreement = report.agreement.unwrap();
    assert!(agreement.agreed, "{agreement:?}");
    let results: HashSet<Cid> = report
        .results
        .iter()
        .map(|r| r.receipt.receipt().result)
        .collect();
    assert_eq!(results.len(), 1);
    let fuel: HashSet<u64> = report
        .results
        .iter()
        .map(|r| r.receipt.receipt().fuel_consumed)
        .collect();
    assert_eq!(fuel.len(), 1, "same fuel on every worker");

    // A deterministic job with state: every replica leaves the same state,
    // for the same fuel, its host calls' included.
    let mut spec = JobSpec::new(add(c, guest("counter")).await);
    spec.deterministic = true;
    let report = within(c.requester().submit(&spec, &options, &quiet()))
        .await
        .unwrap();
    let agreement = report.agreement.unwrap();
    assert!(agreement.agreed, "{agreement:?}");
    let states: HashSet<(Cid, u64, u64)> = report
        .results
        .iter()
        .map(|r| {
            let receipt = r.receipt.receipt();
            let t = receipt.state.as_ref().unwrap();
            (t.after, t.host_fuel, receipt.fuel_consumed)
        })
        .collect();
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(agreement.state_after, states.iter().next().map(|s| s.0));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_jobs_at_once_on_two_workers_with_two_slots_all_complete() {
    // No queue: a worker with both slots taken answers busy, and the
    // requester retries.
    let net = net(vec![worker_config(2, 0), worker_config(2, 0)]).await;
    let c = requester(&net);
    let mut specs = Vec::new();
    for nonce in 0..50 {
        specs.push(hello_spec(c, nonce).await);
    }
    let options = SubmitOptions::default();
    let runs = specs
        .iter()
        .map(|spec| c.requester().submit(spec, &options, &|_| {}));
    let reports = within(futures::future::join_all(runs)).await;
    let mut ids = HashSet::new();
    for report in reports {
        let report = report.unwrap();
        let receipt = report.results[0].receipt.receipt();
        assert_eq!(receipt.status, Status::Exited { code: 0 });
        ids.insert(report.job);
    }
    assert_eq!(ids.len(), 50);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_mounts_only_the_folders_a_jobs_permissions_name() {
    let net = net(vec![worker_config(2, 4)]).await;
    let c = requester(&net);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.txt"), "inside").unwrap();
    let (input, _) = files::add_path(c.store(), dir.path().to_owned(), true)
        .await
        .unwrap();
    let module = add(c, guest("probe-fs")).await;
    for (fs, ok) in [
        (FsAccess::Write, [true, true, true]),
        (FsAccess::Read, [true, true, false]),
        (FsAccess::None, [false, false, false]),
    ] {
        let mut spec = JobSpec::new(module);
        spec.input = fs.input().then_some(input.cid);
        spec.permissions.fs = fs;
        let report = submit(c, &spec).await;
        let receipt = report.results[0].receipt.receipt();
        assert_eq!(receipt.status, Status::Exited { code: 0 }, "{fs}");
        let stdout = String::from_utf8(entry(c, receipt.result, "stdout").await).unwrap();
        for (attempt, ok) in [
            "list /input",
            "read /input/probe.txt",
            "write /output/probe.txt",
        ]
        .into_iter()
        .zip(ok)
        {
            let want = format!("{attempt}: {}", if ok { "ok" } else { "denied" });
            assert!(
                stdout.contains(&want),
                "fs {fs}: want `{want}` in:\n{stdout}"
            );
        }
        // What was written to /output came back; nothing else did.
        let output = files::entry(c.store(), receipt.result, "output")
            .await
            .unwrap()
            .unwrap();
        let written = files::entry(c.store(), output, "probe.txt").await.unwrap();
        assert_eq!(written.is_some(), fs == FsAccess::Write, "fs {fs}");
    }
    // An input folder for a job that may see none is refused as malformed
    // before anything is sent.
    let mut spec = JobSpec::new(module);
    spec.input = Some(input.cid);
    spec.permissions.fs = FsAccess::None;
    let err = within(
        c.requester()
            .submit(&spec, &SubmitOptions::default(), &quiet()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("`none` mounts nothing"), "{err}");
    net.shutdown().await;
}

/// The value of `key` in the state at `root`, read from `node`'s store.
fn state_value(node: &NodeHandle, root: &Cid, key: &[u8]) -> Option<Vec<u8>> {
    let mut state = GuestState::open(node.store().clone(), root).unwrap();
    state.get(key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_counter_jobs_count_and_their_receipts_chain() {
    let net = net(vec![worker_config(1, 4), worker_config(1, 4)]).await;
    let c = requester(&net);
    let counter = add(c, guest("counter")).await;
    let mut state: Option<Cid> = None;
    let mut host_fuel = Vec::new();
    for n in 1..=3u32 {
        let mut spec = JobSpec::new(counter);
        spec.state = state;
        let report = submit(c, &spec).await;
        let receipt = report.results[0].receipt.receipt();
        assert_eq!(receipt.status, Status::Exited { code: 0 });
        assert_eq!(
            entry(c, receipt.result, "stdout").await,
            format!("{n}\n").as_bytes()
        );
        let t = receipt
            .state
            .as_ref()
            .expect("a state job's receipt binds its state");
        if let Some(before) = state {
            assert_eq!(t.before, before, "run {n} starts where run {} ended", n - 1);
        }
        // The requester has the whole new state and its log.
        assert_eq!(
            state_value(c, &t.after, b"count"),
            Some(n.to_string().into_bytes())
        );
        let log = c.store().get(&t.log.unwrap()).await.unwrap().unwrap();
        assert_eq!(
            guest_state::decode_log(&log).unwrap(),
            [format!("count={n}").into_bytes()]
        );
        host_fuel.push(t.host_fuel);
        state = Some(t.after);
    }
    // The same calls on states of the same shape cost the same fuel.
    assert!(
        host_fuel[0] >= 3 * phase_node::executor::CALL_FUEL,
        "{host_fuel:?}"
    );
    assert_eq!(host_fuel[1], host_fuel[2]);

    // A run that writes, then traps, leaves the state as it was.
    let abuse = add(c, guest("state-abuse")).await;
    let mut spec = JobSpec::new(abuse);
    spec.args = vec!["trap".into()];
    spec.state = state;
    let report = submit(c, &spec).await;
    let receipt = report.results[0].receipt.receipt();
    assert!(
        matches!(receipt.status, Status::Trapped { .. }),
        "{:?}",
        receipt.status
    );
    let t = receipt.state.as_ref().unwrap();
    assert_eq!(
        (t.before, t.after, t.log),
        (state.unwrap(), state.unwrap(), None)
    );
    assert_eq!(state_value(c, &t.after, b"written"), None);

    // Audited on the other (honest) worker: it passes.
    let mut hello = hello_spec(c, 7).await;
    hello.deterministic = true;
    let report = audited(c, &hello, None).await;
    match &report.audit {
        Some(Audit::Passed { auditor }) => {
            assert_ne!(auditor.worker, report.results[0].worker, "a second worker");
        }
        other => panic!("{other:?}"),
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_reaches_only_hosts_both_it_and_the_worker_allow() {
    let allowed = HttpServer::serve(b"from the allowed server");
    let other = HttpServer::serve(b"never");
    let mut open = worker_config(1, 4);
    open.worker.net_allow = vec![allowed.host()];
    // Node 1 is a worker that lets no job use the network.
    let net = net(vec![open, worker_config(1, 4)]).await;
    let c = requester(&net);
    let fetch = add(c, guest("fetch-url")).await;
    let job = |url: String| {
        let mut spec = JobSpec::new(fetch);
        spec.args = vec![url];
        // The job asks for both; the worker allows only one.
        spec.permissions.net = vec![allowed.host(), other.host()];
        spec
    };

    let report = submit(c, &job(allowed.url())).await;
    let run = &report.results[0];
    assert_eq!(
        run.worker,
        net.nodes[0].peer_id(),
        "only node 0 offers wasi-http"
    );
    let receipt = run.receipt.verify_signer(&run.worker).unwrap();
    assert_eq!(receipt.status, Status::Exited { code: 0 });
    assert_eq!(entry(c, receipt.result, "stdout").await, b"200 23 bytes\n");
    let used = receipt
        .network
        .expect("the receipt says it used the network");
    assert_eq!(
        (used.requests, used.denied, used.bytes_received),
        (1, 0, 23)
    );
    assert_eq!(allowed.requests(), 1);

    // A host the job names but the worker does not allow: denied inside
    // the guest, which sees the error.
    let report = submit(c, &job(other.url())).await;
    let receipt = report.results[0].receipt.receipt();
    assert_eq!(receipt.status, Status::Exited { code: 1 });
    let stderr = entry(c, receipt.result, "stderr").await;
    assert!(
        String::from_utf8_lossy(&stderr).contains("HTTP-request-denied"),
        "{}",
        String::from_utf8_lossy(&stderr)
    );
    assert_eq!(
        receipt.network.map(|n| (n.requests, n.denied)),
        Some((0, 1))
    );
    assert_eq!(other.requests(), 0);

    // A worker without net_allow refuses such a job at admission.
    let answer = within(c.network().request_job(
        net.nodes[1].peer_id(),
        JobRequest::Submit(Box::new(job(allowed.url()))),
    ))
    .await
    .unwrap();
    assert!(
        matches!(
            &answer,
            JobResponse::Rejected(Rejection::UnsupportedCapability { capability })
                if capability.as_str() == "wasi-http"
        ),
        "{answer:?}"
    );
    net.shutdown().await;
}

/// Submits `spec` from `node` (to `worker` only, if given), audited for
/// sure.
async fn audited(node: &NodeHandle, spec: &JobSpec, worker: Option<PeerId>) -> SubmitReport {
    let options = SubmitOptions {
        worker,
        audit: Some(1.0),
        ..SubmitOptions::default()
    };
    within(node.requester().submit(spec, &options, &quiet()))
        .await
        .unwrap()
}

/// Submits `spec` to `worker` only, from the requester.
async fn submit_to(net: &TestNet, worker: usize, spec: &JobSpec) -> SubmitReport {
    let options = SubmitOptions {
        worker: Some(net.nodes[worker].peer_id()),
        ..SubmitOptions::default()
    };
    within(requester(net).requester().submit(spec, &options, &quiet()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_upholds_honest_receipts_and_names_what_a_lie_changed() {
    let mut liar = worker_config(1, 4);
    liar.worker.lie = true;
    let net = net(vec![worker_config(1, 4), liar]).await;
    let c = requester(&net);
    let executor = Executor::new(ExecutorConfig::default()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let rerun = |report: SubmitReport| {
        let executor = executor.clone();
        let work = work.path().to_owned();
        async move {
            let receipt = report.results[0].receipt.receipt().clone();
            within(phase_node::worker::rerun(
                c.store(),
                &executor,
                &receipt,
                &work,
            ))
            .await
            .unwrap()
        }
    };

    // Honest receipts: a core module, a component, and two state jobs in a
    // chain.
    let mut hello = hello_spec(c, 1).await;
    hello.deterministic = true;
    let mut component = hello.clone();
    component.module = add(c, guest("hello-component")).await;
    let mut counter = JobSpec::new(add(c, guest("counter")).await);
    counter.deterministic = true;
    for spec in [&hello, &component, &counter] {
        let report = submit_to(&net, 0, spec).await;
        let again = rerun(report).await;
        assert_eq!(again.differences, [], "{spec:?}");
    }
    let first = submit_to(&net, 0, &counter).await;
    counter.state = first.results[0]
        .receipt
        .receipt()
        .state
        .as_ref()
        .map(|t| t.after);
    counter.nonce = 1;
    let report = submit_to(&net, 0, &counter).await;
    let again = rerun(report.clone()).await;
    assert_eq!(again.differences, []);
    let after = report.results[0]
        .receipt
        .receipt()
        .state
        .as_ref()
        .unwrap()
        .after;
    assert_eq!(again.state_after, Some(after.to_string()));

    // The liar's receipt verifies (it signed it), but its result is not
    // what the job gives.
    hello.nonce = 2;
    let report = submit_to(&net, 1, &hello).await;
    let receipt = report.results[0]
        .receipt
        .verify_signer(&net.nodes[1].peer_id())
        .unwrap();
    let claimed = receipt.result;
    let again = rerun(report).await;
    assert_eq!(again.differences.len(), 1, "{:?}", again.differences);
    let d = &again.differences[0];
    assert_eq!(
        (d.field, d.receipt.clone()),
        ("result", claimed.to_string())
    );
    assert_eq!(d.rerun, again.result.to_string());

    // With --audit 1 the liar is caught on its first job: the honest
    // worker's run differs, and both signed receipts are in the report.
    hello.nonce = 3;
    let report = audited(c, &hello, Some(net.nodes[1].peer_id())).await;
    match &report.audit {
        Some(Audit::Failed { auditor }) => {
            assert_eq!(auditor.worker, net.nodes[0].peer_id());
            let lie = report.results[0]
                .receipt
                .verify_signer(&net.nodes[1].peer_id())
                .unwrap();
            let truth = auditor
                .receipt
                .verify_signer(&net.nodes[0].peer_id())
                .unwrap();
            assert_ne!(lie.result, truth.result);
            assert_eq!(lie.job, truth.job);
            // The record keeps both receipts pinned: the evidence outlives gc.
            let record = within(c.requester().records().get(hello.id()))
                .await
                .unwrap()
                .unwrap();
            let roots = record.roots();
            assert!(roots.contains(&auditor.receipt.cid()) && roots.contains(&truth.result));
            assert!(roots.contains(&report.results[0].receipt.cid()));
        }
        other => panic!("{other:?}"),
    }

    // The requester's ledger holds the failed audit against the liar (and
    // none against the honest worker), and the next submissions pass the
    // liar by: two replicas cannot be had without it.
    let ledger = within(c.ledger()).await.unwrap();
    let of = |n: usize| ledger.of(&net.nodes[n].peer_id());
    assert_eq!((of(1).audits_failed, of(1).audits_passed), (1, 0));
    assert_eq!(of(0).audits_failed, 0);
    hello.nonce = 4;
    for _ in 0..3 {
        hello.nonce += 1;
        let report = submit(c, &hello).await;
        assert_eq!(report.results[0].worker, net.nodes[0].peer_id());
    }
    let two = SubmitOptions {
        replicas: 2,
        ..SubmitOptions::default()
    };
    hello.nonce += 1;
    let err = within(c.requester().submit(&hello, &two, &quiet()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SubmitError::Distrusted {
                found: 1,
                skipped: 1,
                replicas: 2
            }
        ),
        "{err}"
    );

    // A local audit reruns the job on the requester itself: the honest
    // worker's receipt holds, the liar's differs in its result; both go in
    // the ledger (the liar, named, is still asked).
    let here = |worker: usize| SubmitOptions {
        worker: Some(net.nodes[worker].peer_id()),
        audit_local: true,
        ..SubmitOptions::default()
    };
    hello.nonce += 1;
    let report = within(c.requester().submit(&hello, &here(0), &quiet()))
        .await
        .unwrap();
    assert_eq!(report.audit, Some(Audit::LocalPassed));
    hello.nonce += 1;
    let report = within(c.requester().submit(&hello, &here(1), &quiet()))
        .await
        .unwrap();
    match &report.audit {
        Some(Audit::LocalFailed { differences }) => {
            assert_eq!(differences.len(), 1, "{differences:?}");
            assert!(
                differences[0].starts_with("result: the receipt says "),
                "{differences:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let ledger = within(c.ledger()).await.unwrap();
    let of = |n: usize| ledger.of(&net.nodes[n].peer_id());
    assert_eq!((of(1).audits_failed, of(1).audits_passed), (2, 0));
    assert_eq!((of(0).audits_failed, of(0).audits_passed), (0, 1));

    // A job that is not deterministic proves nothing when rerun.
    hello.deterministic = false;
    let report = submit_to(&net, 0, &hello).await;
    let receipt = report.results[0].receipt.receipt().clone();
    let err = phase_node::worker::rerun(c.store(), &executor, &receipt, work.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not deterministic"), "{err}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_of_a_worker_that_ran_100_jobs_verifies_and_a_flipped_byte_names_its_entry() {
    let net = net(vec![worker_config(2, 8)]).await;
    let (worker, c) = (&net.nodes[0], requester(&net));
    let mut events = worker.worker().unwrap().subscribe();
    let mut specs = Vec::new();
    for nonce in 0..100 {
        specs.push(hello_spec(c, nonce).await);
    }
    let options = SubmitOptions::default();
    let runs = specs
        .iter()
        .map(|spec| c.requester().submit(spec, &options, &|_| {}));
    let reports: Vec<SubmitReport> = within(futures::future::join_all(runs))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // Each job's end is committed with its entry before it reads as done.
    let mut done = HashSet::new();
    within(async {
        while done.len() < 100 {
            let (id, state) = events.recv().await.unwrap();
            if matches!(state, JobState::Done { .. }) {
                done.insert(id);
            }
        }
    })
    .await;

    let receipts: HashSet<Cid> = reports.iter().map(|r| r.results[0].receipt.cid()).collect();
    let car = within(worker.ledger_export()).await.unwrap();
    let verified = ledger::verify_car(&car).unwrap();
    assert_eq!(verified.node, worker.peer_id());
    assert_eq!(verified.entries.len(), 100);
    assert!(
        verified
            .entries
            .iter()
            .all(|e| e.role == ledger::Role::Worked && e.peer == c.peer_id())
    );
    let named: HashSet<Cid> = verified.entries.iter().map(|e| e.receipt).collect();
    assert_eq!(named, receipts, "each receipt once");
    // The requester's ledger has the other side of each.
    let theirs = within(c.ledger()).await.unwrap();
    assert_eq!(theirs.of(&worker.peer_id()).received.jobs, 100);
    let fuel: u64 = verified.entries.iter().map(|e| e.fuel).sum();
    assert_eq!(theirs.of(&worker.peer_id()).received.fuel, fuel);
    let mine = within(c.ledger_export()).await.unwrap();
    assert_eq!(ledger::verify_car(&mine).unwrap().entries.len(), 100);

    // One byte flipped inside an entry, or inside a receipt an entry names,
    // and the chain fails at that entry.
    let find = |needle: &[u8]| {
        car.windows(needle.len())
            .position(|w| w == needle)
            .expect("every block is in the file")
    };
    for entry in verified.entries.iter().step_by(7) {
        let block = entry.encode();
        let at = find(&block) + block.len() / 2;
        let mut bad = car.clone();
        bad[at] ^= 0x01;
        match ledger::verify_car(&bad) {
            Err(ledger::LedgerError::Entry { seq, .. }) => assert_eq!(seq, entry.seq),
            other => panic!("entry {}: {other:?}", entry.seq),
        }
        let receipt = reports
            .iter()
            .map(|r| &r.results[0].receipt)
            .find(|r| r.cid() == entry.receipt)
            .unwrap()
            .to_cbor();
        let at = find(&receipt) + receipt.len() / 2;
        let mut bad = car.clone();
        bad[at] ^= 0x01;
        match ledger::verify_car(&bad) {
            Err(e @ ledger::LedgerError::Entry { .. }) => {
                assert!(
                    e.to_string().starts_with(&format!("entry {} (", entry.seq)),
                    "{e}"
                );
            }
            other => panic!("receipt of entry {}: {other:?}", entry.seq),
        }
    }
    // Anywhere else (the header, the head, a section's length or CID): it
    // fails too.
    for at in (0..car.len()).step_by(509) {
        let mut bad = car.clone();
        bad[at] ^= 0x01;
        assert!(ledger::verify_car(&bad).is_err(), "byte {at} flipped");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_a_large_state_fetches_only_the_blocks_on_its_path() {
    let net = net(vec![worker_config(1, 4)]).await;
    let (worker, c) = (&net.nodes[0], requester(&net));
    // A state of 10,000 keys, made and pinned on the requester.
    let (empty, bytes) = guest_state::empty();
    let mut state =
        GuestState::open(std::collections::BTreeMap::from([(empty, bytes)]), &empty).unwrap();
    state.set(b"count".to_vec(), b"41".to_vec()).unwrap();
    for i in 0..9_999u32 {
        state
            .set(format!("key-{i}").into_bytes(), vec![7; 32])
            .unwrap();
    }
    let (summary, blocks) = state.commit();
    let all: HashSet<Cid> = blocks.iter().map(|(cid, _)| *cid).collect();
    for (cid, data) in blocks {
        c.store().put(cid, Bytes::from(data)).await.unwrap();
    }
    c.store().pin(&summary.root).await.unwrap();

    let mut spec = JobSpec::new(add(c, guest("counter")).await);
    spec.state = Some(summary.root);
    let report = submit(c, &spec).await;
    let receipt = report.results[0].receipt.receipt();
    assert_eq!(receipt.status, Status::Exited { code: 0 });
    assert_eq!(entry(c, receipt.result, "stdout").await, b"42\n");
    // The worker fetched the root and the nodes on `count`'s path: a few
    // blocks of the thousands, as many as the tree is deep.
    let mut fetched = 0;
    for cid in &all {
        if worker.store().has(cid).await.unwrap() {
            fetched += 1;
        }
    }
    assert!(all.len() > 1000, "{} blocks in the state", all.len());
    assert!(
        (2..=5).contains(&fetched),
        "the worker fetched {fetched} of {} blocks",
        all.len()
    );
    let after = receipt.state.as_ref().unwrap().after;
    assert_eq!(state_value(c, &after, b"count"), Some(b"42".to_vec()));
    assert_eq!(state_value(c, &after, b"key-9998"), Some(vec![7; 32]));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wordcount_over_a_20_mib_input_directory_is_correct() {
    let net = net(vec![worker_config(1, 4)]).await;
    let c = requester(&net);
    let dir = tempfile::tempdir().unwrap();
    let words = ["alpha", "beta", "gamma", "delta", "epsilon"];
    let mut expected = String::new();
    let mut total = 0u64;
    for f in 0..20 {
        let mut text = String::new();
        let mut n = 0u64;
        let mut x = f as u64 + 1;
        while text.len() < (1 << 20) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            text.push_str(words[(x >> 33) as usize % words.len()]);
            text.push(if x.is_multiple_of(7) { '\n' } else { ' ' });
            n += 1;
        }
        let sub = dir.path().join(format!("part{}", f % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("file{f:02}.txt")), &text).unwrap();
        total += n;
    }
    let mut lines: Vec<(String, u64)> = Vec::new();
    for sub in std::fs::read_dir(dir.path()).unwrap() {
        for file in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let rel = path.strip_prefix(dir.path()).unwrap().display().to_string();
            lines.push((rel, text.split_ascii_whitespace().count() as u64));
        }
    }
    lines.sort();
    for (rel, n) in &lines {
        expected.push_str(&format!("{n} {rel}\n"));
    }
    expected.push_str(&format!("TOTAL {total}\n"));

    let (input, _) = files::add_path(c.store(), dir.path().to_owned(), true)
        .await
        .unwrap();
    let mut spec = JobSpec::new(add(c, guest("wordcount")).await);
    spec.input = Some(input.cid);
    let report = submit(c, &spec).await;
    let receipt = report.results[0].receipt.receipt();
    assert_eq!(receipt.status, Status::Exited { code: 0 });
    assert_eq!(receipt.input, Some(input.cid));
    let stdout = String::from_utf8(entry(c, receipt.result, "stdout").await).unwrap();
    assert_eq!(stdout, expected);
    let output = files::entry(c.store(), receipt.result, "output")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry(c, output, "report.txt").await, expected.as_bytes());
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_chosen_worker_mid_job_makes_the_job_finish_elsewhere() {
    let mut net = net(vec![worker_config(1, 4), worker_config(1, 4)]).await;
    let workers: Vec<PeerId> = net.nodes[..2].iter().map(|n| n.peer_id()).collect();
    let mut events: Vec<_> = net.nodes[..2]
        .iter()
        .map(|n| n.worker().unwrap().subscribe())
        .collect();
    let module = counting_module(1_500_000_000);
    let requester_node = net.nodes.pop().unwrap();
    let mut spec = JobSpec::new(add(&requester_node, module).await);
    spec.limits.fuel = 100_000_000_000;
    let job = spec.id();
    let submit = {
        let requester = requester_node.requester().clone();
        let spec = spec.clone();
        let options = SubmitOptions {
            poll_interval: Duration::from_millis(200),
            ..SubmitOptions::default()
        };
        tokio::spawn(async move { requester.submit(&spec, &options, &|_| {}).await })
    };
    // Wait for the job to run somewhere, then kill that worker.
    let running = within(async {
        let (a, b) = events.split_at_mut(1);
        loop {
            let (worker, event) = tokio::select! {
                event = a[0].recv() => (0, event),
                event = b[0].recv() => (1, event),
            };
            if let Ok((id, JobState::Running)) = event
                && id == job
            {
                break worker;
            }
        }
    })
    .await;
    net.nodes.remove(running).shutdown().await;
    let report = within(submit).await.unwrap().unwrap();
    let run = &report.results[0];
    assert_eq!(
        run.worker,
        workers[1 - running],
        "finished on the other worker"
    );
    assert_eq!(run.receipt.receipt().status, Status::Exited { code: 0 });
    assert!(
        report
            .failed_attempts
            .iter()
            .any(|a| a.worker == workers[running]),
        "the lost attempt is reported: {:?}",
        report.failed_attempts
    );
    requester_node.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_requester_is_refused() {
    let mut config = worker_config(1, 4);
    // The requester's id is not known before it starts: deny every id but
    // the bootstrap node's own by allowing only a stranger.
    config.worker.allow = vec![PeerId::random()];
    let net = net(vec![config]).await;
    let c = requester(&net);
    let spec = hello_spec(c, 1).await;
    let options = SubmitOptions {
        worker: Some(net.nodes[0].peer_id()),
        ..SubmitOptions::default()
    };
    let err = within(c.requester().submit(&spec, &options, &quiet()))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not accept jobs from this requester"),
        "{err}"
    );
    let answer = within(
        c.network()
            .request_job(net.nodes[0].peer_id(), JobRequest::Submit(Box::new(spec))),
    )
    .await
    .unwrap();
    assert_eq!(answer, JobResponse::Rejected(Rejection::Denied));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_whose_bytes_do_not_match_its_cid_never_runs() {
    let net = net(vec![worker_config(1, 4)]).await;
    let spec = hello_spec(requester(&net), 1).await;
    // Rot the module's block on the requester's disk: it can no longer
    // serve it, and nobody else has it.
    std::fs::write(net.block_file(1, &spec.module), guest("loop")).unwrap();
    let err = fails_before_running(&net, &spec).await;
    assert!(err.to_string().contains("cannot fetch"), "{err}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_submits_is_answered_busy_and_the_worker_keeps_serving() {
    let net = net(vec![worker_config(1, 0)]).await;
    let c = requester(&net);
    let worker = net.nodes[0].peer_id();
    let spec = hello_spec(c, 0).await;
    let flood = (0..10_000u64).map(|nonce| {
        let mut spec = spec.clone();
        spec.nonce = nonce;
        let network = c.network().clone();
        async move {
            network
                .request_job(worker, JobRequest::Submit(Box::new(spec)))
                .await
        }
    });
    let answers = within(futures::future::join_all(flood)).await;
    let accepted = answers
        .iter()
        .filter(|a| matches!(a, Ok(JobResponse::Accepted(_))))
        .count();
    let busy = answers
        .iter()
        .filter(|a| matches!(a, Ok(JobResponse::Rejected(Rejection::Busy))))
        .count();
    // One slot, no queue: a handful are accepted (as earlier ones finish),
    // the rest answered busy or cut off at the stream limit.
    assert!(accepted >= 1, "the first is accepted");
    assert!(accepted < 1_000, "{accepted} accepted");
    assert!(busy > 1_000, "{busy} busy, {accepted} accepted");
    // Still serving: it answers a query, and a polite job completes.
    let answer = within(c.network().request_job(worker, JobRequest::Capabilities))
        .await
        .unwrap();
    assert!(matches!(answer, JobResponse::Capabilities(_)));
    let report = within(c.requester().submit(
        &hello_spec(c, 20_000).await,
        &SubmitOptions::default(),
        &quiet(),
    ))
    .await
    .unwrap();
    assert_eq!(
        report.results[0].receipt.receipt().status,
        Status::Exited { code: 0 }
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_above_a_workers_maximum_are_rejected_with_the_limit_named() {
    let mut config = worker_config(1, 4);
    config.worker.max_memory = ByteSize(32 << 20);
    let net = net(vec![config]).await;
    let c = requester(&net);
    let spec = hello_spec(c, 1).await; // asks for 64 MiB
    let answer = within(c.network().request_job(
        net.nodes[0].peer_id(),
        JobRequest::Submit(Box::new(spec.clone())),
    ))
    .await
    .unwrap();
    assert!(
        matches!(&answer, JobResponse::Rejected(Rejection::LimitsTooHigh { limit, .. }) if *limit == LimitKind::Memory),
        "{answer:?}"
    );
    // The requester does not even pick it: it does not fit.
    let err = within(
        c.requester()
            .submit(&spec, &SubmitOptions::default(), &quiet()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SubmitError::NoWorkers { .. }), "{err}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_the_request_timeout_completes() {
    // Requests time out after 1 s; the job runs for seconds.
    let short = |mut c: NodeConfig| {
        c.network.request_timeout = Duration::from_secs(1);
        c
    };
    let mut configs = vec![short(worker_config(1, 4))];
    configs.push(short(loopback_config()));
    let net = TestNet::with_configs(configs).await;
    net.converge().await;
    let c = requester(&net);
    let mut spec = JobSpec::new(add(c, counting_module(1_500_000_000)).await);
    spec.limits.fuel = 100_000_000_000;
    let options = SubmitOptions {
        poll_interval: Duration::from_millis(200),
        ..SubmitOptions::default()
    };
    let report = within(c.requester().submit(&spec, &options, &quiet()))
        .await
        .unwrap();
    let receipt = report.results[0].receipt.receipt();
    assert_eq!(receipt.status, Status::Exited { code: 0 });
    assert!(
        receipt.wall_time_ms > 1_000,
        "ran {} ms",
        receipt.wall_time_ms
    );
    assert!(
        report.failed_attempts.is_empty(),
        "{:?}",
        report.failed_attempts
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_larger_than_the_workers_max_input_are_refused() {
    let mut config = worker_config(1, 4);
    config.worker.max_input = ByteSize(1 << 20);
    let net = net(vec![config]).await;
    let c = requester(&net);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big"), phase_tests::pattern(3 << 20, 7)).unwrap();
    let (input, _) = files::add_path(c.store(), dir.path().to_owned(), true)
        .await
        .unwrap();
    let mut spec = JobSpec::new(add(c, guest("wordcount")).await);
    spec.input = Some(input.cid);
    let err = fails_before_running(&net, &spec).await;
    assert!(err.to_string().contains("larger than the limit"), "{err}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_requester_cannot_take_every_slot() {
    // 1 slot + 3 queued = 4 admitted at most, 2 per requester.
    let configs = vec![worker_config(1, 3), loopback_config(), loopback_config()];
    let net = TestNet::with_configs(configs).await;
    net.converge().await;
    let (worker, greedy, polite) = (net.nodes[0].peer_id(), &net.nodes[1], &net.nodes[2]);
    let module = add(greedy, counting_module(1_500_000_000)).await;
    let submit = |node: &NodeHandle, nonce: u64| {
        let mut spec = JobSpec::new(module);
        spec.limits.fuel = 100_000_000_000;
        spec.nonce = nonce;
        let network = node.network().clone();
        async move {
            network
                .request_job(worker, JobRequest::Submit(Box::new(spec)))
                .await
                .unwrap()
        }
    };
    let mut accepted = 0;
    for nonce in 0..10 {
        match within(submit(greedy, nonce)).await {
            JobResponse::Accepted(_) => accepted += 1,
            JobResponse::Rejected(Rejection::Busy) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted, 2, "the greedy requester gets its share only");
    let answer = within(submit(polite, 100)).await;
    assert!(
        matches!(answer, JobResponse::Accepted(_)),
        "another requester still gets in: {answer:?}"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_that_expands_past_max_input_is_refused_before_it_is_written() {
    // About 21 blocks, 300 KiB fetched, that would export as 2^20 copies of
    // a 256 KiB file: 256 GiB on the volunteer's disk.
    let net = net(vec![worker_config(1, 4)]).await;
    let c = requester(&net);
    let file = files::add_bytes(c.store(), Bytes::from(phase_tests::pattern(256 << 10, 9)))
        .await
        .unwrap();
    let mut root = file;
    for _ in 0..20 {
        let (mut blocks, dir) =
            phase_protocol::unixfs::directory(vec![("a".into(), root), ("b".into(), root)])
                .unwrap();
        let block = blocks.pop().unwrap();
        c.store()
            .put(block.cid, Bytes::from(block.data))
            .await
            .unwrap();
        root = dir;
    }
    let mut spec = JobSpec::new(add(c, guest("wordcount")).await);
    spec.input = Some(root.cid);
    let err = fails_before_running(&net, &spec).await;
    assert!(err.to_string().contains("entries"), "{err}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_never_removes_a_users_pin() {
    let mut config = worker_config(1, 4);
    config.worker.keep_jobs = 1;
    let net = net(vec![config]).await;
    let c = requester(&net);
    let worker_store = net.nodes[0].store().clone();
    // Different stdin, so the two results differ.
    let run = |nonce: u64| async move {
        let mut spec = hello_spec(c, nonce).await;
        spec.stdin = Some(add(c, Bytes::from(format!("Hello, {nonce}"))).await);
        let report = submit(c, &spec).await;
        report.results[0].receipt.clone()
    };
    let first = run(1).await;
    // The worker's user pins the first job's result by hand.
    let result = first.receipt().result;
    worker_store.pin(&result).await.unwrap();
    // A second job: the first is forgotten (keep_jobs = 1); a third: the
    // second is.
    let second = run(2).await;
    worker_store.gc().await.unwrap();
    assert!(
        worker_store.has(&result).await.unwrap(),
        "gc keeps what the user pinned"
    );
    let third = run(3).await;
    // Shutdown waits for the worker's tasks, forgetting included (the state
    // database stays open in this handle).
    net.shutdown().await;
    let pins: HashSet<Cid> = worker_store.pins().await.unwrap().into_iter().collect();
    assert!(pins.contains(&result), "the user's pin stays");
    assert_ne!(second.receipt().result, result);
    assert!(
        !pins.contains(&second.receipt().result),
        "the forgotten job's result is unpinned"
    );
    // Receipts stay pinned by the work ledger, which names them (an export
    // carries them), after their jobs are forgotten.
    assert!(pins.contains(&first.cid()) && pins.contains(&second.cid()));
    assert!(pins.contains(&third.cid()) && pins.contains(&third.receipt().result));
}
