//! Errors of the executor.

use std::fmt;
use std::path::PathBuf;

use phase_protocol::job::LimitError;

/// A wasmtime error as a `std::error::Error` (wasmtime 48's own error type
/// is not one), keeping its chain of causes.
pub struct EngineError(pub(super) wasmtime::Error);

impl fmt::Debug for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        AsRef::<dyn std::error::Error>::as_ref(&self.0).source()
    }
}

/// Why a module could not be loaded or run. A guest that misbehaves is not
/// an error: it is an [`Outcome`] with a [`Status`].
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Neither a core module nor a component.
    #[error("not a WebAssembly module or component")]
    NotWasm,
    /// Has the wasm header but does not parse.
    #[error("malformed WebAssembly")]
    Malformed(#[source] wasmparser::BinaryReaderError),
    /// Does not validate or compile.
    #[error("invalid WebAssembly")]
    Invalid(#[source] EngineError),
    /// A core module without `_start`.
    #[error("core module has no `_start` function: it is a library, not a WASI command")]
    NoStart,
    /// A component without `wasi:cli/run`.
    #[error("component does not export `wasi:cli/run`: it is a library, not a WASI command")]
    NotACommand(#[source] EngineError),
    /// Imports something the sandbox does not provide.
    #[error("module imports something the sandbox does not provide")]
    Link(#[source] EngineError),
    /// A limit out of range.
    #[error("invalid limits")]
    Limits(#[from] LimitError),
    /// A host directory to preopen could not be opened.
    #[error("cannot open directory {path} for the guest")]
    Preopen {
        /// The host path.
        path: PathBuf,
        /// Why.
        #[source]
        source: EngineError,
    },
    /// The engine could not be set up.
    #[error("cannot set up the WebAssembly engine")]
    Engine(#[source] EngineError),
    /// The epoch ticker thread could not start.
    #[error("cannot start the epoch ticker thread")]
    Ticker(#[source] std::io::Error),
    /// Instantiation failed for a reason other than a guest fault.
    #[error("cannot instantiate the module")]
    Instantiate(#[source] EngineError),
    /// Over a structural bound, or past the compile budget.
    #[error("module too complex: {0}")]
    TooComplex(String),
    /// The compiler process refused the module or could not run.
    #[error("cannot compile the module: {0}")]
    Compiler(String),
    /// The blocking task running the guest panicked or was cancelled.
    #[error("execution task failed")]
    Join(#[source] tokio::task::JoinError),
}
