//! Folding inside `serve`: a re-read file is folded before it reaches the provider, the client is
//! told how much was saved, and `x-tokenfold: off` forwards the original bytes.

mod common;

use common::mock::{self, Reply};
use common::{config_for, spawn_proxy, temp_file};

/// A Claude Code-shaped request that reads the same file twice.
fn reread_request() -> String {
    let file: String =
        (1..=60).map(|i| format!("{i:>6}→    let value_{i} = compute_something({i}, \"argument\");\n")).collect();
    let tool_use = |id: &str| serde_json::json!({"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": "/repo/src/lib.rs"}});
    let result = |id: &str| serde_json::json!({"type": "tool_result", "tool_use_id": id, "content": file});
    serde_json::json!({
        "model": "claude-test", "max_tokens": 100, "stream": false,
        "messages": [
            {"role": "user", "content": "read lib.rs"},
            {"role": "assistant", "content": [tool_use("toolu_01")]},
            {"role": "user", "content": [result("toolu_01")]},
            {"role": "assistant", "content": [tool_use("toolu_02")]},
            {"role": "user", "content": [result("toolu_02")]}
        ]
    })
    .to_string()
}

#[tokio::test]
async fn a_reread_file_is_folded_and_the_saving_reported() {
    let mock = mock::start(|_| Reply::ok_json(mock::anthropic_message("ok"))).await;
    let cfg = temp_file("fold.toml", &config_for(&mock.base(), "", "auth = \"client\""));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[]);
    let body = reread_request();
    let c = reqwest::Client::new();

    let r = c.post(proxy.url("/v1/messages")).body(body.clone()).send().await.unwrap();
    let saved: u64 = r.headers()["x-tokenfold-saved-tokens"].to_str().unwrap().parse().unwrap();
    assert!(saved > 100, "saved {saved}");
    r.bytes().await.unwrap();
    let sent = mock.last();
    assert!(sent.body.len() < body.len() / 2 + 2000, "{} -> {}", body.len(), sent.body.len());
    let text = String::from_utf8_lossy(&sent.body);
    assert!(text.contains("[tokenfold:"), "a marker points at the earlier read");
    assert!(text.contains("toolu_01"), "the marker names the earlier tool call");
    // The earlier copy is forwarded verbatim, so the model can still copy lines from it.
    let first: serde_json::Value = sent.json();
    let original: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(first["messages"][2], original["messages"][2]);

    let r = c.post(proxy.url("/v1/messages")).header("x-tokenfold", "off").body(body.clone()).send().await.unwrap();
    assert_eq!(r.headers()["x-tokenfold-saved-tokens"], "0");
    r.bytes().await.unwrap();
    assert_eq!(mock.last().body, body.as_bytes(), "x-tokenfold: off forwards the original bytes");
    assert!(mock.last().header("x-tokenfold").is_none());
}
