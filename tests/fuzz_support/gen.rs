//! Structured inputs from fuzz bytes: requests of each dialect that are valid by construction
//! (turns, tool calls and their results, system prompts, images, stream flags), and a JSON
//! writer that spells the same value many ways (whitespace, key order, escapes, `1` as `1.0`),
//! as real clients do, so splices and translations meet more than serde's own spelling.

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use serde_json::{json, Map, Value};
use tokenfold::dialect::Dialect;

/// Command outputs recorded from real tools (fixtures/filters/*.out): long, repetitive, with
/// error lines, so folding and filters have something to do.
fn recorded_outputs() -> &'static [String] {
    static OUTPUTS: OnceLock<Vec<String>> = OnceLock::new();
    OUTPUTS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/filters");
        let mut files: Vec<_> =
            std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        files.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "out"));
        files.sort();
        files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
    })
}

const WORDS: &[&str] = &[
    "fn main() {",
    "let x = 1.0;",
    "ERROR: build failed",
    "src/lib.rs:12:5",
    "héllo",
    "漢字",
    "😀",
    "\u{202e}rtl",
    "tab\there",
    "line\nbreak",
    "quote \" inside",
    "back\\slash",
    "</output>",
    "<system-reminder>",
    "\u{0}",
    "\r\n",
    "   ",
    "{\"json\": [1, 2]}",
    "data: x\n\n",
    "\u{2028}",
    "a",
    "",
];

fn text(u: &mut Unstructured) -> Result<String> {
    let n = u.int_in_range(0..=12)?;
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(u.choose(WORDS)?);
        s.push(*u.choose(&[' ', '\n', ' ', '.'])?);
    }
    Ok(s)
}

/// A tool output: a recorded one (often the same again: repeats are what folding removes) or text.
fn output(u: &mut Unstructured) -> Result<String> {
    let recorded = recorded_outputs();
    if !recorded.is_empty() && u.ratio(2, 3)? {
        return Ok(u.choose(recorded)?.clone());
    }
    text(u)
}

const MODELS: &[&str] = &["claude-sonnet-4-5", "gpt-5", "gpt-test", "made-up-model", ""];

fn model(u: &mut Unstructured) -> Result<&'static str> {
    Ok(*u.choose(MODELS)?)
}

fn args(u: &mut Unstructured) -> Result<Value> {
    Ok(json!({"path": text(u)?, "n": u.int_in_range(-3i64..=1_000_000)?, "deep": {"list": [text(u)?, null, true]}}))
}

fn tool_schema() -> Value {
    json!({"type": "object", "properties": {"path": {"type": "string"}, "n": {"type": "integer"}}, "required": ["path"]})
}

const TOOLS: &[&str] = &["Read", "Bash", "Edit", "Grep", "shell"];

