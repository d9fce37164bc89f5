//! Anthropic Messages response -> OpenAI Chat Completions response.

use serde_json::{json, Value};

use crate::dialect::translate::common::{
    chat_finish, chat_tool_call, chat_usage_json, merge_anthropic_usage, now_secs,
};
use crate::dialect::translate::json::Get;
use crate::dialect::translate::Usage;

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
    json!({
        "id": resp.str_of("id").unwrap_or("chatcmpl-tokenfold"),
        "object": "chat.completion",
        "created": now_secs(),
        "model": resp.str_of("model").unwrap_or(""),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": chat_finish(resp.str_of("stop_reason")),
        }],
        "usage": chat_usage_json(&usage),
    })
}
