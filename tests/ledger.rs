//! The ledger through the real proxy: one record per request whose figures match what the mock
//! provider reported and what was actually forwarded; `tokenfold report` totals equal to the sum
//! of the records; the cache-aware counterfactual on a hand-computed conversation.

mod common;
mod ledger_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::mock::{self, Recorded, Reply};
use common::{spawn_proxy, temp_file};
use futures_util::StreamExt;
use ledger_support::*;
use tokenfold::dialect::Dialect;
use tokenfold::fold::Folder;

#[tokio::test]
async fn mixed_requests_match_the_provider_and_the_forwarded_bytes() {
    let mock = mock::start(|rec: &Recorded| {
        let body = &rec.body;
        let anthropic = rec.path.ends_with("/messages");
        let u = reported_usage(body, anthropic);
        if rec.path.starts_with("/flaky/") {
            let err = br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#.to_vec();
            return slow_json(503, err, Duration::from_millis(300));
        }
        if rec.path.starts_with("/broken/") {
            let err = br#"{"type":"error","error":{"type":"api_error","message":"down"}}"#.to_vec();
            return Reply::Json { status: 500, body: err, headers: vec![] };
        }
        let text = String::from_utf8_lossy(body);
        if text.contains("case-ratelimited") {
            return Reply::Json {
                status: 429,
                body: br#"{"error":{"message":"slow down"}}"#.to_vec(),
                headers: vec![],
            };
        }
        if rec.path.starts_with("/steady/") {
            return slow_json(200, anthropic_json(u), Duration::from_millis(200));
        }
        if text.contains("\"stream\":true") {
            return Reply::sse(anthropic_sse(u, text.contains("case-cancelled")));
        }
        if anthropic {
            Reply::ok_json(anthropic_json(u))
        } else {
            Reply::ok_json(chat_json(u))
        }
    })
    .await;
    let cfg = temp_file("ledger.toml", &config(&mock.base()));
    let db = temp_file("ledger.db", "");
    std::fs::remove_file(&db).unwrap();
    let proxy = spawn_proxy(
        &["--config", cfg.to_str().unwrap()],
        &[("TOKENFOLD_LEDGER", db.to_str().unwrap()), ("TF_FREE_KEY", "free-key")],
    );
    let c = reqwest::Client::new();
    let sent: Arc<Mutex<HashMap<String, (String, u64)>>> = Arc::default();
    let post = |path: &str, case: &str, body: String| {
        let (c, url, sent, case) = (c.clone(), proxy.url(path), sent.clone(), case.to_string());
        async move {
            let r = c.post(url).header("user-agent", "claude-cli/2.1.0 (external, cli)").body(body.clone()).send();
            let r = r.await.unwrap();
            let saved = r.headers().get("x-tokenfold-saved-tokens").map(|v| v.to_str().unwrap().parse().unwrap());
            sent.lock().unwrap().insert(case, (body, saved.unwrap_or(0)));
            r
        }
    };
    let chat = |case: &str, model: &str| {
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"case-{case}"}}]}}"#)
    };

    // completed: folded (JSON and SSE), unfolded, a fallback (folded too), and a free tier
    post("/v1/messages", "folded", reread("case-folded", "claude-test", false, 60)).await.bytes().await.unwrap();
    post("/v1/messages", "streamed", reread("case-streamed", "claude-test", true, 80)).await.bytes().await.unwrap();
    let unfolded = r#"{"model":"claude-test","max_tokens":10,"messages":[{"role":"user","content":"case-unfolded"}]}"#;
    post("/v1/messages", "unfolded", unfolded.to_string()).await.bytes().await.unwrap();
    post("/v1/messages", "fallback", reread("case-fallback", "coder", false, 40)).await.bytes().await.unwrap();
    post("/v1/chat/completions", "free", chat("free", "free-route")).await.bytes().await.unwrap();
    // errors: the proxy's own (bad JSON), the provider's (429), every target failing (500)
    post("/v1/messages", "badjson", "{nope".into()).await.bytes().await.unwrap();
    post("/v1/chat/completions", "ratelimited", chat("ratelimited", "gpt-test")).await.bytes().await.unwrap();
    let doomed = r#"{"model":"doomed","max_tokens":10,"messages":[{"role":"user","content":"case-doomed"}]}"#;
    post("/v1/messages", "doomed", doomed.to_string()).await.bytes().await.unwrap();
    // cancelled: read the first event, then go away
    let body = reread("case-cancelled", "claude-test", true, 30);
    let mut s = post("/v1/messages", "cancelled", body).await.bytes_stream();
    s.next().await.unwrap().unwrap();
    drop(s);

    let recs = wait_for(&db, 9).await;
    assert_eq!(recs.len(), 9, "{recs:#?}");
    let forwarded: Vec<Recorded> = mock.requests();
    let sent = sent.lock().unwrap().clone();
    // Requests went one after another, and each is recorded before its answer ends: ids follow
    // the order sent.
    let order = ["folded", "streamed", "unfolded", "fallback", "free", "badjson", "ratelimited", "doomed", "cancelled"];
    let by_case: HashMap<&str, &Rec> = order.iter().copied().zip(recs.iter()).collect();

    let fwd = |case: &str| -> &Recorded {
        forwarded
            .iter()
            .rev()
            .find(|f| case_of(&f.body) == case && !f.path.starts_with("/flaky/"))
            .unwrap_or_else(|| panic!("the mock never saw {case}"))
    };
    for case in ["folded", "streamed", "unfolded", "fallback", "free", "cancelled"] {
        let r = by_case[case];
        let f = fwd(case);
        let anthropic = f.path.ends_with("/messages");
        let (input, output, read, write) = reported_usage(&f.body, anthropic);
        // The provider's usage as the mock reported it for the bytes it was actually sent.
        let out_expected = if case == "cancelled" { 1 } else { output };
        assert_eq!(r.usage, (input as i64, out_expected as i64, read as i64, write as i64), "{case}: {r:?}");
        assert_eq!(r.after, (f.body.len() / 4) as i64, "{case}: tokens_after is the mock's estimate of what it got");
        let (original, told) = &sent[case];
        assert_eq!(r.before - r.after, *told as i64, "{case}: the saving the client was told");
        assert_eq!(savings_of(&db, r.id), *told as i64, "{case}: per-mechanism rows sum to it");
        if ["folded", "streamed", "fallback", "cancelled"].contains(&case) {
            assert!(*told > 100 && f.body.len() < original.len(), "{case}: folded ({told} tokens)");
        }
        if case == "unfolded" {
            assert_eq!(&f.body, original.as_bytes(), "nothing to fold: forwarded byte for byte");
            assert_eq!(*told, 0);
        }
        let (pi, po, pr, pw) = if r.free { (FREE_IN, FREE_OUT, FREE_READ, FREE_IN) } else { (IN, OUT, READ, WRITE) };
        let list =
            (r.usage.0 as f64 * pi + r.usage.1 as f64 * po + r.usage.2 as f64 * pr + r.usage.3 as f64 * pw) / 1e6;
        assert!(close(r.list_cost, list), "{case}: list cost {} vs {list}", r.list_cost);
        assert!(close(r.cost, if r.free { 0.0 } else { list }), "{case}: billed {}", r.cost);
        assert!(r.baseline >= r.cost, "{case}");
        assert!(!r.session.is_empty(), "{case}: a session id");
    }
    let ok = |case: &str| by_case[case].outcome.as_str();
    assert_eq!(["folded", "streamed", "unfolded", "fallback", "free"].map(ok), ["completed"; 5], "{by_case:#?}");
    assert_eq!(ok("cancelled"), "cancelled");
    for case in ["badjson", "ratelimited", "doomed"] {
        assert_eq!(ok(case), "error", "{case}");
    }

    // Free tier: billed nothing, recorded at the free account with its list-price value.
    let free = by_case["free"];
    assert!(free.free && free.cost == 0.0 && free.baseline == 0.0 && free.list_cost > 0.0, "{free:?}");
    assert_eq!(
        (free.provider.as_str(), free.account.as_str(), free.route.as_str()),
        ("freebie", "free-acct", "free-route")
    );
    assert_eq!(free.model, "free-model");

    // Fallback: the failed hop and why, the answer from the second target; its 300 ms wait is
    // upstream time, not overhead.
    let fb = by_case["fallback"];
    assert_eq!((fb.provider.as_str(), fb.route.as_str(), fb.fallbacks), ("steady", "coder", 1), "{fb:?}");
    assert!(fb.reasons.starts_with("flaky/client: "), "{fb:?}");
    assert!(fb.upstream_us >= 500_000, "both waits counted as upstream: {fb:?}");
    assert!(fb.overhead_us < 150_000, "failed hops are not overhead: {fb:?}");
    assert!(fb.ttfb_us >= 500_000 && fb.ttfb_us <= fb.latency_ms * 1000 + 1000, "{fb:?}");

    // Failed requests name what failed and the route.
    // Failed requests name what failed and why, and the route; a lone failed target is no hop.
    let rl = by_case["ratelimited"];
    assert_eq!((rl.status, rl.provider.as_str(), rl.account.as_str()), (429, "mock-openai", "client"), "{rl:?}");
    assert_eq!(
        (rl.route.as_str(), rl.error.as_str(), rl.fallbacks),
        ("gpt-test", "mock-openai/client: rate_limited", 0)
    );
    let doomed = by_case["doomed"];
    assert_eq!(
        (doomed.status, doomed.provider.as_str(), doomed.route.as_str()),
        (500, "broken", "doomed"),
        "{doomed:?}"
    );
    assert_eq!((doomed.account.as_str(), doomed.fallbacks), ("client", 0));
    assert!(doomed.error.starts_with("broken/client: "), "{doomed:?}");
    assert_eq!((by_case["badjson"].status, by_case["badjson"].error.as_str()), (400, "malformed_json"));
    assert_eq!(fb.error, "", "the fallback succeeded");
    for r in &recs {
        // overhead + upstream = total (latency is stored in whole ms).
        assert!((r.overhead_us + r.upstream_us - r.latency_ms * 1000).abs() < 1000, "{r:?}");
    }

    // Report totals equal the sum of the records, whatever the grouping.
    let sum_i = |f: &dyn Fn(&Rec) -> i64| recs.iter().map(f).sum::<i64>();
    let sum_f = |f: &dyn Fn(&Rec) -> f64| recs.iter().map(f).sum::<f64>();
    assert_eq!(report(&db, &["--by", "dialect-typo"]).status.code(), Some(2), "a bad --by is refused");
    for by in ["day", "provider", "account", "model", "status", "client", "route", "mechanism"] {
        let rep = report_json(&db, &["--since", "1d", "--by", by]);
        let t = &rep["total"];
        assert_eq!(t["requests"], 9, "{by}: {rep}");
        assert_eq!(t["errors"], 4, "{by}: 3 errors + 1 cancelled");
        assert_eq!(t["fallbacks"], 1, "{by}: one hop, flaky to steady");
        assert_eq!(t["fallbacks"].as_i64().unwrap(), sum_i(&|r| r.fallbacks), "{by}");
        assert_eq!(t["tokens_before"].as_i64().unwrap(), sum_i(&|r| r.before), "{by}");
        assert_eq!(t["tokens_after"].as_i64().unwrap(), sum_i(&|r| r.after), "{by}");
        assert_eq!(t["free_requests"], 1, "{by}");
        assert!(close(t["cost_usd"].as_f64().unwrap(), sum_f(&|r| r.cost)), "{by}: {t}");
        assert!(close(t["baseline_cost_usd"].as_f64().unwrap(), sum_f(&|r| r.baseline)), "{by}: {t}");
        assert!(close(t["free_value_usd"].as_f64().unwrap(), free.list_cost), "{by}: free value counted once");
        let rows = rep["rows"].as_array().unwrap();
        if by != "mechanism" {
            let n: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
            assert_eq!(n, 9, "{by}");
            let cost: f64 = rows.iter().map(|r| r["cost_usd"].as_f64().unwrap()).sum();
            assert!(close(cost, sum_f(&|r| r.cost)), "{by}");
        }
        let saved: i64 =
            rep["mechanisms"].as_array().unwrap().iter().map(|m| m["tokens_saved"].as_i64().unwrap()).sum();
        assert_eq!(saved, sum_i(&|r| r.before - r.after), "{by}: mechanisms sum to the tokens saved");
    }
    // The free request's list price is its value, not a saving.
    let by_provider = report_json(&db, &["--by", "provider"]);
    let freebie = by_provider["rows"].as_array().unwrap().iter().find(|r| r["key"] == "freebie").unwrap().clone();
    assert!(
        close(freebie["baseline_cost_usd"].as_f64().unwrap() - freebie["cost_usd"].as_f64().unwrap(), 0.0),
        "{freebie}"
    );

    let table = String::from_utf8_lossy(&report(&db, &["--by", "client"]).stdout).to_string();
    assert!(table.contains("Claude Code") && table.contains("total"), "{table}");
    let mech = String::from_utf8_lossy(&report(&db, &["--by", "mechanism"]).stdout).to_string();
    assert!(mech.contains("recall %") && mech.contains("elisions") && mech.contains("total"), "{mech}");
    let csv = String::from_utf8_lossy(&report(&db, &["--by", "account", "--csv"]).stdout).to_string();
    assert!(csv.contains("\"freebie/free-acct\",1,"), "{csv}");
}

