//! OpenAI Chat Completions request -> OpenAI Responses request (a Chat or, through Chat, an
//! Anthropic client on a provider that speaks only Responses).

use serde_json::{json, Map, Value};

use super::model;
use crate::dialect::translate::json::{copy, join, text_of, Get};
use crate::dialect::translate::{RequestOptions, TranslateError};

pub(crate) fn from_chat(req: &Value, opts: &RequestOptions<'_>) -> Result<Value, TranslateError> {
    let mut out = Map::new();
    out.insert("model".into(), model(req, opts)?);
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return Err(TranslateError::invalid("messages", "must be an array"));
    };
    let mut instructions = Vec::new();
    let mut input = Vec::new();
    for m in messages {
        let content = m.get("content");
        match m.str_of("role") {
            // Leading system text is the instructions; later system text stays in place.
            Some("system" | "developer") if input.is_empty() => instructions.push(text_of(content)),
            Some(role @ ("system" | "developer")) => input.push(message(role, input_content(content)?)),
            Some("user") => input.push(message("user", input_content(content)?)),
            Some("assistant") => assistant_items(m, &mut input)?,
            Some("tool") => input.push(call_output(m)?),
            other => {
                return Err(TranslateError::invalid(
                    "messages",
                    format!("unknown role {:?}", other.unwrap_or("(none)")),
                ))
            }
        }
    }
    let instructions = join(instructions.iter().map(String::as_str).filter(|s| !s.is_empty()));
    if !instructions.is_empty() {
        out.insert("instructions".into(), Value::String(instructions));
    }
    out.insert("input".into(), Value::Array(input));

    let tools: Vec<Value> = req.arr_of("tools").iter().filter_map(function_tool).collect();
    if !tools.is_empty() {
        if let Some(choice) = req.some("tool_choice").and_then(tool_choice) {
            out.insert("tool_choice".into(), choice);
        }
        copy(req, "parallel_tool_calls", &mut out, "parallel_tool_calls");
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(n) = req.u64_of("max_completion_tokens").or_else(|| req.u64_of("max_tokens")) {
        out.insert("max_output_tokens".into(), json!(n));
    }
    copy(req, "temperature", &mut out, "temperature");
    copy(req, "top_p", &mut out, "top_p");
    copy(req, "user", &mut out, "user");
    if !opts.drop_prompt_cache_key {
        copy(req, "prompt_cache_key", &mut out, "prompt_cache_key");
    }
    for field in ["stop", "n", "seed", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs"] {
        if req.some(field).is_some() {
            tracing::debug!(field, "Chat field has no Responses equivalent; not sent");
        }
    }
    if let Some(format) = req.get("response_format").and_then(text_format) {
        out.insert("text".into(), json!({ "format": format }));
    }
    if opts.target_reasoning {
        if let Some(effort) = req.str_of("reasoning_effort") {
            out.insert("reasoning".into(), json!({ "effort": effort }));
        }
    }
    // The proxy sends the whole conversation every time; nothing needs keeping upstream.
    out.insert("store".into(), Value::Bool(false));
    if req.bool_of("stream") {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(out))
}

fn message(role: &str, content: Value) -> Value {
    json!({ "type": "message", "role": role, "content": content })
}

/// User/system content: a string stays a string; parts become input parts.
fn input_content(content: Option<&Value>) -> Result<Value, TranslateError> {
    let Some(Value::Array(parts)) = content else {
        return Ok(Value::String(text_of(content)));
    };
    let mut out = Vec::new();
    for p in parts {
        match p.str_of("type") {
            Some("text") => out.push(json!({ "type": "input_text", "text": p.str_of("text").unwrap_or("") })),
            Some("image_url") => {
                let image = p.get("image_url");
                let url = image
                    .and_then(|i| i.as_str().or_else(|| i.str_of("url")))
                    .ok_or_else(|| TranslateError::invalid("messages", "image_url without url"))?;
                let detail = image.and_then(|i| i.str_of("detail")).unwrap_or("auto");
                out.push(json!({ "type": "input_image", "image_url": url, "detail": detail }));
            }
            Some("file") => {
                let file = p.get("file").unwrap_or(&Value::Null);
                if let Some(data) = file.str_of("file_data") {
                    let name = file.str_of("filename").unwrap_or("file");
                    out.push(json!({ "type": "input_file", "filename": name, "file_data": data }));
                }
            }
            other => tracing::debug!(part = other.unwrap_or("(none)"), "content part has no Responses equivalent"),
        }
    }
    Ok(Value::Array(out))
}

/// An assistant turn: its text as an assistant message, then one `function_call` item per call.
fn assistant_items(m: &Value, input: &mut Vec<Value>) -> Result<(), TranslateError> {
    let text: String = [m.get("content"), m.get("refusal")]
        .into_iter()
        .map(text_of)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    if !text.is_empty() {
        input.push(message("assistant", json!([{ "type": "output_text", "text": text }])));
    }
    for call in m.arr_of("tool_calls") {
        let f = call.get("function").unwrap_or(&Value::Null);
        let (Some(id), Some(name)) = (call.str_of("id"), f.str_of("name")) else {
            return Err(TranslateError::invalid("messages", "tool call without id or name"));
        };
        input.push(json!({
            "type": "function_call",
            "call_id": id,
            "name": name,
            "arguments": f.str_of("arguments").unwrap_or(""),
        }));
    }
    Ok(())
}

fn call_output(m: &Value) -> Result<Value, TranslateError> {
    let Some(id) = m.str_of("tool_call_id") else {
        return Err(TranslateError::invalid("messages", "tool message without tool_call_id"));
    };
    Ok(json!({ "type": "function_call_output", "call_id": id, "output": text_of(m.get("content")) }))
}

/// A Chat function tool as a Responses function tool. Responses validates arguments strictly
/// unless told otherwise, which rejects most schemas agents write; Chat's default is lenient.
fn function_tool(t: &Value) -> Option<Value> {
    if t.str_of("type").unwrap_or("function") != "function" {
        tracing::debug!(tool = t.str_of("type").unwrap_or(""), "tool type has no Responses equivalent; dropped");
        return None;
    }
    let f = t.get("function")?;
    let mut def = Map::new();
    def.insert("type".into(), json!("function"));
    def.insert("name".into(), json!(f.str_of("name")?));
    copy(f, "description", &mut def, "description");
    let params = f.some("parameters").cloned().unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
    def.insert("parameters".into(), params);
    def.insert("strict".into(), json!(f.bool_of("strict")));
    Some(Value::Object(def))
}

fn tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Some(choice.clone()),
        Value::Object(_) => {
            let name = choice.get("function").and_then(|f| f.str_of("name"))?;
            Some(json!({ "type": "function", "name": name }))
        }
        _ => None,
    }
}

fn text_format(rf: &Value) -> Option<Value> {
    match rf.str_of("type")? {
        "json_schema" => {
            let js = rf.get("json_schema")?;
            let mut f = Map::new();
            f.insert("type".into(), json!("json_schema"));
            f.insert("name".into(), json!(js.str_of("name").unwrap_or("output")));
            copy(js, "schema", &mut f, "schema");
            copy(js, "strict", &mut f, "strict");
            copy(js, "description", &mut f, "description");
            Some(Value::Object(f))
        }
        "json_object" => Some(json!({ "type": "json_object" })),
        _ => None,
    }
}