/// A request of `dialect`: alternating turns where the assistant may call tools and the next
/// user turn carries their results.
pub fn request(u: &mut Unstructured, dialect: Dialect) -> Result<Value> {
    let turns = u.int_in_range(1..=6)?;
    let mut calls: Vec<(String, &str)> = Vec::new();
    let mut items: Vec<Value> = Vec::new();
    let mut next_id = 0;
    for turn in 0..turns {
        // The user's turn: results of the previous turn's calls, then maybe text.
        items.extend(user_turn(u, dialect, &std::mem::take(&mut calls))?);
        if turn + 1 == turns {
            break;
        }
        let said = text(u)?;
        for _ in 0..u.int_in_range(0..=2)? {
            next_id += 1;
            calls.push((format!("call_{next_id:03}"), u.choose(TOOLS)?));
        }
        items.extend(assistant_turn(u, dialect, &said, &calls)?);
    }
    let mut top = Map::new();
    top.insert("model".into(), json!(model(u)?));
    if u.ratio(1, 2)? {
        top.insert("stream".into(), json!(u.arbitrary::<bool>()?));
    }
    let system = text(u)?;
    let tools: Vec<&str> = TOOLS.iter().copied().filter(|_| u.ratio(1, 2).unwrap_or(false)).collect();
    // Each dialect's tool declaration.
    let declared: Vec<Value> = tools
        .iter()
        .map(|n| match dialect {
            Dialect::Anthropic => json!({"name": n, "description": "a tool", "input_schema": tool_schema()}),
            Dialect::OpenaiChat => {
                json!({"type": "function", "function": {"name": n, "description": "a tool", "parameters": tool_schema()}})
            }
            Dialect::OpenaiResponses => {
                json!({"type": "function", "name": n, "description": "a tool", "parameters": tool_schema()})
            }
            Dialect::Gemini => json!({"name": n, "description": "a tool", "parameters": tool_schema()}),
        })
        .collect();
    if !declared.is_empty() {
        let tools = match dialect {
            // Gemini groups its declarations in one tool.
            Dialect::Gemini => json!([{"functionDeclarations": declared}]),
            _ => Value::Array(declared),
        };
        top.insert("tools".into(), tools);
    }
    match dialect {
        Dialect::Anthropic => {
            top.insert("max_tokens".into(), json!(u.int_in_range(1..=64_000)?));
            if u.ratio(1, 2)? {
                let blocks = json!([{"type": "text", "text": system}, {"type": "text", "text": "Be concise.", "cache_control": {"type": "ephemeral"}}]);
                top.insert("system".into(), if u.arbitrary()? { json!(system) } else { blocks });
            }
            top.insert("messages".into(), Value::Array(items));
        }
        Dialect::OpenaiChat => {
            if u.ratio(1, 2)? {
                items.insert(0, json!({"role": *u.choose(&["system", "developer"])?, "content": system}));
            }
            let key = *u.choose(&["max_tokens", "max_completion_tokens"])?;
            top.insert(key.into(), json!(u.int_in_range(1..=64_000)?));
            if top.get("stream") == Some(&json!(true)) && u.arbitrary()? {
                top.insert("stream_options".into(), json!({"include_usage": u.arbitrary::<bool>()?}));
            }
            top.insert("messages".into(), Value::Array(items));
        }
        Dialect::OpenaiResponses => {
            if u.ratio(1, 2)? {
                top.insert("instructions".into(), json!(system));
            }
            top.insert("max_output_tokens".into(), json!(u.int_in_range(16..=64_000)?));
            top.insert("input".into(), Value::Array(items));
        }
        Dialect::Gemini => {
            // The model and streaming are in the URL, not the body.
            top.remove("model");
            top.remove("stream");
            if u.ratio(1, 2)? {
                top.insert("systemInstruction".into(), json!({"parts": [{"text": system}]}));
            }
            top.insert("generationConfig".into(), json!({"maxOutputTokens": u.int_in_range(1..=64_000)?}));
            top.insert("contents".into(), Value::Array(items));
        }
    }
    Ok(Value::Object(top))
}

/// The user's turn: the results of `calls`, then (or only) what they typed.
fn user_turn(u: &mut Unstructured, dialect: Dialect, calls: &[(String, &str)]) -> Result<Vec<Value>> {
    let typed = text(u)?;
    let image = u.ratio(1, 8)?;
    let mut results = Vec::new();
    for (id, _) in calls {
        results.push((id.clone(), output(u)?));
    }
    Ok(match dialect {
        Dialect::Anthropic => {
            let mut blocks: Vec<Value> = results
                .into_iter()
                .map(|(id, out)| json!({"type": "tool_result", "tool_use_id": id, "content": out}))
                .collect();
            blocks.push(json!({"type": "text", "text": typed}));
            if image {
                blocks.push(json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}));
            }
            let content = if blocks.len() == 1 && u.arbitrary()? { json!(typed) } else { Value::Array(blocks) };
            vec![json!({"role": "user", "content": content})]
        }
        Dialect::OpenaiChat => {
            let mut out: Vec<Value> = results
                .into_iter()
                .map(|(id, out)| json!({"role": "tool", "tool_call_id": id, "content": out}))
                .collect();
            let content = if image {
                json!([{"type": "text", "text": typed}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}])
            } else {
                json!(typed)
            };
            out.push(json!({"role": "user", "content": content}));
            out
        }
        Dialect::OpenaiResponses => {
            let mut out: Vec<Value> = results
                .into_iter()
                .map(|(id, out)| json!({"type": "function_call_output", "call_id": id, "output": out}))
                .collect();
            let content = if u.arbitrary()? { json!(typed) } else { json!([{"type": "input_text", "text": typed}]) };
            out.push(json!({"role": "user", "content": content}));
            out
        }
        Dialect::Gemini => {
            // Gemini pairs a response with its call by name (and id when the call had one).
            let mut parts: Vec<Value> = results
                .into_iter()
                .zip(calls)
                .map(|((id, out), (_, name))| {
                    json!({"functionResponse": {"id": id, "name": name, "response": {"output": out}}})
                })
                .collect();
            parts.push(json!({"text": typed}));
            if image {
                parts.push(json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}));
            }
            vec![json!({"role": "user", "parts": parts})]
        }
    })
}

