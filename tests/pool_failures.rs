//! Each failure class through the real `serve` binary: a route of a failing mock provider then a
//! healthy one (both on 127.0.0.1:0), requests over real HTTP, and what the pool says about it
//! afterwards on `GET /pool`.

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::time::{Duration, Instant};

use common::mock::{anthropic_stream, chat_completion, chat_stream};
use common::{spawn_proxy, temp_file, Proxy};
use faults::{End, Fault, FaultMock};
use serde_json::{json, Value};

const KEY_ENV: (&str, &str) = ("TF_TEST_KEY", "sk-test");

/// A provider entry speaking OpenAI Chat (`kind`), with `extra` lines.
fn provider(name: &str, base: &str, kind: &str, extra: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nkind = \"{kind}\"\nbase_url = \"{base}/v1\"\napi_key = \"${{TF_TEST_KEY}}\"\n{extra}\n"
    )
}

/// `bad` then `good` in route `r` (fallback), plus `solo` = `bad` alone.
fn two_targets(bad: &str, good: &str, kind: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nconnect_ms = 1000\nfirst_byte_ms = 400\nidle_ms = 1500\n\
         [pool]\nstore = \"memory\"\n{}{}\
         [routes.r]\ntargets = [\"bad/m\", \"good/m\"]\n[routes.solo]\ntargets = [\"bad/m\"]\n",
        provider("bad", bad, kind, ""),
        provider("good", good, kind, "")
    )
}

fn start_proxy(config: &str) -> Proxy {
    let path = temp_file("pool-failures.toml", config);
    spawn_proxy(&["--config", path.to_str().unwrap()], &[KEY_ENV, ("TOKENFOLD_LEDGER", "off")])
}

/// A healthy OpenAI Chat provider: a whole answer, or a stream when asked.
async fn healthy() -> FaultMock {
    faults::start(|req, _| {
        if req.json()["stream"] == json!(true) {
            Fault::sse(chat_stream("fine"))
        } else {
            Fault::json(200, chat_completion("fine"))
        }
    })
    .await
}

