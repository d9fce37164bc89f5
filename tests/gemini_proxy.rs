//! The Gemini dialect through the real `serve` binary on a Gemini mock that refuses what the API
//! refuses: byte-exact passthrough (JSON and SSE), where the key goes, the model in the path,
//! errors in Google's shape, usage from `usageMetadata`, and 429 quota details into cooldowns.

mod common;

use common::gemini::{self, Say, Signatures};
use common::mock::{self, Reply};
use common::{spawn_proxy, temp_file, Proxy};
use serde_json::{json, Value};

fn config(base: &str, auth: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[timeouts]
connect_ms = 2000
first_byte_ms = 3000
idle_ms = 3000
[pool]
store = "memory"
[[providers]]
name = "g"
kind = "gemini"
base_url = "{base}/v1beta"
{auth}
models = ["gemini-test", "gemini-test-2"]
[routes.gem-fast]
targets = ["g/gemini-test-2"]
{extra}
[default_upstream]
gemini = "g"
"#
    )
}

/// A Gemini mock answering `say`, checking every request as the API does.
async fn gemini_mock(say: fn(&Value) -> Say) -> mock::Mock {
    let signatures = Signatures::default();
    let n = std::sync::atomic::AtomicUsize::new(0);
    mock::start(move |rec| match gemini::check(rec, &signatures) {
        Ok(asked) => {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gemini::reply(&asked, &say(&asked.body), i, &signatures)
        }
        Err(reply) => reply,
    })
    .await
}

fn proxy_with(cfg: &str, env: &[(&str, &str)]) -> Proxy {
    let path = temp_file("gemini.toml", cfg);
    let mut all = vec![("TOKENFOLD_LEDGER", "off")];
    all.extend_from_slice(env);
    spawn_proxy(&["--config", path.to_str().unwrap()], &all)
}

/// A request body with what re-serializing would change: `1.0`, escapes, spacing, key order.
const ODD_BODY: &str = "{\"contents\": [{\"role\":\"user\",\"parts\":[{\"text\":\"caf\\u00e9 \\/ 1\"}]}],\n  \"generationConfig\":{\"temperature\":1.0,\"maxOutputTokens\":64}, \"systemInstruction\":{\"parts\":[{\"text\":\"be brief\"}]}}";

async fn post(
    proxy: &Proxy,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new().post(proxy.url(path)).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let (status, hdrs) = (resp.status().as_u16(), resp.headers().clone());
    (status, resp.text().await.unwrap(), hdrs)
}

fn text_say(_: &Value) -> Say {
    Say::Text("hello from gemini".into())
}

