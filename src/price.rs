//! Price (USD per million tokens): what a request cost, and what it would have cost without
//! folding, with cache reads and writes priced as the provider bills them. One type for the
//! config's model prices, the pool's targets, clearing's economics and the ledger's costs.

use serde::Serialize;

use crate::dialect::usage::Usage;

/// Price in USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cache reads (Anthropic 0.1x input; OpenAI-style providers' cached input).
    pub cached_input: f64,
    /// Writes to the 5-minute cache (Anthropic 1.25x input; the input price where caching costs
    /// nothing extra). Resolved from the config, never guessed here.
    pub cache_write: f64,
    /// Writes to Anthropic's 1-hour cache (2x input).
    pub cache_write_1h: f64,
}

/// Tokens folding removed from a request, split by where they sat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Saved {
    /// In blocks an earlier request of the conversation already sent: the provider-cached prefix.
    pub earlier: u64,
    /// In this turn's new blocks (from the last assistant message on).
    pub turn: u64,
    /// Cached tokens a clearing step made the provider write again: the unfolded request would
    /// have read them from the cache.
    pub rewritten: u64,
}

impl Saved {
    pub fn total(&self) -> u64 {
        self.earlier + self.turn
    }
}

impl Price {
    pub fn cost(&self, u: &Usage) -> f64 {
        let write_1h = u.cache_write_1h.min(u.cache_write);
        (u.input as f64 * self.input
            + u.output as f64 * self.output
            + u.cache_read as f64 * self.cached_input
            + (u.cache_write - write_1h) as f64 * self.cache_write
            + write_1h as f64 * self.cache_write_1h)
            / 1e6
    }

    /// What the same tokens would cost with no prompt cache: every input token at the input price.
    pub fn uncached(&self, u: &Usage) -> f64 {
        (u.total_input() as f64 * self.input + u.output as f64 * self.output) / 1e6
    }

    /// The cost had the unfolded request been sent: what was billed, plus the removed tokens at
    /// the rate they would have been billed at. Folding keeps every earlier block byte-identical
    /// across turns, so the unfolded request would have had the same cache behaviour for the
    /// unchanged prefix:
    ///
    /// - tokens removed from **earlier blocks** sit in that prefix: cache reads when the provider
    ///   reported cache reads for this request; otherwise billed like the rest of the prompt
    ///   (cache writes when it reported writes, else full input);
    /// - tokens removed from **this turn's blocks** are new content: cache writes when the
    ///   provider reported cache writes for this request, else full input.
    ///
    /// A clearing step rewrites part of the cached prefix: those tokens (at most what the provider
    /// reported as cache writes) were billed as writes but would have been reads.
    ///
    /// Output is unchanged: folding removes input only.
    pub fn counterfactual(&self, u: &Usage, saved: Saved) -> f64 {
        let new_rate = if u.cache_write > 0 { self.cache_write } else { self.input };
        let prefix_rate = if u.cache_read > 0 { self.cached_input } else { new_rate };
        let rewrite = saved.rewritten.min(u.cache_write) as f64 * (self.cache_write - self.cached_input).max(0.0);
        self.cost(u) + (saved.earlier as f64 * prefix_rate + saved.turn as f64 * new_rate - rewrite) / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Sonnet-like prices: $3 in, $15 out, $0.30 cache read, $3.75 cache write per million.
    const P: Price = Price { input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6.0 };

    #[test]
    fn cache_aware_cost_on_a_hand_computed_example() {
        let u = Usage { input: 2_000, output: 1_000, cache_read: 100_000, cache_write: 10_000, cache_write_1h: 0 };
        // 2000*3 + 1000*15 + 100000*0.3 + 10000*3.75 = 6000 + 15000 + 30000 + 37500 = 88500 µ$
        assert!((P.cost(&u) - 0.0885).abs() < 1e-12);
        // 4000 earlier tokens as cache reads (1200 µ$) + 1000 turn tokens as cache writes (3750 µ$)
        let c = P.counterfactual(&u, Saved { earlier: 4_000, turn: 1_000, rewritten: 0 });
        assert!((c - 0.09345).abs() < 1e-12, "{c}");
    }

    #[test]
    fn one_hour_writes_and_the_uncached_price() {
        let u = Usage { input: 1_000, output: 100, cache_read: 10_000, cache_write: 3_000, cache_write_1h: 2_000 };
        // 1000*3 + 100*15 + 10000*0.3 + 1000*3.75 + 2000*6 = 3000 + 1500 + 3000 + 3750 + 12000 µ$
        assert!((P.cost(&u) - 0.02325).abs() < 1e-12, "{}", P.cost(&u));
        // 14000 input tokens at 3 + 100 at 15 = 43500 µ$
        assert!((P.uncached(&u) - 0.0435).abs() < 1e-12, "{}", P.uncached(&u));
    }

    #[test]
    fn a_clearing_step_does_not_count_its_rewrite_as_saved() {
        // The step re-wrote 8000 cached tokens: billed at 3.75 instead of read at 0.3.
        let u = Usage { input: 2_000, output: 1_000, cache_read: 90_000, cache_write: 20_000, cache_write_1h: 0 };
        let plain = P.counterfactual(&u, Saved { earlier: 30_000, turn: 0, rewritten: 0 });
        let step = P.counterfactual(&u, Saved { earlier: 30_000, turn: 0, rewritten: 8_000 });
        assert!((plain - step - 8_000.0 * 3.45 / 1e6).abs() < 1e-12, "{plain} {step}");
        // Never more than the provider reported as written.
        let capped = P.counterfactual(&u, Saved { earlier: 30_000, turn: 0, rewritten: 50_000 });
        assert!((plain - capped - 20_000.0 * 3.45 / 1e6).abs() < 1e-12);
    }

    #[test]
    fn without_caching_every_removed_token_is_full_input() {
        let u = Usage { input: 2_000, output: 0, cache_read: 0, cache_write: 0, cache_write_1h: 0 };
        let c = P.counterfactual(&u, Saved { earlier: 4_000, turn: 1_000, rewritten: 0 });
        assert!((c - (0.006 + 0.015)).abs() < 1e-12, "{c}");
    }

    #[test]
    fn a_cold_cache_writes_the_prefix_too() {
        let u = Usage { input: 10, output: 0, cache_read: 0, cache_write: 20_000, cache_write_1h: 0 };
        let c = P.counterfactual(&u, Saved { earlier: 4_000, turn: 1_000, rewritten: 0 });
        let expected = P.cost(&u) + 5_000.0 * 3.75 / 1e6;
        assert!((c - expected).abs() < 1e-12, "{c}");
    }
}
