//! A scripted two-step tool-call conversation, answered in each dialect's own wire shape
//! (JSON and SSE): first a `get_weather(city=Paris)` call, then, once the request carries the
//! tool's result, the final text.

use super::mock::{Chunk, Recorded, Reply};

pub const FINAL_TEXT: &str = "It is sunny in Paris.";
const ARGS: &str = r#"{"city":"Paris"}"#;

/// True once the conversation carries the tool's result, in any dialect.
fn has_tool_result(rec: &Recorded) -> bool {
    let body = String::from_utf8_lossy(&rec.body);
    body.contains("tool_result")
        || body.contains("\"role\":\"tool\"")
        || body.contains("\"role\": \"tool\"")
        || body.contains("function_call_output")
}

fn wants_stream(rec: &Recorded) -> bool {
    serde_json::from_slice::<serde_json::Value>(&rec.body).ok().and_then(|v| v["stream"].as_bool()).unwrap_or(false)
}

/// Answers any dialect by the request path.
pub fn reply(rec: &Recorded) -> Reply {
    let done = has_tool_result(rec);
    let stream = wants_stream(rec);
    let events: Vec<(Option<&str>, serde_json::Value)> = if rec.path.ends_with("/messages") {
        if !stream {
            return Reply::ok_json(serde_json::to_vec(&anthropic_message(done)).unwrap());
        }
        anthropic_events(done)
    } else if rec.path.ends_with("/chat/completions") {
        if !stream {
            return Reply::ok_json(serde_json::to_vec(&chat_completion(done)).unwrap());
        }
        chat_chunks(done).into_iter().map(|c| (None, c)).collect()
    } else if rec.path.ends_with("/responses") {
        if !stream {
            return Reply::ok_json(serde_json::to_vec(&response_object(done, "completed")).unwrap());
        }
        responses_events(done)
    } else {
        return Reply::Json { status: 404, body: b"{}".to_vec(), headers: vec![] };
    };
    let mut chunks: Vec<Chunk> = events
        .into_iter()
        .map(|(name, data)| {
            let mut s = String::new();
            if let Some(n) = name {
                s.push_str(&format!("event: {n}\n"));
            }
            s.push_str(&format!("data: {data}\n\n"));
            Chunk::Bytes(s.into_bytes())
        })
        .collect();
    if rec.path.ends_with("/chat/completions") {
        chunks.push(Chunk::Bytes(b"data: [DONE]\n\n".to_vec()));
    }
    Reply::sse(chunks)
}

fn anthropic_message(done: bool) -> serde_json::Value {
    let (content, stop) = if done {
        (serde_json::json!([{"type": "text", "text": FINAL_TEXT}]), "end_turn")
    } else {
        (
            serde_json::json!([
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
            ]),
            "tool_use",
        )
    };
    serde_json::json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test",
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 20, "output_tokens": 8, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    })
}

fn anthropic_events(done: bool) -> Vec<(Option<&'static str>, serde_json::Value)> {
    let mut start = anthropic_message(done);
    start["content"] = serde_json::json!([]);
    start["stop_reason"] = serde_json::Value::Null;
    let mut ev = vec![(Some("message_start"), serde_json::json!({"type": "message_start", "message": start}))];
    let text = if done { FINAL_TEXT } else { "Let me check." };
    let (a, b) = text.split_at(text.len() / 2);
    ev.push((
        Some("content_block_start"),
        serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    for part in [a, b] {
        ev.push((Some("content_block_delta"), serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}})));
    }
    ev.push((Some("content_block_stop"), serde_json::json!({"type": "content_block_stop", "index": 0})));
    if !done {
        ev.push((Some("content_block_start"), serde_json::json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}})));
        let (x, y) = ARGS.split_at(5);
        for part in [x, y] {
            ev.push((Some("content_block_delta"), serde_json::json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": part}})));
        }
        ev.push((Some("content_block_stop"), serde_json::json!({"type": "content_block_stop", "index": 1})));
    }
    let stop = if done { "end_turn" } else { "tool_use" };
    ev.push((Some("message_delta"), serde_json::json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 8}})));
    ev.push((Some("message_stop"), serde_json::json!({"type": "message_stop"})));
    ev
}

