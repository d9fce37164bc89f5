//! Helpers of the clearing tests: long agent sessions in each dialect (a command per turn, each
//! with a large distinct output), a mock provider that enforces what real providers enforce about
//! tool ids (every tool output answers a call the model made, in that provider's error shape when
//! not), and readers for what the provider received.
#![allow(dead_code)]

use serde_json::{json, Value};

use super::common::mock::{self, Recorded, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Anthropic,
    Chat,
    Responses,
}

impl Dialect {
    pub fn path(self) -> &'static str {
        match self {
            Dialect::Anthropic => "/v1/messages",
            Dialect::Chat => "/v1/chat/completions",
            Dialect::Responses => "/v1/responses",
        }
    }

    pub fn of_path(path: &str) -> Option<Dialect> {
        [Dialect::Anthropic, Dialect::Chat, Dialect::Responses].into_iter().find(|d| path.ends_with(d.path()))
    }

    pub fn kind(self) -> &'static str {
        match self {
            Dialect::Anthropic => "anthropic",
            Dialect::Chat => "openai",
            Dialect::Responses => "openai-responses",
        }
    }
}

pub const TASK: &str = "Run the report for every module and tell me which rows fail.";

/// The command of turn `t` and its output: ~150 lines (about 2,500 tokens), distinct per turn,
/// with identifiers and one error line.
pub fn command(t: usize) -> String {
    format!("./report.sh module_{t}")
}

pub fn output(t: usize) -> String {
    let mut s = format!("report for module_{t} (seed {})\n", t * 7919);
    for i in 0..150 {
        if i == 97 {
            s.push_str(&format!("ERROR row_{t}_{i}: checksum mismatch in widget_store_{t}.py:{}\n", 40 + t));
        } else {
            s.push_str(&format!(
                "row_{t}_{i}: widget_{t}_{i} value={} latency={}ms owner=team_{}\n",
                (i * 37 + t * 11) % 1000,
                (i * 13 + t) % 97,
                (i + t) % 9
            ));
        }
    }
    s
}

fn call_id(t: usize) -> String {
    format!("call_{t:04}_x7Kq")
}

