//! `phase-node submit`, `status` and `receipt`: jobs on the network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use libp2p::{Multiaddr, PeerId};

use crate::jobfile::{JobFile, MAX_JOB_FILE, Source};
use phase_protocol::job::{JobId, JobState};
use phase_protocol::{ByteSize, Cid, JobSpec, Message, SignedReceipt, Status};

use super::GlobalArgs;
use super::daemon::NodeArgs;
use super::pins::Pins;
use super::run::exit_code;
use crate::api::types::ErrorCode;
use crate::api::types::{
    JobEntry, JobRef, JobRole, JobStatusAnswer, JobsAnswer, ReceiptAnswer, SubmitRequest,
};
use crate::api::{ApiClient, ClientError, client};
use crate::identity;
use crate::node::Node;
use crate::requester::{self, Audit, Records, SUBMIT_MARGIN, Stage, SubmitOptions, SubmitReport};
use crate::store::{BlockStore, files, untrusted};

/// Submit a job to the network and wait for its verified result.
///
/// Imports the job file's local paths into the store, finds workers with
/// the capabilities the job needs (through the running daemon of the data
/// dir, or as a short-lived node), submits, waits, verifies the signed
/// receipt (and that the worker it was submitted to signed it), fetches the
/// result and prints the job's stdout and stderr. Exits with the job's exit
/// code (124 timed out, 134 trapped, 135 out of fuel, 137 memory limit, 138
/// output limit), 1 if phase-node failed, replicas disagree or an audit
/// failed.
#[derive(Debug, Args)]
pub(super) struct SubmitArgs {
    /// The job file (see examples/*.job.json and examples/job.schema.json).
    #[arg(value_name = "JOB.json", required_unless_present = "resume")]
    job: Option<PathBuf>,
    /// Resume a job submitted from this data dir whose submission did not
    /// end (the submitting process stopped): its workers are asked for the
    /// run they have, else it is submitted again. A daemon resumes such
    /// jobs itself when it starts.
    #[arg(long, value_name = "JOB_ID", conflicts_with = "job")]
    resume: Option<JobId>,
    #[command(flatten)]
    node: NodeArgs,
    /// Submit to this worker only.
    #[arg(long, value_name = "PEERID")]
    worker: Option<PeerId>,
    /// Run on K distinct workers and compare their result CIDs
    /// (deterministic jobs only).
    #[arg(long, value_name = "K", default_value_t = 1)]
    replicas: usize,
    /// Workers to try (per replica) before giving up.
    #[arg(long, value_name = "N", default_value_t = 5)]
    attempts: u32,
    /// Audit the job with chance P (0 to 1; default: the config's
    /// `[requester] audit`, 0): run it again on a second, different worker
    /// picked at random and compare results. A failed audit prints both
    /// receipts (the evidence) and exits 1. Deterministic jobs only.
    #[arg(long, value_name = "P", value_parser = chance)]
    audit: Option<f64>,
    /// Audit the job by running it again here (on the daemon's node, or
    /// this process) from the inputs in the local store, instead of on a
    /// second worker, and compare status, fuel, result and new state with
    /// the receipt. Deterministic jobs only.
    #[arg(long, conflicts_with = "audit")]
    audit_local: bool,
    /// Give up after this long, e.g. 5m; default: the job's timeout plus 2 minutes.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<humantime::Duration>,
    /// Write the result package (stdout, stderr, output/) to this new
    /// directory instead of printing stdout and stderr.
    #[arg(short = 'o', long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Print one JSON object: job id, verified receipts, result CIDs, agreement.
    #[arg(long)]
    json: bool,
    /// Start the job from this guest state (a root in the local store, as
    /// `phase-node state` and earlier jobs make), instead of the job
    /// file's `state`. The new state's root is printed on stderr
    /// (`state_after` in --json) and kept pinned with the job.
    #[arg(long, value_name = "ROOT", conflicts_with = "resume")]
    state: Option<phase_protocol::Cid>,
}

