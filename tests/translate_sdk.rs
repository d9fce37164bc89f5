//! The official Python SDKs (`anthropic`, `openai`) must accept every translated event and
//! body: their own pydantic models validate each one and their stream accumulators rebuild the
//! message. Skipped (with a note) where Python or the SDKs are not installed.

#[path = "translate_support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use support::{anthropic_stream, chat_sse, chat_stream, chunk, run};
use tokenfold::dialect::translate::{translate_response, StreamTranslator};
use tokenfold::dialect::Dialect::{self, Anthropic, OpenaiChat, OpenaiResponses};

fn sdks_present() -> bool {
    let ok =
        Command::new("python3").args(["-c", "import anthropic, openai"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: python3 with the anthropic and openai packages is not installed");
    }
    ok
}

fn check(kind: &str, name: &str, bytes: &[u8]) {
    let dir = std::env::temp_dir().join(format!("tokenfold-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/translate/sdk_check.py");
    let out = Command::new("python3").arg(script).arg(kind).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{name}: {}\n{}", text, String::from_utf8_lossy(&out.stderr));
    eprintln!("{name}: {text}");
}

fn stream(upstream: Dialect, client: Dialect, input: &[u8]) -> Vec<u8> {
    run(StreamTranslator::new(upstream, client, "client-model"), &[input]).0
}

#[test]
fn sdks_accept_translated_streams() {
    if !sdks_present() {
        return;
    }
    check("anthropic-stream", "chat_to_anthropic.sse", &stream(OpenaiChat, Anthropic, &chat_stream()));
    check("chat-stream", "anthropic_to_chat.sse", &stream(Anthropic, OpenaiChat, &anthropic_stream()));
    check("responses-stream", "chat_to_responses.sse", &stream(OpenaiChat, OpenaiResponses, &chat_stream()));
    check("responses-stream", "anthropic_to_responses.sse", &stream(Anthropic, OpenaiResponses, &anthropic_stream()));
    // Terminal events other than completed: incomplete (max tokens) and failed (error).
    let mut cut = chat_stream();
    cut.truncate(cut.len() / 2);
    cut.truncate(cut.iter().rposition(|&b| b == b'\n').unwrap() + 1);
    check("responses-stream", "failed.sse", &stream(OpenaiChat, OpenaiResponses, &cut));
    let long = chat_sse(&[chunk(json!({"content": "x"}), None), chunk(json!({}), Some("length"))], true);
    check("responses-stream", "incomplete.sse", &stream(OpenaiChat, OpenaiResponses, &long));
    check("anthropic-stream", "max_tokens.sse", &stream(OpenaiChat, Anthropic, &long));
}

#[test]
fn sdks_accept_translated_bodies() {
    if !sdks_present() {
        return;
    }
    let chat = br#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"hi","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
    let anthropic = br#"{"id":"msg_1","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t1","name":"f","input":{}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}"#;
    check("anthropic-body", "a.json", &translate_response(OpenaiChat, Anthropic, chat).unwrap());
    check("chat-body", "c.json", &translate_response(Anthropic, OpenaiChat, anthropic).unwrap());
    check("responses-body", "r.json", &translate_response(OpenaiChat, OpenaiResponses, chat).unwrap());
    check("responses-body", "r2.json", &translate_response(Anthropic, OpenaiResponses, anthropic).unwrap());
}
