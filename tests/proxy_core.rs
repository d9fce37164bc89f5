//! The proxy core end to end: the real binary on port 0 in front of in-process mock providers.

mod common;

use std::time::Duration;

use common::mock::{self, Reply};
use common::{config_for, spawn_proxy, temp_file, try_spawn_proxy};

const CLIENT_AUTH: &str = "auth = \"client\"";

/// A body that a re-serializing proxy would change: floats, big integers, escapes, non-ASCII,
/// unusual key order and whitespace.
const TRICKY: &str = "{ \"temperature\" : 1.0, \"model\":\"m\",\"big\": 123456789012345678901234567890,\n  \"s\": \"a\\u00e9\\n\\\"q\\\" \\/ \u{1F600} ü\", \"z\":1e5, \"a\":[ ], \"stream\": false,\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}] }";

async fn proxy_for(mock: &mock::Mock, extra_server: &str) -> common::Proxy {
    let cfg = temp_file("cfg.toml", &config_for(&mock.base(), extra_server, CLIENT_AUTH));
    spawn_proxy(&["--config", cfg.to_str().unwrap()], &[])
}

#[tokio::test]
async fn passthrough_is_byte_exact_for_every_dialect() {
    let reply = br#"{"id":"x","weird":  1.0 ,"n":123456789012345678901234567890}"#.to_vec();
    let r2 = reply.clone();
    let mock = mock::start(move |_| Reply::ok_json(r2.clone())).await;
    let proxy = proxy_for(&mock, "").await;
    let client = reqwest::Client::new();
    for (path, upstream_path, query) in [
        ("/v1/messages?beta=true", "/v1/messages", Some("beta=true")),
        ("/v1/messages/count_tokens", "/v1/messages/count_tokens", None),
        ("/v1/chat/completions", "/v1/chat/completions", None),
        ("/v1/responses", "/v1/responses", None),
    ] {
        let resp = client
            .post(proxy.url(path))
            .header("x-api-key", "client-own-key")
            .header("anthropic-version", "2023-06-01")
            .header("x-tokenfold", "on")
            .header("x-tokenfold-debug", "1")
            .header("connection", "keep-alive, x-custom-hop")
            .header("x-custom-hop", "this hop only")
            .header("x-end-to-end", "kept")
            .body(TRICKY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers().contains_key("x-tokenfold-saved-tokens"));
        assert_eq!(resp.bytes().await.unwrap().as_ref(), reply.as_slice(), "{path}: response not relayed intact");
        let got = mock.last();
        assert_eq!(got.body, TRICKY.as_bytes(), "{path}: upstream body differs from inbound body");
        assert_eq!(got.path, upstream_path);
        assert_eq!(got.query.as_deref(), query);
        assert_eq!(got.header("x-api-key"), Some("client-own-key"), "client credentials forwarded");
        assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
        assert!(got.headers.iter().all(|(n, _)| !n.starts_with("x-tokenfold")), "{:?}", got.headers);
        assert!(got.header("x-custom-hop").is_none(), "named in Connection: hop-by-hop: {:?}", got.headers);
        assert_eq!(got.header("x-end-to-end"), Some("kept"));
    }
}

/// The error shape of the dialect a path belongs to.
fn assert_dialect_shape(path: &str, v: &serde_json::Value) {
    let message = if path.contains("/messages") {
        assert_eq!(v["type"], "error", "{path}: Anthropic shape: {v}");
        &v["error"]["message"]
    } else {
        assert!(v.get("type").is_none(), "{path}: OpenAI shape has no top-level type: {v}");
        assert!(v["error"]["type"].is_string() && v["error"].get("param").is_some(), "{path}: {v}");
        &v["error"]["message"]
    };
    assert!(message.as_str().is_some_and(|m| !m.is_empty()), "{path}: {v}");
}

const DIALECT_PATHS: [&str; 3] = ["/v1/messages", "/v1/chat/completions", "/v1/responses"];