impl SubmitArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        if self.replicas == 0 {
            bail!("--replicas must be at least 1");
        }
        if let Some(out) = &self.output
            && out.exists()
        {
            bail!("-o {}: already exists", out.display());
        }
        let data_dir = global.data_dir()?;
        let store = global.store().await?;
        // A daemon's `gc` keeps what this writes (the inputs, the spec)
        // until the daemon has pinned or recorded it.
        let _lease = store.lease().await?;
        let spec = match (&self.job, self.resume) {
            (_, Some(job)) => recorded_spec(global, &store, job).await?,
            (Some(path), None) => {
                let mut file = read_job_file(path).await?;
                if self.state.is_some() {
                    file.state = self.state;
                }
                // The worker reads the state's blocks from here.
                if let Some(root) = file.state
                    && !store.has(&root).await?
                    && !super::content::fetch_through_daemon(global, root).await?
                {
                    bail!("state {root} is not in the local store");
                }
                if self.audit.is_some_and(|p| p > 0.0) && !file.deterministic {
                    bail!(
                        "--audit compares a second worker's result, which needs a deterministic job (set \"deterministic\": true in {})",
                        path.display()
                    );
                }
                if self.audit_local && !file.deterministic {
                    bail!(
                        "--audit-local compares a rerun's result, which needs a deterministic job (set \"deterministic\": true in {})",
                        path.display()
                    );
                }
                if self.replicas > 1 && !file.deterministic {
                    bail!(
                        "--replicas {} compares results, which needs a deterministic job (set \"deterministic\": true in {})",
                        self.replicas,
                        path.display()
                    );
                }
                let pins = Pins::of(data_dir.root(), &store).await;
                import(&store, &pins, file).await?
            }
            (None, None) => bail!("name a job file, or --resume JOB_ID"),
        };
        let timeout = self
            .timeout
            .map_or(spec.limits.timeout + SUBMIT_MARGIN, Into::into);
        let job = spec.id();
        if self.resume.is_some()
            && let Some(report) = read_record(data_dir.root(), &store, &job).await?
        {
            // It ended meanwhile: its recorded result.
            return self.finish(global, &store, &spec, &report).await;
        }
        // Without a daemon this process is the requester: the job is
        // recorded before its id is shown (a daemon records it when asked).
        if ApiClient::find(data_dir.root()).await.is_none() {
            let records = Records::new(store.clone());
            if records.get(job).await?.is_none() {
                let mut record = requester::JobRecord::new(&spec, self.replicas, self.worker);
                records.put(&mut record).await?;
            }
        }
        // The job id first, so that a submission that fails can still be
        // looked up (`status`, `receipt`), once it is on record: here now
        // without a daemon, else when the daemon answers with its first
        // stage (it records the job before). `--json` carries it in its
        // object, on failure too.
        let announced = AtomicBool::new(self.json);
        if ApiClient::find(data_dir.root()).await.is_none() {
            self.announce(&announced, job, None);
        }
        match self
            .submit(global, &store, &spec, timeout, &announced)
            .await
        {
            Ok(code) => Ok(code),
            Err(err) => {
                self.announce(&announced, job, None);
                if self.json {
                    let failed = serde_json::json!({"job": job, "error": format!("{err:#}")});
                    println!("{failed}");
                }
                Err(err)
            }
        }
    }

    /// Prints `job ID` on stderr, once (not with `--json`, whose object
    /// carries it); above the progress bar if there is one.
    fn announce(&self, announced: &AtomicBool, job: JobId, bar: Option<&indicatif::ProgressBar>) {
        if announced.swap(true, Ordering::SeqCst) {
            return;
        }
        match bar {
            Some(bar) => bar.suspend(|| eprintln!("job {job}")),
            None => eprintln!("job {job}"),
        }
    }

    /// Submits `spec` (through the daemon, or as a short-lived node),
    /// waits for its verified result and prints it.
    async fn submit(
        &self,
        global: &GlobalArgs,
        store: &BlockStore,
        spec: &JobSpec,
        timeout: Duration,
        announced: &AtomicBool,
    ) -> anyhow::Result<ExitCode> {
        let data_dir = global.data_dir()?;
        let job = spec.id();
        let options = SubmitOptions {
            worker: self.worker,
            replicas: self.replicas,
            attempts: self.attempts,
            audit: self.audit,
            audit_local: self.audit_local,
            ..SubmitOptions::default()
        };

        let bar = super::spinner("{spinner} {msg} [{elapsed}]", "joining the network");
        let show = |stage: Stage| {
            self.announce(announced, job, Some(&bar));
            bar.set_message(stage_line(&stage));
        };
        let report = match ApiClient::find(data_dir.root()).await {
            Some(daemon) => {
                store.put(job.0, Bytes::from(spec.encode())).await?;
                let request = SubmitRequest {
                    job: JobRef::Id(job.to_string()),
                    wait: true,
                    worker: options.worker,
                    replicas: options.replicas,
                    attempts: options.attempts,
                    timeout,
                    audit: options.audit,
                    audit_local: options.audit_local,
                };
                let deadline = timeout.min(crate::api::MAX_SUBMIT_DEADLINE) + client::CALL_DEADLINE;
                let answer = daemon
                    .stream::<_, Stage, SubmitReport>(
                        "/api/v1/jobs",
                        Some(&request),
                        deadline,
                        show,
                    )
                    .await;
                bar.finish_and_clear();
                let me = identity::load_or_create(data_dir.root())?
                    .public()
                    .to_peer_id();
                check_daemon_report(answer?, spec, me)?
            }
            None => {
                let key = identity::load_or_create(data_dir.root())?;
                let mut config = self.node.effective()?;
                config.worker.enabled = false;
                if self.node.listen_is_default() {
                    // A short-lived node: any free port, so it never clashes
                    // with a daemon of another data dir on the default port.
                    config.network.listen = vec![
                        "/ip4/0.0.0.0/udp/0/quic-v1".parse::<Multiaddr>()?,
                        "/ip4/0.0.0.0/tcp/0".parse::<Multiaddr>()?,
                    ];
                }
                let node = Node::builder(config)
                    .key(key)
                    .store(store.clone())
                    .spawn()
                    .await?;
                // Discovery waits (bounded) for the bootstrap and mDNS
                // peers to be met, and says what it tried if nobody fits.
                let result = async {
                    tokio::time::timeout(timeout, node.requester().submit(spec, &options, &show))
                        .await
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "no result within {}",
                                humantime::format_duration(timeout)
                            )
                        })?
                        .context("submit failed")
                }
                .await;
                bar.finish_and_clear();
                node.shutdown().await;
                result?
            }
        };
        self.finish(global, store, spec, &report).await
    }

    /// Prints (or writes) the result and picks the exit code.
    async fn finish(
        &self,
        global: &GlobalArgs,
        store: &BlockStore,
        spec: &JobSpec,
        report: &SubmitReport,
    ) -> anyhow::Result<ExitCode> {
        let first = report
            .results
            .first()
            .context("the submission produced no result")?;
        let receipt = first.receipt.receipt();
        let result = receipt.result;
        let mut stderr = std::io::stderr().lock();
        for attempt in &report.failed_attempts {
            writeln!(
                stderr,
                "note: retried after {}: {}",
                attempt.worker, attempt.error
            )?;
        }
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        } else if let Some(dir) = &self.output {
            readable(global, result).await?;
            // The worker's result is untrusted: write no more than an honest
            // result of this job can hold.
            let limit = untrusted::Limit {
                bytes: requester::max_result_bytes(spec),
                // `output/`'s entries, and the package's own four (stdout,
                // stderr, output/, output-cut).
                entries: untrusted::MAX_ENTRIES + 4,
            };
            untrusted::get_capped(store, result, dir.clone(), limit)
                .await
                .with_context(|| format!("cannot write the result to {}", dir.display()))?;
        } else {
            readable(global, result).await?;
            let max = spec.limits.max_output.0;
            let stdout = read_entry(store, result, "stdout", max).await?;
            let errout = read_entry(store, result, "stderr", max).await?;
            std::io::stdout().lock().write_all(&stdout)?;
            stderr.write_all(&errout)?;
        }
        if let (Some(t), false) = (&receipt.state, self.json) {
            let note = if t.after == t.before {
                " (unchanged)"
            } else {
                ""
            };
            writeln!(stderr, "state_after: {}{note}", t.after)?;
        }
        if !matches!(receipt.status, Status::Exited { .. }) {
            writeln!(
                stderr,
                "error: the job {} on worker {} (receipt {})",
                receipt.status,
                first.worker,
                first.receipt.cid()
            )?;
        }
        if let Some(agreement) = &report.agreement
            && !agreement.agreed
        {
            writeln!(
                stderr,
                "error: replicas disagree: {} produced a result other than {}",
                agreement
                    .dissenters
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                agreement.result
            )?;
            return Ok(ExitCode::from(super::EXIT_INTERNAL));
        }
        match &report.audit {
            Some(Audit::Passed { auditor }) => writeln!(
                stderr,
                "audit: passed: worker {} gave the same result (receipt {})",
                auditor.worker,
                auditor.receipt.cid()
            )?,
            Some(Audit::Failed { auditor }) => {
                let other = auditor.receipt.receipt();
                writeln!(
                    stderr,
                    "error: audit failed: worker {} (receipt {}) says the result is {}, worker {} (receipt {}) says {}; the two signed receipts are the evidence",
                    first.worker,
                    first.receipt.cid(),
                    receipt.result,
                    auditor.worker,
                    auditor.receipt.cid(),
                    other.result
                )?;
                return Ok(ExitCode::from(super::EXIT_INTERNAL));
            }
            Some(Audit::NoAuditor { reason }) => {
                writeln!(stderr, "note: not audited: {reason}")?;
            }
            Some(Audit::LocalPassed) => writeln!(
                stderr,
                "audit: passed: a rerun here gave what the receipt says (status, fuel, result)"
            )?,
            Some(Audit::LocalFailed { differences }) => {
                writeln!(
                    stderr,
                    "error: audit failed: a rerun here differs from the receipt {} worker {} signed: {}",
                    first.receipt.cid(),
                    first.worker,
                    differences.join("; ")
                )?;
                return Ok(ExitCode::from(super::EXIT_INTERNAL));
            }
            None => {}
        }
        Ok(ExitCode::from(exit_code(&receipt.status)))
    }
}

