//! 1,000 requests over real HTTP through the real `serve` binary to a route of four mock
//! providers, three of them failing in different ways, with quotas tight enough to bind.
//! Every request is answered, and the mocks' own records show that no configured quota (RPM,
//! TPM, concurrency) of any target was ever exceeded.

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{spawn_proxy, temp_file};
use faults::{End, Fault, FaultMock, Seen};
use serde_json::json;

const REQUESTS: usize = 1000;
const CLIENTS: usize = 8;
const MAX_TOKENS: u64 = 300;
const COMPLETION: u64 = 200;

/// Quotas per target: (name, rpm, tpm, concurrent).
const LIMITS: [(&str, u64, u64, usize); 4] = [
    // Rate-limits itself on every 50th request (429, Retry-After: 1); TPM and concurrency bind.
    ("limited", 1000, 15_000, 2),
    // 503, reset before the first byte, a stall past first_byte_ms, in turn with answers; RPM and
    // concurrency bind.
    ("flaky", 20, 1_000_000, 1),
    // Answers 200 with an error body, or a 200 stream that breaks before its first event: the
    // breaker keeps it out of the way.
    ("broken", 1000, 1_000_000, 4),
    // Always answers.
    ("healthy", 3000, 3_000_000, CLIENTS),
];

/// What the provider bills for a request body: a fixed share of its size (below the proxy's
/// bytes/4 estimate) plus the completion.
fn billed(req: &Seen) -> (u64, u64) {
    (req.body.len() as u64 / 8, COMPLETION)
}

/// A provider's answer, after a little latency (so requests overlap as at a real provider, and
/// the run lasts long enough for quotas to bind).
fn answer(req: &Seen) -> Fault {
    Fault::Delay(Duration::from_millis(20), Box::new(answer_now(req)))
}

fn answer_now(req: &Seen) -> Fault {
    let (prompt, completion) = billed(req);
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    if req.json()["stream"] == json!(true) {
        let head = r#"{"id":"chatcmpl-load","object":"chat.completion.chunk","created":1,"model":"m","#;
        Fault::sse(vec![
            format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"fine\"}},\"finish_reason\":null}}]}}\n\n").into_bytes(),
            format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}],\"usage\":{usage}}}\n\n").into_bytes(),
            b"data: [DONE]\n\n".to_vec(),
        ])
    } else {
        let body = json!({
            "id": "chatcmpl-load", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
            "usage": usage,
        });
        Fault::json(200, serde_json::to_vec(&body).unwrap())
    }
}

