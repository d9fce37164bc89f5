//! The `google.rpc` details of a Google error body that say how long to wait and which quota was
//! hit: `RetryInfo` (`retryDelay: "26s"`) and `QuotaFailure` (`violations[].quotaId` such as
//! `GenerateRequestsPerDayPerProjectPerModel-FreeTier`, with its `quotaValue`).

use std::time::Duration;

use serde_json::Value;

/// The window a quota counts over, from its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaWindow {
    Minute,
    Day,
    /// A quota id that names neither (or none was given).
    Unknown,
}

/// What a 429's details say.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaHint {
    /// `RetryInfo.retryDelay`.
    pub retry_after: Option<Duration>,
    /// The longest window among the violated quotas: a spent daily quota outlasts a minute's.
    pub window: QuotaWindow,
    /// The violated quota's limit (`quotaValue`), and its metric and model when given.
    pub limit: Option<u64>,
    pub metric: Option<String>,
    pub model: Option<String>,
}

/// Reads the details of a Google error body (object or one-element array). `None` when the body
/// is no such error or has neither detail.
pub fn quota_hint(body: &[u8]) -> Option<QuotaHint> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = super::error_object(&v)?;
    let details = err.get("details")?.as_array()?;
    let mut hint =
        QuotaHint { retry_after: None, window: QuotaWindow::Unknown, limit: None, metric: None, model: None };
    let (mut found_retry, mut found_quota) = (false, false);
    for d in details {
        let kind = d.get("@type").and_then(Value::as_str).unwrap_or("");
        if kind.ends_with("google.rpc.RetryInfo") {
            hint.retry_after = d.get("retryDelay").and_then(Value::as_str).and_then(seconds);
            found_retry |= hint.retry_after.is_some();
        } else if kind.ends_with("google.rpc.QuotaFailure") {
            for violation in d.get("violations").and_then(Value::as_array).into_iter().flatten() {
                let id = violation.get("quotaId").and_then(Value::as_str).unwrap_or("");
                let window = window_of(id);
                // The first violation of the longest window says what was spent.
                if found_quota && rank(window) <= rank(hint.window) {
                    continue;
                }
                found_quota = true;
                hint.window = window;
                hint.limit = violation
                    .get("quotaValue")
                    .and_then(|q| q.as_u64().or_else(|| q.as_str().and_then(|s| s.trim().parse().ok())));
                hint.metric = violation.get("quotaMetric").and_then(Value::as_str).map(str::to_string);
                hint.model = violation
                    .get("quotaDimensions")
                    .and_then(|dims| dims.get("model"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
    }
    (found_retry || found_quota).then_some(hint)
}

fn rank(w: QuotaWindow) -> u8 {
    match w {
        QuotaWindow::Unknown => 0,
        QuotaWindow::Minute => 1,
        QuotaWindow::Day => 2,
    }
}

/// `GenerateRequestsPerDayPerProjectPerModel-FreeTier` -> Day,
/// `GenerateContentInputTokensPerModelPerMinute-FreeTier` -> Minute.
fn window_of(quota_id: &str) -> QuotaWindow {
    let id = quota_id.to_ascii_lowercase();
    if id.contains("perday") {
        QuotaWindow::Day
    } else if id.contains("perminute") {
        QuotaWindow::Minute
    } else {
        QuotaWindow::Unknown
    }
}

/// A `google.protobuf.Duration` in its JSON form: seconds with an `s` (`"26s"`, `"0.5s"`).
fn seconds(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_MINUTE: &str = r#"{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[
        {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_input_token_count","quotaId":"GenerateContentInputTokensPerModelPerMinute-FreeTier","quotaDimensions":{"location":"global","model":"gemini-x-flash"},"quotaValue":"250000"}]},
        {"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]},
        {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}]}}"#;

    #[test]
    fn a_minute_quota_with_its_delay() {
        let h = quota_hint(PER_MINUTE.as_bytes()).unwrap();
        assert_eq!(h.retry_after, Some(Duration::from_secs(26)));
        assert_eq!(h.window, QuotaWindow::Minute);
        assert_eq!(h.limit, Some(250_000));
        assert_eq!(h.model.as_deref(), Some("gemini-x-flash"));
    }

    #[test]
    fn the_day_outranks_the_minute_in_any_order() {
        let day = r#"{"quotaMetric":"m/requests","quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier","quotaValue":"250"}"#;
        let minute = r#"{"quotaMetric":"m/requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaValue":"10"}"#;
        for order in [[day, minute], [minute, day]] {
            let body = format!(
                r#"[{{"error":{{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{},{}]}}]}}}}]"#,
                order[0], order[1]
            );
            let h = quota_hint(body.as_bytes()).unwrap();
            assert_eq!((h.window, h.limit, h.retry_after), (QuotaWindow::Day, Some(250), None), "{body}");
        }
    }

    #[test]
    fn bodies_without_details_say_nothing() {
        assert_eq!(
            quota_hint(
                br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#
            ),
            None
        );
        assert_eq!(quota_hint(b"not json"), None);
        assert_eq!(quota_hint(br#"{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.Help"}]}}"#), None);
        let retry_only =
            br#"{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}}"#;
        let h = quota_hint(retry_only).unwrap();
        assert_eq!((h.retry_after, h.window), (Some(Duration::from_millis(1500)), QuotaWindow::Unknown));
    }
}
