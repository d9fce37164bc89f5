//! The ledger through the real proxy: one record per request with the provider's usage, and
//! `tokenfold report` totals equal to the sum of the records.

mod common;

use std::time::Duration;

use common::mock::{self, Chunk, Reply};
use common::{config_for, spawn_proxy, temp_file};
use futures_util::StreamExt;

fn count(db: &std::path::Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open(db) else { return 0 };
    conn.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0)).unwrap_or(0)
}

#[tokio::test]
async fn mixed_requests_are_recorded_and_reported() {
    let mock = mock::start(|rec| {
        let body = String::from_utf8_lossy(&rec.body).to_string();
        if body.contains("rate-limit-me") {
            Reply::Json { status: 429, body: br#"{"error":{"message":"slow"}}"#.to_vec(), headers: vec![] }
        } else if body.contains("\"stream\":true") && rec.path.ends_with("/messages") {
            let ev = mock::anthropic_stream("hi");
            let mut chunks: Vec<Chunk> = vec![Chunk::Bytes(ev[0].clone())];
            if body.contains("hang-up") {
                chunks.push(Chunk::Sleep(Duration::from_secs(5)));
            }
            chunks.extend(ev[1..].iter().cloned().map(Chunk::Bytes));
            Reply::sse(chunks)
        } else if rec.path.ends_with("/messages") {
            Reply::ok_json(mock::anthropic_message("hi"))
        } else {
            Reply::ok_json(mock::chat_completion("hi"))
        }
    })
    .await;
    let cfg = temp_file("ledger.toml", &config_for(&mock.base(), "", "auth = \"client\""));
    let db = temp_file("ledger.db", "");
    std::fs::remove_file(&db).unwrap();
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", db.to_str().unwrap())]);
    let c = reqwest::Client::new();
    let post = |path: &str, body: &str| {
        c.post(proxy.url(path)).header("user-agent", "claude-cli/2.1.0 (external, cli)").body(body.to_string())
    };
    // completed: JSON (12 in / 5 out) and SSE (12 in / 5 out), chat (12 in / 5 out)
    post("/v1/messages", r#"{"model":"claude-test"}"#).send().await.unwrap().bytes().await.unwrap();
    post("/v1/messages", r#"{"model":"claude-test","stream":true}"#).send().await.unwrap().bytes().await.unwrap();
    post("/v1/chat/completions", r#"{"model":"gpt-test"}"#).send().await.unwrap().bytes().await.unwrap();
    // errors: the proxy's own (bad JSON) and the provider's (429)
    post("/v1/messages", "{nope").send().await.unwrap().bytes().await.unwrap();
    post("/v1/chat/completions", r#"{"model":"gpt-test","x":"rate-limit-me"}"#)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // cancelled: read the first event, then go away
    let resp = post("/v1/messages", r#"{"model":"claude-test","stream":true,"x":"hang-up"}"#).send().await.unwrap();
    let mut s = resp.bytes_stream();
    s.next().await.unwrap().unwrap();
    drop(s);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&db) < 6 {
        assert!(std::time::Instant::now() < deadline, "ledger has {} of 6 records", count(&db));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(String, String, i64, String, i64, i64, String)> = conn
        .prepare("SELECT dialect, model, status, outcome, usage_input, usage_output, client FROM requests ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let outcomes: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    let mut sorted = outcomes.clone();
    sorted.sort();
    assert_eq!(sorted, ["cancelled", "completed", "completed", "completed", "error", "error"], "{rows:?}");
    for r in &rows {
        assert_eq!(r.6, "Claude Code");
        if r.3 == "completed" {
            assert_eq!((r.4, r.5), (12, 5), "usage as the mock reported it: {r:?}");
        }
    }
    assert!(rows.iter().any(|r| r.2 == 429 && r.3 == "error"));
    assert!(rows.iter().any(|r| r.2 == 400 && r.3 == "error"));

    // The report's totals equal the sum of the records.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["report", "--since", "1d", "--by", "dialect-typo", "--ledger", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad --by is refused");
    for by in ["day", "provider", "model", "client", "route"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
            .args(["report", "--since", "1d", "--by", by, "--json", "--ledger", db.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let total = &rep["total"];
        assert_eq!(total["requests"], 6, "{by}: {rep}");
        assert_eq!(total["errors"], 3, "{by}: error + error + cancelled: {rep}");
        let sum: u64 = rep["rows"].as_array().unwrap().iter().map(|r| r["requests"].as_u64().unwrap()).sum();
        assert_eq!(sum, 6, "{by}");
        let tokens: i64 = conn.query_row("SELECT SUM(tokens_before) FROM requests", [], |r| r.get(0)).unwrap();
        assert_eq!(total["tokens_before"].as_i64().unwrap(), tokens, "{by}");
    }
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["report", "--since", "1d", "--by", "client", "--ledger", db.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("Claude Code") && text.contains("total"), "{text}");
}
