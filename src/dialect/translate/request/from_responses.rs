//! OpenAI Responses request (Codex CLI) -> OpenAI Chat Completions request.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::model;
use crate::dialect::translate::json::{copy, join, text_of, to_string, tool_def, Get};
use crate::dialect::translate::{ReplyContext, RequestOptions, TranslateError};
use crate::dialect::Dialect;

pub(crate) fn to_chat(
    req: &Value,
    opts: &RequestOptions<'_>,
    reply: &mut ReplyContext,
) -> Result<Value, TranslateError> {
    if req.some("previous_response_id").is_some() {
        return Err(TranslateError::Untranslatable {
            field: "previous_response_id",
            to: Dialect::OpenaiChat,
            reason: "the proxy keeps no stored responses; send the full input (store: false)",
        });
    }
    let mut out = Map::new();
    out.insert("model".into(), model(req, opts)?);

    let mut b = Builder::default();
    if let Some(instructions) = req.str_of("instructions").filter(|s| !s.is_empty()) {
        b.messages.push(json!({ "role": "system", "content": instructions }));
    }
    match req.get("input") {
        Some(Value::String(s)) => b.messages.push(json!({ "role": "user", "content": s })),
        Some(Value::Array(items)) => {
            for item in items {
                b.item(item)?;
            }
        }
        _ => return Err(TranslateError::invalid("input", "must be a string or an array")),
    }
    b.flush();
    out.insert("messages".into(), Value::Array(b.messages));

    let tools: Vec<Value> = req.arr_of("tools").iter().filter_map(|t| chat_tool(t, reply)).collect();
    if !tools.is_empty() {
        if let Some(choice) = req.some("tool_choice").and_then(tool_choice) {
            out.insert("tool_choice".into(), choice);
        }
        copy(req, "parallel_tool_calls", &mut out, "parallel_tool_calls");
        out.insert("tools".into(), Value::Array(tools));
    }
    copy(req, "max_output_tokens", &mut out, "max_tokens");
    copy(req, "temperature", &mut out, "temperature");
    copy(req, "top_p", &mut out, "top_p");
    copy(req, "user", &mut out, "user");
    if !opts.drop_prompt_cache_key {
        copy(req, "prompt_cache_key", &mut out, "prompt_cache_key");
    }
    if let Some(format) = req.get("text").and_then(|t| t.get("format")) {
        if let Some(rf) = response_format(format) {
            out.insert("response_format".into(), rf);
        }
    }
    if opts.target_reasoning {
        if let Some(effort) = req.get("reasoning").and_then(|r| r.str_of("effort")) {
            out.insert("reasoning_effort".into(), Value::String(effort.to_string()));
        }
    }
    if req.bool_of("stream") {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    Ok(Value::Object(out))
}

/// Builds Chat messages from input items. Assistant text and the function calls after it
/// collect into one pending assistant message, so parallel calls stay together.
#[derive(Default)]
struct Builder {
    messages: Vec<Value>,
    text: Vec<String>,
    calls: Vec<Value>,
    call_ids: HashSet<String>,
}

impl Builder {
    fn item(&mut self, item: &Value) -> Result<(), TranslateError> {
        // Items without `type` are messages (the "easy input" form).
        match item.str_of("type").unwrap_or("message") {
            "message" => self.message(item),
            "function_call" => {
                let args = item.str_of("arguments").unwrap_or("").to_string();
                self.call(item, item.str_of("name").unwrap_or(""), args)
            }
            // Freeform (custom) tool calls carry a raw string; Chat calls carry JSON.
            "custom_tool_call" => {
                let args = to_string(&json!({ "input": item.str_of("input").unwrap_or("") }));
                self.call(item, item.str_of("name").unwrap_or(""), args)
            }
            "local_shell_call" => {
                let args = to_string(item.get("action").unwrap_or(&json!({})));
                self.call(item, "local_shell", args)
            }
            "function_call_output" | "custom_tool_call_output" | "local_shell_call_output" => self.output(item),
            // Reasoning items, web search calls, item references: nothing Chat can take.
            _ => Ok(()),
        }
    }

    fn message(&mut self, item: &Value) -> Result<(), TranslateError> {
        let content = item.get("content");
        match item.str_of("role") {
            Some("assistant") => {
                let text = text_of(content);
                if !text.is_empty() {
                    // Text after calls starts a new assistant message.
                    if !self.calls.is_empty() {
                        self.flush();
                    }
                    self.text.push(text);
                }
            }
            Some(role @ ("user" | "system" | "developer")) => {
                self.flush();
                let role = if role == "user" { "user" } else { "system" };
                self.messages.push(json!({ "role": role, "content": user_content(content) }));
            }
            other => {
                return Err(TranslateError::invalid(
                    "input",
                    format!("unknown message role {:?}", other.unwrap_or("(none)")),
                ))
            }
        }
        Ok(())
    }

    fn call(&mut self, item: &Value, name: &str, arguments: String) -> Result<(), TranslateError> {
        let Some(id) = item.str_of("call_id") else {
            return Err(TranslateError::invalid("input", "function call without call_id"));
        };
        self.call_ids.insert(id.to_string());
        self.calls.push(json!({
            "id": id,
            "type": "function",
            "function": { "name": name, "arguments": arguments },
        }));
        Ok(())
    }

    fn output(&mut self, item: &Value) -> Result<(), TranslateError> {
        self.flush();
        let Some(id) = item.str_of("call_id") else {
            return Err(TranslateError::invalid("input", "call output without call_id"));
        };
        let text = match item.get("output") {
            // Shell outputs may arrive as an object; keep them as JSON text.
            Some(v @ Value::Object(_)) => to_string(v),
            other => text_of(other),
        };
        if self.call_ids.contains(id) {
            self.messages.push(json!({ "role": "tool", "tool_call_id": id, "content": text }));
        } else {
            // An output whose call was not sent would be rejected by Chat providers.
            let text = format!("Output of tool call {id}:\n{text}");
            self.messages.push(json!({ "role": "user", "content": text }));
        }
        Ok(())
    }

    /// Emits the pending assistant message, if any.
    fn flush(&mut self) {
        if self.text.is_empty() && self.calls.is_empty() {
            return;
        }
        let text =
            if self.text.is_empty() { Value::Null } else { Value::String(join(self.text.iter().map(String::as_str))) };
        let mut msg = json!({ "role": "assistant", "content": text });
        if !self.calls.is_empty() {
            msg["tool_calls"] = Value::Array(std::mem::take(&mut self.calls));
        }
        self.text.clear();
        self.messages.push(msg);
    }
}

/// Message content: all-text as one string, otherwise Chat parts (text and images).
fn user_content(content: Option<&Value>) -> Value {
    let Some(Value::Array(parts)) = content else {
        return Value::String(text_of(content));
    };
    if parts.iter().all(|p| p.get("text").is_some()) {
        return Value::String(text_of(content));
    }
    let out = parts
        .iter()
        .filter_map(|p| match p.str_of("type") {
            Some("input_image") => {
                let mut image = Map::new();
                image.insert("url".into(), Value::String(p.str_of("image_url")?.to_string()));
                copy(p, "detail", &mut image, "detail");
                Some(json!({ "type": "image_url", "image_url": image }))
            }
            Some("input_file") => {
                let data = p.str_of("file_data")?;
                let name = p.str_of("filename").unwrap_or("file");
                Some(json!({ "type": "file", "file": { "filename": name, "file_data": data } }))
            }
            _ => Some(json!({ "type": "text", "text": p.str_of("text")? })),
        })
        .collect();
    Value::Array(out)
}

/// A tool as a Chat function tool. Freeform (`custom`) tools such as Codex's `apply_patch`
/// become a function taking the raw text as its one string parameter `input` (the same shape
/// their replayed calls take above), and are noted so the answer can turn calls to them back
/// into `custom_tool_call` items. Built-in tools (web search, local shell, namespaces, ...)
/// have no Chat equivalent and are dropped.
fn chat_tool(t: &Value, reply: &mut ReplyContext) -> Option<Value> {
    match t.str_of("type") {
        Some("function") => {
            let f = tool_def(t, "parameters", "parameters")?;
            Some(json!({ "type": "function", "function": f }))
        }
        Some("custom") => {
            let name = t.str_of("name")?;
            reply.custom_tools.push(name.to_string());
            let mut f = Map::new();
            f.insert("name".into(), json!(name));
            copy(t, "description", &mut f, "description");
            let input = json!({ "type": "string", "description": custom_input_description(t.get("format")) });
            let schema = json!({
                "type": "object",
                "properties": { "input": input },
                "required": ["input"],
                "additionalProperties": false,
            });
            f.insert("parameters".into(), schema);
            Some(json!({ "type": "function", "function": f }))
        }
        other => {
            tracing::debug!(tool = other.unwrap_or("(none)"), "tool type has no Chat equivalent; dropped");
            None
        }
    }
}

/// What the model must write into a freeform tool's `input`: the raw text, and the grammar
/// it follows when the tool has one.
fn custom_input_description(format: Option<&Value>) -> String {
    let mut text = "The tool's whole input as raw text (not JSON-encoded).".to_string();
    if let Some(f) = format.filter(|f| f.str_of("type") == Some("grammar")) {
        let syntax = f.str_of("syntax").unwrap_or("grammar");
        if let Some(definition) = f.str_of("definition") {
            text.push_str(&format!(" It must match this {syntax} grammar:\n{definition}"));
        }
    }
    text
}

fn tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Some(choice.clone()),
        Value::Object(_) if choice.str_of("type") == Some("function") => {
            Some(json!({ "type": "function", "function": { "name": choice.str_of("name")? } }))
        }
        _ => None,
    }
}

fn response_format(format: &Value) -> Option<Value> {
    match format.str_of("type")? {
        "json_schema" => {
            let mut schema = Map::new();
            schema.insert("name".into(), json!(format.str_of("name").unwrap_or("output")));
            copy(format, "schema", &mut schema, "schema");
            copy(format, "strict", &mut schema, "strict");
            copy(format, "description", &mut schema, "description");
            Some(json!({ "type": "json_schema", "json_schema": schema }))
        }
        "json_object" => Some(json!({ "type": "json_object" })),
        _ => None,
    }
}
