//! A provider that speaks only OpenAI Responses, reached by Chat and Anthropic clients:
//! requests into Responses, and Responses answers (whole and streamed) back.

#[path = "translate_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::{assert_anthropic_sequence, chat_totals, events, fixture, golden, json, normalized, run};
use tokenfold::dialect::translate::{
    supports, translate_request, translate_request_with, translate_response, RequestOptions, StreamTranslator,
};
use tokenfold::dialect::usage::Usage;
use tokenfold::dialect::Dialect::{self, Anthropic, OpenaiChat, OpenaiResponses};

fn types(v: &Value) -> Vec<&str> {
    v["input"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect()
}

#[test]
fn every_pair_of_dialects_is_supported() {
    for a in Dialect::ALL {
        for b in Dialect::ALL {
            assert!(supports(a, b), "{a} -> {b}");
        }
    }
}

#[test]
fn chat_request_to_responses() {
    let out = translate_request(OpenaiChat, OpenaiResponses, &fixture("chat_request.json"), None).unwrap();
    golden("request_chat_to_responses.json", &out);
    let v = json(&out);
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["instructions"], "You are a coding assistant.\n\nAnswer in English.");
    assert_eq!(
        types(&v),
        [
            "message",
            "message",
            "function_call",
            "function_call",
            "function_call_output",
            "function_call_output",
            "message",
            "message",
            "function_call",
            "function_call_output"
        ]
    );
    let input = &v["input"];
    let parts = input[0]["content"].as_array().unwrap();
    assert_eq!(parts[0], json!({"type": "input_text", "text": "Describe this and list files."}));
    assert_eq!(
        parts[1],
        json!({"type": "input_image", "image_url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "high"})
    );
    assert_eq!(parts[2]["detail"], "auto");
    assert_eq!(
        input[1],
        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]})
    );
    assert_eq!(
        input[2],
        json!({"type": "function_call", "call_id": "call_a", "name": "read_file", "arguments": "{\"path\":\"a.rs\"}"})
    );
    assert_eq!(input[5], json!({"type": "function_call_output", "call_id": "call_b", "output": "a.rs\nb.rs"}));
    // A later system message stays where it was.
    assert_eq!(input[7], json!({"type": "message", "role": "system", "content": "Keep it short."}));
    assert_eq!(input[8]["arguments"], "not json", "broken arguments are replayed as they were");
    let tools = v["tools"].as_array().unwrap();
    assert_eq!(
        tools[0],
        json!({"type": "function", "name": "read_file", "description": "Read a file", "strict": false,
               "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}})
    );
    assert_eq!(v["tool_choice"], "required");
    assert_eq!(v["parallel_tool_calls"], false);
    assert_eq!(v["temperature"], 1.5);
    assert_eq!(v["user"], "u-42");
    assert_eq!(v["store"], false);
    assert_eq!(v["stream"], true);
    for absent in ["stop", "stream_options", "messages", "reasoning", "n", "max_output_tokens"] {
        assert!(v.get(absent).is_none(), "{absent} must not be sent: {v}");
    }
}

#[test]
fn reasoning_effort_goes_to_a_reasoning_target_only() {
    let body = fixture("chat_request.json");
    let opts = RequestOptions { model: Some("gpt-5"), target_reasoning: true, ..Default::default() };
    let v = json(&translate_request_with(OpenaiChat, OpenaiResponses, &body, &opts).unwrap());
    assert_eq!(v["reasoning"], json!({"effort": "medium"}));
    assert_eq!(v["model"], "gpt-5");
    // Anthropic thinking reaches Responses through Chat.
    let body = fixture("anthropic_request.json");
    let v = json(&translate_request_with(Anthropic, OpenaiResponses, &body, &opts).unwrap());
    assert_eq!(v["reasoning"], json!({"effort": "medium"}));
    let v = json(&translate_request(Anthropic, OpenaiResponses, &body, None).unwrap());
    assert!(v.get("reasoning").is_none());
}

#[test]
fn anthropic_request_to_responses() {
    let out = translate_request(Anthropic, OpenaiResponses, &fixture("anthropic_request.json"), None).unwrap();
    golden("request_anthropic_to_responses.json", &out);
    let v = json(&out);
    assert_eq!(v["instructions"], "You are Claude Code, Anthropic's official CLI for Claude.\n\nBe concise.");
    let input = v["input"].as_array().unwrap();
    let calls: Vec<&Value> = input.iter().filter(|i| i["type"] == "function_call").collect();
    assert_eq!(calls.len(), 2, "parallel calls kept");
    assert_eq!(calls[1]["call_id"], "toolu_02");
    let outputs: Vec<&Value> = input.iter().filter(|i| i["type"] == "function_call_output").collect();
    assert_eq!(outputs[1]["output"], "Error: ls: cannot access 'src': No such file");
    assert_eq!(v["max_output_tokens"], 4096);
    assert_eq!(v["tool_choice"], "required");
    assert!(!String::from_utf8_lossy(&out).contains("cache_control"));
}

#[test]
fn responses_answer_to_chat() {
    let body = fixture("upstream/responses_response.json");
    let out = translate_response(OpenaiResponses, OpenaiChat, &body).unwrap();
    golden("response_responses_to_chat.json", &out);
    let v = json(&out);
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], "Lese zwei Dateien ü 🚀");
    assert_eq!(msg["reasoning_content"], "Plan: read both files.");
    assert_eq!(msg["tool_calls"][1]["id"], "call_r2");
    assert_eq!(msg["tool_calls"][1]["function"]["arguments"], "{\"path\":\"b.rs\"}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"]["prompt_tokens"], 120);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    assert_eq!(v["created"], 1700000000);

    let v =
        json(&translate_response(OpenaiResponses, OpenaiChat, &fixture("upstream/responses_incomplete.json")).unwrap());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[test]
