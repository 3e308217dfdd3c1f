//! Pins from the command line: through the data dir's daemon when one runs
//! (it holds the state database, and announces what it pins), else in the
//! store's own state database.

use anyhow::Context;
use phase_protocol::Cid;

use crate::api::ApiClient;
use crate::api::ClientError;
use crate::api::types::{ErrorCode, GcAnswer, PinAnswer, PinsAnswer};
use crate::store::BlockStore;

/// Where pins go.
#[derive(Debug)]
pub(super) enum Pins {
    /// The running daemon.
    Daemon(ApiClient),
    /// The store, no daemon running.
    Local(BlockStore),
}

impl Pins {
    /// The daemon of `data_dir` if one runs, else `store`.
    pub(super) async fn of(data_dir: &std::path::Path, store: &BlockStore) -> Self {
        match ApiClient::find(data_dir).await {
            Some(daemon) => Pins::Daemon(daemon),
            None => Pins::Local(store.clone()),
        }
    }

    /// Pins `cid` for the user (a daemon also announces it).
    pub(super) async fn pin(&self, cid: Cid) -> anyhow::Result<()> {
        match self {
            Pins::Daemon(d) => {
                d.post::<(), PinAnswer>(&format!("/api/v1/pins/{cid}"), None)
                    .await
                    .with_context(|| format!("the daemon could not pin {cid}"))?;
            }
            Pins::Local(store) => store.pin(&cid).await?,
        }
        Ok(())
    }

    /// Drops the user's pin of `cid`; whether there was one.
    pub(super) async fn unpin(&self, cid: Cid) -> anyhow::Result<bool> {
        match self {
            Pins::Daemon(d) => match d.delete::<PinAnswer>(&format!("/api/v1/pins/{cid}")).await {
                Ok(_) => Ok(true),
                Err(ClientError::Api(e)) if e.code == ErrorCode::NotFound => Ok(false),
                Err(e) => Err(e.into()),
            },
            Pins::Local(store) => Ok(store.unpin(&cid).await?),
        }
    }

    /// Every pinned root.
    pub(super) async fn list(&self) -> anyhow::Result<Vec<Cid>> {
        Ok(match self {
            Pins::Daemon(d) => d.get::<PinsAnswer>("/api/v1/pins").await?.pins,
            Pins::Local(store) => store.pins().await?,
        })
    }

    /// Removes blocks no pin reaches; how many.
    pub(super) async fn gc(&self) -> anyhow::Result<usize> {
        Ok(match self {
            Pins::Daemon(d) => d.post::<(), GcAnswer>("/api/v1/gc", None).await?.removed,
            Pins::Local(store) => store.gc().await?,
        })
    }
}
