//! `/api/v1/ledger`: the node's work ledger (what `phase-node ledger`
//! prints, and its CAR export).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::super::extract::internal;
use super::super::types::{ApiError, LedgerAnswer};
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
