//! Pool behaviour with tokio's paused clock: failure classes, windows, strategies, persistence.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::*;
use crate::config::{Config, StoreLocation};
use crate::dialect::usage::Usage;

/// 2025-07-01T06:50:00Z = 2025-06-30 23:50 in Los Angeles (PDT).
pub(super) const T0: i64 = 1_751_352_600_000;

pub(super) fn env(k: &str) -> Option<String> {
    (k != "UNSET_KEY").then(|| format!("secret-{k}"))
}

pub(super) fn pool_from(text: &str) -> Pool {
    let cfg = Config::parse(text, "t.toml", &env).unwrap();
    Pool::with_store(&cfg, Clock::starting_at(T0), &StoreLocation::Memory).unwrap()
}

pub(super) fn provider(name: &str, extra: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"http://{name}.test/v1\"\napi_key = \"${{{}_KEY}}\"\n{extra}\n",
        name.to_uppercase()
    )
}

/// Three providers `a`, `b`, `c`, each with model `m`, in a route `r` with `strategy`.
pub(super) fn three(strategy: &str, a_extra: &str) -> Pool {
    let mut text = String::new();
    text.push_str(&provider("a", a_extra));
    text.push_str(&provider("b", ""));
    text.push_str(&provider("c", ""));
    text.push_str(&format!("[routes.r]\nstrategy = \"{strategy}\"\ntargets = [\"a/m\", \"b/m\", \"c/m\"]\n"));
    pool_from(&text)
}

/// A request of `est` tokens that allows no output beyond them (so token windows count `est`).
pub(super) fn facts(est: u64) -> RequestFacts {
    RequestFacts { est_tokens: est, max_output: Some(0), ..RequestFacts::default() }
}

/// The provider the next request would go to first.
pub(super) fn first(pool: &Pool, model: &str) -> String {
    let mut plan = pool.plan(Dialect::OpenaiChat, Some(model), &facts(10)).unwrap();
    let a = plan.next_attempt().unwrap();
    let name = a.provider().to_string();
    a.report(Outcome::Success(None));
    name
}

pub(super) fn fail_first(pool: &Pool, model: &str, f: Failure) -> (String, Verdict) {
    let mut plan = pool.plan(Dialect::OpenaiChat, Some(model), &facts(10)).unwrap();
    let a = plan.next_attempt().unwrap();
    let name = a.provider().to_string();
    (name, a.report(Outcome::Failed(f)))
}

pub(super) fn rate_limited(secs: Option<u64>) -> Failure {
    Failure::RateLimited { retry_after: secs.map(Duration::from_secs), detail: "429".into() }
}

pub(super) fn unavailable() -> Failure {
    Failure::Unavailable { cause: Cause::Status(503), detail: "down".into() }
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_cools_that_account_until_the_reset() {
    let pool = three("fallback", "");
    assert_eq!(first(&pool, "r"), "a");
    assert_eq!(fail_first(&pool, "r", rate_limited(Some(30))), ("a".into(), Verdict::TryNext));
    assert_eq!(first(&pool, "r"), "b");
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(first(&pool, "r"), "b");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(first(&pool, "r"), "a");
}

#[tokio::test(start_paused = true)]
async fn a_429_from_classify_honours_the_reset_headers() {
    let pool = three("fallback", "");
    let mut h = HeaderMap::new();
    h.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("0"));
    h.insert("x-ratelimit-reset-requests", HeaderValue::from_static("1m30s"));
    let f = classify(429, &h, b"{}", pool.clock().now_ms()).unwrap();
    fail_first(&pool, "r", f);
    tokio::time::advance(Duration::from_secs(89)).await;
    assert_eq!(first(&pool, "r"), "b");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(first(&pool, "r"), "a");
}

#[tokio::test(start_paused = true)]
async fn a_429_without_a_hint_backs_off_exponentially() {
    let pool = three("fallback", "");
    fail_first(&pool, "r", rate_limited(None));
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(first(&pool, "r"), "b");
    tokio::time::advance(Duration::from_millis(1)).await;
    // The second 429 in a row waits 2 s.
    fail_first(&pool, "r", rate_limited(None));
    tokio::time::advance(Duration::from_millis(1999)).await;
    assert_eq!(first(&pool, "r"), "b");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(first(&pool, "r"), "a");
}

