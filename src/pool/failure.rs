//! Failure classes and the pure function that reads them from a provider's answer (status,
//! headers, the first bytes of the body), plus the reset/retry hints providers send.

use std::time::Duration;

use http::HeaderMap;

use crate::dialect::gemini::{self, rpc::QuotaWindow};

use super::headers::retry_delay;

/// Who caused an error: it decides whether retrying elsewhere can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Upstream,
    Internal,
}

/// Why an attempt failed, in the terms the pool acts on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// 429: cool the account until the provider's reset, else back off exponentially.
    #[error("rate limited{}: {detail}", hint(*retry_after))]
    RateLimited { retry_after: Option<Duration>, detail: String },
    /// A daily (or billing) quota is spent: out until the day window resets.
    #[error("quota exhausted{}: {detail}", hint(*retry_after))]
    QuotaExhausted { retry_after: Option<Duration>, detail: String },
    /// 5xx, connect error, timeout, reset before the first byte: short cooldown, circuit breaker.
    #[error("unavailable ({cause}): {detail}")]
    Unavailable { cause: Cause, detail: String },
    /// 401/403: the key is refused; the account stays off until the config is reloaded.
    #[error("key refused (HTTP {status}): {detail}")]
    AuthRejected { status: u16, detail: String },
    /// The prompt does not fit this model: only a target with a larger window can help.
    #[error("context too long: {detail}")]
    ContextTooLong { detail: String },
    /// Any other 4xx: the request itself is wrong; the provider's answer goes back to the client.
    #[error("request refused (HTTP {status}): {detail}")]
    BadRequest { status: u16, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Status(u16),
    Connect,
    Timeout,
    /// The connection closed before the first byte.
    Reset,
    /// A 200 whose body or first event was an error without a more specific class.
    ErrorBody,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Status(s) => write!(f, "HTTP {s}"),
            Cause::Connect => f.write_str("connect error"),
            Cause::Timeout => f.write_str("timeout"),
            Cause::Reset => f.write_str("connection reset before the first byte"),
            Cause::ErrorBody => f.write_str("error in a 200 response"),
        }
    }
}

fn hint(d: Option<Duration>) -> String {
    d.map(|d| format!(" (retry in {:.1}s)", d.as_secs_f64())).unwrap_or_default()
}

impl Failure {
    /// Whether another target can succeed where this one failed.
    pub fn retryable(&self) -> bool {
        !matches!(self, Failure::BadRequest { .. })
    }

    pub fn origin(&self) -> Origin {
        match self {
            Failure::BadRequest { .. } => Origin::Client,
            _ => Origin::Upstream,
        }
    }

    /// A short label for metrics and the status table.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::RateLimited { .. } => "rate_limited",
            Failure::QuotaExhausted { .. } => "quota_exhausted",
            Failure::Unavailable { .. } => "unavailable",
            Failure::AuthRejected { .. } => "auth_rejected",
            Failure::ContextTooLong { .. } => "context_too_long",
            Failure::BadRequest { .. } => "bad_request",
        }
    }
}

