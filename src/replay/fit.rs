//! `tokenfold replay --fit TPM_OR_BUDGET`: how recorded sessions fare on a free tier. Each turn
//! is sent as recorded, and as the proxy would send it to a quota-bound target of that budget
//! (folded, cleared by the quota rule, then fitted: `fold::fit`). Per source: the share of
//! turns that fit, the tokens sent, and the minutes a session needs at the TPM (tokens ÷ TPM,
//! turn by turn), with and without tokenfold.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::sources::Conversation;
use super::{lacks_system, Counter};
use crate::dialect::blocks;
use crate::fold::clear::Economics;
use crate::fold::fit::{self, thousands, Start};
use crate::fold::originals::Originals;
use crate::fold::{FoldOptions, Folder, Level};

/// What a request must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Tokens per minute: one request may hold at most that many, and a session needs its
    /// tokens ÷ TPM minutes.
    Tpm(u64),
    /// Input tokens per request, with no rate (no minutes reported).
    PerRequest(u64),
}

impl Limit {
    /// `30000`, `30k` (a TPM) or `8000/request` (a per-request budget).
    pub fn parse(s: &str) -> Option<Limit> {
        let s = s.trim();
        let (num, per_request) = match s.strip_suffix("/request").or_else(|| s.strip_suffix("/req")) {
            Some(n) => (n.trim(), true),
            None => (s, false),
        };
        let n = match num.strip_suffix(['k', 'K']) {
            Some(k) => k.trim().parse::<u64>().ok()?.checked_mul(1000)?,
            None => num.parse::<u64>().ok()?,
        };
        (n > 0).then_some(if per_request { Limit::PerRequest(n) } else { Limit::Tpm(n) })
    }

    fn tokens(self) -> u64 {
        match self {
            Limit::Tpm(n) | Limit::PerRequest(n) => n,
        }
    }
}

/// Figures of one source.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Figures {
    pub source: String,
    pub conversations: u64,
    pub turns: u64,
    /// Turns within the budget as recorded, and as tokenfold sends them.
    pub fit_as_sent: u64,
    pub fit_with_tokenfold: u64,
    /// Tokens of every turn as recorded, and as tokenfold sends them (a turn that cannot fit
    /// counts with what every fitting step leaves).
    pub tokens_as_sent: u64,
    pub tokens_with_tokenfold: u64,
    /// Turns that needed fitting steps, and the steps taken.
    pub fitted_turns: u64,
    pub steps: BTreeMap<String, u64>,
}

impl Figures {
    fn minutes(tokens: u64, limit: Limit) -> Option<f64> {
        match limit {
            Limit::Tpm(tpm) => Some(tokens as f64 / tpm as f64),
            Limit::PerRequest(_) => None,
        }
    }
}

/// Replays every conversation against `limit`; figures per source (the format of its files).
pub fn measure(
    loaded: &[(String, Vec<Conversation>)],
    limit: Limit,
    system_tokens: u64,
    counter: &mut Counter,
) -> Vec<Figures> {
    let mut by_source: BTreeMap<String, Figures> = BTreeMap::new();
    for (_, convs) in loaded {
        for c in convs {
            let f = by_source
                .entry(c.format.to_string())
                .or_insert_with(|| Figures { source: c.format.into(), ..Figures::default() });
            conversation(c, limit, system_tokens, counter, f);
        }
    }
    by_source.into_values().collect()
}

fn conversation(c: &Conversation, limit: Limit, system_tokens: u64, counter: &mut Counter, f: &mut Figures) {
    // A free tier: clearing decides by the quota rule; originals are not stored (only measured).
    let opts = FoldOptions {
        level: Level::Balanced,
        originals: std::sync::Arc::new(Originals::unstored()),
        ..FoldOptions::default()
    };
    let folder = Folder::with_options(true, opts);
    // The system prompt and tools the files leave out are sent with every request.
    let fixed = if lacks_system(c.format) { system_tokens } else { 0 };
    let budget = limit.tokens().saturating_sub(fixed);
    f.conversations += 1;
    for body in &c.turns {
        let mut measure = |b: &Bytes| size(c, b, counter);
        let raw = measure(body) + fixed;
        f.turns += 1;
        f.tokens_as_sent += raw;
        f.fit_as_sent += u64::from(raw <= limit.tokens());
        let prepared = folder.prepare(c.dialect, body, Level::Balanced);
        let cleared = prepared.as_ref().and_then(|p| folder.clear(p, Economics::Quota));
        let start_body = match (&cleared, &prepared) {
            (Some(cl), _) => cl.body.clone(),
            (None, Some(p)) => p.forwarded().clone(),
            (None, None) => body.clone(),
        };
        let start = Start { dialect: c.dialect, body: start_body, cleared, prepared: prepared.as_ref() };
        match fit::fit(&folder, start, budget, &mut measure) {
            Ok(fitted) => {
                f.fit_with_tokenfold += 1;
                f.tokens_with_tokenfold += fitted.tokens + fixed;
                if !fitted.steps.is_empty() {
                    f.fitted_turns += 1;
                }
                for (step, _) in &fitted.steps {
                    *f.steps.entry(step.to_string()).or_default() += 1;
                }
            }
            Err(no) => f.tokens_with_tokenfold += no.needs + fixed,
        }
    }
}

/// Tokens of a request's located blocks (memoized per block across turns).
fn size(c: &Conversation, body: &Bytes, counter: &mut Counter) -> u64 {
    match blocks::locate(c.dialect, body) {
        Ok(bs) => bs.iter().map(|b| counter.block(body, b)).sum(),
        Err(_) => crate::tokens::estimate_text(&String::from_utf8_lossy(body)),
    }
}

