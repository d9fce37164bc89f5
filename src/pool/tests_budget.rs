//! Budgets per candidate (context less requested output, input cap, TPM left), admission of
//! fitted sizes, skips, waiting for a TPM window and ordering by fitted size, on paused time.

use std::time::Duration;

use super::tests::*;
use super::*;

fn fitted_facts(max_output: u64) -> RequestFacts {
    RequestFacts { est_tokens: 50_000, max_output: Some(max_output), fitted: true, ..RequestFacts::default() }
}

/// Three targets shaped like the free tiers: an 8k input cap, 12k TPM, a 40k window.
fn free_tiers(strategy: &str) -> Pool {
    let text = provider("gh", "models = [{ name = \"m\", context = 128000, max_input_tokens = 8000 }]")
        + &provider("groq", "models = [{ name = \"m\", context = 131072, limits = { tpm = 12000 } }]")
        + &provider("cb", "models = [{ name = \"m\", context = 40000, limits = { tpm = 1000000 } }]")
        + &format!("[routes.r]\nstrategy = \"{strategy}\"\ntargets = [\"gh/m\", \"groq/m\", \"cb/m\"]\n");
    pool_from(&text)
}

#[tokio::test(start_paused = true)]
async fn each_target_gets_the_smallest_of_its_limits() {
    let pool = free_tiers("fallback");
    let mut plan = pool.plan(Dialect::Anthropic, Some("r"), &fitted_facts(2000)).unwrap();
    let gh = plan.next_offer().unwrap();
    assert_eq!((gh.budget().tokens, gh.budget().bound), (8000, Bound::InputCap));
    let groq = plan.next_offer().unwrap();
    // An empty window: its whole TPM less the requested output.
    assert_eq!((groq.budget().tokens, groq.budget().bound), (10_000, Bound::Tpm));
    let cb = plan.next_offer().unwrap();
    assert_eq!((cb.budget().tokens, cb.budget().bound), (38_000, Bound::Context));
    assert!(plan.next_offer().is_none());
}

