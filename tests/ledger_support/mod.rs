//! Helpers of tests/ledger.rs: the proxy config, the mock provider's usage reports, request
//! builders and the ledger's records as the tests read them.
#![allow(dead_code)]

use std::time::Duration;

use super::common::mock::{self, Chunk, Reply};

/// Paid Anthropic-kind prices of the test models: $3 in, $15 out, $0.30 cache read, and the
/// default cache write of 1.25x input = $3.75 (USD per million tokens).
pub const IN: f64 = 3.0;
pub const OUT: f64 = 15.0;
pub const READ: f64 = 0.3;
pub const WRITE: f64 = 3.75;
/// The free provider's list prices (OpenAI kind: cache writes cost input).
pub const FREE_IN: f64 = 2.0;
pub const FREE_OUT: f64 = 8.0;
pub const FREE_READ: f64 = 0.5;

pub fn config(base: &str) -> String {
    let anthropic_price = format!("price = {{ input = {IN}, output = {OUT}, cached_input = {READ} }}");
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
name = "mock-anthropic"
kind = "anthropic"
base_url = "{base}/v1"
auth = "client"
models = [{{ name = "claude-test", {anthropic_price} }}]
[[providers]]
name = "mock-openai"
kind = "openai"
base_url = "{base}/v1"
auth = "client"
models = [{{ name = "gpt-test", price = {{ input = 2.0, output = 8.0 }} }}]
[[providers]]
name = "flaky"
kind = "anthropic"
base_url = "{base}/flaky/v1"
auth = "client"
models = [{{ name = "flaky-model", {anthropic_price} }}]
[[providers]]
name = "steady"
kind = "anthropic"
base_url = "{base}/steady/v1"
auth = "client"
models = [{{ name = "steady-model", {anthropic_price} }}]
[[providers]]
name = "broken"
kind = "anthropic"
base_url = "{base}/broken/v1"
auth = "client"
models = [{{ name = "broken-model", {anthropic_price} }}]
[[providers]]
name = "freebie"
kind = "openai"
base_url = "{base}/free/v1"
free_tier = true
accounts = [{{ label = "free-acct", api_key = "${{TF_FREE_KEY}}" }}]
models = [{{ name = "free-model", price = {{ input = {FREE_IN}, output = {FREE_OUT}, cached_input = {FREE_READ} }} }}]
[routes.coder]
targets = ["flaky/flaky-model", "steady/steady-model"]
[routes.doomed]
targets = ["broken/broken-model"]
[routes.free-route]
targets = ["freebie/free-model"]
[default_upstream]
anthropic = "mock-anthropic"
openai-chat = "mock-openai"
"#
    )
}

/// The mock's token estimate of a body it was sent, and the usage it reports for it:
/// (input, output, cache_read, cache_write), summing to the estimate on the input side.
pub fn reported_usage(body: &[u8], anthropic: bool) -> (u64, u64, u64, u64) {
    let est = body.len() as u64 / 4;
    if anthropic {
        let (read, write) = (est * 6 / 10, est * 3 / 10);
        (est - read - write, 7, read, write)
    } else {
        let cached = est / 2;
        (est - cached, 7, cached, 0)
    }
}

pub fn anthropic_json(u: (u64, u64, u64, u64)) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": u.0, "output_tokens": u.1, "cache_read_input_tokens": u.2,
                  "cache_creation_input_tokens": u.3}
    }))
    .unwrap()
}

pub fn anthropic_sse(u: (u64, u64, u64, u64), hang: bool) -> Vec<Chunk> {
    let start = serde_json::json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message",
        "role": "assistant", "model": "claude-test", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": u.0, "output_tokens": 1, "cache_read_input_tokens": u.2,
                  "cache_creation_input_tokens": u.3}}});
    let mut chunks = vec![Chunk::Bytes(format!("event: message_start\ndata: {start}\n\n").into_bytes())];
    if hang {
        chunks.push(Chunk::Sleep(Duration::from_secs(10)));
    }
    let rest = mock::anthropic_stream("ok");
    chunks.extend(rest[1..4].iter().cloned().map(Chunk::Bytes));
    let delta = format!(
        "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}\n\n",
        u.1
    );
    chunks.push(Chunk::Bytes(delta.into_bytes()));
    chunks.push(Chunk::Bytes(rest[5].clone()));
    chunks
}

pub fn chat_json(u: (u64, u64, u64, u64)) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": u.0 + u.2, "completion_tokens": u.1, "total_tokens": u.0 + u.2 + u.1,
                  "prompt_tokens_details": {"cached_tokens": u.2}}
    }))
    .unwrap()
}

