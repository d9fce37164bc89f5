//! Keep-earliest, lossless dedup of one block against the verbatim text forwarded before it.

use std::ops::Range;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use super::filters::{self, Origin};
use super::locate::{Kind, Loc};
use super::shapes;
use super::state::{window_key, BlockResult, EditNote, Line, Mechanism, Src, State, ToolInfo};
use crate::tokens;

/// Span rule: at least this many lines and bytes.
pub const MIN_SPAN_LINES: usize = 3;
pub const MIN_SPAN_BYTES: usize = 120;
/// Net-positive gate: a replacement must save this many tokens and this share of the text.
pub const MIN_SAVED_TOKENS: u64 = 24;
pub const MIN_SAVED_SHARE: f64 = 0.30;

struct Edit {
    range: Range<usize>,
    marker: String,
    mechanism: Mechanism,
    source: usize,
    source_lines: Option<Range<usize>>,
    est_saved: u64,
}

/// Splits text into lines with their number prefixes parsed.
pub fn lines_of(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0usize;
    for (i, piece) in text.split('\n').enumerate() {
        let end = start + piece.len();
        let (h, num, style) = match shapes::number_prefix(piece) {
            Some((st, n, plen)) => (xxh3_64(&piece.as_bytes()[plen..]), Some(n), Some(st)),
            None => (xxh3_64(piece.as_bytes()), None, None),
        };
        out.push(Line { h, num, style, start: start as u32, end: end as u32, verbatim: true, pos: i as u32 + 1 });
        start = end + 1;
    }
    out
}

fn gate(removed: &str, marker: &str) -> Option<u64> {
    let before = tokens::estimate_text(removed);
    let after = tokens::estimate_marker(marker);
    let saved = before.checked_sub(after)?;
    (saved >= MIN_SAVED_TOKENS && saved as f64 >= MIN_SAVED_SHARE * before as f64 && marker.len() < removed.len())
        .then_some(saved)
}

fn content_id(s: &str) -> String {
    let h = blake3::hash(s.as_bytes());
    h.to_hex().as_str().get(..6).unwrap_or("").to_string()
}

fn is_read_tool(name: &str) -> bool {
    matches!(name, "Read" | "read_file" | "view" | "read" | "open" | "cat" | "View" | "str_replace_based_edit_tool")
}

/// How a marker names an earlier block.
fn label(src: &Src) -> String {
    let msg = match src.loc {
        Loc::Message(i) => format!("message {i}"),
        Loc::System(_) => "the system prompt".to_string(),
    };
    match src.kind {
        Kind::ToolOutput => match (&src.tool, &src.view) {
            (Some(t), _) => match (&t.subject, is_read_tool(&t.name)) {
                (Some(s), true) => format!("{s} read in {}", t.id),
                _ => format!("{} output in {}", t.name, t.id),
            },
            (None, Some(v)) => format!("{v} view in {msg}"),
            (None, None) => format!("tool output in {msg}"),
        },
        Kind::System if matches!(src.loc, Loc::System(_)) => msg,
        Kind::System => format!("system text in {msg}"),
        Kind::UserText => format!("user text in {msg}"),
        Kind::AssistantText => format!("assistant text in {msg}"),
        Kind::ToolCall => match (&src.tool, &src.view) {
            (Some(t), Some(field)) => format!("{field} of {} call {}", t.name, t.id),
            _ => msg,
        },
        Kind::Other => msg,
    }
}

/// Numbers shown on the lines, else their positions in the forwarded text.
fn line_range(lines: &[Line], r: &Range<usize>) -> String {
    let (Some(a), Some(b)) = (lines.get(r.start), lines.get(r.end - 1)) else { return String::new() };
    match (a.num, b.num) {
        (Some(x), Some(y)) => format!("{x}-{y}"),
        _ => format!("{}-{}", a.pos, b.pos),
    }
}

/// Where each verbatim line sits once the edits (sorted, disjoint) are applied.
fn forwarded_positions(lines: &mut [Line], edits: &[Edit], new_text: &str) {
    let newlines: Vec<usize> = memchr::memchr_iter(b'\n', new_text.as_bytes()).collect();
    for l in lines.iter_mut().filter(|l| l.verbatim) {
        let start = l.start as usize;
        let shift: isize = edits
            .iter()
            .filter(|e| e.range.end <= start)
            .map(|e| e.marker.len() as isize - e.range.len() as isize)
            .sum();
        let new_start = (start as isize + shift).max(0) as usize;
        l.pos = newlines.partition_point(|&n| n < new_start) as u32 + 1;
    }
}

/// The number a line shows, or its 1-based position when the other side is numbered and this one
/// is not (a Read of a file after the Write that created it).
fn shown_num(l: &Line, pos: usize, other_numbered: bool) -> Option<i64> {
    match (l.num, other_numbered) {
        (Some(n), _) => Some(i64::from(n)),
        (None, true) => Some(pos as i64 + 1),
        (None, false) => None,
    }
}

