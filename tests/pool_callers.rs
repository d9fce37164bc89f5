//! With `auth = "client"` every caller brings its own key, and one caller must not lock out the
//! others: health, cooldowns and breakers are kept per credential (a hash of it, never the key),
//! also across a restart, and answers caused by the request itself never count towards a breaker.
//! The real `serve` binary against a mock provider that checks keys as a real one does: no key is
//! a 401, a malformed body a 400, a key over its limit a 429 with `Retry-After`.

mod common;

use std::time::Duration;

use common::mock::{self, chat_completion, chat_stream, Chunk, Recorded, Reply};
use common::{spawn_proxy, temp_file, Proxy};
use serde_json::{json, Value};

const LIMITED: &str = "sk-caller-limited-7f3a9c";
const BROKEN: &str = "sk-caller-broken-51d2e0";
const CAREFUL: &str = "sk-caller-careful-c84b17";
const SLOPPY: &str = "sk-caller-sloppy-2e6f08";

/// Answers like an OpenAI-compatible provider that limits each key on its own.
fn provider(rec: &Recorded) -> Reply {
    let json = |status: u16, body: &str, headers: Vec<(&'static str, String)>| Reply::Json {
        status,
        body: body.as_bytes().to_vec(),
        headers,
    };
    let Some(key) = rec.header("authorization").and_then(|v| v.strip_prefix("Bearer ")) else {
        return json(401, r#"{"error":{"message":"Missing API key","type":"invalid_request_error"}}"#, vec![]);
    };
    let body: Value = serde_json::from_slice(&rec.body).unwrap_or(Value::Null);
    if !body["messages"].is_array() {
        let msg = r#"{"error":{"message":"could not parse the request body: 'messages' must be an array","type":"invalid_request_error","param":"messages","code":null}}"#;
        // A streamed request gets its error as the first event of a 200 stream, as OpenAI-compatible
        // servers that validate lazily answer.
        if body["stream"] == json!(true) {
            return Reply::sse(vec![Chunk::Bytes(format!("data: {msg}\n\n").into_bytes())]);
        }
        return json(400, msg, vec![]);
    }
    match key {
        LIMITED => json(
            429,
            r#"{"error":{"message":"Rate limit reached for requests per min. Please try again in 120s.","type":"requests","code":"rate_limit_exceeded"}}"#,
            vec![("retry-after", "120".into())],
        ),
        BROKEN => json(503, r#"{"error":{"message":"upstream connect error","type":"server_error"}}"#, vec![]),
        _ if body["stream"] == json!(true) => Reply::sse(chat_stream("fine").into_iter().map(Chunk::Bytes).collect()),
        _ => Reply::ok_json(chat_completion("fine")),
    }
}

fn config(mock: &str, store: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
[timeouts]
connect_ms = 1000
first_byte_ms = 2000
idle_ms = 2000
[pool]
store = "{store}"
[[providers]]
name = "shared"
kind = "openai"
base_url = "{mock}/v1"
auth = "client"
models = ["gpt-test"]
[default_upstream]
openai-chat = "shared"
"#
    )
}

fn start(config: &str) -> Proxy {
    let path = temp_file("pool-callers.toml", config);
    spawn_proxy(&["--config", path.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off")])
}

/// A fresh store file path (not created yet).
fn store_path(name: &str) -> String {
    let p = temp_file(name, "");
    std::fs::remove_file(&p).unwrap();
    p.display().to_string()
}

async fn send(proxy: &Proxy, key: &str, body: Value) -> (u16, Option<String>, String) {
    let resp = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.text().await.unwrap())
}

fn good(stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]})
}

/// Valid JSON the provider cannot use: `messages` is not a list.
fn malformed(stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream, "max_tokens": 32, "messages": "hi"})
}

async fn pool(proxy: &Proxy) -> (String, Value) {
    let text = reqwest::get(proxy.url("/pool")).await.unwrap().text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap();
    (text, v)
}

