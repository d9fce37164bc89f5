//! Translation wired into `serve`: one-flag use with --upstream-dialect / --upstream-model,
//! local count_tokens, and provider errors rendered in the caller's dialect.

mod common;

use common::mock::{self, Reply};
use common::spawn_proxy;

#[tokio::test]
async fn claude_code_shaped_requests_reach_a_chat_provider_translated() {
    let mock = mock::start(|rec| {
        if String::from_utf8_lossy(&rec.body).contains("please fail") {
            Reply::Json {
                status: 429,
                body: br#"{"error":{"message":"Rate limit reached for model","type":"requests","code":"rate_limit_exceeded"}}"#.to_vec(),
                headers: vec![("retry-after", "3".into())],
            }
        } else {
            Reply::ok_json(mock::chat_completion("hello from chat"))
        }
    })
    .await;
    let proxy = spawn_proxy(
        &["--upstream", &mock.base(), "--upstream-dialect", "openai-chat", "--upstream-model", "local-coder"],
        &[],
    );
    let c = reqwest::Client::new();
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hi"}]}"#;
    let r = c.post(proxy.url("/v1/messages?beta=true")).header("x-api-key", "k").body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "hello from chat");
    assert_eq!(v["stop_reason"], "end_turn");
    let sent = mock.last();
    assert_eq!(sent.path, "/v1/chat/completions");
    let sent = sent.json();
    assert_eq!(sent["model"], "local-coder", "--upstream-model replaces the model");
    assert_eq!(sent["messages"][0]["role"], "system");
    assert!(!sent.to_string().contains("cache_control"));

    // count_tokens is answered locally: the chat provider has no such endpoint.
    let before = mock.requests().len();
    let r = c.post(proxy.url("/v1/messages/count_tokens")).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tokenfold-estimate"], "o200k_base");
    let v: serde_json::Value = r.json().await.unwrap();
    let n = v["input_tokens"].as_u64().unwrap();
    assert!((3..40).contains(&n), "{v}");
    assert_eq!(mock.requests().len(), before, "count_tokens must not reach the provider");

    // A provider error comes back in the caller's (Anthropic) shape with the provider's words.
    let r = c
        .post(proxy.url("/v1/messages"))
        .body(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"please fail"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("Rate limit reached"), "{v}");
}

#[tokio::test]
async fn a_bad_dialect_name_is_refused_with_the_choices() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["serve", "--upstream", "http://127.0.0.1:9", "--upstream-dialect", "gemini", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("openai-chat") && err.contains("gemini"), "{err}");
}
