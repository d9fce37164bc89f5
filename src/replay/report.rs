//! Renders replay results as a table for people or JSON for machines.

use std::fmt::Write;

use super::{lacks_system, pct, Stats};
use crate::fold::{Level, Levers, Mechanism};
use crate::table::{clip, Align, Keep, Table};

/// What the report needs besides the numbers.
pub struct View {
    /// Stand-in system prompt + tools tokens for sources that do not record them (0: none).
    pub system_tokens: u64,
    pub elapsed_s: f64,
    /// Token counts are byte estimates, not o200k.
    pub estimate: bool,
    /// The levers the main figures were measured with.
    pub levers: Levers,
    pub level: Level,
    pub target: super::TargetKind,
}

fn totals(name: &str, list: &[Stats]) -> Stats {
    let mut t = Stats { name: name.to_string(), format: "total".to_string(), ..Stats::default() };
    for s in list {
        t.add(s);
        t.format = s.format.clone();
    }
    for m in Mechanism::ALL {
        t.saved_by.entry(m.name().to_string()).or_default();
    }
    t
}

/// A conversation's or source's name in its column: paths keep their end.
fn clip_name(name: &str) -> String {
    clip(name, 46, Keep::End)
}

/// `12.3%` with `decimals` digits.
fn percent(p: f64, decimals: usize) -> String {
    format!("{p:.decimals$}%")
}

fn conversation_table() -> Table {
    let right = |h| (h, Align::Right);
    Table::new(&[
        ("conversation", Align::Left),
        right("turns"),
        right("before"),
        right("after"),
        right("saved"),
        right("+sys"),
        right("whole"),
        right("span"),
        right("remind"),
        right("filters"),
        right("clear"),
        right("stable"),
        right("errkept"),
        right("fold ms"),
    ])
}

fn row(table: &mut Table, s: &Stats, indent: &str, system: u64) {
    let mech = |m: Mechanism| percent(pct(s.saved_by.get(m.name()).copied().unwrap_or(0), s.tokens_before), 1);
    let with_sys = if system > 0 && lacks_system(&s.format) {
        percent(s.saved_pct_with_system(system), 1)
    } else {
        "-".to_string()
    };
    let clear = pct(s.saved_by.get(super::CLEAR).copied().unwrap_or(0), s.tokens_before);
    table.row([
        clip_name(&format!("{indent}{}", s.name)),
        s.turns.to_string(),
        s.tokens_before.to_string(),
        s.tokens_after.to_string(),
        percent(s.saved_pct(), 1),
        with_sys,
        mech(Mechanism::WholeOutput),
        mech(Mechanism::Span),
        mech(Mechanism::Reminder),
        percent(pct(s.filters_saved(), s.tokens_before), 1),
        percent(clear, 1),
        percent(s.stability_pct(), 2),
        percent(s.retention_pct(), 2),
        format!("{:.1}", s.fold_ms),
    ]);
}

/// `filters: test-runner 1.2%, build 0.3%, ...` (shares of `before`), then any lost error line.
fn filter_breakdown(table: &mut Table, s: &Stats) {
    let parts: Vec<String> = Mechanism::ALL
        .iter()
        .filter(|m| m.is_filter())
        .map(|m| {
            let n = s.saved_by.get(m.name()).copied().unwrap_or(0);
            format!("{} {:.2}%", m.name().trim_start_matches("filter:"), pct(n, s.tokens_before))
        })
        .collect();
    table.text(format!("  filters: {}", parts.join(", ")));
    table.text(format!(
        "  error-like lines of changed blocks kept: {} of {} ({:.2}%)",
        s.error_lines_kept,
        s.error_lines_checked,
        s.retention_pct()
    ));
    for l in &s.error_lines_lost {
        table.text(format!("  LOST: {l}"));
    }
}

