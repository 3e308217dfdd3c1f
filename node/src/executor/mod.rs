//! The sandbox: runs untrusted WebAssembly under hard limits.
//!
//! - One [`wasmtime::Engine`] per [`Executor`], with fuel, epoch interruption
//!   and NaN canonicalisation always on, and wasm threads compiled out, so
//!   every run can be deterministic and one compiled module serves every mode.
//! - Compiled modules are cached by CID: in memory (ready-linked
//!   `InstancePre`s, bounded LRU) and on disk under the data dir, in a folder
//!   named by the engine's compatibility hash, so a second process skips
//!   compilation.
//! - Each run gets a fresh `Store`: WASI with nothing but the run's args, env,
//!   stdin and the `/input` (read-only) and `/output` preopens; a limiter on
//!   memory and tables; a fuel budget; an epoch deadline from one shared
//!   ticker thread; stdout and stderr captured up to a cap.
//! - Runs happen on tokio's blocking pool ([`Executor::run`]) or the caller's
//!   thread ([`Executor::run_blocking`]); the async runtime never blocks.

mod cache;
mod compile;
mod determinism;
mod error;
mod host_api;
mod http;
mod inspect;
mod io;
mod limits;
mod outcome;
mod outputcap;
mod wasi;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, warn};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Config, Engine, InstancePre, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use phase_protocol::job::DEFAULT_TABLE_ELEMENTS;
use phase_protocol::job::LimitError;
use phase_protocol::{Cid, Limits, Status, unixfs};

use self::cache::ModuleCache;
pub use self::compile::{
    COMPILE_CHILD_ARG, COMPILE_MEMORY_PER_BYTE, COMPILE_TIME_PER_MIB, CompileBudget,
    DEFAULT_COMPILE_MEMORY, DEFAULT_COMPILE_TIME, MAX_FUNCTION_SIZE, MAX_LOCALS, MAX_NESTING,
    SizedBudget, check_structure, child_main as compile_child_main,
};
pub use self::error::{EngineError, ExecError};
pub use self::host_api::{
    BLOCK_FUEL, BYTE_FUEL, CALL_FUEL, DEFAULT_MAX_STATE, Effects, MAX_LOG_BYTES, MAX_LOG_ENTRIES,
    MAX_LOG_ENTRY, SharedSource, StateInput,
};
pub use self::http::{
    HTTP_BYTE_TIMEOUT, HTTP_CONNECT_TIMEOUT, MAX_HTTP_BYTES, MAX_HTTP_REQUESTS, NetAccess,
};
pub use self::inspect::{ExportInfo, ImportInfo, ModuleInfo, ModuleKind, inspect};

pub use self::limits::EPOCH_TICK;
use self::limits::{EpochTicker, JobLimiter, epoch_ticks};
pub use self::outcome::Outcome;
pub use self::outputcap::{MAX_DEPTH, MAX_OUTPUT_ENTRIES, Over, dir_over};
use self::wasi::{Pipes, classify, instantiation_error, wasi_builder};

/// The wasmtime this crate is built with, as receipts name it. The
/// workspace manifest pins it exactly (`=48.0.8`); a test holds this to the
/// lock file.
pub const WASMTIME_VERSION: &str = "48.0.8";
/// Largest module loaded from the store: compiled code is a multiple of
/// this, and compiling is budgeted by it.
pub const MAX_MODULE_SIZE: u64 = 256 << 20;

/// Wasm stack a guest may use before it traps with a stack overflow.
pub const MAX_WASM_STACK: usize = 1 << 20;
/// Compiled modules kept ready in memory.
pub const DEFAULT_MEMORY_CACHE_ENTRIES: usize = 64;
/// Extra time the async wrapper waits past a run's timeout before it gives
/// up on a guest stuck in a host call (a `sleep`), which epochs cannot
/// interrupt.
const HOST_CALL_GRACE: Duration = Duration::from_millis(500);

/// Settings of an [`Executor`].
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// Where compiled modules are kept between processes; `None` keeps them in
    /// memory only.
    pub cache_dir: Option<PathBuf>,
    /// Compiled modules kept ready in memory.
    pub memory_cache_entries: usize,
    /// Compile in a child process within this budget (needs `cache_dir`);
    /// `None` compiles in this process, without a bound.
    pub compile: Option<CompileBudget>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            memory_cache_entries: DEFAULT_MEMORY_CACHE_ENTRIES,
            compile: None,
        }
    }
}

