//! Request translation, per direction: structure, golden files, determinism, errors.

#[path = "translate_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::{fixture, golden, json};
use tokenfold::dialect::translate::{
    translate_request, translate_request_for_reply, translate_request_with, ReplyContext, RequestOptions,
    TranslateError,
};
use tokenfold::dialect::Dialect::{Anthropic, OpenaiChat, OpenaiResponses};

fn roles(v: &Value) -> Vec<&str> {
    v["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect()
}

#[test]
fn anthropic_to_chat() {
    let body = fixture("anthropic_request.json");
    let out = translate_request(Anthropic, OpenaiChat, &body, None).unwrap();
    golden("request_anthropic_to_chat.json", &out);
    let v = json(&out);
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(roles(&v), ["system", "user", "assistant", "tool", "tool", "user", "system", "assistant", "user"]);
    let m = &v["messages"];
    assert_eq!(m[0]["content"], "You are Claude Code, Anthropic's official CLI for Claude.\n\nBe concise.");
    // Images: base64 as a data URL, URL kept.
    let parts = m[1]["content"].as_array().unwrap();
    assert_eq!(parts[2]["image_url"]["url"], "data:image/png;base64,iVBORw0KGgo=");
    assert_eq!(parts[3]["image_url"]["url"], "https://example.com/cat.jpg");
    // Parallel calls in one assistant message, thinking dropped.
    let calls = m[2]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(m[2]["content"], "Let me look.");
    assert_eq!(calls[1]["function"]["name"], "Bash");
    assert_eq!(
        json(calls[1]["function"]["arguments"].as_str().unwrap().as_bytes()),
        json!({"command": "ls src", "timeout": 1.0})
    );
    // Tool results in order, the error flagged in the text; the user text after them.
    assert_eq!(m[3]["tool_call_id"], "toolu_01");
    assert_eq!(m[4]["tool_call_id"], "toolu_02");
    assert_eq!(m[4]["content"], "Error: ls: cannot access 'src': No such file");
    assert_eq!(m[5]["content"], "Continue.");
    assert_eq!(m[6]["content"], "Remember: the user prefers Rust.");
    // Only client tools; cache_control nowhere.
    assert_eq!(v["tools"].as_array().unwrap().len(), 2);
    assert_eq!(v["tools"][0]["function"]["parameters"]["required"], json!(["file_path"]));
    assert!(!String::from_utf8_lossy(&out).contains("cache_control"));
    assert_eq!(v["tool_choice"], "required");
    assert_eq!(v["stop"], json!(["</done>"]));
    assert_eq!(v["max_tokens"], 4096);
    assert_eq!(v["temperature"], 0.7);
    assert_eq!(v["top_p"], 0.9);
    assert_eq!(v["user"], "user_abc_session_123");
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert!(v.get("top_k").is_none() && v.get("reasoning_effort").is_none());
}

#[test]
fn anthropic_thinking_maps_only_when_target_reasons() {
    let body = fixture("anthropic_request.json");
    let opts = RequestOptions { model: Some("deepseek-reasoner"), target_reasoning: true, ..Default::default() };
    let v = json(&translate_request_with(Anthropic, OpenaiChat, &body, &opts).unwrap());
    assert_eq!(v["reasoning_effort"], "medium");
    assert_eq!(v["model"], "deepseek-reasoner");
}

#[test]
fn chat_to_anthropic() {
    let body = fixture("chat_request.json");
    let out = translate_request(OpenaiChat, Anthropic, &body, Some("claude-haiku-4-5")).unwrap();
    golden("request_chat_to_anthropic.json", &out);
    let v = json(&out);
    assert_eq!(v["model"], "claude-haiku-4-5");
    assert_eq!(v["system"], "You are a coding assistant.\n\nAnswer in English.");
    assert_eq!(roles(&v), ["user", "assistant", "user", "assistant", "user"]);
    let m = &v["messages"];
    let user = m[0]["content"].as_array().unwrap();
    assert_eq!(user[1]["source"], json!({"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}));
    assert_eq!(user[2]["source"], json!({"type": "url", "url": "https://example.com/dog.png"}));
    let asst = m[1]["content"].as_array().unwrap();
    assert_eq!(asst[0], json!({"type": "text", "text": "Checking."}));
    assert_eq!(asst[2]["input"], json!({"cmd": ["ls"]}));
    // Both tool results and the next user text (and a later system line) in one user turn.
    let results = m[2]["content"].as_array().unwrap();
    assert_eq!(results[0]["tool_use_id"], "call_a");
    assert_eq!(results[1]["content"][0]["text"], "a.rs\nb.rs");
    assert_eq!(results[2]["text"], "Now summarize.");
    assert_eq!(results[3]["text"], "Keep it short.");
    // Broken arguments survive as text instead of failing the conversation.
    assert_eq!(m[3]["content"][0]["input"], json!({"raw_arguments": "not json"}));
    assert_eq!(v["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));
    assert_eq!(v["stop_sequences"], json!(["</end>"]));
    assert_eq!(v["temperature"], 1.0);
    assert!(v.get("top_p").is_none(), "Anthropic refuses temperature with top_p: the temperature stays");
    assert_eq!(v["max_tokens"], 8192);
    assert_eq!(v["metadata"], json!({"user_id": "u-42"}));
    assert_eq!(v["stream"], true);
    assert!(v.get("thinking").is_none() && v.get("stream_options").is_none());
}

#[test]
fn chat_reasoning_to_thinking() {
    let body = fixture("chat_request.json");
    let opts = RequestOptions { model: None, target_reasoning: true, ..Default::default() };
    let v = json(&translate_request_with(OpenaiChat, Anthropic, &body, &opts).unwrap());
    assert_eq!(v["thinking"], json!({"type": "enabled", "budget_tokens": 8192}));
    assert!(v["max_tokens"].as_u64().unwrap() > 8192);
    assert!(v.get("temperature").is_none());
}

#[test]
fn responses_to_chat() {
    let body = fixture("responses_request.json");
    let out = translate_request(OpenaiResponses, OpenaiChat, &body, None).unwrap();
    golden("request_responses_to_chat.json", &out);
    let v = json(&out);
    assert_eq!(
        roles(&v),
        ["system", "system", "user", "user", "assistant", "tool", "tool", "assistant", "tool", "user", "user"]
    );
    let m = &v["messages"];
    assert_eq!(m[0]["content"], "You are Codex, a coding agent.");
    assert_eq!(v["prompt_cache_key"], "conv-1", "Codex's cache key is carried");
    let strict = RequestOptions { drop_prompt_cache_key: true, ..Default::default() };
    let dropped = json(&translate_request_with(OpenaiResponses, OpenaiChat, &body, &strict).unwrap());
    assert!(dropped.get("prompt_cache_key").is_none(), "not for a target that refuses the field");
    assert_eq!(m[3]["content"][1]["image_url"]["url"], "data:image/png;base64,iVBORw0KGgo=");
    assert_eq!(m[4]["content"], "Running the tests.");
    let calls = m[4]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "parallel calls stay in one message");
    assert_eq!(calls[0]["id"], "call_1");
    assert_eq!(m[5]["tool_call_id"], "call_1");
    assert_eq!(m[6]["content"], "On branch main");
    assert_eq!(
        m[7]["tool_calls"][0]["function"]["arguments"],
        json!({"input": "*** Begin Patch\n*** End Patch"}).to_string()
    );
    assert!(m[9]["content"].as_str().unwrap().contains("call_orphan"));
    // The function tool, and the freeform apply_patch as a function taking its raw text as the
    // one string `input` (the shape its replayed call above has); web_search and the namespace
    // have no Chat form and are dropped without error.
    let tools = v["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["function"]["name"], "shell");
    let patch = &tools[1]["function"];
    assert_eq!(patch["name"], "apply_patch");
    assert_eq!(patch["description"], "Apply a patch");
    assert_eq!(patch["parameters"]["required"], json!(["input"]));
    assert_eq!(patch["parameters"]["additionalProperties"], false);
    assert_eq!(patch["parameters"]["properties"]["input"]["type"], "string");
    let about = patch["parameters"]["properties"]["input"]["description"].as_str().unwrap();
    assert!(about.contains("lark grammar") && about.contains("start: /.+/"), "{about}");
    assert_eq!(v["tool_choice"], "auto");
    assert_eq!(v["parallel_tool_calls"], true);
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert!(v.get("reasoning_effort").is_none() && v.get("store").is_none());
}

#[test]
fn custom_tools_are_noted_for_the_answer() {
    let body = fixture("responses_request.json");
    for to in [OpenaiChat, Anthropic] {
        let t = translate_request_for_reply(OpenaiResponses, to, &body, &RequestOptions::default()).unwrap();
        assert_eq!(
            t.reply,
            ReplyContext { custom_tools: vec!["apply_patch".to_string()], ..Default::default() },
            "{to}"
        );
        assert_eq!(t.body, translate_request(OpenaiResponses, to, &body, None).unwrap());
    }
    let t = translate_request_for_reply(
        Anthropic,
        OpenaiChat,
        &fixture("anthropic_request.json"),
        &RequestOptions::default(),
    )
    .unwrap();
    assert_eq!(t.reply, ReplyContext::default());
    // The Anthropic target gets apply_patch as a tool with the same one-string schema.
    let v = json(&translate_request(OpenaiResponses, Anthropic, &body, None).unwrap());
    assert_eq!(v["tools"][1]["name"], "apply_patch");
    assert_eq!(v["tools"][1]["input_schema"]["required"], json!(["input"]));
}

#[test]
fn responses_to_anthropic_by_composition() {
    let body = fixture("responses_request.json");
    let out = translate_request(OpenaiResponses, Anthropic, &body, Some("claude")).unwrap();
    golden("request_responses_to_anthropic.json", &out);
    let v = json(&out);
    assert_eq!(v["system"], "You are Codex, a coding agent.\n\n<permissions>workspace-write</permissions>");
    assert_eq!(v["messages"][0]["role"], "user");
    assert_eq!(v["messages"][1]["content"][1]["type"], "tool_use");
    assert_eq!(v["tools"][0]["name"], "shell");
    assert_eq!(v["stream"], true);
}

#[test]
fn deterministic_bytes() {
    for (from, to, name) in [
        (Anthropic, OpenaiChat, "anthropic_request.json"),
        (OpenaiChat, Anthropic, "chat_request.json"),
        (OpenaiResponses, OpenaiChat, "responses_request.json"),
        (OpenaiResponses, Anthropic, "responses_request.json"),
        (OpenaiChat, OpenaiResponses, "chat_request.json"),
        (Anthropic, OpenaiResponses, "anthropic_request.json"),
    ] {
        let body = fixture(name);
        let a = translate_request(from, to, &body, None).unwrap();
        let b = translate_request(from, to, &body, None).unwrap();
        assert_eq!(a, b, "{from} -> {to}");
        // Same content, other key order and whitespace: same bytes.
        let reordered = serde_json::to_vec_pretty(&json(&body)).unwrap();
        assert_eq!(a, translate_request(from, to, &reordered, None).unwrap());
    }
}

#[test]
fn same_dialect_passes_through() {
    let body = br#"{"model": "x",  "messages": [], "max_tokens": 1.0}"#;
    assert_eq!(translate_request(Anthropic, Anthropic, body, None).unwrap(), body);
    let v = json(&translate_request(Anthropic, Anthropic, body, Some("y")).unwrap());
    assert_eq!(v["model"], "y");
}

#[test]
fn errors_say_what_is_wrong() {
    let e = translate_request(Anthropic, OpenaiChat, b"{not json", None).unwrap_err();
    assert!(matches!(e, TranslateError::Json(_)) && e.is_client_error());
    let e = translate_request(Anthropic, OpenaiChat, br#"{"model":"m"}"#, None).unwrap_err();
    assert_eq!(e.to_string(), "invalid `messages`: must be an array");
    let e = translate_request(Anthropic, OpenaiChat, br#"{"messages":[]}"#, None).unwrap_err();
    assert_eq!(e.to_string(), "invalid `model`: missing");
    let body = br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#;
    let e = translate_request(OpenaiChat, Anthropic, body, None).unwrap_err();
    assert!(e.to_string().contains("robot"), "{e}");
    let body = br#"{"model":"m","input":"hi","previous_response_id":"resp_1"}"#;
    let e = translate_request(OpenaiResponses, OpenaiChat, body, None).unwrap_err();
    assert!(e.to_string().contains("previous_response_id"), "{e}");
    let e = translate_request(OpenaiChat, OpenaiResponses, br#"{"model":"m"}"#, None).unwrap_err();
    assert_eq!(e.to_string(), "invalid `messages`: must be an array");
    let body = br#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{}}]}]}"#;
    let e = translate_request(OpenaiChat, OpenaiResponses, body, None).unwrap_err();
    assert_eq!(e.to_string(), "invalid `messages`: tool call without id or name");
    assert!(e.is_client_error());
    assert!(matches!(translate_request(Anthropic, OpenaiChat, b"[]", None), Err(TranslateError::NotAnObject)));
}
