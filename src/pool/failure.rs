//! Failure classes and the pure function that reads them from a provider's answer (status,
//! headers, the first bytes of the body), plus the reset/retry hints providers send.

use std::time::Duration;

use http::HeaderMap;

use crate::server::error::Origin;

use super::zone::parse_rfc3339_ms;

/// Why an attempt failed, in the terms the pool acts on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// 429: cool the account until the provider's reset, else back off exponentially.
    #[error("rate limited{}: {detail}", hint(*retry_after))]
    RateLimited {
        retry_after: Option<Duration>,
        detail: String,
    },
    /// A daily (or billing) quota is spent: out until the day window resets.
    #[error("quota exhausted{}: {detail}", hint(*retry_after))]
    QuotaExhausted {
        retry_after: Option<Duration>,
        detail: String,
    },
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
    d.map(|d| format!(" (retry in {:.1}s)", d.as_secs_f64()))
        .unwrap_or_default()
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

    /// The class of a transport error from the upstream client.
    pub fn from_proxy_error(e: &crate::server::error::ProxyError) -> Failure {
        use crate::server::error::ProxyError;
        let cause = match e {
            ProxyError::UpstreamTimeout { .. } => Cause::Timeout,
            ProxyError::UpstreamUnreachable { detail, .. }
                if detail.contains("connection failed") =>
            {
                Cause::Connect
            }
            _ => Cause::Reset,
        };
        Failure::Unavailable {
            cause,
            detail: e.to_string(),
        }
    }
}

/// Classifies a provider's answer. `None` means success. `body_prefix` is whatever has been read
/// of the body (the whole error body, or the first SSE event of a 200). `now_unix_ms` turns
/// absolute reset times into durations.
pub fn classify(
    status: u16,
    headers: &HeaderMap,
    body_prefix: &[u8],
    now_unix_ms: i64,
) -> Option<Failure> {
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
                Some(c) if !(200..300).contains(&c) => {
                    classify(c, headers, body_prefix, now_unix_ms)
                }
                _ if lower.contains("rate_limit") || lower.contains("resource_exhausted") => {
                    classify(429, headers, body_prefix, now_unix_ms)
                }
                _ if lower.contains("overloaded") => Some(Failure::Unavailable {
                    cause: Cause::ErrorBody,
                    detail: detail(),
                }),
                _ if is_context_error(&lower) => Some(Failure::ContextTooLong { detail: detail() }),
                _ => Some(Failure::Unavailable {
                    cause: Cause::ErrorBody,
                    detail: detail(),
                }),
            }
        }
        429 if is_daily_quota(&lower) => Some(Failure::QuotaExhausted {
            retry_after: retry(),
            detail: detail(),
        }),
        429 => Some(Failure::RateLimited {
            retry_after: retry(),
            detail: detail(),
        }),
        // OpenRouter answers 402 when credits are spent.
        402 => Some(Failure::QuotaExhausted {
            retry_after: retry(),
            detail: detail(),
        }),
        401 | 403 => Some(Failure::AuthRejected {
            status,
            detail: detail(),
        }),
        400 | 413 | 422 if is_context_error(&lower) => {
            Some(Failure::ContextTooLong { detail: detail() })
        }
        408 => Some(Failure::Unavailable {
            cause: Cause::Timeout,
            detail: detail(),
        }),
        400..=499 => Some(Failure::BadRequest {
            status,
            detail: detail(),
        }),
        _ => Some(Failure::Unavailable {
            cause: Cause::Status(status),
            detail: detail(),
        }),
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
    let head: String = data
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(24)
        .collect();
    head.starts_with("{\"error\"") || head.starts_with("{\"type\":\"error\"")
}

/// `"code": 429` (Gemini, OpenAI-compatible errors) inside an error body.
fn embedded_code(lower: &str) -> Option<u16> {
    let i = lower.find("\"code\"")?;
    let rest = lower[i + 6..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .trim_start_matches('"');
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

/// How long the provider asks us to wait, from headers or the body, if it says.
pub fn retry_delay(headers: &HeaderMap, body: &str, now_unix_ms: i64) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_millis(ms.max(0.0) as u64));
    }
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return Some(Duration::from_millis((secs.max(0.0) * 1000.0) as u64));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            let at_ms = at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            return Some(Duration::from_millis((at_ms - now_unix_ms).max(0) as u64));
        }
    }
    // The exhausted window's reset; if none says it is exhausted, the longest one.
    let windows = quota_headers(headers, now_unix_ms);
    let exhausted = windows
        .iter()
        .filter(|w| w.remaining == Some(0))
        .filter_map(|w| w.reset_in)
        .max();
    if let Some(d) = exhausted.or_else(|| windows.iter().filter_map(|w| w.reset_in).max()) {
        return Some(d);
    }
    // Gemini: `"retryDelay": "34s"` in a RetryInfo detail.
    if let Some(d) = after_key(body, "\"retryDelay\"").and_then(parse_duration) {
        return Some(d);
    }
    // OpenAI/Groq messages: "Please try again in 7.66s."
    let lower = body.to_ascii_lowercase();
    let i = lower.find("try again in ")?;
    let word: String = lower[i + 13..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    parse_duration(word.trim_end_matches('.'))
}

