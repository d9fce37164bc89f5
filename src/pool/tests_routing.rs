//! Strategies, concurrency, resolution, accounts, `--upstream`, persistence and status.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::tests::*;
use super::upstream::Phase;
use super::*;
use crate::config::{Config, StoreLocation};

#[tokio::test(start_paused = true)]
async fn round_robin_rotates() {
    let pool = three("round-robin", "");
    let picks: Vec<String> = (0..6).map(|_| first(&pool, "r")).collect();
    assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn most_remaining_spreads_by_quota_left() {
    let mut text = provider("a", "limits = { rpd = 10 }");
    text.push_str(&provider("b", "limits = { rpd = 4 }"));
    text.push_str("[routes.r]\nstrategy = \"most-remaining\"\ntargets = [\"a/m\", \"b/m\"]\n");
    let pool = pool_from(&text);
    // a: 10/10 left vs b: 4/4 -> tie, route order; then a 9/10 < b 4/4 -> b; ...
    let picks: Vec<String> = (0..4).map(|_| first(&pool, "r")).collect();
    assert_eq!(picks, ["a", "b", "a", "a"]);
}

#[tokio::test(start_paused = true)]
async fn fastest_follows_the_latency_ewma() {
    let pool = three("fastest", "");
    let timed = |ms: u64| {
        let pool = &pool;
        async move {
            let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)).unwrap();
            let mut a = plan.next_attempt().unwrap();
            tokio::time::advance(Duration::from_millis(ms)).await;
            a.mark_first_byte();
            let name = a.provider().to_string();
            a.report(Outcome::Success(None));
            name
        }
    };
    // Unmeasured targets are tried first, in route order.
    assert_eq!(timed(300).await, "a");
    assert_eq!(timed(100).await, "b");
    assert_eq!(timed(200).await, "c");
    assert_eq!(first(&pool, "r"), "b");
}

#[tokio::test(start_paused = true)]
async fn provider_headers_correct_the_quota() {
    let pool = three("fallback", "");
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)).unwrap();
    let a = plan.next_attempt().unwrap();
    let mut h = HeaderMap::new();
    h.insert("anthropic-ratelimit-requests-remaining", HeaderValue::from_static("0"));
    h.insert("anthropic-ratelimit-requests-limit", HeaderValue::from_static("50"));
    h.insert("anthropic-ratelimit-requests-reset", HeaderValue::from_static("2025-07-01T06:50:45Z"));
    a.observe_headers(&h);
    a.report(Outcome::Success(None));
    assert_eq!(first(&pool, "r"), "b");
    tokio::time::advance(Duration::from_secs(45)).await;
    assert_eq!(first(&pool, "r"), "a");
}

#[tokio::test(start_paused = true)]
async fn an_unreported_attempt_releases_its_reservation() {
    let text = provider("a", "limits = { rpm = 1 }") + "[routes.r]\ntargets = [\"a/m\"]\n";
    let pool = pool_from(&text);
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)).unwrap();
    drop(plan.next_attempt().unwrap());
    assert_eq!(first(&pool, "r"), "a");
    let err = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)).err().unwrap();
    assert!(
        // The request's second leaves the rolling minute 61 s after it began.
        matches!(&err, PoolError::Exhausted { retry_after: Some(d), .. } if *d == Duration::from_secs(61)),
        "{err}"
    );
    assert_eq!(err.status(), 429);
}

#[tokio::test(start_paused = true)]
async fn resolution_routes_models_aliases_and_default_upstream() {
    let mut text = provider("g", "models = [{ name = \"gemini-2.5-flash\", aliases = [\"flash\"] }]");
    text.push_str(&provider("off", "").replace("${OFF_KEY}", "${UNSET_KEY}"));
    text.push_str(
        "[[providers]]\nname = \"client\"\nkind = \"anthropic\"\nbase_url = \"http://c.test/v1\"\nauth = \"client\"\n",
    );
    text.push_str("[default_upstream]\nanthropic = \"client\"\n");
    let pool = pool_from(&text);
    let plan_of = |d, m: &str| {
        let mut p = pool.plan(d, Some(m), &facts(1))?;
        let a = p.next_attempt().unwrap();
        Ok::<_, PoolError>((a.provider().to_string(), a.send_model().map(str::to_string)))
    };
    assert_eq!(plan_of(Dialect::OpenaiChat, "flash").unwrap(), ("g".into(), Some("gemini-2.5-flash".into())));
    assert_eq!(plan_of(Dialect::OpenaiChat, "g/flash").unwrap(), ("g".into(), Some("gemini-2.5-flash".into())));
    assert_eq!(plan_of(Dialect::Anthropic, "claude-x").unwrap(), ("client".into(), None));
    assert!(matches!(plan_of(Dialect::OpenaiChat, "off/m"), Err(PoolError::KeyMissing { .. })));
    assert!(matches!(plan_of(Dialect::OpenaiChat, "nothing"), Err(PoolError::NoRoute { .. })));
    // The default upstream's first target, for its model list.
    assert_eq!(pool.default_target(Dialect::Anthropic).unwrap().provider.name, "client");
    assert!(pool.default_target(Dialect::OpenaiChat).is_none());
}

