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
        .args(["serve", "--upstream", "http://127.0.0.1:9", "--upstream-dialect", "bedrock", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("openai-chat") && err.contains("gemini") && err.contains("bedrock"), "{err}");
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/translate").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A mock that speaks only OpenAI Responses: the recorded stream or body from the fixtures.
fn responses_provider(rec: &mock::Recorded) -> Reply {
    if rec.path != "/v1/responses" {
        return Reply::Json {
            status: 404,
            body: br#"{"error":{"message":"only /v1/responses here"}}"#.to_vec(),
            headers: vec![],
        };
    }
    if rec.json()["stream"] == true {
        let text = String::from_utf8(fixture("upstream/responses_stream.sse")).unwrap();
        let events = text.split_inclusive("\n\n").map(|e| mock::Chunk::Bytes(e.as_bytes().to_vec())).collect();
        Reply::sse(events)
    } else {
        Reply::ok_json(fixture("upstream/responses_response.json"))
    }
}

fn sse_data(text: &str) -> Vec<serde_json::Value> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn anthropic_and_chat_clients_on_a_responses_only_upstream() {
    let mock = mock::start(responses_provider).await;
    let proxy = spawn_proxy(&["--upstream", &mock.base(), "--upstream-dialect", "openai-responses"], &[]);
    let c = reqwest::Client::new();

    // Anthropic client, whole answer.
    let body = r#"{"model":"gpt-5","max_tokens":64,"system":"be brief","messages":[{"role":"user","content":"read a.rs and b.rs"}],"tools":[{"name":"read_file","input_schema":{"type":"object"}}]}"#;
    let r = c.post(proxy.url("/v1/messages")).header("x-api-key", "k").body(body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][2]["input"], serde_json::json!({"path": "a.rs"}));
    let sent = mock.last();
    assert_eq!(sent.path, "/v1/responses");
    let sent = sent.json();
    assert_eq!(sent["instructions"], "be brief");
    assert_eq!(sent["input"][0]["content"], "read a.rs and b.rs");
    assert_eq!(sent["tools"][0]["name"], "read_file");
    assert_eq!(sent["store"], false);

    // Anthropic client, streamed.
    let body = body.replace("\"max_tokens\":64", "\"max_tokens\":64,\"stream\":true");
    let r = c.post(proxy.url("/v1/messages")).header("x-api-key", "k").body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let evs = sse_data(&r.text().await.unwrap());
    let tys: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(tys.first(), Some(&"message_start"));
    assert_eq!(tys.last(), Some(&"message_stop"));
    assert_eq!(tys.iter().filter(|t| **t == "content_block_start").count(), 4);
    assert_eq!(mock.last().json()["stream"], true);

    // Chat client, streamed and not.
    let body = r#"{"model":"gpt-5","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let r = c.post(proxy.url("/v1/chat/completions")).bearer_auth("k").body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let evs = sse_data(&r.text().await.unwrap());
    let text: String = evs.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Lese zwei Dateien ü 🚀");
    assert_eq!(evs.last().unwrap()["usage"]["prompt_tokens"], 120);
    let r = c
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth("k")
        .body(r#"{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["id"], "call_r1");
    assert!(mock.requests().iter().all(|r| r.path == "/v1/responses"));
}

/// A config with one Chat provider (two models: one reasoning, one not) and one Anthropic
/// provider with a reasoning model, all at `base`.
fn reasoning_config(base: &str) -> String {
    format!(
        r#"
[[providers]]
name = "chatty"
kind = "openai"
base_url = "{base}/v1"
auth = "client"
models = [{{ name = "thinker", reasoning = true }}, "plain"]

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "{base}/v1"
auth = "client"
models = [{{ name = "claude-think", reasoning = true }}, {{ name = "claude-plain" }}]
"#
    )
}

#[tokio::test]
async fn reasoning_settings_follow_the_models_capability() {
    let mock = mock::start(|rec| {
        if rec.path == "/v1/messages" {
            Reply::ok_json(mock::anthropic_message("ok"))
        } else {
            Reply::ok_json(mock::chat_completion("ok"))
        }
    })
    .await;
    let cfg = common::temp_file("reasoning.toml", &reasoning_config(&mock.base()));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[]);
    let c = reqwest::Client::new();
    let anthropic = |model: &str| {
        format!(
            r#"{{"model":"{model}","max_tokens":20000,"thinking":{{"type":"enabled","budget_tokens":10000}},"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    for (model, want) in [("thinker", Some("medium")), ("plain", None)] {
        let r = c.post(proxy.url("/v1/messages")).header("x-api-key", "k").body(anthropic(model)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", proxy.logs());
        let sent = mock.last();
        assert_eq!(sent.path, "/v1/chat/completions");
        assert_eq!(sent.json()["reasoning_effort"].as_str(), want, "{model}");
    }
    let chat = |model: &str| {
        format!(
            r#"{{"model":"{model}","reasoning_effort":"high","temperature":0.5,"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    let r = c.post(proxy.url("/v1/chat/completions")).bearer_auth("k").body(chat("claude-think")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    let sent = mock.last().json();
    assert_eq!(sent["thinking"], serde_json::json!({"type": "enabled", "budget_tokens": 24576}));
    assert!(sent.get("temperature").is_none(), "thinking refuses sampling overrides");
    let r = c.post(proxy.url("/v1/chat/completions")).bearer_auth("k").body(chat("claude-plain")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let sent = mock.last().json();
    assert!(sent.get("thinking").is_none(), "{sent}");
    assert_eq!(sent["temperature"], 0.5);
}

#[tokio::test]
async fn a_misspelled_or_mistyped_reasoning_key_is_refused_with_file_and_line() {
    let text = reasoning_config("http://127.0.0.1:9").replace("reasoning = true", "reasons = true");
    let cfg = common::temp_file("bad.toml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["config", "check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reasons") && err.contains("bad.toml:7:31:") && err.contains("expected one of"), "{err}");
    let text = reasoning_config("http://127.0.0.1:9").replace("reasoning = true", "reasoning = \"yes\"");
    let cfg = common::temp_file("bad2.toml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["config", "check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad2.toml:"));
}

fn models_config(base: &str) -> String {
    format!(
        r#"
[[providers]]
name = "claude"
kind = "anthropic"
base_url = "{base}/v1"
auth = "client"
models = ["claude-x"]

[[providers]]
name = "keyless"
kind = "openai"
base_url = "{base}/v1"
api_key = "${{TOKENFOLD_TEST_UNSET_KEY}}"
models = ["gone-model"]

[[providers]]
name = "keyed"
kind = "openai"
base_url = "{base}/v1"
api_key = "${{TOKENFOLD_TEST_SET_KEY}}"
models = ["kept-model", "claude-x"]

[routes.free-coder]
targets = ["keyless/gone-model", "keyed/kept-model"]

[routes.dead-route]
targets = ["keyless/gone-model"]
"#
    )
}

#[tokio::test]
async fn models_lists_routes_and_usable_models_in_the_callers_shape() {
    let cfg = common::temp_file("models.toml", &models_config("http://127.0.0.1:9"));
    let proxy = spawn_proxy(
        &["--config", cfg.to_str().unwrap()],
        &[("TOKENFOLD_TEST_SET_KEY", "secret"), ("TOKENFOLD_TEST_UNSET_KEY", "")],
    );
    let c = reqwest::Client::new();
    let v: serde_json::Value = c.get(proxy.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["free-coder", "claude-x", "kept-model"]);
    assert_eq!(
        v["data"][0],
        serde_json::json!({"id": "free-coder", "object": "model", "created": 0, "owned_by": "tokenfold"})
    );
    assert_eq!(v["data"][2]["owned_by"], "keyed");

    let r = c.get(proxy.url("/v1/models")).header("anthropic-version", "2023-06-01").send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["free-coder", "claude-x", "kept-model"]);
    assert_eq!(v["data"][1]["type"], "model");
    assert_eq!(v["data"][1]["display_name"], "claude-x");
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], "free-coder");
    assert_eq!(v["last_id"], "kept-model");
    assert!(v.get("object").is_none());
}

#[tokio::test]
async fn models_in_one_flag_mode_lists_the_upstream_model() {
    let proxy = spawn_proxy(
        &["--upstream", "http://127.0.0.1:9", "--upstream-dialect", "openai-chat", "--upstream-model", "qwen3-coder"],
        &[],
    );
    let v: serde_json::Value = reqwest::get(proxy.url("/v1/models")).await.unwrap().json().await.unwrap();
    assert_eq!(v["data"][0]["id"], "qwen3-coder");
    assert_eq!(v["data"][0]["owned_by"], "upstream-openai-chat");
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn models_in_one_flag_mode_without_a_model_asks_the_upstream() {
    let mock = mock::start(|rec| {
        if rec.path == "/v1/models" {
            Reply::ok_json(br#"{"object":"list","data":[{"id":"qwen3:8b","object":"model","created":1,"owned_by":"library"},{"id":"llama3.2:3b","object":"model","created":1,"owned_by":"library"}]}"#.to_vec())
        } else {
            Reply::Json { status: 404, body: b"{}".to_vec(), headers: vec![] }
        }
    })
    .await;
    let proxy = spawn_proxy(&["--upstream", &mock.base(), "--upstream-dialect", "openai-chat"], &[]);
    let c = reqwest::Client::new();
    let v: serde_json::Value = c.get(proxy.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["qwen3:8b", "llama3.2:3b"]);
    // An Anthropic client (Claude Code) gets the same list in its shape.
    let r = c.get(proxy.url("/v1/models")).header("anthropic-version", "2023-06-01").send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["data"][0],
        serde_json::json!({"type": "model", "id": "qwen3:8b", "display_name": "qwen3:8b", "created_at": "1970-01-01T00:00:00Z"})
    );
    assert_eq!(v["last_id"], "llama3.2:3b");
    assert!(mock.requests().iter().all(|r| r.method == "GET" && r.path == "/v1/models"));
}
