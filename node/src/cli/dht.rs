//! `phase-node dht`: Kademlia lookups through the running daemon.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use phase_protocol::job::Capability;
use phase_protocol::{Cid, PeerId};

use super::GlobalArgs;
use crate::api::types::{FindPeerAnswer, ProvidersAnswer};

/// Look up peers and providers in the DHT through the running daemon,
/// timed: what a node can find, not what it happens to know.
#[derive(Debug, Subcommand)]
pub(super) enum DhtCommand {
    /// Find a peer by its PeerId (a Kademlia lookup, even when it is
    /// connected); prints its addresses. Exit code 1 when not found.
    FindPeer {
        /// The PeerId.
        peer: PeerId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Find the providers of a content root, or the workers that advertise
    /// a capability; prints one PeerId a line.
    Providers(ProvidersArgs),
}

/// What to look up the providers of.
#[derive(Debug, Args)]
pub(super) struct ProvidersArgs {
    /// A content root.
    #[arg(required_unless_present = "capability", conflicts_with = "capability")]
    cid: Option<Cid>,
    /// A capability, e.g. `wasi-p1`, `wasi-p2`, `deterministic`.
    #[arg(long, value_name = "NAME")]
    capability: Option<Capability>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl DhtCommand {
    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let daemon = global.daemon().await?;
        let mut out = std::io::stdout().lock();
        match self {
            Self::FindPeer { peer, json } => {
                let answer: FindPeerAnswer =
                    daemon.get(&format!("/api/v1/dht/peer/{peer}")).await?;
                if json {
                    serde_json::to_writer_pretty(&mut out, &answer)?;
                    writeln!(out)?;
                } else if answer.found {
                    for addr in &answer.addrs {
                        writeln!(out, "{addr}")?;
                    }
                } else {
                    eprintln!("{peer}: not found in the DHT ({} ms)", answer.millis);
                }
                Ok(if answer.found {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Self::Providers(args) => {
                let path = match (&args.cid, &args.capability) {
                    (Some(cid), _) => format!("/api/v1/dht/providers?cid={cid}"),
                    (None, Some(c)) => format!("/api/v1/dht/providers?capability={}", c.as_str()),
                    (None, None) => bail!("give a CID or --capability NAME"),
                };
                let answer: ProvidersAnswer = daemon.get(&path).await?;
                if args.json {
                    serde_json::to_writer_pretty(&mut out, &answer)?;
                    writeln!(out)?;
                } else {
                    for peer in &answer.providers {
                        writeln!(out, "{peer}")?;
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::Cli;

    fn parses(args: &[&str]) -> bool {
        Cli::try_parse_from(["phase-node"].iter().chain(args)).is_ok()
    }

    #[test]
    fn providers_takes_a_cid_or_a_capability_with_or_without_json() {
        let cid = phase_protocol::cid::raw_cid(b"x").to_string();
        assert!(parses(&["dht", "providers", &cid]));
        assert!(parses(&["dht", "providers", &cid, "--json"]));
        assert!(parses(&[
            "dht",
            "providers",
            "--capability",
            "wasi-p1",
            "--json"
        ]));
        assert!(!parses(&["dht", "providers"]), "one of the two is needed");
        assert!(!parses(&[
            "dht",
            "providers",
            &cid,
            "--capability",
            "wasi-p1"
        ]));
        assert!(!parses(&["dht", "providers", "--capability", "Not Valid"]));
        assert!(parses(&["peers", "--wait"]));
        assert!(parses(&["peers", "--wait", "3", "--json"]));
        assert!(parses(&["peers", "--json", "--wait"]));
    }
}
