//! The request loop the server runs, against four simulated providers with failure injection and
//! tokio's paused clock: plan, try each attempt, classify the answer, report. Three targets fail
//! in different ways; every request is answered and no configured quota is exceeded.

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tokenfold::config::{Config, StoreLocation};
use tokenfold::dialect::usage::Usage;
use tokenfold::dialect::Dialect;
use tokenfold::pool::{classify, Clock, Outcome, Pool, RequestFacts, Verdict};

const CONFIG: &str = r#"
[[providers]]
name = "limited"
kind = "openai"
base_url = "http://limited.test/v1"
api_key = "${K}"

[[providers]]
name = "flaky"
kind = "openai"
base_url = "http://flaky.test/v1"
api_key = "${K}"

[[providers]]
name = "revoked"
kind = "openai"
base_url = "http://revoked.test/v1"
api_key = "${K}"

[[providers]]
name = "healthy"
kind = "openai"
base_url = "http://healthy.test/v1"
api_key = "${K}"
limits = { rpm = 160, tpm = 200000, concurrent = 4 }

[routes.free-coder]
targets = ["limited/m", "flaky/m", "revoked/m", "healthy/m"]
"#;

/// What each simulated provider answers: (status, headers, body).
fn answer(provider: &str, n: usize) -> (u16, HeaderMap, &'static [u8]) {
    let mut h = HeaderMap::new();
    match provider {
        // Rate limited every time, asking for 10 s.
        "limited" => {
            h.insert("retry-after", HeaderValue::from_static("10"));
            (429, h, br#"{"error":{"message":"slow down"}}"#)
        }
        // Down, with an occasional 200 whose body is an error.
        "flaky" if n.is_multiple_of(2) => (503, h, b"upstream connect error"),
        "flaky" => (200, h, b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n"),
        "revoked" => (401, h, br#"{"error":{"message":"invalid api key"}}"#),
        _ => {
            h.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("9999"));
            (200, h, b"data: {\"choices\":[]}\n\n")
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_requests_with_three_failing_targets_all_succeed_within_quota() {
    let cfg = Config::parse(CONFIG, "t.toml", &|_| Some("key".into())).unwrap();
    let pool = Pool::with_store(&cfg, Clock::starting_at(1_751_371_200_000), &StoreLocation::Memory).unwrap();
    let facts = RequestFacts { est_tokens: 500, max_output: Some(100), has_tools: true, ..RequestFacts::default() };
    let mut sent: HashMap<String, usize> = HashMap::new();
    let mut healthy_at: Vec<tokio::time::Instant> = Vec::new();
    let mut client_errors = 0;
    for i in 0..1000 {
        // 2.5 requests a second: 150 a minute, just under the healthy target's 160 RPM.
        tokio::time::advance(Duration::from_millis(400)).await;
        let mut plan = pool.plan(Dialect::OpenaiChat, Some("free-coder"), &facts).unwrap();
        let mut answered = false;
        while let Some(attempt) = plan.next_attempt() {
            let name = attempt.provider().to_string();
            let n = sent.entry(name.clone()).or_default();
            *n += 1;
            let (status, headers, body) = answer(&name, *n);
            if name == "healthy" {
                healthy_at.push(tokio::time::Instant::now());
            }
            attempt.observe_headers(&headers);
            let verdict = match classify(status, &headers, body, pool.clock().now_ms()) {
                None => attempt.report(Outcome::Success(Some(Usage { input: 450, output: 80, ..Usage::default() }))),
                Some(f) => attempt.report(Outcome::Failed(f)),
            };
            match verdict {
                Verdict::Done => {
                    answered = true;
                    break;
                }
                Verdict::TryNext => continue,
                Verdict::ReturnToClient => break,
            }
        }
        if !answered {
            client_errors += 1;
            eprintln!("request {i} failed: {}", plan.exhausted());
        }
    }
    eprintln!("sent per target: {sent:?}");
    assert_eq!(client_errors, 0);
    assert_eq!(sent["healthy"], 1000);
    // Honoured Retry-After: at most one try per 10 s over 400 s.
    assert!(sent["limited"] <= 41, "{sent:?}");
    // The breaker keeps the flaky one out of the way, with a half-open probe now and then
    // (after 30 s, then 60 s, 120 s, 240 s open).
    assert!((4..=8).contains(&sent["flaky"]), "{sent:?}");
    // The refused key is tried once, then disabled.
    assert_eq!(sent["revoked"], 1);
    // Never more than its 160 requests in any 60 s window to the healthy target.
    for (i, t) in healthy_at.iter().enumerate() {
        let in_window = healthy_at[i..].iter().take_while(|u| u.duration_since(*t) < Duration::from_secs(60)).count();
        assert!(in_window <= 160, "{in_window} requests within a minute at #{i}");
    }
    let status = pool.pool_status();
    let health: Vec<&str> = status.providers.iter().map(|p| p.accounts[0].health.as_str()).collect();
    assert_eq!(health[2], "disabled");
    assert_eq!(health[3], "ok");
}

#[tokio::test(start_paused = true)]
async fn once_the_healthy_quota_is_spent_the_answer_is_429_with_a_retry_time() {
    let cfg = Config::parse(CONFIG, "t.toml", &|_| Some("key".into())).unwrap();
    let pool = Pool::with_store(&cfg, Clock::starting_at(1_751_371_200_000), &StoreLocation::Memory).unwrap();
    let facts = RequestFacts { est_tokens: 10, max_output: Some(10), ..RequestFacts::default() };
    let mut last = None;
    for _ in 0..200 {
        match pool.plan(Dialect::OpenaiChat, Some("healthy/m"), &facts) {
            Ok(mut plan) => {
                let a = plan.next_attempt().unwrap();
                a.report(Outcome::Success(None));
            }
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    let e = last.expect("quota must run out");
    assert_eq!(e.status(), 429);
    // The first request's second leaves the rolling minute 61 s after it began.
    assert_eq!(e.retry_after(), Some(Duration::from_secs(61)));
}