#[tokio::test]
async fn passthrough_is_byte_exact_both_ways_with_the_clients_key() {
    let mock = gemini_mock(text_say).await;
    let proxy = proxy_with(&config(&mock.base(), "auth = \"client\"", ""), &[]);
    let key = [("x-goog-api-key", "client-key"), ("content-type", "application/json")];
    let (status, body, headers) = post(&proxy, "/v1beta/models/gemini-test:generateContent", &key, ODD_BODY).await;
    assert_eq!(status, 200, "{body}");
    let got = mock.last();
    assert_eq!(got.body, ODD_BODY.as_bytes(), "the body reached the provider unchanged");
    assert_eq!(got.path, "/v1beta/models/gemini-test:generateContent");
    assert_eq!(got.header("x-goog-api-key"), Some("client-key"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["candidates"][0]["content"]["parts"][0]["text"], "hello from gemini");
    assert_eq!(headers["x-tokenfold-saved-tokens"], "0");

    let (status, body, headers) =
        post(&proxy, "/v1beta/models/gemini-test:streamGenerateContent?alt=sse", &key, ODD_BODY).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let got = mock.last();
    assert_eq!((got.query.as_deref(), got.body.as_slice()), (Some("alt=sse"), ODD_BODY.as_bytes()));
    let events: Vec<&str> = body.split("\r\n\r\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 2, "{body}");
    assert!(events[0].contains("\"thought\":true") && events[1].contains("\"finishReason\":\"STOP\""));

    // The usage of both answers, read from usageMetadata: the stream's last event counts.
    let metrics = proxy.metrics().await;
    let input = metric(&metrics, "tokenfold_provider_input_tokens_total");
    let output = metric(&metrics, "tokenfold_provider_output_tokens_total");
    let prompt = (ODD_BODY.len() as u64).div_ceil(4);
    assert_eq!(input, 2 * prompt, "{metrics}");
    assert_eq!(output, 2 * 28, "candidates and thoughts of both answers: {metrics}");
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn the_providers_key_replaces_the_clients_in_header_and_query() {
    let mock = gemini_mock(text_say).await;
    let cfg = config(&mock.base(), "api_key = \"${TF_GEMINI_KEY}\"", "");
    let proxy = proxy_with(&cfg, &[("TF_GEMINI_KEY", "provider-key")]);
    let path = "/v1beta/models/gemini-test:streamGenerateContent?key=client-key&alt=sse";
    let (status, body, _) = post(&proxy, path, &[("x-goog-api-key", "client-key")], ODD_BODY).await;
    assert_eq!(status, 200, "{body}");
    let got = mock.last();
    assert_eq!(got.header("x-goog-api-key"), Some("provider-key"));
    assert_eq!(got.query.as_deref(), Some("alt=sse"), "the client's key= is not passed on");
}

#[tokio::test]
async fn a_routes_model_goes_into_the_path_and_the_body_stays() {
    let mock = gemini_mock(text_say).await;
    let proxy = proxy_with(&config(&mock.base(), "auth = \"client\"", ""), &[]);
    let (status, body, _) =
        post(&proxy, "/v1beta/models/gem-fast:generateContent", &[("x-goog-api-key", "k")], ODD_BODY).await;
    assert_eq!(status, 200, "{body}");
    let got = mock.last();
    assert_eq!(got.path, "/v1beta/models/gemini-test-2:generateContent");
    assert_eq!(got.body, ODD_BODY.as_bytes());
    // countTokens goes to the target's own countTokens.
    let (status, body, _) =
        post(&proxy, "/v1beta/models/gemini-test:countTokens", &[("x-goog-api-key", "k")], ODD_BODY).await;
    assert_eq!(status, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["totalTokens"].as_u64().unwrap() > 0);
    assert_eq!(mock.last().path, "/v1beta/models/gemini-test:countTokens");
}

#[tokio::test]
async fn errors_come_in_googles_shape() {
    let mock = gemini_mock(text_say).await;
    let proxy = proxy_with(&config(&mock.base(), "auth = \"client\"", ""), &[]);
    let k = [("x-goog-api-key", "k")];
    let (status, body, _) = post(&proxy, "/v1beta/models/gemini-test:generateContent", &k, "{\"contents\": [").await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["error"]["code"].as_u64(), v["error"]["status"].as_str()), (Some(400), Some("INVALID_ARGUMENT")));
    assert!(v["error"]["message"].as_str().unwrap().contains("not valid JSON"), "{v}");

    let (status, body, _) = post(&proxy, "/v1beta/models/gemini-test:embedContent", &k, "{}").await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["status"], "NOT_FOUND", "{v}");

    // The provider's own error (a role the API refuses) comes back as it was sent.
    let bad_role = r#"{"contents":[{"role":"assistant","parts":[{"text":"x"}]}]}"#;
    let (status, body, _) = post(&proxy, "/v1beta/models/gemini-test:generateContent", &k, bad_role).await;
    assert_eq!(status, 400);
    assert!(body.contains("Please use a valid role"), "{body}");

    // No key at all: the provider's 403, untouched.
    let (status, body, _) = post(&proxy, "/v1beta/models/gemini-test:generateContent", &[], ODD_BODY).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("PERMISSION_DENIED"));
}

fn quota_429(quota_id: &str) -> Reply {
    let body = json!({"error": {"code": 429, "message": "You exceeded your current quota. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10", "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": quota_id, "quotaDimensions": {"location": "global", "model": "gemini-test"}, "quotaValue": "10"}]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}});
    Reply::Json { status: 429, body: body.to_string().into_bytes(), headers: vec![] }
}