fn assistant_turn(u: &mut Unstructured, dialect: Dialect, said: &str, calls: &[(String, &str)]) -> Result<Vec<Value>> {
    let mut with_args = Vec::new();
    for (id, name) in calls {
        with_args.push((id, *name, args(u)?));
    }
    Ok(match dialect {
        Dialect::Anthropic => {
            let mut blocks = vec![json!({"type": "text", "text": said})];
            blocks.extend(
                with_args
                    .into_iter()
                    .map(|(id, name, a)| json!({"type": "tool_use", "id": id, "name": name, "input": a})),
            );
            vec![json!({"role": "assistant", "content": blocks})]
        }
        Dialect::OpenaiChat => {
            let mut m = json!({"role": "assistant", "content": said});
            if !with_args.is_empty() {
                let calls: Vec<Value> = with_args
                    .into_iter()
                    .map(|(id, name, a)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": a.to_string()}}))
                    .collect();
                m["tool_calls"] = Value::Array(calls);
            }
            vec![m]
        }
        Dialect::OpenaiResponses => {
            let mut out = vec![json!({"role": "assistant", "content": [{"type": "output_text", "text": said}]})];
            out.extend(with_args.into_iter().map(|(id, name, a)| {
                json!({"type": "function_call", "call_id": id, "name": name, "arguments": a.to_string()})
            }));
            out
        }
        Dialect::Gemini => {
            let mut parts = vec![json!({"text": said})];
            parts.extend(
                with_args.into_iter().map(|(id, name, a)| json!({"functionCall": {"id": id, "name": name, "args": a}})),
            );
            vec![json!({"role": "model", "parts": parts})]
        }
    })
}

/// `v` as JSON text, spelled as `u` says: whitespace, key order, escapes, integers as decimals.
pub fn write(u: &mut Unstructured, v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(u, v, &mut out);
    out
}

fn ws(u: &mut Unstructured, out: &mut Vec<u8>) {
    let s = u.choose(&["", "", "", " ", "\n", "\n  ", "\t", "\r\n"]).copied().unwrap_or("");
    out.extend_from_slice(s.as_bytes());
}

/// Whitespace before the `i`th item of a container, and a comma after the first.
fn separator(u: &mut Unstructured, i: usize, out: &mut Vec<u8>) {
    ws(u, out);
    if i > 0 {
        out.push(b',');
        ws(u, out);
    }
}

fn write_value(u: &mut Unstructured, v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            out.extend_from_slice(n.to_string().as_bytes());
            if n.is_i64() && u.ratio(1, 8).unwrap_or(false) {
                out.extend_from_slice(u.choose(&[".0", "E0", ".000e+0"]).copied().unwrap_or("").as_bytes());
            }
        }
        Value::String(s) => write_string(u, s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                separator(u, i, out);
                write_value(u, item, out);
            }
            ws(u, out);
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            // Fisher-Yates with the fuzz bytes: clients send keys in every order.
            for i in (1..keys.len()).rev() {
                let j = u.int_in_range(0..=i).unwrap_or(i);
                keys.swap(i, j);
            }
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                separator(u, i, out);
                write_string(u, k, out);
                ws(u, out);
                out.push(b':');
                ws(u, out);
                write_value(u, &map[k], out);
            }
            ws(u, out);
            out.push(b'}');
        }
    }
}

fn write_string(u: &mut Unstructured, s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        let escape_anyway = u.ratio(1, 48).unwrap_or(false);
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '/' if escape_anyway => out.extend_from_slice(b"\\/"),
            '\n' if !escape_anyway => out.extend_from_slice(b"\\n"),
            '\t' if !escape_anyway => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || escape_anyway || (!c.is_ascii() && u.ratio(1, 4).unwrap_or(false)) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}
