//! The three-free-tier case: Claude Code's task through a route of mock free tiers that refuse
//! what the real ones refuse (`fit_support`): a GitHub Models-like 8,000-token input cap, a
//! Groq-like 12,000 TPM and a Cerebras-like 40,000-token window with ample TPM. The scripted
//! model answers whichever tier admits the request. Every turn must be answered, no tier may
//! see a request over its limits or a tool call without its result (each refuses them), and the
//! ledger must show which tier served each turn, the fitting steps and the tokens saved. The
//! long session reads files large enough that its later requests exceed the 40k window less
//! the output: there the ledger must show a `fit:*` step that saved tokens.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::fit_support::{self, Tier, CEREBRAS, GITHUB, GROQ};
use super::model::Script;
use super::tap::Exchange;

/// `CLAUDE_CODE_MAX_OUTPUT_TOKENS` for the case.
pub const MAX_OUTPUT: &str = "4096";

/// Lines of each file the long session reads here (about 26 KB as Claude Code shows it), so
/// a few of them take a request past the 40k window (less the output) and it must be fitted.
pub const PART_LINES: usize = 400;

pub struct Tiers {
    tiers: Vec<(&'static str, Tier)>,
    /// The session outgrows the largest tier: some request must have been fitted.
    must_fit: bool,
}

pub struct TierOutcome {
    pub failures: Vec<String>,
    pub figures: Vec<String>,
}

pub async fn start(script: &Arc<Script>, must_fit: bool) -> Tiers {
    let mut tiers = Vec::new();
    for (name, limits) in [("github", GITHUB), ("groq", GROQ), ("cerebras", CEREBRAS)] {
        let s = script.clone();
        tiers.push((name, fit_support::start_with(limits, move |rec, _| s.handle(rec)).await));
    }
    Tiers { tiers, must_fit }
}

impl Tiers {
    /// The proxy's config: one route named as the model Claude Code asks for, over the tiers in
    /// this order (fallback), each configured with its limits.
    pub fn config(&self, model: &str, originals: &Path) -> String {
        let tiers: Vec<&Tier> = self.tiers.iter().map(|(_, t)| t).collect();
        fit_support::config(&tiers, model, "fallback", 0, originals)
    }

    pub fn check(
        &self,
        exchanges: &[Exchange],
        by_provider: &Result<Value, String>,
        by_mechanism: &Result<Value, String>,
    ) -> TierOutcome {
        let mut o = TierOutcome { failures: Vec::new(), figures: Vec::new() };
        for (name, t) in &self.tiers {
            let refused = t.refused();
            if !refused.is_empty() {
                o.failures.push(format!("free tiers: {name} saw requests over its limits: {refused:?}"));
            }
        }
        let unanswered: Vec<String> = exchanges
            .iter()
            .filter(|x| x.status != 200)
            .map(|x| format!("{} {} -> {} {}", x.method, x.path, x.status, x.error_body.as_deref().unwrap_or("")))
            .collect();
        if !unanswered.is_empty() {
            o.failures.push(format!("free tiers: turns not answered: {unanswered:?}"));
        }
        let served: Vec<String> = self.tiers.iter().map(|(n, t)| format!("{n} {}", t.served())).collect();
        o.figures.push(format!("served by tier: {}", served.join(", ")));
        let largest: Vec<String> = self
            .tiers
            .iter()
            .filter_map(|(n, t)| Some(format!("{n} {}", t.seen.lock().ok()?.served.iter().map(|(i, _)| *i).max()?)))
            .collect();
        o.figures.push(format!("largest input served: {}", largest.join(", ")));
        match by_provider {
            Ok(rep) => {
                let rows: Vec<String> = rep["rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| format!("{} {}", r["key"].as_str().unwrap_or("?"), r["requests"]))
                    .collect();
                o.figures.push(format!("ledger by provider: {}", rows.join(", ")));
                // Every request in the ledger names the tier that served it.
                let tiers: Vec<String> = (0..self.tiers.len()).map(|i| format!("t{i}")).collect();
                let named: u64 = rep["rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["key"].as_str().is_some_and(|k| tiers.iter().any(|t| t == k)))
                    .filter_map(|r| r["requests"].as_u64())
                    .sum();
                let total = rep["total"]["requests"].as_u64().unwrap_or(0);
                let served: usize = self.tiers.iter().map(|(_, t)| t.served()).sum();
                if named != total || named != served as u64 {
                    o.failures.push(format!(
                        "free tiers: the ledger names a tier for {named} of its {total} requests; the tiers served {served}"
                    ));
                }
                let fallbacks = rep["total"]["fallbacks"].as_u64().unwrap_or(0);
                o.figures.push(format!("skips and fallbacks: {fallbacks}"));
            }
            Err(e) => o.failures.push(format!("free tiers: ledger by provider: {e}")),
        }
        match by_mechanism {
            Ok(rep) => {
                let mut fitted_tokens = 0;
                let fit: Vec<String> = rep["mechanisms"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["key"].as_str().is_some_and(|k| k.starts_with("fit:") || k == "clear"))
                    .inspect(|r| {
                        let fit = r["key"].as_str().is_some_and(|k| k.starts_with("fit:"));
                        fitted_tokens += if fit { r["tokens_saved"].as_u64().unwrap_or(0) } else { 0 };
                    })
                    .map(|r| {
                        format!(
                            "{} {} tokens in {} steps",
                            r["key"].as_str().unwrap_or("?"),
                            r["tokens_saved"],
                            r["steps"]
                        )
                    })
                    .collect();
                o.figures.push(format!(
                    "fitting: {}",
                    if fit.is_empty() { "none needed".to_string() } else { fit.join(", ") }
                ));
                if self.must_fit && fitted_tokens == 0 {
                    o.failures.push(format!("free tiers: no fitting step saved tokens: {}", fit.join(", ")));
                }
            }
            Err(e) => o.failures.push(format!("free tiers: ledger by mechanism: {e}")),
        }
        o
    }
}
