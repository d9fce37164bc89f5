//! Cache planning end to end: multi-turn sessions of each client shape through the real proxy to
//! a mock Anthropic that simulates the prompt cache (tests/common/prompt_cache.rs) and to mock
//! OpenAI targets that record the `prompt_cache_key` they get.

mod common;
#[path = "cache_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use common::mock::{self, Recorded, Reply};
use common::prompt_cache::{Billed, PromptCache};
use common::{spawn_proxy, temp_file, Proxy};
use serde_json::Value;
use support::*;

/// The mock upstream: the simulated Anthropic API on `/v1/messages`, a Chat answer on
/// `/v1/chat/completions`, a Responses answer on `/v1/responses`.
async fn upstream(cache: &Arc<PromptCache>) -> mock::Mock {
    let anthropic = cache.handler();
    let responses =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/translate/upstream/responses_response.json"))
            .unwrap();
    mock::start(move |rec: &Recorded| {
        if rec.path.ends_with("/messages") || rec.path.ends_with("/count_tokens") {
            anthropic(rec)
        } else if rec.path.ends_with("/chat/completions") {
            Reply::ok_json(mock::chat_completion("ok"))
        } else {
            Reply::ok_json(responses.clone())
        }
    })
    .await
}

fn proxy(base: &str, cache_section: &str, ledger: &str) -> Proxy {
    let cfg = temp_file("cache.toml", &config(base, cache_section));
    spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", ledger)])
}

async fn post(proxy: &Proxy, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(proxy.url(path))
        .header("content-type", "application/json")
        .header("x-api-key", "sk-test")
        .header("authorization", "Bearer sk-test")
        .header("anthropic-version", "2023-06-01");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body.to_vec()).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Billed input over the session against the same tokens uncached.
fn billed_share(billed: &[Billed]) -> f64 {
    let paid: f64 = billed.iter().map(Billed::billed_equivalent).sum();
    let all: u64 = billed.iter().map(Billed::total_input).sum();
    paid / all as f64
}

fn describe(billed: &[Billed]) -> String {
    billed.iter().map(|b| format!("r{}/w{}/i{}", b.cache_read, b.cache_write, b.input)).collect::<Vec<_>>().join(" ")
}

/// Reads on every turn from the second, none ignored, none over the limit.
fn assert_reads_from_turn_two(what: &str, billed: &[Billed]) {
    assert_eq!(billed[0].cache_read, 0, "{what}: nothing is cached before turn 1");
    assert!(billed[0].cache_write > 0, "{what}: turn 1 writes the cache: {}", describe(billed));
    for (t, b) in billed.iter().enumerate().skip(1) {
        assert!(b.cache_read > 0, "{what}: no cache read on turn {}: {}", t + 1, describe(billed));
    }
    for b in billed {
        assert_eq!(b.ignored, 0, "{what}: a breakpoint below the minimum was placed: {}", describe(billed));
        assert!(b.breakpoints >= 1 && b.breakpoints <= 4, "{what}: {b:?}");
    }
}