#[tokio::test]
async fn client_errors_come_back_in_the_callers_dialect() {
    let mock = mock::start(|_| Reply::ok_json("{}")).await;
    let proxy = proxy_for(&mock, "max_body_bytes = 1000").await;
    let client = reqwest::Client::new();

    let r = client.post(proxy.url("/v1/messages")).body("{\"model\": \"m\",\n \"messages\": [}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("not valid JSON") && msg.contains("line 2 column"), "{msg}");

    for path in ["/v1/chat/completions", "/v1/responses"] {
        let r = client.post(proxy.url(path)).body("{\"model\": \"m\", \"input\": nope}").send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_dialect_shape(path, &v);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("not valid JSON") && msg.contains("line 1 column"), "{path}: {msg}");
    }
    // The path decides the dialect; `anthropic-version` (which some OpenAI-compatible clients
    // send everywhere) does not turn a Chat error into an Anthropic one.
    let r = client
        .post(proxy.url("/v1/chat/completions"))
        .header("anthropic-version", "2023-06-01")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_dialect_shape("/v1/chat/completions", &r.json().await.unwrap());

    let big = format!("{{\"model\":\"m\",\"pad\":\"{}\"}}", "x".repeat(2000));
    let r = client.post(proxy.url("/v1/messages")).body(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "request_too_large");
    assert!(v["error"]["message"].as_str().unwrap().contains("1000"), "{v}");
    // Chunked (no content-length) bodies are limited too.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(big.into_bytes())]);
    let r = client.post(proxy.url("/v1/responses")).body(reqwest::Body::wrap_stream(stream)).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_dialect_shape("/v1/responses", &v);
    assert_eq!(
        v["error"]["message"], "request body is over the limit of 1000 bytes (server.max_body_bytes)",
        "one space between the words"
    );

    let r = client.get(proxy.url("/v1/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("/v1/nope"), "{v}");
    let r = client.post(proxy.url("/v1/messages/nope")).header("anthropic-version", "2023-06-01").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    // Off the dialect paths, the header is what tells an Anthropic client.
    let r = client.get(proxy.url("/v1/nope")).header("anthropic-version", "2023-06-01").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["type"], "error");
    assert!(mock.requests().is_empty(), "bad requests must not reach the provider");
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_in_every_dialect() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let cfg = temp_file("dead.toml", &config_for(&format!("http://{closed}"), "", CLIENT_AUTH));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[]);
    for path in DIALECT_PATHS {
        let r = reqwest::Client::new().post(proxy.url(path)).body("{}").send().await.unwrap();
        assert_eq!(r.status(), 502, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_dialect_shape(path, &v);
        assert!(v["error"]["message"].as_str().unwrap().contains("unreachable"), "{v}");
    }
}

#[tokio::test]
async fn an_upstream_without_headers_is_504_in_every_dialect() {
    let mock = mock::start(|_| Reply::Hang).await;
    let text = config_for(&mock.base(), "", CLIENT_AUTH).replace("first_byte_ms = 1500", "first_byte_ms = 400");
    let proxy = spawn_proxy(&["--config", temp_file("hang.toml", &text).to_str().unwrap()], &[]);
    for path in DIALECT_PATHS {
        let started = std::time::Instant::now();
        let r = reqwest::Client::new().post(proxy.url(path)).body("{}").send().await.unwrap();
        assert_eq!(r.status(), 504, "{path}");
        assert!(started.elapsed() < Duration::from_secs(5), "{path}: {:?}", started.elapsed());
        let v: serde_json::Value = r.json().await.unwrap();
        assert_dialect_shape(path, &v);
        assert!(v["error"]["message"].as_str().unwrap().contains("first_byte_ms"), "{v}");
    }
}

/// A socket that listens but never accepts, with its accept queue filled: the kernel drops
/// further SYNs, so connecting hangs until `timeouts.connect_ms`.
#[tokio::test]
async fn a_connect_that_hangs_is_504_naming_connect_ms() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(conn)) => queued.push(conn),
            _ => break,
        }
    }
    assert!(queued.len() < 16, "the accept queue never filled up");
    let text = config_for(&format!("http://{addr}"), "", CLIENT_AUTH).replace("connect_ms = 2000", "connect_ms = 300");
    let proxy = spawn_proxy(&["--config", temp_file("connect.toml", &text).to_str().unwrap()], &[]);
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let started = std::time::Instant::now();
        let r = reqwest::Client::new().post(proxy.url(path)).body("{}").send().await.unwrap();
        let took = started.elapsed();
        assert_eq!(r.status(), 504, "{path}");
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{path}: {took:?}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_dialect_shape(path, &v);
        assert!(v["error"]["message"].as_str().unwrap().contains("connect_ms"), "{v}");
    }
    drop((listener, queued));
}

