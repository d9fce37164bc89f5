//! OpenAI Chat Completions request -> Gemini `GenerateContentRequest` (and, through Chat,
//! Anthropic and Responses requests). The model and streaming go in the URL, not the body.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::dialect::translate::common::parse_arguments;
use crate::dialect::translate::gemini_common::{budget_of_effort, split_call_id, SKIP_SIGNATURE};
use crate::dialect::translate::json::{join, text_of, Get};
use crate::dialect::translate::{RequestOptions, TranslateError};

pub(crate) fn from_chat(req: &Value, opts: &RequestOptions<'_>) -> Result<Value, TranslateError> {
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return Err(TranslateError::invalid("messages", "must be an array"));
    };
    let mut out = Map::new();
    let mut system = Vec::new();
    let mut b = Contents::default();
    for m in messages {
        let content = m.get("content");
        match m.str_of("role") {
            // Leading system text is the system instruction; later system text stays in place
            // as user text, so an earlier prefix is never rewritten.
            Some("system" | "developer") if b.contents.is_empty() => system.push(text_of(content)),
            Some("system" | "developer") => b.push("user", text_parts(&text_of(content))),
            Some("user") => b.push("user", user_parts(content)?),
            Some("assistant") => b.assistant(m)?,
            Some("tool") => b.tool_result(m)?,
            other => {
                return Err(TranslateError::invalid(
                    "messages",
                    format!("unknown role {:?}", other.unwrap_or("(none)")),
                ))
            }
        }
    }
    let system = join(system.iter().map(String::as_str).filter(|s| !s.is_empty()));
    if b.contents.is_empty() {
        return Err(TranslateError::invalid("messages", "no message with content to send"));
    }
    out.insert("contents".into(), Value::Array(b.contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": [{ "text": system }] }));
    }
    tools(req, &mut out);
    let config = generation_config(req, opts);
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}

/// `contents` being built: consecutive parts of one role form one content (Gemini expects the
/// responses to parallel calls together, and alternating roles).
#[derive(Default)]
struct Contents {
    contents: Vec<Value>,
    /// Function name of each call id seen, for the responses (Gemini wants the name).
    names: HashMap<String, String>,
}

impl Contents {
    fn push(&mut self, role: &str, parts: Vec<Value>) {
        if parts.is_empty() {
            return;
        }
        if let Some(last) = self.contents.last_mut().filter(|c| c.str_of("role") == Some(role)) {
            if let Some(existing) = last.get_mut("parts").and_then(Value::as_array_mut) {
                existing.extend(parts);
                return;
            }
        }
        self.contents.push(json!({ "role": role, "parts": parts }));
    }

    /// Assistant text, then its calls: each call's signature (carried in its id) goes back on
    /// its part. A step whose first call has none gets Google's stand-in.
    fn assistant(&mut self, m: &Value) -> Result<(), TranslateError> {
        let mut parts = Vec::new();
        for key in ["content", "refusal"] {
            parts.extend(text_parts(&text_of(m.get(key))));
        }
        let mut first_call = true;
        for call in m.arr_of("tool_calls") {
            let f = call.get("function").unwrap_or(&Value::Null);
            let (Some(id), Some(name)) = (call.str_of("id"), f.str_of("name")) else {
                return Err(TranslateError::invalid("messages", "tool call without id or name"));
            };
            self.names.insert(id.to_string(), name.to_string());
            let (gemini_id, signature) = split_call_id(id);
            let mut fc = Map::new();
            if let Some(gid) = gemini_id {
                fc.insert("id".into(), json!(gid));
            }
            fc.insert("name".into(), json!(name));
            fc.insert("args".into(), parse_arguments(f.str_of("arguments").unwrap_or("")));
            let mut part = json!({ "functionCall": fc });
            match signature {
                Some(sig) => part["thoughtSignature"] = Value::String(sig),
                None if first_call => part["thoughtSignature"] = json!(SKIP_SIGNATURE),
                None => {}
            }
            first_call = false;
            parts.push(part);
        }
        self.push("model", parts);
        Ok(())
    }

    fn tool_result(&mut self, m: &Value) -> Result<(), TranslateError> {
        let Some(id) = m.str_of("tool_call_id") else {
            return Err(TranslateError::invalid("messages", "tool message without tool_call_id"));
        };
        let text = text_of(m.get("content"));
        let Some(name) = self.names.get(id).cloned() else {
            // Gemini needs the function's name; a result whose call is not here goes as text.
            self.push("user", text_parts(&format!("Output of tool call {id}:\n{text}")));
            return Ok(());
        };
        let mut fr = Map::new();
        if let Some(gid) = split_call_id(id).0 {
            fr.insert("id".into(), json!(gid));
        }
        fr.insert("name".into(), json!(name));
        fr.insert("response".into(), json!({ "output": text }));
        self.push("user", vec![json!({ "functionResponse": fr })]);
        Ok(())
    }
}