fn responses_answer_to_anthropic() {
    let body = fixture("upstream/responses_response.json");
    let out = translate_response(OpenaiResponses, Anthropic, &body).unwrap();
    golden("response_responses_to_anthropic.json", &out);
    let v = json(&out);
    let kinds: Vec<&str> = v["content"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["thinking", "text", "tool_use", "tool_use"]);
    assert_eq!(v["content"][3]["input"], json!({"path": "b.rs"}));
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["usage"]["input_tokens"], 20);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 100);
    let v =
        json(&translate_response(OpenaiResponses, Anthropic, &fixture("upstream/responses_incomplete.json")).unwrap());
    assert_eq!(v["stop_reason"], "max_tokens");
}

/// Every cut of the stream gives the same events.
fn split_invariant(client: Dialect, input: &[u8]) -> Vec<u8> {
    let (whole, _) = run(StreamTranslator::new(OpenaiResponses, client, "client-model"), &[input]);
    let want = normalized(&whole);
    for cut in (0..=input.len()).step_by(7) {
        let (a, b) = input.split_at(cut);
        let (out, _) = run(StreamTranslator::new(OpenaiResponses, client, "client-model"), &[a, b]);
        assert_eq!(normalized(&out), want, "{client} cut at {cut}");
    }
    whole
}

#[test]
fn responses_stream_to_chat() {
    let input = fixture("upstream/responses_stream.sse");
    let out = split_invariant(OpenaiChat, &input);
    let evs = events(&out);
    assert!(evs.iter().all(|e| e.name.is_none()), "Chat streams have no event: lines");
    assert_eq!(evs[0].data["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(evs[0].data["id"], "resp_up1");
    assert_eq!(evs[0].data["model"], "client-model");
    let support::ChatTotals { text, reasoning, calls, finish } = chat_totals(&evs);
    assert_eq!(text, "Lese zwei Dateien ü 🚀");
    assert_eq!(reasoning, "Plan: read both files.\n\nThen answer.");
    assert_eq!(
        calls,
        [
            ("call_r1".to_string(), "read_file".to_string(), "{\"path\":\"a.rs\"}".to_string()),
            ("call_r2".to_string(), "read_file".to_string(), "{\"path\":\"b.rs\"}".to_string()),
        ],
        "arguments given only in the done events still arrive, once"
    );
    assert_eq!(finish, ["tool_calls"]);
    let usage = &evs[evs.len() - 2].data;
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 120);
    assert_eq!(evs.last().unwrap().data, "[DONE]");
    let (_, t) = run(StreamTranslator::new(OpenaiResponses, OpenaiChat, "m"), &[&input]);
    assert_eq!(t.usage(), Usage { input: 20, output: 30, cache_read: 100, cache_write: 0, cache_write_1h: 0 });
}

#[test]
fn responses_stream_to_anthropic() {
    let input = fixture("upstream/responses_stream.sse");
    let out = split_invariant(Anthropic, &input);
    let evs = events(&out);
    assert_anthropic_sequence(&evs);
    let blocks: Vec<&str> = evs
        .iter()
        .filter(|e| e.ty() == "content_block_start")
        .map(|e| e.data["content_block"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(blocks, ["thinking", "text", "tool_use", "tool_use"]);
    let md = evs.iter().find(|e| e.ty() == "message_delta").unwrap();
    assert_eq!(md.data["delta"]["stop_reason"], "tool_use");
    assert_eq!(md.data["usage"]["cache_read_input_tokens"], 100);
    assert_eq!(evs[0].data["message"]["id"], "msg_resp_up1");
}

#[test]
fn responses_stream_failures_reach_the_client_in_its_dialect() {
    let mut input = fixture("upstream/responses_stream.sse");
    let cut = String::from_utf8_lossy(&input)
        .find("event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":2")
        .unwrap();
    input.truncate(cut);
    let failed = json!({"type": "response.failed", "sequence_number": 99, "response": {"id": "resp_up1", "status": "failed",
                        "error": {"code": "rate_limit_exceeded", "message": "Slow down"}, "output": []}});
    input.extend(format!("event: response.failed\ndata: {failed}\n\n").as_bytes());
    let (out, _) = run(StreamTranslator::new(OpenaiResponses, OpenaiChat, "m"), &[&input]);
    let last = events(&out).pop().unwrap();
    assert_eq!(last.data["error"]["message"], "Slow down");
    assert_eq!(last.data["error"]["type"], "rate_limit_error");
    let (out, _) = run(StreamTranslator::new(OpenaiResponses, Anthropic, "m"), &[&input]);
    let last = events(&out).pop().unwrap();
    assert_eq!(last.ty(), "error");
    assert_eq!(last.data["error"], json!({"type": "rate_limit_error", "message": "Slow down"}));

    // A stream that stops before its terminal event is an error, not a silent end.
    let mut cut_short = fixture("upstream/responses_stream.sse");
    cut_short.truncate(cut);
    let (out, _) = run(StreamTranslator::new(OpenaiResponses, Anthropic, "m"), &[&cut_short]);
    let last = events(&out).pop().unwrap();
    assert_eq!(last.ty(), "error");
    assert!(last.data["error"]["message"].as_str().unwrap().contains("ended before"));
}
