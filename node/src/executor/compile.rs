//! Compiling untrusted modules under a budget.
//!
//! Cranelift cannot be interrupted, and a small module can make it spend
//! minutes and gigabytes (fuel and epoch instrumentation of a function
//! nested 20,000 deep: 20 s and 516 MB). So a worker compiles in a child
//! process of its own binary: the child compiles the module into the
//! executor's disk cache (same engine settings, so the parent loads the
//! artifact as any cached module), and the parent watches it, killing it
//! once its wall-clock time or its *resident* memory passes the budget. A
//! CPU rlimit in the child is the backstop should the parent die. What
//! exceeds the budget is refused as too complex, naming the budget.
//!
//! The budget scales with the module's size ([`CompileBudget::for_size`]):
//! honest compile cost is near linear in code size (CPython for WASI, 26
//! MB: 14 s and 268 MB resident with wasmtime on a loaded 2-core machine),
//! while the bombs are small modules with pathological structure, which
//! the base budget stops. Resident memory, not address space: wasmtime
//! reserves address space far beyond what it touches, so an `RLIMIT_AS`
//! large enough for a real interpreter bounds nothing.
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

/// Default wall-clock budget for compiling one small module (the base:
/// see [`CompileBudget::for_size`]).
pub const DEFAULT_COMPILE_TIME: Duration = Duration::from_secs(10);
/// Default resident-memory budget for compiling one small module (the
/// base: see [`CompileBudget::for_size`]).
pub const DEFAULT_COMPILE_MEMORY: ByteSize = ByteSize(512 << 20);
/// Compile time allowed per MiB of module on top of the base: about four
/// times what CPython (26 MB, 14 s) needs on a loaded 2-core machine.
pub const COMPILE_TIME_PER_MIB: Duration = Duration::from_secs(2);
/// Resident memory allowed per byte of module on top of the base: CPython
/// (26 MB) peaks near 270 MB, about 10 bytes per byte.
pub const COMPILE_MEMORY_PER_BYTE: u64 = 24;
/// How often the parent looks at the child's time and resident memory.
const WATCH_INTERVAL: Duration = Duration::from_millis(10);

/// Largest function body, in bytes (V8's limit).
pub const MAX_FUNCTION_SIZE: usize = 7_654_321;
/// Most locals in one function (V8's limit).
pub const MAX_LOCALS: u64 = 50_000;
/// Deepest nesting of blocks, loops and ifs in one function.
pub const MAX_NESTING: usize = 10_000;

/// A budget for compiling one module in a child process: `time` and
/// `memory` are the base, which grows with the module's size.
#[derive(Clone, Debug)]
pub struct CompileBudget {
    /// The `phase-node` binary to run as the child.
    pub program: PathBuf,
    /// Wall-clock time for a small module.
    pub time: Duration,
    /// Resident memory of the child for a small module.
    pub memory: ByteSize,
}

/// The budget for one module: [`CompileBudget::for_size`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizedBudget {
    /// Wall-clock time.
    pub time: Duration,
    /// Resident memory.
    pub memory: ByteSize,
}

