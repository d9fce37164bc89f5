//! OpenAI Chat Completions response -> Gemini `GenerateContentResponse` (and, through Chat,
//! Anthropic and Responses answers), and the pieces the stream translator writes too.

use serde_json::{json, Value};

use super::to_anthropic::reasoning_text;
use crate::dialect::gemini::usage_json;
use crate::dialect::translate::common::{parse_arguments, usage_from_chat};
use crate::dialect::translate::gemini_common::gemini_finish;
use crate::dialect::translate::json::Get;
use crate::dialect::translate::ReplyContext;
use crate::dialect::usage::Usage;

pub(crate) fn from_chat(resp: &Value, reply: &ReplyContext) -> Value {
    let choice = resp.arr_of("choices").first().unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut parts = Vec::new();
    if let Some(t) = reasoning_text(msg) {
        parts.push(thought_part(t));
    }
    let text: String = ["content", "refusal"].iter().filter_map(|k| msg.str_of(k)).collect();
    if !text.is_empty() {
        parts.push(json!({ "text": text }));
    }
    for call in msg.arr_of("tool_calls") {
        let f = call.get("function").unwrap_or(&Value::Null);
        parts.push(call_part(call.str_of("id"), f.str_of("name").unwrap_or(""), f.str_of("arguments").unwrap_or("")));
    }
    let usage = resp.get("usage").map(usage_from_chat).unwrap_or_default();
    let thoughts = reasoning_tokens(resp.get("usage"));
    let finish = gemini_finish(choice.str_of("finish_reason"));
    let answer =
        answer(resp.str_of("id"), resp.str_of("model").unwrap_or(""), parts, Some(finish), Some((&usage, thoughts)));
    if reply.gemini_array {
        json!([answer])
    } else {
        answer
    }
}

/// The reasoning tokens a Chat usage object counts among its output.
pub(crate) fn reasoning_tokens(usage: Option<&Value>) -> u64 {
    usage.and_then(|u| u.get("completion_tokens_details")).and_then(|d| d.u64_of("reasoning_tokens")).unwrap_or(0)
}

pub(crate) fn thought_part(text: &str) -> Value {
    json!({ "text": text, "thought": true })
}

/// A function call part; the client's id comes along so its response can name it.
pub(crate) fn call_part(id: Option<&str>, name: &str, arguments: &str) -> Value {
    let mut fc = json!({ "name": name, "args": parse_arguments(arguments) });
    if let Some(id) = id.filter(|i| !i.is_empty()) {
        fc["id"] = json!(id);
    }
    json!({ "functionCall": fc })
}

/// A `GenerateContentResponse` with one candidate.
pub(crate) fn answer(
    id: Option<&str>,
    model: &str,
    parts: Vec<Value>,
    finish: Option<&str>,
    usage: Option<(&Usage, u64)>,
) -> Value {
    let mut candidate = json!({ "content": { "role": "model", "parts": parts }, "index": 0 });
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    let mut out = json!({ "candidates": [candidate] });
    if let Some((u, thoughts)) = usage {
        out["usageMetadata"] = usage_json(u.input + u.cache_write, u.cache_read, u.output, thoughts);
    }
    out["modelVersion"] = json!(model);
    out["responseId"] = json!(id.filter(|i| !i.is_empty()).unwrap_or("tokenfold"));
    out
}