#[tokio::test(start_paused = true)]
async fn tpm_used_lowers_the_budget_and_a_fitted_size_is_what_is_counted() {
    let pool = free_tiers("fallback");
    let facts = fitted_facts(1000);
    let mut plan = pool.plan(Dialect::Anthropic, Some("groq/m"), &facts).unwrap();
    let offer = plan.next_offer().unwrap();
    assert_eq!(offer.budget().tokens, 11_000);
    // The raw request (50k) would never pass; the fitted 6000 tokens are admitted and counted.
    let attempt = plan.admit(offer, 6000).await.expect("the fitted size fits");
    attempt.report(Outcome::Success(None));
    let mut plan = pool.plan(Dialect::Anthropic, Some("groq/m"), &facts).unwrap();
    let offer = plan.next_offer().unwrap();
    // 7000 counted this minute (6000 in, 1000 out reserved and not settled lower): 12000 - 7000 - 1000.
    assert_eq!((offer.budget().tokens, offer.budget().bound), (4000, Bound::Tpm));
    assert_eq!(offer.budget().full_window, 11_000);
    // Over what is left: refused at admission, so no counter ever goes over the limit.
    assert!(plan.admit(offer, 4001).await.is_none());
    assert!(plan.skipped().iter().any(|s| s.contains("TPM 7000+5001/12000")), "{:?}", plan.skipped());
    // The window frees when that minute's second leaves it.
    let mut plan = pool.plan(Dialect::Anthropic, Some("groq/m"), &facts).unwrap();
    let offer = plan.next_offer().unwrap();
    assert_eq!(plan.tpm_wait(&offer, 3000), Some(Duration::ZERO));
    assert_eq!(plan.tpm_wait(&offer, 9000), Some(Duration::from_secs(61)));
    assert_eq!(plan.tpm_wait(&offer, 11_001), None, "never: over the whole window");
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(plan.tpm_wait(&offer, 9000), Some(Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_skip_names_the_reason_for_the_error_and_the_pool_table() {
    let pool = free_tiers("fallback");
    let mut plan = pool.plan(Dialect::Anthropic, Some("r"), &fitted_facts(0)).unwrap();
    while let Some(o) = plan.next_offer() {
        let reason = format!("needs 60,000 tokens, budget {}", o.budget().tokens);
        plan.pass_over(&o, &reason, None);
    }
    let e = plan.nothing_fits();
    assert_eq!((e.status(), e.kind()), (413, "request_too_large"));
    let text = e.to_string();
    assert!(text.contains("gh[default]/m: needs 60,000 tokens, budget 8000"), "{text}");
    assert!(text.contains("groq[default]/m: needs 60,000 tokens, budget 12000"), "{text}");
    let status = pool.pool_status();
    assert!(format!("{status:?}").contains("skipped: needs 60,000 tokens"), "the pool table shows it");
}

#[tokio::test(start_paused = true)]
async fn the_fit_strategy_prefers_the_least_reduction_and_most_remaining_the_quota_left_after() {
    let pool = free_tiers("fit");
    let mut plan = pool.plan(Dialect::Anthropic, Some("r"), &fitted_facts(0)).unwrap();
    assert!(plan.ranks_fitted());
    let idx: Vec<usize> = plan.remaining_offers().iter().map(|o| o.index).collect();
    // gh must cut 20k, groq 9k, cb nothing: cb, groq, gh; one that cannot fit goes last.
    plan.rank_fitted(&[(idx[0], Some((8000, 20_000))), (idx[1], Some((11_000, 9000))), (idx[2], Some((28_000, 0)))]);
    let order: Vec<String> = std::iter::from_fn(|| plan.next_offer()).map(|o| o.provider().to_string()).collect();
    assert_eq!(order, ["cb", "groq", "gh"]);

    // A target demoted after a 5xx goes after the healthy ones, however little it would cut.
    let mut plan = pool.plan(Dialect::Anthropic, Some("r"), &fitted_facts(0)).unwrap();
    while let Some(o) = plan.next_offer() {
        if o.provider() == "cb" {
            let a = plan.admit(o, 100).await.unwrap();
            a.report(Outcome::Failed(Failure::Unavailable { cause: Cause::Status(503), detail: String::new() }));
            break;
        }
    }
    let mut plan = pool.plan(Dialect::Anthropic, Some("r"), &fitted_facts(0)).unwrap();
    let idx: Vec<(usize, String)> =
        plan.remaining_offers().iter().map(|o| (o.index, o.provider().to_string())).collect();
    let size = |p: &str| match p {
        "gh" => Some((8000, 20_000)),
        "groq" => Some((11_000, 9000)),
        _ => Some((28_000, 0)),
    };
    let fitted: Vec<(usize, Option<(u64, u64)>)> = idx.iter().map(|(i, p)| (*i, size(p))).collect();
    plan.rank_fitted(&fitted);
    let order: Vec<String> = std::iter::from_fn(|| plan.next_offer()).map(|o| o.provider().to_string()).collect();
    assert_eq!(order, ["groq", "gh", "cb"]);

    let text = provider("a", "models = [{ name = \"m\", limits = { tpm = 10000 } }]")
        + &provider("b", "models = [{ name = \"m\", limits = { tpm = 20000 } }]")
        + "[routes.r]\nstrategy = \"most-remaining\"\ntargets = [\"a/m\", \"b/m\"]\n";
    let pool = pool_from(&text);
    let mut plan = pool.plan(Dialect::Anthropic, Some("r"), &fitted_facts(0)).unwrap();
    let idx: Vec<usize> = plan.remaining_offers().iter().map(|o| o.index).collect();
    // Fitted to 3000 on `a` (0.7 left after) and 16000 on `b` (0.2 left after): `a` first.
    plan.rank_fitted(&[(idx[0], Some((3000, 0))), (idx[1], Some((16_000, 0)))]);
    assert_eq!(plan.next_offer().unwrap().provider(), "a");
}

#[tokio::test(start_paused = true)]
async fn a_request_may_wait_for_its_window_within_max_wait_and_never_overflows_it() {
    let route = |name: &str, wait: u64| format!("[routes.{name}]\nmax_wait_ms = {wait}\ntargets = [\"groq/m\"]\n");
    let text = provider("groq", "models = [{ name = \"m\", limits = { tpm = 12000 } }]")
        + &route("wait", 70_000)
        + &route("short", 30_000)
        + &route("nowait", 0);
    let pool = pool_from(&text);
    let facts = fitted_facts(500);
    let mut plan = pool.plan(Dialect::Anthropic, Some("wait"), &facts).unwrap();
    let offer = plan.next_offer().unwrap();
    plan.admit(offer, 7500).await.unwrap().report(Outcome::Success(None));
    tokio::time::advance(Duration::from_secs(5)).await;

    // 7,500 more cannot go now; the window frees 61 s after the first request's second.
    let mut plan = pool.plan(Dialect::Anthropic, Some("wait"), &facts).unwrap();
    let offer = plan.next_offer().unwrap();
    assert_eq!(offer.budget().bound, Bound::Tpm);
    let wait = plan.wait_for_window(&offer, 7500).expect("within 70 s");
    assert_eq!(wait, Duration::from_secs(56));
    for (route, allowed) in [("short", false), ("nowait", false)] {
        let mut p = pool.plan(Dialect::Anthropic, Some(route), &facts).unwrap();
        let o = p.next_offer().unwrap();
        assert_eq!(p.wait_for_window(&o, 7500).is_some(), allowed, "{route}");
    }
    // A moment early the window still refuses it: waiting never overflows it.
    tokio::time::sleep(wait - Duration::from_millis(1)).await;
    let mut early = pool.plan(Dialect::Anthropic, Some("wait"), &facts).unwrap();
    let o = early.next_offer().unwrap();
    assert!(early.admit(o, 7500).await.is_none());
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(plan.admit(offer, 7500).await.is_some(), "admitted once the window freed");
}