#[tokio::test]
async fn provider_error_bodies_pass_through_and_count_once() {
    let body = br#"{"error":{"message":"slow down","type":"rate_limit"}, "x": 1.0}"#;
    let mock =
        mock::start(|_| Reply::Json { status: 429, body: body.to_vec(), headers: vec![("retry-after", "7".into())] })
            .await;
    let proxy = proxy_for(&mock, "").await;
    let r = reqwest::Client::new().post(proxy.url("/v1/chat/completions")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(r.text().await.unwrap().as_bytes(), body);
    let m = proxy.metrics().await;
    assert!(m.contains("tokenfold_requests_total{dialect=\"openai-chat\",status=\"4xx\"} 1\n"), "{m}");
    assert!(m.contains("tokenfold_errors_total{kind=\"upstream_error\"} 1\n"), "{m}");
    assert!(m.contains("tokenfold_in_flight 0\n"), "{m}");
}

#[tokio::test]
async fn binding_off_loopback_without_api_keys_refuses_to_start() {
    let mock = mock::start(|_| Reply::ok_json("{}")).await;
    let err = try_spawn_proxy(&["--upstream", &mock.base(), "--listen", "0.0.0.0:0"], &[])
        .err()
        .expect("must refuse to start");
    assert_eq!(err.0, Some(2));
    assert!(err.1.contains("api_keys"), "{}", err.1);
}

#[tokio::test]
async fn api_keys_are_required_when_set_and_never_forwarded() {
    let mock = mock::start(|_| Reply::ok_json("{}")).await;
    let cfg = temp_file("keys.toml", &config_for(&mock.base(), "api_keys = [\"${TF_TEST_PROXY_KEY}\"]", CLIENT_AUTH));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TF_TEST_PROXY_KEY", "team-key-1")]);
    let c = reqwest::Client::new();
    let r = c.post(proxy.url("/v1/messages")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    let r = c.get(proxy.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401, "metrics need the key too");
    assert_eq!(c.get(proxy.url("/healthz")).send().await.unwrap().status(), 200);

    let r = c
        .post(proxy.url("/v1/messages"))
        .header("x-tokenfold-key", "team-key-1")
        .header("x-api-key", "users-anthropic-key")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = mock.last();
    assert_eq!(got.header("x-api-key"), Some("users-anthropic-key"));
    assert!(got.header("x-tokenfold-key").is_none());

    let r = c.post(proxy.url("/v1/chat/completions")).bearer_auth("team-key-1").body("{}").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(mock.last().header("authorization").is_none(), "the proxy key must not go upstream");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn provider_keys_replace_client_credentials_and_never_reach_logs() {
    let secret = "sk-test-SECRET-4711-do-not-log";
    let mock = mock::start(|rec| {
        if rec.path.ends_with("/responses") {
            Reply::Json { status: 401, body: br#"{"error":{"message":"bad key"}}"#.to_vec(), headers: vec![] }
        } else {
            Reply::ok_json("{}")
        }
    })
    .await;
    let cfg = temp_file("prov.toml", &config_for(&mock.base(), "", "api_key = \"${TF_TEST_PROVIDER_KEY}\""));
    let env = [("TF_TEST_PROVIDER_KEY", secret)];
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap(), "--debug"], &env);
    let c = reqwest::Client::new();
    c.post(proxy.url("/v1/messages")).header("x-api-key", "client-key").body("{}").send().await.unwrap();
    assert_eq!(mock.last().header("x-api-key"), Some(secret));
    c.post(proxy.url("/v1/chat/completions")).bearer_auth("client-key").body("{}").send().await.unwrap();
    let got = mock.last();
    assert_eq!(got.header("authorization"), Some(format!("Bearer {secret}").as_str()));
    assert!(got.header("x-api-key").is_none());
    let r = c.post(proxy.url("/v1/responses")).body("{\"model\":\"x\"}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    c.post(proxy.url("/v1/messages")).body("{bad").send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = proxy.logs();
    assert!(logs.contains("/v1/messages"), "debug logs should show requests: {logs}");
    assert!(!logs.contains("SECRET-4711"), "secret leaked into logs:\n{logs}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["config", "check", "--config", cfg.to_str().unwrap()])
        .env("TF_TEST_PROVIDER_KEY", secret)
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(shown.contains("****") && !shown.contains("SECRET-4711"), "{shown}");
}

#[tokio::test]
async fn models_health_and_metrics() {
    let mock = mock::start(|_| Reply::ok_json(mock::chat_completion("hi"))).await;
    let proxy = proxy_for(&mock, "").await;
    let c = reqwest::Client::new();
    let v: serde_json::Value = c.get(proxy.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["claude-test", "gpt-test"]);
    let v: serde_json::Value = c
        .get(proxy.url("/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], "claude-test");

    c.post(proxy.url("/v1/chat/completions")).body("{}").send().await.unwrap().bytes().await.unwrap();
    c.post(proxy.url("/v1/chat/completions")).body("{").send().await.unwrap();
    let m = proxy.metrics().await;
    assert!(m.contains("tokenfold_requests_total{dialect=\"openai-chat\",status=\"2xx\"} 1"), "{m}");
    assert!(m.contains("tokenfold_requests_total{dialect=\"openai-chat\",status=\"4xx\"} 1"), "{m}");
    assert!(m.contains("tokenfold_errors_total{kind=\"malformed_json\"} 1"), "{m}");
    assert!(m.contains("tokenfold_upstream_latency_seconds_count 1"), "{m}");
    assert!(m.contains("tokenfold_bytes_received_total 3"), "{m}");
    // The mock's chat_completion reported 12 prompt and 5 completion tokens.
    assert!(m.contains("tokenfold_provider_input_tokens_total 12"), "{m}");
    assert!(m.contains("tokenfold_provider_output_tokens_total 5"), "{m}");
}

#[tokio::test]
async fn upstream_flag_needs_no_config_file() {
    let mock = mock::start(|_| Reply::ok_json(mock::chat_completion("hi"))).await;
    let proxy = spawn_proxy(&["--upstream", &mock.base()], &[("TOKENFOLD_CONFIG", "/nonexistent/x.toml")]);
    let r = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth("users-key")
        .body(r#"{"model":"any"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = mock.last();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.header("authorization"), Some("Bearer users-key"));
}

#[test]
fn the_shipped_config_starts_with_no_keys_and_says_what_to_set() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tokenfold.toml");
    let proxy = spawn_proxy(&["--config", shipped], &[]);
    let logs = proxy.logs();
    assert!(logs.contains("ANTHROPIC_API_KEY") && logs.contains("OPENAI_API_KEY"), "{logs}");
    let body = reqwest::blocking_get_healthz(&proxy.url("/healthz"));
    assert!(body.contains("ok"));
}

#[test]
fn config_check_names_file_line_and_key() {
    let bad = temp_file("bad.toml", "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 2\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["config", "check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:3:") && err.contains("lisen"), "{err}");

    let bad = temp_file(
        "env.toml",
        "[[providers]]\nname = \"g\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\napi_key = \"sk-inline\"\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["config", "check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("env.toml:5:") && err.contains("api_key"), "{err}");

    let check = |name: &str, text: &str| {
        let path = temp_file(name, text);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
            .args(["config", "check", "--config", path.to_str().unwrap()])
            .env_remove("TF_TEST_UNSET_KEY")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check("type.toml", "[server]\nmax_body_bytes = \"x\"\n");
    assert!(err.contains("type.toml:2:18: `server.max_body_bytes`: invalid type: string \"x\""), "{err}");
    let err = check("unset.toml", "[server]\nlisten = \"127.0.0.1:1\"\napi_keys = [\"${TF_TEST_UNSET_KEY}\"]\n");
    assert!(
        err.contains("unset.toml:3:13: `server.api_keys`") && err.contains("TF_TEST_UNSET_KEY is not set"),
        "{err}"
    );
}

/// Logs going to a pipe (a file, journald, a supervisor) carry no terminal colour codes.
#[tokio::test]
async fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    let mock = mock::start(|_| Reply::ok_json("{}")).await;
    // An empty NO_COLOR means "not set"; only the terminal check can keep colour out.
    let proxy = spawn_proxy(&["--upstream", &mock.base(), "--debug"], &[("NO_COLOR", "")]);
    reqwest::Client::new().post(proxy.url("/v1/messages")).body("{bad").send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = proxy.logs();
    assert!(logs.contains("not valid JSON"), "{logs}");
    assert!(!logs.contains('\x1b'), "ANSI escape codes in piped logs:\n{logs:?}");
}

/// Tiny blocking GET without pulling reqwest's blocking feature.
mod reqwest {
    pub use ::reqwest::*;
    pub fn blocking_get_healthz(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}

/// Connections are spread over the worker threads; many at once, each with several requests on
/// its keep-alive connection, all get their own answer.
#[tokio::test]
async fn concurrent_connections_are_all_served() {
    let mock = mock::start(|rec| Reply::ok_json(rec.body.clone())).await;
    let proxy = proxy_for(&mock, "").await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let url = proxy.url("/v1/chat/completions");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for j in 0..5 {
                    let body = format!("{{\"model\":\"gpt-test\",\"n\":\"{i}-{j}\"}}");
                    let r = client.post(&url).body(body.clone()).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    assert_eq!(r.text().await.unwrap(), body, "each answer goes to its own request");
                }
            })
        })
        .collect();
    let all = futures_util::future::join_all(tasks);
    for t in tokio::time::timeout(Duration::from_secs(20), all).await.expect("bounded in time") {
        t.unwrap();
    }
    assert_eq!(mock.requests().len(), 200);
    let m = proxy.metrics().await;
    assert!(m.contains("tokenfold_requests_total{dialect=\"openai-chat\",status=\"2xx\"} 200\n"), "{m}");
    assert!(m.contains("tokenfold_in_flight 0\n"), "{m}");
}