/// The string value following `key` in JSON-ish text.
fn after_key<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let i = text.find(key)?;
    let rest = text[i + key.len()..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    rest.split('"').next()
}

/// Go-style durations (`6m0s`, `1.5s`, `20ms`, `1h2m3.5s`, `34s`, `0.5`) as providers send them.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[u..];
    }
    (total.is_finite()).then(|| Duration::from_secs_f64(total))
}

/// What a provider says about one of its windows in response headers.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderWindow {
    pub kind: WindowKind,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset_in: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Requests,
    Tokens,
}

/// The rate-limit windows in response headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
/// (OpenAI, Groq; suffixed variants like `-requests-day` of Cerebras), OpenRouter's bare
/// `x-ratelimit-*` (requests; reset as epoch ms), and `anthropic-ratelimit-*-{limit,remaining,reset}`.
pub fn quota_headers(headers: &HeaderMap, now_unix_ms: i64) -> Vec<HeaderWindow> {
    let mut out = Vec::new();
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let int = |name: &str| {
        get(name)
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v.max(0.0) as u64)
    };
    for name in headers.keys() {
        let n = name.as_str();
        if let Some(suffix) = n.strip_prefix("x-ratelimit-remaining") {
            let kind = if suffix.contains("token") {
                WindowKind::Tokens
            } else {
                WindowKind::Requests
            };
            let reset = get(&format!("x-ratelimit-reset{suffix}"))
                .and_then(|v| reset_value(v, now_unix_ms));
            out.push(HeaderWindow {
                kind,
                limit: int(&format!("x-ratelimit-limit{suffix}")),
                remaining: int(n),
                reset_in: reset,
            });
        } else if let Some(mid) = n
            .strip_prefix("anthropic-ratelimit-")
            .and_then(|r| r.strip_suffix("-remaining"))
        {
            let kind = if mid.contains("token") {
                WindowKind::Tokens
            } else {
                WindowKind::Requests
            };
            let reset = get(&format!("anthropic-ratelimit-{mid}-reset"))
                .and_then(parse_rfc3339_ms)
                .map(|at| Duration::from_millis((at - now_unix_ms).max(0) as u64));
            out.push(HeaderWindow {
                kind,
                limit: int(&format!("anthropic-ratelimit-{mid}-limit")),
                remaining: int(n),
                reset_in: reset,
            });
        }
    }
    out
}

