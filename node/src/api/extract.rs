//! How requests are read and errors answered: extractors that refuse bad
//! input with a JSON [`ApiError`] naming the field, and the error response.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use phase_protocol::Cid;

use super::types::{ApiError, ErrorBody, ErrorCode};
use crate::error_line;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.code {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(ErrorBody { error: self })).into_response()
    }
}

pub(super) fn internal(e: &dyn std::error::Error) -> ApiError {
    ApiError::new(ErrorCode::Internal, error_line(e))
}

pub(super) fn unavailable(e: &dyn std::error::Error) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, error_line(e))
}

/// A query string, refused with a JSON error naming the field.
pub(crate) struct Q<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Q(q))
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
    }
}

/// A JSON body, refused with a JSON error naming the field.
pub(crate) struct J<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for J<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(j)| J(j))
            .map_err(|e| {
                let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ErrorCode::TooLarge
                } else {
                    ErrorCode::BadRequest
                };
                ApiError::new(code, e.body_text())
            })
    }
}

/// A `{cid}` (or `{id}`) path segment.
pub(crate) struct CidPath(pub(crate) Cid);

impl<S: Send + Sync> FromRequestParts<S> for CidPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
        text.parse().map(CidPath).map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("path: `{text}` is not a CID: {e}"),
            )
        })
    }
}