/// Whether current line `ci` continues a run against source line `si` at a constant offset
/// between the numbers shown, so that the marker's two line ranges map one to one.
fn compatible(lines: &[Line], ci: usize, src: &[Line], si: usize, offset: Option<i64>) -> bool {
    let (c, s) = (&lines[ci], &src[si]);
    if c.h != s.h || !s.verbatim || (c.style.is_some() && s.style.is_some() && c.style != s.style) {
        return false;
    }
    let numbered = c.num.is_some() || s.num.is_some();
    match (shown_num(c, ci, numbered), shown_num(s, si, numbered), offset) {
        (None, None, _) => true,
        (Some(a), Some(b), Some(off)) => a - b == off,
        _ => false,
    }
}

fn run_offset(lines: &[Line], ci: usize, src: &[Line], si: usize) -> Option<i64> {
    let numbered = lines[ci].num.is_some() || src[si].num.is_some();
    Some(shown_num(&lines[ci], ci, numbered)? - shown_num(&src[si], si, numbered)?)
}

/// Folds one text block: decides its edits, records them in `st` and indexes what stays verbatim.
/// `origin` is set for command output, which may also go through its filter (part 2).
pub fn process_text(
    st: &mut State,
    ord: usize,
    kind: Kind,
    loc: Loc,
    tool: Option<Arc<ToolInfo>>,
    text: &str,
    origin: Option<&Origin>,
) {
    let view = if kind == Kind::ToolOutput && tool.is_none() { shapes::viewed_file(text) } else { None };
    let mut lines = lines_of(text);
    let may_reminder =
        matches!(kind, Kind::ToolOutput | Kind::UserText) || (kind == Kind::System && matches!(loc, Loc::Message(_)));
    let reminder_ranges = if may_reminder || kind == Kind::System { shapes::reminders(text) } else { Vec::new() };
    let mut edits: Vec<Edit> = Vec::new();

    // A whole block identical to an earlier verbatim one: tool output, or a repeated system prompt.
    if matches!(kind, Kind::ToolOutput | Kind::System) && text.len() >= MIN_SPAN_BYTES {
        if let Some(&src) = st.whole.get(&xxh3_64(text.as_bytes())) {
            let s = src as usize;
            if let Some(srcb) = st.srcs.get(s) {
                let what = if kind == Kind::System { "system text" } else { "output" };
                let id = content_id(text);
                let marker = format!("[tokenfold: {what} same as {} #{id}]", label(srcb));
                if let Some(saved) = gate(text, &marker) {
                    let mechanism = if kind == Kind::System { Mechanism::Reminder } else { Mechanism::WholeOutput };
                    edits.push(Edit {
                        range: 0..text.len(),
                        marker,
                        mechanism,
                        source: s,
                        source_lines: None,
                        est_saved: saved,
                    });
                }
            }
        }
    }

    if edits.is_empty() && may_reminder {
        for r in &reminder_ranges {
            let seg = &text[r.clone()];
            let Some(&src) = st.reminders.get(&xxh3_64(seg.as_bytes())) else {
                continue;
            };
            let Some(srcb) = st.srcs.get(src as usize) else {
                continue;
            };
            let marker = format!("[tokenfold: system-reminder same as in {} #{}]", label(srcb), content_id(seg));
            if let Some(saved) = gate(seg, &marker) {
                edits.push(Edit {
                    range: r.clone(),
                    marker,
                    mechanism: Mechanism::Reminder,
                    source: src as usize,
                    source_lines: None,
                    est_saved: saved,
                });
            }
        }
    }

    // Part 2: a command output that is not a whole repeat goes through its filter first; span
    // dedup then looks only at the lines the filter kept verbatim.
    let mut reserved = Vec::new();
    if let Some(o) = origin.filter(|_| edits.iter().all(|e| e.mechanism != Mechanism::WholeOutput)) {
        reserved = filter_edits(st, ord, text, o, &reminder_ranges, &mut edits);
    }
    if edits.iter().all(|e| e.mechanism != Mechanism::WholeOutput) && kind == Kind::ToolOutput {
        span_edits(st, text, &lines, &reserved, &mut edits);
    }
    edits.sort_by_key(|e| e.range.start);

    // Lines touched by an edit are no longer verbatim and can never be pointed at.
    for l in lines.iter_mut() {
        let (s, e) = (l.start as usize, l.end as usize);
        l.verbatim = !edits
            .iter()
            .any(|ed| !ed.range.is_empty() && ed.range.start <= e && s < ed.range.end.max(ed.range.start + 1));
    }
    let kept_reminders: Vec<Range<usize>> = reminder_ranges
        .into_iter()
        .filter(|r| !edits.iter().any(|e| e.range.start < r.end && r.start < e.range.end))
        .collect();
    if edits.is_empty() {
        st.srcs.push(Src { kind, loc, tool, view, lines });
        st.index_block(ord, text, false, &kept_reminders);
        st.results.push(None);
        return;
    }
    let mut new_text = String::with_capacity(text.len());
    let mut at = 0;
    let mut notes = Vec::with_capacity(edits.len());
    let mut est_saved = 0;
    for e in &edits {
        new_text.push_str(&text[at..e.range.start]);
        new_text.push_str(&e.marker);
        at = e.range.end;
        est_saved += e.est_saved;
        notes.push(EditNote {
            mechanism: e.mechanism,
            block: ord,
            removed: Arc::from(&text[e.range.clone()]),
            marker: Arc::from(e.marker.as_str()),
            source: e.source,
            source_lines: e.source_lines.clone(),
        });
    }
    new_text.push_str(&text[at..]);
    forwarded_positions(&mut lines, &edits, &new_text);
    st.srcs.push(Src { kind, loc, tool, view, lines });
    st.index_block(ord, text, true, &kept_reminders);
    let mut escaped = Vec::with_capacity(new_text.len() + 16);
    super::json::encode_into(&new_text, &mut escaped);
    st.approx_bytes += escaped.len() + notes.iter().map(|n| n.removed.len() + n.marker.len()).sum::<usize>();
    st.results.push(Some(Arc::new(BlockResult { escaped, notes, est_saved })));
}