/// A reset header value: a Go duration, seconds, or an epoch timestamp in s or ms (OpenRouter).
fn reset_value(v: &str, now_unix_ms: i64) -> Option<Duration> {
    if let Ok(n) = v.parse::<f64>() {
        let at_ms = if n > 1e12 {
            n as i64
        } else if n > 1e9 {
            (n * 1000.0) as i64
        } else {
            return Some(Duration::from_secs_f64(n.max(0.0)));
        };
        return Some(Duration::from_millis((at_ms - now_unix_ms).max(0) as u64));
    }
    parse_duration(v).or_else(|| {
        parse_rfc3339_ms(v).map(|at| Duration::from_millis((at - now_unix_ms).max(0) as u64))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    const NOW: i64 = 1_751_371_200_000; // 2025-07-01T12:00:00Z

    #[test]
    fn durations_as_providers_write_them() {
        assert_eq!(parse_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(
            parse_duration("2m59.56s"),
            Some(Duration::from_millis(179_560))
        );
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn retry_after_seconds_date_and_reset_headers() {
        let d = |hs: &[(&'static str, &str)], body: &str| retry_delay(&h(hs), body, NOW);
        assert_eq!(
            d(&[("retry-after", "17")], ""),
            Some(Duration::from_secs(17))
        );
        assert_eq!(
            d(&[("retry-after", "Tue, 01 Jul 2025 12:00:30 GMT")], ""),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            d(&[("retry-after-ms", "250")], ""),
            Some(Duration::from_millis(250))
        );
        let openai = [
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-remaining-tokens", "1000"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ];
        assert_eq!(d(&openai, ""), Some(Duration::from_secs(360)));
        let anthropic = [
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2025-07-01T12:01:00Z"),
        ];
        assert_eq!(d(&anthropic, ""), Some(Duration::from_secs(60)));
        let openrouter = [
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1751371210000"),
        ];
        assert_eq!(d(&openrouter, ""), Some(Duration::from_secs(10)));
        let gemini = r#"[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34s"}]}}]"#;
        assert_eq!(d(&[], gemini), Some(Duration::from_secs(34)));
        let groq = r#"{"error":{"message":"Rate limit reached. Please try again in 7.66s. Visit ...","code":"rate_limit_exceeded"}}"#;
        assert_eq!(d(&[], groq), Some(Duration::from_millis(7660)));
        assert_eq!(d(&[], "{}"), None);
    }

    #[test]
    fn each_status_gets_its_class() {
        let c = |status, body: &str| classify(status, &HeaderMap::new(), body.as_bytes(), NOW);
        assert_eq!(c(200, r#"{"id":"x","choices":[]}"#), None);
        assert!(matches!(
            c(429, "{}"),
            Some(Failure::RateLimited {
                retry_after: None,
                ..
            })
        ));
        let daily = r#"{"error":{"code":429,"message":"Quota exceeded for metric: generate_content_free_tier_requests, limit: 250","details":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}}"#;
        assert!(matches!(
            c(429, daily),
            Some(Failure::QuotaExhausted { .. })
        ));
        let groq_daily = r#"{"error":{"message":"Rate limit reached for model `x` on tokens per day (TPD): Limit 500000"}}"#;
        assert!(matches!(
            c(429, groq_daily),
            Some(Failure::QuotaExhausted { .. })
        ));
        assert!(matches!(
            c(503, ""),
            Some(Failure::Unavailable {
                cause: Cause::Status(503),
                ..
            })
        ));
        assert!(matches!(
            c(529, "overloaded"),
            Some(Failure::Unavailable { .. })
        ));
        assert!(matches!(
            c(401, "bad key"),
            Some(Failure::AuthRejected { status: 401, .. })
        ));
        assert!(matches!(
            c(403, ""),
            Some(Failure::AuthRejected { status: 403, .. })
        ));
        let ctx = r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#;
        assert!(matches!(c(400, ctx), Some(Failure::ContextTooLong { .. })));
        let anth = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
        assert!(matches!(c(400, anth), Some(Failure::ContextTooLong { .. })));
        let bad = r#"{"error":{"message":"messages: field required"}}"#;
        let f = c(400, bad).unwrap();
        assert!(
            matches!(&f, Failure::BadRequest { status: 400, detail } if detail == "messages: field required")
        );
        assert!(!f.retryable());
        assert!(matches!(
            c(404, ""),
            Some(Failure::BadRequest { status: 404, .. })
        ));
    }

    #[test]
    fn a_200_with_an_error_is_that_error() {
        let c = |body: &str| classify(200, &HeaderMap::new(), body.as_bytes(), NOW);
        let sse = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        assert!(matches!(
            c(sse),
            Some(Failure::Unavailable {
                cause: Cause::ErrorBody,
                ..
            })
        ));
        let gemini = r#"[{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}]"#;
        assert!(matches!(c(gemini), Some(Failure::RateLimited { .. })));
        let chat = "data: {\"error\":{\"message\":\"context_length_exceeded\",\"code\":400}}\n\n";
        assert!(matches!(c(chat), Some(Failure::ContextTooLong { .. })));
        assert_eq!(
            c("data: {\"id\":\"1\",\"choices\":[{\"delta\":{\"content\":\"error\"}}]}\n\n"),
            None
        );
    }

    #[test]
    fn quota_headers_are_read() {
        let hs = h(&[
            ("x-ratelimit-limit-requests", "30"),
            ("x-ratelimit-remaining-requests", "29"),
            ("x-ratelimit-reset-requests", "2s"),
            ("x-ratelimit-limit-tokens-minute", "60000"),
            ("x-ratelimit-remaining-tokens-minute", "59000"),
            ("x-ratelimit-reset-tokens-minute", "30.5"),
        ]);
        let mut w = quota_headers(&hs, NOW);
        w.sort_by_key(|w| w.limit);
        assert_eq!(
            w[0],
            HeaderWindow {
                kind: WindowKind::Requests,
                limit: Some(30),
                remaining: Some(29),
                reset_in: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(w[1].kind, WindowKind::Tokens);
        assert_eq!(w[1].reset_in, Some(Duration::from_millis(30_500)));
    }
}