/// Classifies a provider's answer. `None` means success. `body_prefix` is whatever has been read
/// of the body (the whole error body, or the first SSE event of a 200). `now_unix_ms` turns
/// absolute reset times into durations.
pub fn classify(status: u16, headers: &HeaderMap, body_prefix: &[u8], now_unix_ms: i64) -> Option<Failure> {
    let text = String::from_utf8_lossy(&body_prefix[..body_prefix.len().min(16 * 1024)]);
    let lower = text.to_ascii_lowercase();
    let detail = || error_message(&text);
    let retry = || retry_delay(headers, &text, now_unix_ms);
    match status {
        200..=299 => {
            if !looks_like_error(&lower) {
                return None;
            }
            // The embedded code, if any, says which class it is.
            let code = embedded_code(&lower);
            match code {
                Some(c) if !(200..300).contains(&c) => classify(c, headers, body_prefix, now_unix_ms),
                _ if lower.contains("rate_limit") || lower.contains("resource_exhausted") => {
                    classify(429, headers, body_prefix, now_unix_ms)
                }
                _ if lower.contains("overloaded") => {
                    Some(Failure::Unavailable { cause: Cause::ErrorBody, detail: detail() })
                }
                _ if is_context_error(&lower) => Some(Failure::ContextTooLong { detail: detail() }),
                // The error names the request as its cause: another try or target cannot help,
                // and it is no sign of the provider's health. Told as the 400 it stands for.
                _ if is_request_error(&lower) => Some(Failure::BadRequest { status: 400, detail: detail() }),
                _ => Some(Failure::Unavailable { cause: Cause::ErrorBody, detail: detail() }),
            }
        }
        // Google's details name the spent quota's window: a minute's limit is a rate limit even
        // when the message says "quota exceeded".
        429 => match gemini::rpc::quota_hint(body_prefix) {
            Some(h) if h.window == QuotaWindow::Day => {
                Some(Failure::QuotaExhausted { retry_after: h.retry_after.or_else(retry), detail: detail() })
            }
            Some(h) if h.window == QuotaWindow::Minute => {
                Some(Failure::RateLimited { retry_after: h.retry_after.or_else(retry), detail: detail() })
            }
            _ if is_daily_quota(&lower) => Some(Failure::QuotaExhausted { retry_after: retry(), detail: detail() }),
            _ => Some(Failure::RateLimited { retry_after: retry(), detail: detail() }),
        },
        // OpenRouter answers 402 when credits are spent.
        402 => Some(Failure::QuotaExhausted { retry_after: retry(), detail: detail() }),
        401 | 403 => Some(Failure::AuthRejected { status, detail: detail() }),
        400 | 413 | 422 if is_context_error(&lower) => Some(Failure::ContextTooLong { detail: detail() }),
        408 => Some(Failure::Unavailable { cause: Cause::Timeout, detail: detail() }),
        400..=499 => Some(Failure::BadRequest { status, detail: detail() }),
        _ => Some(Failure::Unavailable { cause: Cause::Status(status), detail: detail() }),
    }
}

/// Follows a stream already committed to the client for an error the provider sends in-band
/// after its first event (a 200 stream that fails later): the bytes still go to the client as
/// they are, and the pool is told the attempt failed, as it did.
pub struct StreamWatch {
    splitter: crate::dialect::sse::SseSplitter,
    failure: Option<Failure>,
    now_unix_ms: i64,
}

impl StreamWatch {
    pub fn new(now_unix_ms: i64) -> StreamWatch {
        // An in-band error event is a few hundred bytes: longer events are skipped, not held.
        StreamWatch { splitter: crate::dialect::sse::SseSplitter::with_limit(1 << 20), failure: None, now_unix_ms }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.failure.is_some() {
            return;
        }
        self.splitter.push(chunk);
        while let Some(event) = self.splitter.next_event() {
            // Most events never mention an error; only those that do are classified.
            if memchr::memmem::find(&event, b"error").is_none() {
                continue;
            }
            if let Some(f) = classify(200, &HeaderMap::new(), &event, self.now_unix_ms) {
                self.failure = Some(f);
                return;
            }
        }
    }

    /// The first in-band error seen, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }
}

/// A JSON body `{"error": ...}` (also Gemini's `[{"error": ...}]`), `{"type":"error"}`, or an SSE
/// stream whose first event is an error.
fn looks_like_error(lower: &str) -> bool {
    let t = lower.trim_start();
    let t = t.strip_prefix('[').map(str::trim_start).unwrap_or(t);
    if t.starts_with("event: error") || t.starts_with("event:error") {
        return true;
    }
    let data = t.strip_prefix("data:").map(str::trim_start).unwrap_or(t);
    let head: String = data.chars().filter(|c| !c.is_whitespace()).take(24).collect();
    head.starts_with("{\"error\"") || head.starts_with("{\"type\":\"error\"")
}