#[tokio::test(start_paused = true)]
async fn daily_quota_is_out_until_midnight_in_the_providers_zone() {
    // `a` resets at midnight Pacific (10 minutes after T0), `b` at midnight UTC (17h10 later).
    let mut text = provider("a", "day_reset_tz = \"America/Los_Angeles\"");
    text.push_str(&provider("b", ""));
    text.push_str(&provider("c", ""));
    text.push_str("[routes.r]\ntargets = [\"a/m\", \"b/m\", \"c/m\"]\n");
    let pool = pool_from(&text);
    let quota = || Failure::QuotaExhausted { retry_after: Some(Duration::from_secs(20)), detail: "per day".into() };
    fail_first(&pool, "r", quota());
    assert_eq!(fail_first(&pool, "r", quota()).0, "b");
    // The provider's 20 s hint is not trusted for a daily quota.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(first(&pool, "r"), "c");
    tokio::time::advance(Duration::from_secs(9 * 60)).await;
    assert_eq!(first(&pool, "r"), "a");
    let status = pool.pool_status();
    let b = &status.providers[1].accounts[0];
    assert_eq!(b.health, "quota-exhausted");
    assert_eq!(b.cooldown.as_ref().unwrap().remaining_s, 17 * 3600);
}

#[tokio::test(start_paused = true)]
async fn configured_rpd_resets_at_the_configured_zone() {
    let text = provider("a", "day_reset_tz = \"America/Los_Angeles\"\nlimits = { rpd = 2 }") + &provider("b", "");
    let pool = pool_from(&(text + "[routes.r]\ntargets = [\"a/m\", \"b/m\"]\n"));
    assert_eq!(first(&pool, "r"), "a");
    assert_eq!(first(&pool, "r"), "a");
    assert_eq!(first(&pool, "r"), "b");
    let a = &pool.pool_status().providers[0].accounts[0];
    assert_eq!((a.windows.rpd.used, a.windows.rpd.left, a.windows.rpd.resets_in_s), (2, Some(0), Some(600)));
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(first(&pool, "r"), "a");
}

#[tokio::test(start_paused = true)]
async fn rpm_and_tpm_skip_a_target_until_the_minute_rolls() {
    let text = provider("a", "limits = { rpm = 100, tpm = 100 }") + &provider("b", "");
    let pool = pool_from(&(text + "[routes.r]\ntargets = [\"a/m\", \"b/m\"]\n"));
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(60)).unwrap();
    let a = plan.next_attempt().unwrap();
    assert_eq!(a.provider(), "a");
    // Settled with the real usage: 90 tokens, so a 20-token request no longer fits.
    a.report(Outcome::Success(Some(Usage { input: 80, output: 10, ..Usage::default() })));
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(20)).unwrap();
    assert_eq!(plan.next_attempt().unwrap().provider(), "b");
    assert!(plan.skipped().iter().any(|s| s.contains("TPM 90+20/100")), "{:?}", plan.skipped());
    tokio::time::advance(Duration::from_secs(60)).await;
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(20)).unwrap();
    assert_eq!(plan.next_attempt().unwrap().provider(), "b", "counted until its whole second has left the minute");
    tokio::time::advance(Duration::from_secs(1)).await;
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(20)).unwrap();
    assert_eq!(plan.next_attempt().unwrap().provider(), "a");
}

