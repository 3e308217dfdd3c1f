//! `/output` measured while the guest runs, not only after.
//!
//! A run whose one writable folder is `/output` gets an epoch callback at
//! every tick ([`EPOCH_TICK`], 10 ms) instead of one deadline at its
//! timeout. The callback ends the run at the timeout, as the deadline did,
//! and in between measures `/output` (the apparent size of its files, so a
//! sparse file counts at its full length); once it is over `max_output`
//! the run ends `output_limit`.
//!
//! So what a guest can put on the volunteer's disk is `max_output` plus
//! what it writes between two measurements: one tick of writing, and at
//! most one WASI call's worth, which is bounded by the guest's memory
//! limit (a write's buffer is in its memory). Measuring a folder of many
//! files takes longer than a tick; the next measurement then waits ten
//! times as long as the last one took, so the guest's run is never mostly
//! measuring.
//!
//! wasmtime-wasi offers no hook inside its file writes (its preview 1
//! functions cannot be wrapped: they read the calling instance's memory),
//! which is why this measures rather than refuses each write.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::io::OutputLimitHit;
use super::limits::{EPOCH_TICK, epoch_ticks};
use super::wasi::dir_over;

/// Watches `dir` against `limit` and the run's `timeout` in `store`.
pub(super) fn watch<T: 'static>(store: &mut Store<T>, dir: PathBuf, limit: u64, timeout: Duration) {
    let ticks = epoch_ticks(timeout);
    let mut elapsed = 0u64;
    let mut next_measure = Instant::now();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        // Ticks of this run: the deadline was one tick away.
        elapsed += 1;
        if elapsed >= ticks {
            return Err(wasmtime::Trap::Interrupt.into());
        }
        let now = Instant::now();
        if now >= next_measure {
            let over = dir_over(&dir, limit, u64::MAX).is_some();
            let took = now.elapsed();
            next_measure = Instant::now() + (took * 10).max(EPOCH_TICK);
            if over {
                return Err(wasmtime::Error::new(OutputLimitHit {
                    limit: usize::try_from(limit).unwrap_or(usize::MAX),
                }));
            }
        }
        Ok(UpdateDeadline::Continue(1))
    });
}
