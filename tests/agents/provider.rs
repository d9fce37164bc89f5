//! The scripted model as a provider: reads a request in any of the four dialects (the tools it
//! offers, the tool results so far) and answers in the same dialect, streamed or whole.

use serde_json::{json, Value};

use super::common::gemini as gemini_mock;
use super::common::mock::{Chunk, Reply};
use super::scenario::{OfferedTool, ToolCall};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Anthropic,
    Chat,
    Responses,
    Gemini,
}

impl Dialect {
    pub fn from_path(path: &str) -> Option<Dialect> {
        let p = path.trim_end_matches('/');
        if p.contains("/models/") && (p.ends_with(":generateContent") || p.ends_with(":streamGenerateContent")) {
            Some(Dialect::Gemini)
        } else if p.ends_with("/messages") {
            Some(Dialect::Anthropic)
        } else if p.ends_with("/chat/completions") {
            Some(Dialect::Chat)
        } else if p.ends_with("/responses") {
            Some(Dialect::Responses)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Anthropic => "anthropic",
            Dialect::Chat => "openai-chat",
            Dialect::Responses => "openai-responses",
            Dialect::Gemini => "gemini",
        }
    }
}

/// What the scripted model understands of one request.
#[derive(Debug, Clone)]
pub struct Turn {
    pub tools: Vec<OfferedTool>,
    /// Text of every tool result, in conversation order.
    pub results: Vec<String>,
    /// The conversation items: `messages` (Anthropic system and Chat included) or `input`.
    pub items: Vec<Value>,
    pub stream: bool,
}

/// Reads a request sent to `path` (Gemini says in the path whether it streams).
pub fn parse(dialect: Dialect, path: &str, body: &[u8]) -> Result<Turn, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("request is not JSON: {e}"))?;
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    if dialect == Dialect::Gemini {
        return Ok(gemini_turn(&v, path.contains(":streamGenerateContent")));
    }
    let stream = v["stream"].as_bool().unwrap_or(false);
    let tools: Vec<OfferedTool> = list("tools")
        .iter()
        .filter_map(|t| {
            let custom = t["type"] == "custom";
            let name = match dialect {
                Dialect::Chat => t["function"]["name"].as_str().or(t["custom"]["name"].as_str()),
                _ => t["name"].as_str(),
            }?;
            Some(OfferedTool { name: name.to_string(), custom })
        })
        .collect();
    let items = match dialect {
        Dialect::Responses => list("input"),
        _ => list("messages"),
    };
    let mut results = Vec::new();
    for item in &items {
        match dialect {
            Dialect::Anthropic => {
                for block in item["content"].as_array().into_iter().flatten() {
                    if block["type"] == "tool_result" {
                        results.push(text_of(&block["content"]));
                    }
                }
            }
            Dialect::Chat if item["role"] == "tool" => results.push(text_of(&item["content"])),
            Dialect::Responses
                if item["type"] == "function_call_output" || item["type"] == "custom_tool_call_output" =>
            {
                results.push(text_of(&item["output"]))
            }
            _ => {}
        }
    }
    Ok(Turn { tools, results, items, stream })
}