/// Every account row of the provider (the shared one and one per caller seen).
fn rows(status: &Value) -> Vec<Value> {
    status["providers"][0]["accounts"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_caused_errors_trip_no_breaker_and_one_callers_outage_stays_its_own() {
    let mock = mock::start(provider).await;
    let proxy = start(&config(&mock.base(), "memory"));

    // A caller whose requests are malformed: each goes to the provider and its answer comes back
    // (a 400, or for a streamed request a 200 whose first event is the error).
    for i in 0..6 {
        let stream = i % 2 == 1;
        let (s, _, b) = send(&proxy, SLOPPY, malformed(stream)).await;
        assert_eq!(s, if stream { 200 } else { 400 }, "{b}");
        assert!(b.contains("'messages' must be an array"), "{b}");
    }
    assert_eq!(mock.requests().len(), 6, "every malformed request reached the provider once");
    // Neither the sender nor anyone else is blocked by them.
    for key in [SLOPPY, CAREFUL] {
        for stream in [false, true] {
            let (s, _, b) = send(&proxy, key, good(stream)).await;
            assert_eq!(s, 200, "{key}: {b}");
            assert!(b.contains("fine"), "{b}");
        }
    }
    let (text, _) = pool(&proxy).await;
    assert!(!text.contains("breaker-open") && !text.contains("degraded"), "{text}");

    // A caller whose key the provider fails with 5xx opens its own breaker...
    for _ in 0..3 {
        let (s, _, b) = send(&proxy, BROKEN, good(false)).await;
        assert_eq!(s, 503, "{b}");
    }
    let before = mock.requests().len();
    let (s, _, b) = send(&proxy, BROKEN, good(false)).await;
    assert_ne!(s, 200, "{b}");
    assert_eq!(mock.requests().len(), before, "the open breaker keeps that caller's requests off the provider");
    // ...and only its own.
    let (s, _, b) = send(&proxy, CAREFUL, good(true)).await;
    assert_eq!(s, 200, "another caller is not locked out: {b}");
    let (text, status) = pool(&proxy).await;
    let open: Vec<Value> = rows(&status).into_iter().filter(|r| r["health"] == "breaker-open").collect();
    assert_eq!(open.len(), 1, "{text}");
    assert!(open[0]["caller"].as_str().is_some_and(|c| c.len() >= 12), "{text}");
    for key in [SLOPPY, BROKEN, CAREFUL] {
        assert!(!text.contains(key), "/pool shows a key: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_callers_rate_limit_blocks_only_that_caller_also_after_a_restart() {
    let mock = mock::start(provider).await;
    let store = store_path("pool-callers.db");
    let cfg = config(&mock.base(), &store);
    let proxy = start(&cfg);

    let (s, _, b) = send(&proxy, LIMITED, good(false)).await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(mock.requests().len(), 1);
    // Cooled until the provider's Retry-After: answered by the proxy, the provider is not asked.
    let (s, retry, b) = send(&proxy, LIMITED, good(true)).await;
    assert_eq!(s, 429, "{b}");
    assert!(
        retry.as_deref().and_then(|r| r.parse::<u64>().ok()).is_some_and(|r| (100..=120).contains(&r)),
        "{retry:?}"
    );
    assert_eq!(mock.requests().len(), 1, "asked again while cooling down");
    // Another caller's key is not limited.
    for stream in [false, true] {
        let (s, _, b) = send(&proxy, CAREFUL, good(stream)).await;
        assert_eq!(s, 200, "the other caller is blocked: {b}");
    }
    assert_eq!(mock.requests().len(), 3);
    let (text, status) = pool(&proxy).await;
    let limited: Vec<Value> = rows(&status).into_iter().filter(|r| r["health"] == "rate-limited").collect();
    assert_eq!(limited.len(), 1, "{text}");
    assert!(!text.contains(LIMITED) && !text.contains(CAREFUL), "/pool shows a key: {text}");

    // The store gathers writes for 250 ms; then a restart.
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(proxy);
    let mut saved = std::fs::read(&store).unwrap();
    saved.extend(std::fs::read(format!("{store}-wal")).unwrap_or_default());
    for key in [LIMITED, CAREFUL] {
        assert!(saved.windows(key.len()).all(|w| w != key.as_bytes()), "the store holds a key");
    }
    let proxy = start(&cfg);
    let (s, retry, b) = send(&proxy, LIMITED, good(false)).await;
    assert_eq!(s, 429, "{b}");
    assert!(retry.is_some(), "{b}");
    assert_eq!(mock.requests().len(), 3, "the cooldown was forgotten by the restart");
    let (s, _, b) = send(&proxy, CAREFUL, good(false)).await;
    assert_eq!(s, 200, "{b}");
}
