//! `phase-node state`: read a job's guest state (a map of byte keys, stored
//! as a HAMT: [`phase_protocol::guest_state`]) and make states to start
//! jobs from.
//!
//! Keys and values are bytes. On the command line and in output, bytes that
//! are printable UTF-8 are written as they are, anything else as `hex:`
//! followed by hex digits (a key typed as `hex:6869` is `hi`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use phase_protocol::Cid;
use phase_protocol::guest_state::{self, GuestState};

use super::GlobalArgs;
use super::pins::Pins;
use crate::store::BlockStore;
use crate::store::guest_state::{self as guest_state_view, ChangeKind, show};

/// Read a job's state, or make one to start jobs from.
#[derive(Debug, Subcommand)]
pub(super) enum StateCommand {
    /// Print the value of KEY in the state at ROOT (raw bytes, as `cat`).
    Get {
        /// The state's root.
        #[arg(value_name = "ROOT")]
        root: Cid,
        /// The key (`hex:…` for bytes that are not text).
        #[arg(value_name = "KEY", value_parser = parse_bytes)]
        key: KeyBytes,
        /// Print `{"key", "value"}` as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// List the keys of the state at ROOT in key order, with value sizes.
    Ls {
        /// The state's root.
        #[arg(value_name = "ROOT")]
        root: Cid,
        /// Print `{"root", "count", "bytes", "entries": [{"key", "size"}]}`.
        #[arg(long)]
        json: bool,
    },
    /// What changed from state A to state B: `+ KEY` added, `- KEY`
    /// removed, `~ KEY` changed.
    Diff {
        /// The state before.
        #[arg(value_name = "A")]
        a: Cid,
        /// The state after.
        #[arg(value_name = "B")]
        b: Cid,
        /// Print `[{"key", "change", "before", "after"}]` (values as in
        /// `get --json`).
        #[arg(long)]
        json: bool,
    },
    /// Set and delete keys of a state (the empty state without --root),
    /// store and pin the new state, and print its root.
    Set {
        /// The state to start from; default: the empty state.
        #[arg(long, value_name = "ROOT")]
        root: Option<Cid>,
        /// KEY=VALUE pairs to set (text, or `hex:…` on either side).
        #[arg(value_name = "KEY=VALUE", value_parser = parse_pair)]
        pairs: Vec<(KeyBytes, KeyBytes)>,
        /// Keys to delete.
        #[arg(long = "delete", value_name = "KEY", value_parser = parse_bytes)]
        deletes: Vec<KeyBytes>,
        /// Print `{"root", "count", "bytes"}` as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A key or value from the command line.
#[derive(Clone, Debug)]
pub(super) struct KeyBytes(Vec<u8>);

/// `hex:…` as bytes, anything else as its UTF-8 bytes.
fn parse_bytes(s: &str) -> Result<KeyBytes, String> {
    guest_state_view::parse(s).map(KeyBytes)
}

fn parse_pair(s: &str) -> Result<(KeyBytes, KeyBytes), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((parse_bytes(key)?, parse_bytes(value)?))
}

impl StateCommand {
    /// The states this command reads.
    fn roots(&self) -> Vec<phase_protocol::Cid> {
        match self {
            StateCommand::Get { root, .. } | StateCommand::Ls { root, .. } => vec![*root],
            StateCommand::Diff { a, b, .. } => vec![*a, *b],
            StateCommand::Set { root, .. } => root.iter().copied().collect(),
        }
    }

    pub(super) async fn execute(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let store = global.store().await?;
        // A daemon beside this command keeps small blocks (most of a
        // state's) in its database: asked to fetch a state, it writes them
        // out where this command reads them.
        for root in self.roots() {
            super::content::fetch_through_daemon(global, root).await?;
        }
        match self {
            StateCommand::Get {
                root,
                key: KeyBytes(key),
                json,
            } => {
                let shown = show(&key);
                let value = blocking(&store, move |s| Ok(s.state_value_blocking(&root, &key)?))
                    .await
                    .with_context(|| format!("cannot read state {root}"))?;
                let Some(value) = value else {
                    bail!("key `{shown}` is not in state {root}");
                };
                let mut out = std::io::stdout().lock();
                if json {
                    let v = serde_json::json!({ "key": shown, "value": show(&value) });
                    writeln!(out, "{v}")?;
                } else {
                    out.write_all(&value)?;
                }
            }
            StateCommand::Ls { root, json } => {
                let listing = blocking(&store, move |s| Ok(s.state_listing_blocking(&root)?))
                    .await
                    .with_context(|| format!("cannot read state {root}"))?;
                let mut out = std::io::stdout().lock();
                if json {
                    writeln!(out, "{}", serde_json::to_string(&listing)?)?;
                } else {
                    for entry in &listing.entries {
                        writeln!(out, "{}\t{}", entry.key, entry.size)?;
                    }
                }
            }
            StateCommand::Diff { a, b, json } => {
                let changes = blocking(&store, move |s| Ok(s.state_diff_blocking(&a, &b)?))
                    .await
                    .with_context(|| format!("cannot compare states {a} and {b}"))?;
                let mut out = std::io::stdout().lock();
                if json {
                    writeln!(out, "{}", serde_json::to_string(&changes)?)?;
                } else {
                    for c in &changes {
                        let mark = match c.change {
                            ChangeKind::Added => '+',
                            ChangeKind::Removed => '-',
                            ChangeKind::Changed => '~',
                        };
                        writeln!(out, "{mark} {}", c.key)?;
                    }
                }
            }
            StateCommand::Set {
                root,
                pairs,
                deletes,
                json,
            } => {
                if pairs.is_empty() && deletes.is_empty() {
                    bail!("nothing to set: give KEY=VALUE pairs or --delete KEY");
                }
                let pins = Pins::of(global.data_dir()?.root(), &store).await;
                // A daemon's `gc` keeps what this writes until it is pinned.
                let _lease = store.lease().await?;
                let summary = blocking(&store, move |s| {
                    let start = match root {
                        Some(root) => root,
                        None => {
                            let (cid, bytes) = guest_state::empty();
                            s.put_blocking(&cid, &bytes)?;
                            cid
                        }
                    };
                    let mut state = GuestState::open(s.clone(), &start)?;
                    for (KeyBytes(k), KeyBytes(v)) in pairs {
                        state.set(k, v)?;
                    }
                    for KeyBytes(k) in deletes {
                        state.delete(&k)?;
                    }
                    let (summary, blocks) = state.commit();
                    for (cid, data) in blocks {
                        s.put_blocking(&cid, &data)?;
                    }
                    Ok(summary)
                })
                .await
                .context("cannot make the state")?;
                pins.pin(summary.root).await?;
                let mut out = std::io::stdout().lock();
                if json {
                    let v = serde_json::json!({
                        "root": summary.root.to_string(), "count": summary.count, "bytes": summary.bytes,
                    });
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(out, "{}", summary.root)?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Runs state work on the blocking pool: it reads blocks synchronously.
async fn blocking<T: Send + 'static>(
    store: &BlockStore,
    work: impl FnOnce(BlockStore) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(store)).await?
}