/// `"code": 429` (Gemini, OpenAI-compatible errors) inside an error body.
fn embedded_code(lower: &str) -> Option<u16> {
    let i = lower.find("\"code\"")?;
    let rest = lower[i + 6..].trim_start().strip_prefix(':')?.trim_start().trim_start_matches('"');
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|c| (100..600).contains(c))
}

fn is_context_error(lower: &str) -> bool {
    const MARKERS: &[&str] = &[
        "context_length_exceeded",
        "context length",
        "context window",
        "prompt is too long",
        "input is too long",
        "too many tokens",
        "maximum context",
        "reduce the length",
        "request too large for model",
        "exceeds the maximum number of tokens",
    ];
    MARKERS.iter().any(|m| lower.contains(m))
}

/// An error type that blames the request: OpenAI's and Anthropic's `invalid_request_error`,
/// Anthropic's `request_too_large`, Gemini's `INVALID_ARGUMENT`.
fn is_request_error(lower: &str) -> bool {
    const MARKERS: &[&str] = &["invalid_request_error", "request_too_large", "invalid_argument"];
    MARKERS.iter().any(|m| lower.contains(m))
}

fn is_daily_quota(lower: &str) -> bool {
    const MARKERS: &[&str] = &[
        "perday",
        "per day",
        "per_day",
        "-per-day",
        "daily",
        "(rpd)",
        "(tpd)",
        "insufficient_quota",
        "quota exceeded for metric",
        "free-models-per-day",
    ];
    MARKERS.iter().any(|m| lower.contains(m))
}