#[tokio::test(start_paused = true)]
async fn outages_demote_then_open_the_breaker_then_probe_once() {
    let pool = three("fallback", "");
    // One 5xx: `a` is tried after the healthy ones, but not dropped.
    assert_eq!(fail_first(&pool, "r", unavailable()), ("a".into(), Verdict::TryNext));
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)).unwrap();
    let order: Vec<String> = plan.by_ref().map(|a| a.provider().to_string()).collect();
    assert_eq!(order, ["b", "c", "a"]);
    // Three in a row open the breaker: `a` is not sent anything for 30 s.
    tokio::time::advance(Duration::from_secs(10)).await;
    fail_first(&pool, "r", unavailable());
    tokio::time::advance(Duration::from_secs(10)).await;
    fail_first(&pool, "r", unavailable());
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)).unwrap();
    let order: Vec<String> = plan.by_ref().map(|a| a.provider().to_string()).collect();
    assert_eq!(order, ["b", "c"]);
    assert_eq!(pool.pool_status().providers[0].accounts[0].health, "breaker-open");
    // After it, exactly one probe at a time.
    tokio::time::advance(Duration::from_secs(30)).await;
    let mut p1 = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)).unwrap();
    let probes: Vec<Attempt> = p1.by_ref().filter(|a| a.provider() == "a").collect();
    assert_eq!(probes.len(), 1);
    let mut p2 = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)).unwrap();
    assert!(p2.by_ref().all(|a| a.provider() != "a"));
    // The probe succeeds: closed again, first in line.
    probes.into_iter().for_each(|a| {
        a.report(Outcome::Success(None));
    });
    assert_eq!(first(&pool, "r"), "a");
}

#[tokio::test(start_paused = true)]
async fn a_refused_key_disables_the_account_until_reload() {
    let text = three_text("fallback");
    let pool = pool_from(&text);
    let f = Failure::AuthRejected { status: 401, detail: "bad key".into() };
    assert_eq!(fail_first(&pool, "r", f), ("a".into(), Verdict::TryNext));
    tokio::time::advance(Duration::from_secs(86_400 * 3)).await;
    assert_eq!(first(&pool, "r"), "b");
    assert_eq!(pool.pool_status().providers[0].accounts[0].health, "disabled");
    // A reload tries it again, and keeps what it knew about the others.
    fail_first(&pool, "r", rate_limited(Some(600)));
    let cfg = Config::parse(&text, "t.toml", &env).unwrap();
    let reloaded = pool.reload(&cfg);
    assert_eq!(first(&reloaded, "r"), "a");
    let s = reloaded.pool_status();
    assert_eq!(s.providers[1].accounts[0].health, "rate-limited");
    assert_eq!(s.providers[1].accounts[0].windows.rpd.used, 2);
}

pub(super) fn three_text(strategy: &str) -> String {
    format!(
        "{}{}{}[routes.r]\nstrategy = \"{strategy}\"\ntargets = [\"a/m\", \"b/m\", \"c/m\"]\n",
        provider("a", ""),
        provider("b", ""),
        provider("c", "")
    )
}

#[tokio::test(start_paused = true)]
async fn context_too_long_moves_to_a_larger_window_only() {
    let mut text = provider("small", "models = [{ name = \"m\", context = 8000 }]");
    text.push_str(&provider("same", "models = [{ name = \"m\", context = 8000 }]"));
    text.push_str(&provider("big", "models = [{ name = \"m\", context = 128000 }]"));
    text.push_str("[routes.r]\ntargets = [\"small/m\", \"same/m\", \"big/m\"]\n");
    let pool = pool_from(&text);
    // Our estimate says it fits; the provider says it does not.
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(7000)).unwrap();
    let a = plan.next_attempt().unwrap();
    assert_eq!(a.provider(), "small");
    let body = br#"{"error":{"message":"maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#;
    let f = classify(400, &HeaderMap::new(), body, 0).unwrap();
    assert_eq!(a.report(Outcome::Failed(f)), Verdict::TryNext);
    assert_eq!(plan.next_attempt().unwrap().provider(), "big");
    // A prompt larger than a window is never sent there.
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(9000)).unwrap();
    assert_eq!(plan.next_attempt().unwrap().provider(), "big");
    let err = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(200_000)).err().unwrap();
    assert!(matches!(err, PoolError::NoCapableTarget { .. }) && err.status() == 400, "{err}");
}