impl std::fmt::Display for SizedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} and {} MiB resident",
            humantime::format_duration(self.time),
            self.memory.0 >> 20
        )
    }
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

    /// The budget for a module of `size` bytes: the base plus
    /// [`COMPILE_TIME_PER_MIB`] per MiB and [`COMPILE_MEMORY_PER_BYTE`]
    /// per byte (the extra time in whole seconds, rounded down: a module
    /// under half a MiB gets the base).
    #[must_use]
    pub fn for_size(&self, size: usize) -> SizedBudget {
        let size = size as u64;
        let extra_ms = (COMPILE_TIME_PER_MIB.as_millis() as u64).saturating_mul(size) >> 20;
        let time = self.time + Duration::from_secs(extra_ms / 1000);
        let memory = self
            .memory
            .0
            .saturating_add(size.saturating_mul(COMPILE_MEMORY_PER_BYTE));
        SizedBudget {
            time,
            memory: ByteSize(memory),
        }
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
    let sized = budget.for_size(bytes.len());
    let over = || ExecError::TooComplex(format!("compiling takes more than the budget of {sized}"));
    let failed = |e: std::io::Error| ExecError::Compiler(e.to_string());
    let mut child = Command::new(&budget.program)
        .arg(COMPILE_CHILD_ARG)
        .arg(cache_root)
        .arg(cid.to_string())
        .arg(sized.time.as_secs().max(1).to_string())
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
    let deadline = Instant::now() + sized.time + Duration::from_millis(500);
    let status = loop {
        match child.try_wait().map_err(failed)? {
            Some(status) => break status,
            None if Instant::now() >= deadline
                || resident_bytes(child.id()).is_some_and(|rss| rss > sized.memory.0) =>
            {
                let _ = child.kill();
                let _ = child.wait();
                return Err(over());
            }
            None => std::thread::sleep(WATCH_INTERVAL),
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
        // Killed by its CPU rlimit (SIGXCPU), or the module was not read.
        _ if written.is_err() || status.code().is_none() => Err(over()),
        _ => Err(ExecError::Compiler(format!(
            "the compiler process failed ({status}): {line}"
        ))),
    }
}

/// Resident memory of process `pid` (`/proc/PID/statm`), or `None` when
/// it cannot be read (the process has just exited).
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(u64::try_from(page).unwrap_or(4096)))
}

/// The compile child's `main`: `ARG CACHE_ROOT CID SECONDS`, the module on
/// stdin. Returns the process's exit code.
#[must_use]
pub fn child_main(args: &[String]) -> i32 {
    match child(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", crate::error_line(&e));
            EXIT_INVALID
        }
    }
}

/// Why the compile child could not compile (its one line on stderr).
#[derive(Debug, thiserror::Error)]
enum ChildError {
    #[error("usage: CACHE_ROOT CID SECONDS < module")]
    Usage,
    #[error("{0}: not a number of seconds")]
    Seconds(String, #[source] std::num::ParseIntError),
    #[error("{0}: not a CID")]
    Cid(String, #[source] cid::Error),
    #[error("cannot set a resource limit")]
    Limit(#[source] std::io::Error),
    #[error("cannot read the module")]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    Exec(#[from] ExecError),
}

fn child(args: &[String]) -> Result<(), ChildError> {
    let [cache_root, cid, seconds] = args else {
        return Err(ChildError::Usage);
    };
    let seconds = seconds
        .parse::<u64>()
        .map_err(|e| ChildError::Seconds(seconds.clone(), e))?;
    // CPU time is summed over the compiler's threads (one per core): the
    // parent's wall-clock and resident-memory watch is the bound that
    // binds; this one stops a child whose parent died.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let cpu = seconds.saturating_mul(cores);
    limit(libc::RLIMIT_CPU, cpu, cpu.saturating_add(1)).map_err(ChildError::Limit)?;
    let cid: Cid = cid.parse().map_err(|e| ChildError::Cid(cid.clone(), e))?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(super::MAX_MODULE_SIZE)
        .read_to_end(&mut bytes)
        .map_err(ChildError::Read)?;
    let executor = Executor::new(ExecutorConfig {
        cache_dir: Some(PathBuf::from(cache_root)),
        memory_cache_entries: 1,
        compile: None,
    })?;
    executor.load_cid_blocking(cid, &bytes).map(drop)?;
    Ok(())
}

fn limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let rlim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(resource, &raw const rlim) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
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
    fn the_budget_grows_with_the_module() {
        let budget = CompileBudget {
            program: PathBuf::from("phase-node"),
            time: Duration::from_secs(10),
            memory: ByteSize(512 << 20),
        };
        let small = budget.for_size(60_000);
        assert_eq!(small.time, Duration::from_secs(10));
        assert!(small.memory.0 < 514 << 20, "{small}");
        // CPython for WASI: 26 MB.
        let python = budget.for_size(26_267_204);
        assert_eq!(python.time, Duration::from_secs(60));
        assert!(python.memory.0 > 1 << 30, "{python}");
        assert_eq!(
            python.to_string(),
            format!("1m and {} MiB resident", python.memory.0 >> 20)
        );
    }

    #[test]
    fn resident_memory_of_a_process_is_read() {
        let mine = resident_bytes(std::process::id()).unwrap();
        assert!(mine > 1 << 20, "{mine}");
        assert_eq!(resident_bytes(u32::MAX), None);
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
