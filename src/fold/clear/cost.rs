//! When clearing pays: the chosen target's economics and the rule that decides a step.
//!
//! Clearing rewrites earlier messages, so a provider that caches prefixes bills the rewritten part
//! as a cache write once instead of a cache read. On a cache-billed target a step is taken only
//! when what it saves over the turns still expected pays that back; on a quota-bound target
//! (a free tier, or no cache discount) every token counts, so any large enough step is taken.

use crate::dialect::Dialect;
use crate::price::Price;

/// How the chosen target bills input, as far as clearing goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Economics {
    /// Cached prefixes are cheaper: a cache read and a cache write cost `read` and `write` times
    /// the input price. `any_prefix`: the provider reads any prefix it has seen (OpenAI-style
    /// automatic caching); otherwise only up to where an earlier request's breakpoint wrote
    /// (Anthropic), so a step re-writes from the last such point before its first cleared output.
    Cached { read: f64, write: f64, any_prefix: bool },
    /// Every input token counts the same (a free tier's quota, or no cache discount).
    Quota,
}

impl Economics {
    /// The economics of a target: its model's `price` when the config gives one, else the
    /// provider kind's defaults (Anthropic 1.25x write / 0.1x read, OpenAI-style 1x / 0.1x).
    pub fn of_target(kind: Dialect, price: Option<Price>, free_tier: bool) -> Economics {
        if free_tier {
            return Economics::Quota;
        }
        let (read, write) = match price.filter(|p| p.input > 0.0) {
            Some(p) => (p.cached_input / p.input, p.cache_write / p.input),
            None if kind == Dialect::Anthropic => (0.1, 1.25),
            None => (0.1, 1.0),
        };
        if !(0.0..1.0).contains(&read) {
            Economics::Quota
        } else {
            Economics::Cached { read, write: write.max(read), any_prefix: kind != Dialect::Anthropic }
        }
    }

    /// Identity for cache keys: two targets with the same economics decide the same.
    pub fn key(self) -> u64 {
        match self {
            Economics::Quota => 0x51,
            Economics::Cached { read, write, any_prefix } => {
                read.to_bits().rotate_left(17) ^ write.to_bits() ^ 0xca ^ u64::from(any_prefix) << 8
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Economics::Quota => "quota",
            Economics::Cached { .. } => "cache",
        }
    }
}

/// Turns still expected in a conversation after `turns_so_far`: max(0.75 x turns so far, 5).
/// The paper model took 0.5 x with a step's rewrite priced from its first cleared output;
/// priced from the last cache entry instead (stricter, and what Anthropic bills), 0.75 x bills
/// least on the corpus (claude-code_spotter, replay's entries column: 0.706x, against 0.711x at
/// 0.5 x and 0.705x at 1 x, which cuts more Edit anchors on the Gemini CLI sessions).
pub fn remaining_turns(turns_so_far: u64) -> f64 {
    (0.75 * turns_so_far as f64).max(5.0)
}

/// What a step that clears `saved` tokens (net of the stubs) and makes the provider re-write
/// `rewritten` tokens of its cached prefix is worth at turn `turns_so_far`, in input-token units:
/// on a cache-billed target the cache reads it saves over the turns still expected less the
/// rewrite; on a quota-bound one the tokens it saves.
pub fn worth(econ: Economics, saved: u64, rewritten: u64, turns_so_far: u64) -> f64 {
    match econ {
        Economics::Quota => saved as f64,
        Economics::Cached { read, write, .. } => {
            read * saved as f64 * remaining_turns(turns_so_far) - (write - read) * rewritten as f64
        }
    }
}

/// Whether such a step is taken: it pays back its rewrite, or (quota-bound) it clears at least
/// `clear_at_least` tokens.
pub fn pays(econ: Economics, saved: u64, rewritten: u64, turns_so_far: u64, clear_at_least: u64) -> bool {
    match econ {
        Economics::Quota => saved >= clear_at_least,
        Economics::Cached { .. } => saved > 0 && worth(econ, saved, rewritten, turns_so_far) > 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn economics_from_prices_and_kinds() {
        let sonnet = Price { input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6.0 };
        let Economics::Cached { read, write, any_prefix: false } =
            Economics::of_target(Dialect::Anthropic, Some(sonnet), false)
        else {
            panic!("a cache discount is cache-billed")
        };
        assert!((read - 0.1).abs() < 1e-9 && (write - 1.25).abs() < 1e-9, "{read} {write}");
        assert_eq!(
            Economics::of_target(Dialect::OpenaiChat, None, false),
            Economics::Cached { read: 0.1, write: 1.0, any_prefix: true }
        );
        assert_eq!(Economics::of_target(Dialect::Anthropic, None, true), Economics::Quota, "a free tier");
        let no_discount = Price { input: 1.0, output: 2.0, cached_input: 1.0, cache_write: 1.0, cache_write_1h: 2.0 };
        assert_eq!(Economics::of_target(Dialect::OpenaiChat, Some(no_discount), false), Economics::Quota);
    }

    #[test]
    fn a_step_pays_back_its_rewrite() {
        let e = Economics::Cached { read: 0.1, write: 1.25, any_prefix: false };
        // 40 turns in: 30 more expected. 10k saved: 0.1 x 10k x 30 = 30k; rewriting 26k costs
        // 1.15 x 26k = 29.9k, 27k costs 31.05k.
        assert!(pays(e, 10_000, 26_000, 40, 2000));
        assert!(!pays(e, 10_000, 27_000, 40, 2000));
        // Early on, 5 turns are expected at least.
        assert!(pays(e, 10_000, 4_300, 2, 2000) && !pays(e, 10_000, 4_400, 2, 2000));
        assert!(pays(Economics::Quota, 2000, 1_000_000, 1, 2000));
        assert!(!pays(Economics::Quota, 1999, 0, 100, 2000));
    }
}