/// Two Gemini providers in one route: the first answers 429 with the given quota id.
async fn quota_case(quota_id: &'static str) -> (Value, u16, String) {
    let limited = mock::start(move |_| quota_429(quota_id)).await;
    let good = gemini_mock(text_say).await;
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[pool]
store = "memory"
[[providers]]
name = "limited"
kind = "gemini"
base_url = "{}/v1beta"
api_key = "${{TF_GEMINI_KEY}}"
rate_limit_scope = "model"
models = ["gemini-test"]
[[providers]]
name = "good"
kind = "gemini"
base_url = "{}/v1beta"
api_key = "${{TF_GEMINI_KEY}}"
models = ["gemini-test"]
[routes.r]
targets = ["limited/gemini-test", "good/gemini-test"]
"#,
        limited.base(),
        good.base()
    );
    let proxy = proxy_with(&cfg, &[("TF_GEMINI_KEY", "pk")]);
    let (status, body, _) = post(&proxy, "/v1beta/models/r:generateContent", &[], ODD_BODY).await;
    let pool: Value = reqwest::get(proxy.url("/pool")).await.unwrap().json().await.unwrap();
    let p = pool["providers"].as_array().unwrap().iter().find(|p| p["name"] == "limited").unwrap().clone();
    let model = p["accounts"][0]["models"].as_array().unwrap().iter().find(|m| m["name"] == "gemini-test").cloned();
    (model.unwrap_or(Value::Null), status, body)
}

#[tokio::test]
async fn a_minutes_quota_cools_for_the_retry_delay_and_falls_back() {
    let (model, status, body) = quota_case("GenerateRequestsPerMinutePerProjectPerModel-FreeTier").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model["cooldown"]["kind"], "rate-limited", "{model}");
    let left = model["cooldown"]["remaining_s"].as_u64().unwrap();
    assert!((35..=37).contains(&left), "RetryInfo said 37s: {model}");
}

#[tokio::test]
async fn a_days_quota_is_out_until_the_day_resets() {
    let (model, status, body) = quota_case("GenerateRequestsPerDayPerProjectPerModel-FreeTier").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model["cooldown"]["kind"], "quota-exhausted", "{model}");
    assert!(model["cooldown"]["remaining_s"].as_u64().unwrap() > 37, "{model}");
}

/// Says calls until the request carries function responses, then text.
fn call_then_text(body: &Value) -> Say {
    let answered = body.to_string().contains("\"functionResponse\"");
    if answered {
        Say::Text("all read".into())
    } else {
        Say::Calls(vec![
            ("read_file".into(), json!({"file_path": "a.rs"})),
            ("read_file".into(), json!({"file_path": "b.rs"})),
        ])
    }
}