/// A JSON body sent after `wait` (so the time is the upstream's, not the proxy's).
pub fn slow_json(status: u16, body: Vec<u8>, wait: Duration) -> Reply {
    Reply::Stream { status, content_type: "application/json", chunks: vec![Chunk::Sleep(wait), Chunk::Bytes(body)] }
}

/// An Anthropic conversation that reads the same file twice (so folding replaces the second read),
/// tagged with `case` in its first user message.
pub fn reread(case: &str, model: &str, stream: bool, lines: usize) -> String {
    let file: String =
        (1..=lines).map(|i| format!("{i:>6}→    let value_{i} = compute_something({i}, \"argument\");\n")).collect();
    let tool_use = |id: &str| serde_json::json!({"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": "/repo/src/lib.rs"}});
    let result = |id: &str| serde_json::json!({"type": "tool_result", "tool_use_id": id, "content": file});
    serde_json::json!({
        "model": model, "max_tokens": 100, "stream": stream,
        "messages": [
            {"role": "user", "content": format!("read lib.rs ({case})")},
            {"role": "assistant", "content": [tool_use("toolu_01")]},
            {"role": "user", "content": [result("toolu_01")]},
            {"role": "assistant", "content": [tool_use("toolu_02")]},
            {"role": "user", "content": [result("toolu_02")]}
        ]
    })
    .to_string()
}

pub fn case_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split("case-")
        .nth(1)
        .map(|r| r.chars().take_while(|c| c.is_ascii_alphanumeric()).collect())
        .unwrap_or_default()
}

#[derive(Debug)]
pub struct Rec {
    pub id: i64,
    pub route: String,
    pub provider: String,
    pub account: String,
    pub model: String,
    pub status: i64,
    pub outcome: String,
    pub fallbacks: i64,
    pub reasons: String,
    pub error: String,
    pub latency_ms: i64,
    pub ttfb_us: i64,
    pub upstream_us: i64,
    pub overhead_us: i64,
    pub before: i64,
    pub after: i64,
    pub usage: (i64, i64, i64, i64),
    pub cost: f64,
    pub baseline: f64,
    pub list_cost: f64,
    pub free: bool,
    pub session: String,
}

pub fn records(db: &std::path::Path) -> Vec<Rec> {
    let Ok(conn) = rusqlite::Connection::open(db) else { return vec![] };
    let Ok(mut stmt) = conn.prepare(
        "SELECT id, route, provider, account, model, status, outcome, fallbacks, fallback_reasons, latency_ms,
                ttfb_us, upstream_us, overhead_us, tokens_before, tokens_after, usage_input, usage_output,
                cache_read, cache_write, cost_usd, baseline_cost_usd, list_cost_usd, free_tier, session, error
         FROM requests ORDER BY id",
    ) else {
        return vec![];
    };
    stmt.query_map([], |r| {
        Ok(Rec {
            id: r.get(0)?,
            route: r.get(1)?,
            provider: r.get(2)?,
            account: r.get(3)?,
            model: r.get(4)?,
            status: r.get(5)?,
            outcome: r.get(6)?,
            fallbacks: r.get(7)?,
            reasons: r.get(8)?,
            latency_ms: r.get(9)?,
            ttfb_us: r.get(10)?,
            upstream_us: r.get(11)?,
            overhead_us: r.get(12)?,
            before: r.get(13)?,
            after: r.get(14)?,
            usage: (r.get(15)?, r.get(16)?, r.get(17)?, r.get(18)?),
            cost: r.get(19)?,
            baseline: r.get(20)?,
            list_cost: r.get(21)?,
            free: r.get(22)?,
            session: r.get(23)?,
            error: r.get(24)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

pub async fn wait_for(db: &std::path::Path, n: usize) -> Vec<Rec> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = records(db);
        if r.len() >= n {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "ledger has {} of {n} records", r.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn report(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["report", "--ledger", db.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

pub fn report_json(db: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = report(db, &[args, &["--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn savings_of(db: &std::path::Path, id: i64) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT COALESCE(SUM(tokens), 0) FROM savings WHERE request_id = ?1", [id], |r| r.get(0)).unwrap()
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// `body` with an assistant answer and a new user message appended: the next turn.
pub fn next_turn(body: &str, answer: &str, user: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
    let msgs = v["messages"].as_array_mut().unwrap();
    msgs.push(serde_json::json!({"role": "assistant", "content": answer}));
    msgs.push(serde_json::json!({"role": "user", "content": user}));
    v.to_string()
}

pub fn with_session(body: &str, session: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["metadata"] = serde_json::json!({"user_id": format!("user_5e3a_account__session_{session}")});
    v.to_string()
}
