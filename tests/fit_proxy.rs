//! Fitting inside `serve`, against mock free tiers that refuse what the real ones refuse (a
//! GitHub Models-like 8k input cap, a Groq-like 12k TPM, a Cerebras-like 40k window): a growing
//! agent session is answered on every turn and no tier ever sees a request over its limits;
//! tool calls stay paired through fitting and translation; a request that fits nowhere gets a
//! 413 in the caller's dialect naming every target and why; the TPM counters never let a window
//! overflow; the ledger shows the fitting steps.

#[path = "clear_support/mod.rs"]
mod clear_support;
mod common;
#[path = "fit_support/mod.rs"]
mod fit_support;

use std::path::Path;
use std::time::{Duration, Instant};

use clear_support::{request, Dialect};
use common::{spawn_proxy, temp_dir, temp_file, Proxy};
use fit_support::{Tier, BURST_WINDOW, CEREBRAS, GITHUB, GROQ, GROQ_BURST};
use serde_json::{json, Value};

fn start(tiers: &[&Tier], strategy: &str, ledger: &Path) -> Proxy {
    start_waiting(tiers, strategy, 0, ledger)
}

/// A proxy whose route may wait `max_wait_ms` for a TPM window.
fn start_waiting(tiers: &[&Tier], strategy: &str, max_wait_ms: u64, ledger: &Path) -> Proxy {
    let cfg = fit_support::config(tiers, "free", strategy, max_wait_ms, &temp_dir("fit-originals"));
    let path = temp_file("fit.toml", &cfg);
    spawn_proxy(
        &["--config", path.to_str().unwrap()],
        &[("TOKENFOLD_LEDGER", ledger.to_str().unwrap()), ("T_KEY", "k")],
    )
}

