//! `phase-node run` and `phase-node inspect`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use serde::Serialize;
use sha2::{Digest, Sha256};

use phase_protocol::guest_state;
use phase_protocol::job::FsAccess;
use phase_protocol::{ByteSize, Limits, Status};

use super::GlobalArgs;
use crate::config::DataDir;
use crate::executor::{
    self, CompileBudget, DEFAULT_COMPILE_MEMORY, DEFAULT_MAX_STATE, Executor, ExecutorConfig,
    ModuleInfo, NetAccess, Outcome, Preopen, RunSpec, SharedSource, StateInput, Stdin,
};
use crate::store::BlockStore;

/// Exit code of `run` when the guest trapped (128 + SIGABRT, as wasmtime).
pub const EXIT_TRAP: u8 = 134;
/// Exit code of `run` when the guest ran out of fuel.
pub const EXIT_OUT_OF_FUEL: u8 = 135;
/// Exit code of `run` stopped by SIGINT (Ctrl-C), as a shell reports it.
pub const EXIT_SIGINT: u8 = 130;
/// Exit code of `run` stopped by SIGTERM.
pub const EXIT_SIGTERM: u8 = 143;
/// Exit code of `run` when the guest timed out (as `timeout(1)`).
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code of `run` when the guest hit the memory limit (128 + SIGKILL, as an OOM kill).
pub const EXIT_MEMORY: u8 = 137;
/// Exit code of `run` when the guest hit the output limit.
pub const EXIT_OUTPUT: u8 = 138;
/// Exit code of `run` when phase-node itself failed (bad module, bad flags).
pub const EXIT_RUN_ERROR: u8 = 125;

/// Limits of a run; each has a default and a hard maximum.
#[derive(Debug, Args)]
pub(super) struct LimitArgs {
    /// Fuel: how many wasm instructions (roughly) the guest may execute.
    /// Without it fuel is counted (and reported with --json) but not capped,
    /// as `wasmtime run` does not cap it.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Linear memory the guest may use, e.g. 64MiB.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    memory: ByteSize,
    /// Wall-clock limit, e.g. 1s, 500ms, 2m.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    timeout: humantime::Duration,
    /// Cap on stdout and on stderr (each), and on the files under /output.
    #[arg(long, value_name = "SIZE", default_value = "16MiB")]
    max_output: ByteSize,
}

impl LimitArgs {
    pub(super) fn limits(&self) -> anyhow::Result<Limits> {
        let limits = Limits {
            fuel: self.fuel.unwrap_or(u64::MAX),
            memory: self.memory,
            timeout: self.timeout.into(),
            max_output: self.max_output,
        };
        executor::validate(&limits).context("limit out of range")?;
        Ok(limits)
    }
}

/// `NAME=VALUE` of `--env`, or `NAME` alone for the host's value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EnvVar {
    name: String,
    value: String,
}

/// Why an `--env` is not usable.
#[derive(Debug, thiserror::Error)]
enum EnvVarError {
    #[error("`{0}` has an empty name")]
    EmptyName(String),
    #[error("no variable {0} in this environment (use {0}=VALUE)")]
    NotSet(String),
}

impl FromStr for EnvVar {
    type Err = EnvVarError;
    fn from_str(spec: &str) -> Result<Self, EnvVarError> {
        match spec.split_once('=') {
            Some(("", _)) => Err(EnvVarError::EmptyName(spec.to_owned())),
            Some((name, value)) => Ok(Self {
                name: name.to_owned(),
                value: value.to_owned(),
            }),
            None => match std::env::var(spec) {
                Ok(value) => Ok(Self {
                    name: spec.to_owned(),
                    value,
                }),
                Err(_) => Err(EnvVarError::NotSet(spec.to_owned())),
            },
        }
    }
}

