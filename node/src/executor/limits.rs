//! Resource limits of one run: the store limiter (memory, tables, instances)
//! and the process-wide epoch ticker behind wall-clock timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Engine, ResourceLimiter};

/// Period of the epoch ticker: the granularity of every wall-clock timeout.
/// 10 ms keeps the ticker's own cost negligible (100 wake-ups a second for the
/// whole process) while a 1 s timeout still ends within 1 % of its mark.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Core instances a store may create: a WASI component is a handful of core
/// instances (guest, adapter, shims); a core module is one.
const MAX_INSTANCES: usize = 64;
/// Linear memories a store may create.
const MAX_MEMORIES: usize = 64;
/// Tables a store may create.
const MAX_TABLES: usize = 256;

/// Store limiter of one run: caps linear memory (summed over all memories)
/// and table elements, and remembers the peak and whether it refused.
#[derive(Debug)]
pub(crate) struct JobLimiter {
    memory_limit: usize,
    table_elements: usize,
    memory_total: usize,
    pub(crate) peak_memory: usize,
    /// What it refused, if it did.
    pub(crate) refused: Option<Refused>,
}

/// What a [`JobLimiter`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Memory,
    Table,
}

impl JobLimiter {
    pub(crate) fn new(memory_limit: u64, table_elements: u32) -> Self {
        Self {
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            table_elements: table_elements as usize,
            memory_total: 0,
            peak_memory: 0,
            refused: None,
        }
    }
}

impl ResourceLimiter for JobLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_total
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.memory_limit {
            self.refused = Some(Refused::Memory);
            return Ok(false);
        }
        self.memory_total = total;
        self.peak_memory = self.peak_memory.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.refused = Some(Refused::Table);
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// Epoch deadline, in ticks, for a wall-clock timeout (at least one tick).
pub(crate) fn epoch_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    u64::try_from(timeout.as_nanos().div_ceil(tick))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// One thread per engine that advances the epoch every [`EPOCH_TICK`].
/// Stops when dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn({
                let engine = engine.clone();
                let stop = Arc::clone(&stop);
                move || {
                    // `park_timeout` rather than `sleep`, so that dropping the
                    // ticker wakes it at once instead of waiting out a tick.
                    let mut next = Instant::now() + EPOCH_TICK;
                    while !stop.load(Ordering::Acquire) {
                        let now = Instant::now();
                        if now >= next {
                            engine.increment_epoch();
                            // After a suspension, resume ticking; do not burst.
                            next = (next + EPOCH_TICK).max(now);
                        } else {
                            std::thread::park_timeout(next - now);
                        }
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_sums_memories_and_records_refusal() {
        let mut l = JobLimiter::new(100, 10);
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.memory_growing(0, 40, None).unwrap());
        assert_eq!(l.refused, None);
        assert!(!l.memory_growing(40, 41, None).unwrap());
        assert_eq!(l.refused, Some(Refused::Memory));
        assert_eq!(l.peak_memory, 100);
        assert!(!l.table_growing(0, 11, None).unwrap());
        assert_eq!(l.refused, Some(Refused::Table), "a table is not memory");
    }

    #[test]
    fn ticks_round_up() {
        assert_eq!(epoch_ticks(Duration::from_millis(1)), 1);
        assert_eq!(epoch_ticks(Duration::from_millis(10)), 1);
        assert_eq!(epoch_ticks(Duration::from_millis(11)), 2);
        assert_eq!(epoch_ticks(Duration::from_secs(1)), 100);
    }
}