fn chat_completion(done: bool) -> serde_json::Value {
    let (message, finish) = if done {
        (serde_json::json!({"role": "assistant", "content": FINAL_TEXT}), "stop")
    } else {
        (
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_01", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}
            ]}),
            "tool_calls",
        )
    };
    serde_json::json!({
        "id": "chatcmpl-01", "object": "chat.completion", "created": 1, "model": "gpt-test",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
    })
}

fn chat_chunks(done: bool) -> Vec<serde_json::Value> {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        serde_json::json!({
            "id": "chatcmpl-01", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
    };
    let mut out = vec![chunk(serde_json::json!({"role": "assistant", "content": ""}), None)];
    if done {
        let (a, b) = FINAL_TEXT.split_at(8);
        out.push(chunk(serde_json::json!({"content": a}), None));
        out.push(chunk(serde_json::json!({"content": b}), None));
        out.push(chunk(serde_json::json!({}), Some("stop")));
    } else {
        out.push(chunk(serde_json::json!({"tool_calls": [{"index": 0, "id": "call_01", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}), None));
        let (x, y) = ARGS.split_at(5);
        for part in [x, y] {
            out.push(chunk(serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}), None));
        }
        out.push(chunk(serde_json::json!({}), Some("tool_calls")));
    }
    out
}

fn response_output(done: bool) -> serde_json::Value {
    if done {
        serde_json::json!({"type": "message", "id": "msg_01", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": FINAL_TEXT, "annotations": []}]})
    } else {
        serde_json::json!({"type": "function_call", "id": "fc_01", "call_id": "call_01", "name": "get_weather",
            "arguments": ARGS, "status": "completed"})
    }
}

fn response_object(done: bool, status: &str) -> serde_json::Value {
    let output = if status == "completed" { serde_json::json!([response_output(done)]) } else { serde_json::json!([]) };
    serde_json::json!({
        "id": "resp_01", "object": "response", "created_at": 1, "status": status, "model": "gpt-test",
        "output": output, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
        "usage": {"input_tokens": 20, "output_tokens": 8, "total_tokens": 28,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    })
}

fn responses_events(done: bool) -> Vec<(Option<&'static str>, serde_json::Value)> {
    let mut ev: Vec<(&'static str, serde_json::Value)> =
        vec![("response.created", serde_json::json!({"response": response_object(done, "in_progress")}))];
    let item = response_output(done);
    let mut added = item.clone();
    added["status"] = "in_progress".into();
    if done {
        added["content"] = serde_json::json!([]);
        ev.push(("response.output_item.added", serde_json::json!({"output_index": 0, "item": added})));
        ev.push(("response.content_part.added", serde_json::json!({"item_id": "msg_01", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})));
        let (a, b) = FINAL_TEXT.split_at(8);
        for part in [a, b] {
            ev.push((
                "response.output_text.delta",
                serde_json::json!({"item_id": "msg_01", "output_index": 0, "content_index": 0, "delta": part}),
            ));
        }
        ev.push((
            "response.output_text.done",
            serde_json::json!({"item_id": "msg_01", "output_index": 0, "content_index": 0, "text": FINAL_TEXT}),
        ));
        ev.push(("response.content_part.done", serde_json::json!({"item_id": "msg_01", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": FINAL_TEXT, "annotations": []}})));
    } else {
        added["arguments"] = "".into();
        ev.push(("response.output_item.added", serde_json::json!({"output_index": 0, "item": added})));
        let (x, y) = ARGS.split_at(5);
        for part in [x, y] {
            ev.push((
                "response.function_call_arguments.delta",
                serde_json::json!({"item_id": "fc_01", "output_index": 0, "delta": part}),
            ));
        }
        ev.push((
            "response.function_call_arguments.done",
            serde_json::json!({"item_id": "fc_01", "output_index": 0, "arguments": ARGS}),
        ));
    }
    ev.push(("response.output_item.done", serde_json::json!({"output_index": 0, "item": item})));
    ev.push(("response.completed", serde_json::json!({"response": response_object(done, "completed")})));
    ev.into_iter()
        .enumerate()
        .map(|(i, (name, mut data))| {
            data["type"] = name.into();
            data["sequence_number"] = i.into();
            (Some(name), data)
        })
        .collect()
}
