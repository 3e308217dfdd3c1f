//! Content commands in Kubo's words: `add`, `cat`, `get`, `car`, `pin`, `gc`.
//! They work on the local block store of the data dir.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use phase_protocol::Cid;

use super::GlobalArgs;
use super::pins::Pins;
use crate::api::types::FetchAnswer;
use crate::api::{ApiClient, client};
use crate::store::files::FilesError;
use crate::store::{BlockStore, StoreError, Verified, car, files, untrusted};

/// Whether an error means "a block is not here" (so a daemon could fetch it).
fn is_missing(e: &FilesError) -> bool {
    matches!(e, FilesError::Store(StoreError::NotFound { .. }))
}

/// Asks the daemon of this data dir, if one runs, to fetch the DAG under
/// `cid` into the shared store. Returns whether a daemon did.
pub(super) async fn fetch_through_daemon(global: &GlobalArgs, cid: Cid) -> anyhow::Result<bool> {
    let Some(daemon) = ApiClient::find(global.data_dir()?.root()).await else {
        return Ok(false);
    };
    let bar = super::spinner(
        "{spinner} fetching {msg} [{elapsed}]",
        "from the network: finding providers",
    );
    let path = format!("/api/v1/fetch/{cid}");
    let deadline = crate::api::FETCH_DEADLINE + client::CALL_DEADLINE;
    let result = daemon
        .stream::<(), crate::blocks::Progress, FetchAnswer>(&path, None, deadline, |p| {
            bar.set_message(format!(
                "{} blocks, {} ({} still wanted)",
                p.blocks,
                indicatif::HumanBytes(p.bytes),
                p.queued
            ));
        })
        .await;
    bar.finish_and_clear();
    result.with_context(|| format!("cannot fetch {cid} from the network"))?;
    Ok(true)
}

/// Add a file or directory to the local store and print its CID (as `ipfs add --cid-version=1`).
#[derive(Debug, Args)]
pub(super) struct AddArgs {
    /// The file or directory to add; `-` reads stdin.
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// Add directories recursively.
    #[arg(short, long)]
    recursive: bool,
    /// Do not pin the root (unpinned blocks are removed by `gc`).
    #[arg(long)]
    no_pin: bool,
    /// Print every file's and directory's CID as JSON.
    #[arg(long)]
    json: bool,
}

impl AddArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        // A daemon running now is the one that pins and announces the root:
        // if it is gone by then, that is an error, not a quiet local pin.
        let daemon = ApiClient::find(global.data_dir()?.root()).await;
        let store = global.store().await?;
        // A daemon's `gc` keeps what this writes until it is pinned.
        let _lease = store.lease().await?;
        let (root, added) = if self.path.as_os_str() == "-" {
            let store2 = store.clone();
            let root = tokio::task::spawn_blocking(move || {
                files::add_reader_blocking(
                    &store2,
                    std::io::stdin().lock(),
                    std::path::Path::new("stdin"),
                )
            })
            .await??;
            let entry = files::Added {
                path: String::new(),
                cid: root.cid,
                size: root.filesize,
            };
            (root, vec![entry])
        } else {
            files::add_path(&store, self.path.clone(), self.recursive)
                .await
                .with_context(|| format!("cannot add {}", self.path.display()))?
        };
        if !self.no_pin {
            // A daemon shares the store; it pins and announces the new root.
            match daemon {
                Some(daemon) => Pins::Daemon(daemon).pin(root.cid).await.with_context(|| {
                    format!(
                        "{} is added to the local store, but not pinned or announced",
                        root.cid
                    )
                })?,
                None => Pins::Local(store.clone()).pin(root.cid).await?,
            }
        }
        let mut out = std::io::stdout().lock();
        if self.json {
            let value = serde_json::json!({ "root": root.cid.to_string(), "size": root.filesize, "entries": added });
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", root.cid)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Print a file from the local store to stdout.
#[derive(Debug, Args)]
pub(super) struct CatArgs {
    /// CID of a file.
    #[arg(value_name = "CID")]
    cid: Cid,
    #[command(flatten)]
    limits: UntrustedArgs,
}

/// Limits on content that is not pinned here (not the user's own `add` or
/// `car import`): a small DAG from a peer can link one subtree many times
/// and stand for terabytes, so what it would write out is counted (every
/// link each time) and checked before a byte is written.
#[derive(Debug, Args)]
pub(super) struct UntrustedArgs {
    /// Most bytes of files to write out of content that is not pinned here.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    max_size: phase_protocol::ByteSize,
    /// Most files and folders to write out of content that is not pinned
    /// here.
    #[arg(long, value_name = "N", default_value_t = untrusted::MAX_ENTRIES)]
    max_entries: u64,
}

impl UntrustedArgs {
    /// The limit for `cid`: none when it is pinned here (asked of the
    /// daemon when one runs: it holds the pins).
    async fn limit_for(
        &self,
        global: &GlobalArgs,
        store: &BlockStore,
        cid: &Cid,
    ) -> anyhow::Result<Option<untrusted::Limit>> {
        let pins = Pins::of(global.data_dir()?.root(), store).await;
        if pins.list().await?.contains(cid) {
            return Ok(None);
        }
        Ok(Some(untrusted::Limit {
            bytes: self.max_size.0,
            entries: self.max_entries,
        }))
    }
}

/// Checks `cid` against `limit` (if any) without writing anything.
async fn check_limit(
    store: &BlockStore,
    cid: Cid,
    limit: Option<untrusted::Limit>,
) -> Result<(), files::FilesError> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let store = store.clone();
    tokio::task::spawn_blocking(move || untrusted::check_tree_blocking(&store, &cid, limit)).await?
}

