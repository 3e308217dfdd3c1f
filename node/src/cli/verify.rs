//! `phase-node verify`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use phase_protocol::{ByteSize, Cid, PeerId, Receipt, SignedReceipt};

use super::GlobalArgs;
use super::content::fetch_through_daemon;
use crate::executor::{
    CompileBudget, DEFAULT_COMPILE_MEMORY, DEFAULT_COMPILE_TIME, Executor, ExecutorConfig,
};
use crate::worker::{self, RerunError};

/// Check a signed receipt: that its signature holds, (optionally) who
/// signed it, and (with --rerun) that its claim is true.
///
/// Prints the verified fields and exits 0 only if the signature is valid
/// (and the signer is the expected worker, and a rerun gives what the
/// receipt says); otherwise prints one line on stderr (one per difference
/// for --rerun) and exits 1.
#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// A receipt file, in DAG-CBOR (as stored and sent) or JSON (as printed
    /// by --json), or the CID of a receipt in the local store.
    #[arg(value_name = "RECEIPT")]
    receipt: PathBuf,
    /// Also require that this worker signed it.
    #[arg(long, value_name = "PEERID")]
    expect_worker: Option<PeerId>,
    /// Also run the job again here, deterministically, from its spec,
    /// module, stdin, input and state (from the local store, else fetched
    /// through the daemon from the network), and compare status, fuel,
    /// result CID and new state with the receipt. Only deterministic jobs:
    /// any other is refused.
    #[arg(long)]
    rerun: bool,
    /// Print the verified receipt as JSON (with --rerun: what the rerun
    /// gave and every difference).
    #[arg(long)]
    json: bool,
}