/// An `--audit` chance: a number from 0 to 1.
fn chance(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a chance from 0 to 1")),
    }
}

/// Reads and checks the job file: every problem is reported before the
/// network is touched.
async fn read_job_file(path: &Path) -> anyhow::Result<JobFile> {
    let name = path.display();
    let meta = tokio::fs::metadata(path)
        .await
        .with_context(|| format!("cannot read job file {name}"))?;
    if meta.len() > MAX_JOB_FILE as u64 {
        bail!("job file {name} is larger than {MAX_JOB_FILE} bytes");
    }
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("cannot read job file {name}"))?;
    let file = JobFile::parse(&text).with_context(|| format!("{name}"))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let file = file.with_base_dir(base);
    for (field, source) in [
        ("module", Some(&file.module)),
        ("stdin", file.stdin.as_ref()),
        ("input", file.input.as_ref()),
    ] {
        if let Some(Source::Path(p)) = source {
            let Ok(meta) = std::fs::metadata(p) else {
                bail!("{name}: {field}: {} does not exist", p.display());
            };
            // Refused by size before a byte is hashed: no worker would take
            // it (a sparse 100 GB file would otherwise be hashed for minutes).
            let cap = match field {
                "module" => Some(crate::worker::MAX_MODULE_SIZE),
                "stdin" => Some(crate::worker::MAX_JOB_STDIN),
                _ => None,
            };
            if let Some(cap) = cap
                && meta.is_file()
                && meta.len() > cap
            {
                bail!(
                    "{name}: {field}: {} is {} bytes, over the {} a worker accepts",
                    p.display(),
                    meta.len(),
                    ByteSize(cap)
                );
            }
        }
    }
    Ok(file)
}

