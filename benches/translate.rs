//! Translation overhead: a ~1 KB request, and per streamed event. Plain std timing
//! (`cargo bench --bench translate`); prints median and p99 per operation.

use std::hint::black_box;
use std::time::Instant;

use tokenfold::dialect::translate::{translate_request, StreamTranslator};
use tokenfold::dialect::Dialect::{Anthropic, OpenaiChat, OpenaiResponses};

fn request_1kb() -> Vec<u8> {
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": true,
        "system": [{"type": "text", "text": "You are a coding agent. Be concise and careful.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read src/main.rs and run the tests, then fix what fails."}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Reading the file and running the tests."},
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "/repo/src/main.rs"}},
                {"type": "tool_use", "id": "toolu_02", "name": "Bash", "input": {"command": "cargo test"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "     1\tfn main() {\n     2\t    println!(\"hi\");\n     3\t}\n"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": true, "content": "test result: FAILED. 1 passed; 1 failed"}]}
        ],
        "tools": [
            {"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}},
            {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
        ]
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Median and p99 of `iters` timed runs of `f`, in microseconds.
fn time(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut samples: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[iters / 2], samples[iters * 99 / 100])
}

fn chat_events(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let c = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": format!("token {i} ")}, "finish_reason": null}]});
            format!("data: {c}\n\n").into_bytes()
        })
        .collect()
}

fn anthropic_events(n: usize) -> Vec<Vec<u8>> {
    let mut out = vec![b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n".to_vec(),
        b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_vec()];
    for i in 0..n {
        out.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token {i} \"}}}}\n\n").into_bytes());
    }
    out
}

fn main() {
    let req = request_1kb();
    println!("request body: {} bytes", req.len());
    let (p50, p99) = time(2000, || {
        black_box(translate_request(Anthropic, OpenaiChat, black_box(&req), None).ok());
    });
    println!("request Anthropic->Chat: p50 {p50:.1} us, p99 {p99:.1} us");
    let chat_req = translate_request(Anthropic, OpenaiChat, &req, None).unwrap_or_default();
    let (p50, p99) = time(2000, || {
        black_box(translate_request(OpenaiChat, Anthropic, black_box(&chat_req), None).ok());
    });
    println!("request Chat->Anthropic: p50 {p50:.1} us, p99 {p99:.1} us");

    let chat = chat_events(5000);
    let anthropic = anthropic_events(5000);
    for (name, upstream, client, evs) in [
        ("Chat->Anthropic", OpenaiChat, Anthropic, &chat),
        ("Chat->Responses", OpenaiChat, OpenaiResponses, &chat),
        ("Anthropic->Chat", Anthropic, OpenaiChat, &anthropic),
        ("Anthropic->Responses", Anthropic, OpenaiResponses, &anthropic),
    ] {
        let mut t = StreamTranslator::new(upstream, client, "client-model");
        let mut it = evs.iter().cycle();
        let (p50, p99) = time(evs.len(), || {
            if let Some(ev) = it.next() {
                black_box(t.push(black_box(ev)));
            }
        });
        println!("stream {name}: per event p50 {p50:.2} us, p99 {p99:.2} us");
    }
}