/// A Gemini request: the function declarations offered, the function responses so far
/// (Gemini CLI's `{"output": ...}` or `{"error": ...}`), the contents.
fn gemini_turn(v: &Value, stream: bool) -> Turn {
    let tools = v["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["functionDeclarations"].as_array().cloned().unwrap_or_default())
        .filter_map(|d| Some(OfferedTool { name: d["name"].as_str()?.to_string(), custom: false }))
        .collect();
    let items = v["contents"].as_array().cloned().unwrap_or_default();
    let results = items
        .iter()
        .flat_map(|c| c["parts"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| {
            let r = &p["functionResponse"]["response"];
            r["output"].as_str().or(r["error"].as_str()).map(str::to_string)
        })
        .collect();
    Turn { tools, results, items, stream }
}

/// Text of a string, or of the text parts of a content array.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

pub enum Answer {
    Text(String),
    Call(ToolCall),
}

fn sse(events: Vec<(Option<&str>, Value)>, done_marker: bool) -> Reply {
    let mut chunks: Vec<Chunk> = events
        .into_iter()
        .map(|(name, data)| {
            let text = match name {
                Some(n) => format!("event: {n}\ndata: {data}\n\n"),
                None => format!("data: {data}\n\n"),
            };
            Chunk::Bytes(text.into_bytes())
        })
        .collect();
    if done_marker {
        chunks.push(Chunk::Bytes(b"data: [DONE]\n\n".to_vec()));
    }
    Reply::sse(chunks)
}

/// The answer in `dialect`; `n` makes ids unique, `input_tokens` is the usage reported (or, for
/// Anthropic, `anthropic_usage` when the prompt cache is simulated).
pub fn reply(
    dialect: Dialect,
    stream: bool,
    answer: &Answer,
    model: &str,
    n: usize,
    input_tokens: u64,
    anthropic_usage: Option<Value>,
) -> Reply {
    match dialect {
        Dialect::Anthropic => {
            let usage = anthropic_usage.unwrap_or_else(|| json!({"input_tokens": input_tokens, "output_tokens": 20}));
            anthropic(stream, answer, model, n, usage)
        }
        Dialect::Chat => chat(stream, answer, model, n, input_tokens),
        Dialect::Responses => responses(stream, answer, model, n, input_tokens),
        Dialect::Gemini => gemini(stream, answer, model, n, input_tokens),
    }
}

/// Gemini's answer, built by the shared strict mock (a thought first when streamed, a signature
/// on the first call that the mock checks when it comes back).
fn gemini(stream: bool, answer: &Answer, model: &str, n: usize, prompt_tokens: u64) -> Reply {
    let say = match answer {
        Answer::Text(t) => gemini_mock::Say::Text(t.clone()),
        Answer::Call(c) => {
            gemini_mock::Say::Calls(vec![(c.name.clone(), serde_json::from_str(&c.input).unwrap_or(json!({})))])
        }
    };
    let method = if stream { "streamGenerateContent" } else { "generateContent" };
    let asked = gemini_mock::Asked {
        model: model.to_string(),
        method: method.into(),
        sse: stream,
        body: Value::Null,
        prompt_tokens,
    };
    gemini_mock::reply(&asked, &say, n, &SIGNATURES)
}

/// The thought signatures the scripted Gemini hands out (checked when histories come back).
pub static SIGNATURES: std::sync::LazyLock<gemini_mock::Signatures> = std::sync::LazyLock::new(Default::default);

fn anthropic(stream: bool, answer: &Answer, model: &str, n: usize, mut usage: Value) -> Reply {
    let id = format!("msg_agents_{n}");
    let (block, stop) = match answer {
        Answer::Text(t) => (json!({"type": "text", "text": t}), "end_turn"),
        Answer::Call(c) => {
            let input: Value = serde_json::from_str(&c.input).unwrap_or(json!({}));
            (json!({"type": "tool_use", "id": format!("toolu_agents_{n}"), "name": c.name, "input": input}), "tool_use")
        }
    };
    usage["output_tokens"] = json!(20);
    if !stream {
        let body = json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": [block],
            "stop_reason": stop, "stop_sequence": null, "usage": usage});
        return Reply::ok_json(body.to_string());
    }
    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    let mut start_block = block.clone();
    let delta = match answer {
        Answer::Text(t) => {
            start_block["text"] = json!("");
            json!({"type": "text_delta", "text": t})
        }
        Answer::Call(c) => {
            start_block["input"] = json!({});
            json!({"type": "input_json_delta", "partial_json": c.input})
        }
    };
    sse(
        vec![
            (
                Some("message_start"),
                json!({"type": "message_start", "message": {"id": id, "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": start_usage}}),
            ),
            (
                Some("content_block_start"),
                json!({"type": "content_block_start", "index": 0, "content_block": start_block}),
            ),
            (Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": delta})),
            (Some("content_block_stop"), json!({"type": "content_block_stop", "index": 0})),
            (
                Some("message_delta"),
                json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": 20}}),
            ),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ],
        false,
    )
}

fn chat(stream: bool, answer: &Answer, model: &str, n: usize, input_tokens: u64) -> Reply {
    let id = format!("chatcmpl-agents-{n}");
    let usage = json!({"prompt_tokens": input_tokens, "completion_tokens": 20, "total_tokens": input_tokens + 20});
    let call_id = format!("call_agents_{n}");
    let (message, finish) = match answer {
        Answer::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
        Answer::Call(c) => (
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": call_id, "type": "function",
                "function": {"name": c.name, "arguments": c.input}}]}),
            "tool_calls",
        ),
    };
    if !stream {
        let body = json!({"id": id, "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage});
        return Reply::ok_json(body.to_string());
    }
    let chunk = |delta: Value, finish: Value| {
        (
            None,
            json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    match answer {
        Answer::Text(t) => events.push(chunk(json!({"content": t}), Value::Null)),
        Answer::Call(c) => events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                "function": {"name": c.name, "arguments": c.input}}]}),
            Value::Null,
        )),
    }
    events.push(chunk(json!({}), json!(finish)));
    events.push((
        None,
        json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [], "usage": usage}),
    ));
    sse(events, true)
}