#[test]
fn folding_tells_this_turns_savings_from_earlier_turns() {
    let folder = Folder::new(true);
    let turn1 = reread("split", "claude-test", false, 60);
    let f1 = folder.fold(Dialect::Anthropic, &Bytes::from(turn1.clone())).expect("the re-read is folded");
    let total = |v: &[(&str, u64)]| v.iter().map(|(_, n)| n).sum::<u64>();
    assert!(f1.saved_tokens > 100);
    assert_eq!(total(&f1.savings_by_mechanism()), f1.saved_tokens);
    assert_eq!(total(&f1.turn_savings), f1.saved_tokens, "the second read is in this turn's blocks");
    let turn2 = next_turn(&turn1, "lib.rs is unchanged", "thanks");
    let f2 = folder.fold(Dialect::Anthropic, &Bytes::from(turn2)).expect("the earlier replacement stays");
    assert_eq!(f2.saved_tokens, f1.saved_tokens, "prefix stability: the same replacement, the same saving");
    assert_eq!(total(&f2.turn_savings), 0, "nothing new was folded in this turn");
    assert!(f2.turn_elisions.is_empty() && f2.turn_recalls.is_empty());
    // A fresh process folds the same way (the split depends on the request, not on caching).
    let f2_cold =
        Folder::new(true).fold(Dialect::Anthropic, &Bytes::from(next_turn(&turn1, "lib.rs is unchanged", "thanks")));
    assert_eq!(total(&f2_cold.unwrap().turn_savings), 0);
}

