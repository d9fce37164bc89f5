//! A Gemini API mock that refuses what the real API refuses, in Google's error shape: a missing
//! key (403), a key sent as a bearer token (401), unknown fields anywhere in the request (the API
//! parses protobuf JSON strictly), a part with two data fields, a role other than `user` or
//! `model`, empty `contents` or `parts`, calls and responses without a name, and, for Gemini 3
//! models, a function call of the current turn without the thought signature the model gave it.
//! Its answers carry thought signatures it remembers, so a test sees them come back unchanged.

use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::mock::{Chunk, Recorded, Reply};

/// Fields the API knows, per message type (a subset of the real schema: what agents send).
const REQUEST: &[&str] = &[
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
];
const CONTENT: &[&str] = &["role", "parts"];
const PART: &[&str] = &[
    "text",
    "thought",
    "thoughtSignature",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "videoMetadata",
    "partMetadata",
];
/// The members of a part's `data` oneof: exactly one per part.
const PART_DATA: &[&str] =
    &["text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode", "codeExecutionResult"];
const FUNCTION_CALL: &[&str] = &["id", "name", "args"];
const FUNCTION_RESPONSE: &[&str] = &["id", "name", "response", "parts", "willContinue", "scheduling"];
const TOOL: &[&str] = &["functionDeclarations", "googleSearch", "codeExecution", "urlContext", "googleSearchRetrieval"];
const DECLARATION: &[&str] =
    &["name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema", "behavior"];
const GENERATION_CONFIG: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "responseModalities",
    "mediaResolution",
];
const THINKING_CONFIG: &[&str] = &["includeThoughts", "thinkingBudget", "thinkingLevel"];
const TOOL_CONFIG: &[&str] = &["functionCallingConfig"];
const FUNCTION_CALLING_CONFIG: &[&str] = &["mode", "allowedFunctionNames"];

/// A Google error answer.
pub fn error(code: u16, status: &str, message: &str) -> Reply {
    let body = json!({"error": {"code": code, "message": message, "status": status}});
    Reply::Json { status: code, body: body.to_string().into_bytes(), headers: vec![] }
}

fn bad(message: impl Into<String>) -> Reply {
    error(400, "INVALID_ARGUMENT", &message.into())
}

/// What a well-formed request asked for.
pub struct Asked {
    pub model: String,
    pub method: String,
    pub sse: bool,
    pub body: Value,
    /// The usage reported: a token per four bytes of the request.
    pub prompt_tokens: u64,
}

/// The thought signatures the mock has handed out, to check that they come back unchanged.
#[derive(Default)]
pub struct Signatures(Mutex<HashSet<String>>);

impl Signatures {
    /// A new signature for answer `n` (opaque base64-ish text, as the API's are).
    pub fn issue(&self, n: usize) -> String {
        let sig = format!("c2lnbmF0dXJl{n:04}+/Zm9yIGEgY2FsbA==");
        self.0.lock().unwrap().insert(sig.clone());
        sig
    }

    /// One the mock issued, or the stand-in Google documents for histories from other models.
    fn known(&self, sig: &str) -> bool {
        sig == "skip_thought_signature_validator" || self.0.lock().unwrap().contains(sig)
    }
}