/// The filter's edits for a command output, unless one would touch a `<system-reminder>`.
/// Returns the byte ranges its markers point at (span dedup must leave them verbatim).
fn filter_edits(
    st: &mut State,
    ord: usize,
    text: &str,
    o: &Origin,
    reminders: &[Range<usize>],
    edits: &mut Vec<Edit>,
) -> Vec<Range<usize>> {
    let Some(a) = filters::plan(o, text) else { return Vec::new() };
    let clash = |r: &Range<usize>| reminders.iter().any(|m| r.start < m.end && m.start < r.end.max(r.start + 1));
    if a.edits
        .iter()
        .any(|p| clash(&p.range) || edits.iter().any(|e| p.range.start < e.range.end && e.range.start < p.range.end))
    {
        return Vec::new();
    }
    o.store.put(&a.id, text);
    st.stored.insert(a.id, Mechanism::Filter(a.filter));
    edits.extend(a.edits.into_iter().map(|p| Edit {
        range: p.range,
        marker: p.marker,
        mechanism: Mechanism::Filter(p.by),
        source: ord,
        source_lines: None,
        est_saved: p.est_saved,
    }));
    a.reserved
}

/// Greedy left-to-right: at each line take the longest run matching verbatim earlier lines.
fn span_edits(st: &State, text: &str, lines: &[Line], reserved: &[Range<usize>], edits: &mut Vec<Edit>) {
    let taken = |i: usize| {
        let l = &lines[i];
        let (s, e) = (l.start as usize, l.end as usize);
        edits.iter().any(|x| x.range.start <= e && s < x.range.end)
            || reserved.iter().any(|r| r.start <= e && s < r.end)
    };
    let mut found: Vec<Edit> = Vec::new();
    let mut i = 0;
    while i + MIN_SPAN_LINES <= lines.len() {
        let key = window_key(lines[i].h, lines[i + 1].h, lines[i + 2].h);
        let Some(cands) = st.windows.get(&key) else {
            i += 1;
            continue;
        };
        let mut best: Option<(usize, usize, usize)> = None; // (len, src block, src line)
        for &(sb, sl) in cands {
            let Some(src) = st.srcs.get(sb as usize) else {
                continue;
            };
            let (sb, sl) = (sb as usize, sl as usize);
            if sl >= src.lines.len() {
                continue;
            }
            let offset = run_offset(lines, i, &src.lines, sl);
            let mut k = 0;
            while i + k < lines.len()
                && sl + k < src.lines.len()
                && !taken(i + k)
                && compatible(lines, i + k, &src.lines, sl + k, offset)
            {
                k += 1;
            }
            if k >= MIN_SPAN_LINES && best.is_none_or(|(bl, _, _)| k > bl) {
                best = Some((k, sb, sl));
            }
        }
        let Some((len, sb, sl)) = best else {
            i += 1;
            continue;
        };
        let range = lines[i].start as usize..lines[i + len - 1].end as usize;
        let removed = &text[range.clone()];
        if removed.len() < MIN_SPAN_BYTES {
            i += 1;
            continue;
        }
        let src = &st.srcs[sb];
        let here = match (lines[i].num, lines[i + len - 1].num) {
            (Some(a), Some(b)) => format!("lines {a}-{b}"),
            _ => format!("{len} lines"),
        };
        let marker = format!(
            "[tokenfold: {here} same as {} (lines {}) #{}]",
            label(src),
            line_range(&src.lines, &(sl..sl + len)),
            content_id(removed)
        );
        match gate(removed, &marker) {
            Some(saved) => {
                found.push(Edit {
                    range,
                    marker,
                    mechanism: Mechanism::Span,
                    source: sb,
                    source_lines: Some(sl..sl + len),
                    est_saved: saved,
                });
                i += len;
            }
            None => i += 1,
        }
    }
    edits.extend(found);
}