/// Run a WebAssembly module or component locally, in the sandbox, offline.
///
/// The guest sees only its arguments, the environment variables given with
/// --env, stdin (read as the guest reads it), /input (read-only, with
/// --input), /output (writable) and --dir directories (fewer with --fs).
/// Its stdout and stderr are printed as it writes them (with --json: after
/// it ends, in the JSON).
///
/// Exit status: the guest's own exit code; 124 timed out; 134 trapped; 135 out
/// of fuel; 137 memory limit; 138 output limit; 125 phase-node failed (bad
/// module or flags); 2 bad usage (including a flag value that does not parse).
#[derive(Debug, Args)]
#[command(after_help = "Example: echo -n 'Hello, World' | phase-node run hello.wasm")]
pub(super) struct RunArgs {
    /// The .wasm file: a WASI preview 1 module or a preview 2 component.
    #[arg(value_name = "MODULE.wasm")]
    module: PathBuf,
    /// Give the guest a host directory, writable, at GUEST_DIR (default: the same path).
    #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
    dirs: Vec<DirMapping>,
    /// Host directory the guest sees read-only at /input.
    #[arg(long, value_name = "DIR")]
    input: Option<PathBuf>,
    /// Host directory the guest sees at /output (created if missing). Without
    /// it, /output is a temporary directory that is removed after the run.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Set an environment variable for the guest; NAME alone passes the host's value.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<EnvVar>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Compile under a budget, as a worker compiles a stranger's module: in
    /// a child process, killed past DURATION or 512 MiB resident (both grow
    /// with the module's size). Without it, your own module compiles here
    /// without a bound, as `wasmtime run` does. Either way the compiled
    /// module is cached, so later runs start at once.
    #[arg(long, value_name = "DURATION")]
    compile_timeout: Option<humantime::Duration>,
    /// Which folders the guest sees, as a job's `permissions.fs`: `none`
    /// (no folder at all), `read` (/input only), `write` (/input and
    /// /output, the default). --dir needs `write`.
    #[arg(long, value_name = "none|read|write", default_value_t = FsAccess::Write)]
    fs: FsAccess,
    /// Let a component send HTTP requests to HOST:PORT (repeat for more), as
    /// a job's `permissions.net`; every other request fails inside the
    /// guest with `HTTP-request-denied`. Not with --deterministic.
    #[arg(long = "net", value_name = "HOST:PORT", value_parser = net_host)]
    net: Vec<String>,
    /// Run deterministically: virtual clocks, randomness seeded from the
    /// module's CID, so two runs give identical output and fuel.
    #[arg(long)]
    deterministic: bool,
    /// The guest state (a root in the local store, as `phase-node state`
    /// makes) that the module's `phase` calls read and change. Without it,
    /// a module that imports `phase` starts from the empty state. A run
    /// that exits 0 stores and pins the new state; its root is printed on
    /// stderr (`state_after` in --json).
    #[arg(long, value_name = "ROOT")]
    state: Option<phase_protocol::Cid>,
    /// Print one JSON object with the outcome (stdout and stderr included)
    /// instead of the guest's output.
    #[arg(long)]
    json: bool,
    /// Arguments for the guest (after `--` if they start with a dash).
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

/// A `--net` entry, checked as a job's `permissions.net` entries are.
fn net_host(s: &str) -> Result<String, String> {
    phase_protocol::job::check_net_host(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// `HOST[::GUEST]` of `--dir`.
#[derive(Clone, Debug)]
struct DirMapping {
    host: PathBuf,
    guest: String,
}

impl FromStr for DirMapping {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.split_once("::") {
            Some((host, guest)) => Self {
                host: host.into(),
                guest: guest.to_owned(),
            },
            None => Self {
                host: s.into(),
                guest: s.to_owned(),
            },
        })
    }
}

/// The JSON `run --json` prints.
#[derive(Debug, Serialize)]
struct RunReport<'a> {
    module: String,
    kind: executor::ModuleKind,
    /// Where the compiled code came from: `compiled` now, or the cache
    /// (`disk`, `memory`).
    compiled: executor::CacheSource,
    exit_code: u8,
    #[serde(flatten)]
    outcome: &'a Outcome,
    output_dir: Option<&'a Path>,
}

