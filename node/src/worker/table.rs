//! The worker's job table: each job's state and receipt, and retention
//! (which finished jobs are kept; a forgotten job's record and pins are
//! dropped from the state database by the actor). Owned by the worker's
//! actor alone; plain data, no I/O.

use std::collections::{HashMap, VecDeque};

use phase_protocol::SignedReceipt;
use phase_protocol::job::{JobId, JobState};

/// A job the worker knows.
#[derive(Debug)]
struct Entry {
    state: JobState,
    receipt: Option<SignedReceipt>,
}

/// States and receipts of the jobs admitted here, and the last `keep`
/// finished ones.
#[derive(Debug)]
pub(super) struct JobTable {
    jobs: HashMap<JobId, Entry>,
    finished: VecDeque<JobId>,
    /// Finished jobs kept.
    keep: usize,
}

impl JobTable {
    /// An empty table that keeps `keep` finished jobs.
    pub(super) fn new(keep: usize) -> Self {
        Self {
            jobs: HashMap::new(),
            finished: VecDeque::new(),
            keep,
        }
    }

    pub(super) fn contains(&self, id: &JobId) -> bool {
        self.jobs.contains_key(id)
    }

    /// Records a newly admitted job as queued.
    pub(super) fn insert(&mut self, id: JobId) {
        self.jobs.insert(
            id,
            Entry {
                state: JobState::Queued,
                receipt: None,
            },
        );
    }

    /// Forgets a job that never finished (abandoned at shutdown).
    pub(super) fn forget(&mut self, id: &JobId) {
        self.jobs.remove(id);
    }

    pub(super) fn state(&self, id: &JobId) -> Option<&JobState> {
        self.jobs.get(id).map(|e| &e.state)
    }

    pub(super) fn receipt(&self, id: &JobId) -> Option<&SignedReceipt> {
        self.jobs.get(id).and_then(|e| e.receipt.as_ref())
    }

    /// Moves a job that is still under way to `state` (fetching, running);
    /// returns whether it did. A finished or unknown job is left alone (a
    /// late progress report must not undo its end).
    pub(super) fn set_state(&mut self, id: &JobId, state: JobState) -> bool {
        match self.jobs.get_mut(id) {
            Some(entry) if !is_final(&entry.state) => {
                entry.state = state;
                true
            }
            _ => false,
        }
    }

    /// Gives a job that has just run its receipt, readable at once: the
    /// receipt goes to the requester while the job's end is being
    /// committed, and a requester that asks for it again must find it. The
    /// state stays as it is until [`JobTable::finish`].
    pub(super) fn set_receipt(&mut self, id: &JobId, receipt: SignedReceipt) {
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.receipt = Some(receipt);
        }
    }

    /// Records a finished job (with its receipt if a run happened) and
    /// forgets the oldest past `keep`. Returns the jobs forgotten: their
    /// records and pins go from the state database (a result another kept
    /// job, or a user, holds stays pinned there).
    pub(super) fn finish(
        &mut self,
        id: JobId,
        state: JobState,
        receipt: Option<SignedReceipt>,
    ) -> Vec<JobId> {
        let entry = Entry { state, receipt };
        self.jobs.insert(id, entry);
        self.finished.push_back(id);
        let mut forgotten = Vec::new();
        while self.finished.len() > self.keep {
            let Some(old) = self.finished.pop_front() else {
                break;
            };
            self.jobs.remove(&old);
            forgotten.push(old);
        }
        forgotten
    }
}

fn is_final(state: &JobState) -> bool {
    matches!(
        state,
        JobState::Done { .. }
            | JobState::Failed { .. }
            | JobState::ModuleTooComplex { .. }
            | JobState::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::runtime_version;
    use phase_protocol::{JobSpec, Keypair, PeerId, Receipt, Status};

    fn receipt(key: &Keypair, nonce: u64, result: &[u8]) -> (JobId, SignedReceipt) {
        let mut spec = JobSpec::new(phase_protocol::cid::raw_cid(b"m"));
        spec.nonce = nonce;
        let receipt = Receipt {
            job: spec.id(),
            module: spec.module,
            stdin: None,
            input: None,
            result: phase_protocol::cid::raw_cid(result),
            status: Status::Exited { code: 0 },
            fuel_consumed: 1,
            wall_time_ms: 1,
            compile_time_ms: 0,
            peak_memory: 0,
            worker: key.public().to_peer_id(),
            requester: PeerId::random(),
            started_at_ms: 0,
            ended_at_ms: 1,
            runtime: runtime_version(),
            state: None,
            network: None,
        };
        (spec.id(), SignedReceipt::sign(receipt, key).unwrap())
    }

    #[test]
    fn old_jobs_are_forgotten_past_keep_oldest_first() {
        let key = Keypair::generate_ed25519();
        let mut table = JobTable::new(2);
        let mut finish = |nonce: u64, result: &[u8]| {
            let (id, r) = receipt(&key, nonce, result);
            table.insert(id);
            let state = JobState::Done {
                status: Status::Exited { code: 0 },
                receipt: r.cid(),
            };
            (id, table.finish(id, state, Some(r)))
        };
        let (j1, forgotten) = finish(1, b"x");
        assert!(forgotten.is_empty());
        let (j2, forgotten) = finish(2, b"x");
        assert!(forgotten.is_empty());
        let (_, forgotten) = finish(3, b"y");
        assert_eq!(forgotten, vec![j1]);
        let (_, forgotten) = finish(4, b"z");
        assert_eq!(forgotten, vec![j2]);
        assert_eq!(table.jobs.len(), 2);
        assert!(table.state(&j1).is_none() && table.receipt(&j2).is_none());
    }

    #[test]
    fn a_receipt_is_readable_before_the_jobs_end_is_committed() {
        let mut table = JobTable::new(1);
        let (id, r) = receipt(&Keypair::generate_ed25519(), 1, b"x");
        table.insert(id);
        assert!(table.set_state(&id, JobState::Running));
        table.set_receipt(&id, r.clone());
        assert_eq!(table.receipt(&id), Some(&r));
        assert_eq!(table.state(&id), Some(&JobState::Running));
        let (other, r2) = receipt(&Keypair::generate_ed25519(), 2, b"y");
        table.set_receipt(&other, r2);
        assert!(
            table.receipt(&other).is_none(),
            "an unknown job stays unknown"
        );
    }

    #[test]
    fn a_failed_job_is_kept_without_pins() {
        let mut table = JobTable::new(1);
        let (id, _) = receipt(&Keypair::generate_ed25519(), 1, b"x");
        table.insert(id);
        let failed = JobState::Failed {
            message: "no".into(),
        };
        assert!(table.set_state(&id, JobState::Running));
        assert!(table.finish(id, failed.clone(), None).is_empty());
        assert!(!table.set_state(&id, JobState::Running), "a late report");
        assert_eq!(table.state(&id), Some(&failed));
        assert!(table.receipt(&id).is_none());
    }
}
