//! One ledger record per request, and the small classifications that fill it.

use serde::Serialize;

use bytes::Bytes;

use crate::dialect::usage::Usage;
use crate::dialect::Dialect;
use crate::price::{Price, Saved};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    Completed,
    /// The proxy or the provider answered with an error status.
    Error,
    /// The provider broke off or stalled after the response had started.
    UpstreamFailed,
    /// The client went away before the end.
    Cancelled,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Completed => "completed",
            RequestOutcome::Error => "error",
            RequestOutcome::UpstreamFailed => "upstream_failed",
            RequestOutcome::Cancelled => "cancelled",
        }
    }
}

/// What one fold mechanism did in a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MechanismSaving {
    pub mechanism: String,
    /// Tokens it removed from the whole request (replacements made in earlier turns included:
    /// they would have been sent again).
    pub tokens: u64,
    /// Of those, the tokens removed from this turn's new blocks.
    pub turn_tokens: u64,
    /// Originals it elided behind a marker, new in this turn.
    pub elisions: u64,
    /// Reads of its elided originals by the agent, new in this turn.
    pub recalls: u64,
    /// Clearing steps it took in this request (0 or 1; `clear` only).
    pub steps: u64,
}

impl MechanismSaving {
    pub fn new(mechanism: &str) -> MechanismSaving {
        MechanismSaving { mechanism: mechanism.to_string(), ..MechanismSaving::default() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Unix time in milliseconds when the request arrived.
    pub ts_ms: i64,
    pub client: &'static str,
    pub dialect: &'static str,
    pub route: String,
    /// The provider and account (its label, never its key) that answered, or the last one tried.
    pub provider: String,
    pub account: String,
    pub model: String,
    pub status: u16,
    pub outcome: RequestOutcome,
    /// Fallback hops: each target that failed before another was tried, as `provider/account: why`.
    pub fallbacks: Vec<String>,
    /// Why a request that did not complete failed: the last target's failure, the proxy's own
    /// error, or a stream that broke off. Empty otherwise.
    pub error: String,
    pub latency_ms: u64,
    /// Until the first byte went to the client.
    pub ttfb_us: u64,
    /// Time spent waiting on upstreams, every attempt included.
    pub upstream_us: u64,
    /// Time spent in the proxy itself: total minus `upstream_us` and `client_us`. Translation
    /// and relaying count; failed hops do not (their wait is upstream time).
    pub overhead_us: u64,
    /// Time spent waiting on the client: for its request body, and for it to take the answer's
    /// next part (a client reading a stream slowly). Not stored; taken out of `overhead_us`.
    #[serde(skip)]
    pub client_us: u64,
    pub tokens_before: u64,
    pub tokens_after: u64,
    pub savings: Vec<MechanismSaving>,
    pub usage: Usage,
    /// Billed cost of what was sent (0 on a free tier).
    pub cost_usd: f64,
    /// Billed cost had the unfolded request been sent (see `Price::counterfactual`).
    pub baseline_cost_usd: f64,
    /// What the same tokens would have cost with no prompt cache (0 on a free tier, like
    /// `cost_usd`): against `cost_usd`, what the cache saved.
    pub uncached_cost_usd: f64,
    /// `cost_usd` and `baseline_cost_usd` at list prices, whatever the tier: on a free tier the
    /// value of what was served.
    pub list_cost_usd: f64,
    pub list_baseline_usd: f64,
    pub free_tier: bool,
    /// The conversation: the client's own session id where it sends one, else a hash of the
    /// conversation's first blocks (see `session`).
    pub session: String,
    /// The target's prices, used by `settle`; not stored.
    #[serde(skip)]
    pub prices: Price,
    /// Cached tokens a clearing step in this request made the provider write again (estimated),
    /// used by `settle`; not stored.
    #[serde(skip)]
    pub rewritten_tokens: u64,
    /// Whether the provider's usage came back (`settle` ran).
    #[serde(skip)]
    pub settled: bool,
    /// The request body, when `session` is still to be read from it (by the writer thread).
    #[serde(skip)]
    pub session_body: Option<(Dialect, Bytes)>,
}

impl Record {
    /// A record with nothing filled in yet.
    pub fn empty() -> Record {
        Record {
            ts_ms: 0,
            client: "unknown",
            dialect: "",
            route: String::new(),
            provider: String::new(),
            account: String::new(),
            model: String::new(),
            status: 0,
            outcome: RequestOutcome::Completed,
            fallbacks: Vec::new(),
            error: String::new(),
            latency_ms: 0,
            ttfb_us: 0,
            upstream_us: 0,
            overhead_us: 0,
            client_us: 0,
            tokens_before: 0,
            tokens_after: 0,
            savings: Vec::new(),
            usage: Usage::default(),
            cost_usd: 0.0,
            baseline_cost_usd: 0.0,
            uncached_cost_usd: 0.0,
            list_cost_usd: 0.0,
            list_baseline_usd: 0.0,
            free_tier: false,
            session: String::new(),
            prices: Price::default(),
            rewritten_tokens: 0,
            settled: false,
            session_body: None,
        }
    }

    /// Sets `overhead_us` for a request that took `total`: what neither an upstream nor the
    /// client kept the proxy waiting for.
    pub fn set_overhead(&mut self, total: std::time::Duration) {
        self.overhead_us = (total.as_micros() as u64).saturating_sub(self.upstream_us).saturating_sub(self.client_us);
    }

    /// Reads the conversation id from the kept body, if one was kept (see `session`).
    pub fn resolve_session(&mut self) {
        if let Some((dialect, body)) = self.session_body.take() {
            self.session = super::session::from_body(dialect, &body);
        }
    }

    /// Fills in the provider's reported usage and what it cost. The provider's input count is
    /// what was sent; the folded tokens come on top of it for the no-proxy baseline.
    pub fn settle(&mut self, usage: Usage) {
        let saved = self.saved();
        self.usage = usage;
        self.settled = true;
        self.tokens_after = usage.total_input();
        self.tokens_before = self.tokens_after + saved.total();
        self.list_cost_usd = self.prices.cost(&usage);
        self.list_baseline_usd = self.prices.counterfactual(&usage, saved);
        if self.free_tier {
            (self.cost_usd, self.baseline_cost_usd, self.uncached_cost_usd) = (0.0, 0.0, 0.0);
        } else {
            (self.cost_usd, self.baseline_cost_usd) = (self.list_cost_usd, self.list_baseline_usd);
            self.uncached_cost_usd = self.prices.uncached(&usage);
        }
    }

    /// The folded tokens split into this turn's and earlier turns'.
    pub fn saved(&self) -> Saved {
        let total: u64 = self.savings.iter().map(|s| s.tokens).sum();
        let turn: u64 = self.savings.iter().map(|s| s.turn_tokens.min(s.tokens)).sum();
        Saved { earlier: total - turn, turn, rewritten: self.rewritten_tokens }
    }

    /// The per-mechanism figures worth storing: a request the provider never billed saved nothing
    /// (a retry folds the same blocks again), so only settled records keep theirs.
    pub fn stored_savings(&self) -> &[MechanismSaving] {
        if self.settled {
            &self.savings
        } else {
            &[]
        }
    }

    /// Adds one mechanism's figures, merging with an entry already there.
    pub fn add_saving(&mut self, mechanism: &str, f: impl FnOnce(&mut MechanismSaving)) {
        let i = match self.savings.iter().position(|s| s.mechanism == mechanism) {
            Some(i) => i,
            None => {
                self.savings.push(MechanismSaving::new(mechanism));
                self.savings.len() - 1
            }
        };
        f(&mut self.savings[i]);
    }
}

/// The agent family from its user agent, for `report --by client`.
pub fn client_family(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.starts_with("claude-cli") || ua.contains("claude-code") {
        "Claude Code"
    } else if ua.contains("codex") {
        "Codex"
    } else if ua.contains("opencode") {
        "OpenCode"
    } else if ua.starts_with("geminicli") {
        // `GeminiCLI/0.61.0/MODEL (...)`, `GeminiCLI-tui/...` when interactive.
        "Gemini CLI"
    } else if ua.contains("aider") || ua.contains("litellm") {
        "Aider"
    } else if ua.starts_with("anthropic/")
        || ua.starts_with("openai/")
        || ua.contains("stainless")
        || ua.starts_with("asyncopenai")
        || ua.starts_with("asyncanthropic")
    {
        "SDK"
    } else if ua.is_empty() {
        "unknown"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(free: bool) -> Record {
        let mut r = Record::empty();
        r.prices = Price { input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6.0 };
        r.free_tier = free;
        r.add_saving("span", |s| (s.tokens, s.turn_tokens) = (4_000, 1_000));
        r.add_saving("span", |s| s.elisions += 2);
        r
    }

    #[test]
    fn settle_prices_both_parts_and_keeps_list_value_for_free_tiers() {
        let usage = Usage { input: 500, output: 200, cache_read: 50_000, cache_write: 3_000, cache_write_1h: 0 };
        let mut paid = folded(false);
        paid.settle(usage);
        assert_eq!(paid.savings.len(), 1, "entries of one mechanism merge");
        assert_eq!(paid.savings[0].elisions, 2);
        assert_eq!((paid.tokens_after, paid.tokens_before), (53_500, 57_500));
        // sent: 500*3 + 200*15 + 50000*0.3 + 3000*3.75 = 1500 + 3000 + 15000 + 11250 = 30750 µ$
        assert!((paid.cost_usd - 0.03075).abs() < 1e-12, "{}", paid.cost_usd);
        // + 3000 earlier tokens as cache reads (900 µ$) + 1000 turn tokens as cache writes (3750 µ$)
        assert!((paid.baseline_cost_usd - 0.0354).abs() < 1e-12, "{}", paid.baseline_cost_usd);
        assert_eq!(paid.list_cost_usd, paid.cost_usd);
        // 53500 input tokens at 3 + 200 at 15 = 163500 µ$ without the cache.
        assert!((paid.uncached_cost_usd - 0.1635).abs() < 1e-12, "{}", paid.uncached_cost_usd);

        let mut free = folded(true);
        free.settle(usage);
        assert_eq!((free.cost_usd, free.baseline_cost_usd), (0.0, 0.0), "a free tier bills nothing");
        assert_eq!(free.uncached_cost_usd, 0.0);
        assert_eq!((free.list_cost_usd, free.list_baseline_usd), (paid.cost_usd, paid.baseline_cost_usd));
    }

    #[test]
    fn unsettled_records_store_no_savings() {
        let r = folded(false);
        assert!(r.stored_savings().is_empty());
    }

    #[test]
    fn families() {
        assert_eq!(client_family("claude-cli/2.1.3 (external, cli)"), "Claude Code");
        assert_eq!(client_family("codex_cli_rs/0.40.0"), "Codex");
        assert_eq!(client_family("GeminiCLI-tui/0.61.0/gemini-3.8-flash (linux; x64; terminal)"), "Gemini CLI");
        assert_eq!(client_family("OpenAI/Python 1.99.0"), "SDK");
        assert_eq!(client_family(""), "unknown");
    }
}