#[tokio::test(start_paused = true)]
async fn other_4xx_go_back_to_the_client_without_cooling() {
    let pool = three("fallback", "");
    let f = classify(422, &HeaderMap::new(), br#"{"error":{"message":"bad schema"}}"#, 0).unwrap();
    assert_eq!(fail_first(&pool, "r", f), ("a".into(), Verdict::ReturnToClient));
    assert_eq!(first(&pool, "r"), "a");
}

#[tokio::test(start_paused = true)]
async fn tools_and_images_pick_capable_targets() {
    let mut text = provider("a", "models = [{ name = \"m\", tools = false, images = false }]");
    text.push_str(&provider("b", "models = [{ name = \"m\", images = false }]"));
    text.push_str(&provider("c", "models = [\"m\"]"));
    text.push_str("[routes.r]\ntargets = [\"a/m\", \"b/m\", \"c/m\"]\n");
    let pool = pool_from(&text);
    let pick = |has_tools, has_images| {
        let f = RequestFacts { est_tokens: 1, max_output: None, has_tools, has_images, caller: None, fitted: false };
        let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &f).unwrap();
        plan.next_attempt().unwrap().provider().to_string()
    };
    assert_eq!(pick(false, false), "a");
    assert_eq!(pick(true, false), "b");
    assert_eq!(pick(true, true), "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admission_never_exceeds_a_quota() {
    let text = provider("a", "limits = { rpm = 7, concurrent = 3 }");
    let pool = Arc::new(pool_from(&(text + "[routes.r]\ntargets = [\"a/m\"]\n")));
    let barrier = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (pool, barrier) = (pool.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let attempt = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)).ok().and_then(|mut p| p.next_attempt());
            // Hold it so the concurrency limit is exercised too.
            tokio::time::sleep(Duration::from_millis(20)).await;
            attempt.map(|a| a.report(Outcome::Success(None))).is_some()
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    assert!(admitted <= 3, "concurrency 3 exceeded: {admitted}");
    assert!(admitted >= 1);
    // Sequentially, RPM caps at 7 within the minute.
    let mut more = 0;
    for _ in 0..20 {
        if let Ok(mut p) = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)) {
            if let Some(a) = p.next_attempt() {
                a.report(Outcome::Success(None));
                more += 1;
            }
        }
    }
    assert_eq!(admitted + more, 7);
}

#[tokio::test(start_paused = true)]
async fn a_refused_client_key_goes_back_to_that_client_only() {
    let text =
        "[[providers]]\nname = \"c\"\nkind = \"anthropic\"\nbase_url = \"http://c.test/v1\"\nauth = \"client\"\n\
        [default_upstream]\nanthropic = \"c\"\n";
    let pool = pool_from(text);
    let mut plan = pool.plan(Dialect::Anthropic, Some("claude-x"), &facts(1)).unwrap();
    let f =
        classify(401, &HeaderMap::new(), br#"{"type":"error","error":{"type":"authentication_error"}}"#, 0).unwrap();
    assert_eq!(plan.next_attempt().unwrap().report(Outcome::Failed(f)), Verdict::ReturnToClient);
    let mut plan = pool.plan(Dialect::Anthropic, Some("claude-x"), &facts(1)).unwrap();
    assert!(plan.next_attempt().is_some());
    assert_eq!(pool.pool_status().providers[0].accounts[0].health, "ok");
}

#[tokio::test(start_paused = true)]
async fn status_lists_configured_models_before_any_traffic() {
    let pool = pool_from(&provider("g", "models = [{ name = \"m\", limits = { rpd = 250 } }, \"n\"]"));
    let s = pool.pool_status();
    let models = &s.providers[0].accounts[0].models;
    assert_eq!(models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["m", "n"]);
    assert_eq!(models[0].windows.rpd.left, Some(250));
}

#[tokio::test(start_paused = true)]
async fn answers_the_request_caused_never_count_towards_a_breaker() {
    let pool = three("fallback", "");
    let bad = || Failure::BadRequest { status: 422, detail: "messages: field required".into() };
    let ctx = || Failure::ContextTooLong { detail: "prompt is too long".into() };
    for _ in 0..10 {
        assert_eq!(fail_first(&pool, "r", bad()), ("a".into(), Verdict::ReturnToClient));
        let (_, v) = fail_first(&pool, "r", ctx());
        assert_eq!(v, Verdict::TryNext);
    }
    let a = &pool.pool_status().providers[0].accounts[0];
    assert_eq!((a.health.as_str(), a.consecutive_failures), ("ok", 0), "{a:?}");
    assert_eq!(first(&pool, "r"), "a");
}
