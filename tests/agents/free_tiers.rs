//! The three-free-tier case: Claude Code's task through a route of mock free tiers that refuse
//! what the real ones refuse (`fit_support`): a GitHub Models-like 8,000-token input cap, a
//! Groq-like 12,000 TPM and a Cerebras-like 40,000-token window with ample TPM. The scripted
//! model answers whichever tier admits the request. Every turn must be answered, no tier may
//! see a request over its limits, and the ledger must show which tier served each turn, the
//! fitting steps and the tokens saved.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::fit_support::{self, Tier, CEREBRAS, GITHUB, GROQ};
use super::model::Script;
use super::tap::Exchange;

/// `CLAUDE_CODE_MAX_OUTPUT_TOKENS` for the case.
pub const MAX_OUTPUT: &str = "4096";

pub struct Tiers {
    tiers: Vec<(&'static str, Tier)>,
}

pub struct TierOutcome {
    pub failures: Vec<String>,
    pub figures: Vec<String>,
}

pub async fn start(script: &Arc<Script>) -> Tiers {
    let mut tiers = Vec::new();
    for (name, limits) in [("github", GITHUB), ("groq", GROQ), ("cerebras", CEREBRAS)] {
        let s = script.clone();
        tiers.push((name, fit_support::start_with(limits, move |rec, _| s.handle(rec)).await));
    }
    Tiers { tiers }
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
        match by_provider {
            Ok(rep) => {
                let rows: Vec<String> = rep["rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| format!("{} {}", r["key"].as_str().unwrap_or("?"), r["requests"]))
                    .collect();
                o.figures.push(format!("ledger by provider: {}", rows.join(", ")));
                let fallbacks = rep["total"]["fallbacks"].as_u64().unwrap_or(0);
                o.figures.push(format!("skips and fallbacks: {fallbacks}"));
            }
            Err(e) => o.failures.push(format!("free tiers: ledger by provider: {e}")),
        }
        match by_mechanism {
            Ok(rep) => {
                let fit: Vec<String> = rep["mechanisms"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["key"].as_str().is_some_and(|k| k.starts_with("fit:") || k == "clear"))
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
            }
            Err(e) => o.failures.push(format!("free tiers: ledger by mechanism: {e}")),
        }
        o
    }
}