async fn start_mocks() -> Vec<FaultMock> {
    let limited = faults::start(|req, n| {
        if n % 50 == 49 {
            Fault::json(429, br#"{"error":{"message":"Rate limit reached, try again in 1s"}}"#.to_vec())
                .with_header("retry-after", "1")
        } else {
            answer(req)
        }
    })
    .await;
    let flaky = faults::start(|req, n| match n % 6 {
        0 => Fault::json(503, br#"{"error":{"message":"no healthy upstream"}}"#.to_vec()),
        2 => Fault::Reset,
        4 => Fault::Hang(Duration::from_secs(5)),
        _ => answer(req),
    })
    .await;
    let broken = faults::start(|_, n| {
        if n % 2 == 0 {
            Fault::json(200, br#"{"error":{"message":"internal failure","code":500}}"#.to_vec())
        } else {
            Fault::Stream { chunks: vec![], gap: Duration::ZERO, end: End::Reset }
        }
    })
    .await;
    let healthy = faults::start(|req, _| answer(req)).await;
    vec![limited, flaky, broken, healthy]
}

fn config(mocks: &[FaultMock]) -> String {
    let mut s = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nconnect_ms = 1000\nfirst_byte_ms = 300\nidle_ms = 2000\n\
         [fold]\nenabled = false\n\
         [pool]\nstore = \"memory\"\nshort_cooldown_ms = 20\nbreaker_failures = 3\nbreaker_open_ms = 2000\n",
    );
    for ((name, rpm, tpm, concurrent), mock) in LIMITS.iter().zip(mocks) {
        s.push_str(&format!(
            "[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"${{TF_TEST_KEY}}\"\n\
             limits = {{ rpm = {rpm}, tpm = {tpm}, concurrent = {concurrent} }}\n",
            mock.base()
        ));
    }
    s.push_str("[routes.free]\ntargets = [\"limited/m\", \"flaky/m\", \"broken/m\", \"healthy/m\"]\n");
    s
}

/// The most requests, and billed tokens, the mock saw within any 60 s (`bills(n)`: whether the
/// n-th request it got was billed).
fn busiest_minute(seen: &[Seen], bills: impl Fn(usize) -> bool) -> (usize, u64) {
    let mut most = (0, 0);
    for first in seen {
        let within = |s: &Seen| s.arrived >= first.arrived && s.arrived - first.arrived < Duration::from_secs(60);
        let requests = seen.iter().filter(|s| within(s)).count();
        let tokens: u64 = seen
            .iter()
            .enumerate()
            .filter(|(n, s)| within(s) && bills(*n))
            .map(|(_, s)| billed(s).0 + billed(s).1)
            .sum();
        most = (most.0.max(requests), most.1.max(tokens));
    }
    most
}

/// Whether a target bills the n-th request it gets (it answered it, see `start_mocks`).
fn bills(name: &str, n: usize) -> bool {
    match name {
        "limited" => n % 50 != 49,
        "flaky" => n % 2 == 1,
        "broken" => false,
        _ => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_requests_through_four_targets_three_failing_are_all_answered_within_every_quota() {
    let mocks = start_mocks().await;
    let path = temp_file("pool-load.toml", &config(&mocks));
    let proxy =
        spawn_proxy(&["--config", path.to_str().unwrap()], &[("TF_TEST_KEY", "sk-test"), ("TOKENFOLD_LEDGER", "off")]);
    let url = proxy.url("/v1/chat/completions");
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (url, next) = (url.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= REQUESTS {
                    return failures;
                }
                let body = json!({
                    "model": "free",
                    "stream": i % 5 == 0,
                    "max_tokens": MAX_TOKENS,
                    "messages": [{"role": "user", "content": format!("request {i}: {}", "lorem ipsum ".repeat(30))}],
                });
                let resp = http.post(&url).json(&body).send().await.unwrap();
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                if status != 200 || !text.contains("fine") || text.contains("\"error\"") {
                    failures.push(format!("request {i}: {status} {}", &text[..text.len().min(300)]));
                }
            }
        }));
    }
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    let served: Vec<usize> = mocks.iter().map(FaultMock::count).collect();
    eprintln!("requests seen per target (limited, flaky, broken, healthy): {served:?}");
    assert!(
        failures.is_empty(),
        "{} client-visible errors, first: {:?}\n{}",
        failures.len(),
        failures.first(),
        proxy.logs()
    );

    for ((name, rpm, tpm, concurrent), mock) in LIMITS.iter().zip(&mocks) {
        let seen = mock.seen();
        let (requests, tokens) = busiest_minute(&seen, |n| bills(name, n));
        eprintln!(
            "{name}: {} requests, busiest minute {requests} (RPM {rpm}), {tokens} tokens (TPM {tpm}), \
             {} in flight at most (limit {concurrent})",
            seen.len(),
            mock.max_in_flight()
        );
        assert!(requests as u64 <= *rpm, "{name}: {requests} requests within a minute, RPM {rpm}");
        assert!(tokens <= *tpm, "{name}: {tokens} tokens within a minute, TPM {tpm}");
        assert!(mock.max_in_flight() <= *concurrent, "{name}: {} in flight, limit {concurrent}", mock.max_in_flight());
    }
    // The quotas bound: they are what held the traffic back, not luck.
    let [limited, flaky, ..] = &mocks[..] else { unreachable!() };
    let (_, limited_tokens) = busiest_minute(&limited.seen(), |n| bills("limited", n));
    assert!(limited_tokens > 15_000 * 8 / 10, "limited's TPM never bound: {limited_tokens} tokens");
    assert_eq!(limited.max_in_flight(), 2, "limited's concurrency never bound");
    assert_eq!(flaky.count(), 20, "flaky's RPM never bound");
    assert!(flaky.max_in_flight() == 1 && served[3] < REQUESTS, "{served:?}");
}