impl CatArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let store = global.store().await?;
        let cid = self.cid;
        let limit = self.limits.limit_for(global, &store, &cid).await?;
        let mut fetched = false;
        loop {
            let result = match check_limit(&store, cid, limit).await {
                Err(e) => Err(e),
                Ok(()) => {
                    let store = store.clone();
                    tokio::task::spawn_blocking(move || {
                        let mut out =
                            std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
                        files::cat_blocking(&store, &cid, &mut out)
                    })
                    .await?
                }
            };
            match result {
                Err(e) if is_missing(&e) && !fetched => {
                    fetched = fetch_through_daemon(global, cid).await?
                }
                other => {
                    other.with_context(|| format!("cannot cat {cid}"))?;
                    return Ok(ExitCode::SUCCESS);
                }
            }
            if !fetched {
                bail!(
                    "cannot cat {cid}: not in the local store, and no daemon is running to fetch it"
                );
            }
        }
    }
}

/// Write a file or directory from the local store to a new path.
#[derive(Debug, Args)]
pub(super) struct GetArgs {
    /// CID of a file or directory.
    #[arg(value_name = "CID")]
    cid: Cid,
    /// Where to write it (must not exist). Default: ./CID
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    #[command(flatten)]
    limits: UntrustedArgs,
}

impl GetArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let store = global.store().await?;
        let target = self
            .output
            .unwrap_or_else(|| PathBuf::from(self.cid.to_string()));
        let context = || format!("cannot get {} into {}", self.cid, target.display());
        // Fetch first if the root is not here: `get` writes as it reads, and a
        // half-written target would block the retry.
        if !store.has(&self.cid).await? && !fetch_through_daemon(global, self.cid).await? {
            bail!(
                "{}: not in the local store, and no daemon is running to fetch it",
                context()
            );
        }
        let limit = self.limits.limit_for(global, &store, &self.cid).await?;
        // The whole tree is checked against the limit before a byte is
        // written: a refusal leaves nothing behind.
        let get = || async {
            check_limit(&store, self.cid, limit).await?;
            files::get(&store, self.cid, target.clone()).await
        };
        match get().await {
            Err(e)
                if is_missing(&e) && ApiClient::find(global.data_dir()?.root()).await.is_some() =>
            {
                let _ = std::fs::remove_dir_all(&target).or_else(|_| std::fs::remove_file(&target));
                fetch_through_daemon(global, self.cid).await?;
                get().await.with_context(context)?;
            }
            other => other.with_context(context)?,
        }
        eprintln!("saved {} to {}", self.cid, target.display());
        Ok(ExitCode::SUCCESS)
    }
}

/// Move DAGs in and out as CAR v1 files.
#[derive(Debug, Subcommand)]
pub(super) enum CarCommand {
    /// Write the DAG under CID to a CAR file.
    Export {
        /// The root.
        #[arg(value_name = "CID")]
        cid: Cid,
        /// The CAR file to create.
        #[arg(short, long, value_name = "FILE.car")]
        output: PathBuf,
    },
    /// Import every block of a CAR file (each checked against its CID) and pin its roots.
    Import {
        /// The CAR file.
        #[arg(value_name = "FILE.car")]
        file: PathBuf,
        /// Do not pin the roots.
        #[arg(long)]
        no_pin: bool,
    },
}

