//! `phase-node ledger`: the node's work ledger (one entry per receipt it
//! signed as a worker or received and verified as a requester, chained by
//! CID), its totals per peer, its export as a CAR file with a signed head,
//! and the check of such a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;

use phase_protocol::ledger;

use super::GlobalArgs;
use crate::api::ApiClient;
use crate::api::types::LedgerAnswer;
use crate::store::ledger::{Summary, Totals, Work};

/// Largest ledger file `ledger verify` reads (it is checked in memory).
const MAX_LEDGER_FILE: u64 = 16 << 30;

/// The node's work ledger: totals per peer (jobs, fuel, wall time, audits
/// passed and failed), or with a subcommand its export and the check of an
/// export.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct LedgerArgs {
    #[command(subcommand)]
    command: Option<LedgerCommand>,
    /// Print the totals as JSON (the same as `GET /api/v1/ledger`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Write the ledger as a CAR file: its root the chain's head signed by
    /// this node, then every entry and the receipts they name.
    Export {
        /// The file to write (replaced whole, never left half-written).
        #[arg(short, long, value_name = "FILE.car")]
        output: PathBuf,
    },
    /// Check a ledger CAR file (anyone's): the head's signature, every
    /// link of the chain, and each receipt's signature and agreement with
    /// its entry. Exits 0 if it all holds, else prints the first problem
    /// (naming the entry) and exits 1.
    Verify {
        /// The CAR file, as `ledger export` writes it.
        #[arg(value_name = "FILE.car")]
        file: PathBuf,
        /// Print `{"node", "entries", "total", "peers"}` of the verified
        /// chain as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl LedgerArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        match self.command {
            None => show(global, self.json).await,
            Some(LedgerCommand::Export { output }) => export(global, &output).await,
            Some(LedgerCommand::Verify { file, json }) => verify(&file, json).await,
        }
    }
}

/// The data dir's ledger: from its daemon when one runs (it holds the
/// state database), else from the database.
async fn read(global: &GlobalArgs) -> anyhow::Result<LedgerAnswer> {
    let data_dir = global.data_dir()?;
    if let Some(daemon) = ApiClient::find(data_dir.root()).await {
        return Ok(daemon.get("/api/v1/ledger").await?);
    }
    // Before the store is opened: a data dir no node has used stays as it
    // was.
    let key = identity(data_dir.root())?;
    let store = global.store().await?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<LedgerAnswer> {
        let summary = store.state_blocking()?.ledger_summary()?;
        Ok(LedgerAnswer {
            node: key.public().to_peer_id(),
            ledger: summary,
        })
    })
    .await?
}

/// The node's key, read without making one: a data dir no node has
/// started in has no ledger to show.
fn identity(root: &std::path::Path) -> anyhow::Result<libp2p::identity::Keypair> {
    crate::identity::load(root)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no node has started in {} yet (no {}): it has no ledger",
            root.display(),
            crate::identity::KEY_FILE
        )
    })
}

async fn show(global: &GlobalArgs, json: bool) -> anyhow::Result<ExitCode> {
    let answer = read(global).await?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &answer)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_totals(&mut out, &answer)?;
    Ok(ExitCode::SUCCESS)
}

fn print_totals(out: &mut impl Write, answer: &LedgerAnswer) -> std::io::Result<()> {
    let ledger = &answer.ledger;
    match ledger.newest {
        Some(newest) => writeln!(
            out,
            "ledger of {}: {} entries, newest {newest}",
            answer.node, ledger.entries
        )?,
        None => writeln!(out, "ledger of {}: no entries yet", answer.node)?,
    }
    for peer in &ledger.peers {
        writeln!(out, "{}  {}", peer.peer, totals_line(&peer.totals))?;
    }
    if ledger.peers.len() > 1 {
        writeln!(out, "total  {}", totals_line(&ledger.total))?;
    }
    Ok(())
}

fn totals_line(t: &Totals) -> String {
    let work = |w: &Work| {
        format!(
            "{} jobs (fuel {}, {})",
            w.jobs,
            w.fuel,
            humantime::format_duration(Duration::from_millis(w.wall_time_ms))
        )
    };
    format!(
        "worked {}  received {}  audits {} passed, {} failed",
        work(&t.worked),
        work(&t.received),
        t.audits_passed,
        t.audits_failed
    )
}

async fn export(global: &GlobalArgs, output: &Path) -> anyhow::Result<ExitCode> {
    let data_dir = global.data_dir()?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".ledger-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    if let Some(daemon) = ApiClient::find(data_dir.root()).await {
        let mut file = tokio::fs::File::from_std(tmp.reopen()?);
        daemon.download("/api/v1/ledger/export", &mut file).await?;
        file.sync_all().await?;
    } else {
        let key = identity(data_dir.root())?;
        let store = global.store().await?;
        let car = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
            Ok(store.ledger_export_blocking(&key)?)
        })
        .await??;
        tokio::fs::write(tmp.path(), &car).await?;
        tmp.as_file().sync_all()?;
    }
    // What was written is checked before it takes the name.
    let bytes = tokio::fs::read(tmp.path()).await?;
    let verified = tokio::task::spawn_blocking(move || ledger::verify_car(&bytes))
        .await?
        .context("the exported ledger does not verify")?;
    tmp.persist(output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "exported the ledger of {} ({} entries) to {}",
        verified.node,
        verified.entries.len(),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What `ledger verify --json` prints: the verified chain's totals.
#[derive(Serialize)]
struct VerifiedJson {
    ok: bool,
    #[serde(flatten)]
    ledger: LedgerAnswer,
}

async fn verify(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let size = tokio::fs::metadata(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    if size > MAX_LEDGER_FILE {
        bail!(
            "{} is {size} bytes, more than a ledger file may be ({MAX_LEDGER_FILE})",
            file.display()
        );
    }
    let bytes = tokio::fs::read(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    let verified = match tokio::task::spawn_blocking(move || ledger::verify_car(&bytes)).await? {
        Ok(verified) => verified,
        Err(e) => {
            eprintln!(
                "{} does not verify: {}",
                file.display(),
                crate::error_line(&e)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let answer = LedgerAnswer {
        node: verified.node,
        ledger: Summary::of_entries(&verified.entries),
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(
            &mut out,
            &VerifiedJson {
                ok: true,
                ledger: answer,
            },
        )?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "ok: the head is signed by {} and its {} entries, their links and receipts verify",
            answer.node, answer.ledger.entries
        )?;
        print_totals(&mut out, &answer)?;
    }
    Ok(ExitCode::SUCCESS)
}
