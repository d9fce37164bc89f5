//! Model names invented by clients must not grow the pool without bound: tens of thousands of
//! them, sent through the real `serve` binary to a passthrough provider on loopback, leave the
//! proxy's memory, its `tokenfold.db` and its `/pool` answer bounded, also after a restart.

mod common;

use std::time::Duration;

use common::mock::{self, chat_completion, Reply};
use common::{spawn_proxy, temp_file, Proxy};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// The default `[pool] max_tracked`.
const CAP: usize = 4096;
/// Well past the cap (allocator and SQLite caches warm), then 15,000 more.
const WARM: usize = 10_000;
const TOTAL: usize = 25_000;

fn config(mock: &str, store: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[pool]\nstore = \"{store}\"\n\
         [[providers]]\nname = \"passthrough\"\nkind = \"openai\"\nbase_url = \"{mock}/v1\"\napi_key = \"${{TF_TEST_KEY}}\"\n\
         models = [\"gpt-test\"]\n[default_upstream]\nopenai-chat = \"passthrough\"\n"
    )
}

fn start(cfg: &std::path::Path) -> Proxy {
    spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TF_TEST_KEY", "sk-test"), ("TOKENFOLD_LEDGER", "off")])
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends one request per invented model name `from..to`, 16 at a time; each must be answered.
async fn invent(proxy: &Proxy, from: usize, to: usize) {
    let client = reqwest::Client::new();
    let url = proxy.url("/v1/chat/completions");
    let mut sends = futures_util::stream::iter(from..to)
        .map(|i| {
            let body =
                json!({"model": format!("made-up-model-{i:06}"), "messages": [{"role": "user", "content": "hi"}]});
            client.post(&url).json(&body).send()
        })
        .buffer_unordered(16);
    while let Some(resp) = sends.next().await {
        assert_eq!(resp.unwrap().status(), 200);
    }
}

/// The `/pool` answer's size in bytes and how many model rows it has.
async fn pool_size(proxy: &Proxy) -> (usize, usize) {
    let text = reqwest::get(proxy.url("/pool")).await.unwrap().text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let rows = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["accounts"].as_array().unwrap())
        .map(|a| a["models"].as_array().unwrap().len())
        .sum();
    (text.len(), rows)
}

fn file_size(path: &str) -> u64 {
    let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    size(path) + size(&format!("{path}-wal"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_model_names_leave_memory_store_and_pool_bounded_also_after_a_restart() {
    let mock = mock::start(|_| Reply::ok_json(chat_completion("fine"))).await;
    let store = temp_file("pool-bounds.db", "");
    std::fs::remove_file(&store).unwrap();
    let store = store.display().to_string();
    let cfg = temp_file("pool-bounds.toml", &config(&mock.base(), &store));

    // Every bound is checked, and all that are broken are reported together.
    let mut broken = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            broken.push(what);
        }
    };
    let proxy = start(&cfg);
    let fresh = rss_kib(proxy.pid());
    invent(&proxy, 0, WARM).await;
    let warm = rss_kib(proxy.pid());
    invent(&proxy, WARM, TOTAL).await;
    let after = rss_kib(proxy.pid());
    eprintln!("RSS: fresh {fresh} KiB, after {WARM} names {warm} KiB, after {TOTAL} names {after} KiB");
    // Each remembered name costs ~2 KB: 15,000 more would be ~30 MB.
    check(after < warm + 10 * 1024, format!("memory grew by {} KiB over {} more names", after - warm, TOTAL - WARM));

    let (bytes, rows) = pool_size(&proxy).await;
    eprintln!("/pool: {bytes} bytes, {rows} model rows");
    check(rows <= CAP + 1, format!("{rows} model rows on /pool"));
    check(bytes < 4 << 20, format!("/pool is {bytes} bytes"));

    // The store gathers writes for 250 ms.
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(proxy);
    let db = file_size(&store);
    eprintln!("tokenfold.db with its WAL: {db} bytes");
    check(db < 12 << 20, format!("the store is {db} bytes"));

    let proxy = start(&cfg);
    // Let the restart settle (it may give dropped rows' space back) before reading it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = rss_kib(proxy.pid());
    eprintln!("RSS right after the restart: {restarted} KiB");
    check(restarted < fresh + 8 * 1024, format!("a restart loads {} KiB more than a fresh start", restarted - fresh));
    let (_, rows) = pool_size(&proxy).await;
    check(rows <= CAP + 1, format!("{rows} model rows on /pool after the restart"));
    invent(&proxy, TOTAL, TOTAL + 100).await;
    assert!(broken.is_empty(), "unbounded:\n{}", broken.join("\n"));
}
