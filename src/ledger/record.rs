//! One ledger record per request, and the small classifications that fill it.

use serde::Serialize;

use crate::dialect::usage::Usage;

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

/// Tokens one fold mechanism removed from a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MechanismSaving {
    pub mechanism: String,
    pub tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Unix time in milliseconds when the request arrived.
    pub ts_ms: i64,
    pub client: &'static str,
    pub dialect: &'static str,
    pub route: String,
    pub provider: String,
    /// The account's label, never its key.
    pub account: String,
    pub model: String,
    pub status: u16,
    pub outcome: RequestOutcome,
    /// Targets tried before the one that answered, each as `provider: reason`.
    pub fallbacks: Vec<String>,
    pub latency_ms: u64,
    pub ttfb_ms: u64,
    /// Time spent in the proxy itself: total minus the upstream's own time.
    pub overhead_us: u64,
    pub tokens_before: u64,
    pub tokens_after: u64,
    pub savings: Vec<MechanismSaving>,
    pub usage: Usage,
    /// Cost at the configured prices of what was sent.
    pub cost_usd: f64,
    /// Cost had the unfolded request been sent (same cache behaviour for the unchanged prefix).
    pub baseline_cost_usd: f64,
    /// Served by a free tier: `cost_usd` is then what it would have cost at list price.
    pub free_tier: bool,
    /// A conversation id (hash of its first messages), for `report --session`.
    pub session: String,
    /// The target's prices, used by `settle`; not stored.
    #[serde(skip)]
    pub prices: Prices,
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
            latency_ms: 0,
            ttfb_ms: 0,
            overhead_us: 0,
            tokens_before: 0,
            tokens_after: 0,
            savings: Vec::new(),
            usage: Usage::default(),
            cost_usd: 0.0,
            baseline_cost_usd: 0.0,
            free_tier: false,
            session: String::new(),
            prices: Prices::default(),
        }
    }

    /// Fills in the provider's reported usage and what it cost. The provider's input count is
    /// what was sent; the folded tokens come on top of it for the no-proxy baseline.
    pub fn settle(&mut self, usage: Usage) {
        let saved: u64 = self.savings.iter().map(|s| s.tokens).sum();
        self.usage = usage;
        self.tokens_after = usage.total_input();
        self.tokens_before = self.tokens_after + saved;
        self.cost_usd = self.prices.cost(&usage);
        self.baseline_cost_usd = self.prices.baseline_cost(&usage, saved);
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

/// Prices in USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Prices {
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
    /// Anthropic bills cache writes at 1.25x input; zero means "same as input".
    pub cache_write: f64,
}

impl Prices {
    pub fn cost(&self, u: &Usage) -> f64 {
        let write = if self.cache_write > 0.0 { self.cache_write } else { self.input };
        (u.input as f64 * self.input
            + u.output as f64 * self.output
            + u.cache_read as f64 * self.cached_input
            + u.cache_write as f64 * write)
            / 1e6
    }

    /// What the request would have cost without folding: the removed tokens sit after the
    /// unchanged prefix (folding never touches earlier turns), so they would have been billed
    /// like the uncached tail of the request: at the full input rate.
    pub fn baseline_cost(&self, u: &Usage, saved_tokens: u64) -> f64 {
        self.cost(u) + saved_tokens as f64 * self.input / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_aware_cost_on_a_hand_computed_example() {
        // Sonnet-like prices: $3 in, $15 out, $0.30 cache read, $3.75 cache write per million.
        let p = Prices { input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75 };
        let u = Usage { input: 2_000, output: 1_000, cache_read: 100_000, cache_write: 10_000 };
        // 2000*3 + 1000*15 + 100000*0.3 + 10000*3.75 = 6000 + 15000 + 30000 + 37500 = 88500 µ$
        assert!((p.cost(&u) - 0.0885).abs() < 1e-12);
        // 5000 folded tokens would have been full-rate input: +0.015
        assert!((p.baseline_cost(&u, 5_000) - 0.1035).abs() < 1e-12);
    }

    #[test]
    fn families() {
        assert_eq!(client_family("claude-cli/2.1.3 (external, cli)"), "Claude Code");
        assert_eq!(client_family("codex_cli_rs/0.40.0"), "Codex");
        assert_eq!(client_family("OpenAI/Python 1.99.0"), "SDK");
        assert_eq!(client_family(""), "unknown");
    }
}
