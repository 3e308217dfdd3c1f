//! `phase-node pause`, `resume` and `worker`: a volunteer's say over the
//! worker of the daemon running on the data dir.

use std::process::ExitCode;

use clap::Args;

use phase_protocol::ByteSize;

use super::GlobalArgs;
use crate::worker::{Preferences, Standing};

/// Pause this node's worker: the jobs it has (running and queued) finish,
/// new ones are refused as `paused`, and requesters see it paused. Until
/// `phase-node resume` or the daemon's restart (`start --paused` or the
/// config's `worker.paused` start it paused).
#[derive(Debug, Args)]
pub(super) struct PauseArgs {
    /// Print where the worker stands as JSON (`GET /api/v1/worker`).
    #[arg(long)]
    json: bool,
}

/// Resume this node's worker after `phase-node pause`: it takes jobs again.
#[derive(Debug, Args)]
pub(super) struct ResumeArgs {
    /// Print where the worker stands as JSON (`GET /api/v1/worker`).
    #[arg(long)]
    json: bool,
}

/// Where this node's worker stands (paused or not, slots, running and
/// queued jobs, memory), and with flags a change of its preferences while
/// it runs (the config file keeps the ones it starts with).
#[derive(Debug, Args)]
pub(super) struct WorkerArgs {
    /// Run this many jobs at once from now on (at least 1; running jobs
    /// over it finish).
    #[arg(long, value_name = "N")]
    slots: Option<u32>,
    /// Cap the memory running jobs may ask for together, e.g. 2GiB; 0: no
    /// cap beyond slots × max_memory.
    #[arg(long, value_name = "SIZE")]
    max_memory_total: Option<ByteSize>,
    /// Print JSON (`GET /api/v1/worker`).
    #[arg(long)]
    json: bool,
}

impl PauseArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        post(global, "/api/v1/worker/pause", self.json).await
    }
}

impl ResumeArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        post(global, "/api/v1/worker/resume", self.json).await
    }
}

/// `POST path` to the daemon; where its worker stands then.
async fn post(global: &GlobalArgs, path: &str, json: bool) -> anyhow::Result<ExitCode> {
    let standing: Standing = global.daemon().await?.post(path, None::<&()>).await?;
    show(&standing, json)
}

impl WorkerArgs {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        if self.slots == Some(0) {
            anyhow::bail!("--slots must be at least 1");
        }
        let daemon = global.daemon().await?;
        let standing: Standing = if self.slots.is_none() && self.max_memory_total.is_none() {
            daemon.get("/api/v1/worker").await?
        } else {
            let change = Preferences {
                slots: self.slots,
                max_memory_total: self.max_memory_total,
                paused: None,
            };
            daemon.patch("/api/v1/worker", &change).await?
        };
        show(&standing, self.json)
    }
}

fn show(standing: &Standing, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(standing)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", describe(standing));
    Ok(ExitCode::SUCCESS)
}

/// Where the worker stands, for a person.
fn describe(s: &Standing) -> String {
    let state = if s.paused {
        "paused: the jobs it has finish, new ones are refused (phase-node resume)"
    } else {
        "taking jobs"
    };
    let cap = if s.max_memory_total.0 == 0 {
        "no cap on running jobs together".to_owned()
    } else {
        format!("at most {} for running jobs together", s.max_memory_total)
    };
    format!(
        "worker:  {state}\nslots:   {} ({} running, {} queued)\nmemory:  {} asked by running jobs; {cap}; {} at most per job\n",
        s.slots, s.running, s.queued, s.memory_running, s.max_memory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_worker_says_how_to_resume() {
        let standing = Standing {
            paused: true,
            slots: 2,
            running: 1,
            queued: 0,
            max_memory_total: ByteSize(1 << 30),
            memory_running: ByteSize(64 << 20),
            max_memory: ByteSize(1 << 30),
        };
        let text = describe(&standing);
        assert!(text.contains("paused"), "{text}");
        assert!(text.contains("phase-node resume"), "{text}");
        assert!(text.contains("2 (1 running, 0 queued)"), "{text}");
        assert!(text.contains("64 MiB asked"), "{text}");
        assert!(
            text.contains("at most 1 GiB for running jobs together"),
            "{text}"
        );
    }
}
