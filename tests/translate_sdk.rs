//! The official Python SDKs (`anthropic`, `openai`) must accept every translated event and
//! body: their own pydantic models validate each one and their stream accumulators rebuild the
//! message. Two layers: translated files checked by the SDKs' models and accumulators
//! (fixtures/translate/sdk_check.py), and the SDKs as real clients through the proxy to a mock
//! provider of another dialect, using their `.stream()` helpers, with two parallel tool calls
//! (fixtures/translate/sdk_clients.py). Without Python and the SDKs: skipped with the reason, or
//! failed under CI (`CI=true`), where they must be installed.

#[path = "translate_support/mod.rs"]
mod support;

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::mock::{self, Chunk, Reply};
use common::spawn_proxy;
use serde_json::json;
use support::scenario::{self, Answer};
use support::{anthropic_stream, chat_interleaved_calls, chat_sse, chat_stream, chunk, run};
use tokenfold::dialect::translate::{translate_response, StreamTranslator};
use tokenfold::dialect::Dialect::{self, Anthropic, OpenaiChat, OpenaiResponses};

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether the SDKs can be run here. Under CI their absence is a failure, not a skip.
fn sdks_present() -> bool {
    let out = Command::new(python()).args(["-c", "import anthropic, openai"]).output();
    let missing = match &out {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("import failed").to_string(),
        Err(e) => format!("{} not runnable: {e}", python()),
    };
    let msg = format!(
        "{} with the `anthropic` and `openai` packages is needed ({missing}); pip install anthropic openai",
        python()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true: {msg}");
    }
    eprintln!("skipped: {msg}");
    false
}

/// Files for sdk_check.py, checked in one Python run (starting Python is the slow part).
#[derive(Default)]
struct Checks(Vec<(String, PathBuf)>);