async fn chat(proxy: &Proxy, model: &str, stream: bool) -> (u16, String) {
    let body =
        json!({"model": model, "stream": stream, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let resp = reqwest::Client::new().post(proxy.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The account and model rows of `provider` in `GET /pool`.
async fn pool_row(proxy: &Proxy, provider: &str) -> (Value, Value) {
    let status: Value = reqwest::get(proxy.url("/pool")).await.unwrap().json().await.unwrap();
    let p = status["providers"].as_array().unwrap().iter().find(|p| p["name"] == provider).unwrap().clone();
    let account = p["accounts"][0].clone();
    let model = account["models"].as_array().unwrap().iter().find(|m| m["name"] == "m").cloned().unwrap_or(Value::Null);
    (account, model)
}

fn answered_by_good(status: u16, body: &str) {
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("fine"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_cools_that_target_until_the_reset() {
    let bad = faults::start(|_, _| {
        Fault::json(429, br#"{"error":{"message":"slow down"}}"#.to_vec()).with_header("retry-after", "2")
    })
    .await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&bad.base(), &good.base(), "openai"));
    let started = Instant::now();
    let (s, b) = chat(&proxy, "r", false).await;
    answered_by_good(s, &b);
    let (s, b) = chat(&proxy, "r", false).await;
    answered_by_good(s, &b);
    assert_eq!(bad.count(), 1, "asked again while cooling down");
    let (account, _) = pool_row(&proxy, "bad").await;
    assert_eq!(account["health"], "rate-limited", "{account}");
    assert_eq!(account["cooldown"]["kind"], "rate-limited");
    assert!(account["cooldown"]["remaining_s"].as_u64().unwrap() <= 2, "{account}");
    // Once the provider's reset has passed it is tried again.
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(started.elapsed())).await;
    let (s, b) = chat(&proxy, "r", false).await;
    answered_by_good(s, &b);
    assert_eq!(bad.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_falls_back_and_is_tried_last_for_a_while() {
    let bad = faults::start(|_, _| Fault::json(503, br#"{"error":{"message":"upstream down"}}"#.to_vec())).await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&bad.base(), &good.base(), "openai"));
    let (s, b) = chat(&proxy, "r", false).await;
    answered_by_good(s, &b);
    let (s, b) = chat(&proxy, "r", false).await;
    answered_by_good(s, &b);
    assert_eq!((bad.count(), good.count()), (1, 2));
    let (account, _) = pool_row(&proxy, "bad").await;
    assert_eq!(account["health"], "degraded", "{account}");
    assert!(account["last_error"].as_str().unwrap().contains("HTTP 503"), "{account}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_before_the_first_byte_falls_back_within_the_timeout() {
    let bad = faults::start(|_, _| Fault::Hang(Duration::from_secs(20))).await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&bad.base(), &good.base(), "openai"));
    let started = Instant::now();
    let (s, b) = chat(&proxy, "r", false).await;
    answered_by_good(s, &b);
    // first_byte_ms = 400, then the next target at once.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let (account, _) = pool_row(&proxy, "bad").await;
    assert!(account["last_error"].as_str().unwrap().contains("timeout"), "{account}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_before_the_first_byte_falls_back() {
    let bad = faults::start(|_, _| Fault::Reset).await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&bad.base(), &good.base(), "openai"));
    let (s, b) = chat(&proxy, "r", false).await;
    answered_by_good(s, &b);
    assert_eq!(bad.count(), 1);
    let (account, _) = pool_row(&proxy, "bad").await;
    assert_eq!(account["consecutive_failures"], 1, "{account}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_falls_back() {
    let dead = faults::refused_addr().await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&format!("http://{dead}"), &good.base(), "openai"));
    let (s, b) = chat(&proxy, "r", true).await;
    answered_by_good(s, &b);
    let (account, _) = pool_row(&proxy, "bad").await;
    assert!(account["last_error"].as_str().unwrap().contains("connect"), "{account}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_whose_body_or_first_event_is_an_error_falls_back() {
    let bad = faults::start(|req, _| {
        let error = br#"{"error":{"message":"The model is overloaded","code":503}}"#.to_vec();
        if req.json()["stream"] == json!(true) {
            Fault::sse(vec![[b"data: ".to_vec(), error, b"\n\n".to_vec()].concat()])
        } else {
            Fault::json(200, error)
        }
    })
    .await;
    let good = healthy().await;
    // Demoted for 1 ms only, so the second request tries the bad target first again.
    let config = two_targets(&bad.base(), &good.base(), "openai")
        .replace("store = \"memory\"", "store = \"memory\"\nshort_cooldown_ms = 1");
    let proxy = start_proxy(&config);
    let (s, b) = chat(&proxy, "r", false).await;
    answered_by_good(s, &b);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (s, b) = chat(&proxy, "r", true).await;
    answered_by_good(s, &b);
    assert!(!b.contains("overloaded"), "the error event reached the client: {b}");
    assert_eq!((bad.count(), good.count()), (2, 2));
    let (account, _) = pool_row(&proxy, "bad").await;
    assert_eq!(account["consecutive_failures"], 2, "{account}");
    assert!(account["last_error"].as_str().unwrap().contains("overloaded"), "{account}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_turns_the_account_off_until_reload() {
    let bad = faults::start(|_, _| Fault::json(401, br#"{"error":{"message":"invalid api key"}}"#.to_vec())).await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&bad.base(), &good.base(), "openai"));
    for _ in 0..3 {
        let (s, b) = chat(&proxy, "r", false).await;
        answered_by_good(s, &b);
    }
    assert_eq!(bad.count(), 1);
    let (account, _) = pool_row(&proxy, "bad").await;
    assert_eq!(account["health"], "disabled", "{account}");
    // The log is read from the proxy's stderr by another thread: on a busy machine it lags.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proxy.logs().contains("key refused (HTTP 401)") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(proxy.logs().contains("key refused (HTTP 401)"), "{}", proxy.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_length_400_moves_to_a_target_with_a_larger_window() {
    let small = faults::start(|_, _| {
        Fault::json(
            400,
            br#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#.to_vec(),
        )
    })
    .await;
    let big = healthy().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[pool]\nstore = \"memory\"\n{}{}[routes.r]\ntargets = [\"small/m\", \"big/m\"]\n",
        provider("small", &small.base(), "openai", "models = [{ name = \"m\", context = 8192 }]"),
        provider("big", &big.base(), "openai", "models = [{ name = \"m\", context = 1000000 }]"),
    );
    let proxy = start_proxy(&config);
    let (s, b) = chat(&proxy, "r", false).await;
    answered_by_good(s, &b);
    assert_eq!((small.count(), big.count()), (1, 1));
    // Not a fault of the small target: it is not cooled down.
    let (account, _) = pool_row(&proxy, "small").await;
    assert_eq!(account["health"], "ok", "{account}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_4xx_goes_back_to_the_client_and_is_not_retried() {
    let bad =
        faults::start(|_, _| Fault::json(422, br#"{"error":{"message":"messages: field required"}}"#.to_vec())).await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&bad.base(), &good.base(), "openai"));
    let (s, b) = chat(&proxy, "r", false).await;
    assert_eq!(s, 422, "{b}");
    assert!(b.contains("messages: field required"), "{b}");
    assert_eq!(bad.count(), 1, "the request itself is wrong: sent exactly once");
    assert_eq!(good.count(), 0, "and not to anyone else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_some_bytes_but_before_a_whole_first_event_falls_back() {
    let bad = faults::start(|_, _| Fault::Stream {
        chunks: vec![b"data: {\"id\":\"chatcmpl-half\",\"choices\":[{\"delta\":".to_vec()],
        gap: Duration::ZERO,
        end: End::Reset,
    })
    .await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&bad.base(), &good.base(), "openai"));
    let (s, b) = chat(&proxy, "r", true).await;
    answered_by_good(s, &b);
    assert!(!b.contains("chatcmpl-half"), "half an event reached the client: {b}");
    assert_eq!((bad.count(), good.count()), (1, 1));
}

/// The events of an SSE body, as JSON (`[DONE]` left out).
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("not JSON ({e}): {d}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_later_in_a_stream_is_passed_through_and_counted_as_a_failure() {
    let bad = faults::start(|_, _| {
        let mut chunks = chat_stream("partial");
        chunks.truncate(2);
        chunks.push(br#"data: {"error":{"message":"Internal error while generating","type":"server_error"}}"#.to_vec());
        chunks.push(b"\n\n".to_vec());
        Fault::sse(chunks)
    })
    .await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&bad.base(), &good.base(), "openai"));
    let (s, b) = chat(&proxy, "solo", true).await;
    assert_eq!(s, 200, "{b}");
    let ev = events(&b);
    assert_eq!(ev.last().unwrap()["error"]["message"], "Internal error while generating", "{b}");
    assert!(b.contains("partial"), "{b}");
    let (account, model) = pool_row(&proxy, "bad").await;
    assert_eq!(account["consecutive_failures"], 1, "{account}");
    assert!(model["last_error"].as_str().unwrap().contains("Internal error"), "{model}");
    // Counted as a failure: the next request goes to the healthy target first.
    let (s, b) = chat(&proxy, "r", true).await;
    answered_by_good(s, &b);
    assert_eq!(bad.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_after_the_first_event_ends_the_stream_with_an_error_event_in_the_client_dialect() {
    // OpenAI Chat client, OpenAI Chat provider: the events pass as they are, then an error event.
    let bad = faults::start(|_, _| Fault::Stream {
        chunks: chat_stream("half")[..2].to_vec(),
        gap: Duration::ZERO,
        end: End::Reset,
    })
    .await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&bad.base(), &good.base(), "openai"));
    let (s, b) = chat(&proxy, "r", true).await;
    assert_eq!(s, 200, "{b}");
    let ev = events(&b);
    assert_eq!(ev[0]["object"], "chat.completion.chunk", "{b}");
    let last = ev.last().unwrap();
    assert!(last["error"]["message"].as_str().unwrap().contains("broke off"), "{b}");
    assert_eq!(good.count(), 0, "the client had bytes already: no fallback");
    let (account, _) = pool_row(&proxy, "bad").await;
    assert_eq!(account["consecutive_failures"], 1, "{account}");
    assert!(account["last_error"].as_str().unwrap().contains("stream broke off"), "{account}");

    // Anthropic client, Anthropic provider: an `event: error` in Anthropic's shape.
    let bad = faults::start(|_, _| Fault::Stream {
        chunks: anthropic_stream("half")[..3].to_vec(),
        gap: Duration::ZERO,
        end: End::Reset,
    })
    .await;
    let good = healthy().await;
    let proxy = start_proxy(&two_targets(&bad.base(), &good.base(), "anthropic"));
    let body = json!({"model": "r", "stream": true, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let resp = reqwest::Client::new()
        .post(proxy.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    let b = resp.text().await.unwrap();
    let tail = b.trim_end().rsplit("\n\n").next().unwrap();
    assert!(tail.starts_with("event: error\ndata: "), "{b}");
    let err: Value = serde_json::from_str(tail.split_once("data: ").unwrap().1).unwrap();
    assert_eq!(err["type"], "error", "{b}");
    assert!(err["error"]["message"].as_str().unwrap().contains("broke off"), "{b}");
    assert!(b.contains("message_start"), "{b}");
    let (account, _) = pool_row(&proxy, "bad").await;
    assert_eq!(account["consecutive_failures"], 1, "{account}");
}
