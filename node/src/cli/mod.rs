//! The command line: clap types, and an `execute` per subcommand.
//!
//! Results go to stdout, logs (`RUST_LOG`) and diagnostics to stderr;
//! `--json` prints one machine-readable object.

mod content;
mod daemon;
mod dht;
mod jobs;
mod ledger;
mod pins;
mod run;
mod state;
mod verify;
mod volunteer;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use self::run::{InspectArgs, RunArgs};
use self::verify::VerifyArgs;
use crate::config::DataDir;
use crate::lock::{DirLock, Hold};
use crate::store::BlockStore;

pub use self::run::{
    EXIT_MEMORY, EXIT_OUT_OF_FUEL, EXIT_OUTPUT, EXIT_RUN_ERROR, EXIT_SIGINT, EXIT_SIGTERM,
    EXIT_TIMEOUT, EXIT_TRAP, exit_code,
};

/// This command's hold on its data dir, for the process's life.
static COMMAND_LOCK: std::sync::OnceLock<DirLock> = std::sync::OnceLock::new();

/// A spinner line on stderr when it is a terminal (hidden when stderr is a
/// pipe or file), with `{msg}` in `template`.
fn spinner(template: &str, message: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("a valid template"));
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Exit code of subcommands other than `run` on failure.
pub const EXIT_INTERNAL: u8 = 1;

/// phase-node: run WebAssembly jobs on an open peer-to-peer compute network.
#[derive(Debug, Parser)]
#[command(name = "phase-node", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// Where the node keeps its data (module cache, blocks, identity).
    /// Default: the platform's data dir, e.g. ~/.local/share/phase-node.
    #[arg(long, global = true, env = "PHASE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// What to log on stderr, as `RUST_LOG` takes it (`info`,
    /// `phase_node=debug`, …); overrides `RUST_LOG`. Default: warnings, and
    /// nothing for `run`, so a guest's stderr is the guest's own.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
}

impl GlobalArgs {
    fn data_dir(&self) -> anyhow::Result<DataDir> {
        Ok(DataDir::resolve(self.data_dir.as_deref())?)
    }

    /// The API of the daemon running on the data dir, or an error saying
    /// none is.
    async fn daemon(&self) -> anyhow::Result<crate::api::ApiClient> {
        let data_dir = self.data_dir()?;
        match crate::api::ApiClient::find(data_dir.root()).await {
            Some(daemon) => Ok(daemon),
            None => bail!("no daemon is running on {}", data_dir.root().display()),
        }
    }

    /// The local block store of the data dir, with the data dir held for
    /// this command's life ([`crate::lock`]): shared beside other commands,
    /// not at all beside a daemon; the first command alone clears what
    /// crashed processes left in the store's temp folder.
    async fn store(&self) -> anyhow::Result<BlockStore> {
        let data_dir = self.data_dir()?;
        let dir = data_dir.store();
        let store = BlockStore::open(dir.clone())
            .await
            .with_context(|| format!("cannot open the block store in {}", dir.display()))?
            .with_transient_state();
        if COMMAND_LOCK.get().is_none() {
            let mut lock = command_lock(&data_dir).await?;
            if lock.hold() == Hold::Exclusive {
                store.clear_tmp().await;
                lock.share();
            }
            let _ = COMMAND_LOCK.set(lock);
        }
        Ok(store)
    }

    /// The local block store, with the data dir held exclusively for this
    /// command's life (for `gc`, which must not run beside another command
    /// that adds blocks it has not pinned yet).
    async fn store_alone(&self) -> anyhow::Result<BlockStore> {
        let data_dir = self.data_dir()?;
        let lock = command_lock(&data_dir).await?;
        match lock.hold() {
            Hold::Exclusive => {}
            Hold::Shared => bail!(
                "another phase-node command is using {}; try again when it has ended",
                data_dir.root().display()
            ),
            Hold::None => bail!(
                "a phase-node daemon holds {}, but its API does not answer",
                data_dir.root().display()
            ),
        }
        let dir = data_dir.store();
        let store = BlockStore::open(dir.clone())
            .await
            .with_context(|| format!("cannot open the block store in {}", dir.display()))?;
        store.clear_tmp().await;
        let _ = COMMAND_LOCK.set(lock);
        Ok(store)
    }
}

