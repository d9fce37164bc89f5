//! Fitting a request to one target's budget: it is reduced only as far as it must be, with
//! escalating steps that can each be undone, in this order:
//!
//! 1. lossless fold (already applied to every request: the ladder starts from the folded body);
//! 2. clearing stale tool output by the quota rule (`fit:clear`);
//! 3. clearing with a smaller `keep_recent`, down to 1 (`fit:keep_recent`); then the same
//!    again without keeping the newest view of each recently read file (a stub says to
//!    re-read it before an edit), which a session reading several large files needs;
//! 4. compacting tool schemas (`fit:schemas`, deterministic);
//! 5. dropping the model's reasoning from before its latest message (`fit:reasoning`).
//!
//! Clearing (2, 3) is the clearing engine's, with its stubs and stored originals: the system
//! prompt, user messages, tool calls and the newest tool output are never touched, and an
//! output becomes a stub in place, so no call is split from its result. Schemas are compacted,
//! never dropped. The result is a pure function of the request, the settings and the budget.

pub mod schema;

use bytes::Bytes;

use super::clear::{Cleared, FitClearing};
use super::{Folder, Prepared};
use crate::dialect::{fit_parts, Dialect};

/// The names fitting steps go under in the ledger.
pub const CLEAR: &str = "fit:clear";
pub const KEEP_RECENT: &str = "fit:keep_recent";
pub const SCHEMAS: &str = "fit:schemas";
pub const REASONING: &str = "fit:reasoning";
/// Waiting for a TPM window instead of cutting harder.
pub const WAIT: &str = "fit:wait";

/// A request fitted to a budget.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The body to send, in the ingress dialect.
    pub body: Bytes,
    /// Its size as the target counts it (the measure's figure).
    pub tokens: u64,
    /// Each step taken, with the tokens it removed.
    pub steps: Vec<(&'static str, u64)>,
    /// The clearing in effect in `body` (the target's own, or a fitting step's).
    pub cleared: Option<Cleared>,
}

impl Fitted {
    /// Tokens fitting removed (what the `fit` strategy minimises).
    pub fn removed(&self) -> u64 {
        self.steps.iter().map(|(_, t)| t).sum()
    }
}

/// The request cannot be brought within the budget: what it still needs after every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFit {
    pub needs: u64,
    pub budget: u64,
}

impl std::fmt::Display for NoFit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "needs {} tokens, budget {}", thousands(self.needs), thousands(self.budget))
    }
}

/// `23410` as `23,410`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Where the ladder starts: the request as folded (and cleared for the target's economics).
pub struct Start<'a> {
    pub dialect: Dialect,
    pub body: Bytes,
    pub cleared: Option<Cleared>,
    /// What clearing steps need; `None`: they are skipped.
    pub prepared: Option<&'a Prepared>,
}

/// Brings `start` within `budget` tokens as `measure` counts them (after translation, with the
/// target's tokenizer estimate), taking only the steps it needs.
pub fn fit(
    folder: &Folder,
    start: Start,
    budget: u64,
    measure: &mut dyn FnMut(&Bytes) -> u64,
) -> Result<Fitted, NoFit> {
    let tokens = measure(&start.body);
    let mut cur = Fitted { body: start.body, tokens, steps: Vec::new(), cleared: start.cleared };
    if cur.tokens <= budget {
        return Ok(cur);
    }
    if let Some(p) = start.prepared {
        let settings = folder.clear_settings();
        let keep = settings.keep_recent.max(1);
        // 2: the quota rule with the configured settings.
        let quota = FitClearing { keep_recent: keep, clear_at_least: settings.clear_at_least, keep_live_views: true };
        if let Some(c) = folder.clear_to_fit(p, quota) {
            take(&mut cur, CLEAR, Some(c), measure);
        }
        // 3: fewer recent outputs kept, down to the newest one; any clearable amount counts.
        // Recently read files keep their newest view until nothing else is left to clear.
        for keep_live_views in [true, false] {
            for k in (1..=keep).rev() {
                if cur.tokens <= budget {
                    break;
                }
                let fit = FitClearing { keep_recent: k, clear_at_least: 0, keep_live_views };
                if let Some(c) = folder.clear_to_fit(p, fit) {
                    take(&mut cur, KEEP_RECENT, Some(c), measure);
                }
            }
        }
    }
    // 4 and 5 rewrite the current body further.
    if cur.tokens > budget {
        if let Some(b) = schema::compact_tools(start.dialect, &cur.body) {
            let cleared = cur.cleared.clone();
            apply(&mut cur, SCHEMAS, b, cleared, measure);
        }
    }
    if cur.tokens > budget {
        if let Some(b) = drop_old_reasoning(start.dialect, &cur.body) {
            let cleared = cur.cleared.clone();
            apply(&mut cur, REASONING, b, cleared, measure);
        }
    }
    if cur.tokens > budget {
        return Err(NoFit { needs: cur.tokens, budget });
    }
    Ok(cur)
}

/// Takes a clearing result when it is smaller than the current body.
fn take(cur: &mut Fitted, step: &'static str, c: Option<Cleared>, measure: &mut dyn FnMut(&Bytes) -> u64) {
    if let Some(c) = c {
        if c.body.len() < cur.body.len() {
            let body = c.body.clone();
            apply(cur, step, body, Some(c), measure);
        }
    }
}

/// Replaces the body when the step made it smaller as counted, and notes the step.
fn apply(
    cur: &mut Fitted,
    step: &'static str,
    body: Bytes,
    cleared: Option<Cleared>,
    measure: &mut dyn FnMut(&Bytes) -> u64,
) {
    let tokens = measure(&body);
    if tokens >= cur.tokens {
        return;
    }
    let saved = cur.tokens - tokens;
    match cur.steps.iter_mut().find(|(s, _)| *s == step) {
        Some((_, t)) => *t += saved,
        None => cur.steps.push((step, saved)),
    }
    cur.body = body;
    cur.tokens = tokens;
    cur.cleared = cleared;
}

/// `body` without the model's reasoning from before its latest message; `None` when there is
/// none (or the body cannot be read).
pub fn drop_old_reasoning(dialect: Dialect, body: &[u8]) -> Option<Bytes> {
    let cuts = fit_parts::old_reasoning(dialect, body).ok()?;
    if cuts.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for r in cuts {
        out.extend_from_slice(body.get(at..r.start)?);
        at = r.end;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests;