/// The request an agent sends after `turns` commands (each a call and its output), in `dialect`.
pub fn request(dialect: Dialect, turns: usize, model: &str) -> Value {
    let mut items = vec![user(dialect, TASK)];
    for t in 0..turns {
        let args = json!({"command": command(t)});
        let (id, out) = (call_id(t), output(t));
        match dialect {
            Dialect::Anthropic => {
                items.push(json!({"role": "assistant", "content": [
                    {"type": "text", "text": format!("Running the report for module_{t}.")},
                    {"type": "tool_use", "id": id, "name": "Bash", "input": args}]}));
                items.push(json!({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": id, "content": out}]}));
            }
            Dialect::Chat => {
                items.push(json!({"role": "assistant", "content": format!("Running the report for module_{t}."),
                    "tool_calls": [{"id": id, "type": "function",
                        "function": {"name": "bash", "arguments": args.to_string()}}]}));
                items.push(json!({"role": "tool", "tool_call_id": id, "content": out}));
            }
            Dialect::Responses => {
                items.push(json!({"type": "function_call", "call_id": id, "name": "shell",
                    "arguments": args.to_string()}));
                items.push(json!({"type": "function_call_output", "call_id": id, "output": out}));
            }
        }
    }
    match dialect {
        Dialect::Anthropic => json!({"model": model, "max_tokens": 512, "messages": items}),
        Dialect::Chat => json!({"model": model, "messages": items}),
        Dialect::Responses => json!({"model": model, "input": items}),
    }
}

fn user(dialect: Dialect, text: &str) -> Value {
    match dialect {
        Dialect::Responses => {
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
        }
        _ => json!({"role": "user", "content": text}),
    }
}

/// A provider's answer in its own dialect (with usage), or its 400 for an unpaired tool output.
pub fn provider(rec: &Recorded) -> Reply {
    let Some(dialect) = Dialect::of_path(&rec.path) else {
        return Reply::Json { status: 404, body: b"{}".to_vec(), headers: vec![] };
    };
    let body: Value = serde_json::from_slice(&rec.body).unwrap_or_default();
    if let Err(why) = tool_ids_pair(dialect, &body) {
        let body = match dialect {
            Dialect::Anthropic => json!({"type": "error", "error": {"type": "invalid_request_error", "message": why}}),
            _ => json!({"error": {"message": why, "type": "invalid_request_error", "param": null, "code": null}}),
        };
        return Reply::Json { status: 400, body: body.to_string().into_bytes(), headers: vec![] };
    }
    Reply::ok_json(match dialect {
        Dialect::Anthropic => mock::anthropic_message("ok"),
        Dialect::Chat => mock::chat_completion("ok"),
        Dialect::Responses => json!({
            "id": "resp_mock", "object": "response", "status": "completed", "model": "gpt-test",
            "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "ok", "annotations": []}]}],
            "usage": {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}})
        .to_string()
        .into_bytes(),
    })
}

/// The providers' rules: Anthropic wants each `tool_result` to answer a `tool_use` of the assistant
/// message right before it and no empty text; OpenAI Chat wants each `tool` message to answer a
/// call of the assistant message before it; Responses wants each output's `call_id` to name an
/// earlier `function_call`.
pub fn tool_ids_pair(dialect: Dialect, body: &Value) -> Result<(), String> {
    let empty = Vec::new();
    match dialect {
        Dialect::Anthropic => {
            let msgs = body["messages"].as_array().unwrap_or(&empty);
            for (i, m) in msgs.iter().enumerate() {
                for part in m["content"].as_array().unwrap_or(&empty) {
                    if part["type"] == "text" && part["text"].as_str().is_some_and(str::is_empty) {
                        return Err(format!("messages.{i}: text content blocks must be non-empty"));
                    }
                    if part["type"] != "tool_result" {
                        continue;
                    }
                    let id = part["tool_use_id"].as_str().unwrap_or("");
                    let prev = i.checked_sub(1).map(|k| &msgs[k]);
                    let called = prev.and_then(|p| p["content"].as_array()).is_some_and(|parts| {
                        parts.iter().any(|c| c["type"] == "tool_use" && c["id"].as_str() == Some(id))
                    });
                    if !called {
                        return Err(format!(
                            "messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                }
            }
        }
        Dialect::Chat => {
            let msgs = body["messages"].as_array().unwrap_or(&empty);
            let mut open: Vec<String> = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                if m["role"] == "tool" {
                    let id = m["tool_call_id"].as_str().unwrap_or("");
                    match open.iter().position(|o| o == id) {
                        Some(k) => {
                            open.remove(k);
                        }
                        None => {
                            return Err(format!(
                                "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls' (messages[{i}])."
                            ))
                        }
                    }
                } else {
                    if !open.is_empty() {
                        return Err(format!(
                            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                            open.join(", ")
                        ));
                    }
                    for c in m["tool_calls"].as_array().unwrap_or(&empty) {
                        open.push(c["id"].as_str().unwrap_or("").to_string());
                    }
                }
            }
        }
        Dialect::Responses => {
            let items = body["input"].as_array().unwrap_or(&empty);
            let mut calls: Vec<&str> = Vec::new();
            for it in items {
                match it["type"].as_str() {
                    Some("function_call" | "custom_tool_call") => calls.push(it["call_id"].as_str().unwrap_or("")),
                    Some("function_call_output" | "custom_tool_call_output") => {
                        let id = it["call_id"].as_str().unwrap_or("");
                        if !calls.contains(&id) {
                            return Err(format!("No tool call found for function call output with call_id {id}."));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Every tool output's text in a request as the provider received it, in order.
pub fn outputs(dialect: Dialect, body: &Value) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    };
    let empty = Vec::new();
    let mut out = Vec::new();
    match dialect {
        Dialect::Anthropic => {
            for m in body["messages"].as_array().unwrap_or(&empty) {
                for p in m["content"].as_array().unwrap_or(&empty) {
                    if p["type"] == "tool_result" {
                        out.push(text(&p["content"]));
                    }
                }
            }
        }
        Dialect::Chat => {
            for m in body["messages"].as_array().unwrap_or(&empty) {
                if m["role"] == "tool" {
                    out.push(text(&m["content"]));
                }
            }
        }
        Dialect::Responses => {
            for it in body["input"].as_array().unwrap_or(&empty) {
                if it["type"] == "function_call_output" {
                    out.push(text(&it["output"]));
                }
            }
        }
    }
    out
}

pub fn is_stub(text: &str) -> bool {
    text.starts_with("[tokenfold: cleared ")
}

/// The file a stub's first line says holds the original (`Original: cat PATH]`).
pub fn stub_original(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let k = first.find("Original: cat ").expect("a recall command") + "Original: cat ".len();
    first[k..].trim_end_matches(']').to_string()
}