pub fn text(sources: &[(String, Vec<Stats>)], v: &View) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "level: {} (x-tokenfold-level / [fold] level; --level to change)", v.level.name());
    let counted = if v.estimate {
        "byte estimates (--estimate)"
    } else {
        "o200k_base counts (an estimate for non-OpenAI models)"
    };
    let _ = writeln!(out, "tokenfold replay: tokens are {counted} of message text (system, messages, tool-call");
    out.push_str("arguments; images and thinking excluded), summed over every turn's request.\n");
    out.push_str("saved: share of the tokens the files record. whole/span/remind/filters: what each mechanism saved, as shares of before.\n");
    out.push_str(
        "clear: what clearing stale tool output saved (see the clearing table). stable: re-sent blocks forwarded\n",
    );
    out.push_str("byte-identical between clearing steps (a step may rewrite earlier turns; nothing else may).\n");
    out.push_str("errkept: error-like lines of folded blocks still forwarded (verbatim, or where a pointer names).\n");
    if v.system_tokens > 0 {
        let _ = writeln!(
            out,
            "+sys: the same saving over requests that also carry the system prompt + tool schemas, which Claude Code,\nCodex and Gemini CLI files do not record: a stand-in of {} tokens per request, never folded (--system-tokens N).\n- : the files record the system prompt already (saved is the whole figure).",
            v.system_tokens
        );
    }
    if v.levers != Levers::default() {
        let _ = writeln!(out, "levers: {:?}", v.levers);
    }
    out.push('\n');
    let mut table = conversation_table();
    let mut all = Vec::new();
    for (src, list) in sources {
        table.text(src.as_str());
        for s in list {
            row(&mut table, s, "  ", v.system_tokens);
        }
        let t = totals(&format!("= {src} ({} conversations)", list.len()), list);
        row(&mut table, &t, "", v.system_tokens);
        filter_breakdown(&mut table, &t);
        table.text("");
        all.push(t);
    }
    if sources.len() > 1 {
        let mut t = totals("= all sources", &all);
        t.format = "mixed".to_string();
        row(&mut table, &t, "", 0);
        filter_breakdown(&mut table, &t);
        table.text("");
    }
    out.push_str(&table.render());
    clearing_table(&mut out, &all, v);
    levers_table(&mut out, &all);
    ceiling_table(&mut out, &all);
    let t = totals("", &all);
    if t.markers > 0 {
        let _ = writeln!(
            out,
            "markers: {} distinct, {:.2} bytes per o200k token; the gate's estimate is {:.2}x their real count, below it for {} ({:.1}%)",
            t.markers,
            t.marker_bytes as f64 / t.marker_tokens.max(1) as f64,
            t.marker_estimate as f64 / t.marker_tokens.max(1) as f64,
            t.markers_underestimated,
            pct(t.markers_underestimated, t.markers)
        );
    }
    let _ = write!(
        out,
        "prefix stability: {:.2}% of {} re-sent blocks byte-identical; error-like lines kept: {:.2}%; incremental == cold fold: {}; fold time {:.1} ms total ({:.3} ms/turn); wall {:.1} s",
        t.stability_pct(),
        t.prefix_blocks_checked,
        t.retention_pct(),
        if t.scratch_mismatches == 0 { "yes".to_string() } else { format!("NO ({} conversations differ)", t.scratch_mismatches) },
        t.fold_ms,
        if t.turns > 0 { t.fold_ms / t.turns as f64 } else { 0.0 },
        v.elapsed_s
    );
    out
}

/// What clearing did per source: the simulated cache bill, steps, and what stayed visible.
fn clearing_table(out: &mut String, all: &[Stats], v: &View) {
    if v.level == Level::Lossless {
        return;
    }
    let econ = match (v.level, v.target) {
        (Level::Aggressive, _) | (_, super::TargetKind::Quota) => {
            "quota rule: a step whenever 2000+ tokens are clearable"
        }
        _ => "cache-billed target: a step when its saving pays back the cache rewrite",
    };
    let _ = writeln!(out, "clearing stale tool output ({econ}; --target-kind to change):");
    out.push_str(
        "billed: simulated cache-billed input as forwarded over as sent (each request's blocks shared with the\n",
    );
    out.push_str(
        "previous request at 0.1x, the rest at 1.25x); entries: the same where a cache is read only up to the\n",
    );
    out.push_str("end of an earlier request (where a rolling breakpoint wrote it); no-cache: tokens after / before.\n");
    out.push_str(
        "stable: turns whose re-sent prefix was forwarded byte-identical. In the turns with cleared outputs:\n",
    );
    out.push_str("anchors: old_strings of the model's next Edits that were in the request and still are; refs: the\n");
    out.push_str(
        "identifiers (paths, dotted, snake/camel names) it wrote next, likewise; first errors: the first error\n",
    );
    out.push_str("line of each cleared command output, still forwarded.\n");
    let right = |h| (h, Align::Right);
    let mut table = Table::new(&[
        ("source", Align::Left),
        right("saved"),
        right("billed"),
        right("entries"),
        right("no-cache"),
        right("steps"),
        right("stable"),
        right("cleared"),
        right("anchors"),
        right("refs"),
        right("first errors"),
    ]);
    let frac = |k: u64, n: u64| format!("{k}/{n} {:.1}%", if n == 0 { 100.0 } else { pct(k, n) });
    let times = |x: f64| format!("{x:.3}x");
    for t in all {
        table.row([
            clip_name(&t.name),
            percent(t.saved_pct(), 1),
            times(t.billed_ratio()),
            times(t.billed_at_entries_ratio()),
            times(t.tokens_after as f64 / t.tokens_before.max(1) as f64),
            t.steps.to_string(),
            percent(t.stable_turns_pct(), 1),
            t.cleared_turns.to_string(),
            frac(t.anchors_kept, t.anchors_checked),
            frac(t.refs_kept, t.refs_checked),
            frac(t.first_errors_kept, t.first_errors_checked),
        ]);
        for l in &t.first_errors_lost {
            table.text(format!("  LOST first error: {l}"));
        }
    }
    out.push_str(&table.render());
    out.push('\n');
}