impl RunArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let limits = self.limits.limits()?;
        let env = self.env.into_iter().map(|e| (e.name, e.value)).collect();
        let fs = self.fs;
        if self.input.is_some() && !fs.input() {
            bail!("--input is not mounted with --fs {fs}: use --fs read or write");
        }
        if self.output.is_some() && !fs.output() {
            bail!("--output is not mounted with --fs {fs}: use --fs write");
        }
        if !self.dirs.is_empty() && !fs.output() {
            bail!("--dir gives a writable folder: it needs --fs write, not {fs}");
        }
        if self.deterministic && !self.net.is_empty() {
            bail!("--net: a run with network access cannot be deterministic");
        }
        if let Some(input) = self.input.as_ref().filter(|i| !i.is_dir()) {
            bail!("--input {} is not a directory", input.display());
        }
        for d in &self.dirs {
            if !d.host.is_dir() {
                bail!("--dir {} is not a directory", d.host.display());
            }
        }
        let bytes = tokio::fs::read(&self.module)
            .await
            .with_context(|| format!("cannot read {}", self.module.display()))?;
        let data_dir = DataDir::resolve(global.data_dir.as_deref())?;
        let budget = self
            .compile_timeout
            .map(|t| CompileBudget::this_binary(t.into(), DEFAULT_COMPILE_MEMORY))
            .transpose()
            .context("cannot find the phase-node binary to compile modules with")?;
        let executor = Executor::new(ExecutorConfig {
            cache_dir: Some(data_dir.module_cache()),
            compile: budget,
            ..ExecutorConfig::default()
        })?;
        let uses_phase = executor::inspect(&bytes).is_ok_and(|info| info.uses_phase());
        let module = executor
            .load(Bytes::from(bytes))
            .await
            .with_context(|| format!("cannot load {}", self.module.display()))?;
        let state = match (self.state, uses_phase) {
            (None, false) => None,
            (root, _) => Some(state_input(global, &data_dir, root).await?),
        };

        let mut temp_output = None;
        let output_dir = match &self.output {
            Some(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .with_context(|| format!("cannot create --output {}", dir.display()))?;
                dir.clone()
            }
            None => {
                let temp = tempfile::tempdir().context("cannot create a temporary /output")?;
                let path = temp.path().to_path_buf();
                temp_output = Some(temp);
                path
            }
        };
        let program_name = self
            .module
            .file_name()
            .map_or_else(|| "main.wasm".into(), |n| n.to_string_lossy().into_owned());
        let spec = RunSpec {
            program_name,
            args: self.args,
            env,
            // A terminal gives the guest no stdin, as before; anything else
            // is read as the guest reads it.
            stdin: if std::io::stdin().is_terminal() {
                Stdin::default()
            } else {
                Stdin::Host
            },
            stream_output: !self.json,
            input_dir: self.input,
            output_dir: fs.output().then(|| output_dir.clone()),
            preopens: self
                .dirs
                .into_iter()
                .map(|d| Preopen {
                    host: d.host,
                    guest: d.guest,
                    writable: true,
                })
                .collect(),
            limits,
            deterministic: self
                .deterministic
                .then(|| run_seed(&module.cid().to_bytes())),
            state: state.as_ref().map(|(input, _)| input.clone()),
            net: NetAccess::new(&self.net),
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        let outcome = tokio::select! {
            outcome = executor.run(&module, spec) => outcome?,
            // Like a shell: 128 + the signal. What the guest printed went
            // out as it wrote it; its temporary /output goes now.
            code = async {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => EXIT_SIGINT,
                    _ = term.recv() => EXIT_SIGTERM,
                }
            } => {
                drop(temp_output);
                let _ = std::io::stdout().flush();
                eprintln!("interrupted");
                return Ok(ExitCode::from(code));
            }
        };
        let code = exit_code(&outcome.status);
        if let (Some(effects), Some((_, store))) = (&outcome.state, &state) {
            keep_state(global, store, effects)
                .await
                .context("the run ended, but its new state could not be kept")?;
            if !self.json {
                let after = &effects.state_after;
                let note = if effects.state_before == *after {
                    "unchanged; "
                } else {
                    ""
                };
                eprintln!(
                    "state_after: {after} ({note}keys: {}, bytes: {})",
                    effects.state_keys, effects.state_bytes
                );
            }
        }

        let mut stdout = std::io::stdout().lock();
        if self.json {
            let report = RunReport {
                module: module.cid().to_string(),
                kind: module.kind(),
                compiled: module.source(),
                exit_code: code,
                outcome: &outcome,
                output_dir: self.output.as_deref(),
            };
            serde_json::to_writer_pretty(&mut stdout, &report)?;
            writeln!(stdout)?;
        } else {
            // The guest's stdout and stderr went out as it wrote them.
            let mut stderr = std::io::stderr().lock();
            if let Some(line) = limit_message(&outcome, &limits) {
                writeln!(stderr, "error: {line}")?;
            }
            if self.output.is_none() && dir_has_entries(&output_dir) {
                writeln!(
                    stderr,
                    "note: the guest wrote files to /output; pass --output DIR to keep them"
                )?;
            }
        }
        Ok(ExitCode::from(code))
    }
}

