//! The proxy's request-level error, and the one place it is rendered in the caller's dialect.

use bytes::Bytes;
use http::StatusCode;

use crate::dialect::errors::{error_body_with_status, ErrorClass};
use crate::dialect::Dialect;

/// Who caused an error: it decides whether retrying elsewhere can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
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
    Untranslatable(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("no upstream is configured for {0} requests (set default_upstream.{0} in the config)")]
    NoUpstream(Dialect),
    #[error("provider `{provider}` is off because {var} is not set; set it and restart")]
    ProviderKeyMissing { provider: String, var: String },
    #[error("upstream `{provider}` is unreachable: {detail}")]
    UpstreamUnreachable { provider: String, detail: String },
    #[error("upstream `{provider}` did not {phase} within {secs:.1}s (timeouts.{key})")]
    UpstreamTimeout { provider: String, phase: &'static str, key: &'static str, secs: f64 },
    #[error("{0}")]
    Pool(crate::pool::PoolError),
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
            ProxyError::UnknownRoute { .. } | ProxyError::NoUpstream(_) => StatusCode::NOT_FOUND,
            ProxyError::Unauthorized => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProxyError::ProviderKeyMissing { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamUnreachable { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
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
            ProxyError::UnknownRoute { .. } | ProxyError::NoUpstream(_) => ErrorClass::NotFound,
            ProxyError::Unauthorized => ErrorClass::Authentication,
            ProxyError::Forbidden(_) => ErrorClass::Permission,
            ProxyError::ProviderKeyMissing { .. } => ErrorClass::Overloaded,
            ProxyError::UpstreamUnreachable { .. } | ProxyError::Internal(_) => ErrorClass::Api,
            ProxyError::UpstreamTimeout { .. } => ErrorClass::Timeout,
            ProxyError::Pool(p) => match p.status() {
                429 => ErrorClass::RateLimit,
                400 => ErrorClass::InvalidRequest,
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
            ProxyError::UpstreamUnreachable { .. }
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::Upstream { .. } => Origin::Upstream,
            ProxyError::Pool(p) => p.origin(),
            ProxyError::NoUpstream(_) | ProxyError::ProviderKeyMissing { .. } | ProxyError::Internal(_) => {
                Origin::Internal
            }
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
            ProxyError::NoUpstream(_) => "no_upstream",
            ProxyError::ProviderKeyMissing { .. } => "provider_key_missing",
            ProxyError::UpstreamUnreachable { .. } => "upstream_unreachable",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
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