/// The mock's answer to a request, for reading its cache fields.
fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn the_mock_simulates_the_prompt_cache() {
    let body = |blocks: usize, marks: &[usize], model: &str| {
        let content: Vec<Value> = (0..blocks)
            .map(|i| {
                let mut b = serde_json::json!({"type": "text", "text": prose(&format!("b{i}"), 3)});
                if marks.contains(&i) {
                    b["cache_control"] = serde_json::json!({"type": "ephemeral"});
                }
                b
            })
            .collect();
        let v = serde_json::json!({"model": model, "system": prose("sys", 60), "messages": [{"role": "user", "content": content}]});
        serde_json::to_vec(&v).unwrap()
    };
    let cache = PromptCache::new();
    let ok = |b: &[u8]| cache.request(b).unwrap_or_else(|_| panic!("refused")).0;
    // Written once, read the next time; the breakpoint's position does not change the prefix.
    let first = ok(&body(30, &[29], "claude-sonnet-4-5"));
    assert_eq!((first.cache_read, first.input), (0, 0));
    let again = ok(&body(30, &[29], "claude-sonnet-4-5"));
    assert_eq!((again.cache_read, again.cache_write), (first.cache_write, 0));
    // Twenty blocks on, the entry is still found; twenty-one on, it is not.
    assert!(ok(&body(50, &[49], "claude-sonnet-4-5")).cache_read > 0);
    let cache = PromptCache::new();
    cache.request(&body(30, &[29], "claude-sonnet-4-5")).unwrap_or_else(|_| panic!());
    let far = cache.request(&body(51, &[50], "claude-sonnet-4-5")).unwrap_or_else(|_| panic!()).0;
    assert_eq!(far.cache_read, 0, "21 blocks back is beyond the lookback");
    // A second breakpoint within reach of the entry finds it.
    let both = cache.request(&body(51, &[29, 50], "claude-sonnet-4-5")).unwrap_or_else(|_| panic!()).0;
    assert!(both.cache_read > 0);
    // Below the minimum (Haiku: 2048) a breakpoint is ignored and nothing is written.
    let short = serde_json::json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": [
        {"type": "text", "text": prose("short", 40), "cache_control": {"type": "ephemeral"}}]}]});
    let s = cache.request(&serde_json::to_vec(&short).unwrap()).unwrap_or_else(|_| panic!()).0;
    assert_eq!((s.ignored, s.cache_write, s.cache_read), (1, 0, 0));
    // Expiry: 5 minutes from the last use, unless the entry is a 1-hour one.
    let cache = PromptCache::new();
    cache.request(&body(5, &[4], "claude-sonnet-4-5")).unwrap_or_else(|_| panic!());
    cache.advance(Duration::from_secs(301));
    assert_eq!(cache.request(&body(5, &[4], "claude-sonnet-4-5")).unwrap_or_else(|_| panic!()).0.cache_read, 0);
    let hour = String::from_utf8(body(5, &[4], "claude-opus-4-1"))
        .unwrap()
        .replace(r#"{"type":"ephemeral"}"#, r#"{"ttl":"1h","type":"ephemeral"}"#);
    cache.request(hour.as_bytes()).unwrap_or_else(|_| panic!());
    cache.advance(Duration::from_secs(1800));
    let later = cache.request(hour.as_bytes()).unwrap_or_else(|_| panic!()).0;
    assert!(later.cache_read > 0 && later.cache_write_1h == 0);
    // The API's refusals, in its error shape.
    let refused = |b: &[u8]| match cache.request(b) {
        Err(Reply::Json { status, body, .. }) => (status, json(&String::from_utf8(body).unwrap())),
        _ => panic!("accepted"),
    };
    let (status, err) = refused(&body(6, &[0, 1, 2, 3, 4], "claude-sonnet-4-5"));
    assert_eq!(status, 400);
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["message"], "A maximum of 4 blocks with cache_control may be provided. Found 5.");
    let empty = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"","cache_control":{"type":"ephemeral"}}]}]}"#;
    assert!(refused(empty).1["error"]["message"].as_str().unwrap().contains("empty text blocks"));
    let thinking = br#"{"model":"m","messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s","cache_control":{"type":"ephemeral"}}]}]}"#;
    assert!(refused(thinking).1["error"]["message"].as_str().unwrap().contains("thinking.cache_control"));
}

