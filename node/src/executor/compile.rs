//! Compiling untrusted modules under a budget.
//!
//! Cranelift cannot be interrupted, and a small module can make it spend
//! minutes and gigabytes (fuel and epoch instrumentation of a function
//! nested 20,000 deep: 20 s and 516 MB). So a worker compiles in a child
//! process of its own binary: the child sets its address-space and CPU
//! rlimits before it reads the module, compiles it into the executor's disk
//! cache (same engine settings, so the parent loads the artifact as any
//! cached module), and the parent kills it at the wall-clock budget. What
//! exceeds the budget is refused as too complex, naming the budget.
//!
//! Before any of that, [`check_structure`] refuses what wasmparser can see
//! is out of bounds in one linear pass (function size, locals, nesting).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phase_protocol::{ByteSize, Cid};
use wasmparser::{Operator, Parser, Payload};

use super::{ExecError, Executor, ExecutorConfig};

/// The argument that makes the binary a compile child (not a user command).
pub const COMPILE_CHILD_ARG: &str = "__phase-node-compile";

/// Exit code of a child whose module is invalid (its stderr says why).
const EXIT_INVALID: i32 = 3;

/// Default wall-clock budget for compiling one module.
pub const DEFAULT_COMPILE_TIME: Duration = Duration::from_secs(10);
/// Default memory (address space) budget for compiling one module.
pub const DEFAULT_COMPILE_MEMORY: ByteSize = ByteSize(512 << 20);

/// Largest function body, in bytes (V8's limit).
pub const MAX_FUNCTION_SIZE: usize = 7_654_321;
/// Most locals in one function (V8's limit).
pub const MAX_LOCALS: u64 = 50_000;
/// Deepest nesting of blocks, loops and ifs in one function.
pub const MAX_NESTING: usize = 10_000;

/// A budget for compiling one module in a child process.
#[derive(Clone, Debug)]
pub struct CompileBudget {
    /// The `phase-node` binary to run as the child.
    pub program: PathBuf,
    /// Wall-clock (and CPU) time.
    pub time: Duration,
    /// Address space of the child.
    pub memory: ByteSize,
}

impl CompileBudget {
    /// The running binary as the child, with `time` and `memory`.
    ///
    /// # Errors
    /// When the running binary cannot be found.
    pub fn this_binary(time: Duration, memory: ByteSize) -> std::io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
            time,
            memory,
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} and {} MiB",
            humantime::format_duration(self.time),
            self.memory.0 >> 20
        )
    }
}

/// Refuses a module whose structure is out of bounds, before compiling.
///
/// # Errors
/// [`ExecError::TooComplex`] naming what is over (bytes that do not parse
/// pass: the compiler refuses them as invalid).
pub fn check_structure(bytes: &[u8]) -> Result<(), ExecError> {
    match structure(bytes) {
        Ok(None) => Ok(()),
        Ok(Some(what)) => Err(ExecError::TooComplex(what)),
        // Bytes that do not parse are the compiler's to refuse, as invalid.
        Err(_) => Ok(()),
    }
}

/// What is over a structural bound, if anything.
fn structure(bytes: &[u8]) -> Result<Option<String>, wasmparser::BinaryReaderError> {
    for payload in Parser::new(0).parse_all(bytes) {
        let Payload::CodeSectionEntry(body) = payload? else {
            continue;
        };
        let size = body.range().len();
        if size > MAX_FUNCTION_SIZE {
            return Ok(Some(format!(
                "a function of {size} bytes (at most {MAX_FUNCTION_SIZE})"
            )));
        }
        let mut locals = 0u64;
        for local in body.get_locals_reader()? {
            locals += u64::from(local?.0);
        }
        if locals > MAX_LOCALS {
            return Ok(Some(format!(
                "a function with {locals} locals (at most {MAX_LOCALS})"
            )));
        }
        let mut depth = 0usize;
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            match reader.read()? {
                Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::Try { .. }
                | Operator::TryTable { .. } => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Ok(Some(format!(
                            "blocks nested more than {MAX_NESTING} deep in one function"
                        )));
                    }
                }
                Operator::End => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(None)
}

