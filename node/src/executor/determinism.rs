//! Deterministic mode: virtual clocks and seeded randomness.
//!
//! Two honest workers running the same job must see the same world. Clocks
//! therefore do not read the host: every reading advances a virtual clock by
//! a fixed step, so the values depend only on how often the guest asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Virtual time that passes with each clock reading.
const STEP: Duration = Duration::from_millis(1);
/// Wall-clock time the virtual clock starts at: 2025-01-01T00:00:00Z.
const WALL_START: Duration = Duration::from_secs(1_735_689_600);

/// A clock that advances by [`STEP`] on every reading, shared by the wall and
/// monotonic views of one run.
#[derive(Clone, Debug, Default)]
struct VirtualClock {
    readings: Arc<AtomicU64>,
}

impl VirtualClock {
    fn tick(&self) -> Duration {
        let n = self.readings.fetch_add(1, Ordering::Relaxed);
        STEP.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        STEP
    }

    fn now(&self) -> Duration {
        WALL_START + self.tick()
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        u64::try_from(STEP.as_nanos()).unwrap_or(u64::MAX)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.tick().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Makes the WASI world of a run a function of `seed` alone.
pub(crate) fn make_deterministic(builder: &mut WasiCtxBuilder, seed: [u8; 32]) {
    let clock = VirtualClock::default();
    let mut insecure_seed = seed;
    insecure_seed[0] ^= 0x5a;
    let seed_u128 = u128::from_le_bytes(seed[..16].try_into().expect("16 of 32 bytes"));
    builder
        .wall_clock(clock.clone())
        .monotonic_clock(clock)
        .secure_random(StdRng::from_seed(seed))
        .insecure_random(StdRng::from_seed(insecure_seed))
        .insecure_random_seed(seed_u128);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_advances_per_reading_only() {
        let c = VirtualClock::default();
        assert_eq!(HostMonotonicClock::now(&c), 0);
        assert_eq!(HostMonotonicClock::now(&c), 1_000_000);
        assert_eq!(HostWallClock::now(&c), WALL_START + 2 * STEP);
    }
}
