//! The Gemini API's own shapes: the model and method named in the URL
//! (`/v1beta/models/{model}:streamGenerateContent?alt=sse`), the API key in `x-goog-api-key` or
//! `?key=`, `usageMetadata`, and Google's error bodies with their `google.rpc` details.

pub mod rpc;

use serde_json::{json, Value};

use super::errors::ErrorClass;

/// What a Gemini request asks for: its method, in the URL after the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Generate,
    /// `streamGenerateContent`: server-sent events with `alt=sse`, else a JSON array sent in pieces.
    StreamGenerate,
    CountTokens,
}

impl Method {
    fn wire(self) -> &'static str {
        match self {
            Method::Generate => "generateContent",
            Method::StreamGenerate => "streamGenerateContent",
            Method::CountTokens => "countTokens",
        }
    }
}

/// A Gemini request's URL, read: `POST /v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub model: String,
    pub method: Method,
    /// `alt=sse`: the stream comes as server-sent events.
    pub sse: bool,
}

/// API versions a Gemini client may put before `/models/`. A provider's base URL names the one
/// it is reached at (`.../v1beta`); the route after it is the same for all.
const VERSIONS: [&str; 3] = ["/v1beta", "/v1alpha", "/v1"];

impl Call {
    /// Reads `path` (and its query) as a Gemini call; `None` when it is not one.
    pub fn parse(path: &str, query: Option<&str>) -> Option<Call> {
        let rest = VERSIONS.iter().find_map(|v| path.strip_prefix(v)?.strip_prefix("/models/"))?;
        let (model, method) = rest.rsplit_once(':')?;
        let method =
            [Method::Generate, Method::StreamGenerate, Method::CountTokens].into_iter().find(|m| m.wire() == method)?;
        if model.is_empty() || model.contains('/') {
            return None;
        }
        let sse = query_param(query, "alt").is_some_and(|v| v == "sse");
        Some(Call { model: model.to_string(), method, sse })
    }

    /// Whether the answer streams.
    pub fn streams(&self) -> bool {
        self.method == Method::StreamGenerate
    }

    /// The path under a Gemini base URL (which ends in its version, `.../v1beta`) for `model`.
    pub fn path_for(&self, model: &str) -> String {
        format!("/models/{model}:{}", self.method.wire())
    }

    /// A call to send a translated request to a Gemini target: streams go as server-sent events.
    pub fn for_target(model: &str, stream: bool) -> Call {
        let method = if stream { Method::StreamGenerate } else { Method::Generate };
        Call { model: model.to_string(), method, sse: stream }
    }

    /// The query a translated request carries (`alt=sse` for a stream).
    pub fn query(&self) -> Option<&'static str> {
        self.sse.then_some("alt=sse")
    }
}

/// A Gemini base URL from a server's URL: the URL itself when it ends in an API version
/// (`/v1beta`, `/v1alpha`, `/v1`), else the URL + `/v1beta`.
pub fn base_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if VERSIONS.iter().any(|v| url.ends_with(v)) {
        url.to_string()
    } else {
        format!("{url}/v1beta")
    }
}

/// The value of `name` in a query string (not percent-decoded: the proxy only compares it).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| match kv.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        None if kv == name => Some(""),
        _ => None,
    })
}

/// `query` without the `key=` parameter (a key the proxy replaces or moves to a header), or `None`
/// when nothing is left.
pub fn query_without_key(query: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = query?.split('&').filter(|kv| !kv.is_empty() && !kv.starts_with("key=")).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The field a Gemini answer reports its token counts in.
pub const USAGE_FIELD: &str = "usageMetadata";

/// Token counts of a `usageMetadata` object: `(prompt, cached, output)`. The prompt count
/// includes the cached tokens and the tool-use prompt; the output counts thinking, which is
/// billed as output.
pub fn usage_counts(u: &Value) -> (u64, u64, u64) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("promptTokenCount") + n("toolUsePromptTokenCount");
    let cached = n("cachedContentTokenCount").min(prompt);
    (prompt, cached, n("candidatesTokenCount") + n("thoughtsTokenCount"))
}

/// A `usageMetadata` object from token counts (`input` excludes the `cached` tokens).
pub fn usage_json(input: u64, cached: u64, output: u64, thoughts: u64) -> Value {
    let prompt = input + cached;
    let mut u = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": output.saturating_sub(thoughts),
        "totalTokenCount": prompt + output,
    });
    if cached > 0 {
        u["cachedContentTokenCount"] = json!(cached);
    }
    if thoughts > 0 {
        u["thoughtsTokenCount"] = json!(thoughts);
    }
    u
}

/// Google's canonical status name for an error class (the `status` of an error body).
pub fn status_name(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::InvalidRequest | ErrorClass::TooLarge => "INVALID_ARGUMENT",
        ErrorClass::Authentication => "UNAUTHENTICATED",
        ErrorClass::Permission => "PERMISSION_DENIED",
        ErrorClass::NotFound => "NOT_FOUND",
        ErrorClass::RateLimit => "RESOURCE_EXHAUSTED",
        ErrorClass::Api => "INTERNAL",
        ErrorClass::Overloaded => "UNAVAILABLE",
        ErrorClass::Timeout => "DEADLINE_EXCEEDED",
    }
}