/// Checks a request as the API would. `Err` is the answer the API gives.
pub fn check(rec: &Recorded, signatures: &Signatures) -> Result<Asked, Reply> {
    let rest = rec.path.strip_prefix("/v1beta/models/").ok_or_else(|| {
        error(404, "NOT_FOUND", &format!("the Gemini mock serves /v1beta/models/*, not {}", rec.path))
    })?;
    let (model, method) = rest.rsplit_once(':').ok_or_else(|| error(404, "NOT_FOUND", "no method in the path"))?;
    if !["generateContent", "streamGenerateContent", "countTokens"].contains(&method) {
        return Err(error(404, "NOT_FOUND", &format!("method {method} is not found")));
    }
    let query = rec.query.as_deref().unwrap_or("");
    let key_in_query = query.split('&').any(|kv| kv.starts_with("key=") && kv.len() > 4);
    if rec.header("authorization").is_some() && rec.header("x-goog-api-key").is_none() && !key_in_query {
        return Err(error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    }
    if rec.header("x-goog-api-key").is_none() && !key_in_query {
        return Err(error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        ));
    }
    let sse = query.split('&').any(|kv| kv == "alt=sse");
    let prompt_tokens = (rec.body.len() as u64).div_ceil(4);
    let body: Value =
        serde_json::from_slice(&rec.body).map_err(|e| bad(format!("Invalid JSON payload received. {e}")))?;
    let top = body.as_object().ok_or_else(|| bad("Invalid JSON payload received. Expected an object."))?;
    if method == "countTokens" {
        return Ok(Asked { model: model.into(), method: method.into(), sse, body, prompt_tokens });
    }
    unknown_fields(&body, REQUEST, "")?;
    let contents = top.get("contents").and_then(Value::as_array).filter(|c| !c.is_empty());
    let contents = contents.ok_or_else(|| bad("* GenerateContentRequest.contents: contents is not specified"))?;
    if let Some(si) = top.get("systemInstruction") {
        content(si, "systemInstruction", true)?;
    }
    for (i, c) in contents.iter().enumerate() {
        content(c, &format!("contents[{i}]"), false)?;
    }
    for (i, t) in top.get("tools").and_then(Value::as_array).into_iter().flatten().enumerate() {
        unknown_fields(t, TOOL, &format!("tools[{i}]."))?;
        for (j, d) in t["functionDeclarations"].as_array().into_iter().flatten().enumerate() {
            let at = format!("tools[{i}].function_declarations[{j}]");
            unknown_fields(d, DECLARATION, &format!("{at}."))?;
            if d["name"].as_str().is_none_or(str::is_empty) {
                return Err(bad(format!("* GenerateContentRequest.{at}.name: Name cannot be empty.")));
            }
            if d.get("parameters").is_some() && d.get("parametersJsonSchema").is_some() {
                return Err(bad(format!(
                    "* GenerateContentRequest.{at}: parameters and parameters_json_schema are mutually exclusive"
                )));
            }
        }
    }
    if let Some(g) = top.get("generationConfig") {
        unknown_fields(g, GENERATION_CONFIG, "generation_config.")?;
        if let Some(t) = g.get("thinkingConfig") {
            unknown_fields(t, THINKING_CONFIG, "generation_config.thinking_config.")?;
        }
    }
    if let Some(t) = top.get("toolConfig") {
        unknown_fields(t, TOOL_CONFIG, "tool_config.")?;
        if let Some(f) = t.get("functionCallingConfig") {
            unknown_fields(f, FUNCTION_CALLING_CONFIG, "tool_config.function_calling_config.")?;
        }
    }
    if model.starts_with("gemini-3") {
        current_turn_signatures(contents, signatures)?;
    }
    Ok(Asked { model: model.into(), method: method.into(), sse, body, prompt_tokens })
}

fn unknown_fields(v: &Value, known: &[&str], at: &str) -> Result<(), Reply> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("Invalid value at '{}': expected an object", at.trim_end_matches('.'))));
    };
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "Invalid JSON payload received. Unknown name \"{k}\" at '{}': Cannot find field.",
            at.trim_end_matches('.')
        ))),
        None => Ok(()),
    }
}