/// A host directory the guest sees at `guest` (like `wasmtime run --dir`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preopen {
    /// Directory on the host.
    pub host: PathBuf,
    /// Absolute path the guest sees.
    pub guest: String,
    /// Whether the guest may create, write and delete files there.
    pub writable: bool,
}

/// Everything a run gets from outside. Nothing else of the host is visible.
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    /// `argv[0]` as the guest sees it.
    pub program_name: String,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// What the guest reads on stdin.
    pub stdin: Stdin,
    /// Stream the guest's stdout and stderr to the host's as it writes them
    /// (the caps still hold) instead of capturing them in the [`Outcome`].
    pub stream_output: bool,
    /// Host directory mounted read-only at `/input`.
    pub input_dir: Option<PathBuf>,
    /// Host directory mounted writable at `/output`; its size after the run
    /// counts against the output limit.
    pub output_dir: Option<PathBuf>,
    /// Further directories, as `phase-node run --dir` gives them.
    pub preopens: Vec<Preopen>,
    /// What the run may consume.
    pub limits: Limits,
    /// `Some(seed)` runs deterministically: virtual clocks, randomness from
    /// the seed.
    pub deterministic: Option<[u8; 32]>,
    /// The guest state the `phase` calls (core `phase` imports, component
    /// `phase:host`) read and change, and whose new root the [`Outcome`]
    /// reports; `None` runs against an empty state and reports nothing.
    pub state: Option<StateInput>,
    /// The `host:port`s a component may send HTTP requests to; every other
    /// request fails inside the guest. Empty (the default): no network.
    pub net: NetAccess,
}

/// A guest's stdin.
#[derive(Clone, Debug)]
pub enum Stdin {
    /// These bytes, then end of file.
    Bytes(Bytes),
    /// The host process's stdin, read only as the guest reads it.
    Host,
}

impl Default for Stdin {
    fn default() -> Self {
        Self::Bytes(Bytes::new())
    }
}

/// A compiled, linked module ready to run. Cheap to clone.
#[derive(Clone)]
pub struct LoadedModule {
    cid: Cid,
    kind: ModuleKind,
    compiled: Arc<Compiled>,
    source: CacheSource,
}

impl fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModule")
            .field("cid", &self.cid)
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl LoadedModule {
    /// CID of the module's bytes (as a UnixFS file).
    #[must_use]
    pub fn cid(&self) -> Cid {
        self.cid
    }

    /// Module or component.
    #[must_use]
    pub fn kind(&self) -> ModuleKind {
        self.kind
    }

    /// Where the compiled code came from.
    #[must_use]
    pub fn source(&self) -> CacheSource {
        self.source
    }
}

/// Where [`Executor::load`] found the compiled code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSource {
    /// Already in this process.
    Memory,
    /// Deserialized from the on-disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

enum Compiled {
    Core(InstancePre<P1Host>),
    Component(CommandPre<P2Host>),
}

struct P1Host {
    wasi: WasiP1Ctx,
    limiter: JobLimiter,
    phase: host_api::PhaseHost,
}

struct P2Host {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: JobLimiter,
    phase: host_api::PhaseHost,
    http: WasiHttpCtx,
    gate: http::HttpGate,
}

impl WasiView for P2Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for P2Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

/// The process's WebAssembly sandbox. Cheap to clone; all clones share one
/// engine, one module cache and one epoch ticker.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

struct Inner {
    engine: Engine,
    core_linker: Linker<P1Host>,
    component_linker: wasmtime::component::Linker<P2Host>,
    cache: ModuleCache<Compiled>,
    /// The budget and the cache folder a compile child writes into.
    compile: Option<(CompileBudget, PathBuf)>,
    _ticker: EpochTicker,
}

