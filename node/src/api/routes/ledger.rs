//! `/api/v1/ledger`: the node's work ledger (what `phase-node ledger`
//! prints, and its CAR export).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::super::extract::{Q, internal};
use super::super::types::{ApiError, ErrorCode, LedgerAnswer, LedgerEntries};
use super::{ApiResult, ApiState, REQUEST_DEADLINE, within};

pub(super) async fn totals(State(s): State<ApiState>) -> ApiResult<LedgerAnswer> {
    let summary = within(REQUEST_DEADLINE, async {
        s.node.ledger().await.map_err(|e| internal(&e))
    })
    .await?;
    Ok(Json(LedgerAnswer {
        node: s.node.peer_id(),
        ledger: summary,
    }))
}

pub(super) async fn export(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let car = within(REQUEST_DEADLINE, async {
        s.node.ledger_export().await.map_err(|e| internal(&e))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/vnd.ipld.car")], car).into_response())
}

/// Entries `GET /api/v1/ledger/entries` gives by default, and at most.
const ENTRIES: usize = 1_000;
const MAX_ENTRIES: usize = 10_000;

/// `?limit=N`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EntriesQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/ledger/entries`: the newest entries, newest first (what
/// the dashboard plots).
pub(super) async fn entries(
    State(s): State<ApiState>,
    Q(query): Q<EntriesQuery>,
) -> ApiResult<LedgerEntries> {
    let limit = query.limit.unwrap_or(ENTRIES);
    if limit > MAX_ENTRIES {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("limit: at most {MAX_ENTRIES}"),
        ));
    }
    let entries = within(REQUEST_DEADLINE, async {
        s.node.ledger_recent(limit).await.map_err(|e| internal(&e))
    })
    .await?;
    Ok(Json(LedgerEntries {
        node: s.node.peer_id(),
        entries,
    }))
}