/// [`DirLock::command`] off the async runtime: it may wait (up to 10 s)
/// for another command's exclusive moment.
async fn command_lock(data_dir: &DataDir) -> anyhow::Result<DirLock> {
    let root = data_dir.root().to_owned();
    Ok(tokio::task::spawn_blocking(move || DirLock::command(&root)).await??)
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(RunArgs),
    Inspect(InspectArgs),
    Verify(VerifyArgs),
    Add(content::AddArgs),
    Cat(content::CatArgs),
    Get(content::GetArgs),
    #[command(subcommand)]
    Car(content::CarCommand),
    #[command(subcommand)]
    Pin(content::PinCommand),
    Gc(content::GcArgs),
    #[command(subcommand)]
    Store(content::StoreCommand),
    Start(daemon::StartArgs),
    Id(daemon::IdArgs),
    #[command(subcommand)]
    Config(daemon::ConfigCommand),
    Peers(daemon::PeersArgs),
    #[command(subcommand)]
    Dht(dht::DhtCommand),
    #[command(subcommand)]
    Swarm(daemon::SwarmCommand),
    Submit(jobs::SubmitArgs),
    Status(jobs::StatusArgs),
    Receipt(jobs::ReceiptArgs),
    Jobs(jobs::JobsArgs),
    #[command(subcommand)]
    State(state::StateCommand),
    Ledger(ledger::LedgerArgs),
    Pause(volunteer::PauseArgs),
    Resume(volunteer::ResumeArgs),
    Worker(volunteer::WorkerArgs),
}

impl Cli {
    /// What to log: `--log`, else `RUST_LOG`, else `warn` (nothing for
    /// `run`: the guest's stderr is the user's to read).
    #[must_use]
    pub fn log_filter(&self) -> String {
        if let Some(filter) = &self.global.log {
            return filter.clone();
        }
        match std::env::var("RUST_LOG") {
            Ok(filter) if !filter.is_empty() => filter,
            _ => match self.command {
                Command::Run(_) => "off".to_owned(),
                // libp2p-kad warns that a node alone has no peer to
                // bootstrap from: the node's own "no worker found" line
                // says so, with what would help.
                _ => "warn,libp2p_kad=error".to_owned(),
            },
        }
    }

    /// The exit code for a failure of phase-node itself in this subcommand.
    #[must_use]
    pub fn failure_code(&self) -> u8 {
        match self.command {
            Command::Run(_) => EXIT_RUN_ERROR,
            _ => EXIT_INTERNAL,
        }
    }

    /// Runs the subcommand.
    ///
    /// # Errors
    /// Whatever keeps the subcommand from doing its work, as one line.
    pub async fn execute(self) -> anyhow::Result<ExitCode> {
        let global = &self.global;
        match self.command {
            Command::Run(args) => args.execute(global).await,
            Command::Inspect(args) => args.execute(),
            Command::Verify(args) => args.execute(global).await,
            Command::Add(args) => args.execute(global).await,
            Command::Cat(args) => args.execute(global).await,
            Command::Get(args) => args.execute(global).await,
            Command::Car(cmd) => cmd.execute(global).await,
            Command::Pin(cmd) => cmd.execute(global).await,
            Command::Gc(args) => args.execute(global).await,
            Command::Store(cmd) => cmd.execute(global).await,
            Command::Start(args) => args.execute(global).await,
            Command::Id(args) => args.execute(global).await,
            Command::Config(cmd) => cmd.execute(),
            Command::Peers(args) => args.execute(global).await,
            Command::Dht(command) => command.execute(global).await,
            Command::Swarm(command) => command.execute(global).await,
            Command::Submit(args) => args.execute(global).await,
            Command::Status(args) => args.execute(global).await,
            Command::Receipt(args) => args.execute(global).await,
            Command::Jobs(args) => args.execute(global).await,
            Command::State(cmd) => cmd.execute(global).await,
            Command::Ledger(args) => args.execute(global).await,
            Command::Pause(args) => args.execute(global).await,
            Command::Resume(args) => args.execute(global).await,
            Command::Worker(args) => args.execute(global).await,
        }
    }
}