async fn send(proxy: &Proxy, dialect: Dialect, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new().post(proxy.url(dialect.path())).body(body.to_string()).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// `report --by KEY --json` rows, once the ledger holds `n` requests.
fn report(ledger: &Path, by: &str, n: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
            .args(["report", "--by", by, "--json", "--ledger", ledger.to_str().unwrap()])
            .output()
            .unwrap();
        let rep: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let key = if by == "mechanism" { "mechanisms" } else { "rows" };
        let total = rep["total"]["requests"].as_u64().unwrap_or(0);
        if let Some(rows) = rep[key].as_array().filter(|_| total >= n) {
            return rows.clone();
        }
        assert!(Instant::now() < deadline, "the ledger never held {n} requests: {rep}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn every_turn_of_a_growing_session_is_answered_within_every_tiers_limits() {
    let (groq, cb, gh) =
        (fit_support::start(GROQ).await, fit_support::start(CEREBRAS).await, fit_support::start(GITHUB).await);
    let ledger = temp_dir("fit-ledger").join("ledger.db");
    let proxy = start(&[&groq, &cb, &gh], "fallback", &ledger);
    // Each turn adds a command and ~2,500 tokens of output: 20 turns are ~50k tokens, past
    // the 40k window; the Groq-like tier takes the first turns until its minute is spent.
    let turns = 20;
    for t in 1..=turns {
        let (status, body) = send(&proxy, Dialect::Anthropic, &request(Dialect::Anthropic, t, "free")).await;
        assert_eq!(status, 200, "turn {t}: {body}\n{}", proxy.logs());
    }
    for (name, tier) in [("groq", &groq), ("cerebras", &cb), ("github", &gh)] {
        assert!(tier.refused().is_empty(), "{name} refused: {:?}", tier.refused());
    }
    let served = [groq.served(), cb.served(), gh.served()];
    assert_eq!(served.iter().sum::<usize>(), turns, "{served:?}");
    assert!(served[0] >= 1 && served[1] >= 1, "both tiers in the way were used: {served:?}");
    // The late turns were over the 40k window (less the 512 output) and were fitted into it.
    let largest = cb.seen.lock().unwrap().served.iter().map(|(i, m)| i + m).max().unwrap();
    assert!(largest <= 40_000, "{largest}");
    let mech = report(&ledger, "mechanism", turns as u64);
    let fit_rows: Vec<&Value> =
        mech.iter().filter(|r| r["key"].as_str().is_some_and(|k| k.starts_with("fit:"))).collect();
    assert!(!fit_rows.is_empty(), "fitting steps are in the ledger: {mech:?}");
    let providers = report(&ledger, "provider", turns as u64);
    let names: Vec<&str> = providers.iter().filter_map(|r| r["key"].as_str()).collect();
    assert!(names.contains(&"t0") && names.contains(&"t1"), "{providers:?}");
}

#[tokio::test]
async fn the_input_cap_is_met_in_every_dialect_with_calls_paired() {
    let gh = fit_support::start(GITHUB).await;
    let ledger = temp_dir("fit-ledger").join("ledger.db");
    let proxy = start(&[&gh], "fallback", &ledger);
    for dialect in [Dialect::Anthropic, Dialect::Chat, Dialect::Responses] {
        let mut answered = 0;
        for t in 1..=10 {
            let (status, body) = send(&proxy, dialect, &request(dialect, t, "free")).await;
            match status {
                200 => answered += 1,
                // Past what every step can bring within 8,000 tokens: refused before sending.
                413 => assert!(body.to_string().contains("budget 8,000"), "{body}"),
                _ => panic!("{dialect:?} turn {t}: {status} {body}\n{}", proxy.logs()),
            }
        }
        assert!(answered >= 4, "{dialect:?}: {answered} turns answered");
    }
    assert!(gh.refused().is_empty(), "{:?}", gh.refused());
    let largest = gh.seen.lock().unwrap().served.iter().map(|(i, _)| *i).max().unwrap();
    assert!(largest <= 8000 && largest > 6000, "fitted close to the cap, not far below: {largest}");
}

#[tokio::test]
async fn a_request_that_fits_nowhere_gets_a_413_naming_every_target() {
    let (gh, groq) = (fit_support::start(GITHUB).await, fit_support::start(GROQ).await);
    let ledger = temp_dir("fit-ledger").join("ledger.db");
    let proxy = start(&[&gh, &groq], "fallback", &ledger);
    // A user message is never cut: 30k tokens of it fit neither target.
    let text: String = (0..6000).map(|i| format!("word{i} ")).collect();
    let anthropic = json!({"model": "free", "max_tokens": 100, "messages": [{"role": "user", "content": text}]});
    let (status, body) = send(&proxy, Dialect::Anthropic, &anthropic).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "request_too_large");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("t0[default]/m: needs ") && msg.contains("budget 8,000"), "{msg}");
    assert!(msg.contains("t1[default]/m: needs ") && msg.contains("budget 11,900"), "{msg}");
    let chat = json!({"model": "free", "max_tokens": 100, "messages": [{"role": "user", "content": text}]});
    let (status, body) = send(&proxy, Dialect::Chat, &chat).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("budget 8,000"), "{body}");
    let responses = json!({"model": "free", "max_output_tokens": 100, "input": text});
    let (status, body) = send(&proxy, Dialect::Responses, &responses).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("t1[default]/m: needs "), "{body}");
    assert!(gh.served() + groq.served() == 0 && gh.refused().is_empty() && groq.refused().is_empty());
}

#[tokio::test]
async fn fitted_sizes_never_overflow_a_tpm_window() {
    let groq = fit_support::start(GROQ).await;
    let ledger = temp_dir("fit-ledger").join("ledger.db");
    let proxy = start(&[&groq], "fallback", &ledger);
    let (mut answered, mut busy) = (0, 0);
    for t in 1..=8 {
        let (status, body) = send(&proxy, Dialect::Anthropic, &request(Dialect::Anthropic, t, "free")).await;
        match status {
            200 => answered += 1,
            // The window is spent: the proxy says so itself, with a retry time.
            429 => {
                busy += 1;
                assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
                let msg = body["error"]["message"].as_str().unwrap_or_default();
                assert!(msg.contains("(retry in ") && msg.contains("budget"), "{msg}");
            }
            _ => panic!("turn {t}: {status} {body}"),
        }
    }
    assert!(busy >= 1, "a burst of 8 turns spends a 12k window");
    assert!(groq.refused().is_empty(), "the provider never had to refuse: {:?}", groq.refused());
    let seen = groq.seen.lock().unwrap();
    let in_window: u64 = seen.served.iter().map(|(i, m)| i + m).sum();
    assert!(answered >= 2 && in_window <= 12_000 + 512 * answered as u64, "{answered} answered, {in_window}");
}

