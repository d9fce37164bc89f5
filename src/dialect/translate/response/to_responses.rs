//! OpenAI Chat Completions response -> OpenAI Responses response, and the pieces of a Responses
//! object the stream translator builds too.

use serde_json::{json, Value};

use super::to_anthropic::reasoning_text;
use crate::dialect::translate::common::{now_secs, responses_usage_json, usage_from_chat};
use crate::dialect::translate::json::Get;
use crate::dialect::translate::ReplyContext;
use crate::dialect::usage::Usage;

pub(crate) fn from_chat(resp: &Value, reply: &ReplyContext) -> Value {
    let id = response_id(resp.str_of("id"));
    let choice = resp.arr_of("choices").first().unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut output = Vec::new();
    if let Some(text) = reasoning_text(msg) {
        output.push(reasoning_item(&item_id("rs", &id, output.len()), text));
    }
    let text: String = ["content", "refusal"].iter().filter_map(|k| msg.str_of(k)).collect();
    if !text.is_empty() {
        output.push(message_item(&item_id("msg", &id, output.len()), &text, "completed"));
    }
    for call in msg.arr_of("tool_calls") {
        let f = call.get("function").unwrap_or(&Value::Null);
        let (call_id, name) = (call.str_of("id").unwrap_or(""), f.str_of("name").unwrap_or(""));
        let args = f.str_of("arguments").unwrap_or("");
        let item = if reply.is_custom_tool(name) {
            custom_call_item(&item_id("ctc", &id, output.len()), call_id, name, &custom_input(args))
        } else {
            call_item(&item_id("fc", &id, output.len()), call_id, name, args, "completed")
        };
        output.push(item);
    }
    let usage = resp.get("usage").map(usage_from_chat).unwrap_or_default();
    let model = resp.str_of("model").unwrap_or("");
    let mut out = response_object(&id, model, now_secs(), "completed", output, Some(&usage));
    set_finish(&mut out, choice.str_of("finish_reason"));
    out
}

/// The Responses id for a response whose upstream id is `upstream` (stable within a response).
pub(crate) fn response_id(upstream: Option<&str>) -> String {
    match upstream {
        Some(id) if id.starts_with("resp_") => id.to_string(),
        Some(id) if !id.is_empty() => format!("resp_{id}"),
        _ => "resp_tokenfold".to_string(),
    }
}

/// Output item ids derive from the response id and the item's position.
pub(crate) fn item_id(prefix: &str, response_id: &str, output_index: usize) -> String {
    let base = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{base}_{output_index}")
}

/// A Responses object with the fields the SDK models carry, request echo fields left at their
/// defaults (the translated request is not at hand).
pub(crate) fn response_object(
    id: &str,
    model: &str,
    created_at: u64,
    status: &str,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": { "effort": null, "summary": null },
        "store": false,
        "temperature": null,
        "text": { "format": { "type": "text" } },
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": usage.map(responses_usage_json),
        "user": null,
        "metadata": {},
    })
}

/// Marks a response incomplete when the Chat turn ended on a limit or a filter.
/// Returns the status set.
pub(crate) fn set_finish(resp: &mut Value, finish_reason: Option<&str>) -> &'static str {
    let reason = match finish_reason {
        Some("length") => "max_output_tokens",
        Some("content_filter") => "content_filter",
        _ => return "completed",
    };
    resp["status"] = json!("incomplete");
    resp["incomplete_details"] = json!({ "reason": reason });
    "incomplete"
}

pub(crate) fn output_text(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

pub(crate) fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "in_progress" { vec![] } else { vec![output_text(text)] };
    json!({
        "id": id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

pub(crate) fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "id": id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    })
}

/// A call to a freeform tool: its raw text `input` instead of JSON arguments.
pub(crate) fn custom_call_item(id: &str, call_id: &str, name: &str, input: &str) -> Value {
    json!({ "id": id, "type": "custom_tool_call", "call_id": call_id, "name": name, "input": input })
}

/// The raw text of a freeform tool call from the arguments of its function stand-in
/// (`{"input": "..."}`). A model that wrote something else gets its arguments passed as they are.
pub(crate) fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(m)) => match m.get("input") {
            Some(Value::String(s)) => s.clone(),
            _ => arguments.to_string(),
        },
        Ok(Value::String(s)) => s,
        _ => arguments.to_string(),
    }
}

pub(crate) fn summary_text(text: &str) -> Value {
    json!({ "type": "summary_text", "text": text })
}

pub(crate) fn reasoning_item(id: &str, summary: &str) -> Value {
    let summary = if summary.is_empty() { vec![] } else { vec![summary_text(summary)] };
    json!({ "id": id, "type": "reasoning", "summary": summary })
}
