//! What a run produced.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use phase_protocol::Status;

/// The result of one run: how it ended, what it printed, what it consumed.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// How the run ended.
    pub status: Status,
    /// Captured stdout (at most the output limit).
    #[serde(serialize_with = "lossy_utf8")]
    pub stdout: Bytes,
    /// Captured stderr (at most the output limit).
    #[serde(serialize_with = "lossy_utf8")]
    pub stderr: Bytes,
    /// Fuel consumed: the deterministic instruction count.
    pub fuel_consumed: u64,
    /// Wall-clock time of instantiation plus execution.
    #[serde(rename = "wall_time_ms", serialize_with = "millis")]
    pub wall_time: Duration,
    /// Largest total linear memory the guest held, in bytes.
    pub peak_memory_bytes: u64,
    /// What the run did to the guest state it was given
    /// ([`super::RunSpec::state`]).
    #[serde(flatten)]
    pub state: Option<super::Effects>,
    /// What it did over the network, if it had access
    /// ([`super::RunSpec::net`] not empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<phase_protocol::NetworkUse>,
}

fn lossy_utf8<S: serde::Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}