#[tokio::test]
async fn the_fit_strategy_prefers_the_target_that_needs_no_cut() {
    let (gh, cb) = (fit_support::start(GITHUB).await, fit_support::start(CEREBRAS).await);
    let ledger = temp_dir("fit-ledger").join("ledger.db");
    // ~10k tokens: the 8k-input tier comes first in the route but would need cutting.
    let body = request(Dialect::Anthropic, 4, "free");
    let proxy = start(&[&gh, &cb], "fit", &ledger);
    let (status, answer) = send(&proxy, Dialect::Anthropic, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((gh.served(), cb.served()), (0, 1), "`fit` sends it whole to the 40k window");
    let sent_whole = cb.seen.lock().unwrap().served[0].0;
    // `fallback` keeps the route order and cuts it to the first tier's cap instead.
    let proxy = start(&[&gh, &cb], "fallback", &temp_dir("fit-ledger").join("ledger.db"));
    let (status, answer) = send(&proxy, Dialect::Anthropic, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((gh.served(), cb.served()), (1, 1));
    let cut = gh.seen.lock().unwrap().served[0].0;
    assert!(cut <= 8000 && cut < sent_whole, "{cut} vs {sent_whole}");
    assert!(gh.refused().is_empty() && cb.refused().is_empty());
}

/// The `fit:*` rows of the ledger's mechanism report, by name.
fn fit_steps(ledger: &Path, n: u64) -> Vec<String> {
    let mech = report(ledger, "mechanism", n);
    mech.iter().filter_map(|r| r["key"].as_str()).filter(|k| k.starts_with("fit:")).map(str::to_string).collect()
}

/// Two turns of a session, ~11k then ~14.5k tokens (more than the 20k its 2-second window
/// takes), through a route over a Groq-like tier in a burst that may wait `max_wait_ms`: the
/// tier, with every turn answered and none refused, and the ledger's `fit:*` steps.
async fn two_turns_in_a_burst(max_wait_ms: u64) -> (Tier, Vec<String>) {
    let burst = fit_support::start(GROQ_BURST).await;
    let ledger = temp_dir("fit-ledger").join("ledger.db");
    let proxy = start_waiting(&[&burst], "fallback", max_wait_ms, &ledger);
    for turns in [3, 4] {
        let (status, answer) = send(&proxy, Dialect::Anthropic, &request(Dialect::Anthropic, turns, "free")).await;
        assert_eq!(status, 200, "{answer}\n{}", proxy.logs());
    }
    assert!(burst.refused().is_empty(), "the provider never had to refuse: {:?}", burst.refused());
    assert_eq!(burst.served(), 2);
    (burst, fit_steps(&ledger, 2))
}

#[tokio::test]
async fn a_request_waits_for_a_tpm_window_that_resets_within_max_wait_ms() {
    // max_wait_ms 5,000: the provider's headers say the window resets in 2 s, so the second turn
    // waits for it and goes whole.
    let (burst, steps) = two_turns_in_a_burst(5000).await;
    let (served, arrived) = {
        let seen = burst.seen.lock().unwrap();
        (seen.served.clone(), seen.arrived.clone())
    };
    let tpm = GROQ_BURST.tpm.unwrap();
    assert!(served[0].0 + served[1].0 + served[1].1 > tpm, "the window could not take both: {served:?}");
    assert!(arrived[1] - arrived[0] >= BURST_WINDOW, "waited until the reset: {:?}", arrived[1] - arrived[0]);
    assert_eq!(steps, ["fit:wait"], "waited, cut nothing");
    let whole = served[1].0;

    // max_wait_ms 0: the same turn is cut to what the window has left instead.
    let (burst, steps) = two_turns_in_a_burst(0).await;
    let served = burst.seen.lock().unwrap().served.clone();
    assert!(served[1].0 < whole, "cut below the whole {whole}: {served:?}");
    assert!(!steps.is_empty() && !steps.iter().any(|s| s == "fit:wait"), "{steps:?}");
}