/// Imports the job's local paths (pinned, so `gc` keeps them while workers
/// fetch them) and builds the spec, with a fresh nonce.
async fn import(store: &BlockStore, pins: &Pins, file: JobFile) -> anyhow::Result<JobSpec> {
    async fn one(
        store: &BlockStore,
        pins: &Pins,
        field: &str,
        source: &Source,
        dir: bool,
    ) -> anyhow::Result<Cid> {
        let cid = match source {
            Source::Cid(cid) => return Ok(*cid),
            Source::Path(p) => {
                files::add_path(store, p.clone(), dir)
                    .await
                    .with_context(|| format!("{field}: cannot import {}", p.display()))?
                    .0
                    .cid
            }
            Source::Text(t) => {
                files::add_bytes(store, Bytes::from(t.clone().into_bytes()))
                    .await?
                    .cid
            }
        };
        pins.pin(cid).await?;
        Ok(cid)
    }
    let module = one(store, pins, "module", &file.module, false).await?;
    let stdin = match &file.stdin {
        Some(s) => Some(one(store, pins, "stdin", s, false).await?),
        None => None,
    };
    let input = match &file.input {
        Some(s) => Some(one(store, pins, "input", s, true).await?),
        None => None,
    };
    Ok(file.into_spec(module, stdin, input, rand::random())?)
}