/// The HTTP status Google answers with for an error class.
pub fn http_status(class: ErrorClass) -> u16 {
    match class {
        ErrorClass::InvalidRequest | ErrorClass::TooLarge => 400,
        ErrorClass::Authentication => 401,
        ErrorClass::Permission => 403,
        ErrorClass::NotFound => 404,
        ErrorClass::RateLimit => 429,
        ErrorClass::Api => 500,
        ErrorClass::Overloaded => 503,
        ErrorClass::Timeout => 504,
    }
}

/// The class of a Google status name.
pub fn class_of_status(status: &str) -> Option<ErrorClass> {
    Some(match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => ErrorClass::InvalidRequest,
        "UNAUTHENTICATED" => ErrorClass::Authentication,
        "PERMISSION_DENIED" => ErrorClass::Permission,
        "NOT_FOUND" => ErrorClass::NotFound,
        "RESOURCE_EXHAUSTED" => ErrorClass::RateLimit,
        "UNAVAILABLE" => ErrorClass::Overloaded,
        "DEADLINE_EXCEEDED" => ErrorClass::Timeout,
        "INTERNAL" | "UNKNOWN" | "ABORTED" | "UNIMPLEMENTED" | "DATA_LOSS" => ErrorClass::Api,
        _ => return None,
    })
}

/// `{"error": {"code", "message", "status"}}` with `code` the HTTP status the answer carries.
pub fn error_value(code: u16, class: ErrorClass, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message, "status": status_name(class) } })
}

/// The error object of a Google error body: `{"error": {...}}`, or the same as the first element
/// of an array (what `streamGenerateContent` without `alt=sse` answers).
pub fn error_object(body: &Value) -> Option<&Value> {
    let top = match body {
        Value::Array(items) => items.first()?,
        other => other,
    };
    top.get("error").filter(|e| e.is_object())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_read_as_calls() {
        let c = Call::parse("/v1beta/models/gemini-2.5-pro:streamGenerateContent", Some("alt=sse")).unwrap();
        assert_eq!((c.model.as_str(), c.method, c.sse), ("gemini-2.5-pro", Method::StreamGenerate, true));
        assert_eq!(c.path_for("other"), "/models/other:streamGenerateContent");
        let c = Call::parse("/v1/models/m:generateContent", Some("key=abc")).unwrap();
        assert_eq!((c.method, c.sse), (Method::Generate, false));
        assert_eq!(Call::parse("/v1beta/models/m:countTokens", None).unwrap().method, Method::CountTokens);
        for bad in [
            "/v1/messages",
            "/v1beta/models/m",
            "/v1beta/models/:generateContent",
            "/v1beta/models/a/b:generateContent",
            "/v1beta/models/m:embedContent",
            "/v2/models/m:generateContent",
        ] {
            assert_eq!(Call::parse(bad, None), None, "{bad}");
        }
        let t = Call::for_target("gemini-x", true);
        assert_eq!(
            (t.path_for("gemini-x"), t.query()),
            ("/models/gemini-x:streamGenerateContent".into(), Some("alt=sse"))
        );
        assert_eq!(Call::for_target("g", false).query(), None);
    }

    #[test]
    fn base_urls_get_the_api_version() {
        assert_eq!(
            base_url("https://generativelanguage.googleapis.com/"),
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(base_url("http://127.0.0.1:9/v1"), "http://127.0.0.1:9/v1");
        assert_eq!(base_url("http://h/v1alpha"), "http://h/v1alpha");
    }

    #[test]
    fn the_key_is_taken_out_of_queries() {
        assert_eq!(query_without_key(Some("alt=sse&key=k1")).as_deref(), Some("alt=sse"));
        assert_eq!(query_without_key(Some("key=k1")), None);
        assert_eq!(query_without_key(None), None);
        assert_eq!(query_param(Some("key=k1&alt=sse"), "key"), Some("k1"));
        assert_eq!(query_param(Some("monkey=1"), "key"), None);
    }

    #[test]
    fn usage_counts_thinking_as_output_and_cache_inside_the_prompt() {
        let u = json!({"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 7, "thoughtsTokenCount": 30, "totalTokenCount": 137});
        assert_eq!(usage_counts(&u), (100, 60, 37));
        let back = usage_json(40, 60, 37, 30);
        assert_eq!(usage_counts(&back), (100, 60, 37));
        assert_eq!(back["candidatesTokenCount"], 7);
    }

    #[test]
    fn errors_in_googles_shape() {
        let v = error_value(429, ErrorClass::RateLimit, "slow down");
        assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(v["error"]["code"], 429);
        let arr = json!([v.clone()]);
        assert_eq!(error_object(&arr), Some(&v["error"]));
        assert_eq!(class_of_status("UNAVAILABLE"), Some(ErrorClass::Overloaded));
        for c in [ErrorClass::InvalidRequest, ErrorClass::RateLimit, ErrorClass::Timeout, ErrorClass::NotFound] {
            assert_eq!(class_of_status(status_name(c)), Some(c));
        }
    }
}
