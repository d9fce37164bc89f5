//! Anthropic Messages or OpenAI Responses response -> OpenAI Chat Completions response.

use serde_json::{json, Value};

use crate::dialect::gemini::USAGE_FIELD;
use crate::dialect::translate::common::{
    chat_finish, chat_tool_call, chat_usage_json, merge_anthropic_usage, now_secs, usage_from_gemini,
    usage_from_responses,
};
use crate::dialect::translate::gemini_common::{chat_finish as gemini_finish_to_chat, client_call_id};
use crate::dialect::translate::json::{join, to_string, Get};
use crate::dialect::usage::Usage;

pub(crate) fn from_anthropic(resp: &Value) -> Value {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    for block in resp.arr_of("content") {
        match block.str_of("type") {
            // Text blocks of one message are one continuous text (citations split it).
            Some("text") => text.push_str(block.str_of("text").unwrap_or("")),
            Some("thinking") => thinking.push_str(block.str_of("thinking").unwrap_or("")),
            Some("tool_use") => calls.push(chat_tool_call(block)),
            _ => {}
        }
    }
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
    let mut message = json!({ "role": "assistant", "content": content, "refusal": null });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !thinking.is_empty() {
        message["reasoning_content"] = Value::String(thinking);
    }
    let mut usage = Usage::default();
    if let Some(u) = resp.get("usage") {
        merge_anthropic_usage(&mut usage, u);
    }
    let created = now_secs();
    completion(
        resp.str_of("id").unwrap_or("chatcmpl-tokenfold"),
        resp,
        created,
        message,
        chat_finish(resp.str_of("stop_reason")),
        &usage,
    )
}

pub(crate) fn from_responses(resp: &Value) -> Value {
    let mut text = String::new();
    let mut refusal = String::new();
    let mut reasoning = Vec::new();
    let mut calls = Vec::new();
    for item in resp.arr_of("output") {
        match item.str_of("type") {
            Some("message") => {
                for part in item.arr_of("content") {
                    match part.str_of("type") {
                        Some("output_text") => text.push_str(part.str_of("text").unwrap_or("")),
                        Some("refusal") => refusal.push_str(part.str_of("refusal").unwrap_or("")),
                        _ => {}
                    }
                }
            }
            Some("reasoning") => reasoning.push(responses_reasoning(item)),
            Some("function_call") => calls.push(json!({
                "id": item.str_of("call_id").unwrap_or(""),
                "type": "function",
                "function": {
                    "name": item.str_of("name").unwrap_or(""),
                    "arguments": item.str_of("arguments").unwrap_or(""),
                },
            })),
            _ => {}
        }
    }
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
    let refusal = if refusal.is_empty() { Value::Null } else { Value::String(refusal) };
    let mut message = json!({ "role": "assistant", "content": content, "refusal": refusal });
    let finish = responses_finish(resp, !calls.is_empty());
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let reasoning = join(reasoning.iter().map(String::as_str).filter(|r| !r.is_empty()));
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let usage = resp.get("usage").map(usage_from_responses).unwrap_or_default();
    let created = resp.u64_of("created_at").unwrap_or_else(now_secs);
    completion(resp.str_of("id").unwrap_or("chatcmpl-tokenfold"), resp, created, message, finish, &usage)
}

/// A Gemini answer's first candidate: its text, thoughts (as reasoning) and calls (their thought
/// signatures carried in the call ids, see `gemini_common`).
pub(crate) fn from_gemini(resp: &Value) -> Value {
    let answer = gemini_answer(resp);
    let candidate = answer.arr_of("candidates").first().unwrap_or(&Value::Null);
    let response_id = answer.str_of("responseId").unwrap_or("");
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for part in candidate.get("content").map(|c| c.arr_of("parts")).unwrap_or(&[]) {
        if let Some(f) = part.get("functionCall") {
            let id = client_call_id(f.str_of("id"), response_id, calls.len(), part.str_of("thoughtSignature"));
            calls.push(json!({
                "id": id,
                "type": "function",
                "function": { "name": f.str_of("name").unwrap_or(""), "arguments": to_string(f.get("args").unwrap_or(&json!({}))) },
            }));
        } else if let Some(t) = part.str_of("text") {
            if part.bool_of("thought") {
                reasoning.push_str(t)
            } else {
                text.push_str(t)
            }
        }
    }
    let finish = match candidate.str_of("finishReason") {
        // A prompt refused before any candidate: the filter said no.
        None if answer.get("promptFeedback").and_then(|f| f.some("blockReason")).is_some() => "content_filter",
        reason => gemini_finish_to_chat(reason, !calls.is_empty()),
    };
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
    let mut message = json!({ "role": "assistant", "content": content, "refusal": null });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let usage = answer.get(USAGE_FIELD).map(usage_from_gemini).unwrap_or_default();
    let id = if response_id.is_empty() { "chatcmpl-tokenfold" } else { response_id };
    let mut out = completion(id, &Value::Null, now_secs(), message, finish, &usage);
    out["model"] = json!(answer.str_of("modelVersion").unwrap_or(""));
    out
}

/// The answer of a Gemini body: the object, or the last piece of a JSON array stream merged
/// (its parts gathered, the last finish reason and usage kept).
fn gemini_answer(resp: &Value) -> std::borrow::Cow<'_, Value> {
    let Some(items) = resp.as_array() else { return std::borrow::Cow::Borrowed(resp) };
    let mut parts = Vec::new();
    let mut last = Value::Null;
    for item in items {
        let candidate = item.arr_of("candidates").first().unwrap_or(&Value::Null);
        parts.extend(candidate.get("content").map(|c| c.arr_of("parts").to_vec()).unwrap_or_default());
        last = item.clone();
    }
    if let Some(c) = last.get_mut("candidates").and_then(|c| c.get_mut(0)) {
        c["content"] = json!({ "role": "model", "parts": parts });
    }
    std::borrow::Cow::Owned(last)
}

/// The text of a reasoning item: its summary, else its raw reasoning text (open-weight servers).
pub(crate) fn responses_reasoning(item: &Value) -> String {
    let summary = join(item.arr_of("summary").iter().filter_map(|s| s.str_of("text")));
    if !summary.is_empty() {
        return summary;
    }
    join(item.arr_of("content").iter().filter_map(|c| c.str_of("text")))
}

/// Chat `finish_reason` for a Responses object: why it is incomplete, else whether it called tools.
pub(crate) fn responses_finish(resp: &Value, has_calls: bool) -> &'static str {
    match resp.get("incomplete_details").and_then(|d| d.str_of("reason")) {
        Some("max_output_tokens") => "length",
        Some("content_filter") => "content_filter",
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

fn completion(id: &str, resp: &Value, created: u64, message: Value, finish: &str, usage: &Usage) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": resp.str_of("model").unwrap_or(""),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": chat_usage_json(usage),
    })
}
