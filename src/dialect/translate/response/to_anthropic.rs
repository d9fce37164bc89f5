//! OpenAI Chat Completions response -> Anthropic Messages response.

use serde_json::{json, Value};

use crate::dialect::translate::common::{
    anthropic_stop, anthropic_usage_json, matched_stop, parse_arguments, usage_from_chat,
};
use crate::dialect::translate::json::Get;

pub(crate) fn from_chat(resp: &Value) -> Value {
    let choice = resp.arr_of("choices").first().unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(thinking) = reasoning_text(msg) {
        content.push(json!({ "type": "thinking", "thinking": thinking, "signature": "" }));
    }
    for key in ["content", "refusal"] {
        if let Some(text) = msg.str_of(key).filter(|t| !t.is_empty()) {
            content.push(json!({ "type": "text", "text": text }));
        }
    }
    let calls = msg.arr_of("tool_calls");
    for call in calls {
        let f = call.get("function").unwrap_or(&Value::Null);
        content.push(json!({
            "type": "tool_use",
            "id": call.str_of("id").unwrap_or(""),
            "name": f.str_of("name").unwrap_or(""),
            "input": parse_arguments(f.str_of("arguments").unwrap_or("")),
        }));
    }
    let (stop_reason, stop_sequence) =
        anthropic_stop(choice.str_of("finish_reason"), !calls.is_empty(), matched_stop(choice));
    let usage = resp.get("usage").map(usage_from_chat).unwrap_or_default();
    json!({
        "id": resp.str_of("id").unwrap_or("msg_tokenfold"),
        "type": "message",
        "role": "assistant",
        "model": resp.str_of("model").unwrap_or(""),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage_json(&usage),
    })
}

/// Reasoning text under the names Chat providers use for it (DeepSeek, vLLM, OpenRouter).
pub(crate) fn reasoning_text(msg: &Value) -> Option<&str> {
    msg.str_of("reasoning_content").or_else(|| msg.str_of("reasoning")).filter(|t| !t.is_empty())
}