/// The state a run starts from (`root`, else the empty state), read from
/// the local store, with the data dir's identity as the caller.
async fn state_input(
    global: &GlobalArgs,
    data_dir: &DataDir,
    root: Option<phase_protocol::Cid>,
) -> anyhow::Result<(StateInput, BlockStore)> {
    let store = global.store().await?;
    let root = match root {
        Some(root) => {
            // A daemon beside this command may hold some of its blocks in
            // its database: asked to fetch it, the daemon writes them out.
            let here = store.has(&root).await?;
            if !super::content::fetch_through_daemon(global, root).await? && !here {
                bail!("--state {root} is not in the local store");
            }
            root
        }
        None => {
            let (root, bytes) = guest_state::empty();
            store.put(root, Bytes::from(bytes)).await?;
            root
        }
    };
    let dir = data_dir.root().to_owned();
    let caller = tokio::task::spawn_blocking(move || crate::identity::load_or_create(&dir))
        .await??
        .public()
        .to_peer_id()
        .to_bytes();
    let input = StateInput {
        root,
        source: SharedSource::new(store.clone()),
        caller,
        max_bytes: DEFAULT_MAX_STATE,
    };
    Ok((input, store))
}

/// Stores and pins a run's new state (through the daemon when one runs:
/// it holds the pins).
async fn keep_state(
    global: &GlobalArgs,
    store: &BlockStore,
    effects: &executor::Effects,
) -> anyhow::Result<()> {
    if effects.blocks.is_empty() {
        return Ok(());
    }
    let pins = super::pins::Pins::of(global.data_dir()?.root(), store).await;
    let _lease = store.lease().await?;
    for (cid, data) in &effects.blocks {
        store.put(*cid, Bytes::copy_from_slice(data)).await?;
    }
    pins.pin(effects.state_after).await
}

/// The seed of `run --deterministic`: a function of the module alone.
fn run_seed(module_cid: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"phase-node run seed v1\0");
    h.update(module_cid);
    h.finalize().into()
}

fn dir_has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// The process exit code for a run's status.
#[must_use]
pub fn exit_code(status: &Status) -> u8 {
    match status {
        // WASI exit codes are 0..=125 in practice; wrap anything else like a shell.
        Status::Exited { code } => (*code & 0xff) as u8,
        Status::Trapped { .. } => EXIT_TRAP,
        Status::OutOfFuel => EXIT_OUT_OF_FUEL,
        Status::TimedOut => EXIT_TIMEOUT,
        Status::MemoryLimit | Status::TableLimit => EXIT_MEMORY,
        Status::Refused { .. } | Status::Interrupted => EXIT_RUN_ERROR,
        Status::OutputLimit => EXIT_OUTPUT,
    }
}

/// The one line that says which limit ended a run, if one did.
fn limit_message(outcome: &Outcome, limits: &Limits) -> Option<String> {
    Some(match &outcome.status {
        Status::Exited { .. } => return None,
        Status::Trapped { message } => format!("guest trapped: {message}"),
        Status::OutOfFuel => format!("ran out of fuel after {} instructions", limits.fuel),
        Status::TimedOut => format!(
            "timed out after {}",
            humantime::format_duration(limits.timeout)
        ),
        Status::MemoryLimit => format!("memory limit of {} reached", limits.memory),
        Status::Refused { message } => format!("the sandbox refused the module: {message}"),
        Status::TableLimit => format!(
            "table limit of {} elements reached",
            phase_protocol::job::DEFAULT_TABLE_ELEMENTS
        ),
        Status::OutputLimit => format!("output limit of {} reached", limits.max_output),
        Status::Interrupted => "the run was interrupted".to_owned(),
    })
}

