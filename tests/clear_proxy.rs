//! Clearing stale tool output inside `serve`: long sessions against a mock provider that enforces
//! tool-id pairing. Steps happen only when they pay and leave the prefix byte-identical between
//! them; another process decides the same from the request alone; tool ids pair in every dialect
//! and through translation; originals are stored and read back; `x-tokenfold-clear: off` and a
//! client's own `clear_tool_uses` edit turn it off.

#[path = "clear_support/mod.rs"]
mod clear_support;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use clear_support::{is_stub, outputs, request, Dialect};
use common::mock::{self, Mock};
use common::{spawn_proxy, temp_dir, temp_file, Proxy};
use serde_json::Value;

/// One provider of the `upstream` dialect behind route `work` (requests in another dialect are
/// translated); `free` makes it a free tier, whose economics are quota-bound.
fn config(mock: &Mock, upstream: Dialect, free: bool, store: &Path, fold: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[timeouts]
connect_ms = 2000
first_byte_ms = 5000
idle_ms = 5000
[pool]
store = "memory"
[fold]
originals_dir = "{store}"
{fold}
[[providers]]
name = "up"
kind = "{kind}"
base_url = "{base}/v1"
auth = "client"
free_tier = {free}
models = ["up-model"]
[routes.work]
targets = ["up/up-model"]
"#,
        store = store.display(),
        kind = upstream.kind(),
        base = mock.base(),
    )
}

fn start(cfg: &str, ledger: &Path) -> Proxy {
    let path = temp_file("clear.toml", cfg);
    spawn_proxy(&["--config", path.to_str().unwrap()], &[("TOKENFOLD_LEDGER", ledger.to_str().unwrap())])
}

const MODEL: &str = "work";

/// Sends the session's request after each of `turns` commands; returns what the provider got.
async fn drive(
    proxy: &Proxy,
    mock: &Mock,
    ingress: Dialect,
    turns: impl Iterator<Item = usize>,
    header: Option<(&str, &str)>,
) -> Vec<Value> {
    let c = reqwest::Client::new();
    let mut got = Vec::new();
    for t in turns {
        let mut r = c.post(proxy.url(ingress.path())).body(request(ingress, t, MODEL).to_string());
        if let Some((k, v)) = header {
            r = r.header(k, v);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "turn {t}: {text}\n{}", proxy.logs());
        got.push(mock.last().json());
    }
    got
}

/// The messages (or Responses items) of a request.
/// `v` without the `cache_control` markers the proxy's cache planning added.
fn without_breakpoints(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, _)| *k != "cache_control").map(|(k, x)| (k.clone(), without_breakpoints(x))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_breakpoints).collect()),
        other => other.clone(),
    }
}

fn items(v: &Value) -> &Vec<Value> {
    v.get("messages").or_else(|| v.get("input")).and_then(Value::as_array).expect("a message list")
}