#[tokio::test]
async fn codex_on_anthropic_reads_the_cache_from_turn_two() {
    let mut figures = Vec::new();
    for (label, headers) in
        [("auto breakpoints", &[][..]), ("x-tokenfold-cache: off", &[("x-tokenfold-cache", "off")][..])]
    {
        let cache = PromptCache::new();
        let mock = upstream(&cache).await;
        let proxy = proxy(&mock.base(), "", "off");
        for turn in 1..=8 {
            let body = codex_body(turn, 1, "claude/claude-sonnet-4-5", true);
            let (status, text) = post(&proxy, "/v1/responses", &body, headers).await;
            assert_eq!(status, 200, "turn {turn}: {text}");
            assert!(text.contains("response.completed"), "turn {turn}: {text}");
        }
        let billed = cache.billed();
        assert_eq!(billed.len(), 8);
        let share = billed_share(&billed);
        figures.push(format!("{label}: billed input {share:.2}x uncached ({})", describe(&billed)));
        if headers.is_empty() {
            assert_reads_from_turn_two("codex", &billed);
            assert!(share <= 0.45, "codex: billed input {share:.3}x uncached: {}", describe(&billed));
        } else {
            assert!(billed.iter().all(|b| b.cache_read == 0 && b.breakpoints == 0), "{}", describe(&billed));
            assert!((share - 1.0).abs() < 1e-9);
        }
    }
    eprintln!("codex (Responses) -> Anthropic, 8 turns:\n  {}", figures.join("\n  "));
}

#[tokio::test]
async fn parallel_calls_beyond_the_lookback_still_read_the_previous_turn() {
    // Twelve parallel calls a turn: 24 new blocks between one turn's end and the next one's.
    let cache = PromptCache::new();
    let mock = upstream(&cache).await;
    let proxy = proxy(&mock.base(), "", "off");
    for turn in 1..=4 {
        let (status, text) =
            post(&proxy, "/v1/responses", &codex_body(turn, 12, "claude/claude-sonnet-4-5", false), &[]).await;
        assert_eq!(status, 200, "{text}");
    }
    let billed = cache.billed();
    assert_reads_from_turn_two("codex, 12 parallel calls", &billed);
    // Each turn reads all of the previous turn: only the new blocks are written.
    for w in billed.windows(2) {
        assert_eq!(w[1].cache_read, w[0].cache_read + w[0].cache_write, "{}", describe(&billed));
    }
}

#[tokio::test]
async fn opencode_chat_on_anthropic_reads_the_cache_from_turn_two() {
    let cache = PromptCache::new();
    let mock = upstream(&cache).await;
    let proxy = proxy(&mock.base(), "", "off");
    for turn in 1..=7 {
        let body = opencode_body(turn, "claude/claude-sonnet-4-5", "Why does the parser reject empty lines?");
        let (status, text) = post(&proxy, "/v1/chat/completions", &body, &[]).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(json(&text)["choices"][0]["message"]["content"], "ok");
    }
    let billed = cache.billed();
    assert_reads_from_turn_two("opencode", &billed);
    let share = billed_share(&billed);
    assert!(share <= 0.45, "opencode: billed input {share:.3}x uncached: {}", describe(&billed));
    eprintln!("opencode (Chat) -> Anthropic, 7 turns: billed input {share:.2}x uncached");
}

#[tokio::test]
async fn an_aider_request_repeated_reads_the_cache_and_only_gains_breakpoints() {
    let cache = PromptCache::new();
    let mock = upstream(&cache).await;
    let proxy = proxy(&mock.base(), "", "off");
    let body = aider_body("claude-sonnet-4-5");
    for _ in 0..2 {
        let (status, text) = post(&proxy, "/v1/messages", &body, &[]).await;
        assert_eq!(status, 200, "{text}");
    }
    let billed = cache.billed();
    assert_eq!(billed[0].cache_read, 0);
    assert!(billed[1].cache_read > 0 && billed[1].cache_write == 0, "{}", describe(&billed));
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let got = mock.last().json();
    assert_eq!(without_breakpoints(&got), without_breakpoints(&sent), "only breakpoints were added");
    let mut paths = Vec::new();
    breakpoint_paths(&got, "", &mut paths);
    assert_eq!(paths, [".messages[4].content[0]", ".system[0]"], "the last block and the end of the system prompt");
}