/// The report the daemon answered (its receipts' signatures checked as it
/// was read), each receipt checked again here against the job and this node.
fn check_daemon_report(
    mut report: SubmitReport,
    spec: &JobSpec,
    me: PeerId,
) -> anyhow::Result<SubmitReport> {
    if report.job != spec.id() {
        bail!("the daemon reported job {}, not {}", report.job, spec.id());
    }
    for r in &report.results {
        requester::check_receipt(&r.receipt, r.worker, spec, me)
            .with_context(|| format!("receipt {}", r.receipt.cid()))?;
    }
    report.agreement = (report.results.len() > 1).then(|| requester::agreement(&report.results));
    Ok(report)
}

/// Makes the DAG under `cid` readable from this command's store when a
/// daemon runs on the data dir: the daemon keeps small blocks (a receipt,
/// a small result) in its state database, which only it can open, and
/// writes a DAG's out when asked to fetch it.
async fn readable(global: &GlobalArgs, cid: Cid) -> anyhow::Result<()> {
    super::content::fetch_through_daemon(global, cid).await?;
    Ok(())
}

async fn load_receipt(store: &BlockStore, cid: Cid) -> anyhow::Result<SignedReceipt> {
    let bytes = store
        .get(&cid)
        .await?
        .with_context(|| format!("receipt {cid} is not in the local store"))?;
    SignedReceipt::from_cbor(&bytes).with_context(|| format!("receipt {cid} does not verify"))
}

/// A file entry of the result package, whole, at most `max` bytes (the
/// job's output limit: more than that is not an honest result).
async fn read_entry(
    store: &BlockStore,
    result: Cid,
    name: &str,
    max: u64,
) -> anyhow::Result<Vec<u8>> {
    let cid = files::entry(store, result, name)
        .await?
        .with_context(|| format!("result {result} has no `{name}`"))?;
    Ok(untrusted::cat_to_vec_capped(store, cid, max).await?)
}

fn stage_line(stage: &Stage) -> String {
    match stage {
        Stage::FindingWorkers => "finding workers".into(),
        Stage::FoundWorkers { count } => format!("found {count} workers"),
        Stage::Submitted { worker } => format!("submitted to {worker}; uploading inputs"),
        Stage::Worker { worker, state } => format!("{} on {worker}", state_line(state)),
        Stage::Retrying { worker, reason } => format!("retrying: {worker} failed ({reason})"),
        Stage::FetchingResult { worker } => format!("fetching the result from {worker}"),
    }
}

/// Asks the data dir's daemon about a job that has no record here:
/// `GET /api/v1/jobs/{job}{suffix}`.
async fn ask_daemon<T: serde::de::DeserializeOwned>(
    data_dir: &Path,
    query: &JobQuery,
    suffix: &str,
) -> anyhow::Result<T> {
    let job = &query.job;
    let Some(daemon) = ApiClient::find(data_dir).await else {
        bail!(
            "job {job} was not submitted from {} and no daemon runs there to ask a worker",
            data_dir.display()
        );
    };
    let path = match query.worker {
        Some(worker) => format!("/api/v1/jobs/{job}{suffix}?worker={worker}"),
        None => format!("/api/v1/jobs/{job}{suffix}"),
    };
    Ok(daemon.get(&path).await?)
}

