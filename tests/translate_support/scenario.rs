//! A two-turn tool conversation answered in any dialect's wire shape, for real SDK clients
//! talking through the proxy to a provider of another dialect. Turn one: some text and two
//! parallel `get_weather` calls (plus an `apply_patch` call when the request offers that tool);
//! turn two, once the request carries the tool results: the final text.

use serde_json::{json, Value};

use tokenfold::dialect::Dialect;

pub const FINAL_TEXT: &str = "Paris: sunny. Tokyo: rain.";
pub const PATCH: &str = "*** Begin Patch\n*** Add File: w.txt\n+sunny\n*** End Patch\n";

/// What the mock provider answers: a JSON body, or SSE events (already framed).
pub enum Answer {
    Json(Vec<u8>),
    Sse(Vec<Vec<u8>>),
}

/// The calls of turn one: (call id, tool name, JSON arguments).
fn calls(body: &str) -> Vec<(&'static str, &'static str, String)> {
    let mut calls = vec![
        ("call_paris", "get_weather", json!({"city": "Paris"}).to_string()),
        ("call_tokyo", "get_weather", json!({"city": "Tokyo"}).to_string()),
    ];
    if body.contains("apply_patch") {
        calls.push(("call_patch", "apply_patch", json!({"input": PATCH}).to_string()));
    }
    calls
}

/// True once the conversation carries tool results, in any dialect.
pub fn has_tool_results(body: &str) -> bool {
    ["\"tool_result\"", "\"role\":\"tool\"", "function_call_output", "\"functionResponse\""]
        .iter()
        .any(|k| body.contains(k))
}

pub fn answer(dialect: Dialect, body: &[u8]) -> Answer {
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    answer_streamed(dialect, req["stream"] == true, body)
}

/// `answer` when the body does not say whether to stream (Gemini says it in the URL).
pub fn answer_streamed(dialect: Dialect, stream: bool, body: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(body);
    let done = has_tool_results(&text);
    let calls = if done { Vec::new() } else { calls(&text) };
    let said = if done { FINAL_TEXT } else { "Checking both cities." };
    match (dialect, stream) {
        (Dialect::OpenaiChat, false) => Answer::Json(chat_body(said, &calls)),
        (Dialect::OpenaiChat, true) => Answer::Sse(chat_events(said, &calls)),
        (Dialect::Anthropic, false) => Answer::Json(anthropic_body(said, &calls)),
        (Dialect::Anthropic, true) => Answer::Sse(anthropic_events(said, &calls)),
        (Dialect::OpenaiResponses, false) => Answer::Json(responses_body(said, &calls)),
        (Dialect::OpenaiResponses, true) => Answer::Sse(responses_events(said, &calls)),
        (Dialect::Gemini, false) => Answer::Json(gemini_answer(said, &calls).to_string().into_bytes()),
        (Dialect::Gemini, true) => Answer::Sse(gemini_events(said, &calls)),
    }
}

/// A Gemini answer: the text, then the calls (the first with a thought signature), their ids
/// being the scenario's (Gemini gives ids when asked to pair calls).
fn gemini_answer(text: &str, calls: &[(&str, &str, String)]) -> Value {
    let mut parts = vec![json!({"text": text})];
    for (n, (id, name, args)) in calls.iter().enumerate() {
        let args: Value = serde_json::from_str(args).unwrap();
        let mut p = json!({"functionCall": {"id": id, "name": name, "args": args}});
        if n == 0 {
            p["thoughtSignature"] = json!("c2lnLXNkaw==");
        }
        parts.push(p);
    }
    json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
           "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 12, "totalTokenCount": 42},
           "modelVersion": "mock", "responseId": "gemini-sdk"})
}

/// Gemini events: the text in two pieces, the calls whole, the finish reason last.
fn gemini_events(text: &str, calls: &[(&str, &str, String)]) -> Vec<Vec<u8>> {
    let whole = gemini_answer(text, calls);
    let parts = whole["candidates"][0]["content"]["parts"].as_array().unwrap().clone();
    let (a, b) = text.split_at(text.len() / 2);
    let event = |parts: Vec<Value>, last: bool| {
        let mut e = json!({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
                           "modelVersion": "mock", "responseId": "gemini-sdk"});
        if last {
            e["candidates"][0]["finishReason"] = json!("STOP");
            e["usageMetadata"] = whole["usageMetadata"].clone();
        }
        format!("data: {e}\r\n\r\n").into_bytes()
    };
    vec![
        event(vec![json!({"text": a})], false),
        event(vec![json!({"text": b})], false),
        event(parts[1..].to_vec(), true),
    ]
}

fn framed(name: Option<&str>, data: &Value) -> Vec<u8> {
    let mut s = String::new();
    if let Some(n) = name {
        s.push_str(&format!("event: {n}\n"));
    }
    s.push_str(&format!("data: {data}\n\n"));
    s.into_bytes()
}

