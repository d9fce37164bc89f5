//! The body one attempt sends: cleared for the target's economics, then fitted to the target's
//! budget (`fold::fit`), measured as the target will count it: translated into its dialect and
//! estimated with its tokenizer family's figure.

use bytes::Bytes;

use super::fallback::UpstreamRequest;
use super::outgoing;
use super::AppState;
use crate::config::ProviderAuth;
use crate::dialect::breakpoints::CacheTtl;
use crate::dialect::Dialect;
use crate::fold::clear::{Cleared, Economics};
use crate::fold::fit::{self, NoFit, Start};
use crate::pool::{Attempt, Bound, Offer, Target};
use crate::price::Price;

/// What an attempt sends, in the ingress dialect.
pub struct Shaped {
    pub body: Bytes,
    /// Input tokens as the target counts them (or a bound on them); `None`: not measured (no
    /// budget, or far within one): admission uses the byte estimate.
    pub tokens: Option<u64>,
    pub cleared: Option<Cleared>,
    /// Fitting steps taken, with the tokens each removed (`fit:<step>`).
    pub steps: Vec<(&'static str, u64)>,
}

impl Shaped {
    pub fn removed(&self) -> u64 {
        self.steps.iter().map(|(_, t)| t).sum()
    }
}

/// How much finer than o200k a target's tokenizer splits text (Claude's splits code into
/// noticeably more tokens; the open models' Llama/Qwen/Kimi vocabularies a little more), so the
/// estimate errs high and a fitted request is not refused.
fn tokenizer_factor(target: Dialect) -> f64 {
    match target {
        Dialect::Anthropic => 1.2,
        _ => 1.1,
    }
}

/// The most tokens `body` can count as: no tokenizer makes more tokens of a string than it has
/// bytes, the estimate adds 3 per object, and translation is allowed a quarter more. A body
/// within a budget by this bound is not measured (requests far below a large window).
fn upper_bound(body: &[u8], factor: f64) -> u64 {
    let objects = body.iter().filter(|&&c| c == b'{').count() as u64;
    ((body.len() as u64 + 3 * objects) as f64 * factor * 1.25).ceil() as u64
}

/// The body for `offer`, fitted to `budget` input tokens (the offer's own budget unless the
/// caller waits for a fuller window).
pub fn for_offer(state: &AppState, req: &UpstreamRequest<'_>, offer: &Offer, budget: u64) -> Result<Shaped, NoFit> {
    let target = offer.target();
    let cleared = clear_for(state, req, target, offer.price(), offer.free_tier());
    let body = cleared.as_ref().map_or_else(|| req.body.clone(), |c| c.body.clone());
    let factor = tokenizer_factor(target.dialect);
    if budget == u64::MAX {
        return Ok(Shaped { body, tokens: None, cleared, steps: Vec::new() });
    }
    let bound = upper_bound(&body, factor);
    if bound <= budget {
        // Not measured: a TPM window counts the bound (settled to the real usage later), so
        // concurrent requests never overflow it; other budgets keep the byte estimate.
        let tokens = (offer.budget().bound == Bound::Tpm).then_some(bound);
        return Ok(Shaped { body, tokens, cleared, steps: Vec::new() });
    }
    let model_override = offer.send_model().or(state.model_override.as_deref());
    let facts = outgoing::TargetFacts {
        dialect: target.dialect,
        model_override,
        reasoning: offer.reasoning(),
        own_key: matches!(target.provider.auth, ProviderAuth::Key { .. }),
        drop_prompt_cache_key: !target.provider.takes_prompt_cache_key,
    };
    let mut measure = |b: &Bytes| -> u64 {
        let sent = outgoing::prepare(req, b, &facts).map(|o| o.body).unwrap_or_else(|_| b.clone());
        // Not JSON after all: bytes / 3 is above any tokenizer's count of code and prose.
        crate::tokens::estimate_request(&sent, factor).unwrap_or(sent.len() as u64 / 3)
    };
    let start = Start { dialect: req.ingress, body, cleared, prepared: req.prepared.as_ref() };
    let fitted =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fit::fit(&state.folder, start, budget, &mut measure)));
    let fitted = fitted.unwrap_or_else(|_| {
        tracing::error!("fitting panicked; the target is skipped");
        Err(NoFit { needs: req.body.len() as u64 / 3, budget })
    })?;
    Ok(Shaped { body: fitted.body, tokens: Some(fitted.tokens), cleared: fitted.cleared, steps: fitted.steps })
}

/// The body for an attempt that is not fitted (token counts): cleared for its target only.
pub fn unfitted(state: &AppState, req: &UpstreamRequest<'_>, attempt: &Attempt) -> Shaped {
    let free = free_tier(attempt);
    let cleared = clear_for(state, req, attempt.target(), attempt.price(), free);
    let body = cleared.as_ref().map_or_else(|| req.body.clone(), |c| c.body.clone());
    Shaped { body, tokens: None, cleared, steps: Vec::new() }
}

/// Whether the attempt's account is a free tier.
pub fn free_tier(attempt: &Attempt) -> bool {
    let accounts = &attempt.target().provider.accounts;
    accounts.iter().find(|a| a.label == attempt.account()).is_some_and(|a| a.free_tier)
}

/// Clears stale tool output for the target: the provider's kind, the model's price and whether
/// the account is a free tier give the economics (a fallback to a target with other economics
/// decides again). `None`: send the folded body. Fails open.
fn clear_for(
    state: &AppState,
    req: &UpstreamRequest,
    target: &Target,
    price: Option<Price>,
    free_tier: bool,
) -> Option<Cleared> {
    let p = req.prepared.as_ref()?;
    let kind = target.provider.dialect;
    // With the 1-hour TTL the breakpoints we add write at its price, so a step's rewrite costs that.
    let one_hour = kind == Dialect::Anthropic && state.cfg.cache.anthropic_ttl == CacheTtl::OneHour;
    let price = price.map(|p| if one_hour { Price { cache_write: p.cache_write_1h, ..p } } else { p });
    let econ = Economics::of_target(kind, price, free_tier);
    let cleared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.folder.clear(p, econ)));
    cleared.unwrap_or_else(|_| {
        tracing::error!("clearing panicked; sending the request as folded");
        None
    })
}