impl CarCommand {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let store = global.store().await?;
        match self {
            CarCommand::Export { cid, output } => {
                // A daemon may hold the DAG's small blocks in its database:
                // asked to fetch it, it writes them out (and fetches what is
                // missing).
                fetch_through_daemon(global, cid).await?;
                let n = car::export(&store, cid, output.clone())
                    .await
                    .with_context(|| format!("cannot export {cid}"))?;
                eprintln!("wrote {n} blocks to {}", output.display());
            }
            CarCommand::Import { file, no_pin } => {
                // A daemon's `gc` keeps what this writes until it is pinned.
                let _lease = store.lease().await?;
                let (roots, n) = car::import(&store, file.clone())
                    .await
                    .with_context(|| format!("cannot import {}", file.display()))?;
                let pins = Pins::of(global.data_dir()?.root(), &store).await;
                let mut out = std::io::stdout().lock();
                for root in &roots {
                    if !no_pin {
                        pins.pin(*root).await?;
                    }
                    writeln!(out, "{root}")?;
                }
                eprintln!("imported {n} blocks");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Keep DAGs in the store: pinned roots and what they link to survive `gc`.
#[derive(Debug, Subcommand)]
pub(super) enum PinCommand {
    /// Pin a root that is in the store.
    Add {
        /// The root.
        #[arg(value_name = "CID")]
        cid: Cid,
    },
    /// Unpin a root.
    Rm {
        /// The root.
        #[arg(value_name = "CID")]
        cid: Cid,
    },
    /// List the pinned roots.
    Ls,
}

impl PinCommand {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let store = global.store().await?;
        let pins = Pins::of(global.data_dir()?.root(), &store).await;
        let mut out = std::io::stdout().lock();
        match self {
            PinCommand::Add { cid } => {
                if !store.has(&cid).await? && !fetch_through_daemon(global, cid).await? {
                    bail!("{cid} is not in the local store");
                }
                pins.pin(cid).await?;
                writeln!(out, "pinned {cid}")?;
            }
            PinCommand::Rm { cid } => {
                if !pins.unpin(cid).await? {
                    bail!("{cid} is not pinned");
                }
                writeln!(out, "unpinned {cid}")?;
            }
            PinCommand::Ls => {
                for cid in pins.list().await? {
                    writeln!(out, "{cid}")?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Remove every block not reachable from a pinned root.
#[derive(Debug, Args)]
pub(super) struct GcArgs {}

impl GcArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let data_dir = global.data_dir()?;
        let removed = match ApiClient::find(data_dir.root()).await {
            Some(daemon) => Pins::Daemon(daemon).gc().await?,
            // Alone: a command beside it may be adding blocks it has not
            // pinned yet.
            None => Pins::Local(global.store_alone().await?).gc().await?,
        };
        writeln!(std::io::stdout().lock(), "removed {removed} blocks")?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Check the block store.
#[derive(Debug, Subcommand)]
pub(super) enum StoreCommand {
    /// Read and hash every block, and walk every pinned root's DAG (a
    /// user's pins and the receipts and results kept for jobs) to its
    /// leaves; exits 1 naming each corrupt or missing block.
    Verify {
        /// Print JSON: blocks, roots, corrupt, missing.
        #[arg(long)]
        json: bool,
    },
}

impl StoreCommand {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let Self::Verify { json } = self;
        let data_dir = global.data_dir()?;
        let found: Verified = match ApiClient::find(data_dir.root()).await {
            // The daemon keeps small blocks in its state database, which
            // only it can read: it verifies.
            Some(daemon) => daemon.post::<(), _>("/api/v1/store/verify", None).await?,
            None => {
                let store = global.store().await?;
                let pins = Pins::of(data_dir.root(), &store).await.list().await?;
                store.verify(pins).await?
            }
        };
        let mut out = std::io::stdout().lock();
        if json {
            serde_json::to_writer_pretty(&mut out, &found)?;
            writeln!(out)?;
        } else {
            for cid in &found.corrupt {
                writeln!(out, "corrupt: {cid}")?;
            }
            for cid in &found.missing {
                writeln!(out, "missing: {cid}")?;
            }
            writeln!(
                out,
                "{} blocks, {} pinned roots: {}",
                found.blocks,
                found.roots,
                if found.intact() {
                    "intact".to_owned()
                } else {
                    format!(
                        "{} corrupt, {} missing",
                        found.corrupt.len(),
                        found.missing.len()
                    )
                }
            )?;
        }
        Ok(if found.intact() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(super::EXIT_INTERNAL)
        })
    }
}