/// One Chat turn through the proxy: the streamed answer read back into an assistant message.
async fn chat_turn(proxy: &Proxy, messages: &[Value]) -> Value {
    let body = json!({"model": "gemini-3-test", "stream": true, "messages": messages,
        "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}}}}}]});
    let resp = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth("client-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let mut content = String::new();
    let mut calls: Vec<Value> = Vec::new();
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")).filter(|d| *d != "[DONE]") {
        let v: Value = serde_json::from_str(data).unwrap();
        assert!(v.get("error").is_none(), "{text}");
        let delta = &v["choices"][0]["delta"];
        content.push_str(delta["content"].as_str().unwrap_or(""));
        for c in delta["tool_calls"].as_array().into_iter().flatten() {
            calls.push(json!({"id": c["id"], "type": "function", "function": c["function"]}));
        }
    }
    let mut msg = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    msg
}

#[tokio::test]
async fn a_chat_client_on_gemini_3_gets_its_thought_signatures_back_to_the_model() {
    let mock = gemini_mock(call_then_text).await;
    let proxy =
        spawn_proxy(&["--upstream", &mock.base(), "--upstream-dialect", "gemini"], &[("TOKENFOLD_LEDGER", "off")]);
    let mut messages = vec![json!({"role": "user", "content": "read a.rs and b.rs"})];
    let first = chat_turn(&proxy, &messages).await;
    let calls = first["tool_calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 2, "{first}");
    let got = mock.last();
    assert_eq!(got.path, "/v1beta/models/gemini-3-test:streamGenerateContent");
    assert_eq!(got.query.as_deref(), Some("alt=sse"));
    assert_eq!(got.header("x-goog-api-key"), Some("client-key"), "the bearer key became Gemini's header");
    assert!(got.header("authorization").is_none());
    messages.push(first);
    for c in &calls {
        messages.push(json!({"role": "tool", "tool_call_id": c["id"], "content": "contents"}));
    }
    // The mock refuses (400) a Gemini 3 history whose calls lost or changed their signature.
    let second = chat_turn(&proxy, &messages).await;
    assert_eq!(second["content"], "all read");
    let sent = mock.last().json();
    let model_turn = &sent["contents"][1]["parts"];
    assert_eq!(model_turn[0]["thoughtSignature"], "c2lnbmF0dXJl0000+/Zm9yIGEgY2FsbA==", "{sent}");
    assert!(model_turn[1].get("thoughtSignature").is_none());
}

const GEMINI_BODY: &str = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"systemInstruction":{"parts":[{"text":"be brief"}]},"generationConfig":{"maxOutputTokens":64}}"#;

#[tokio::test]
async fn a_gemini_client_on_an_anthropic_provider() {
    let mock = mock::start(|rec| {
        if rec.path != "/v1/messages" || rec.header("x-api-key") != Some("g-key") {
            return Reply::Json {
                status: 401,
                body: br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#
                    .to_vec(),
                headers: vec![],
            };
        }
        if rec.json()["stream"] == true {
            Reply::sse(mock::anthropic_stream("hello from claude").into_iter().map(mock::Chunk::Bytes).collect())
        } else {
            Reply::ok_json(mock::anthropic_message("hello from claude"))
        }
    })
    .await;
    let proxy =
        spawn_proxy(&["--upstream", &mock.base(), "--upstream-dialect", "anthropic"], &[("TOKENFOLD_LEDGER", "off")]);
    let key = [("x-goog-api-key", "g-key")];
    let (status, body, _) = post(&proxy, "/v1beta/models/claude-test:generateContent", &key, GEMINI_BODY).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["candidates"][0]["content"]["parts"][0]["text"], "hello from claude");
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 12);
    let sent = mock.last().json();
    assert_eq!(
        (sent["model"].as_str(), sent["system"].as_str(), sent["max_tokens"].as_u64()),
        (Some("claude-test"), Some("be brief"), Some(64))
    );

    let (status, body, _) =
        post(&proxy, "/v1beta/models/claude-test:streamGenerateContent?alt=sse&key=g-key", &[], GEMINI_BODY).await;
    assert_eq!(status, 200, "{body}");
    let events: Vec<Value> =
        body.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    let text: String =
        events.iter().filter_map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str()).collect();
    assert_eq!(text, "hello from claude");
    assert_eq!(events.last().unwrap()["candidates"][0]["finishReason"], "STOP");
    assert!(mock.last().query.is_none(), "Gemini's alt=sse and key= stay behind");

    // Without alt=sse a stream is a JSON array.
    let (status, body, _) = post(&proxy, "/v1beta/models/claude-test:streamGenerateContent", &key, GEMINI_BODY).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["candidates"][0]["content"]["parts"][0]["text"], "hello from claude", "{v}");

    // countTokens: only Gemini counts upstream; here the proxy estimates.
    let (status, body, headers) = post(&proxy, "/v1beta/models/claude-test:countTokens", &key, GEMINI_BODY).await;
    assert_eq!(status, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["totalTokens"].as_u64().unwrap() > 0);
    assert_eq!(headers["x-tokenfold-estimate"], "o200k_base");

    // The provider's refusal reaches the client in Google's shape.
    let (status, body, _) =
        post(&proxy, "/v1beta/models/claude-test:generateContent", &[("x-goog-api-key", "wrong")], GEMINI_BODY).await;
    assert_eq!(status, 401);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["error"]["code"].as_u64(), v["error"]["status"].as_str()),
        (Some(401), Some("UNAUTHENTICATED")),
        "{v}"
    );
    assert_eq!(v["error"]["message"], "invalid x-api-key");
}
