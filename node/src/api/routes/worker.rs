//! `/api/v1/worker`: a volunteer's worker, its preferences and its pause.

use axum::Json;
use axum::extract::State;

use super::super::extract::J;
use super::super::types::{ApiError, ErrorCode};
use super::{ApiResult, ApiState};
use crate::worker::{Preferences, Standing};

/// Applies `change` to this node's worker and answers where it stands.
async fn volunteer(s: &ApiState, change: Preferences) -> ApiResult<Standing> {
    let worker = s.node.worker().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "this node runs no worker (started with --no-worker)",
        )
    })?;
    worker
        .volunteer(change)
        .await
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the worker is stopping"))
}

/// `GET /api/v1/worker`.
pub(super) async fn standing(State(s): State<ApiState>) -> ApiResult<Standing> {
    volunteer(&s, Preferences::default()).await
}

/// `PATCH /api/v1/worker`: `{"slots": N, "max_memory_total": BYTES,
/// "paused": BOOL}`, each optional.
pub(super) async fn change(
    State(s): State<ApiState>,
    J(change): J<Preferences>,
) -> ApiResult<Standing> {
    if change.slots == Some(0) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "slots: must be at least 1",
        ));
    }
    volunteer(&s, change).await
}

/// `POST /api/v1/worker/pause`: finish the jobs it has, take no new ones.
pub(super) async fn pause(State(s): State<ApiState>) -> ApiResult<Standing> {
    let change = Preferences {
        paused: Some(true),
        ..Preferences::default()
    };
    volunteer(&s, change).await
}

/// `POST /api/v1/worker/resume`: take jobs again.
pub(super) async fn resume(State(s): State<ApiState>) -> ApiResult<Standing> {
    let change = Preferences {
        paused: Some(false),
        ..Preferences::default()
    };
    volunteer(&s, change).await
}
