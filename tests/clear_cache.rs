//! Clearing and prompt caching together: a long session through the real proxy to a mock Anthropic
//! that simulates the prompt cache (tests/common/prompt_cache.rs). Clearing steps rewrite part of
//! the cached prefix; the cache planner must keep every other turn reading the cache, and a step
//! must cost one rewrite of the prefix after its first cleared output, not more.

#[path = "cache_support/mod.rs"]
mod cache_support;
#[path = "clear_support/mod.rs"]
mod clear_support;
mod common;

use common::mock;
use common::prompt_cache::{Billed, PromptCache};
use common::{spawn_proxy, temp_dir, temp_file, Proxy};
use serde_json::Value;

use clear_support::{is_stub, outputs, request, Dialect};

const MODEL: &str = "claude-sonnet-4-5";
const TURNS: usize = 45;

fn proxy(base: &str) -> Proxy {
    let cfg = temp_file("clear-cache.toml", &cache_support::config(base, ""));
    let ledger = temp_dir("clear-cache-ledger").join("l.db");
    let store = temp_dir("clear-cache-store");
    spawn_proxy(
        &["--config", cfg.to_str().unwrap()],
        &[("TOKENFOLD_LEDGER", ledger.to_str().unwrap()), ("XDG_CACHE_HOME", store.to_str().unwrap())],
    )
}

/// Plays the session in `dialect` (translated to Anthropic unless it is Anthropic), clearing
/// `on` or `off`, and returns what the provider received and what it billed.
async fn session(dialect: Dialect, clear: &str) -> (Vec<Value>, Vec<Billed>) {
    let cache = PromptCache::new();
    let upstream = mock::start(cache.handler()).await;
    let proxy = proxy(&upstream.base());
    let client = reqwest::Client::new();
    for t in 1..=TURNS {
        let body = request(dialect, t, MODEL).to_string();
        let resp = client
            .post(proxy.url(dialect.path()))
            .header("content-type", "application/json")
            .header("x-api-key", "sk-test")
            .header("authorization", "Bearer sk-test")
            .header("anthropic-version", "2023-06-01")
            .header("x-tokenfold-clear", clear)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "turn {t}: {text}");
    }
    let sent = upstream.requests().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    (sent, cache.billed())
}

/// Clearing steps: the turns (1-based) whose forwarded messages differ from the previous
/// request's in something other than the moving breakpoint, each with the first message changed.
fn step_turns(sent: &[Value]) -> Vec<(usize, usize)> {
    let plain: Vec<Value> = sent.iter().map(cache_support::without_breakpoints).collect();
    let msgs = |v: &Value| v["messages"].as_array().cloned().unwrap_or_default();
    (1..plain.len())
        .filter_map(|k| {
            let (prev, cur) = (msgs(&plain[k - 1]), msgs(&plain[k]));
            prev.iter().zip(&cur).position(|(a, b)| a != b).map(|i| (k + 1, i))
        })
        .collect()
}

fn describe(billed: &[Billed]) -> String {
    billed
        .iter()
        .enumerate()
        .map(|(t, b)| format!("{}:r{}/w{}", t + 1, b.cache_read, b.cache_write))
        .collect::<Vec<_>>()
        .join(" ")
}

fn billed_share(billed: &[Billed]) -> f64 {
    let paid: f64 = billed.iter().map(Billed::billed_equivalent).sum();
    let all: u64 = billed.iter().map(Billed::total_input).sum();
    paid / all as f64
}

/// `cleared` against `kept`, the same session with clearing off.
fn check(what: &str, (sent, billed): (Vec<Value>, Vec<Billed>), (_, kept): (Vec<Value>, Vec<Billed>)) {
    let (sent, billed) = (&sent[..], &billed[..]);
    assert_eq!(billed.len(), TURNS, "{what}: every turn reached the simulated cache");
    let changed = step_turns(sent);
    let steps: Vec<usize> = changed.iter().map(|&(t, _)| t).collect();
    eprintln!("{what}: (step turn, first message changed): {changed:?}");
    assert!(!steps.is_empty(), "{what}: no clearing step in {TURNS} turns");
    let last = outputs(Dialect::Anthropic, sent.last().unwrap());
    assert!(last.iter().filter(|o| is_stub(o)).count() >= 10, "{what}: the last request clears old outputs");
    for (t, b) in billed.iter().enumerate().skip(1) {
        let turn = t + 1;
        assert_eq!(b.ignored, 0, "{what}: turn {turn} carried a breakpoint below the minimum");
        if steps.contains(&turn) {
            // A step re-writes its prefix from the last entry still current: once.
            continue;
        }
        // Every other turn, the turn right after a step included, reads all that the turn before
        // it cached and writes only what is new.
        let prev = &billed[t - 1];
        assert!(
            b.cache_read >= prev.cache_read + prev.cache_write,
            "{what}: turn {turn} did not read what turn {t} cached (steps at {steps:?}): {}",
            describe(billed)
        );
    }
    // And the steps pay: the session costs less than the same session with every output kept.
    let cost = |b: &[Billed]| b.iter().map(Billed::billed_equivalent).sum::<f64>();
    let (with, without) = (cost(billed), cost(&kept));
    eprintln!(
        "{what}: billed input {:.0} with clearing, {:.0} without ({:.2}x; {:.2}x the same tokens uncached): {}",
        with,
        without,
        with / without,
        billed_share(billed),
        describe(billed)
    );
    // 0.79x here; a cost model that priced a step's rewrite from its first cleared output rather
    // than from the last cache entry before it stepped every other turn late on, each a full
    // rewrite, and billed 0.86x.
    assert!(with < 0.84 * without, "{what}: clearing did not pay enough: {with:.0} billed vs {without:.0} kept");
}

#[tokio::test]
async fn a_clearing_step_keeps_the_cache_read_on_every_turn_native_anthropic() {
    check("Anthropic client", session(Dialect::Anthropic, "on").await, session(Dialect::Anthropic, "off").await);
}

#[tokio::test]
async fn a_clearing_step_keeps_the_cache_read_on_every_turn_translated_from_responses() {
    check(
        "Responses client on Anthropic",
        session(Dialect::Responses, "on").await,
        session(Dialect::Responses, "off").await,
    );
}

#[tokio::test]
async fn a_clearing_step_keeps_the_cache_read_on_every_turn_translated_from_chat() {
    check("Chat client on Anthropic", session(Dialect::Chat, "on").await, session(Dialect::Chat, "off").await);
}