fn chat_body(text: &str, calls: &[(&str, &str, String)]) -> Vec<u8> {
    let mut msg = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        let tc: Vec<Value> = calls
            .iter()
            .map(
                |(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}),
            )
            .collect();
        msg["tool_calls"] = Value::Array(tc);
    }
    let finish = if calls.is_empty() { "stop" } else { "tool_calls" };
    json!({"id": "chatcmpl-sdk", "object": "chat.completion", "created": 1, "model": "mock",
           "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
           "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}})
    .to_string()
    .into_bytes()
}

/// Chat chunks: the text in two pieces, then the calls with their argument pieces interleaved
/// (call 0's second half arrives after call 1 started), then finish and usage.
fn chat_events(text: &str, calls: &[(&str, &str, String)]) -> Vec<Vec<u8>> {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": "chatcmpl-sdk", "object": "chat.completion.chunk", "created": 1, "model": "mock",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let piece = |i: usize, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut f = json!({"arguments": args});
        if let Some(n) = name {
            f["name"] = json!(n);
        }
        let mut c = json!({"index": i, "function": f});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["type"] = json!("function");
        }
        json!({"tool_calls": [c]})
    };
    let (a, b) = text.split_at(text.len() / 2);
    let mut out = vec![
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": a}), None),
        chunk(json!({"content": b}), None),
    ];
    let halves: Vec<(&str, &str)> = calls.iter().map(|c| c.2.split_at(c.2.len() / 2)).collect();
    for (i, (id, name, _)) in calls.iter().enumerate() {
        out.push(chunk(piece(i, Some(id), Some(name), halves[i].0), None));
        if i > 0 {
            out.push(chunk(piece(i - 1, None, None, halves[i - 1].1), None));
        }
    }
    if let Some(last) = halves.len().checked_sub(1) {
        out.push(chunk(piece(last, None, None, halves[last].1), None));
    }
    let finish = if calls.is_empty() { "stop" } else { "tool_calls" };
    out.push(chunk(json!({}), Some(finish)));
    out.push(
        json!({"id": "chatcmpl-sdk", "object": "chat.completion.chunk", "created": 1, "model": "mock", "choices": [],
                    "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}}),
    );
    let mut framed_out: Vec<Vec<u8>> = out.iter().map(|c| framed(None, c)).collect();
    framed_out.push(b"data: [DONE]\n\n".to_vec());
    framed_out
}

fn anthropic_body(text: &str, calls: &[(&str, &str, String)]) -> Vec<u8> {
    let mut content = vec![json!({"type": "text", "text": text})];
    for (id, name, args) in calls {
        let input: Value = serde_json::from_str(args).unwrap();
        content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    let stop = if calls.is_empty() { "end_turn" } else { "tool_use" };
    json!({"id": "msg_sdk", "type": "message", "role": "assistant", "model": "mock", "content": content,
           "stop_reason": stop, "stop_sequence": null, "usage": {"input_tokens": 30, "output_tokens": 12}})
    .to_string()
    .into_bytes()
}

fn anthropic_events(text: &str, calls: &[(&str, &str, String)]) -> Vec<Vec<u8>> {
    let mut evs = vec![
        json!({"type": "message_start", "message": {"id": "msg_sdk", "type": "message", "role": "assistant",
               "model": "mock", "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 30, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        json!({"type": "content_block_stop", "index": 0}),
    ];
    for (n, (id, name, args)) in calls.iter().enumerate() {
        let i = n + 1;
        let (a, b) = args.split_at(args.len() / 2);
        evs.push(json!({"type": "content_block_start", "index": i,
                        "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}));
        for part in [a, b] {
            evs.push(json!({"type": "content_block_delta", "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": part}}));
        }
        evs.push(json!({"type": "content_block_stop", "index": i}));
    }
    let stop = if calls.is_empty() { "end_turn" } else { "tool_use" };
    evs.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                    "usage": {"output_tokens": 12}}));
    evs.push(json!({"type": "message_stop"}));
    evs.iter().map(|e| framed(e["type"].as_str(), e)).collect()
}

fn responses_output(text: &str, calls: &[(&str, &str, String)]) -> Vec<Value> {
    let mut out = vec![json!({"id": "msg_o", "type": "message", "status": "completed", "role": "assistant",
                             "content": [{"type": "output_text", "text": text, "annotations": []}]})];
    for (n, (id, name, args)) in calls.iter().enumerate() {
        out.push(json!({"id": format!("fc_{n}"), "type": "function_call", "status": "completed",
                        "call_id": id, "name": name, "arguments": args}));
    }
    out
}

fn responses_object(status: &str, output: Vec<Value>) -> Value {
    json!({"id": "resp_sdk", "object": "response", "created_at": 1, "status": status, "model": "mock",
           "output": output, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
           "usage": {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42,
                     "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}})
}

fn responses_body(text: &str, calls: &[(&str, &str, String)]) -> Vec<u8> {
    responses_object("completed", responses_output(text, calls)).to_string().into_bytes()
}

fn responses_events(text: &str, calls: &[(&str, &str, String)]) -> Vec<Vec<u8>> {
    let output = responses_output(text, calls);
    let mut evs = vec![
        json!({"type": "response.created", "response": responses_object("in_progress", vec![])}),
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"id": "msg_o", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        json!({"type": "response.output_text.delta", "item_id": "msg_o", "output_index": 0, "content_index": 0, "delta": text}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": output[0]}),
    ];
    for (n, item) in output.iter().enumerate().skip(1) {
        let mut added = item.clone();
        added["arguments"] = json!("");
        added["status"] = json!("in_progress");
        evs.push(json!({"type": "response.output_item.added", "output_index": n, "item": added}));
        evs.push(json!({"type": "response.function_call_arguments.delta", "item_id": item["id"], "output_index": n,
                        "delta": item["arguments"]}));
        evs.push(json!({"type": "response.output_item.done", "output_index": n, "item": item}));
    }
    evs.push(json!({"type": "response.completed", "response": responses_object("completed", output)}));
    evs.iter()
        .enumerate()
        .map(|(n, e)| {
            let mut e = e.clone();
            e["sequence_number"] = json!(n);
            framed(e["type"].as_str(), &e)
        })
        .collect()
}
