//! Re-executing a receipt's job here (`phase-node verify --rerun`): the
//! same spec, module, stdin, input and state, read from the local store,
//! run as a worker runs it (the same [`RunSpec`](crate::executor::RunSpec),
//! the same result package), and compared with what the receipt claims. A
//! deterministic job gives the same status, fuel, result CID and new state
//! on every honest worker, so any difference is evidence against the
//! receipt's signer.

use std::path::Path;

use serde::Serialize;

use phase_protocol::job::JobId;
use phase_protocol::{Cid, DecodeError, JobSpec, Message, Receipt, Status};

use super::pipeline::{self, JobError};
use crate::executor::{
    DEFAULT_MAX_STATE, Executor, MAX_MODULE_SIZE, NetAccess, SharedSource, StateInput,
};
use crate::store::{BlockStore, StoreError, untrusted};

/// What a rerun gave, and where it differs from the receipt.
#[derive(Clone, Debug, Serialize)]
pub struct Rerun {
    /// The job.
    pub job: JobId,
    /// How the rerun ended.
    pub status: Status,
    /// Fuel it consumed.
    pub fuel_consumed: u64,
    /// Its result package.
    #[serde(serialize_with = "as_string")]
    pub result: Cid,
    /// The state it left, for a job with state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_after: Option<String>,
    /// Every field in which the receipt says otherwise; empty: it holds.
    pub differences: Vec<Difference>,
}

/// One field the receipt and the rerun disagree on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The receipt's field: `status`, `fuel_consumed`, `result`,
    /// `state_after`, `log` or `host_fuel`.
    pub field: &'static str,
    /// What the receipt says.
    pub receipt: String,
    /// What the rerun gave.
    pub rerun: String,
}

fn as_string<S: serde::Serializer>(cid: &Cid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(cid)
}

/// Why a receipt could not be rerun.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    /// An input is not in the store.
    #[error("the job's {what} {cid} is not in the local store")]
    Missing {
        /// Which input: `job spec`, `module`, `stdin`, `input` or `state`.
        what: &'static str,
        /// Its root.
        cid: Cid,
    },
    /// The job spec's block is not a job spec.
    #[error("the job spec {0} does not decode")]
    Spec(Cid, #[source] DecodeError),
    /// A job whose runs may differ.
    #[error(
        "job {0} is not deterministic: another run need not give the same result, so a rerun proves nothing"
    )]
    NotDeterministic(JobId),
    /// The store failed.
    #[error("cannot read the store")]
    Store(#[from] StoreError),
    /// Reading the inputs, running or packaging failed.
    #[error("cannot rerun the job")]
    Run(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<JobError> for RerunError {
    fn from(e: JobError) -> Self {
        Self::Run(Box::new(e))
    }
}

/// Reruns `receipt`'s job from the local store, in a folder under `work`
/// (removed after), and compares. Its result package stays in the store
/// (unpinned: `gc` takes it).
///
/// # Errors
/// An input missing, a job that is not deterministic, or a failure to
/// read, run or package; a rerun that merely disagrees is an `Ok` with
/// [`Rerun::differences`].
pub async fn rerun(
    store: &BlockStore,
    executor: &Executor,
    receipt: &Receipt,
    work: &Path,
) -> Result<Rerun, RerunError> {
    let id = receipt.job;
    let spec_bytes = store.get(&id.0).await?.ok_or(RerunError::Missing {
        what: "job spec",
        cid: id.0,
    })?;
    let spec = JobSpec::decode(&spec_bytes).map_err(|e| RerunError::Spec(id.0, e))?;
    if !spec.deterministic {
        return Err(RerunError::NotDeterministic(id));
    }
    for (what, cid) in [
        ("module", Some(spec.module)),
        ("stdin", spec.stdin),
        ("input", spec.input),
        ("state", spec.state),
    ] {
        if let Some(cid) = cid
            && !store.has(&cid).await?
        {
            return Err(RerunError::Missing { what, cid });
        }
    }
    let bytes = untrusted::cat_to_vec_capped(store, spec.module, MAX_MODULE_SIZE)
        .await
        .map_err(JobError::from)?;
    let module = executor
        .load(bytes::Bytes::from(bytes))
        .await
        .map_err(|e| JobError::Module(spec.module, Box::new(e)))?;
    pipeline::check_kind(&spec, &module)?;
    let stdin = pipeline::read_stdin(store, &spec).await?;
    let dir = tempfile::tempdir_in(work).map_err(|e| RerunError::Run(Box::new(e)))?;
    // Bounded as a worker with the default config bounds it: a DAG may
    // link the same blocks many times.
    let max_input = crate::config::WorkerConfig::default().max_input.0;
    let input_dir = pipeline::export_input(store, &spec, dir.path(), max_input).await?;
    let output_dir = dir.path().join("output");
    tokio::fs::create_dir(&output_dir)
        .await
        .map_err(|e| RerunError::Run(Box::new(e)))?;
    let caller = receipt.requester.to_bytes();
    let state = match spec.state {
        Some(root) => StateInput {
            root,
            source: SharedSource::new(store.clone()),
            caller,
            max_bytes: DEFAULT_MAX_STATE,
        },
        None => StateInput::empty(caller, DEFAULT_MAX_STATE),
    };
    let run = pipeline::run_spec(
        &spec,
        stdin,
        input_dir,
        &output_dir,
        state,
        NetAccess::default(),
    );
    let outcome = executor.run(&module, run).await.map_err(JobError::Exec)?;
    let result =
        pipeline::package_outcome(store, id, &outcome, &output_dir, spec.limits.max_output.0)
            .await?;
    // The folder may hold many files: removed off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(dir)).await;

    let mut differences = Vec::new();
    let mut differ = |field: &'static str, claimed: String, got: String| {
        if claimed != got {
            differences.push(Difference {
                field,
                receipt: claimed,
                rerun: got,
            });
        }
    };
    differ(
        "status",
        receipt.status.to_string(),
        outcome.status.to_string(),
    );
    differ(
        "fuel_consumed",
        receipt.fuel_consumed.to_string(),
        outcome.fuel_consumed.to_string(),
    );
    differ("result", receipt.result.to_string(), result.cid.to_string());
    // What the worker's receipt would say of this run's state.
    let got = outcome
        .state
        .as_ref()
        .and_then(|e| pipeline::transition(&spec, e))
        .map(|(t, _)| t);
    let (claimed, got) = (receipt.state.as_ref(), got.as_ref());
    let show = |c: Option<Cid>| c.map_or_else(|| "none".to_owned(), |c| c.to_string());
    differ(
        "state_after",
        show(claimed.map(|t| t.after)),
        show(got.map(|t| t.after)),
    );
    differ(
        "log",
        show(claimed.and_then(|t| t.log)),
        show(got.and_then(|t| t.log)),
    );
    differ(
        "host_fuel",
        claimed.map_or(0, |t| t.host_fuel).to_string(),
        got.map_or(0, |t| t.host_fuel).to_string(),
    );
    Ok(Rerun {
        job: id,
        status: outcome.status,
        fuel_consumed: outcome.fuel_consumed,
        result: result.cid,
        state_after: got.map(|t| t.after.to_string()),
        differences,
    })
}
