//! Non-streaming response translation and error bodies.

#[path = "translate_support/mod.rs"]
mod support;

use serde_json::json;
use support::json;
use tokenfold::dialect::translate::{translate_error, translate_response};
use tokenfold::dialect::Dialect::{Anthropic, OpenaiChat, OpenaiResponses};

fn chat_response() -> Vec<u8> {
    json!({
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "llama-3.3-70b",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Two calls.", "reasoning_content": "plan",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": "{\"p\":\"a\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}
            ]}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59,
                  "prompt_tokens_details": {"cached_tokens": 20}}
    })
    .to_string()
    .into_bytes()
}

fn anthropic_response(stop: &str) -> Vec<u8> {
    json!({
        "id": "msg_7", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "s"},
            {"type": "text", "text": "Part one, "},
            {"type": "text", "text": "part two."},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"p": "a"}}
        ],
        "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 0}
    })
    .to_string()
    .into_bytes()
}

#[test]
fn chat_to_anthropic_response() {
    let v = json(&translate_response(OpenaiChat, Anthropic, &chat_response()).unwrap());
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["stop_sequence"], json!(null));
    let c = v["content"].as_array().unwrap();
    assert_eq!(c[0], json!({"type": "thinking", "thinking": "plan", "signature": ""}));
    assert_eq!(c[1], json!({"type": "text", "text": "Two calls."}));
    assert_eq!(c[2], json!({"type": "tool_use", "id": "call_1", "name": "Read", "input": {"p": "a"}}));
    assert_eq!(c[3]["id"], "call_2");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 30, "output_tokens": 9, "cache_read_input_tokens": 20,
               "cache_creation_input_tokens": 0})
    );
}

#[test]
fn anthropic_to_chat_response() {
    let v = json(&translate_response(Anthropic, OpenaiChat, &anthropic_response("max_tokens")).unwrap());
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(choice["message"]["content"], "Part one, part two.");
    assert_eq!(choice["message"]["reasoning_content"], "hm");
    assert_eq!(choice["message"]["tool_calls"][0]["function"]["arguments"], "{\"p\":\"a\"}");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 110, "completion_tokens": 5, "total_tokens": 115,
               "prompt_tokens_details": {"cached_tokens": 100}})
    );
    for (stop, want) in
        [("end_turn", "stop"), ("stop_sequence", "stop"), ("tool_use", "tool_calls"), ("refusal", "content_filter")]
    {
        let v = json(&translate_response(Anthropic, OpenaiChat, &anthropic_response(stop)).unwrap());
        assert_eq!(v["choices"][0]["finish_reason"], want, "{stop}");
    }
}

#[test]
fn chat_to_responses_response() {
    let v = json(&translate_response(OpenaiChat, OpenaiResponses, &chat_response()).unwrap());
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    let out = v["output"].as_array().unwrap();
    assert_eq!(out[0]["type"], "reasoning");
    assert_eq!(out[1]["content"][0]["text"], "Two calls.");
    assert_eq!(out[2]["call_id"], "call_1");
    assert_eq!(out[3]["id"], "fc_chatcmpl-9_3");
    assert_eq!(v["usage"]["input_tokens"], 50);
    assert_eq!(v["usage"]["total_tokens"], 59);

    let mut long = json(&chat_response());
    long["choices"][0]["finish_reason"] = json!("length");
    let v = json(&translate_response(OpenaiChat, OpenaiResponses, long.to_string().as_bytes()).unwrap());
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
}

#[test]
fn anthropic_to_responses_response() {
    let v = json(&translate_response(Anthropic, OpenaiResponses, &anthropic_response("tool_use")).unwrap());
    assert_eq!(v["id"], "resp_msg_7");
    assert_eq!(v["output"][1]["content"][0]["text"], "Part one, part two.");
    assert_eq!(v["output"][2]["name"], "Read");
}

#[test]
fn errors_keep_the_provider_message() {
    let body = br#"{"error":{"message":"Rate limit reached for model x","type":"rate_limit_exceeded","code":"rate_limit_exceeded"}}"#;
    let v = json(&translate_error(OpenaiChat, Anthropic, 429, body));
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached for model x"}})
    );
    let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let v = json(&translate_error(Anthropic, OpenaiResponses, 529, body));
    assert_eq!(v["error"]["message"], "Overloaded");
    assert_eq!(v["error"]["type"], "api_error");
    // Not JSON: the text is the message; the status picks the class.
    let v = json(&translate_error(OpenaiChat, Anthropic, 401, b"<html>Unauthorized</html>"));
    assert_eq!(v["error"], json!({"type": "authentication_error", "message": "<html>Unauthorized</html>"}));
    let v = json(&translate_error(OpenaiChat, Anthropic, 502, b""));
    assert_eq!(v["error"]["message"], "upstream returned HTTP 502");
    let v = json(&translate_error(OpenaiChat, Anthropic, 400, br#"{"detail":"bad model"}"#));
    assert_eq!(v["error"], json!({"type": "invalid_request_error", "message": "bad model"}));
    let body = br#"{"error":{"message":"x","type":"invalid_request_error"}}"#;
    assert_eq!(translate_error(OpenaiChat, OpenaiChat, 400, body), body);
}