fn content(c: &Value, at: &str, system: bool) -> Result<(), Reply> {
    unknown_fields(c, CONTENT, &format!("{at}."))?;
    if !system {
        match c.get("role").and_then(Value::as_str) {
            Some("user" | "model") => {}
            other => return Err(bad(format!("Please use a valid role: user, model. ({at} has {other:?})"))),
        }
    }
    let parts = c.get("parts").and_then(Value::as_array).filter(|p| !p.is_empty());
    let parts =
        parts.ok_or_else(|| bad(format!("* GenerateContentRequest.{at}.parts: contents.parts must not be empty.")))?;
    for (k, p) in parts.iter().enumerate() {
        let at = format!("{at}.parts[{k}]");
        unknown_fields(p, PART, &format!("{at}."))?;
        let data: Vec<&str> = PART_DATA.iter().copied().filter(|d| p.get(*d).is_some()).collect();
        if data.len() > 1 {
            return Err(bad(format!(
                "Invalid JSON payload received. Oneof field 'data' is already set. Cannot set '{}' ({at})",
                data[1]
            )));
        }
        if data.is_empty() {
            return Err(bad(format!(
                "* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field"
            )));
        }
        if let Some(f) = p.get("functionCall") {
            unknown_fields(f, FUNCTION_CALL, &format!("{at}.function_call."))?;
            if f["name"].as_str().is_none_or(str::is_empty) {
                return Err(bad(format!("* GenerateContentRequest.{at}.function_call.name: Name cannot be empty.")));
            }
        }
        if let Some(f) = p.get("functionResponse") {
            unknown_fields(f, FUNCTION_RESPONSE, &format!("{at}.function_response."))?;
            if f["name"].as_str().is_none_or(str::is_empty) {
                return Err(bad(format!(
                    "* GenerateContentRequest.{at}.function_response.name: Name cannot be empty."
                )));
            }
            if !f["response"].is_object() {
                return Err(bad(format!(
                    "Invalid value at '{at}.function_response.response' (type.googleapis.com/google.protobuf.Struct)"
                )));
            }
        }
    }
    Ok(())
}

/// Gemini 3: every model turn after the last user message with text must carry, on its first
/// function call, the signature the model gave it.
fn current_turn_signatures(contents: &[Value], signatures: &Signatures) -> Result<(), Reply> {
    let has_text = |c: &Value| c["parts"].as_array().into_iter().flatten().any(|p| p.get("text").is_some());
    let start = contents.iter().rposition(|c| c["role"] == "user" && has_text(c)).unwrap_or(0);
    for (i, c) in contents.iter().enumerate().skip(start) {
        if c["role"] != "model" {
            continue;
        }
        let Some(first) = c["parts"].as_array().into_iter().flatten().find(|p| p.get("functionCall").is_some()) else {
            continue;
        };
        match first.get("thoughtSignature").and_then(Value::as_str) {
            Some(sig) if signatures.known(sig) => {}
            Some(sig) => return Err(bad(format!("Corrupted thought signature in contents[{i}]: {sig:?}"))),
            None => {
                return Err(bad(format!(
                    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly (contents[{i}])."
                )))
            }
        }
    }
    Ok(())
}

/// What the mock answers with: text, or function calls (name, args).
pub enum Say {
    Text(String),
    Calls(Vec<(String, Value)>),
}

/// The answer as a `GenerateContentResponse`; the first call (or the text) carries `signature`.
pub fn response(say: &Say, model: &str, n: usize, signature: &str, prompt_tokens: u64) -> Value {
    let parts: Vec<Value> = match say {
        Say::Text(t) => vec![json!({"text": t, "thoughtSignature": signature})],
        Say::Calls(calls) => calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| {
                let mut p = json!({"functionCall": {"name": name, "args": args}});
                if i == 0 {
                    p["thoughtSignature"] = json!(signature);
                }
                p
            })
            .collect(),
    };
    json!({
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": 20, "thoughtsTokenCount": 8, "totalTokenCount": prompt_tokens + 28},
        "modelVersion": model,
        "responseId": format!("mock-{n}"),
    })
}

/// The answer as the API sends it: one JSON body, SSE events (a thought first, then the parts,
/// the last event with the finish reason and usage), or a JSON array for a stream without `alt=sse`.
pub fn reply(asked: &Asked, say: &Say, n: usize, signatures: &Signatures) -> Reply {
    let tokens = asked.prompt_tokens;
    if asked.method == "countTokens" {
        return Reply::ok_json(json!({"totalTokens": tokens}).to_string());
    }
    let whole = response(say, &asked.model, n, &signatures.issue(n), tokens);
    if asked.method == "generateContent" {
        return Reply::ok_json(whole.to_string());
    }
    let thought = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "**Planning** the next step.", "thought": true}]}, "index": 0}],
        "usageMetadata": {"promptTokenCount": tokens, "totalTokenCount": tokens},
        "modelVersion": asked.model, "responseId": format!("mock-{n}"),
    });
    if !asked.sse {
        return Reply::ok_json(json!([thought, whole]).to_string());
    }
    let events = [thought, whole].iter().map(|e| Chunk::Bytes(format!("data: {e}\r\n\r\n").into_bytes())).collect();
    Reply::sse(events)
}
