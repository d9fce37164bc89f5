//! From a filter's line cuts to byte-range edits of the block text, plus the footer that names
//! the stored original. The block-level gate lives here: a filtered block must save at least
//! `MIN_SAVED_TOKENS` after paying for its footer, or it stays as it was.

use std::ops::Range;

use super::{compress, Compressed, Filter, Level};
use crate::fold::dedup::MIN_SAVED_TOKENS;
use crate::fold::originals::{self, Originals};
use crate::tokens;

/// How the engine sees a command output: what ran it and how hard to compress.
pub struct Origin<'a> {
    pub command: Option<&'a str>,
    pub level: Level,
    pub store: &'a Originals,
}

/// One replacement in the block text, counted for `by`.
pub struct Planned {
    pub range: Range<usize>,
    pub marker: String,
    pub est_saved: u64,
    pub by: Filter,
}

pub struct Applied {
    pub filter: Filter,
    /// Content id of the original (the whole block text), stored under this name.
    pub id: String,
    pub edits: Vec<Planned>,
    /// Byte ranges that markers of this block point at: no other edit may touch them.
    pub reserved: Vec<Range<usize>>,
}

/// Plans the filter edits for one command output; `None` when no filter applies or the result
/// would not pay for itself. The caller stores the original (`Originals::put`) once it uses them.
pub fn plan(origin: &Origin, text: &str) -> Option<Applied> {
    let c = compress(origin.command, text, origin.level)?;
    let id = originals::id_of(text);
    let starts = line_starts(text);
    let edits = edits(&c, text, &starts, &origin.store.recall(&id))?;
    let reserved = c
        .reserved
        .iter()
        .filter_map(|r| Some(*starts.get(r.start)?..starts.get(r.end).map(|s| s - 1).unwrap_or(text.len())))
        .collect();
    Some(Applied { filter: c.filter, id, edits, reserved })
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0).chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|k| k + 1)).collect()
}

fn edits(c: &Compressed, text: &str, starts: &[usize], recall: &str) -> Option<Vec<Planned>> {
    let n = starts.len();
    let line_end = |i: usize| starts.get(i + 1).map(|s| s - 1).unwrap_or(text.len());
    let mut out = Vec::with_capacity(c.cuts.len() + 1);
    let mut saved_total: u64 = 0;
    for (by, cut) in &c.cuts {
        // The empty piece after a final newline stays, so the footer gets a line of its own.
        let b = if cut.lines.end == n && text.ends_with('\n') { n - 1 } else { cut.lines.end };
        let a = cut.lines.start;
        if a >= b {
            continue;
        }
        let range = if !cut.with.is_empty() {
            starts[a]..line_end(b - 1)
        } else if b < n {
            starts[a]..starts[b]
        } else {
            starts[a].saturating_sub(1)..text.len()
        };
        let removed = text.get(range.clone())?;
        let saved = tokens::estimate_text(removed).saturating_sub(estimate(&cut.with));
        saved_total += saved;
        out.push(Planned { range, marker: cut.with.clone(), est_saved: saved, by: *by });
    }
    let footer_text = format!(
        "[tokenfold: {} of {} lines folded ({}); full output: {recall}]",
        c.lines_folded, c.lines_total, c.what
    );
    let at = footer_at(text);
    let footer = if at == 0 || text.as_bytes()[at - 1] == b'\n' {
        format!("{footer_text}\n")
    } else {
        format!("\n{footer_text}")
    };
    let cost = tokens::estimate_marker(&footer);
    if saved_total < cost + MIN_SAVED_TOKENS {
        return None;
    }
    // The footer's cost comes off the edits, so per-edit figures sum to the block's saving.
    let mut due = cost;
    for e in out.iter_mut() {
        let take = due.min(e.est_saved);
        e.est_saved -= take;
        due -= take;
    }
    // Cuts end before the trailer (it is never cut: it is not command output), so order holds.
    if out.iter().any(|p| p.range.end > at) {
        return None;
    }
    out.push(Planned { range: at..at, marker: footer, est_saved: 0, by: c.filter });
    Some(out)
}

/// Tokens of a cut's replacement: markers tokenize poorly (ids, counts), rewritten output lines
/// like the text they replace.
fn estimate(with: &str) -> u64 {
    with.split('\n')
        .map(|l| if l.contains("[tokenfold:") { tokens::estimate_marker(l) } else { tokens::estimate_text(l) } + 1)
        .sum::<u64>()
        .saturating_sub(1)
}

/// Where the footer goes: the end of the output, but before an agent's own trailer, so that
/// SWE-agent's state lines and `bash-$` prompt, or mini-swe-agent's `</output>`, stay last.
fn footer_at(text: &str) -> usize {
    if text.trim_end().ends_with("bash-$") {
        if let Some(k) = text.rfind("\n(Open file:").or_else(|| text.rfind("\n(Current directory:")) {
            return k + 1;
        }
    }
    if text.trim_end().ends_with("</output>") {
        if let Some(k) = text.rfind("</output>") {
            return k;
        }
    }
    text.len()
}
