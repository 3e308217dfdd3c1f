//! `/api/v1/state/`: read the guest states in this node's store (what
//! `phase-node state` prints).

use axum::Json;
use axum::extract::State;
use phase_protocol::Cid;
use phase_protocol::guest_state::{GuestState, StateError};
use serde::{Deserialize, Serialize};

use super::super::extract::{CidPath, Q, internal};
use super::super::types::{ApiError, ErrorCode};
use super::{ApiResult, ApiState, REQUEST_DEADLINE, within};
use crate::store::BlockStore;
use crate::store::guest_state::{self as view, Change, Listing};

/// Most keys `GET /api/v1/state/{cid}` lists (the answer is one JSON
/// document); `phase-node state ls` lists any number.
pub(crate) const MAX_LISTED_KEYS: u64 = 100_000;
/// Most bytes of keys and values two states `GET /api/v1/state/{a}/diff`
/// compares may hold in all (a change shows both values in full);
/// `phase-node state diff` compares any two.
pub(crate) const MAX_DIFFED_BYTES: u64 = 64 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyQuery {
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiffQuery {
    to: String,
}

/// A key and its value, each as `state` shows them.
#[derive(Serialize)]
pub(super) struct ValueAnswer {
    key: String,
    value: String,
}

/// A state error as an answer: a missing block is not found, anything
/// else a root that is not a valid state.
fn state_error(e: &StateError) -> ApiError {
    let code = match e {
        StateError::Missing { .. } => ErrorCode::NotFound,
        _ => ErrorCode::BadRequest,
    };
    ApiError::new(code, crate::error_line(e))
}

/// Runs `work` on the blocking pool within the request deadline.
async fn blocking<T: Send + 'static>(
    store: &BlockStore,
    work: impl FnOnce(BlockStore) -> Result<T, StateError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    within(REQUEST_DEADLINE, async move {
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|e| internal(&e))?
            .map_err(|e| state_error(&e))
    })
    .await
}

pub(super) async fn listing(
    State(s): State<ApiState>,
    CidPath(root): CidPath,
) -> ApiResult<Listing> {
    let store = s.node.store();
    let count = blocking(store, move |s| Ok(GuestState::open(s, &root)?.count())).await?;
    if count > MAX_LISTED_KEYS {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "state {root} has {count} keys, more than {MAX_LISTED_KEYS} listed here; use `phase-node state ls`"
            ),
        ));
    }
    Ok(Json(
        blocking(store, move |s| s.state_listing_blocking(&root)).await?,
    ))
}

pub(super) async fn value(
    State(s): State<ApiState>,
    CidPath(root): CidPath,
    Q(q): Q<KeyQuery>,
) -> ApiResult<ValueAnswer> {
    let key = view::parse(&q.key)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("key: {e}")))?;
    let shown = view::show(&key);
    match blocking(s.node.store(), move |s| s.state_value_blocking(&root, &key)).await? {
        Some(value) => Ok(Json(ValueAnswer {
            key: shown,
            value: view::show(&value),
        })),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("key `{shown}` is not in state {root}"),
        )),
    }
}

pub(super) async fn diff(
    State(s): State<ApiState>,
    CidPath(a): CidPath,
    Q(q): Q<DiffQuery>,
) -> ApiResult<Vec<Change>> {
    let b: Cid = q.to.parse().map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("to: `{}` is not a CID: {e}", q.to),
        )
    })?;
    let store = s.node.store();
    let sizes = blocking(store, move |s| {
        let (a, b) = (GuestState::open(s.clone(), &a)?, GuestState::open(s, &b)?);
        Ok((a.count().max(b.count()), a.bytes() + b.bytes()))
    })
    .await?;
    if sizes.0 > MAX_LISTED_KEYS || sizes.1 > MAX_DIFFED_BYTES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "states {a} and {b} are too large to compare here ({} keys in the larger, {} bytes in all; at most {MAX_LISTED_KEYS} and {MAX_DIFFED_BYTES}); use `phase-node state diff`",
                sizes.0, sizes.1
            ),
        ));
    }
    Ok(Json(
        blocking(store, move |s| s.state_diff_blocking(&a, &b)).await?,
    ))
}