/// Show what a .wasm file is: kind, WASI version, imports, exports, size, CID.
#[derive(Debug, Args)]
pub(super) struct InspectArgs {
    /// The .wasm file.
    #[arg(value_name = "MODULE.wasm")]
    module: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl InspectArgs {
    pub(super) fn execute(self) -> anyhow::Result<ExitCode> {
        let bytes = std::fs::read(&self.module)
            .with_context(|| format!("cannot read {}", self.module.display()))?;
        let info = executor::inspect(&bytes)
            .with_context(|| format!("cannot inspect {}", self.module.display()))?;
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, &info)?;
            writeln!(out)?;
        } else {
            write_info(&mut out, &info)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn write_info(out: &mut impl Write, info: &ModuleInfo) -> std::io::Result<()> {
    let kind = match info.kind {
        executor::ModuleKind::CoreModule => "core module",
        executor::ModuleKind::Component => "component",
    };
    writeln!(out, "kind:    {kind}")?;
    writeln!(out, "wasi:    {}", info.wasi.as_deref().unwrap_or("none"))?;
    writeln!(out, "size:    {} bytes", info.size)?;
    writeln!(out, "cid:     {}", info.cid)?;
    writeln!(out, "imports: {}", info.imports.len())?;
    for i in &info.imports {
        if i.module.is_empty() {
            writeln!(out, "  {} ({})", i.name, i.kind)?;
        } else {
            writeln!(out, "  {}::{} ({})", i.module, i.name, i.kind)?;
        }
    }
    writeln!(out, "exports: {}", info.exports.len())?;
    for e in &info.exports {
        writeln!(out, "  {} ({})", e.name, e.kind)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn dir_mapping_splits_on_double_colon() {
        let d: DirMapping = "/tmp/x::/data".parse().unwrap();
        assert_eq!(
            (d.host, d.guest.as_str()),
            (PathBuf::from("/tmp/x"), "/data")
        );
        let d: DirMapping = "/tmp/x".parse().unwrap();
        assert_eq!(d.guest, "/tmp/x");
    }

    #[test]
    fn env_needs_a_name() {
        let a: EnvVar = "A=b=c".parse().unwrap();
        assert_eq!((a.name.as_str(), a.value.as_str()), ("A", "b=c"));
        assert!("=x".parse::<EnvVar>().is_err());
        assert!("PHASE_SURELY_UNSET_VARIABLE".parse::<EnvVar>().is_err());
        let err = Cli::try_parse_from(["phase-node", "run", "--env", "=x", "x.wasm"]).unwrap_err();
        assert!(err.to_string().contains("empty name"), "{err}");
        let err =
            Cli::try_parse_from(["phase-node", "run", "--memory", "lots", "x.wasm"]).unwrap_err();
        assert!(err.to_string().contains("--memory"), "{err}");
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [
            exit_code(&Status::Trapped {
                message: String::new(),
            }),
            exit_code(&Status::OutOfFuel),
            exit_code(&Status::TimedOut),
            exit_code(&Status::MemoryLimit),
            exit_code(&Status::OutputLimit),
            EXIT_RUN_ERROR,
            EXIT_SIGINT,
            EXIT_SIGTERM,
        ];
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
        assert_eq!(exit_code(&Status::Exited { code: 3 }), 3);
    }

    #[test]
    fn cli_limit_defaults_are_the_protocol_defaults_but_fuel_is_uncapped() {
        let cli = Cli::try_parse_from(["phase-node", "run", "x.wasm"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("parsed as another subcommand")
        };
        let uncapped = Limits {
            fuel: u64::MAX,
            ..Limits::default()
        };
        assert_eq!(run.limits.limits().unwrap(), uncapped);
        let cli = Cli::try_parse_from(["phase-node", "run", "--fuel", "7", "x.wasm"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("parsed as another subcommand")
        };
        assert_eq!(run.limits.limits().unwrap().fuel, 7);
    }

    #[test]
    fn guest_args_may_follow_the_module() {
        let cli = Cli::try_parse_from(["phase-node", "run", "--json", "x.wasm", "a", "--b", "-c"])
            .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("parsed as another subcommand")
        };
        assert!(run.json);
        assert_eq!(run.args, ["a", "--b", "-c"]);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
