//! Quota details with tokio's paused clock: per-model limits, limits learned from headers at
//! the account and the model, the output allowance, and reservations carried over a reload.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::tests::*;
use super::*;
use crate::config::Config;
use crate::dialect::usage::Usage;

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[tokio::test(start_paused = true)]
async fn a_per_model_limit_refuses_a_request_the_account_would_take() {
    // The account has no limits; its model `small` allows 1 request and 500 tokens a minute.
    let text = provider("a", "models = [{ name = \"small\", limits = { rpm = 1, tpm = 500 } }, \"big\"]")
        + "[routes.r]\ntargets = [\"a/small\"]\n";
    let pool = pool_from(&text);
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(100)).unwrap();
    plan.next_attempt().unwrap().report(Outcome::Success(None));
    let e = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(100)).err().expect("the model's RPM is spent");
    assert_eq!(e.status(), 429);
    assert!(e.to_string().contains("a[default]/small: RPM 1/1"), "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(61)));
    // The account's other model is not limited.
    assert_eq!(first(&pool, "a/big"), "a");
    // A request larger than the model's whole TPM is refused without a retry time.
    tokio::time::advance(Duration::from_secs(61)).await;
    let e = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(600)).err().expect("too large for the model");
    assert!(e.to_string().contains("request of ~600 tokens exceeds TPM 500"), "{e}");
    assert_eq!(e.retry_after(), None);
}

#[tokio::test(start_paused = true)]
async fn account_wide_headers_correct_the_account_and_replace_its_limit() {
    // OpenRouter-like: one key, limits for the whole account, several models.
    let text = provider("o", "limits = { rpm = 20 }\nmodels = [\"x\", \"y\"]")
        + &provider("b", "")
        + "[routes.rx]\ntargets = [\"o/x\", \"b/m\"]\n[routes.ry]\ntargets = [\"o/y\", \"b/m\"]\n";
    let pool = pool_from(&text);
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("rx"), &facts(10)).unwrap();
    let a = plan.next_attempt().unwrap();
    a.observe_headers(&headers(&[
        ("x-ratelimit-limit", "5".into()),
        ("x-ratelimit-remaining", "0".into()),
        ("x-ratelimit-reset", (T0 + 10_000).to_string()),
    ]));
    a.report(Outcome::Success(None));
    // The account is spent: another model of it is skipped too.
    assert_eq!(first(&pool, "ry"), "b");
    let s = pool.pool_status();
    assert_eq!(s.providers[0].accounts[0].windows.rpm.limit, Some(5), "the header's limit replaces 20");
    tokio::time::advance(Duration::from_secs(11)).await;
    // The provider's window reset; its limit of 5 a minute still holds (1 used so far).
    for _ in 0..4 {
        assert_eq!(first(&pool, "ry"), "o");
    }
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("rx"), &facts(10)).unwrap();
    assert_eq!(plan.next_attempt().unwrap().provider(), "b");
    assert!(plan.skipped().iter().any(|r| r.contains("RPM 5/5")), "{:?}", plan.skipped());
}

#[tokio::test(start_paused = true)]
async fn per_model_headers_leave_the_other_models_alone() {
    let text = provider("g", "rate_limit_scope = \"model\"\nmodels = [\"x\", \"y\"]")
        + &provider("b", "")
        + "[routes.rx]\ntargets = [\"g/x\", \"b/m\"]\n[routes.ry]\ntargets = [\"g/y\", \"b/m\"]\n";
    let pool = pool_from(&text);
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("rx"), &facts(10)).unwrap();
    let a = plan.next_attempt().unwrap();
    a.observe_headers(&headers(&[
        ("x-ratelimit-remaining-requests", "0".into()),
        ("x-ratelimit-reset-requests", "30s".into()),
    ]));
    a.report(Outcome::Success(None));
    assert_eq!(first(&pool, "rx"), "b");
    assert_eq!(first(&pool, "ry"), "g");
}

