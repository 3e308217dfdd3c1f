//! What a submission produced, as typed values that serialize to the JSON
//! `submit --json` prints and `<data-dir>/jobs/` records (and read back from
//! it): PeerIds and CIDs stay typed all the way to the bytes.

use std::collections::HashMap;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use phase_protocol::job::JobId;
use phase_protocol::serde_helpers::cid as cid_string;
use phase_protocol::{Cid, SignedReceipt};

/// One run of the job, verified.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "ReplicaJson", try_from = "ReplicaJson")]
pub struct ReplicaResult {
    /// The worker that ran it and signed the receipt.
    pub worker: PeerId,
    /// Its verified receipt.
    pub receipt: SignedReceipt,
}

/// A replica as JSON: the receipt (its signature checked as it is read) and,
/// for people and scripts, its CID, result and status beside it.
#[derive(Serialize, Deserialize)]
struct ReplicaJson {
    worker: PeerId,
    #[serde(with = "cid_string")]
    receipt_cid: Cid,
    #[serde(with = "cid_string")]
    result: Cid,
    status: String,
    /// The guest state the run left, for a job with state.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "phase_protocol::serde_helpers::opt_cid"
    )]
    state_after: Option<Cid>,
    receipt: SignedReceipt,
}

impl From<ReplicaResult> for ReplicaJson {
    fn from(r: ReplicaResult) -> Self {
        Self {
            worker: r.worker,
            receipt_cid: r.receipt.cid(),
            result: r.receipt.receipt().result,
            status: r.receipt.receipt().status.to_string(),
            state_after: r.receipt.receipt().state.as_ref().map(|t| t.after),
            receipt: r.receipt,
        }
    }
}

/// A replica whose JSON does not hold together.
#[derive(Debug, thiserror::Error)]
#[error("replica of worker {worker}: {what} does not match its receipt")]
pub struct ReplicaMismatch {
    worker: PeerId,
    what: &'static str,
}

impl TryFrom<ReplicaJson> for ReplicaResult {
    type Error = ReplicaMismatch;
    fn try_from(j: ReplicaJson) -> Result<Self, ReplicaMismatch> {
        let mismatch = |what| ReplicaMismatch {
            worker: j.worker,
            what,
        };
        if j.receipt.receipt().worker != j.worker {
            return Err(mismatch("the worker"));
        }
        if j.receipt.cid() != j.receipt_cid {
            return Err(mismatch("receipt_cid"));
        }
        if j.receipt.receipt().result != j.result {
            return Err(mismatch("result"));
        }
        if j.receipt.receipt().state.as_ref().map(|t| t.after) != j.state_after {
            return Err(mismatch("state_after"));
        }
        Ok(Self {
            worker: j.worker,
            receipt: j.receipt,
        })
    }
}

/// A failed attempt, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The worker.
    pub worker: PeerId,
    /// What went wrong, one line.
    pub error: String,
}

/// Whether replicas agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// All result CIDs (and new states) are equal.
    pub agreed: bool,
    /// The result most replicas produced.
    #[serde(with = "cid_string")]
    pub result: Cid,
    /// The state those replicas left, for a job with state.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "phase_protocol::serde_helpers::opt_cid"
    )]
    pub state_after: Option<Cid>,
    /// Workers whose result or new state differs from it.
    pub dissenters: Vec<PeerId>,
}

/// What a submission produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmitReport {
    /// The job id.
    pub job: JobId,
    /// One verified result per replica.
    pub results: Vec<ReplicaResult>,
    /// Attempts that failed on the way.
    pub failed_attempts: Vec<Attempt>,
    /// With more than one replica: whether they agree.
    pub agreement: Option<Agreement>,
    /// The audit of a deterministic job picked for one
    /// ([`super::SubmitOptions::audit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// The audit of a job: its run on a second, different worker, compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Audit {
    /// The second worker's result and new state are the first one's.
    Passed {
        /// The second worker's verified run.
        auditor: ReplicaResult,
    },
    /// They differ: the two signed receipts (the first in `results`) are
    /// the evidence that one of the workers lied.
    Failed {
        /// The second worker's verified run.
        auditor: ReplicaResult,
    },
    /// No second worker could run it.
    NoAuditor {
        /// Why, one line.
        reason: String,
    },
    /// Rerun on the requester's own node (`audit_local`): status, fuel,
    /// result and new state are what the receipt says.
    LocalPassed,
    /// Rerun on the requester's own node: the receipt says otherwise.
    LocalFailed {
        /// One line per field that differs (`result: the receipt says …,
        /// the rerun gave …`).
        differences: Vec<String>,
    },
}