/// A text part, none for empty text (the API refuses an empty text parameter).
fn text_parts(text: &str) -> Vec<Value> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({ "text": text })]
    }
}

fn user_parts(content: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    let Some(Value::Array(parts)) = content else {
        return Ok(text_parts(&text_of(content)));
    };
    let mut out = Vec::new();
    for p in parts {
        match p.str_of("type") {
            Some("text") => out.extend(text_parts(p.str_of("text").unwrap_or(""))),
            Some("image_url") => {
                let url = p
                    .get("image_url")
                    .and_then(|i| i.as_str().or_else(|| i.str_of("url")))
                    .ok_or_else(|| TranslateError::invalid("messages", "image_url without url"))?;
                out.push(media_part(url, "image/jpeg"));
            }
            Some("file") => {
                if let Some(data) = p.get("file").and_then(|f| f.str_of("file_data")) {
                    out.push(media_part(data, "application/pdf"));
                }
            }
            other => tracing::debug!(part = other.unwrap_or("(none)"), "content part has no Gemini equivalent"),
        }
    }
    Ok(out)
}

/// A data URL as inline data; any other URL as a file reference (`fallback_mime` when the URL
/// does not say its type).
fn media_part(url: &str, fallback_mime: &str) -> Value {
    match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
        Some((mime, data)) => json!({ "inlineData": { "mimeType": mime, "data": data } }),
        None => {
            let ext = url.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            let mime = match ext.as_str() {
                "png" => "image/png",
                "gif" => "image/gif",
                "webp" => "image/webp",
                "jpg" | "jpeg" => "image/jpeg",
                "pdf" => "application/pdf",
                _ => fallback_mime,
            };
            json!({ "fileData": { "mimeType": mime, "fileUri": url } })
        }
    }
}

/// Function tools as one tool of `functionDeclarations` (their JSON Schema as is, in
/// `parametersJsonSchema`), and `tool_choice` as `toolConfig`.
fn tools(req: &Value, out: &mut Map<String, Value>) {
    let declarations: Vec<Value> = req
        .arr_of("tools")
        .iter()
        .filter(|t| t.str_of("type").unwrap_or("function") == "function")
        .filter_map(|t| {
            let f = t.get("function")?;
            let mut d = Map::new();
            d.insert("name".into(), json!(f.str_of("name")?));
            if let Some(desc) = f.str_of("description") {
                d.insert("description".into(), json!(desc));
            }
            if let Some(p) = f.some("parameters") {
                d.insert("parametersJsonSchema".into(), p.clone());
            }
            Some(Value::Object(d))
        })
        .collect();
    if declarations.is_empty() {
        return;
    }
    out.insert("tools".into(), json!([{ "functionDeclarations": declarations }]));
    let config = match req.get("tool_choice") {
        Some(Value::String(s)) => match s.as_str() {
            "required" => json!({ "mode": "ANY" }),
            "none" => json!({ "mode": "NONE" }),
            _ => json!({ "mode": "AUTO" }),
        },
        Some(c) => match c.get("function").and_then(|f| f.str_of("name")) {
            Some(name) => json!({ "mode": "ANY", "allowedFunctionNames": [name] }),
            None => return,
        },
        None => return,
    };
    out.insert("toolConfig".into(), json!({ "functionCallingConfig": config }));
}

fn generation_config(req: &Value, opts: &RequestOptions<'_>) -> Map<String, Value> {
    let mut g = Map::new();
    if let Some(n) = req.u64_of("max_completion_tokens").or_else(|| req.u64_of("max_tokens")) {
        g.insert("maxOutputTokens".into(), json!(n));
    }
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = req.some(from).filter(|v| v.is_number()) {
            g.insert(to.into(), v.clone());
        }
    }
    match req.get("stop") {
        Some(Value::String(s)) => {
            g.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            g.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    match req.get("response_format").and_then(|f| f.str_of("type")) {
        Some("json_schema") => {
            g.insert("responseMimeType".into(), json!("application/json"));
            if let Some(schema) =
                req.get("response_format").and_then(|f| f.get("json_schema")).and_then(|j| j.some("schema"))
            {
                g.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        Some("json_object") => {
            g.insert("responseMimeType".into(), json!("application/json"));
        }
        _ => {}
    }
    if opts.target_reasoning {
        if let Some(budget) = req.str_of("reasoning_effort").and_then(budget_of_effort) {
            // Thought summaries come back as the reasoning the client asked for.
            g.insert("thinkingConfig".into(), json!({ "thinkingBudget": budget, "includeThoughts": budget > 0 }));
        }
    }
    g
}