/// The provider's message, short, for logs and the status table.
fn error_message(text: &str) -> String {
    let body = text.trim();
    let start = body.find("\"message\"").map(|i| i + 9);
    let msg = start
        .and_then(|i| body[i..].trim_start().strip_prefix(':'))
        .and_then(|r| r.trim_start().strip_prefix('"'))
        .map(|r| {
            let mut out = String::new();
            let mut escaped = false;
            for c in r.chars() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => {
                        escaped = false;
                        out.push(c)
                    }
                }
            }
            out
        })
        .unwrap_or_else(|| body.to_string());
    let mut msg: String = msg.chars().filter(|c| !c.is_control()).take(200).collect();
    if msg.is_empty() {
        msg.push_str("(empty body)");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_751_371_200_000; // 2025-07-01T12:00:00Z

    #[test]
    fn each_status_gets_its_class() {
        let c = |status, body: &str| classify(status, &HeaderMap::new(), body.as_bytes(), NOW);
        assert_eq!(c(200, r#"{"id":"x","choices":[]}"#), None);
        assert!(matches!(c(429, "{}"), Some(Failure::RateLimited { retry_after: None, .. })));
        let daily = r#"{"error":{"code":429,"message":"Quota exceeded for metric: generate_content_free_tier_requests, limit: 250","details":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}}"#;
        assert!(matches!(c(429, daily), Some(Failure::QuotaExhausted { .. })));
        let groq_daily =
            r#"{"error":{"message":"Rate limit reached for model `x` on tokens per day (TPD): Limit 500000"}}"#;
        assert!(matches!(c(429, groq_daily), Some(Failure::QuotaExhausted { .. })));
        assert!(matches!(c(503, ""), Some(Failure::Unavailable { cause: Cause::Status(503), .. })));
        assert!(matches!(c(529, "overloaded"), Some(Failure::Unavailable { .. })));
        assert!(matches!(c(401, "bad key"), Some(Failure::AuthRejected { status: 401, .. })));
        assert!(matches!(c(403, ""), Some(Failure::AuthRejected { status: 403, .. })));
        let ctx = r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#;
        assert!(matches!(c(400, ctx), Some(Failure::ContextTooLong { .. })));
        let anth = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
        assert!(matches!(c(400, anth), Some(Failure::ContextTooLong { .. })));
        let bad = r#"{"error":{"message":"messages: field required"}}"#;
        let f = c(400, bad).unwrap();
        assert!(matches!(&f, Failure::BadRequest { status: 400, detail } if detail == "messages: field required"));
        assert!(!f.retryable());
        assert!(matches!(c(404, ""), Some(Failure::BadRequest { status: 404, .. })));
    }

    #[test]
    fn googles_quota_details_decide_between_minute_and_day() {
        let c = |body: &str| classify(429, &HeaderMap::new(), body.as_bytes(), NOW);
        let violation = |id: &str| {
            format!(
                r#"{{"error":{{"code":429,"message":"You exceeded your current quota. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests","status":"RESOURCE_EXHAUSTED","details":[{{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"{id}","quotaValue":"10"}}]}},{{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"41s"}}]}}}}"#
            )
        };
        let minute = c(&violation("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"));
        assert_eq!(
            minute,
            Some(Failure::RateLimited {
                retry_after: Some(Duration::from_secs(41)),
                detail: "You exceeded your current quota. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests".into()
            })
        );
        let day = c(&violation("GenerateRequestsPerDayPerProjectPerModel-FreeTier"));
        assert!(
            matches!(day, Some(Failure::QuotaExhausted { retry_after: Some(d), .. }) if d == Duration::from_secs(41))
        );
    }

    #[test]
    fn a_200_with_an_error_is_that_error() {
        let c = |body: &str| classify(200, &HeaderMap::new(), body.as_bytes(), NOW);
        let sse = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        assert!(matches!(c(sse), Some(Failure::Unavailable { cause: Cause::ErrorBody, .. })));
        let gemini =
            r#"[{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}]"#;
        assert!(matches!(c(gemini), Some(Failure::RateLimited { .. })));
        let chat = "data: {\"error\":{\"message\":\"context_length_exceeded\",\"code\":400}}\n\n";
        assert!(matches!(c(chat), Some(Failure::ContextTooLong { .. })));
        assert_eq!(c("data: {\"id\":\"1\",\"choices\":[{\"delta\":{\"content\":\"error\"}}]}\n\n"), None);
        // Errors that blame the request are the client's, never the provider's health.
        let invalid = "data: {\"error\":{\"message\":\"'messages' must be an array\",\"type\":\"invalid_request_error\",\"code\":null}}\n\n";
        assert!(matches!(c(invalid), Some(Failure::BadRequest { status: 400, .. })));
        let too_large =
            r#"{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum size"}}"#;
        assert!(matches!(c(too_large), Some(Failure::BadRequest { .. })));
        let gemini = r#"[{"error":{"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}]"#;
        assert!(matches!(c(gemini), Some(Failure::BadRequest { .. })));
        // A context overflow stays one (a larger window can take it).
        let ctx = r#"{"error":{"message":"prompt is too long: 210000 tokens","type":"invalid_request_error"}}"#;
        assert!(matches!(c(ctx), Some(Failure::ContextTooLong { .. })));
    }

    #[test]
    fn an_error_event_later_in_a_stream_is_seen_however_it_is_cut() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
                      event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"an error occurred\"}}\n\n\
                      event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        for cut in [1, 7, 64, stream.len()] {
            let mut w = StreamWatch::new(NOW);
            for piece in stream.as_bytes().chunks(cut) {
                w.push(piece);
            }
            assert!(matches!(w.failure(), Some(Failure::Unavailable { cause: Cause::ErrorBody, .. })), "cut {cut}");
        }
        // Text that merely says "error" is no error.
        let mut w = StreamWatch::new(NOW);
        w.push(stream.rsplit_once("event: error").unwrap().0.as_bytes());
        assert!(w.failure().is_none());
    }
}