impl VerifyArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let name = self.receipt.display().to_string();
        let as_cid = self.receipt.to_str().and_then(|t| t.parse::<Cid>().ok());
        let bytes = match as_cid {
            Some(cid) if !self.receipt.exists() => {
                let store = global.store().await?;
                // A daemon beside this command may keep it in its database:
                // asked to fetch it, the daemon writes it out.
                if !store.has(&cid).await? {
                    let _ = fetch_through_daemon(global, cid).await;
                }
                store
                    .get(&cid)
                    .await
                    .with_context(|| format!("cannot read {cid} from the local store"))?
                    .with_context(|| format!("{cid} is not in the local store"))?
                    .to_vec()
            }
            _ => read_capped(&self.receipt, MAX_RECEIPT_FILE)
                .await
                .with_context(|| format!("cannot read {name}"))?,
        };
        let signed = parse_receipt(&bytes)
            .with_context(|| format!("{name} is not a valid signed receipt"))?;
        let receipt = match &self.expect_worker {
            Some(worker) => signed.verify_signer(worker),
            None => signed.verify(),
        }
        .with_context(|| format!("{name} does not verify"))?;
        if self.rerun {
            return rerun(global, receipt, self.json).await;
        }
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", signed.to_json())?;
        } else {
            write_receipt(&mut out, &signed, receipt)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Fetches of a missing input through the daemon before a rerun gives up
/// (one per input: spec, module, stdin, input, state).
const RERUN_FETCHES: usize = 5;

/// `verify --rerun`: reruns the receipt's job and prints what differs.
async fn rerun(global: &GlobalArgs, receipt: &Receipt, json: bool) -> anyhow::Result<ExitCode> {
    let store = global.store().await?;
    let data_dir = global.data_dir()?;
    let budget = CompileBudget::this_binary(DEFAULT_COMPILE_TIME, DEFAULT_COMPILE_MEMORY)
        .context("cannot find the phase-node binary to compile modules with")?;
    let executor = Executor::new(ExecutorConfig {
        cache_dir: Some(data_dir.module_cache()),
        compile: Some(budget),
        ..ExecutorConfig::default()
    })?;
    let work = std::env::temp_dir();
    let mut fetched = 0;
    let rerun = loop {
        match worker::rerun(&store, &executor, receipt, &work).await {
            Err(RerunError::Missing { what, cid }) if fetched < RERUN_FETCHES => {
                if !fetch_through_daemon(global, cid).await? {
                    bail!(
                        "the job's {what} {cid} is not in the local store, and no daemon is running to fetch it"
                    );
                }
                fetched += 1;
            }
            other => break other?,
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rerun)?)?;
    } else {
        writeln!(out, "job:       {}", rerun.job)?;
        writeln!(out, "status:    {}", rerun.status)?;
        writeln!(out, "fuel:      {}", rerun.fuel_consumed)?;
        writeln!(out, "result:    {}", rerun.result)?;
        if let Some(after) = &rerun.state_after {
            writeln!(out, "state:     {after}")?;
        }
    }
    if rerun.differences.is_empty() {
        if !json {
            writeln!(
                out,
                "rerun:     the same as the receipt says (status, fuel, result{})",
                if rerun.state_after.is_some() {
                    ", state"
                } else {
                    ""
                }
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut err = std::io::stderr().lock();
    for d in &rerun.differences {
        writeln!(
            err,
            "differs: {}: the receipt says {}, the rerun gave {}",
            d.field, d.receipt, d.rerun
        )?;
    }
    Ok(ExitCode::FAILURE)
}

/// Largest receipt file `verify` reads: the JSON form of the largest CBOR
/// receipt (hex doubles the signature, strings grow a little).
const MAX_RECEIPT_FILE: u64 = 4 * phase_protocol::wire::MAX_RECEIPT as u64;

async fn read_capped(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let len = tokio::fs::metadata(path).await?.len();
    if len > max {
        bail!(
            "file of {} is larger than any receipt ({} at most)",
            ByteSize(len),
            ByteSize(max)
        );
    }
    Ok(tokio::fs::read(path).await?)
}

/// JSON if it looks like JSON, DAG-CBOR otherwise. Both verify as they parse.
fn parse_receipt(bytes: &[u8]) -> anyhow::Result<SignedReceipt> {
    let looks_like_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if looks_like_json {
        let text = std::str::from_utf8(bytes).context("JSON that is not UTF-8")?;
        Ok(SignedReceipt::from_json(text)?)
    } else {
        Ok(SignedReceipt::from_cbor(bytes)?)
    }
}

pub(super) fn write_receipt(
    out: &mut impl Write,
    signed: &SignedReceipt,
    r: &Receipt,
) -> std::io::Result<()> {
    let opt = |c: &Option<phase_protocol::Cid>| c.map_or_else(|| "-".to_owned(), |c| c.to_string());
    let time = |ms: u64| {
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string()
    };
    writeln!(out, "signature: valid (ed25519, signed by the worker)")?;
    writeln!(out, "receipt:   {}", signed.cid())?;
    writeln!(out, "job:       {}", r.job)?;
    writeln!(out, "worker:    {}", r.worker)?;
    writeln!(out, "requester: {}", r.requester)?;
    writeln!(out, "status:    {}", r.status)?;
    writeln!(out, "module:    {}", r.module)?;
    writeln!(out, "stdin:     {}", opt(&r.stdin))?;
    writeln!(out, "input:     {}", opt(&r.input))?;
    writeln!(out, "result:    {}", r.result)?;
    if let Some(t) = &r.state {
        writeln!(out, "state:     {} -> {}", t.before, t.after)?;
        writeln!(out, "log:       {}", opt(&t.log))?;
        writeln!(
            out,
            "fuel:      {} ({} in host calls)",
            r.fuel_consumed, t.host_fuel
        )?;
    } else {
        writeln!(out, "fuel:      {}", r.fuel_consumed)?;
    }
    if let Some(n) = &r.network {
        writeln!(
            out,
            "network:   used: {} requests ({} denied), {} bytes sent, {} received",
            n.requests, n.denied, n.bytes_sent, n.bytes_received
        )?;
    }
    writeln!(out, "wall time: {} ms", r.wall_time_ms)?;
    writeln!(out, "memory:    {} bytes peak", r.peak_memory)?;
    writeln!(out, "started:   {}", time(r.started_at_ms))?;
    writeln!(out, "ended:     {}", time(r.ended_at_ms))?;
    writeln!(out, "runtime:   {}", r.runtime)?;
    Ok(())
}