/// A job's final report, if it was submitted from this data dir and
/// ended: from the daemon when one runs (it holds the state database), else
/// from the requester's records (through `store`, the command's one handle
/// on the database).
async fn read_record(
    data_dir: &Path,
    store: &BlockStore,
    job: &JobId,
) -> anyhow::Result<Option<SubmitReport>> {
    if let Some(daemon) = ApiClient::find(data_dir).await {
        return match daemon.get(&format!("/api/v1/submitted/{job}")).await {
            Ok(report) => Ok(Some(report)),
            Err(ClientError::Api(e)) if e.code == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        };
    }
    let records = Records::new(store.clone());
    records.migrate_legacy(data_dir).await?;
    Ok(records.report(*job).await?)
}

/// The listing's entry for a job submitted from this data dir whose
/// submission did not end (or failed).
async fn submitted_entry(
    data_dir: &Path,
    store: &BlockStore,
    job: JobId,
) -> anyhow::Result<Option<JobEntry>> {
    let answer: JobsAnswer = match ApiClient::find(data_dir).await {
        Some(daemon) => daemon.get("/api/v1/jobs").await?,
        None => JobsAnswer::read(store).await?,
    };
    Ok(answer
        .jobs
        .into_iter()
        .find(|e| e.job == job && e.role == JobRole::Submitted))
}

/// The spec of a job submitted from this data dir, to resume it: from the
/// requester's record, else (a daemon holds the records) its block in the
/// store, which `submit` put there.
async fn recorded_spec(
    global: &GlobalArgs,
    store: &BlockStore,
    job: JobId,
) -> anyhow::Result<JobSpec> {
    let data_dir = global.data_dir()?;
    let data_dir = data_dir.root();
    if ApiClient::find(data_dir).await.is_none() {
        if let Some(record) = Records::new(store.clone()).get(job).await? {
            return Ok(record.spec);
        }
    } else if !store.has(&job.0).await? {
        // Submitted through the daemon's API: its block may be in the
        // daemon's database; asked for, the daemon writes it out.
        let _ = super::content::fetch_through_daemon(global, job.0).await;
    }
    let bytes = store.get(&job.0).await?.with_context(|| {
        format!(
            "job {job} was not submitted from {} (no record of it)",
            data_dir.display()
        )
    })?;
    let spec = JobSpec::decode(&bytes).with_context(|| format!("job {job}: its spec"))?;
    if spec.id() != job {
        bail!("block {job} is not a canonical job spec");
    }
    Ok(spec)
}

/// Which job `status` and `receipt` are about, and whom to ask.
#[derive(Debug, Args)]
struct JobQuery {
    /// The job id printed by `submit`.
    #[arg(value_name = "JOB_ID")]
    job: JobId,
    /// Ask this worker (needs a running daemon).
    #[arg(long, value_name = "PEERID")]
    worker: Option<PeerId>,
}

