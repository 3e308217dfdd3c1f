//! How a run ended. The signed receipt that carries it joins this module with
//! the job protocol.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a run ended: the one field a receipt's reader looks at first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    /// The guest exited (returned from `_start`/`run`, or called `exit`).
    Exited {
        /// Its exit code; 0 is success.
        code: i32,
    },
    /// The guest trapped: `unreachable`, out-of-bounds access, stack overflow…
    Trapped {
        /// What wasmtime said, one line.
        message: String,
    },
    /// The fuel budget ran out.
    OutOfFuel,
    /// The wall-clock limit passed.
    TimedOut,
    /// The guest tried to grow memory (or a table) past its limit and then failed.
    MemoryLimit,
    /// The guest wrote more than the output cap to stdout, stderr or `/output`.
    OutputLimit,
}

impl Status {
    /// Whether the guest exited with code 0.
    #[must_use]
    pub fn is_success(&self) -> bool {
        matches!(self, Status::Exited { code: 0 })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Exited { code } => write!(f, "exited with code {code}"),
            Status::Trapped { message } => write!(f, "trapped: {message}"),
            Status::OutOfFuel => f.write_str("ran out of fuel"),
            Status::TimedOut => f.write_str("timed out"),
            Status::MemoryLimit => f.write_str("memory limit reached"),
            Status::OutputLimit => f.write_str("output limit reached"),
        }
    }
}
