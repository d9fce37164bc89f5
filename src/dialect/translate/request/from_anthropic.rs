//! Anthropic Messages request -> OpenAI Chat Completions request.

use serde_json::{json, Map, Value};

use super::model;
use crate::dialect::translate::common::chat_tool_call;
use crate::dialect::translate::json::{copy, join, text_of, tool_def, Get};
use crate::dialect::translate::{RequestOptions, TranslateError};

pub(crate) fn to_chat(req: &Value, opts: &RequestOptions<'_>) -> Result<Value, TranslateError> {
    let mut out = Map::new();
    out.insert("model".into(), model(req, opts)?);

    let mut messages = Vec::new();
    let system = text_of(req.get("system"));
    if !system.is_empty() {
        messages.push(json!({ "role": "system", "content": system }));
    }
    let Some(input) = req.get("messages").and_then(Value::as_array) else {
        return Err(TranslateError::invalid("messages", "must be an array"));
    };
    for m in input {
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.str_of("role") {
            Some("user") => user_messages(content, &mut messages)?,
            Some("assistant") => messages.extend(assistant_message(content)?),
            // Claude Code puts reminders into `messages[]` as system entries; Chat keeps them
            // in place.
            Some("system") => messages.push(json!({ "role": "system", "content": text_of(Some(content)) })),
            other => {
                return Err(TranslateError::invalid(
                    "messages",
                    format!("unknown role {:?}", other.unwrap_or("(none)")),
                ))
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));

    let tools = tools(req);
    if !tools.is_empty() {
        if let Some(choice) = req.some("tool_choice") {
            if let Some(c) = tool_choice(choice) {
                out.insert("tool_choice".into(), c);
            }
            if choice.bool_of("disable_parallel_tool_use") {
                out.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
        }
        out.insert("tools".into(), Value::Array(tools));
    }
    copy(req, "max_tokens", &mut out, "max_tokens");
    copy(req, "temperature", &mut out, "temperature");
    copy(req, "top_p", &mut out, "top_p");
    if !req.arr_of("stop_sequences").is_empty() {
        copy(req, "stop_sequences", &mut out, "stop");
    }
    if let Some(user) = req.get("metadata").and_then(|m| m.str_of("user_id")) {
        out.insert("user".into(), Value::String(user.to_string()));
    }
    if opts.target_reasoning {
        if let Some(effort) = req.get("thinking").and_then(reasoning_effort) {
            out.insert("reasoning_effort".into(), Value::String(effort.into()));
        }
    }
    if req.bool_of("stream") {
        out.insert("stream".into(), Value::Bool(true));
        // Usage only comes in streams that ask for it; the ledger needs it.
        out.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    Ok(Value::Object(out))
}

/// A user turn: its `tool_result` blocks become `tool` messages (which must directly follow the
/// assistant's calls), the rest one user message after them.
fn user_messages(content: &Value, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({ "role": "user", "content": s }));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(TranslateError::invalid("messages", "content must be a string or array")),
    };
    let mut parts = Vec::new();
    for b in blocks {
        match b.str_of("type") {
            Some("tool_result") => out.push(tool_message(b, &mut parts)?),
            _ => parts.extend(content_part(b)?),
        }
    }
    if !parts.is_empty() {
        out.push(json!({ "role": "user", "content": parts_content(parts) }));
    }
    Ok(())
}

/// A `tool_result` block as a `tool` message. Images in it cannot go in a tool message on
/// most providers, so they join the user message that follows.
fn tool_message(block: &Value, images: &mut Vec<Value>) -> Result<Value, TranslateError> {
    let Some(id) = block.str_of("tool_use_id") else {
        return Err(TranslateError::invalid("messages", "tool_result without tool_use_id"));
    };
    let mut text = match block.get("content") {
        Some(Value::Array(parts)) => {
            for p in parts.iter().filter(|p| p.str_of("type") == Some("image")) {
                images.extend(content_part(p)?);
            }
            text_of(block.get("content"))
        }
        other => text_of(other),
    };
    // Chat has no error flag on tool messages; say it in the text so the model still knows.
    if block.bool_of("is_error") {
        text.insert_str(0, "Error: ");
    }
    Ok(json!({ "role": "tool", "tool_call_id": id, "content": text }))
}

/// A user content block as a Chat content part; blocks with no Chat equivalent give none.
fn content_part(block: &Value) -> Result<Option<Value>, TranslateError> {
    Ok(match block.str_of("type") {
        Some("text") => Some(json!({ "type": "text", "text": block.str_of("text").unwrap_or("") })),
        Some("image") => {
            image_url(block.get("source"))?.map(|url| json!({ "type": "image_url", "image_url": { "url": url } }))
        }
        Some("document") => document_part(block)?,
        _ => None,
    })
}

/// The URL (or data URL) of an image or document `source`.
fn image_url(source: Option<&Value>) -> Result<Option<String>, TranslateError> {
    let Some(src) = source else {
        return Err(TranslateError::invalid("messages", "image without source"));
    };
    Ok(match src.str_of("type") {
        Some("base64") => {
            let media = src.str_of("media_type").unwrap_or("application/octet-stream");
            Some(format!("data:{media};base64,{}", src.str_of("data").unwrap_or("")))
        }
        Some("url") => src.str_of("url").map(str::to_string),
        _ => None,
    })
}

fn document_part(block: &Value) -> Result<Option<Value>, TranslateError> {
    let src = block.get("source");
    Ok(match src.and_then(|s| s.str_of("type")) {
        Some("text") => src.and_then(|s| s.str_of("data")).map(|t| json!({ "type": "text", "text": t })),
        Some("base64") => image_url(src)?.map(|data| {
            let name = block.str_of("title").unwrap_or("document.pdf");
            json!({ "type": "file", "file": { "filename": name, "file_data": data } })
        }),
        _ => None,
    })
}

/// All-text content as one string: several providers accept only strings.
fn parts_content(parts: Vec<Value>) -> Value {
    if parts.iter().all(|p| p.str_of("type") == Some("text")) {
        Value::String(join(parts.iter().filter_map(|p| p.str_of("text"))))
    } else {
        Value::Array(parts)
    }
}

/// An assistant turn: text blocks joined, `tool_use` blocks as one `tool_calls` list so
/// parallel calls stay together. Thinking is dropped (Chat has no way to send it back).
fn assistant_message(content: &Value) -> Result<Option<Value>, TranslateError> {
    let blocks = match content {
        Value::String(s) => return Ok(Some(json!({ "role": "assistant", "content": s }))),
        Value::Array(blocks) => blocks,
        _ => return Err(TranslateError::invalid("messages", "content must be a string or array")),
    };
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.str_of("type") {
            Some("text") => texts.extend(b.str_of("text").filter(|t| !t.is_empty())),
            Some("tool_use") => calls.push(chat_tool_call(b)),
            _ => {}
        }
    }
    if texts.is_empty() && calls.is_empty() {
        return Ok(None);
    }
    let text = if texts.is_empty() { Value::Null } else { Value::String(join(texts.into_iter())) };
    let mut msg = json!({ "role": "assistant", "content": text });
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    Ok(Some(msg))
}

/// Client tools (those with `input_schema`) as function tools; Anthropic server tools
/// (web search, code execution…) have no Chat equivalent and are dropped.
fn tools(req: &Value) -> Vec<Value> {
    req.arr_of("tools")
        .iter()
        .filter(|t| t.get("input_schema").is_some())
        .filter_map(|t| tool_def(t, "input_schema", "parameters"))
        .map(|f| json!({ "type": "function", "function": f }))
        .collect()
}

fn tool_choice(choice: &Value) -> Option<Value> {
    Some(match choice.str_of("type")? {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => json!({ "type": "function", "function": { "name": choice.str_of("name")? } }),
        _ => return None,
    })
}

/// Thinking budget as a Chat reasoning effort.
fn reasoning_effort(thinking: &Value) -> Option<&'static str> {
    match thinking.str_of("type")? {
        "enabled" => Some(match thinking.u64_of("budget_tokens").unwrap_or(0) {
            0..=4095 => "low",
            4096..=16383 => "medium",
            _ => "high",
        }),
        "adaptive" => Some("medium"),
        _ => None,
    }
}