#[tokio::test(start_paused = true)]
async fn the_output_a_request_allows_is_reserved_until_its_usage_settles() {
    let text =
        provider("a", "limits = { tpm = 3000 }") + &provider("b", "") + "[routes.r]\ntargets = [\"a/m\", \"b/m\"]\n";
    let pool = pool_from(&text);
    let asks = |max_output: Option<u64>| RequestFacts { est_tokens: 500, max_output, ..RequestFacts::default() };
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &asks(Some(2000))).unwrap();
    let in_flight = plan.next_attempt().unwrap();
    assert_eq!(in_flight.provider(), "a");
    // 2500 reserved: a second such request would overshoot a's 3000 if both used their output.
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &asks(Some(2000))).unwrap();
    assert_eq!(plan.next_attempt().unwrap().provider(), "b");
    assert!(plan.skipped().iter().any(|r| r.contains("TPM 2500+2500/3000")), "{:?}", plan.skipped());
    // Settled at 2000 real tokens: 1000 are left.
    in_flight.report(Outcome::Success(Some(Usage { input: 500, output: 1500, ..Usage::default() })));
    let pick = |f: RequestFacts| {
        pool.plan(Dialect::OpenaiChat, Some("r"), &f).unwrap().next_attempt().unwrap().provider().to_string()
    };
    assert_eq!(pick(asks(Some(600))), "b");
    // Without `max_tokens`, a default allowance is reserved.
    assert_eq!(pick(asks(None)), "b", "500 + {DEFAULT_OUTPUT_ALLOWANCE} does not fit in 1000");
    assert_eq!(pick(asks(Some(500))), "a");
    // A request that cannot fit a's window even when empty is not sent there.
    tokio::time::advance(Duration::from_secs(61)).await;
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &asks(Some(4000))).unwrap();
    assert_eq!(plan.next_attempt().unwrap().provider(), "b");
    assert!(
        plan.skipped().iter().any(|r| r.contains("request of ~4500 tokens exceeds TPM 3000")),
        "{:?}",
        plan.skipped()
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_carries_in_flight_reservations_and_their_reports_land_in_the_new_pool() {
    let text = provider("a", "limits = { concurrent = 1 }")
        + &provider("b", "")
        + "[routes.r]\ntargets = [\"a/m\", \"b/m\"]\n";
    let pool = pool_from(&text);
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(10)).unwrap();
    let in_flight = plan.next_attempt().unwrap();
    assert_eq!(in_flight.provider(), "a");
    assert!(pool.plan(Dialect::OpenaiChat, Some("a/m"), &facts(10)).is_err(), "a is busy");
    let reloaded = pool.reload(&Config::parse(&text, "t.toml", &env).unwrap());
    // The new pool knows a's one slot is taken.
    assert_eq!(reloaded.pool_status().providers[0].accounts[0].in_flight, 1);
    assert_eq!(first(&reloaded, "r"), "b");
    // The old attempt's 429 cools a in the new pool, and frees its slot there.
    in_flight.report(Outcome::Failed(rate_limited(Some(30))));
    let a = &reloaded.pool_status().providers[0].accounts[0];
    assert_eq!((a.in_flight, a.health.as_str()), (0, "rate-limited"));
    assert_eq!(first(&reloaded, "r"), "b");
    tokio::time::advance(Duration::from_secs(31)).await;
    // An attempt never reported (cancelled) releases its slot in the new pool too.
    let mut plan = reloaded.plan(Dialect::OpenaiChat, Some("r"), &facts(10)).unwrap();
    let cancelled = plan.next_attempt().unwrap();
    assert_eq!(cancelled.provider(), "a");
    let again = reloaded.reload(&Config::parse(&text, "t.toml", &env).unwrap());
    assert_eq!(again.pool_status().providers[0].accounts[0].in_flight, 1);
    drop(cancelled);
    assert_eq!(again.pool_status().providers[0].accounts[0].in_flight, 0);
    assert_eq!(first(&again, "r"), "a");
    drop(plan);
}
