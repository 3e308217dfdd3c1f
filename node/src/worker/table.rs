//! The worker's job table: each job's state and receipt, and retention
//! (which finished jobs are kept, and which blocks stop being pinned when
//! one is forgotten). Owned by the worker's actor alone; plain data, no I/O.

use std::collections::{HashMap, VecDeque};

use phase_protocol::job::{JobId, JobState};
use phase_protocol::{Cid, SignedReceipt};

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
    /// Kept jobs per result CID: a result stays pinned while one of them is
    /// kept (deterministic jobs share results).
    results: HashMap<Cid, usize>,
    /// Finished jobs kept.
    keep: usize,
}

impl JobTable {
    /// An empty table that keeps `keep` finished jobs.
    pub(super) fn new(keep: usize) -> Self {
        Self {
            jobs: HashMap::new(),
            finished: VecDeque::new(),
            results: HashMap::new(),
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

    /// Records a finished job (with its receipt if a run happened) and
    /// forgets the oldest past `keep`. Returns the blocks no kept job needs
    /// pinned any more: the forgotten jobs' receipts, and their results
    /// unless a kept job has the same.
    pub(super) fn finish(
        &mut self,
        id: JobId,
        state: JobState,
        receipt: Option<SignedReceipt>,
    ) -> Vec<Cid> {
        if let Some(r) = &receipt {
            *self.results.entry(r.receipt().result).or_default() += 1;
        }
        let entry = Entry { state, receipt };
        self.jobs.insert(id, entry);
        self.finished.push_back(id);
        let mut unpin = Vec::new();
        while self.finished.len() > self.keep {
            let Some(old) = self.finished.pop_front() else {
                break;
            };
            let Some(receipt) = self.jobs.remove(&old).and_then(|e| e.receipt) else {
                continue;
            };
            unpin.push(receipt.cid());
            let result = receipt.receipt().result;
            if let Some(n) = self.results.get_mut(&result) {
                *n -= 1;
                if *n == 0 {
                    self.results.remove(&result);
                    unpin.push(result);
                }
            }
        }
        unpin
    }
}

fn is_final(state: &JobState) -> bool {
    matches!(state, JobState::Done { .. } | JobState::Failed { .. })
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
            peak_memory: 0,
            worker: key.public().to_peer_id(),
            requester: PeerId::random(),
            started_at_ms: 0,
            ended_at_ms: 1,
            runtime: runtime_version(),
        };
        (spec.id(), SignedReceipt::sign(receipt, key).unwrap())
    }

    #[test]
    fn old_jobs_are_forgotten_and_unpinned_unless_a_kept_job_shares_the_result() {
        let key = Keypair::generate_ed25519();
        let mut table = JobTable::new(2);
        let mut finish = |nonce: u64, result: &[u8]| {
            let (id, r) = receipt(&key, nonce, result);
            table.insert(id);
            let state = JobState::Done {
                status: Status::Exited { code: 0 },
                receipt: r.cid(),
            };
            (r.cid(), table.finish(id, state, Some(r)))
        };
        let x = phase_protocol::cid::raw_cid(b"x");
        let (r1, unpin) = finish(1, b"x");
        assert!(unpin.is_empty());
        let (r2, unpin) = finish(2, b"x");
        assert!(unpin.is_empty());
        // Job 1 goes; its result is job 2's too, so only its receipt is unpinned.
        let (_, unpin) = finish(3, b"y");
        assert_eq!(unpin, vec![r1]);
        // Job 2 goes, and with it the last job that had result x.
        let (_, unpin) = finish(4, b"z");
        assert_eq!(unpin, vec![r2, x]);
        assert_eq!(table.jobs.len(), 2);
        assert!(!table.results.contains_key(&x));
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