/// The provider's usage for the two turns of the hand-computed conversation, and for another one.
const TURN1: (u64, u64, u64, u64) = (1_200, 400, 0, 60_000);
const TURN2: (u64, u64, u64, u64) = (900, 300, 60_000, 1_500);

fn cents(usd: f64) -> i64 {
    (usd * 100.0).round() as i64
}

#[tokio::test]
async fn the_cache_aware_counterfactual_matches_a_hand_computed_conversation() {
    let mock = mock::start(|rec: &Recorded| {
        let text = String::from_utf8_lossy(&rec.body);
        Reply::ok_json(anthropic_json(if text.contains("thanks") { TURN2 } else { TURN1 }))
    })
    .await;
    let cfg = temp_file("hand.toml", &config(&mock.base()));
    let db = temp_file("hand.db", "");
    std::fs::remove_file(&db).unwrap();
    let proxy = spawn_proxy(
        &["--config", cfg.to_str().unwrap()],
        &[("TOKENFOLD_LEDGER", db.to_str().unwrap()), ("TF_FREE_KEY", "k")],
    );
    let c = reqwest::Client::new();
    // A 2,000-line file read twice: the second read is folded in turn 1 (this turn's blocks, which
    // the provider writes to its cache) and sits in the cached prefix in turn 2.
    let turn1 = with_session(&reread("hand", "claude-test", false, 2_000), "c0ffee-one");
    let turn2 = next_turn(&turn1, "lib.rs is unchanged", "thanks");
    let other = with_session(&reread("other", "claude-test", false, 10), "c0ffee-two");
    let mut told = Vec::new();
    for body in [&turn1, &turn2, &other] {
        let r = c.post(proxy.url("/v1/messages")).body(body.clone()).send().await.unwrap();
        told.push(r.headers()["x-tokenfold-saved-tokens"].to_str().unwrap().parse::<u64>().unwrap());
        r.bytes().await.unwrap();
    }
    let x = told[0];
    assert!(x > 20_000, "the second read is ~27k tokens: {x}");
    assert_eq!(told[1], x, "turn 2 carries the same replacement");
    let recs = wait_for(&db, 3).await;

    // Turn 1: 1,200 in x $3 + 400 out x $15 + 60,000 cache writes x $3.75 = $0.2346 billed. Without
    // folding the x removed tokens (all in this turn's new blocks) would have been cache writes too.
    let cost1 = (1_200.0 * 3.0 + 400.0 * 15.0 + 60_000.0 * 3.75) / 1e6;
    assert!(close(cost1, 0.2346));
    let baseline1 = cost1 + x as f64 * 3.75 / 1e6;
    // Turn 2: 900 x $3 + 300 x $15 + 60,000 cache reads x $0.30 + 1,500 writes x $3.75 = $0.030825.
    // The removed tokens sit in the prefix the provider read from its cache: cache reads.
    let cost2 = (900.0 * 3.0 + 300.0 * 15.0 + 60_000.0 * 0.3 + 1_500.0 * 3.75) / 1e6;
    assert!(close(cost2, 0.030825));
    let baseline2 = cost2 + x as f64 * 0.3 / 1e6;
    for (r, cost, baseline) in [(&recs[0], cost1, baseline1), (&recs[1], cost2, baseline2)] {
        assert_eq!(r.session, "c0ffee-one", "Claude Code's metadata names the session");
        assert_eq!(cents(r.cost), cents(cost), "{r:?}");
        assert_eq!(cents(r.baseline), cents(baseline), "{r:?}: expected ${baseline:.4}");
        assert!(close(r.baseline, baseline), "{} vs {baseline}", r.baseline);
    }
    // The old rule (every removed token at the full input rate) is off by cents here: the test
    // tells the two apart.
    assert_ne!(cents(cost2 + x as f64 * 3.0 / 1e6), cents(baseline2));
    assert_ne!(cents(cost1 + x as f64 * 3.0 / 1e6), cents(baseline1));

    // `report --session`: a unique prefix or the id shows the conversation; totals are the sums.
    for id in ["c0ffee-one", "c0ffee-o"] {
        let rep = report_json(&db, &["--session", id]);
        assert_eq!(rep["session"], "c0ffee-one");
        assert_eq!(rep["total"]["requests"], 2);
        assert_eq!(cents(rep["total"]["cost_usd"].as_f64().unwrap()), cents(cost1 + cost2));
        assert_eq!(cents(rep["total"]["baseline_cost_usd"].as_f64().unwrap()), cents(baseline1 + baseline2));
    }
    let rep = report_json(&db, &["--session", "c0ffee-two"]);
    assert_eq!(rep["total"]["requests"], 1);
    // Without an id, or with a prefix several share: the conversations are listed, newest first.
    for args in [&["--session"][..], &["--session", "c0ffee"][..]] {
        let out = report(&db, args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let (a, b) = (text.find("c0ffee-two").unwrap(), text.find("c0ffee-one").unwrap());
        assert!(a < b, "newest first:\n{text}");
    }
    let listed = report_json(&db, &["--session"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[1]["requests"], 2);
    let out = report(&db, &["--session", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no conversation id starts with `nobody`"));
}
