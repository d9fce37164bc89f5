//! Renders replay results as a table for people or JSON for machines.

use std::fmt::Write;

use super::{pct, Stats};
use crate::fold::{Level, Mechanism};

fn totals(name: &str, list: &[Stats]) -> Stats {
    let mut t = Stats { name: name.to_string(), format: "total".to_string(), ..Stats::default() };
    for s in list {
        t.add(s);
    }
    for m in Mechanism::ALL {
        t.saved_by.entry(m.name().to_string()).or_default();
    }
    t
}

fn row(out: &mut String, s: &Stats, indent: &str) {
    let mut name = format!("{indent}{}", s.name);
    if name.chars().count() > 46 {
        let tail: String = name.chars().rev().take(45).collect::<Vec<_>>().into_iter().rev().collect();
        name = format!("…{tail}");
    }
    let mech = |m: Mechanism| pct(s.saved_by.get(m.name()).copied().unwrap_or(0), s.tokens_before);
    let _ = writeln!(
        out,
        "{name:<46} {:>5} {:>12} {:>12} {:>6.1}% {:>6.1}% {:>6.1}% {:>6.1}% {:>6.1}% {:>7.2}% {:>7.2}% {:>9.1}",
        s.turns,
        s.tokens_before,
        s.tokens_after,
        s.saved_pct(),
        mech(Mechanism::WholeOutput),
        mech(Mechanism::Span),
        mech(Mechanism::Reminder),
        pct(s.filters_saved(), s.tokens_before),
        s.stability_pct(),
        s.retention_pct(),
        s.fold_ms,
    );
}

/// `filters: test-runner 1.2%, build 0.3%, ...` (shares of `before`), then any lost error line.
fn filter_breakdown(out: &mut String, s: &Stats) {
    let parts: Vec<String> = Mechanism::ALL
        .iter()
        .filter(|m| m.is_filter())
        .map(|m| {
            let n = s.saved_by.get(m.name()).copied().unwrap_or(0);
            format!("{} {:.2}%", m.name().trim_start_matches("filter:"), pct(n, s.tokens_before))
        })
        .collect();
    let _ = writeln!(out, "  filters: {}", parts.join(", "));
    let _ = writeln!(
        out,
        "  error-like lines of changed blocks kept: {} of {} ({:.2}%)",
        s.error_lines_kept,
        s.error_lines_checked,
        s.retention_pct()
    );
    for l in &s.error_lines_lost {
        let _ = writeln!(out, "  LOST: {l}");
    }
}

pub fn text(sources: &[(String, Vec<Stats>)], system_tokens: u64, elapsed_s: f64, level: Level) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "level: {} (x-tokenfold-level / [fold] level)", level.name());
    out.push_str("tokenfold replay: tokens are o200k_base counts (an estimate for non-OpenAI models) of message\n");
    out.push_str("text (system, messages, tool-call arguments; images and thinking excluded), summed over every\n");
    out.push_str("turn's request. Per-mechanism columns are shares of `before`.\n");
    if system_tokens == 0 {
        out.push_str(
            "Transcripts without a system prompt and tool schemas (Claude Code) are replayed without them.\n\n",
        );
    } else {
        let _ = writeln!(out, "A stand-in of {system_tokens} tokens per request (system prompt + tool schemas) is added to before and after.\n");
    }
    let _ = writeln!(
        out,
        "{:<46} {:>5} {:>12} {:>12} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>9}",
        "conversation",
        "turns",
        "before",
        "after",
        "saved",
        "whole",
        "span",
        "remind",
        "filters",
        "stable",
        "errkept",
        "fold ms"
    );
    let mut all = Vec::new();
    for (src, list) in sources {
        let _ = writeln!(out, "{src}");
        for s in list {
            row(&mut out, s, "  ");
        }
        let t = totals(&format!("= {src} ({} conversations)", list.len()), list);
        row(&mut out, &t, "");
        filter_breakdown(&mut out, &t);
        out.push('\n');
        all.push(t);
    }
    if sources.len() > 1 {
        let t = totals("= all sources", &all);
        row(&mut out, &t, "");
        filter_breakdown(&mut out, &t);
    }
    let t = totals("", &all);
    let _ = write!(
        out,
        "prefix stability: {:.2}% of {} re-sent blocks byte-identical; error-like lines kept: {:.2}%; incremental == cold fold: {}; fold time {:.1} ms total ({:.3} ms/turn); wall {:.1} s",
        t.stability_pct(),
        t.prefix_blocks_checked,
        t.retention_pct(),
        if t.scratch_mismatches == 0 { "yes".to_string() } else { format!("NO ({} conversations differ)", t.scratch_mismatches) },
        t.fold_ms,
        if t.turns > 0 { t.fold_ms / t.turns as f64 } else { 0.0 },
        elapsed_s
    );
    out
}

pub fn json(sources: &[(String, Vec<Stats>)], system_tokens: u64, elapsed_s: f64, level: Level) -> String {
    let list: Vec<serde_json::Value> = sources
        .iter()
        .map(|(src, l)| {
            let t = totals(src, l);
            serde_json::json!({
                "source": src,
                "total": t,
                "saved_pct": t.saved_pct(),
                "filters_saved_pct": pct(t.filters_saved(), t.tokens_before),
                "prefix_stability_pct": t.stability_pct(),
                "error_line_retention_pct": t.retention_pct(),
                "conversations": l,
            })
        })
        .collect();
    serde_json::json!({
        "level": level.name(),
        "tokenizer": "o200k_base (estimate for non-OpenAI models)",
        "system_stand_in_tokens": system_tokens,
        "elapsed_s": elapsed_s,
        "sources": list,
    })
    .to_string()
}