#[tokio::test]
async fn claude_code_breakpoints_are_forwarded_exactly() {
    let cache = PromptCache::new();
    let mock = upstream(&cache).await;
    let proxy = proxy(&mock.base(), "", "off");
    for turn in 1..=4 {
        let body = claude_code_body(turn, "claude-sonnet-4-5");
        let (status, text) = post(&proxy, "/v1/messages", &body, &[]).await;
        assert_eq!(status, 200, "{text}");
        let got = mock.last().body;
        assert!(got == body, "turn {turn}: the body must reach the provider byte for byte");
    }
    assert_reads_from_turn_two("claude code", &cache.billed());
    // Four breakpoints of the client's own: forwarded as they are (the mock accepts four).
    let mut four: Value = serde_json::from_slice(&claude_code_body(3, "claude-sonnet-4-5")).unwrap();
    four["tools"][5]["cache_control"] = serde_json::json!({"type": "ephemeral"});
    let four = serde_json::to_vec(&four).unwrap();
    let (status, text) = post(&proxy, "/v1/messages", &four, &[]).await;
    assert_eq!(status, 200, "{text}");
    assert!(mock.last().body == four);
}

#[tokio::test]
async fn below_the_minimum_or_switched_off_the_body_is_untouched() {
    let cache = PromptCache::new();
    let mock = upstream(&cache).await;
    let proxy = proxy(&mock.base(), "", "off");
    let tiny = br#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let (status, _) = post(&proxy, "/v1/messages", tiny, &[]).await;
    assert_eq!(status, 200);
    assert!(mock.last().body == tiny);
    // The Aider body (~2,500 tokens) is long enough for Sonnet but not for Haiku 4.5, whose
    // minimum the model table gives as 4,096.
    let haiku = aider_body("claude-haiku-4-5");
    post(&proxy, "/v1/messages", &haiku, &[]).await;
    assert!(mock.last().body == haiku, "no breakpoint below Haiku's minimum");
    let sonnet = aider_body("claude-sonnet-4-5");
    post(&proxy, "/v1/messages", &sonnet, &[("x-tokenfold-cache", "off")]).await;
    assert!(mock.last().body == sonnet, "the header turns it off for one request");
    let (status, text) = post(&proxy, "/v1/messages", &sonnet, &[("x-tokenfold-cache", "sometimes")]).await;
    assert_eq!(status, 400);
    let err = json(&text);
    assert_eq!(err["type"], "error", "in the caller's dialect: {text}");
    assert!(err["error"]["message"].as_str().unwrap().contains("x-tokenfold-cache"), "{text}");
    // `[cache] auto_breakpoints = false` turns it off for every request.
    let off = self::proxy(&mock.base(), "auto_breakpoints = false", "off");
    post(&off, "/v1/messages", &sonnet, &[]).await;
    assert!(mock.last().body == sonnet);
    assert!(cache.billed().iter().all(|b| b.breakpoints == 0));
}

#[tokio::test]
async fn the_one_hour_ttl_survives_a_pause_that_the_five_minute_one_does_not() {
    for (section, survives) in [("", false), ("anthropic_ttl = \"1h\"", true)] {
        let cache = PromptCache::new();
        let mock = upstream(&cache).await;
        let proxy = proxy(&mock.base(), section, "off");
        for turn in 1..=3 {
            post(&proxy, "/v1/chat/completions", &opencode_body(turn, "claude/claude-sonnet-4-5", "t"), &[]).await;
            // A seven-minute pause before each next turn.
            cache.advance(Duration::from_secs(420));
        }
        let billed = cache.billed();
        let got = mock.last().json();
        assert_eq!(got["system"][0]["cache_control"].get("ttl").is_some(), survives, "{got}");
        for b in &billed[1..] {
            assert_eq!(b.cache_read > 0, survives, "{section:?}: {}", describe(&billed));
        }
        if survives {
            assert!(billed.iter().all(|b| b.cache_write == b.cache_write_1h), "all writes are 1-hour ones");
        }
    }
}