/// Compiles `bytes` (module `cid`) into the disk cache under `cache_root`
/// in a child process within `budget`.
///
/// # Errors
/// [`ExecError::TooComplex`] past the budget, [`ExecError::Invalid`] when
/// the child finds the module invalid, [`ExecError::Compiler`] when the
/// child cannot run.
pub(super) fn in_child(
    budget: &CompileBudget,
    cache_root: &Path,
    cid: &Cid,
    bytes: &[u8],
) -> Result<(), ExecError> {
    let failed = |e: std::io::Error| ExecError::Compiler(e.to_string());
    let mut child = Command::new(&budget.program)
        .arg(COMPILE_CHILD_ARG)
        .arg(cache_root)
        .arg(cid.to_string())
        .arg(budget.memory.0.to_string())
        .arg(budget.time.as_secs().max(1).to_string())
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed)?;
    // The child reads all of it before it starts compiling.
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(bytes))
        .transpose();
    let deadline = Instant::now() + budget.time + Duration::from_millis(500);
    let status = loop {
        match child.try_wait().map_err(failed)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ExecError::TooComplex(format!(
                    "compiling takes more than the budget of {}",
                    budget.describe()
                )));
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.by_ref().take(4096).read_to_string(&mut stderr);
    }
    let line = stderr.lines().next().unwrap_or("").to_owned();
    match status.code() {
        Some(0) => Ok(()),
        Some(EXIT_INVALID) => Err(ExecError::Compiler(line)),
        _ if written.is_err() || status.code().is_none() || line.contains("memory allocation") => {
            // Killed by its rlimits (SIGXCPU, SIGKILL, or an abort when an
            // allocation is refused).
            Err(ExecError::TooComplex(format!(
                "compiling takes more than the budget of {}",
                budget.describe()
            )))
        }
        _ => Err(ExecError::Compiler(format!(
            "the compiler process failed ({status}): {line}"
        ))),
    }
}

/// The compile child's `main`: `ARG CACHE_ROOT CID MEMORY SECONDS`, the
/// module on stdin. Returns the process's exit code.
#[must_use]
pub fn child_main(args: &[String]) -> i32 {
    match child(args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("{message}");
            EXIT_INVALID
        }
    }
}

fn child(args: &[String]) -> Result<(), String> {
    let [cache_root, cid, memory, seconds] = args else {
        return Err("usage: CACHE_ROOT CID MEMORY SECONDS < module".to_owned());
    };
    let number = |s: &str| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
    let (memory, seconds) = (number(memory)?, number(seconds)?);
    limit(libc::RLIMIT_AS, memory, memory)?;
    // CPU time is summed over the compiler's threads (one per core): the
    // wall-clock deadline the parent keeps is the bound that binds; this
    // one stops a child the parent could not kill.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let cpu = seconds.saturating_mul(cores);
    limit(libc::RLIMIT_CPU, cpu, cpu.saturating_add(1))?;
    let cid: Cid = cid.parse().map_err(|e| format!("{cid}: {e}"))?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(crate::worker::MAX_MODULE_SIZE)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the module: {e}"))?;
    let executor = Executor::new(ExecutorConfig {
        cache_dir: Some(PathBuf::from(cache_root)),
        memory_cache_entries: 1,
        compile: None,
    })
    .map_err(|e| crate::error_line(&e))?;
    executor
        .load_cid_blocking(cid, &bytes)
        .map(drop)
        .map_err(|e| crate::error_line(&e))
}

fn limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> Result<(), String> {
    let rlim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(resource, &raw const rlim) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot set a resource limit: {}",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Vec<u8> {
        let mut wat = String::from("(module (func (export \"_start\")");
        for _ in 0..depth {
            wat.push_str(" (block");
        }
        for _ in 0..depth {
            wat.push(')');
        }
        wat.push_str("))");
        wat::parse_str(wat).unwrap()
    }

    #[test]
    fn nesting_past_the_bound_is_refused_before_compiling() {
        assert!(check_structure(&nested(100)).is_ok());
        let err = check_structure(&nested(MAX_NESTING + 1)).unwrap_err();
        assert!(matches!(err, ExecError::TooComplex(_)), "{err}");
        assert!(err.to_string().starts_with("module too complex"), "{err}");
    }

    #[test]
    fn too_many_locals_are_refused() {
        let wat = format!(
            "(module (func (export \"_start\") (local {})))",
            "i32 ".repeat(usize::try_from(MAX_LOCALS).unwrap() + 1)
        );
        let err = check_structure(&wat::parse_str(wat).unwrap()).unwrap_err();
        assert!(err.to_string().contains("locals"), "{err}");
    }
}