fn mechanism(ledger: &Path, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
            .args(["report", "--by", "mechanism", "--json", "--ledger", ledger.to_str().unwrap()])
            .output()
            .unwrap();
        let rep: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let row = rep["mechanisms"].as_array().and_then(|m| m.iter().find(|r| r["key"] == name).cloned());
        if let Some(r) = row {
            return r;
        }
        assert!(Instant::now() < deadline, "no `{name}` row in the report: {rep}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Input billed for a sequence of requests as a prompt cache bills it: the messages a request
/// shares with the one before at 0.1x, the rest at 1.25x (tokens estimated at 4 bytes).
fn cache_billed(sent: &[Value]) -> f64 {
    let mut total = 0.0;
    for (k, v) in sent.iter().enumerate() {
        let cur = items(v);
        let shared =
            k.checked_sub(1).map_or(0, |p| items(&sent[p]).iter().zip(cur).take_while(|(a, b)| a == b).count());
        for (i, m) in cur.iter().enumerate() {
            let tokens = m.to_string().len() as f64 / 4.0;
            total += if i < shared { 0.1 * tokens } else { 1.25 * tokens };
        }
    }
    total
}

/// A cache-billed target: no step early (clearing does not pay yet), fewer steps than a
/// quota-bound target takes, and a cheaper bill than sending the requests as they were; between
/// steps every message already sent is forwarded exactly as before; only old tool outputs become
/// stubs, never the newest three. Another process, given only one request, forwards the same bytes.
#[tokio::test]
async fn a_long_session_clears_in_steps_and_keeps_the_prefix_between_them() {
    let mock = mock::start(clear_support::provider).await;
    let (store, ledger) = (temp_dir("steps-store"), temp_dir("steps-ledger").join("l.db"));
    let cfg = config(&mock, Dialect::Anthropic, false, &store, "");
    let proxy = start(&cfg, &ledger);
    const TURNS: usize = 45;
    let forwarded = drive(&proxy, &mock, Dialect::Anthropic, 1..=TURNS, None).await;
    // The rolling prompt-cache breakpoint moves forward every turn; the provider's cache does not
    // count it as part of the prefix, so messages are compared without it.
    let sent: Vec<Value> = forwarded.iter().map(without_breakpoints).collect();
    let mut step_turns = Vec::new();
    for (t, pair) in sent.windows(2).enumerate() {
        let (prev, cur) = (items(&pair[0]), items(&pair[1]));
        let changed: Vec<usize> = (0..prev.len()).filter(|&i| prev[i] != cur[i]).collect();
        if changed.is_empty() {
            continue;
        }
        step_turns.push(t + 2);
        for &i in &changed {
            // Only a tool result changed, and into a stub.
            let part = &cur[i]["content"][0];
            assert_eq!(part["type"], "tool_result", "turn {}: message {i} changed", t + 2);
            assert!(is_stub(part["content"].as_str().unwrap_or("")), "turn {}: message {i} is no stub", t + 2);
        }
    }
    let steps = step_turns.len();
    let direct: Vec<Value> = (1..=TURNS).map(|t| request(Dialect::Anthropic, t, MODEL)).collect();
    let (billed, unchanged) = (cache_billed(&sent), cache_billed(&direct));
    assert!(billed < 0.9 * unchanged, "steps must pay: billed {billed:.0} vs {unchanged:.0} sent as is");
    assert!(step_turns[0] >= 8, "no step while few turns are expected to follow: {step_turns:?}");
    let last = outputs(Dialect::Anthropic, sent.last().unwrap());
    let cleared = last.iter().filter(|o| is_stub(o)).count();
    assert!(steps >= 1 && cleared >= 10, "{steps} steps, {cleared} outputs cleared");
    assert!(last.iter().rev().take(3).all(|o| !is_stub(o)), "the three newest outputs stay");
    // Once cleared, always cleared (the set only grows).
    for pair in sent.windows(2) {
        let (a, b) = (outputs(Dialect::Anthropic, &pair[0]), outputs(Dialect::Anthropic, &pair[1]));
        assert!(a.iter().zip(&b).all(|(x, y)| !is_stub(x) || x == y));
    }
    let row = mechanism(&ledger, "clear");
    assert_eq!(row["steps"].as_u64(), Some(steps as u64), "{row}");
    assert_eq!(row["elisions"].as_u64(), Some(cleared as u64), "{row}");
    assert!(row["tokens_saved"].as_u64().unwrap() > 10_000, "{row}");

    // Determinism across processes: a fresh proxy that sees only turn 45 (and then turn 30)
    // forwards exactly the bytes the first one did.
    let fresh = start(&cfg, &temp_dir("steps-ledger2").join("l.db"));
    let c = reqwest::Client::new();
    for t in [TURNS, 30] {
        let body = request(Dialect::Anthropic, t, MODEL).to_string();
        let r = c.post(fresh.url("/v1/messages")).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        let again = mock.last().body;
        let first = mock.requests.lock().unwrap()[t - 1].body.clone();
        assert!(again == first, "turn {t}: another process forwarded other bytes");
    }

    // A quota-bound target (a free tier) clears whenever enough is clearable: more often.
    let quota = start(&config(&mock, Dialect::Anthropic, true, &store, ""), &temp_dir("steps-ledger3").join("l.db"));
    let free: Vec<Value> =
        drive(&quota, &mock, Dialect::Anthropic, 1..=TURNS, None).await.iter().map(without_breakpoints).collect();
    let free_steps = free.windows(2).filter(|p| items(&p[0]).iter().zip(items(&p[1])).any(|(a, b)| a != b)).count();
    assert!(free_steps > steps, "quota-bound {free_steps} steps, cache-billed {steps}");
    // ... and would cost more on a provider that caches: the cost model earns its keep.
    let free_billed = cache_billed(&free);
    assert!(billed < free_billed, "cache-billed policy {billed:.0}, quota policy {free_billed:.0}");
}

/// Tool outputs keep pairing with their calls once cleared, in all three dialects and through
/// translation (the mock refuses unpaired ids as the providers do). A free tier is quota-bound:
/// it clears as soon as `clear_at_least` tokens are clearable.
#[tokio::test]
async fn tool_ids_pair_after_clearing_in_every_dialect_and_through_translation() {
    use Dialect::*;
    let mock = mock::start(clear_support::provider).await;
    for (ingress, upstream) in [
        (Anthropic, Anthropic),
        (Chat, Chat),
        (Responses, Responses),
        (Anthropic, Chat),
        (Chat, Anthropic),
        (Responses, Chat),
    ] {
        let tag = format!("pair-{ingress:?}-{upstream:?}");
        let store = temp_dir(&tag);
        let cfg = config(&mock, upstream, true, &store, "clear_at_least = 500");
        let proxy = start(&cfg, &temp_dir(&format!("{tag}-ledger")).join("l.db"));
        let sent = drive(&proxy, &mock, ingress, 1..=10, None).await;
        let last = sent.last().unwrap();
        assert_eq!(clear_support::tool_ids_pair(upstream, last), Ok(()), "{tag}");
        let outs = outputs(upstream, last);
        let stubs = outs.iter().filter(|o| is_stub(o)).count();
        assert!(stubs >= 5, "{tag}: {stubs} of {} outputs cleared", outs.len());
        assert!(outs.iter().rev().take(3).all(|o| !is_stub(o)), "{tag}: the newest outputs stay");
        // What each stub says is enough to find the original, and the original is in the store.
        for (t, o) in outs.iter().enumerate().filter(|(_, o)| is_stub(o)) {
            assert!(o.contains(&format!("`{}`", clear_support::command(t))), "{tag}: {o}");
            assert!(o.contains(&format!("first error: ERROR row_{t}_97")), "{tag}: {o}");
            let path = clear_support::stub_original(o);
            assert!(path.starts_with(&store.display().to_string()), "{tag}: {path}");
        }
    }
}

/// A stub's original is in the store byte for byte, `GET /o/<id>` serves it, and an agent that
/// reads it back counts as a recall of `clear` in the ledger.
#[tokio::test]
async fn a_cleared_output_is_stored_and_its_recall_counted() {
    let mock = mock::start(clear_support::provider).await;
    let (store, ledger) = (temp_dir("recall-store"), temp_dir("recall-ledger").join("l.db"));
    let cfg = config(&mock, Dialect::Anthropic, true, &store, "clear_at_least = 500");
    let proxy = start(&cfg, &ledger);
    let sent = drive(&proxy, &mock, Dialect::Anthropic, 8..=8, None).await;
    let outs = outputs(Dialect::Anthropic, &sent[0]);
    let (t, stub) = outs.iter().enumerate().find(|(_, o)| is_stub(o)).expect("a cleared output");
    let path = clear_support::stub_original(stub);
    let deadline = Instant::now() + Duration::from_secs(5);
    let stored = loop {
        if let Ok(b) = std::fs::read(&path) {
            break b;
        }
        assert!(Instant::now() < deadline, "{path} never written");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(String::from_utf8(stored).unwrap(), clear_support::output(t), "the original, byte for byte");
    let id = Path::new(&path).file_stem().unwrap().to_str().unwrap().to_string();
    let served = reqwest::get(proxy.url(&format!("/o/{id}"))).await.unwrap().text().await.unwrap();
    assert_eq!(served, clear_support::output(t));

    // The agent reads it back: a Bash call naming the original, then its output.
    let mut body = request(Dialect::Anthropic, 8, MODEL);
    let msgs = body["messages"].as_array_mut().unwrap();
    msgs.push(serde_json::json!({"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_recall", "name": "Bash", "input": {"command": format!("cat {path}")}}]}));
    msgs.push(serde_json::json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_recall", "content": clear_support::output(t)}]}));
    let r = reqwest::Client::new().post(proxy.url("/v1/messages")).body(body.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    // The recalled text reaches the model whole (it is the newest output).
    let last = outputs(Dialect::Anthropic, &mock.last().json());
    assert_eq!(last.last().unwrap(), &clear_support::output(t));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let row = mechanism(&ledger, "clear");
        if row["recalls"].as_u64() == Some(1) {
            assert!(row["elisions"].as_u64().unwrap() >= 1, "{row}");
            break;
        }
        assert!(Instant::now() < deadline, "no recall counted: {row}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `x-tokenfold-clear: off` keeps every output (folding still runs); another value is refused
/// in the caller's dialect; a client that asks Anthropic to clear tool uses itself is left to it.
#[tokio::test]
async fn clearing_can_be_turned_off_per_request_and_is_left_to_a_clients_own_edit() {
    let mock = mock::start(clear_support::provider).await;
    let store = temp_dir("off-store");
    let cfg = config(&mock, Dialect::Anthropic, true, &store, "clear_at_least = 500");
    let proxy = start(&cfg, &temp_dir("off-ledger").join("l.db"));
    let stubs = |v: &Value| outputs(Dialect::Anthropic, v).iter().filter(|o| is_stub(o)).count();
    let off = drive(&proxy, &mock, Dialect::Anthropic, 10..=10, Some(("x-tokenfold-clear", "off"))).await;
    assert_eq!(stubs(&off[0]), 0, "nothing cleared with the header");
    let on = drive(&proxy, &mock, Dialect::Anthropic, 10..=10, None).await;
    assert!(stubs(&on[0]) >= 5, "the same request clears without it");

    let c = reqwest::Client::new();
    let body = request(Dialect::Anthropic, 10, MODEL).to_string();
    let r = c.post(proxy.url("/v1/messages")).header("x-tokenfold-clear", "sometimes").body(body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["type"], "error", "Anthropic's error shape: {err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("x-tokenfold-clear"), "{err}");

    let mut own = request(Dialect::Anthropic, 10, MODEL);
    own["context_management"] =
        serde_json::json!({"edits": [{"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": 3}}]});
    let r = c.post(proxy.url("/v1/messages")).body(own.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let got = mock.last().json();
    assert_eq!(stubs(&got), 0, "the provider clears, not the proxy");
    assert_eq!(got["context_management"], own["context_management"], "the client's edit goes through");
}