/// With `--levers`: what each lever saves (default-on ones: lost when off; opt-in ones: gained
/// when on), per source.
fn levers_table(out: &mut String, all: &[Stats]) {
    if all.iter().all(|t| t.after_without.is_empty()) {
        return;
    }
    out.push_str("lever gains (percentage points of before): default levers, what switching it off loses;\n");
    out.push_str("opt-in levers (+): what switching it on would add.\n");
    let opt_in: Vec<String> = Levers::OPT_IN.iter().map(|(name, _)| format!("+{name}")).collect();
    let mut columns = vec![("source", Align::Left)];
    columns.extend(Levers::NAMES.iter().map(|(name, _)| (*name, Align::Right)));
    columns.extend(opt_in.iter().map(|name| (name.as_str(), Align::Right)));
    let mut table = Table::new(&columns);
    for t in all {
        let p = |a: u64, b: u64| format!("{:.2}p", (a as f64 - b as f64) / t.tokens_before.max(1) as f64 * 100.0);
        let mut cells = vec![clip_name(&t.name)];
        for (name, _) in Levers::NAMES {
            let off = t.after_without.get(name).copied().unwrap_or(t.tokens_after);
            cells.push(p(off, t.tokens_after));
        }
        for (name, _) in Levers::OPT_IN {
            let on = t.after_with.get(name).copied().unwrap_or(t.tokens_after);
            cells.push(p(t.tokens_after, on));
        }
        table.row(cells);
    }
    out.push_str(&table.render());
    out.push('\n');
}

/// With `--ceiling`: the lossless upper bounds next to what folding saved.
fn ceiling_table(out: &mut String, all: &[Stats]) {
    if all.iter().all(|t| t.ceiling.is_none()) {
        return;
    }
    out.push_str(
        "lossless ceiling (shares of before; tool-output lines inside a 3-line window seen earlier, numbers\n",
    );
    out.push_str(
        "stripped, no gate, no marker cost): cross = earlier non-assistant blocks; +same = also earlier in the\n",
    );
    out.push_str("same block; +any = also assistant text and call arguments as sources, agent templates as targets;\n");
    out.push_str(
        "gated = +any under the span rules (runs of 3+ lines, 120+ bytes, a 15-token marker each, 24+ saved);\n",
    );
    out.push_str("safe = gated where a file view counts only when one run covers it all (the bound under every\n");
    out.push_str("invariant: the engine folds views only as a whole); all tool output = every tool-output token.\n");
    let right = |h| (h, Align::Right);
    let mut table = Table::new(&[
        ("source", Align::Left),
        right("saved"),
        right("cross"),
        right("+same"),
        right("+any"),
        right("gated"),
        right("safe"),
        right("all tool output"),
    ]);
    for t in all {
        let Some(c) = &t.ceiling else { continue };
        let p = |x: u64| percent(pct(x, t.tokens_before), 1);
        table.row([
            clip_name(&t.name),
            percent(t.saved_pct(), 1),
            p(c.cross_block),
            p(c.same_block),
            p(c.any_source),
            p(c.gated),
            p(c.anchor_safe),
            p(c.all_tool_output),
        ]);
    }
    out.push_str(&table.render());
    out.push('\n');
}

pub fn json(sources: &[(String, Vec<Stats>)], v: &View) -> String {
    let list: Vec<serde_json::Value> = sources
        .iter()
        .map(|(src, l)| {
            let t = totals(src, l);
            let with_system =
                (v.system_tokens > 0 && lacks_system(&t.format)).then(|| t.saved_pct_with_system(v.system_tokens));
            serde_json::json!({
                "source": src,
                "total": t,
                "saved_pct": t.saved_pct(),
                "saved_pct_with_system_stand_in": with_system,
                "filters_saved_pct": pct(t.filters_saved(), t.tokens_before),
                "prefix_stability_pct": t.stability_pct(),
                "cache_billed_ratio": t.billed_ratio(),
                "cache_billed_at_entries_ratio": t.billed_at_entries_ratio(),
                "stable_turns_pct": t.stable_turns_pct(),
                "error_line_retention_pct": t.retention_pct(),
                "conversations": l,
            })
        })
        .collect();
    serde_json::json!({
        "level": v.level.name(),
        "target_kind": v.target.name(),
        "tokenizer": if v.estimate { "byte estimate" } else { "o200k_base (estimate for non-OpenAI models)" },
        "system_stand_in_tokens": v.system_tokens,
        "elapsed_s": v.elapsed_s,
        "sources": list,
    })
    .to_string()
}
