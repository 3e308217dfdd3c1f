//! Job limits: what a run may consume, with defaults and hard upper bounds.
//!
//! The job spec itself (module, inputs, args, env) joins this module with the
//! job protocol; the limits come first because the executor enforces them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::ByteSize;

/// Default fuel: about ten billion wasm instructions, minutes of work.
pub const DEFAULT_FUEL: u64 = 10_000_000_000;
/// Upper bound on fuel a job may ask for (about a day of one core).
pub const MAX_FUEL: u64 = 10_000_000_000_000;
/// Default linear memory cap: enough for most guests, small enough that a
/// 2-core volunteer can run one job per core.
pub const DEFAULT_MEMORY: ByteSize = ByteSize(256 << 20);
/// Upper bound on memory: wasm32's 4 GiB address space.
pub const MAX_MEMORY: ByteSize = ByteSize(4 << 30);
/// Default wall-clock limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound on wall time of one job.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Default cap on each of stdout and stderr, and on the files under `/output`.
pub const DEFAULT_MAX_OUTPUT: ByteSize = ByteSize(16 << 20);
/// Upper bound on output: results travel back as blocks and must stay movable.
pub const MAX_OUTPUT: ByteSize = ByteSize(1 << 30);
/// Default (and maximum) elements of any one table: guards against a guest
/// allocating huge tables, which are host memory outside linear memory.
pub const DEFAULT_TABLE_ELEMENTS: u32 = 100_000;

/// What one run may consume. Every field has a default and an upper bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel: the deterministic instruction budget.
    pub fuel: u64,
    /// Bytes of linear memory, summed over the instance's memories.
    pub memory: ByteSize,
    /// Wall-clock time.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Bytes of stdout and of stderr each, and of the `/output` files.
    pub max_output: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            memory: DEFAULT_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

/// A limit above its upper bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Fuel above [`MAX_FUEL`].
    #[error("fuel {0} is above the maximum of {MAX_FUEL}")]
    Fuel(u64),
    /// Memory above [`MAX_MEMORY`].
    #[error("memory {0} is above the maximum of {MAX_MEMORY}")]
    Memory(ByteSize),
    /// Timeout above [`MAX_TIMEOUT`], or zero.
    #[error("timeout of {0:?} is outside 1ms..=24h")]
    Timeout(Duration),
    /// Output above [`MAX_OUTPUT`].
    #[error("output limit {0} is above the maximum of {MAX_OUTPUT}")]
    Output(ByteSize),
}

impl Limits {
    /// Checks every limit against its upper bound.
    ///
    /// # Errors
    /// The first limit that is out of range.
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.fuel > MAX_FUEL {
            return Err(LimitError::Fuel(self.fuel));
        }
        if self.memory > MAX_MEMORY {
            return Err(LimitError::Memory(self.memory));
        }
        if self.timeout > MAX_TIMEOUT || self.timeout < Duration::from_millis(1) {
            return Err(LimitError::Timeout(self.timeout));
        }
        if self.max_output > MAX_OUTPUT {
            return Err(LimitError::Output(self.max_output));
        }
        Ok(())
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_within_bounds() {
        Limits::default().validate().unwrap();
    }

    #[test]
    fn absurd_limits_are_refused() {
        let l = Limits {
            fuel: u64::MAX,
            ..Limits::default()
        };
        assert_eq!(l.validate(), Err(LimitError::Fuel(u64::MAX)));
        let l = Limits {
            timeout: Duration::ZERO,
            ..Limits::default()
        };
        assert!(matches!(l.validate(), Err(LimitError::Timeout(_))));
    }
}