impl Checks {
    fn add(&mut self, kind: &str, name: &str, bytes: &[u8]) {
        let dir = std::env::temp_dir().join(format!("tokenfold-sdk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, bytes).unwrap();
        self.0.push((kind.to_string(), file));
    }

    fn run(self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/translate/sdk_check.py");
        let mut cmd = Command::new(python());
        cmd.arg(script);
        for (kind, file) in &self.0 {
            cmd.arg(kind).arg(file);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}\n{}", text, String::from_utf8_lossy(&out.stderr));
        assert_eq!(text.lines().count(), self.0.len(), "one verdict per file: {text}");
        eprintln!("{text}");
    }
}

fn stream(upstream: Dialect, client: Dialect, input: &[u8]) -> Vec<u8> {
    run(StreamTranslator::new(upstream, client, "client-model"), &[input]).0
}

#[test]
fn sdks_accept_translated_streams() {
    if !sdks_present() {
        return;
    }
    let mut c = Checks::default();
    c.add("anthropic-stream", "chat_to_anthropic.sse", &stream(OpenaiChat, Anthropic, &chat_stream()));
    c.add("chat-stream", "anthropic_to_chat.sse", &stream(Anthropic, OpenaiChat, &anthropic_stream()));
    c.add("responses-stream", "chat_to_responses.sse", &stream(OpenaiChat, OpenaiResponses, &chat_stream()));
    c.add("responses-stream", "anthropic_to_responses.sse", &stream(Anthropic, OpenaiResponses, &anthropic_stream()));
    // Terminal events other than completed: incomplete (max tokens) and failed (error).
    let mut cut = chat_stream();
    cut.truncate(cut.len() / 2);
    cut.truncate(cut.iter().rposition(|&b| b == b'\n').unwrap() + 1);
    c.add("responses-stream", "failed.sse", &stream(OpenaiChat, OpenaiResponses, &cut));
    let long = chat_sse(&[chunk(json!({"content": "x"}), None), chunk(json!({}), Some("length"))], true);
    c.add("responses-stream", "incomplete.sse", &stream(OpenaiChat, OpenaiResponses, &long));
    c.add("anthropic-stream", "max_tokens.sse", &stream(OpenaiChat, Anthropic, &long));
    // Two parallel calls whose argument pieces interleave upstream.
    c.add("anthropic-stream", "interleaved.sse", &stream(OpenaiChat, Anthropic, &chat_interleaved_calls()));
    c.add("responses-stream", "interleaved_r.sse", &stream(OpenaiChat, OpenaiResponses, &chat_interleaved_calls()));
    let responses = support::fixture("upstream/responses_stream.sse");
    c.add("chat-stream", "responses_to_chat.sse", &stream(OpenaiResponses, OpenaiChat, &responses));
    c.add("anthropic-stream", "responses_to_anthropic.sse", &stream(OpenaiResponses, Anthropic, &responses));
    c.run();
}

#[test]
fn sdks_accept_translated_bodies() {
    if !sdks_present() {
        return;
    }
    let chat = br#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"hi","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
    let mut c = Checks::default();
    let anthropic = br#"{"id":"msg_1","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t1","name":"f","input":{}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}"#;
    c.add("anthropic-body", "a.json", &translate_response(OpenaiChat, Anthropic, chat).unwrap());
    c.add("chat-body", "c.json", &translate_response(Anthropic, OpenaiChat, anthropic).unwrap());
    c.add("responses-body", "r.json", &translate_response(OpenaiChat, OpenaiResponses, chat).unwrap());
    c.add("responses-body", "r2.json", &translate_response(Anthropic, OpenaiResponses, anthropic).unwrap());
    let responses = support::fixture("upstream/responses_response.json");
    c.add("chat-body", "rc.json", &translate_response(OpenaiResponses, OpenaiChat, &responses).unwrap());
    c.add("anthropic-body", "ra.json", &translate_response(OpenaiResponses, Anthropic, &responses).unwrap());
    c.run();
}

/// A mock provider speaking `dialect` only, answering the scenario in its wire shape.
async fn provider(dialect: Dialect) -> mock::Mock {
    mock::start(move |rec| {
        if rec.path != dialect.endpoint_path() {
            let body = format!(r#"{{"error":{{"message":"this mock speaks only {dialect}, not {}"}}}}"#, rec.path);
            return Reply::Json { status: 404, body: body.into_bytes(), headers: vec![] };
        }
        match scenario::answer(dialect, &rec.body) {
            Answer::Json(body) => Reply::ok_json(body),
            Answer::Sse(events) => Reply::sse(events.into_iter().map(Chunk::Bytes).collect()),
        }
    })
    .await
}

/// Runs SDK `case` through the proxy to a provider of `upstream`.
async fn through_proxy(case: &str, upstream: Dialect) {
    if !sdks_present() {
        return;
    }
    let mock = provider(upstream).await;
    let proxy = spawn_proxy(&["--upstream", &mock.base(), "--upstream-dialect", upstream.name()], &[]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/translate/sdk_clients.py");
    let (base, case_name) = (proxy.base.clone(), case.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python()).arg(script).arg(case_name).env("TOKENFOLD_URL", base).output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{case} via {upstream}:\n{}\n{}\nproxy:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        proxy.logs()
    );
    // Two turns, streamed and not; the second turn carried both results (and each call's id).
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 4, "{case} via {upstream}");
    for turn in [&reqs[1], &reqs[3]] {
        let body = String::from_utf8_lossy(&turn.body);
        assert!(scenario::has_tool_results(&body), "{case} via {upstream}: {body}");
        for id in ["call_paris", "call_tokyo"] {
            assert_eq!(
                body.matches(id).count(),
                2,
                "{case} via {upstream}: the call and its result carry {id}: {body}"
            );
        }
    }
}

#[tokio::test]
async fn anthropic_sdk_on_a_chat_provider() {
    through_proxy("anthropic", OpenaiChat).await;
}

#[tokio::test]
async fn anthropic_sdk_on_a_responses_provider() {
    through_proxy("anthropic", OpenaiResponses).await;
}

#[tokio::test]
async fn openai_chat_sdk_on_an_anthropic_provider() {
    through_proxy("chat", Anthropic).await;
}

#[tokio::test]
async fn openai_chat_sdk_on_a_responses_provider() {
    through_proxy("chat", OpenaiResponses).await;
}

#[tokio::test]
async fn openai_responses_sdk_on_a_chat_provider() {
    through_proxy("responses", OpenaiChat).await;
}

#[tokio::test]
async fn openai_responses_sdk_on_an_anthropic_provider() {
    through_proxy("responses", Anthropic).await;
}