/// Show a job's state: from the record of a job submitted from this data
/// dir, or (through the running daemon) from this node's worker or the
/// worker named with --worker.
#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    #[command(flatten)]
    query: JobQuery,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let data_dir = global.data_dir()?;
        let store = global.store().await?;
        let mut out = std::io::stdout().lock();
        if self.query.worker.is_none()
            && let Some(record) = read_record(data_dir.root(), &store, &self.query.job).await?
        {
            if self.json {
                serde_json::to_writer_pretty(&mut out, &record)?;
                writeln!(out)?;
            } else {
                for r in &record.results {
                    let receipt = r.receipt.receipt();
                    writeln!(
                        out,
                        "done: {} on worker {} (result {}, receipt {})",
                        receipt.status,
                        r.worker,
                        receipt.result,
                        r.receipt.cid(),
                    )?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        if self.query.worker.is_none()
            && let Some(entry) = submitted_entry(data_dir.root(), &store, self.query.job).await?
        {
            if self.json {
                serde_json::to_writer_pretty(&mut out, &entry)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}: {}", entry.state, entry.detail)?;
                if matches!(entry.state.as_str(), "submitting" | "running")
                    && ApiClient::find(data_dir.root()).await.is_none()
                {
                    writeln!(
                        out,
                        "the submission did not end; `phase-node submit --resume {}` resumes it",
                        entry.job
                    )?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        let answer: JobStatusAnswer = ask_daemon(data_dir.root(), &self.query, "").await?;
        if self.json {
            serde_json::to_writer_pretty(&mut out, &answer)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", state_line(&answer.state))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn state_line(state: &JobState) -> String {
    match state {
        JobState::Queued => "queued".into(),
        JobState::Fetching => "fetching".into(),
        JobState::Running => "running".into(),
        JobState::Done { status, receipt } => format!("done: {status} (receipt {receipt})"),
        JobState::Failed { message } => format!("failed: {message}"),
        JobState::ModuleTooComplex { message } => format!("module too complex: {message}"),
        JobState::Interrupted => "interrupted: the worker stopped while it ran".into(),
    }
}

/// Print a job's verified receipt: from the record of a job submitted from
/// this data dir, or (through the running daemon) from this node's worker or
/// the worker named with --worker.
#[derive(Debug, Args)]
pub(super) struct ReceiptArgs {
    #[command(flatten)]
    query: JobQuery,
    /// Print the receipt as JSON.
    #[arg(long)]
    json: bool,
}

impl ReceiptArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let data_dir = global.data_dir()?;
        let store = global.store().await?;
        let recorded = match (
            &self.query.worker,
            read_record(data_dir.root(), &store, &self.query.job).await?,
        ) {
            (None, Some(record)) => record.results.first().map(|r| r.receipt.cid()),
            _ => None,
        };
        let cid = match recorded {
            Some(cid) => cid,
            None => {
                let answer: ReceiptAnswer =
                    ask_daemon(data_dir.root(), &self.query, "/receipt").await?;
                answer.cid
            }
        };
        readable(global, cid).await?;
        let receipt = load_receipt(&store, cid).await?;
        if receipt.receipt().job != self.query.job {
            bail!(
                "receipt {cid} is about job {}, not {}",
                receipt.receipt().job,
                self.query.job
            );
        }
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", receipt.to_json())?;
        } else {
            super::verify::write_receipt(&mut out, &receipt, receipt.receipt())?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// List the jobs submitted from this data dir and the jobs its worker ran,
/// newest first, with their state (from the running daemon, else from the
/// data dir's records).
#[derive(Debug, Args)]
pub(super) struct JobsArgs {
    /// Print JSON (the same as `GET /api/v1/jobs`).
    #[arg(long)]
    json: bool,
}

impl JobsArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let data_dir = global.data_dir()?;
        let answer: JobsAnswer = match ApiClient::find(data_dir.root()).await {
            Some(daemon) => daemon.get("/api/v1/jobs").await?,
            None => JobsAnswer::read(&global.store().await?).await?,
        };
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, &answer)?;
            writeln!(out)?;
            return Ok(ExitCode::SUCCESS);
        }
        if answer.jobs.is_empty() {
            writeln!(
                out,
                "no jobs submitted or run from {}",
                data_dir.root().display()
            )?;
        }
        for entry in &answer.jobs {
            let when = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_millis(entry.updated_ms),
            );
            let role = match entry.role {
                JobRole::Submitted => "submitted",
                JobRole::Ran => "ran",
            };
            let mut line = format!("{} {role:<9} {when} {}", entry.job, entry.state);
            if !entry.detail.is_empty() {
                line.push_str(": ");
                line.push_str(&entry.detail);
            }
            writeln!(out, "{line}")?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_read_as_one_line() {
        let receipt = phase_protocol::cid::raw_cid(b"r");
        let done: JobState = serde_json::from_value(serde_json::json!(
            {"done": {"status": {"kind": "exited", "code": 0}, "receipt": receipt.to_string()}}
        ))
        .unwrap();
        assert_eq!(
            state_line(&done),
            format!("done: exited with code 0 (receipt {receipt})")
        );
        let failed = serde_json::json!({"failed": {"message": "cannot fetch"}});
        let failed: JobState = serde_json::from_value(failed).unwrap();
        assert_eq!(state_line(&failed), "failed: cannot fetch");
        let running: JobState = serde_json::from_value(serde_json::json!("running")).unwrap();
        assert_eq!(state_line(&running), "running");
    }
}