/// The `prompt_cache_key` in each request the OpenAI mock got on `path`.
fn keys(mock: &mock::Mock, path: &str) -> Vec<Option<String>> {
    mock.requests()
        .iter()
        .filter(|r| r.path.ends_with(path))
        .map(|r| r.json()["prompt_cache_key"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn openai_targets_get_one_stable_prompt_cache_key_per_conversation() {
    let cache = PromptCache::new();
    let mock = upstream(&cache).await;
    let proxy = proxy(&mock.base(), "", "off");
    let codex_key = Some("019a7c3e-codex-session".to_string());
    // Codex's own key is carried through translation to Chat ...
    for turn in 1..=3 {
        let (status, text) = post(&proxy, "/v1/responses", &codex_body(turn, 1, "openai/gpt-test", false), &[]).await;
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(keys(&mock, "/chat/completions"), vec![codex_key.clone(); 3]);
    // ... but not to a provider that refuses the field.
    post(&proxy, "/v1/responses", &codex_body(2, 1, "strict/strict-test", false), &[]).await;
    assert_eq!(mock.last().json().get("prompt_cache_key"), None);

    // OpenCode sends none: one is derived per conversation, the same on every turn, natively on
    // Chat and translated to Responses alike.
    let before = mock.requests().len();
    for turn in 1..=3 {
        for model in ["gpt-test", "responses/gpt-resp"] {
            let (status, text) =
                post(&proxy, "/v1/chat/completions", &opencode_body(turn, model, "task one"), &[]).await;
            assert_eq!(status, 200, "{text}");
        }
    }
    let derived: Vec<Option<String>> =
        mock.requests()[before..].iter().map(|r| r.json()["prompt_cache_key"].as_str().map(str::to_string)).collect();
    let (chat, responses): (Vec<_>, Vec<_>) = derived.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let chat_key = chat[0].1.clone().expect("a key for the Chat target");
    assert!(chat_key.starts_with("tokenfold-"), "{chat_key}");
    assert!(chat.iter().all(|(_, k)| k.as_deref() == Some(chat_key.as_str())), "{derived:?}");
    let responses_key = responses[0].1.clone().expect("a key for the Responses target");
    assert!(responses.iter().all(|(_, k)| k.as_deref() == Some(responses_key.as_str())), "{derived:?}");
    assert_ne!(chat_key, responses_key, "keys are per provider account");
    // Another conversation gets another key; the header, or a provider that refuses it, none.
    post(&proxy, "/v1/chat/completions", &opencode_body(2, "gpt-test", "task two"), &[]).await;
    let other = mock.last().json()["prompt_cache_key"].as_str().map(str::to_string);
    assert!(other.is_some() && other.as_deref() != Some(chat_key.as_str()), "{other:?}");
    post(&proxy, "/v1/chat/completions", &opencode_body(2, "gpt-test", "task one"), &[("x-tokenfold-cache", "off")])
        .await;
    assert_eq!(mock.last().json().get("prompt_cache_key"), None);
    post(&proxy, "/v1/chat/completions", &opencode_body(2, "strict/strict-test", "task one"), &[]).await;
    assert_eq!(mock.last().json().get("prompt_cache_key"), None);

    // Claude Code on an OpenAI target: derived from its session id, stable across turns.
    let before = mock.requests().len();
    for turn in 1..=3 {
        let (status, text) = post(&proxy, "/v1/messages", &claude_code_body(turn, "openai/gpt-test"), &[]).await;
        assert_eq!(status, 200, "{text}");
    }
    let cc: Vec<Option<String>> =
        mock.requests()[before..].iter().map(|r| r.json()["prompt_cache_key"].as_str().map(str::to_string)).collect();
    assert!(cc[0].is_some() && cc.iter().all(|k| k == &cc[0]), "{cc:?}");
}

/// `tokenfold report --json` over `ledger` with `args`.
fn report(ledger: &std::path::Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["report", "--json", "--ledger"])
        .arg(ledger)
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn the_report_measures_cache_reads_writes_and_what_the_cache_saved() {
    let cache = PromptCache::new();
    let mock = upstream(&cache).await;
    let ledger = temp_file("cache-ledger.db", "");
    std::fs::remove_file(&ledger).unwrap();
    let proxy = proxy(&mock.base(), "", ledger.to_str().unwrap());
    for turn in 1..=5 {
        let (status, text) =
            post(&proxy, "/v1/responses", &codex_body(turn, 1, "claude/claude-sonnet-4-5", false), &[]).await;
        assert_eq!(status, 200, "{text}");
    }
    let billed = cache.billed();
    let sum = |f: fn(&Billed) -> u64| billed.iter().map(f).sum::<u64>();
    let (read, write, input) = (sum(|b| b.cache_read), sum(|b| b.cache_write), sum(|b| b.input));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rep = loop {
        let rep = report(&ledger, &["--since", "24h", "--by", "provider"]);
        if rep["total"]["requests"] == 5 || std::time::Instant::now() > deadline {
            break rep;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let row = &rep["rows"][0];
    assert_eq!(row["key"], "claude", "{rep}");
    assert_eq!((row["cache_read"].as_u64(), row["cache_write"].as_u64()), (Some(read), Some(write)), "{row}");
    assert_eq!(row["usage_input"].as_u64(), Some(input), "{row}");
    let hit = row["cache_hit_pct"].as_f64().unwrap();
    assert!((hit - 100.0 * read as f64 / (read + write + input) as f64).abs() < 1e-6, "{row}");
    // Sonnet prices: the billed cost against the same tokens with no cache.
    let billed_usd = (input as f64 * 3.0 + read as f64 * 0.3 + write as f64 * 3.75 + 5.0 * 5.0 * 15.0) / 1e6;
    let uncached_usd = ((input + read + write) as f64 * 3.0 + 5.0 * 5.0 * 15.0) / 1e6;
    assert!((row["cost_usd"].as_f64().unwrap() - billed_usd).abs() < 1e-9, "{row}");
    assert!((row["uncached_cost_usd"].as_f64().unwrap() - uncached_usd).abs() < 1e-9, "{row}");
    // Per route and per conversation too.
    let by_route = report(&ledger, &["--since", "24h", "--by", "route"]);
    assert_eq!(by_route["rows"][0]["key"], "claude/claude-sonnet-4-5");
    assert_eq!(by_route["rows"][0]["cache_read"].as_u64(), Some(read));
    let sessions = report(&ledger, &["--since", "24h", "--session"]);
    let s = &sessions[0];
    assert_eq!(s["session"], "019a7c3e-codex-session", "{sessions}");
    assert_eq!(s["cache_read"].as_u64(), Some(read));
    assert!((s["cache_hit_pct"].as_f64().unwrap() - hit).abs() < 1e-6);
    // The table says it in words.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["report", "--since", "24h", "--by", "provider", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("prompt cache") && text.contains("hit %"), "{text}");
}

#[test]
fn the_report_notices_a_five_minute_cache_expiring_between_turns() {
    use tokenfold::dialect::usage::Usage;
    use tokenfold::ledger::{Ledger, Record};
    use tokenfold::price::Price;
    let db = temp_file("expiry.db", "");
    std::fs::remove_file(&db).unwrap();
    let ledger = Ledger::open(&db, Duration::from_secs(86_400 * 365));
    let now = tokenfold::ledger::now_ms();
    let minute = 60_000;
    // (session, minutes before now, cache read, cache write)
    let turns = [
        ("paused", 60, 0, 20_000),
        ("paused", 58, 20_000, 1_000),
        ("paused", 50, 0, 21_500), // 8 minutes later: the whole prefix written again
        ("paused", 49, 21_500, 800),
        ("paused", 40, 0, 22_600), // 9 minutes later: again
        ("busy", 30, 0, 20_000),
        ("busy", 28, 20_000, 900),
        ("busy", 26, 20_900, 700),
        ("busy", 3, 0, 22_000), // 23 minutes later: a 1-hour cache would have kept it too
    ];
    for (session, ago, read, write) in turns {
        let mut r = Record::empty();
        r.ts_ms = now - ago * minute;
        r.session = session.into();
        (r.provider, r.account, r.model, r.route) =
            ("claude".into(), "client".into(), "claude-sonnet-4-5".into(), "r".into());
        r.status = 200;
        r.prices = Price { input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6.0 };
        r.settle(Usage { input: 50, output: 100, cache_read: read, cache_write: write, cache_write_1h: 0 });
        ledger.record(r);
    }
    drop(ledger);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rep = loop {
        let rep = report(&db, &["--since", "2h"]);
        if rep["total"]["requests"] == 9 || std::time::Instant::now() > deadline {
            break rep;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let notice = &rep["cache_expiry"];
    assert_eq!(notice["conversations"], 2, "{notice}");
    assert_eq!(notice["rewrites"], 3, "{notice}");
    assert_eq!(notice["tokens_rewritten"], 21_500 + 22_600 + 22_000, "{notice}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["report", "--since", "2h", "--ledger"])
        .arg(&db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("anthropic_ttl = \"1h\""), "{text}");
}

/// An Anthropic conversation of `turns` tool turns, each output `tag`-ged; `stub_turn` has its
/// output replaced by a short stub (as clearing does).
fn long_conversation(turns: usize, stub_turn: Option<usize>) -> Vec<u8> {
    let mut messages = vec![serde_json::json!({"role": "user", "content": "Find the bug."})];
    for t in 1..=turns {
        let id = format!("toolu_{t}");
        let output = if stub_turn == Some(t) {
            format!("[cleared: re-read src/f{t}.rs]")
        } else {
            file_view(&format!("f{t}"), 30)
        };
        messages.push(serde_json::json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Read", "input": {"n": t}}]}));
        messages.push(serde_json::json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": output}]}));
    }
    serde_json::to_vec(
        &serde_json::json!({"model": "claude-sonnet-4-5", "system": prose("sys", 80), "messages": messages}),
    )
    .unwrap()
}

/// The body as the proxy would send it: breakpoints placed by the planner, with a clearing hint.
fn planned(body: &[u8], cleared: Option<&str>) -> Vec<u8> {
    use tokenfold::dialect::breakpoints;
    let sites = breakpoints::sites(body).unwrap();
    let chosen = tokenfold::cache::plan::place(&sites.sites, 1024, cleared);
    breakpoints::add(body, &sites, &chosen, breakpoints::CacheTtl::FiveMinutes)
}

#[test]
fn a_clearing_hint_far_back_keeps_the_prefix_before_the_cleared_output() {
    // Twenty turns with the planner's breakpoints; then turn 3's output is cleared (40 blocks
    // behind the end): with the hint, the prefix up to it is still read; without, only the
    // system prompt is.
    let mut read = Vec::new();
    for hint in [Some("toolu_3"), None] {
        let cache = PromptCache::new();
        for t in 1..=20 {
            cache.request(&planned(&long_conversation(t, None), None)).unwrap_or_else(|_| panic!());
        }
        let (billed, _) = cache.request(&planned(&long_conversation(21, Some(3)), hint)).unwrap_or_else(|_| panic!());
        read.push(billed.cache_read);
    }
    let system_only = {
        let cache = PromptCache::new();
        let body = serde_json::json!({"model": "claude-sonnet-4-5", "system": prose("sys", 80), "messages": [{"role": "user", "content": "x"}]});
        cache.request(&planned(&serde_json::to_vec(&body).unwrap(), None)).unwrap_or_else(|_| panic!()).0.cache_write
    };
    assert!(read[1] <= system_only + 10, "without the hint only the system prompt is read: {read:?} vs {system_only}");
    assert!(read[0] > read[1] + 1000, "with the hint, the turns before the cleared output are read: {read:?}");
}
