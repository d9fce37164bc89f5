//! OpenAI Chat Completions request -> Anthropic Messages request.

use serde_json::{json, Map, Value};

use super::model;
use crate::dialect::translate::common::parse_arguments;
use crate::dialect::translate::json::{copy, join, text_of, tool_def, Get};
use crate::dialect::translate::{RequestOptions, TranslateError};

/// Anthropic requires `max_tokens`; Chat does not.
const DEFAULT_MAX_TOKENS: u64 = 8192;

pub(crate) fn to_anthropic(req: &Value, opts: &RequestOptions<'_>) -> Result<Value, TranslateError> {
    let mut out = Map::new();
    out.insert("model".into(), model(req, opts)?);

    let Some(input) = req.get("messages").and_then(Value::as_array) else {
        return Err(TranslateError::invalid("messages", "must be an array"));
    };
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in input {
        let content = m.get("content");
        match m.str_of("role") {
            // Leading system text goes to `system`; later system text stays in place as user
            // text, so an earlier prefix is never rewritten.
            Some("system") | Some("developer") if turns.is_empty() => system.push(text_of(content)),
            Some("system") | Some("developer") => push(&mut turns, "user", text_blocks(content)),
            Some("user") => push(&mut turns, "user", user_blocks(content)?),
            Some("assistant") => push(&mut turns, "assistant", assistant_blocks(m)?),
            Some("tool") => push(&mut turns, "user", vec![tool_result(m)?]),
            other => {
                return Err(TranslateError::invalid(
                    "messages",
                    format!("unknown role {:?}", other.unwrap_or("(none)")),
                ))
            }
        }
    }
    let system = join(system.iter().map(String::as_str).filter(|s| !s.is_empty()));
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system));
    }
    let messages = turns.into_iter().map(|(role, content)| json!({ "role": role, "content": content })).collect();
    out.insert("messages".into(), Value::Array(messages));

    let max_tokens =
        req.u64_of("max_completion_tokens").or_else(|| req.u64_of("max_tokens")).unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));
    tools(req, &mut out);
    match req.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    // Anthropic's temperature range is 0..=1, Chat's 0..=2.
    if let Some(t) = req.get("temperature").and_then(Value::as_f64) {
        out.insert("temperature".into(), json!(t.min(1.0)));
    }
    // Anthropic's current models refuse `temperature` and `top_p` together ("Please use only
    // one"); Gemini CLI always sends both. The temperature is kept.
    if !out.contains_key("temperature") {
        copy(req, "top_p", &mut out, "top_p");
    }
    if let Some(user) = req.str_of("user") {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if opts.target_reasoning {
        if let Some(budget) = req.str_of("reasoning_effort").and_then(thinking_budget) {
            out.insert("thinking".into(), json!({ "type": "enabled", "budget_tokens": budget }));
            // The budget must fit under max_tokens, and thinking refuses sampling overrides.
            if max_tokens <= budget {
                out.insert("max_tokens".into(), json!(budget + max_tokens));
            }
            out.remove("temperature");
            out.remove("top_p");
        }
    }
    if req.bool_of("stream") {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(out))
}

/// Appends blocks as a turn, merging into the previous turn of the same role (tool results and
/// the user text after them form one user turn, as Anthropic expects).
fn push(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((r, existing)) if *r == role => existing.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

/// Non-empty text blocks (Anthropic rejects empty ones).
fn text_blocks(content: Option<&Value>) -> Vec<Value> {
    let text = text_of(content);
    if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({ "type": "text", "text": text })]
    }
}

fn user_blocks(content: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    let Some(Value::Array(parts)) = content else {
        return Ok(text_blocks(content));
    };
    let mut out = Vec::new();
    for p in parts {
        match p.str_of("type") {
            Some("text") => out.extend(text_blocks(p.get("text"))),
            Some("image_url") => {
                let url = p
                    .get("image_url")
                    .and_then(|i| i.as_str().or_else(|| i.str_of("url")))
                    .ok_or_else(|| TranslateError::invalid("messages", "image_url without url"))?;
                out.push(json!({ "type": "image", "source": source(url) }));
            }
            Some("file") => {
                if let Some(data) = p.get("file").and_then(|f| f.str_of("file_data")) {
                    out.push(json!({ "type": "document", "source": source(data) }));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// An image/document `source` from a URL: data URLs become base64 sources.
fn source(url: &str) -> Value {
    let inline = url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,"));
    match inline {
        Some((media, data)) => json!({ "type": "base64", "media_type": media, "data": data }),
        None => json!({ "type": "url", "url": url }),
    }
}

fn assistant_blocks(m: &Value) -> Result<Vec<Value>, TranslateError> {
    let mut out = text_blocks(m.get("content"));
    out.extend(text_blocks(m.get("refusal")));
    for call in m.arr_of("tool_calls") {
        let f = call.get("function").unwrap_or(&Value::Null);
        let (Some(id), Some(name)) = (call.str_of("id"), f.str_of("name")) else {
            return Err(TranslateError::invalid("messages", "tool call without id or name"));
        };
        out.push(json!({
            "type": "tool_use",
            "id": id,
            "name": name,
            "input": parse_arguments(f.str_of("arguments").unwrap_or("")),
        }));
    }
    Ok(out)
}

fn tool_result(m: &Value) -> Result<Value, TranslateError> {
    let Some(id) = m.str_of("tool_call_id") else {
        return Err(TranslateError::invalid("messages", "tool message without tool_call_id"));
    };
    let content = match m.get("content") {
        Some(Value::Array(_)) => Value::Array(user_blocks(m.get("content"))?),
        other => Value::String(text_of(other)),
    };
    Ok(json!({ "type": "tool_result", "tool_use_id": id, "content": content }))
}

/// Function tools and `tool_choice`; `parallel_tool_calls: false` rides on the choice.
fn tools(req: &Value, out: &mut Map<String, Value>) {
    let tools: Vec<Value> = req
        .arr_of("tools")
        .iter()
        .filter(|t| t.str_of("type").unwrap_or("function") == "function")
        .filter_map(|t| tool_def(t.get("function")?, "parameters", "input_schema"))
        .map(Value::Object)
        .collect();
    if tools.is_empty() {
        return;
    }
    let mut choice = match req.get("tool_choice") {
        Some(Value::String(s)) => match s.as_str() {
            "required" => json!({ "type": "any" }),
            "none" => json!({ "type": "none" }),
            _ => json!({ "type": "auto" }),
        },
        Some(c) => match c.get("function").and_then(|f| f.str_of("name")) {
            Some(name) => json!({ "type": "tool", "name": name }),
            None => json!({ "type": "auto" }),
        },
        None => json!({ "type": "auto" }),
    };
    let parallel_off = req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    if parallel_off && choice.str_of("type") != Some("none") {
        choice["disable_parallel_tool_use"] = Value::Bool(true);
    }
    if req.get("tool_choice").is_some() || parallel_off {
        out.insert("tool_choice".into(), choice);
    }
    out.insert("tools".into(), Value::Array(tools));
}

fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "minimal" | "low" => Some(2048),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}
