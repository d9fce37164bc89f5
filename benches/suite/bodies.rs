//! Coding-agent-shaped request bodies of an exact size, for either dialect and any model name
//! (each peer names the mock's model its own way, so each gets its own copy of the same request).

use bytes::Bytes;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dialect {
    Anthropic,
    OpenaiChat,
}

impl Dialect {
    pub fn path(self) -> &'static str {
        match self {
            Dialect::Anthropic => "/v1/messages",
            Dialect::OpenaiChat => "/v1/chat/completions",
        }
    }
}

const SYSTEM: &str =
    "You are a coding agent in a Rust workspace. Read files before editing them and keep every change minimal.";

/// The output of an earlier `read_file` call: numbered source lines, distinct per call, so a
/// proxy that folds repeats finds nothing to fold and the row measures pure pass-through.
fn tool_output(call: usize) -> String {
    (1..=30)
        .map(|line| {
            format!(
                "{line:>4}\tpub fn step_{call}_{line}(input: &str) -> Result<usize, Error> {{ parse(input, {}, \"field-{}\") }}\n",
                (call * 17 + line * 3) % 1009,
                line % 9
            )
        })
        .collect()
}

fn history_turn(dialect: Dialect, call: usize) -> [Value; 2] {
    let id = format!("toolu_{call:05}");
    let path = format!("crates/core/src/part_{}/unit_{call}.rs", call % 5);
    match dialect {
        Dialect::Anthropic => [
            json!({"role": "assistant", "content": [
                {"type": "text", "text": format!("Reading {path}.")},
                {"type": "tool_use", "id": id, "name": "read_file", "input": {"path": path}}]}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": tool_output(call)}]}),
        ],
        Dialect::OpenaiChat => [
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
                "function": {"name": "read_file", "arguments": json!({"path": path}).to_string()}}]}),
            json!({"role": "tool", "tool_call_id": id, "content": tool_output(call)}),
        ],
    }
}

fn tool_specs(dialect: Dialect) -> Value {
    let names = ["read_file", "edit_file", "run_command", "grep", "list_dir"];
    Value::Array(
        names
            .iter()
            .map(|name| {
                let params = json!({"type": "object", "required": ["path"], "properties": {
                    "path": {"type": "string", "description": format!("Workspace-relative path that {name} acts on.")}}});
                let description = format!("{name}: a workspace tool.");
                match dialect {
                    Dialect::Anthropic => json!({"name": name, "description": description, "input_schema": params}),
                    Dialect::OpenaiChat => json!({"type": "function",
                        "function": {"name": name, "description": description, "parameters": params}}),
                }
            })
            .collect(),
    )
}

fn request(dialect: Dialect, model: &str, stream: bool, turns: usize, tools: bool, ask: &str) -> Value {
    let mut messages = Vec::with_capacity(2 * turns + 2);
    if dialect == Dialect::OpenaiChat {
        messages.push(json!({"role": "system", "content": SYSTEM}));
    }
    messages.push(json!({"role": "user", "content": "The parser test fails; find out why and fix it."}));
    for call in 0..turns {
        messages.extend(history_turn(dialect, call));
    }
    messages.push(json!({"role": "user", "content": ask}));
    let mut v = json!({"model": model, "max_tokens": 1024, "stream": stream, "messages": messages});
    if dialect == Dialect::Anthropic {
        v["system"] = json!(SYSTEM);
    } else if stream {
        // As OpenAI SDK clients ask for it: without this no usage comes back in a stream.
        v["stream_options"] = json!({"include_usage": true});
    }
    if tools {
        v["tools"] = tool_specs(dialect);
    }
    v
}

fn encoded_len(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

/// A request of exactly `size` bytes: as many earlier tool turns as fit, then a last user
/// message padded with prose to the byte.
pub fn body(dialect: Dialect, model: &str, size: usize, stream: bool) -> Result<Bytes, String> {
    let tools = size >= 8 * 1024;
    let mut turns = 0;
    while encoded_len(&request(dialect, model, stream, turns + 1, tools, "")) + 32 <= size {
        turns += 1;
    }
    let base = encoded_len(&request(dialect, model, stream, turns, tools, ""));
    if base > size {
        return Err(format!("a {size}-byte request is smaller than its envelope ({base} bytes)"));
    }
    let prose = "Keep the public API as it is and explain the root cause in one sentence. ";
    let ask: String = prose.chars().cycle().take(size - base).collect();
    let bytes = serde_json::to_vec(&request(dialect, model, stream, turns, tools, &ask)).map_err(|e| e.to_string())?;
    if bytes.len() != size {
        return Err(format!("padding missed: {} bytes instead of {size}", bytes.len()));
    }
    Ok(Bytes::from(bytes))
}