#[tokio::test(start_paused = true)]
async fn accounts_are_tried_in_order_each_with_its_own_key() {
    let text = "[[providers]]\nname = \"g\"\nkind = \"openai\"\nbase_url = \"http://g.test/v1\"\n\
        accounts = [{ label = \"one\", api_key = \"${K1}\" }, { label = \"off\", api_key = \"${UNSET_KEY}\" }, { label = \"two\", api_key = \"${K2}\" }]\n\
        [routes.r]\ntargets = [\"g/m\"]\n";
    let pool = pool_from(text);
    fail_first(&pool, "r", rate_limited(Some(60)));
    let mut plan = pool.plan(Dialect::OpenaiChat, Some("r"), &facts(1)).unwrap();
    let a = plan.next_attempt().unwrap();
    assert_eq!(a.account(), "two");
    assert!(matches!(&a.target().provider.auth, crate::config::ProviderAuth::Key { var, .. } if var == "K2"));
}

#[tokio::test(start_paused = true)]
async fn repeated_upstream_flags_make_one_fallback_route() {
    let cfg = Config::upstreams(&["http://one.test", "http://two.test/v1"], None).unwrap();
    let pool = Pool::with_store(&cfg, Clock::starting_at(T0), &StoreLocation::Memory).unwrap();
    let mut plan = pool.plan(Dialect::Anthropic, Some("claude-x"), &facts(1)).unwrap();
    let a = plan.next_attempt().unwrap();
    assert_eq!(a.target().provider.base_url, "http://one.test/v1");
    assert_eq!(
        a.report(Outcome::Failed(Failure::from(&UpstreamError::Timeout {
            provider: "upstream-anthropic".into(),
            phase: Phase::FirstByte,
            secs: 1.0,
        }))),
        Verdict::TryNext
    );
    assert_eq!(plan.next_attempt().unwrap().target().provider.base_url, "http://two.test/v1");
    assert!(plan.next_attempt().is_none());
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tokenfold-pool-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("state/tokenfold.db")
}

#[tokio::test(start_paused = true)]
async fn a_restart_keeps_counters_and_cooldowns() {
    let db = temp_db("restart");
    let text = format!(
        "[pool]\nstore = \"{}\"\n{}{}[routes.r]\ntargets = [\"a/m\", \"b/m\"]\n",
        db.display(),
        provider("a", "limits = { rpd = 100 }"),
        provider("b", "limits = { rpd = 100 }")
    );
    let cfg = Config::parse(&text, "t.toml", &env).unwrap();
    {
        let pool = Pool::new(&cfg);
        assert_eq!(pool.store_path(), Some(db.as_path()));
        assert_eq!(first(&pool, "r"), "a");
        assert_eq!(first(&pool, "r"), "a");
        fail_first(&pool, "r", rate_limited(Some(3600)));
        assert_eq!(first(&pool, "r"), "b");
        pool.flush();
    }
    assert!(db.is_file());
    let pool = Pool::new(&cfg);
    let s = pool.pool_status();
    let (a, b) = (&s.providers[0].accounts[0], &s.providers[1].accounts[0]);
    assert_eq!((a.windows.rpd.used, b.windows.rpd.used), (3, 1));
    assert_eq!(a.health, "rate-limited");
    assert_eq!(first(&pool, "r"), "b");
    let _ = std::fs::remove_dir_all(db.parent().and_then(|p| p.parent()).unwrap());
}

#[tokio::test(start_paused = true)]
async fn status_is_serializable_and_says_why() {
    let pool = three("fallback", "");
    fail_first(&pool, "r", rate_limited(Some(90)));
    let json = serde_json::to_value(pool.pool_status()).unwrap();
    let a = &json["providers"][0]["accounts"][0];
    assert_eq!(a["health"], "rate-limited");
    assert_eq!(a["cooldown"]["remaining_s"], 90);
    assert!(a["last_error"].as_str().unwrap().contains("rate limited"));
    assert_eq!(json["routes"][0]["targets"][1], "b/m");
}

#[tokio::test(start_paused = true)]
async fn each_caller_of_a_client_auth_account_has_its_own_limits_also_after_a_reload() {
    let text = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://p.test/v1\"\nauth = \"client\"\n\
                limits = { rpm = 2 }\n[default_upstream]\nopenai-chat = \"p\"\n";
    let cfg = Config::parse(text, "t.toml", &env).unwrap();
    let pool = Pool::with_store(&cfg, Clock::starting_at(T0), &StoreLocation::Memory).unwrap();
    let caller = |key: &str| {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_str(&format!("Bearer {key}")).unwrap());
        Caller::from_headers(&h, None)
    };
    let send = |pool: &Pool, who: Option<Caller>| {
        let f = RequestFacts { caller: who, ..facts(1) };
        let mut plan = pool.plan(Dialect::OpenaiChat, Some("any-model"), &f).ok()?;
        plan.next_attempt().map(|a| a.report(Outcome::Success(None)))
    };
    let (a, b) = (caller("sk-a"), caller("sk-b"));
    assert!(send(&pool, a).is_some() && send(&pool, a).is_some());
    assert!(send(&pool, a).is_none(), "the caller's own rpm is spent");
    assert!(send(&pool, b).is_some(), "another caller's is not");
    assert!(send(&pool, None).is_some(), "nor the account's own");
    let pool = pool.reload(&cfg);
    assert!(send(&pool, a).is_none(), "a reload keeps the caller's count");
    assert!(send(&pool, b).is_some());
    let s = pool.pool_status();
    let rows = &s.providers[0].accounts;
    assert_eq!(rows.len(), 3, "the account's own row and one per caller");
    let a_row = rows.iter().find(|r| r.caller.as_deref() == Some(&a.unwrap().to_string()[..])).unwrap();
    assert_eq!(a_row.windows.rpm.used, 2);
    assert_eq!(a_row.models[0].name, "any-model");
}