impl Executor {
    /// Sets up the engine, the WASI linkers, the cache and the epoch ticker.
    ///
    /// # Errors
    /// When the engine cannot be configured or the ticker thread not started.
    pub fn new(config: ExecutorConfig) -> Result<Self, ExecError> {
        let engine =
            Engine::new(&engine_config()).map_err(|e| ExecError::Engine(EngineError(e)))?;

        let mut core_linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut core_linker, |h: &mut P1Host| &mut h.wasi)
            .map_err(|e| ExecError::Engine(EngineError(e)))?;
        host_api::add_to_linker(&mut core_linker, |h: &mut P1Host| &mut h.phase)
            .map_err(|e| ExecError::Engine(EngineError(e)))?;

        let mut component_linker = wasmtime::component::Linker::new(&engine);
        // `wasi:cli/exit.exit-with-code` is stable since WASI 0.2.12 and linked
        // by default, so a component's `exit(3)` arrives as 3.
        wasmtime_wasi::p2::add_to_linker_sync(&mut component_linker)
            .map_err(|e| ExecError::Engine(EngineError(e)))?;
        host_api::add_to_component_linker(&mut component_linker, |h: &mut P2Host| &mut h.phase)
            .map_err(|e| ExecError::Engine(EngineError(e)))?;
        // Every component may import wasi:http; what a request reaches is
        // the run's `net` (nothing by default).
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut component_linker)
            .map_err(|e| ExecError::Engine(EngineError(e)))?;

        let compile = config.compile.zip(config.cache_dir.clone());
        let cache = ModuleCache::new(&engine, config.cache_dir, config.memory_cache_entries);
        let ticker = EpochTicker::start(&engine).map_err(ExecError::Ticker)?;
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                core_linker,
                component_linker,
                cache,
                compile,
                _ticker: ticker,
            }),
        })
    }

    /// Compiles (or finds in the cache) and links a module, on the blocking pool.
    ///
    /// # Errors
    /// When the bytes are not a runnable WASI command; see [`ExecError`].
    pub async fn load(&self, bytes: Bytes) -> Result<LoadedModule, ExecError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.load_blocking(&bytes))
            .await
            .map_err(ExecError::Join)?
    }

    /// [`Executor::load`] on the caller's thread.
    ///
    /// # Errors
    /// See [`Executor::load`].
    pub fn load_blocking(&self, bytes: &[u8]) -> Result<LoadedModule, ExecError> {
        let cid = unixfs::file_cid(bytes);
        self.load_cid_blocking(cid, bytes)
    }

    /// The module or component `cid`, if it is compiled and linked in
    /// memory. Keys are the UnixFS CIDs of the bytes that were compiled, so
    /// a hit is exactly the module `cid` names: a warm worker skips reading
    /// and hashing its bytes again.
    #[must_use]
    pub fn cached(&self, cid: &Cid) -> Option<LoadedModule> {
        let compiled = self.inner.cache.get_memory(cid)?;
        let kind = match *compiled {
            Compiled::Core(_) => ModuleKind::CoreModule,
            Compiled::Component(_) => ModuleKind::Component,
        };
        Some(LoadedModule {
            cid: *cid,
            kind,
            compiled,
            source: CacheSource::Memory,
        })
    }

    /// Loads `bytes` under a CID the caller has already verified.
    pub(crate) fn load_cid_blocking(
        &self,
        cid: Cid,
        bytes: &[u8],
    ) -> Result<LoadedModule, ExecError> {
        let kind = ModuleKind::detect(bytes)?;
        if let Some(compiled) = self.inner.cache.get_memory(&cid) {
            return Ok(LoadedModule {
                cid,
                kind,
                compiled,
                source: CacheSource::Memory,
            });
        }
        if !self.inner.cache.on_disk(&cid) {
            check_structure(bytes)?;
        }
        if let Some((budget, cache_root)) = &self.inner.compile
            && !self.inner.cache.on_disk(&cid)
        {
            let started = Instant::now();
            compile::in_child(budget, cache_root, &cid, bytes)?;
            tracing::info!(%cid, elapsed = ?started.elapsed(), "compiled in a child process");
            if !self.inner.cache.on_disk(&cid) {
                return Err(ExecError::Compiler(
                    "the compiler process left no artifact (is the module cache writable?)"
                        .to_owned(),
                ));
            }
        }
        let (compiled, source) = match kind {
            ModuleKind::CoreModule => {
                let (module, source) =
                    self.inner
                        .cache
                        .core_module(&self.inner.engine, &cid, bytes)?;
                (Compiled::Core(self.link_core(&module)?), source)
            }
            ModuleKind::Component => {
                let (component, source) =
                    self.inner
                        .cache
                        .component(&self.inner.engine, &cid, bytes)?;
                (
                    Compiled::Component(self.link_component(&component)?),
                    source,
                )
            }
        };
        let compiled = self.inner.cache.insert_memory(cid, compiled);
        debug!(%cid, ?kind, ?source, "module loaded");
        Ok(LoadedModule {
            cid,
            kind,
            compiled,
            source,
        })
    }

    fn link_core(&self, module: &Module) -> Result<InstancePre<P1Host>, ExecError> {
        if !matches!(
            module.get_export("_start"),
            Some(wasmtime::ExternType::Func(_))
        ) {
            return Err(ExecError::NoStart);
        }
        self.inner
            .core_linker
            .instantiate_pre(module)
            .map_err(|e| ExecError::Link(EngineError(e)))
    }

    fn link_component(&self, component: &Component) -> Result<CommandPre<P2Host>, ExecError> {
        let pre = self
            .inner
            .component_linker
            .instantiate_pre(component)
            .map_err(|e| ExecError::Link(EngineError(e)))?;
        CommandPre::new(pre).map_err(|e| ExecError::NotACommand(EngineError(e)))
    }

    /// Runs a loaded module on tokio's blocking pool.
    ///
    /// A guest stuck in a host call (a long `sleep`) past its timeout plus a
    /// short grace is reported as timed out; its thread finishes in the
    /// background and is stopped by the epoch deadline as soon as it runs wasm
    /// again.
    ///
    /// # Errors
    /// Only for host-side failures (bad limits, a preopen that cannot be
    /// opened); everything the guest does is an [`Outcome`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the result; the run itself ends by its
    /// own limits.
    pub async fn run(&self, module: &LoadedModule, spec: RunSpec) -> Result<Outcome, ExecError> {
        validate(&spec.limits)?;
        let deadline = spec.limits.timeout + HOST_CALL_GRACE;
        let pipes = Pipes::new(&spec.limits, spec.stream_output);
        let started = Instant::now();
        let task = tokio::task::spawn_blocking({
            let this = self.clone();
            let module = module.clone();
            let pipes = pipes.clone();
            move || this.run_with(&module, spec, pipes)
        });
        match tokio::time::timeout(deadline, task).await {
            Ok(joined) => joined.map_err(ExecError::Join)?,
            Err(_) => {
                warn!(cid = %module.cid, "guest stuck in a host call past its deadline");
                Ok(Outcome {
                    status: Status::TimedOut,
                    stdout: pipes.stdout.contents(),
                    stderr: pipes.stderr.contents(),
                    fuel_consumed: 0,
                    wall_time: started.elapsed(),
                    peak_memory_bytes: 0,
                    state: None,
                    net: None,
                })
            }
        }
    }

    /// Runs a loaded module on the caller's thread, which must not be an
    /// async runtime's worker (WASI's sync functions would panic there).
    ///
    /// # Errors
    /// See [`Executor::run`].
    pub fn run_blocking(&self, module: &LoadedModule, spec: RunSpec) -> Result<Outcome, ExecError> {
        validate(&spec.limits)?;
        let pipes = Pipes::new(&spec.limits, spec.stream_output);
        self.run_with(module, spec, pipes)
    }

    fn run_with(
        &self,
        module: &LoadedModule,
        spec: RunSpec,
        pipes: Pipes,
    ) -> Result<Outcome, ExecError> {
        let wasi = wasi_builder(&spec, &pipes)?;
        let limiter = JobLimiter::new(spec.limits.memory.0, DEFAULT_TABLE_ELEMENTS);
        let started = Instant::now();
        let reports_state = spec.state.is_some();
        let input = spec
            .state
            .clone()
            .unwrap_or_else(|| StateInput::empty(Vec::new(), DEFAULT_MAX_STATE));
        let phase = host_api::PhaseHost::new(input);
        let mut net = None;
        let (result, fuel_left, limiter, phase) = match module.compiled.as_ref() {
            Compiled::Core(pre) => {
                let mut wasi = wasi;
                let host = P1Host {
                    wasi: wasi.build_p1(),
                    limiter,
                    phase,
                };
                let mut store = self.new_store(host, &spec, |h| &mut h.limiter);
                let result = pre
                    .instantiate(&mut store)
                    .map_err(instantiation_error)
                    .and_then(|instance| {
                        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                        start.call(&mut store, ())
                    });
                let fuel = store.get_fuel();
                let host = store.into_data();
                (result.map(|()| 0), fuel, host.limiter, host.phase)
            }
            Compiled::Component(pre) => {
                let mut wasi = wasi;
                let host = P2Host {
                    ctx: wasi.build(),
                    table: ResourceTable::new(),
                    limiter,
                    phase,
                    http: WasiHttpCtx::new(),
                    gate: http::HttpGate::new(spec.net.clone()),
                };
                let mut store = self.new_store(host, &spec, |h| &mut h.limiter);
                let result = pre
                    .instantiate(&mut store)
                    .map_err(instantiation_error)
                    .and_then(|command| command.wasi_cli_run().call_run(&mut store));
                let code = result.map(|r| i32::from(r.is_err()));
                let fuel = store.get_fuel();
                let host = store.into_data();
                net = Some(host.gate.used());
                (code, fuel, host.limiter, host.phase)
            }
        };
        let wall_time = started.elapsed();
        let fuel_consumed = spec.limits.fuel.saturating_sub(fuel_left.unwrap_or(0));
        let output_over = spec.output_dir.as_deref().is_some_and(|dir| {
            dir_over(dir, spec.limits.max_output.0, MAX_OUTPUT_ENTRIES).is_some()
        });
        let status = classify(result, &pipes, &limiter, output_over);
        let succeeded = status == Status::Exited { code: 0 };
        let state = reports_state.then(|| phase.finish(succeeded));
        Ok(Outcome {
            status,
            stdout: pipes.stdout.contents(),
            stderr: pipes.stderr.contents(),
            fuel_consumed,
            wall_time,
            peak_memory_bytes: limiter.peak_memory as u64,
            state,
            net: net.filter(|_| !spec.net.is_empty()),
        })
    }

    fn new_store<T: 'static>(
        &self,
        host: T,
        spec: &RunSpec,
        limiter: impl (FnMut(&mut T) -> &mut JobLimiter) + Send + Sync + 'static,
    ) -> Store<T> {
        let limits = &spec.limits;
        let mut store = Store::new(&self.inner.engine, host);
        let mut limiter = limiter;
        store.limiter(move |h| limiter(h) as &mut dyn wasmtime::ResourceLimiter);
        store
            .set_fuel(limits.fuel)
            .expect("fuel is enabled in every engine this module builds");
        match &spec.output_dir {
            // A sandbox whose one writable folder is /output: measured as
            // the guest runs.
            Some(dir) if spec.preopens.is_empty() => {
                outputcap::watch(
                    &mut store,
                    dir.clone(),
                    limits.max_output.0,
                    MAX_OUTPUT_ENTRIES,
                    limits.timeout,
                );
            }
            _ => store.set_epoch_deadline(epoch_ticks(limits.timeout)),
        }
        store
    }

    /// Where compiled modules are kept on disk, if anywhere.
    #[must_use]
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.cache.dir()
    }
}

/// Checks a run's limits. Fuel is only a budget here: any amount, up to
/// `u64::MAX` for "uncapped" (a local `run` without `--fuel`), is safe to
/// set; jobs from the network are held to [`phase_protocol::job::MAX_FUEL`]
/// by their spec's validation and the worker's maximum.
///
/// # Errors
/// The first limit out of range.
pub fn validate(limits: &Limits) -> Result<(), LimitError> {
    Limits {
        fuel: limits.fuel.min(phase_protocol::job::MAX_FUEL),
        ..*limits
    }
    .validate()
}

/// Engine settings shared by every run (and by the on-disk cache's key).
fn engine_config() -> Config {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .wasm_component_model(true)
        .max_wasm_stack(MAX_WASM_STACK);
    config
}

#[cfg(test)]
mod tests;
