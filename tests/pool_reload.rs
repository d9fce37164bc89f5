//! The pool around the real binary: hot reload (SIGHUP and file changes) with a stream in
//! flight, repeated `--upstream`, and `tokenfold pool` reading the running proxy or, without
//! one, the saved store.

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mock::{chat_completion, chat_stream};
use common::{spawn_proxy, temp_file, Proxy};
use faults::Fault;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Notify;

const KEY_ENV: (&str, &str) = ("TF_TEST_KEY", "sk-test");

fn provider(name: &str, base: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{base}/v1\"\napi_key = \"${{TF_TEST_KEY}}\"\nlimits = {{ concurrent = 4 }}\n"
    )
}

fn config(base: &str, routes: &[&str]) -> String {
    let mut s = format!("[server]\nlisten = \"127.0.0.1:0\"\n[pool]\nstore = \"memory\"\n{}", provider("a", base));
    for r in routes {
        s.push_str(&format!("[routes.{r}]\ntargets = [\"a/m\"]\n"));
    }
    s
}

fn request(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]})
}

async fn post(proxy: &Proxy, model: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .json(&request(model, false))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Waits until the proxy's log has `needle` `times` times (reloads are logged once each).
async fn wait_for_log(proxy: &Proxy, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.logs().matches(needle).count() < times {
        assert!(Instant::now() < deadline, "no `{needle}` in the log within 10 s:\n{}", proxy.logs());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn in_flight_of(proxy: &Proxy, provider: &str) -> u64 {
    let status: Value = reqwest::get(proxy.url("/pool")).await.unwrap().json().await.unwrap();
    let p = status["providers"].as_array().unwrap().iter().find(|p| p["name"] == provider).unwrap().clone();
    p["accounts"][0]["in_flight"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_while_a_stream_is_in_flight() {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let mock = faults::start(move |req, _| {
        if req.json()["stream"] == json!(true) {
            let mut chunks = chat_stream("slow answer");
            let first = chunks.remove(0);
            Fault::Held { first, gate: g.clone(), rest: chunks }
        } else {
            Fault::json(200, chat_completion("quick answer"))
        }
    })
    .await;
    let path = temp_file("reload-sighup.toml", &config(&mock.base(), &["first"]));
    let proxy = spawn_proxy(&["--config", path.to_str().unwrap()], &[KEY_ENV]);

    // A stream is in flight: its first event has arrived, the rest is held back by the mock.
    let resp = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .json(&request("first", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chat.completion.chunk"));
    assert_eq!(in_flight_of(&proxy, "a").await, 1);

    assert_eq!(post(&proxy, "second").await.0, 404, "no such route yet");
    std::fs::write(&path, config(&mock.base(), &["first", "second"])).unwrap();
    let hup = Command::new("kill").args(["-HUP", &proxy.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    wait_for_log(&proxy, "config reloaded", 1).await;
    assert!(proxy.logs().contains("routes added: second"), "{}", proxy.logs());

    let (status, text) = post(&proxy, "second").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("quick answer"), "{text}");
    // The stream's reservation moved to the new pool with it. The quick answer's own is released
    // just after its last byte went out, so the client can look a moment before that.
    let deadline = Instant::now() + Duration::from_secs(5);
    while in_flight_of(&proxy, "a").await != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(in_flight_of(&proxy, "a").await, 1);

    gate.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.expect("the stream in flight was cut by the reload"));
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("slow answer") && rest.contains("[DONE]") && !rest.contains("error"), "{rest}");
    assert_eq!(in_flight_of(&proxy, "a").await, 0, "the stream settled in the new pool");

    // SIGHUP again: still alive, still serving.
    Command::new("kill").args(["-HUP", &proxy.pid().to_string()]).status().unwrap();
    wait_for_log(&proxy, "config reloaded", 2).await;
    assert_eq!(reqwest::get(proxy.url("/healthz")).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_file_is_picked_up_and_a_broken_one_is_refused() {
    let mock = faults::start(|_, _| Fault::json(200, chat_completion("hello"))).await;
    let path = temp_file("reload-watch.toml", &config(&mock.base(), &["one"]));
    let proxy = spawn_proxy(&["--config", path.to_str().unwrap()], &[KEY_ENV]);
    assert_eq!(post(&proxy, "one").await.0, 200);
    assert_eq!(post(&proxy, "two").await.0, 404);

    std::fs::write(&path, config(&mock.base(), &["one", "two"])).unwrap();
    wait_for_log(&proxy, "config reloaded (file changed)", 1).await;
    let (status, text) = post(&proxy, "two").await;
    assert_eq!(status, 200, "{text}");

    // A broken file is refused; the running config keeps serving.
    std::fs::write(&path, "[[providers]]\nname = \"a\"\nkind = \"nonsense\"\n").unwrap();
    wait_for_log(&proxy, "config reload (file changed) refused, the running config stays", 1).await;
    assert!(proxy.logs().contains("nonsense"), "the log says what is wrong:\n{}", proxy.logs());
    assert_eq!(post(&proxy, "two").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_upstream_flags_fall_back_to_the_next_url() {
    let dead = faults::refused_addr().await;
    let down = faults::start(|_, _| Fault::json(503, br#"{"error":{"message":"down"}}"#.to_vec())).await;
    let up = faults::start(|_, _| Fault::json(200, chat_completion("from the third"))).await;
    let proxy = spawn_proxy(
        &["--upstream", &format!("http://{dead}"), "--upstream", &down.base(), "--upstream", &up.base()],
        &[("TOKENFOLD_LEDGER", "off")],
    );
    let resp = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth("sk-client")
        .json(&request("gpt-test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("from the third"));
    assert_eq!((down.count(), up.count()), (1, 1));
    assert!(proxy.logs().contains("--upstream http://"), "{}", proxy.logs());
}

fn tokenfold_pool(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .arg("pool")
        .args(args)
        .envs(env.iter().copied())
        .env_remove("TOKENFOLD_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenfold_pool_shows_the_running_proxy_then_the_saved_state() {
    let limited = faults::start(|_, _| {
        Fault::json(429, br#"{"error":{"message":"slow down"}}"#.to_vec()).with_header("retry-after", "600")
    })
    .await;
    let healthy = faults::start(|_, _| Fault::json(200, chat_completion("ok"))).await;
    let store = temp_file("pool-show.db", "");
    std::fs::remove_file(&store).unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"${{TF_PROXY_KEY}}\"]\n[pool]\nstore = \"{}\"\n{}{}\
         [routes.r]\ntargets = [\"limited/m\", \"healthy/m\"]\n",
        store.display(),
        provider("limited", &limited.base()),
        provider("healthy", &healthy.base()),
    );
    let path = temp_file("pool-show.toml", &text);
    let cfg = path.to_str().unwrap();
    let env = [KEY_ENV, ("TF_PROXY_KEY", "proxy-key")];
    let proxy = spawn_proxy(&["--config", cfg], &env);
    let resp = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .header("x-tokenfold-key", "proxy-key")
        .json(&request("r", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The status endpoint checks the proxy key like every other route.
    assert_eq!(reqwest::get(proxy.url("/pool")).await.unwrap().status(), 401);

    let (ok, table, err) = tokenfold_pool(&["--config", cfg, "--url", &proxy.base], &env);
    assert!(ok, "{err}");
    assert!(table.starts_with(&format!("Pool: live from the proxy at {}", proxy.base)), "{table}");
    for needle in ["limited (openai-chat", "rate-limited", "slow down", "healthy", "r (fallback): limited/m, healthy/m"]
    {
        assert!(table.contains(needle), "no `{needle}` in:\n{table}");
    }
    let (ok, json, err) = tokenfold_pool(&["--config", cfg, "--url", &proxy.base, "--json"], &env);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&json).unwrap();
    let limited_account = &v["providers"][0]["accounts"][0];
    assert_eq!(limited_account["cooldown"]["kind"], "rate-limited", "{json}");
    assert!(limited_account["cooldown"]["remaining_s"].as_u64().unwrap() > 500, "{json}");

    // Let the store write (it gathers for 250 ms), then stop the proxy.
    tokio::time::sleep(Duration::from_millis(600)).await;
    drop(proxy);
    let (ok, table, err) = tokenfold_pool(&["--config", cfg], &env);
    assert!(ok, "{err}");
    assert!(table.starts_with(&format!("Pool: saved state from {}", store.display())), "{table}");
    assert!(table.contains("port 0"), "says why it did not ask a proxy: {table}");
    assert!(table.contains("rate-limited"), "the cooldown survives in the store:\n{table}");
}