/// `n` as a share of `of` turns, `-` when there are none.
fn share(n: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.1}%", super::stats::pct(n, of))
    }
}

fn minutes(tokens: u64, conversations: u64, limit: Limit) -> String {
    match Figures::minutes(tokens, limit) {
        Some(m) if conversations > 0 => format!("{:.1}", m / conversations as f64),
        _ => "-".into(),
    }
}

/// The figures as a table.
pub fn text(figures: &[Figures], limit: Limit, system_tokens: u64) -> String {
    let what = match limit {
        Limit::Tpm(n) => format!("a free tier of {} TPM (a request holds at most that much)", thousands(n)),
        Limit::PerRequest(n) => format!("a budget of {} input tokens per request", thousands(n)),
    };
    let mut out = format!(
        "fitting every turn to {what}; Claude Code, Codex and Gemini CLI files get a {}-token stand-in system prompt + tools\n",
        thousands(system_tokens)
    );
    use crate::table::{Align::*, Table};
    let mut table = Table::new(&[
        ("source", Left),
        ("convs", Right),
        ("turns", Right),
        ("fit as-is", Right),
        ("fit (tf)", Right),
        ("tokens as-is", Right),
        ("tokens (tf)", Right),
        ("min/conv", Right),
        ("(tf)", Right),
        ("fitting steps", Left),
    ]);
    for f in figures {
        let steps: Vec<String> = f.steps.iter().map(|(s, n)| format!("{s} {n}")).collect();
        table.row([
            f.source.clone(),
            f.conversations.to_string(),
            f.turns.to_string(),
            share(f.fit_as_sent, f.turns),
            share(f.fit_with_tokenfold, f.turns),
            thousands(f.tokens_as_sent),
            thousands(f.tokens_with_tokenfold),
            minutes(f.tokens_as_sent, f.conversations, limit),
            minutes(f.tokens_with_tokenfold, f.conversations, limit),
            if steps.is_empty() { "-".to_string() } else { steps.join(", ") },
        ]);
    }
    out.push_str(&table.render());
    out.push_str(
        "min/conv: minutes one session needs at the TPM (its tokens ÷ TPM, turn by turn); (tf): with tokenfold\n",
    );
    out
}

/// The figures as JSON.
pub fn json(figures: &[Figures], limit: Limit, system_tokens: u64) -> String {
    let rows: Vec<serde_json::Value> = figures
        .iter()
        .map(|f| {
            serde_json::json!({
                "source": f.source, "conversations": f.conversations, "turns": f.turns,
                "fit_as_sent": f.fit_as_sent, "fit_with_tokenfold": f.fit_with_tokenfold,
                "fit_share_as_sent": f.fit_as_sent as f64 / f.turns.max(1) as f64,
                "fit_share_with_tokenfold": f.fit_with_tokenfold as f64 / f.turns.max(1) as f64,
                "tokens_as_sent": f.tokens_as_sent, "tokens_with_tokenfold": f.tokens_with_tokenfold,
                "minutes_as_sent": Figures::minutes(f.tokens_as_sent, limit),
                "minutes_with_tokenfold": Figures::minutes(f.tokens_with_tokenfold, limit),
                "fitted_turns": f.fitted_turns, "steps": f.steps,
            })
        })
        .collect();
    let (kind, n) = match limit {
        Limit::Tpm(n) => ("tpm", n),
        Limit::PerRequest(n) => ("per_request", n),
    };
    serde_json::json!({ "fit": { kind: n }, "system_tokens": system_tokens, "sources": rows }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_a_tpm_or_a_per_request_budget() {
        assert_eq!(Limit::parse("30k"), Some(Limit::Tpm(30_000)));
        assert_eq!(Limit::parse("12000"), Some(Limit::Tpm(12_000)));
        assert_eq!(Limit::parse("8000/request"), Some(Limit::PerRequest(8000)));
        assert_eq!(Limit::parse("8k/req"), Some(Limit::PerRequest(8000)));
        for bad in ["", "0", "k", "-5", "30m"] {
            assert_eq!(Limit::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_session_is_fitted_and_counted_turn_by_turn() {
        use serde_json::json;
        let out = |t: usize| {
            (0..150).map(|i| format!("row_{t}_{i} widget_{t}_{i} value={}\n", i * 37 % 1000)).collect::<String>()
        };
        let mut turns = Vec::new();
        let mut msgs = vec![json!({"role": "user", "content": "run the reports"})];
        for t in 0..8 {
            let id = format!("toolu_{t:04}");
            msgs.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Bash", "input": {"command": format!("./r {t}")}}]}));
            msgs.push(
                json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": out(t)}]}),
            );
            turns.push(Bytes::from(json!({"model": "m", "messages": msgs}).to_string()));
        }
        let c = Conversation {
            name: "c".into(),
            format: "anthropic-request",
            dialect: crate::dialect::Dialect::Anthropic,
            turns,
        };
        let loaded = vec![("x".to_string(), vec![c])];
        let mut counter = Counter::estimating();
        let f = &measure(&loaded, Limit::Tpm(6000), 0, &mut counter)[0];
        assert_eq!(f.turns, 8);
        assert!(f.fit_as_sent < f.fit_with_tokenfold, "{f:?}");
        assert!(f.tokens_with_tokenfold < f.tokens_as_sent, "{f:?}");
        assert!(f.fitted_turns > 0 && !f.steps.is_empty(), "{f:?}");
        let table = text(std::slice::from_ref(f), Limit::Tpm(6000), 0);
        assert!(table.contains("anthropic-request") && table.contains("min/conv"), "{table}");
    }
}
