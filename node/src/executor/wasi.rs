//! What a run's guest gets from the host, and how its end is read: the
//! WASI context (args, env, stdin, the preopens, capped stdout and stderr)
//! and the classification of a finished run into a [`Status`].

use std::path::Path;

use tracing::debug;
use wasmtime::Trap;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use phase_protocol::{Limits, Status};

use super::determinism;
use super::io::{CappedPipe, OutputLimitHit, Sink};
use super::limits::{JobLimiter, Refused};
use super::{EngineError, ExecError, RunSpec, Stdin};

/// The guest's stdout and stderr: captured, or streamed to the host's.
#[derive(Clone, Debug)]
pub(super) struct Pipes {
    pub(super) stdout: CappedPipe,
    pub(super) stderr: CappedPipe,
}

impl Pipes {
    pub(super) fn new(limits: &Limits, stream: bool) -> Self {
        let cap = usize::try_from(limits.max_output.0).unwrap_or(usize::MAX);
        if stream {
            Self {
                stdout: CappedPipe::streaming(cap, Sink::Stdout),
                stderr: CappedPipe::streaming(cap, Sink::Stderr),
            }
        } else {
            Self {
                stdout: CappedPipe::new(cap),
                stderr: CappedPipe::new(cap),
            }
        }
    }
}

pub(super) fn wasi_builder(spec: &RunSpec, pipes: &Pipes) -> Result<WasiCtxBuilder, ExecError> {
    let mut b = WasiCtxBuilder::new();
    let mut argv = Vec::with_capacity(spec.args.len() + 1);
    argv.push(spec.program_name.as_str());
    argv.extend(spec.args.iter().map(String::as_str));
    b.args(&argv)
        .envs(&spec.env)
        .stdout(pipes.stdout.clone())
        .stderr(pipes.stderr.clone());
    match &spec.stdin {
        Stdin::Bytes(bytes) => {
            b.stdin(MemoryInputPipe::new(bytes.clone()));
        }
        // Read as the guest reads, like `wasmtime run`: a guest that never
        // reads stdin never waits for its writer.
        Stdin::Host => {
            b.inherit_stdin();
        }
    }
    let mut preopen = |host: &Path, guest: &str, writable: bool| {
        let perms = if writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        b.preopened_dir(host, guest, perms)
            .map(|_| ())
            .map_err(|e| ExecError::Preopen {
                path: host.to_owned(),
                source: EngineError(e),
            })
    };
    if let Some(input) = &spec.input_dir {
        preopen(input, "/input", false)?;
    }
    if let Some(output) = &spec.output_dir {
        preopen(output, "/output", true)?;
    }
    for p in &spec.preopens {
        preopen(&p.host, &p.guest, p.writable)?;
    }
    if let Some(seed) = spec.deterministic {
        determinism::make_deterministic(&mut b, seed);
    }
    Ok(b)
}

/// An error of type `E` in `err`'s contexts or sources: a trap raised in a
/// WASI call that a shadowing host function made arrives wrapped.
fn find<E: std::error::Error + Send + Sync + 'static>(err: &wasmtime::Error) -> Option<&E> {
    err.downcast_ref::<E>()
        .or_else(|| err.chain().find_map(|e| e.downcast_ref::<E>()))
}

/// Instantiation failed for a reason other than a trap or a limit.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct InstantiationRefused(pub(super) String);

/// `err` of an instantiation, marked as such unless it is a trap (a start
/// function or an out-of-bounds segment traps, as the spec says).
pub(super) fn instantiation_error(err: wasmtime::Error) -> wasmtime::Error {
    if find::<Trap>(&err).is_some() {
        return err;
    }
    let line = err.to_string();
    wasmtime::Error::new(InstantiationRefused(
        line.lines().next().unwrap_or_default().to_owned(),
    ))
}

/// Turns the raw result of a run into a [`Status`].
pub(super) fn classify(
    result: wasmtime::Result<i32>,
    pipes: &Pipes,
    limiter: &JobLimiter,
    output_over: bool,
) -> Status {
    if pipes.stdout.overflowed() || pipes.stderr.overflowed() || output_over {
        return Status::OutputLimit;
    }
    let err = match result {
        Ok(code) => return Status::Exited { code },
        Err(err) => err,
    };
    if let Some(exit) = find::<I32Exit>(&err) {
        return Status::Exited { code: exit.0 };
    }
    if find::<OutputLimitHit>(&err).is_some() {
        return Status::OutputLimit;
    }
    match find::<Trap>(&err) {
        Some(Trap::OutOfFuel) => return Status::OutOfFuel,
        Some(Trap::Interrupt) => return Status::TimedOut,
        _ => {}
    }
    match limiter.refused {
        Some(Refused::Memory) => return Status::MemoryLimit,
        Some(Refused::Table) => return Status::TableLimit,
        None => {}
    }
    if let Some(trap) = find::<Trap>(&err) {
        return Status::Trapped {
            message: trap.to_string(),
        };
    }
    // Not a trap, before the guest ran: the sandbox refused the module
    // (too many instances, memories or tables).
    if let Some(refused) = find::<InstantiationRefused>(&err) {
        return Status::Refused {
            message: refused.0.clone(),
        };
    }
    // Not a trap: the guest called an import in a way the host refused
    // (e.g. an invalid exit code).
    // The root cause names it (an invalid flag passed to a file call, say);
    // the outer layers are wasmtime's backtrace.
    debug!(error = %format!("{err:?}"), "run ended by a host error");
    // Every error has a reason: the root cause's first line, else the
    // first layer that says anything.
    let lines: Vec<String> = err
        .chain()
        .map(|e| {
            let line = e.to_string();
            line.lines().next().unwrap_or_default().trim().to_owned()
        })
        .collect();
    let message = lines
        .into_iter()
        .rev()
        .find(|line| !line.is_empty())
        .unwrap_or_else(|| "the host refused a call from the guest".to_owned());
    Status::Trapped { message }
}