fn responses(stream: bool, answer: &Answer, model: &str, n: usize, input_tokens: u64) -> Reply {
    let item = match answer {
        Answer::Text(t) => json!({"type": "message", "id": format!("msg_agents_{n}"), "status": "completed",
            "role": "assistant", "content": [{"type": "output_text", "text": t, "annotations": []}]}),
        Answer::Call(c) if c.custom => json!({"type": "custom_tool_call", "id": format!("ctc_agents_{n}"),
            "call_id": format!("call_agents_{n}"), "name": c.name, "input": c.input, "status": "completed"}),
        Answer::Call(c) => json!({"type": "function_call", "id": format!("fc_agents_{n}"),
            "call_id": format!("call_agents_{n}"), "name": c.name, "arguments": c.input, "status": "completed"}),
    };
    let response = |status: &str, output: Value| {
        json!({"id": format!("resp_agents_{n}"), "object": "response", "created_at": 1, "status": status,
            "model": model, "output": output, "parallel_tool_calls": false, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": input_tokens, "output_tokens": 20, "total_tokens": input_tokens + 20,
                "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}})
    };
    if !stream {
        return Reply::ok_json(response("completed", json!([item])).to_string());
    }
    let mut added = item.clone();
    added["status"] = json!("in_progress");
    let mut events: Vec<(&str, Value)> = vec![
        ("response.created", json!({"response": response("in_progress", json!([]))})),
        ("response.output_item.added", json!({"output_index": 0, "item": added})),
    ];
    if let Answer::Text(t) = answer {
        let item_id = format!("msg_agents_{n}");
        events.push((
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": 0,
            "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        ));
        events.push((
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0,
            "content_index": 0, "delta": t}),
        ));
        events.push((
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": 0,
            "content_index": 0, "text": t}),
        ));
    }
    events.push(("response.output_item.done", json!({"output_index": 0, "item": item})));
    events.push(("response.completed", json!({"response": response("completed", json!([item]))})));
    let events = events
        .into_iter()
        .enumerate()
        .map(|(i, (name, mut data))| {
            data["type"] = json!(name);
            data["sequence_number"] = json!(i);
            (Some(name), data)
        })
        .collect();
    sse(events, false)
}

/// A dialect-shaped 404 for paths the script does not serve.
pub fn not_found(path: &str) -> Reply {
    let body = json!({"error": {"type": "not_found_error", "message": format!("the scripted provider has no {path}")}});
    Reply::Json { status: 404, body: body.to_string().into_bytes(), headers: vec![] }
}
