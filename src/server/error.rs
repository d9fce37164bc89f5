//! The proxy's request-level error, and the one place it is rendered in the caller's dialect.

use bytes::Bytes;
use http::StatusCode;

use crate::dialect::errors::{error_body_with_status, ErrorClass};
use crate::dialect::translate::TranslateError;
use crate::dialect::Dialect;
use crate::pool::{Origin, PoolError, UpstreamError};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(#[from] serde_json::Error),
    #[error("bad request header {0}")]
    BadHeader(String),
    #[error("request body is {}over the limit of {limit} bytes (server.max_body_bytes)", size.map(|s| format!("{s} bytes, ")).unwrap_or_default())]
    BodyTooLarge { size: Option<u64>, limit: u64 },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {secs:.1}s (server.body_timeout_ms)")]
    BodyTimeout { secs: f64 },
    #[error("no route for {method} {path}; tokenfold serves POST /v1/messages, /v1/messages/count_tokens, /v1/chat/completions, /v1/responses, /v1beta/models/MODEL:generateContent, :streamGenerateContent, :countTokens and GET /v1/models, /healthz, /metrics")]
    UnknownRoute { method: String, path: String },
    #[error("missing or invalid proxy key: send one of server.api_keys as x-tokenfold-key, x-api-key or Authorization: Bearer")]
    Unauthorized,
    #[error("the request cannot be translated for the chosen provider: {0}")]
    Untranslatable(#[from] TranslateError),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Sending to the provider failed before its answer could be judged.
    #[error("{0}")]
    Transport(#[from] UpstreamError),
    #[error("{0}")]
    Pool(#[from] PoolError),
    /// The provider's own error answer, passed to the client as it came (translated if needed).
    #[error("provider answered HTTP {status}")]
    Upstream { status: StatusCode, headers: Box<http::HeaderMap>, body: Bytes },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MalformedJson(_)
            | ProxyError::BadHeader(_)
            | ProxyError::BodyRead(_)
            | ProxyError::Untranslatable(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::UnknownRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::Unauthorized => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProxyError::Transport(UpstreamError::Build(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Transport(e) if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Transport(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Pool(p) => StatusCode::from_u16(p.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            ProxyError::Upstream { status, .. } => *status,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ProxyError::MalformedJson(_)
            | ProxyError::BadHeader(_)
            | ProxyError::BodyRead(_)
            | ProxyError::Untranslatable(_) => ErrorClass::InvalidRequest,
            ProxyError::BodyTooLarge { .. } => ErrorClass::TooLarge,
            ProxyError::BodyTimeout { .. } => ErrorClass::Timeout,
            ProxyError::UnknownRoute { .. } => ErrorClass::NotFound,
            ProxyError::Unauthorized => ErrorClass::Authentication,
            ProxyError::Forbidden(_) => ErrorClass::Permission,
            ProxyError::Transport(e) if e.is_timeout() => ErrorClass::Timeout,
            ProxyError::Transport(_) | ProxyError::Internal(_) => ErrorClass::Api,
            ProxyError::Pool(p) => match p.status() {
                429 => ErrorClass::RateLimit,
                400 => ErrorClass::InvalidRequest,
                413 => ErrorClass::TooLarge,
                404 => ErrorClass::NotFound,
                _ => ErrorClass::Overloaded,
            },
            ProxyError::Upstream { .. } => ErrorClass::Api,
        }
    }

    pub fn origin(&self) -> Origin {
        match self {
            ProxyError::MalformedJson(_)
            | ProxyError::BadHeader(_)
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::BodyRead(_)
            | ProxyError::BodyTimeout { .. }
            | ProxyError::Untranslatable(_)
            | ProxyError::UnknownRoute { .. }
            | ProxyError::Unauthorized
            | ProxyError::Forbidden(_) => Origin::Client,
            ProxyError::Transport(UpstreamError::Build(_)) | ProxyError::Internal(_) => Origin::Internal,
            ProxyError::Transport(_) | ProxyError::Upstream { .. } => Origin::Upstream,
            ProxyError::Pool(p) => p.origin(),
        }
    }

    /// Whether another target could succeed where this one failed.
    pub fn retryable(&self) -> bool {
        self.origin() == Origin::Upstream
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::MalformedJson(_) => "malformed_json",
            ProxyError::BadHeader(_) => "bad_header",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::BodyRead(_) => "body_read",
            ProxyError::BodyTimeout { .. } => "body_timeout",
            ProxyError::Untranslatable(_) => "untranslatable",
            ProxyError::UnknownRoute { .. } => "unknown_route",
            ProxyError::Unauthorized => "unauthorized",
            ProxyError::Forbidden(_) => "forbidden",
            ProxyError::Transport(e) => e.kind(),
            ProxyError::Pool(p) => p.kind(),
            ProxyError::Upstream { .. } => "upstream_error",
            ProxyError::Internal(_) => "internal",
        }
    }

    /// The JSON body in the caller's dialect.
    pub fn body(&self, dialect: Dialect) -> Bytes {
        Bytes::from(error_body_with_status(dialect, self.class(), &self.to_string(), self.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_too_large_reads_well_with_and_without_a_declared_size() {
        let declared = ProxyError::BodyTooLarge { size: Some(2000), limit: 1000 }.to_string();
        assert_eq!(declared, "request body is 2000 bytes, over the limit of 1000 bytes (server.max_body_bytes)");
        let chunked = ProxyError::BodyTooLarge { size: None, limit: 1000 }.to_string();
        assert_eq!(chunked, "request body is over the limit of 1000 bytes (server.max_body_bytes)");
    }
}
