//! Gemini `GenerateContentRequest` (Gemini CLI) -> OpenAI Chat Completions request (and, through
//! Chat, Anthropic and Responses requests). The model and streaming come from the URL.
//!
//! Calls and their responses are tied by id where the history names one on both, else (older
//! Gemini CLI histories) each response answers the earliest unanswered call of its name.

use serde_json::{json, Map, Value};

use crate::dialect::translate::gemini_common::{effort_of_budget, json_schema};
use crate::dialect::translate::json::{join, to_string, Get};
use crate::dialect::translate::{RequestOptions, TranslateError};

pub(crate) fn to_chat(req: &Value, opts: &RequestOptions<'_>) -> Result<Value, TranslateError> {
    let mut out = Map::new();
    let model = opts.model.or(opts.gemini.map(|c| c.model.as_str()));
    let Some(model) = model else {
        return Err(TranslateError::invalid("model", "missing (a Gemini request names it in the URL)"));
    };
    out.insert("model".into(), json!(model));
    let Some(contents) = req.get("contents").and_then(Value::as_array) else {
        return Err(TranslateError::invalid("contents", "must be an array"));
    };
    let mut messages = Vec::new();
    let system = system_text(req.get("systemInstruction"));
    if !system.is_empty() {
        messages.push(json!({ "role": "system", "content": system }));
    }
    let mut calls = Calls::default();
    for (i, c) in contents.iter().enumerate() {
        let parts = c.arr_of("parts");
        match c.str_of("role") {
            Some("model") => messages.extend(calls.model_message(i, parts)),
            Some("user" | "function") | None => calls.user_messages(parts, &mut messages)?,
            Some(other) => {
                return Err(TranslateError::invalid("contents", format!("unknown role {other:?} (use user or model)")))
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    tools(req, &mut out);
    generation_config(req.get("generationConfig").unwrap_or(&Value::Null), opts, &mut out);
    // `streamGenerateContent` with `alt=sse` streams; without it the client reads a JSON array,
    // which is made from one whole answer.
    if opts.gemini.is_some_and(|c| c.streams() && c.sse) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    Ok(Value::Object(out))
}

/// `systemInstruction`: a content's text parts (or, leniently, a plain string).
fn system_text(si: Option<&Value>) -> String {
    match si {
        Some(Value::String(s)) => s.clone(),
        Some(v) => join(v.arr_of("parts").iter().filter_map(|p| p.str_of("text")).filter(|t| !t.is_empty())),
        None => String::new(),
    }
}

/// A call seen in the history, waiting for its response.
struct Call {
    id: String,
    gemini_id: Option<String>,
    name: String,
    answered: bool,
}

#[derive(Default)]
struct Calls {
    calls: Vec<Call>,
}

impl Calls {
    /// A model content as one assistant message: its text (thoughts left out: Chat cannot take
    /// them back) and its calls. Calls without an id get `call_<content>_<part>`.
    fn model_message(&mut self, content: usize, parts: &[Value]) -> Option<Value> {
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for (k, p) in parts.iter().enumerate() {
            if let Some(f) = p.get("functionCall") {
                let gemini_id = f.str_of("id").filter(|s| !s.is_empty()).map(str::to_string);
                let id = gemini_id.clone().unwrap_or_else(|| format!("call_{content}_{k}"));
                let name = f.str_of("name").unwrap_or("").to_string();
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": to_string(f.get("args").unwrap_or(&json!({}))) },
                }));
                self.calls.push(Call { id, gemini_id, name, answered: false });
            } else if let Some(t) = p.str_of("text").filter(|_| !p.bool_of("thought")) {
                text.push_str(t);
            }
        }
        if text.is_empty() && tool_calls.is_empty() {
            return None;
        }
        let content = if text.is_empty() { Value::Null } else { Value::String(text) };
        let mut msg = json!({ "role": "assistant", "content": content });
        if !tool_calls.is_empty() {
            msg["tool_calls"] = Value::Array(tool_calls);
        }
        Some(msg)
    }

    /// A user content: its function responses as `tool` messages (which must follow the calls
    /// directly), then the rest as one user message.
    fn user_messages(&mut self, parts: &[Value], out: &mut Vec<Value>) -> Result<(), TranslateError> {
        let mut rest = Vec::new();
        for p in parts {
            if let Some(f) = p.get("functionResponse") {
                let name = f.str_of("name").unwrap_or("");
                let text = response_text(f.get("response").unwrap_or(&Value::Null));
                match self.answer(f.str_of("id"), name) {
                    Some(id) => out.push(json!({ "role": "tool", "tool_call_id": id, "content": text })),
                    // A response to no call in this history: Chat providers refuse a tool
                    // message without its call, so it goes as text.
                    None => rest.push(json!({ "type": "text", "text": format!("Output of {name}:\n{text}") })),
                }
            } else if let Some(t) = p.str_of("text").filter(|t| !t.is_empty() && !p.bool_of("thought")) {
                rest.push(json!({ "type": "text", "text": t }));
            } else if let Some(d) = p.get("inlineData") {
                let mime = d.str_of("mimeType").unwrap_or("application/octet-stream");
                let url = format!("data:{mime};base64,{}", d.str_of("data").unwrap_or(""));
                rest.push(media(mime, url));
            } else if let Some(d) = p.get("fileData") {
                let mime = d.str_of("mimeType").unwrap_or("");
                if let Some(uri) = d.str_of("fileUri") {
                    rest.push(media(mime, uri.to_string()));
                }
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        let content = if rest.iter().all(|p| p.str_of("type") == Some("text")) {
            Value::String(join(rest.iter().filter_map(|p| p.str_of("text"))))
        } else {
            Value::Array(rest)
        };
        out.push(json!({ "role": "user", "content": content }));
        Ok(())
    }

    /// The Chat id of the call a response answers.
    fn answer(&mut self, id: Option<&str>, name: &str) -> Option<String> {
        let by_id = id.and_then(|id| {
            self.calls.iter().position(|c| !c.answered && (c.gemini_id.as_deref() == Some(id) || c.id == id))
        });
        let at = by_id.or_else(|| self.calls.iter().position(|c| !c.answered && c.name == name))?;
        self.calls[at].answered = true;
        Some(self.calls[at].id.clone())
    }
}

/// An image as an image part; any other file as a file part.
fn media(mime: &str, url: String) -> Value {
    if mime.starts_with("image/") {
        json!({ "type": "image_url", "image_url": { "url": url } })
    } else {
        json!({ "type": "file", "file": { "filename": "file", "file_data": url } })
    }
}

/// A function response as text: Gemini CLI's `{"output": ...}` or `{"error": ...}`, else the JSON.
fn response_text(r: &Value) -> String {
    let only = |k: &str| r.as_object().filter(|m| m.len() == 1).and_then(|m| m.get(k)).and_then(Value::as_str);
    if let Some(out) = only("output") {
        return out.to_string();
    }
    if let Some(err) = only("error") {
        return format!("Error: {err}");
    }
    match r {
        Value::String(s) => s.clone(),
        other => to_string(other),
    }
}

/// `functionDeclarations` as function tools (Gemini's schemas with lower-case types), and the
/// calling config as `tool_choice`. Built-in tools (Google Search, code execution) have no Chat
/// equivalent and are dropped.
fn tools(req: &Value, out: &mut Map<String, Value>) {
    let mut tools = Vec::new();
    for t in req.arr_of("tools") {
        for d in t.arr_of("functionDeclarations") {
            let Some(name) = d.str_of("name") else { continue };
            let mut f = Map::new();
            f.insert("name".into(), json!(name));
            if let Some(desc) = d.str_of("description") {
                f.insert("description".into(), json!(desc));
            }
            let schema = d.some("parametersJsonSchema").or_else(|| d.some("parameters"));
            let schema = schema.map(json_schema).unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
            f.insert("parameters".into(), schema);
            tools.push(json!({ "type": "function", "function": f }));
        }
        if t.get("functionDeclarations").is_none() {
            tracing::debug!("a Gemini built-in tool has no Chat equivalent; dropped");
        }
    }
    if tools.is_empty() {
        return;
    }
    let config = req.get("toolConfig").and_then(|c| c.get("functionCallingConfig"));
    if let Some(mode) = config.and_then(|c| c.str_of("mode")) {
        let allowed = config.map(|c| c.arr_of("allowedFunctionNames")).unwrap_or(&[]);
        let choice = match mode {
            "ANY" if allowed.len() == 1 => json!({ "type": "function", "function": { "name": allowed[0] } }),
            "ANY" => json!("required"),
            "NONE" => json!("none"),
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), choice);
    }
    out.insert("tools".into(), Value::Array(tools));
}

fn generation_config(g: &Value, opts: &RequestOptions<'_>, out: &mut Map<String, Value>) {
    for (from, to) in [
        ("maxOutputTokens", "max_tokens"),
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("seed", "seed"),
        ("presencePenalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty"),
    ] {
        if let Some(v) = g.some(from).filter(|v| v.is_number()) {
            out.insert(to.into(), v.clone());
        }
    }
    if !g.arr_of("stopSequences").is_empty() {
        out.insert("stop".into(), Value::Array(g.arr_of("stopSequences").to_vec()));
    }
    if g.str_of("responseMimeType") == Some("application/json") {
        let schema = g.some("responseJsonSchema").or_else(|| g.some("responseSchema"));
        let format = match schema {
            Some(s) => json!({ "type": "json_schema", "json_schema": { "name": "output", "schema": json_schema(s) } }),
            None => json!({ "type": "json_object" }),
        };
        out.insert("response_format".into(), format);
    }
    if opts.target_reasoning {
        let t = g.get("thinkingConfig").unwrap_or(&Value::Null);
        let effort = match t.str_of("thinkingLevel").map(str::to_ascii_lowercase) {
            Some(level) if ["minimal", "low", "medium", "high"].contains(&level.as_str()) => Some(level),
            _ => t.get("thinkingBudget").and_then(Value::as_i64).and_then(effort_of_budget).map(str::to_string),
        };
        if let Some(e) = effort {
            out.insert("reasoning_effort".into(), Value::String(e));
        }
    }
}
