//! Mappings shared by the request, response and stream translators: stop reasons, usage,
//! tool arguments, error classes.

use serde_json::{json, Value};

use super::json::Get;
use crate::dialect::errors::ErrorClass;
use crate::dialect::usage::Usage;

/// Anthropic `stop_reason` (and matched stop sequence) for a Chat `finish_reason`.
/// `matched` is the stop string some servers (vLLM) report next to `finish_reason: "stop"`.
pub(crate) fn anthropic_stop(
    finish: Option<&str>,
    has_tool_calls: bool,
    matched: Option<&str>,
) -> (&'static str, Option<String>) {
    match finish {
        // Some providers say `stop` even when the turn ends in tool calls.
        _ if has_tool_calls => ("tool_use", None),
        Some("length") => ("max_tokens", None),
        Some("tool_calls") | Some("function_call") => ("tool_use", None),
        Some("content_filter") => ("refusal", None),
        _ => match matched {
            Some(s) => ("stop_sequence", Some(s.to_string())),
            None => ("end_turn", None),
        },
    }
}

/// Chat `finish_reason` for an Anthropic `stop_reason`.
pub(crate) fn chat_finish(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// The stop string a Chat choice reports it matched, when the server says (vLLM `stop_reason`).
pub(crate) fn matched_stop(choice: &Value) -> Option<&str> {
    choice.str_of("stop_reason")
}

/// Usage from a Chat `usage` object. `prompt_tokens` includes cached tokens there.
pub(crate) fn usage_from_chat(u: &Value) -> Usage {
    let prompt = u.u64_of("prompt_tokens").unwrap_or(0);
    let cached = u
        .get("prompt_tokens_details")
        .and_then(|d| d.u64_of("cached_tokens"))
        // DeepSeek reports its cache hits at top level.
        .or_else(|| u.u64_of("prompt_cache_hit_tokens"))
        .unwrap_or(0)
        .min(prompt);
    Usage {
        input: prompt - cached,
        output: u.u64_of("completion_tokens").unwrap_or(0),
        cache_read: cached,
        cache_write: 0,
        cache_write_1h: 0,
    }
}

/// Folds an Anthropic `usage` object into `usage`: fields present overwrite (message_start
/// carries input counts, message_delta the cumulative output count and sometimes input again).
pub(crate) fn merge_anthropic_usage(usage: &mut Usage, u: &Value) {
    if let Some(n) = u.u64_of("input_tokens") {
        usage.input = n;
    }
    if let Some(n) = u.u64_of("output_tokens") {
        usage.output = n;
    }
    if let Some(n) = u.u64_of("cache_read_input_tokens") {
        usage.cache_read = n;
    }
    if let Some(n) = u.u64_of("cache_creation_input_tokens") {
        usage.cache_write = n;
    }
}

/// Usage from a Responses `usage` object (`input_tokens` includes cached tokens there).
pub(crate) fn usage_from_responses(u: &Value) -> Usage {
    let input = u.u64_of("input_tokens").unwrap_or(0);
    let cached = u.get("input_tokens_details").and_then(|d| d.u64_of("cached_tokens")).unwrap_or(0).min(input);
    Usage {
        input: input - cached,
        output: u.u64_of("output_tokens").unwrap_or(0),
        cache_read: cached,
        cache_write: 0,
        cache_write_1h: 0,
    }
}

/// Usage from a Gemini `usageMetadata` object (the prompt count includes cached tokens there;
/// thinking counts as output).
pub(crate) fn usage_from_gemini(u: &Value) -> Usage {
    let (prompt, cached, output) = crate::dialect::gemini::usage_counts(u);
    Usage { input: prompt - cached, output, cache_read: cached, cache_write: 0, cache_write_1h: 0 }
}

pub(crate) fn anthropic_usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input,
        "output_tokens": u.output,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
    })
}

pub(crate) fn chat_usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.total_input(),
        "completion_tokens": u.output,
        "total_tokens": u.total_input() + u.output,
        "prompt_tokens_details": { "cached_tokens": u.cache_read },
    })
}

pub(crate) fn responses_usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.total_input(),
        "input_tokens_details": {
            "cached_tokens": u.cache_read,
            "cache_write_tokens": u.cache_write,
        },
        "output_tokens": u.output,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": u.total_input() + u.output,
    })
}

/// Tool-call arguments (a JSON string on OpenAI wires) as the object Anthropic wants. Arguments
/// that are not a JSON object are kept under `raw_arguments` rather than failing the whole
/// conversation: agents replay a model's broken calls in later turns.
pub(crate) fn parse_arguments(args: &str) -> Value {
    if args.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "raw_arguments": args }),
    }
}

/// An Anthropic `tool_use` block as a Chat `tool_calls` entry.
pub(crate) fn chat_tool_call(block: &Value) -> Value {
    json!({
        "id": block.str_of("id").unwrap_or(""),
        "type": "function",
        "function": {
            "name": block.str_of("name").unwrap_or(""),
            "arguments": super::json::to_string(block.get("input").unwrap_or(&json!({}))),
        },
    })
}

/// Error class named by an error `type`/`code` string of either family.
pub(crate) fn class_from_type(t: &str) -> Option<ErrorClass> {
    Some(match t {
        "invalid_request_error" | "invalid_request" => ErrorClass::InvalidRequest,
        "authentication_error" | "invalid_api_key" => ErrorClass::Authentication,
        "permission_error" => ErrorClass::Permission,
        "not_found_error" | "model_not_found" => ErrorClass::NotFound,
        "request_too_large" => ErrorClass::TooLarge,
        "rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota" => ErrorClass::RateLimit,
        "overloaded_error" => ErrorClass::Overloaded,
        "timeout_error" => ErrorClass::Timeout,
        "api_error" | "server_error" => ErrorClass::Api,
        // Google's status names (Gemini).
        other => return crate::dialect::gemini::class_of_status(other),
    })
}

pub(crate) fn class_from_status(status: u16) -> ErrorClass {
    match status {
        400 | 422 => ErrorClass::InvalidRequest,
        401 => ErrorClass::Authentication,
        402 | 403 => ErrorClass::Permission,
        404 => ErrorClass::NotFound,
        413 => ErrorClass::TooLarge,
        429 => ErrorClass::RateLimit,
        408 | 504 => ErrorClass::Timeout,
        503 | 529 => ErrorClass::Overloaded,
        _ => ErrorClass::Api,
    }
}

/// The class and message of an error object of any family (`{"type","message"}` inside
/// `error`, Google's `{"code","message","status"}`, or `error` itself a string).
pub(crate) fn error_parts(err: &Value) -> (Option<ErrorClass>, Option<String>) {
    if let Some(s) = err.as_str() {
        return (None, Some(s.to_string()));
    }
    let class = ["type", "code", "status"].iter().find_map(|k| err.str_of(k).and_then(class_from_type));
    (class, err.str_of("message").map(str::to_string))
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