impl SubmitReport {
    /// Every verified run: the replicas, then an audit's.
    pub fn runs(&self) -> impl Iterator<Item = &ReplicaResult> {
        self.results
            .iter()
            .chain(self.audit.as_ref().and_then(Audit::auditor))
    }
}

impl Audit {
    /// The second worker's run, if there was one.
    #[must_use]
    pub fn auditor(&self) -> Option<&ReplicaResult> {
        match self {
            Self::Passed { auditor } | Self::Failed { auditor } => Some(auditor),
            Self::NoAuditor { .. } | Self::LocalPassed | Self::LocalFailed { .. } => None,
        }
    }

    /// The outcome the ledger records, if the job was audited.
    #[must_use]
    pub fn outcome(&self) -> Option<phase_protocol::ledger::AuditOutcome> {
        use phase_protocol::ledger::AuditOutcome;
        match self {
            Self::Passed { .. } | Self::LocalPassed => Some(AuditOutcome::Passed),
            Self::Failed { .. } | Self::LocalFailed { .. } => Some(AuditOutcome::Failed),
            Self::NoAuditor { .. } => None,
        }
    }

    /// Compares `first` with the `auditor`'s run of the same job.
    #[must_use]
    pub fn of(first: &ReplicaResult, auditor: ReplicaResult) -> Self {
        if agreement(&[first.clone(), auditor.clone()]).agreed {
            Self::Passed { auditor }
        } else {
            Self::Failed { auditor }
        }
    }
}

/// Compares the replicas' result CIDs and the states they left.
///
/// # Panics
/// When `results` is empty.
#[must_use]
pub fn agreement(results: &[ReplicaResult]) -> Agreement {
    let outcome = |r: &ReplicaResult| {
        let receipt = r.receipt.receipt();
        (receipt.result, receipt.state.as_ref().map(|t| t.after))
    };
    let mut counts: HashMap<(Cid, Option<Cid>), usize> = HashMap::new();
    for r in results {
        *counts.entry(outcome(r)).or_default() += 1;
    }
    let majority = counts
        .iter()
        .max_by_key(|((cid, state), n)| {
            (
                **n,
                std::cmp::Reverse((cid.to_string(), state.map(|s| s.to_string()))),
            )
        })
        .map(|(pair, _)| *pair)
        .expect("at least one replica");
    let dissenters: Vec<PeerId> = results
        .iter()
        .filter(|r| outcome(r) != majority)
        .map(|r| r.worker)
        .collect();
    Agreement {
        agreed: dissenters.is_empty(),
        result: majority.0,
        state_after: majority.1,
        dissenters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requester::verify::tests::receipt;
    use phase_protocol::cid::raw_cid;
    use phase_protocol::{JobSpec, Keypair};

    #[test]
    fn replicas_that_differ_are_named() {
        let spec = JobSpec::new(raw_cid(b"module"));
        let me = PeerId::random();
        let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
        let result = |k: &Keypair, r: &[u8]| ReplicaResult {
            worker: k.public().to_peer_id(),
            receipt: receipt(k, &spec, me, raw_cid(r)),
        };
        let same: Vec<_> = keys.iter().map(|k| result(k, b"x")).collect();
        assert!(agreement(&same).agreed);
        let odd = vec![
            result(&keys[0], b"x"),
            result(&keys[1], b"y"),
            result(&keys[2], b"x"),
        ];
        let a = agreement(&odd);
        assert!(!a.agreed);
        assert_eq!(a.result, raw_cid(b"x"));
        assert_eq!(a.dissenters, vec![keys[1].public().to_peer_id()]);
    }

    #[test]
    fn a_report_round_trips_through_json_and_a_forged_field_is_refused() {
        let spec = JobSpec::new(raw_cid(b"module"));
        let key = Keypair::generate_ed25519();
        let worker = key.public().to_peer_id();
        let results = vec![ReplicaResult {
            worker,
            receipt: receipt(&key, &spec, PeerId::random(), raw_cid(b"x")),
        }];
        let report = SubmitReport {
            job: spec.id(),
            agreement: Some(agreement(&results)),
            audit: None,
            results,
            failed_attempts: vec![Attempt {
                worker: PeerId::random(),
                error: "busy".into(),
            }],
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["job"], spec.id().to_string());
        assert_eq!(json["results"][0]["worker"], worker.to_string());
        assert_eq!(json["results"][0]["result"], raw_cid(b"x").to_string());
        assert_eq!(json["results"][0]["status"], "exited with code 0");
        let back: SubmitReport = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, report);
        let mut forged = json;
        forged["results"][0]["result"] = raw_cid(b"y").to_string().into();
        let err = serde_json::from_value::<SubmitReport>(forged).unwrap_err();
        assert!(err.to_string().contains("result does not match"), "{err}");
    }
}
