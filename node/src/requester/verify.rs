//! Checking a receipt against what was submitted: signature, signer = the
//! worker it was submitted to, and that it is about this job, this
//! requester and these inputs.

use libp2p::PeerId;

use phase_protocol::job::JobId;
use phase_protocol::{JobSpec, SignedReceipt, VerifyError};

/// Why a receipt is not the one the requester asked for.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Its signature does not hold, or another peer signed it.
    #[error(transparent)]
    Signature(#[from] VerifyError),
    /// It is about another job (the one it names).
    #[error("it is about job {0}, not the one submitted")]
    OtherJob(JobId),
    /// It names another requester (the one it names).
    #[error("it names requester {0}, not this node")]
    OtherRequester(PeerId),
    /// Its module or inputs are not the job's.
    #[error("its module or inputs differ from the job's")]
    OtherInputs,
}

/// Checks `receipt` from `worker` for `spec`, submitted by `me`.
///
/// # Errors
/// The first mismatch.
pub fn check_receipt(
    receipt: &SignedReceipt,
    worker: PeerId,
    spec: &JobSpec,
    me: PeerId,
) -> Result<(), ReceiptError> {
    let r = receipt.verify_signer(&worker)?;
    if r.job != spec.id() {
        return Err(ReceiptError::OtherJob(r.job));
    }
    if r.requester != me {
        return Err(ReceiptError::OtherRequester(r.requester));
    }
    if r.module != spec.module || r.stdin != spec.stdin || r.input != spec.input {
        return Err(ReceiptError::OtherInputs);
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use phase_protocol::cid::raw_cid;
    use phase_protocol::{Cid, Keypair, Receipt, Status};

    pub(in crate::requester) fn receipt(
        worker: &Keypair,
        spec: &JobSpec,
        requester: PeerId,
        result: Cid,
    ) -> SignedReceipt {
        let receipt = Receipt {
            job: spec.id(),
            module: spec.module,
            stdin: None,
            input: None,
            result,
            status: Status::Exited { code: 0 },
            fuel_consumed: 1,
            wall_time_ms: 1,
            compile_time_ms: 0,
            peak_memory: 0,
            worker: worker.public().to_peer_id(),
            requester,
            started_at_ms: 0,
            ended_at_ms: 1,
            runtime: "test".into(),
            state: None,
            network: None,
        };
        SignedReceipt::sign(receipt, worker).unwrap()
    }

    #[test]
    fn a_receipt_signed_by_another_worker_is_rejected() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (pa, pb) = (a.public().to_peer_id(), b.public().to_peer_id());
        let me = PeerId::random();
        let spec = JobSpec::new(raw_cid(b"module"));
        let good = receipt(&a, &spec, me, raw_cid(b"r"));
        assert_eq!(check_receipt(&good, pa, &spec, me), Ok(()));
        let by_b = receipt(&b, &spec, me, raw_cid(b"r"));
        assert_eq!(
            check_receipt(&by_b, pa, &spec, me),
            Err(ReceiptError::Signature(VerifyError::WrongSigner(pb)))
        );
        let other = PeerId::random();
        let other_requester = receipt(&a, &spec, other, raw_cid(b"r"));
        assert_eq!(
            check_receipt(&other_requester, pa, &spec, me),
            Err(ReceiptError::OtherRequester(other))
        );
        let mut other_job = spec.clone();
        other_job.nonce = 7;
        assert!(matches!(
            check_receipt(&good, pa, &other_job, me),
            Err(ReceiptError::OtherJob(_))
        ));
        let mut other_stdin = spec.clone();
        other_stdin.stdin = Some(raw_cid(b"stdin"));
        let with_stdin = receipt(&a, &other_stdin, me, raw_cid(b"r"));
        assert!(matches!(
            check_receipt(&with_stdin, pa, &other_stdin, me),
            Err(ReceiptError::OtherInputs)
        ));
    }
}
