//! Reading providers' rate-limit hints: `retry-after` (seconds or HTTP date), Go-style reset
//! durations, `x-ratelimit-*` / `anthropic-ratelimit-*` windows, Gemini's `RetryInfo`.

use std::time::Duration;

use http::HeaderMap;

/// How long the provider asks us to wait, from headers or the body, if it says.
pub fn retry_delay(headers: &HeaderMap, body: &str, now_unix_ms: i64) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_millis(ms.max(0.0) as u64));
    }
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return Some(Duration::from_millis((secs.max(0.0) * 1000.0) as u64));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            let at_ms = at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
            return Some(Duration::from_millis((at_ms - now_unix_ms).max(0) as u64));
        }
    }
    // The exhausted window's reset; if none says it is exhausted, the longest one.
    let windows = quota_headers(headers, now_unix_ms);
    let exhausted = windows.iter().filter(|w| w.remaining == Some(0)).filter_map(|w| w.reset_in).max();
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
    let word: String = lower[i + 13..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
    parse_duration(word.trim_end_matches('.'))
}

/// The string value following `key` in JSON-ish text.
fn after_key<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let i = text.find(key)?;
    let rest = text[i + key.len()..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
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
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
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
    /// Which window the header names, when it says.
    pub span: Span,
}

/// The window a rate-limit header is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Minute,
    Day,
    /// Not named (`x-ratelimit-limit-requests`): the reset tells.
    Unknown,
    /// A window the pool does not track (a month, five minutes) or a partial count
    /// (Anthropic's input/output tokens).
    Other,
}

/// `-requests-day` -> Day, `-tokens-minute` -> Minute, `-requests` -> Unknown, `-tokens-month` -> Other.
fn span_of(suffix: &str) -> Span {
    let rest = ["-requests", "-tokens", "-req", "-tok"].iter().find_map(|p| suffix.strip_prefix(p)).unwrap_or(suffix);
    match rest {
        "" => Span::Unknown,
        "-minute" => Span::Minute,
        "-day" => Span::Day,
        _ => Span::Other,
    }
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
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let int = |name: &str| get(name).and_then(|v| v.parse::<f64>().ok()).map(|v| v.max(0.0) as u64);
    for name in headers.keys() {
        let n = name.as_str();
        if let Some(suffix) = n.strip_prefix("x-ratelimit-remaining") {
            let kind = if suffix.contains("token") { WindowKind::Tokens } else { WindowKind::Requests };
            let reset = get(&format!("x-ratelimit-reset{suffix}")).and_then(|v| reset_value(v, now_unix_ms));
            out.push(HeaderWindow {
                kind,
                limit: int(&format!("x-ratelimit-limit{suffix}")),
                remaining: int(n),
                reset_in: reset,
                span: span_of(suffix),
            });
        } else if let Some(mid) = n.strip_prefix("anthropic-ratelimit-").and_then(|r| r.strip_suffix("-remaining")) {
            let kind = if mid.contains("token") { WindowKind::Tokens } else { WindowKind::Requests };
            let reset = get(&format!("anthropic-ratelimit-{mid}-reset"))
                .and_then(parse_rfc3339_ms)
                .map(|at| Duration::from_millis((at - now_unix_ms).max(0) as u64));
            // Anthropic's windows are per minute; input/output tokens are each a part of one.
            let span = if mid == "requests" || mid == "tokens" { Span::Minute } else { Span::Other };
            out.push(HeaderWindow {
                kind,
                limit: int(&format!("anthropic-ratelimit-{mid}-limit")),
                remaining: int(n),
                reset_in: reset,
                span,
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
    parse_duration(v).or_else(|| parse_rfc3339_ms(v).map(|at| Duration::from_millis((at - now_unix_ms).max(0) as u64)))
}

/// An RFC 3339 timestamp (`2025-01-01T12:00:00Z`, fractions and `+hh:mm` offsets allowed) in
/// unix milliseconds.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    s.trim().parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
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
        assert_eq!(parse_duration("2m59.56s"), Some(Duration::from_millis(179_560)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn retry_after_seconds_date_and_reset_headers() {
        let d = |hs: &[(&'static str, &str)], body: &str| retry_delay(&h(hs), body, NOW);
        assert_eq!(d(&[("retry-after", "17")], ""), Some(Duration::from_secs(17)));
        assert_eq!(d(&[("retry-after", "Tue, 01 Jul 2025 12:00:30 GMT")], ""), Some(Duration::from_secs(30)));
        assert_eq!(d(&[("retry-after-ms", "250")], ""), Some(Duration::from_millis(250)));
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
        let openrouter = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1751371210000")];
        assert_eq!(d(&openrouter, ""), Some(Duration::from_secs(10)));
        let gemini = r#"[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34s"}]}}]"#;
        assert_eq!(d(&[], gemini), Some(Duration::from_secs(34)));
        let groq = r#"{"error":{"message":"Rate limit reached. Please try again in 7.66s. Visit ...","code":"rate_limit_exceeded"}}"#;
        assert_eq!(d(&[], groq), Some(Duration::from_millis(7660)));
        assert_eq!(d(&[], "{}"), None);
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
                reset_in: Some(Duration::from_secs(2)),
                span: Span::Unknown,
            }
        );
        assert_eq!(w[1].kind, WindowKind::Tokens);
        assert_eq!(w[1].span, Span::Minute);
        assert_eq!(w[1].reset_in, Some(Duration::from_millis(30_500)));
    }

    #[test]
    fn rfc3339_reset_times() {
        let noon = 1_751_371_200_000; // 2025-07-01T12:00:00Z
        assert_eq!(parse_rfc3339_ms("2025-07-01T12:00:00Z"), Some(noon));
        assert_eq!(parse_rfc3339_ms("2025-07-01T12:00:00.25Z"), Some(noon + 250));
        assert_eq!(parse_rfc3339_ms("2025-07-01T14:00:00+02:00"), Some(noon));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
