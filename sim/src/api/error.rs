//! HTTP errors in vLLM's current shape:
//! `{"error": {"message": "...", "type": "BadRequestError", "param": null, "code": 400}}`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer; the one place errors become HTTP responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub(crate) status: StatusCode,
    /// Human-readable message.
    pub(crate) message: String,
    /// Offending request field, if known.
    pub(crate) param: Option<&'static str>,
    /// Drop the connection instead of answering (fault injection).
    pub(crate) close: bool,
}

/// Response extension telling the accept loop to drop the connection unanswered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CloseConnection;

#[derive(Serialize)]
struct Body<'a> {
    error: Info<'a>,
}

#[derive(Serialize)]
struct Info<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'static str>,
    code: u16,
}

impl ApiError {
    /// 400 BadRequestError.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: None,
            close: false,
        }
    }

    /// 400 naming the offending field.
    pub(crate) fn bad_param(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param),
            ..Self::bad_request(message)
        }
    }

    /// Any status with a message.
    pub(crate) fn status(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            close: false,
        }
    }

    /// No answer at all: the connection is closed before any byte (fault injection).
    pub(crate) fn close_connection() -> Self {
        Self {
            close: true,
            ..Self::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "connection closed (fault injection)",
            )
        }
    }

    /// vLLM's `type` string for a status.
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 422 => "BadRequestError",
            404 => "NotFoundError",
            405 => "MethodNotAllowedError",
            413 => "RequestEntityTooLargeError",
            503 => "ServiceUnavailableError",
            500..=599 => "InternalServerError",
            _ => "BadRequestError",
        }
    }

    /// The JSON body text.
    pub(crate) fn body(&self) -> String {
        let body = Body {
            error: Info {
                message: &self.message,
                kind: self.kind(),
                param: self.param,
                code: self.status.as_u16(),
            },
        };
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if self.close {
            response.extensions_mut().insert(CloseConnection);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_matches_vllm() {
        let v: serde_json::Value =
            serde_json::from_str(&ApiError::bad_param("n", "n must be at least 1").body()).unwrap();
        assert_eq!(v["error"]["type"], "BadRequestError");
        assert_eq!(v["error"]["code"], 400);
        assert_eq!(v["error"]["param"], "n");
        assert_eq!(v["error"]["message"], "n must be at least 1");
    }
}
