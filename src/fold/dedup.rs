//! Keep-earliest, lossless dedup of one block against the verbatim text forwarded before it and
//! against its own earlier lines.

use std::ops::Range;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use super::filters::{self, Origin};
use super::markers::{self, SpanLines};
use super::shapes::{self, Style};
use super::state::{
    window_key, BlockResult, EditNote, IdMap, Line, Mechanism, Src, State, ToolInfo, WINDOW_CANDIDATES,
};
use crate::dialect::blocks::{Kind, Loc};
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

/// Splits text into lines with their number prefixes parsed (grep `path:N:` ones too if `grep`).
pub fn lines_of(text: &str, grep: bool) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0usize;
    for (i, piece) in text.split('\n').enumerate() {
        let end = start + piece.len();
        let (h, num, style, group) = match shapes::number_prefix(piece) {
            Some((st, n, plen)) => (xxh3_64(&piece.as_bytes()[plen..]), Some(n), Some(st), 0),
            None => match grep.then(|| shapes::grep_prefix(piece)).flatten() {
                Some((path, n, plen)) => (xxh3_64(&piece.as_bytes()[plen..]), Some(n), Some(Style::Grep), path),
                None => (xxh3_64(piece.as_bytes()), None, None, 0),
            },
        };
        out.push(Line {
            h,
            num,
            style,
            group,
            start: start as u32,
            end: end as u32,
            verbatim: true,
            pos: i as u32 + 1,
        });
        start = end + 1;
    }
    out
}

fn gate(removed: &str, marker: &str, calibrated: bool) -> Option<u64> {
    let before = tokens::estimate_text(removed);
    let after = if calibrated { tokens::estimate_marker(marker) } else { tokens::estimate_marker_flat(marker) };
    let saved = before.checked_sub(after)?;
    (saved >= MIN_SAVED_TOKENS && saved as f64 >= MIN_SAVED_SHARE * before as f64 && marker.len() < removed.len())
        .then_some(saved)
}

/// Where each verbatim line sits once the edits (sorted, disjoint) are applied. Lines come in
/// text order, so the edits before a line and the newlines before its new start are each one
/// forward sweep.
fn forwarded_positions(lines: &mut [Line], edits: &[Edit], new_text: &str) {
    let newlines: Vec<usize> = memchr::memchr_iter(b'\n', new_text.as_bytes()).collect();
    let (mut k, mut shift, mut nl) = (0usize, 0isize, 0usize);
    for l in lines.iter_mut().filter(|l| l.verbatim) {
        let start = l.start as usize;
        while let Some(e) = edits.get(k).filter(|e| e.range.end <= start) {
            shift += e.marker.len() as isize - e.range.len() as isize;
            k += 1;
        }
        let new_start = (start as isize + shift).max(0) as usize;
        while newlines.get(nl).is_some_and(|&n| n < new_start) {
            nl += 1;
        }
        l.pos = nl as u32 + 1;
    }
}

/// Per line, whether any of `ranges` touches it (an empty range touches the line it sits in or
/// starts). One sweep over the ranges merged in order, instead of every range for every line.
fn touched(lines: &[Line], ranges: impl Iterator<Item = Range<usize>>) -> Vec<bool> {
    let mut spans: Vec<(usize, usize)> = ranges.map(|r| (r.start, r.end.max(r.start + 1))).collect();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut k = 0;
    lines
        .iter()
        .map(|l| {
            let (s, e) = (l.start as usize, l.end as usize);
            while merged.get(k).is_some_and(|m| m.1 <= s) {
                k += 1;
            }
            merged.get(k).is_some_and(|m| m.0 <= e)
        })
        .collect()
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
    let lv = st.levers;
    let user_message_output = tool.as_ref().is_none_or(|t| t.id.is_empty());
    let view = if kind == Kind::ToolOutput && user_message_output { shapes::viewed_file(text) } else { None };
    let mut lines = lines_of(text, lv.grep_prefixes);
    let may_reminder = matches!(kind, Kind::ToolOutput | Kind::UserText | Kind::Template)
        || (kind == Kind::System && matches!(loc, Loc::Message(_)));
    let reminder_ranges = if may_reminder || kind == Kind::System { shapes::reminders(text) } else { Vec::new() };
    let mut edits: Vec<Edit> = Vec::new();

    // A whole block identical to an earlier verbatim one: tool output, or a repeated system prompt.
    if matches!(kind, Kind::ToolOutput | Kind::System | Kind::Template) && text.len() >= MIN_SPAN_BYTES {
        if let Some(&src) = st.whole.get(&xxh3_64(text.as_bytes())) {
            let s = src as usize;
            if let Some(srcb) = st.srcs.get(s) {
                let what = if kind == Kind::System { "system text" } else { "output" };
                let label = markers::label(srcb, lv.short_markers, &markers::Ids(&st.tools));
                let marker =
                    markers::whole(what, &label, &markers::content_id(text, lv.short_markers), lv.short_markers);
                if let Some(saved) = gate(text, &marker, lv.calibrated_gate) {
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
            let label = markers::label(srcb, lv.short_markers, &markers::Ids(&st.tools));
            let marker = markers::reminder(&label, &markers::content_id(seg, lv.short_markers));
            if let Some(saved) = gate(seg, &marker, lv.calibrated_gate) {
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
    // Where spans may be replaced: tool output and template text, or the template part of a
    // SWE-agent instance message (never the issue text a person wrote above it).
    let region = match kind {
        Kind::ToolOutput | Kind::Template => Some(0..text.len()),
        Kind::UserText if lv.templates => shapes::instance_template_start(text).map(|s| s..text.len()),
        _ => None,
    };
    // A shell command that shows a file (`cat`, `sed -n`, `head`, SWE-agent `open`) is a file view
    // even without line numbers, as is a read tool that shows files as they are (Gemini CLI's).
    let file_read = kind == Kind::ToolOutput
        && tool.as_ref().is_some_and(|t| {
            t.command.as_deref().is_some_and(filters::command::shows_file) || shapes::shows_files_unnumbered(&t.name)
        });
    if let (Some(region), true) = (region, edits.iter().all(|e| e.mechanism != Mechanism::WholeOutput)) {
        let target = Target { kind, text, lines: &lines, region: &region, reserved: &reserved, file_read };
        span_edits(st, ord, &target, &mut edits);
    }
    edits.sort_by_key(|e| e.range.start);

    // Lines touched by an edit are no longer verbatim and can never be pointed at.
    // A filter's footer is an insertion: it leaves the line it sits next to verbatim.
    let cut = touched(&lines, edits.iter().map(|e| e.range.clone()).filter(|r| !r.is_empty()));
    for (l, cut) in lines.iter_mut().zip(cut) {
        l.verbatim = !cut;
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
    crate::dialect::json::encode_into(&new_text, &mut escaped);
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

/// The number a line shows, or its 1-based position when the run is numbered and this line is
/// not (a Read of a file after the Write that created it).
fn shown(lines: &[Line], j: usize, numbered: bool) -> Option<i64> {
    match (lines[j].num, numbered) {
        (Some(n), _) => Some(i64::from(n)),
        (None, true) => Some(j as i64 + 1),
        (None, false) => None,
    }
}

/// How many lines from current line `i` match source lines from `sl` one to one: same text
/// (prefixes aside), same numbering style along each side, and, when numbered, consecutive
/// numbers on both sides (so "lines 14-90" never stands for a re-run grep's 14, 42, 90).
/// `src_ok` says whether a source line is still forwarded verbatim; `src_end` bounds the source
/// (a span of the same block must end before the current one starts).
/// The block being folded: its lines, where the replaceable region ends, what is already replaced.
struct Here<'a> {
    lines: &'a [Line],
    end: usize,
    replaced: &'a [bool],
}

fn run_len(here: &Here, i: usize, src: &[Line], sl: usize, src_end: usize, src_ok: impl Fn(usize) -> bool) -> usize {
    let (cur, cur_end, replaced) = (here.lines, here.end, here.replaced);
    let src_end = src_end.min(src.len());
    if sl >= src_end {
        return 0;
    }
    let max = (cur_end - i).min(src_end - sl);
    let numbered = cur[i].num.is_some() || src[sl].num.is_some();
    let (c0, s0) = (shown(cur, i, numbered), shown(src, sl, numbered));
    let (cs, ss) = ((cur[i].style, cur[i].group), (src[sl].style, src[sl].group));
    let mut k = 0;
    while k < max && !replaced[i + k] && src_ok(sl + k) {
        let (c, s) = (&cur[i + k], &src[sl + k]);
        if c.h != s.h || (c.style, c.group) != cs || (s.style, s.group) != ss {
            break;
        }
        let step = k as i64;
        if numbered
            && (shown(cur, i + k, true) != c0.map(|x| x + step) || shown(src, sl + k, true) != s0.map(|x| x + step))
        {
            break;
        }
        k += 1;
    }
    k
}

/// "lines a-b above" is ambiguous when another verbatim line of the block outside the source
/// span shows one of those numbers in the same style (an earlier view of the same lines).
fn ambiguous_above(lines: &[Line], sl: usize, len: usize, upto: usize, replaced: &[bool]) -> bool {
    let s = &lines[sl];
    let Some(first) = s.num else { return false };
    let last = first + (len as u32 - 1);
    (0..upto).filter(|j| !(sl..sl + len).contains(j)).any(|j| {
        let l = &lines[j];
        !replaced[j] && l.style == s.style && l.group == s.group && l.num.is_some_and(|n| (first..=last).contains(&n))
    })
}

struct Candidate {
    /// The earlier block, or `None` for this block.
    block: Option<usize>,
    line: usize,
    len: usize,
}

/// The block span dedup works on.
#[derive(Clone, Copy)]
struct Target<'a> {
    kind: Kind,
    text: &'a str,
    lines: &'a [Line],
    /// Where spans may be replaced.
    region: &'a Range<usize>,
    /// Byte ranges a filter's markers point at: never replaced.
    reserved: &'a [Range<usize>],
    /// The output of a shell command that shows a file: it folds only as a whole.
    file_read: bool,
}

/// Greedy left-to-right: at each line take the longest run matching verbatim earlier lines, of an
/// earlier block or (if `same_block`) of this block above it.
fn span_edits(st: &State, ord: usize, target: &Target, edits: &mut Vec<Edit>) {
    let Target { kind, text, lines, region, reserved, file_read } = *target;
    let lv = st.levers;
    // The numbered lines of a tool output: a file view (Read, `cat -n`, an editor window). Grep
    // hits are search results, not a view the model copies anchors from. A shell file read is a
    // view as a whole, numbered or not.
    let in_view = |l: &Line| l.num.is_some() && l.style != Some(Style::Grep);
    let view = match (lines.iter().position(in_view), lines.iter().rposition(in_view)) {
        (Some(a), Some(b)) => a..b + 1,
        _ if file_read => 0..lines.len(),
        _ => 0..0,
    };
    let view_whole = kind == Kind::ToolOutput && !view.is_empty() && !lv.view_spans;
    let mut replaced = touched(lines, edits.iter().map(|e| e.range.clone()));
    // Lines a filter marker points at stay verbatim here, though they may still be pointed at.
    let mut blocked = replaced.clone();
    for (b, r) in blocked.iter_mut().zip(touched(lines, reserved.iter().cloned())) {
        *b |= r;
    }
    let first = lines.partition_point(|l| (l.start as usize) < region.start);
    let end = lines.partition_point(|l| (l.end as usize) <= region.end);
    let mut local: IdMap<Vec<u32>> = IdMap::default();
    let mut indexed = 0usize;
    let mut found: Vec<Edit> = Vec::new();
    let mut i = first;
    while i + MIN_SPAN_LINES <= end {
        // Windows that end above line `i` are final: index them for repeats inside this block.
        while lv.same_block && indexed + MIN_SPAN_LINES <= i {
            if !replaced[indexed..indexed + MIN_SPAN_LINES].contains(&true) {
                let w = &lines[indexed..indexed + MIN_SPAN_LINES];
                let e = local.entry(window_key(w[0].h, w[1].h, w[2].h)).or_default();
                if e.len() < WINDOW_CANDIDATES {
                    e.push(indexed as u32);
                }
            }
            indexed += 1;
        }
        if blocked[i] {
            i += 1;
            continue;
        }
        let key = window_key(lines[i].h, lines[i + 1].h, lines[i + 2].h);
        let mut best: Option<Candidate> = None;
        for &(sb, sl) in st.windows.get(&key).into_iter().flatten() {
            let Some(src) = st.srcs.get(sb as usize) else {
                continue;
            };
            let sl = sl as usize;
            let here = Here { lines, end, replaced: &blocked };
            let len = run_len(&here, i, &src.lines, sl, usize::MAX, |j| src.lines[j].verbatim);
            if len >= MIN_SPAN_LINES && best.as_ref().is_none_or(|b| len > b.len) {
                best = Some(Candidate { block: Some(sb as usize), line: sl, len });
            }
        }
        for &sl in local.get(&key).into_iter().flatten() {
            let sl = sl as usize;
            let here = Here { lines, end, replaced: &blocked };
            let len = run_len(&here, i, lines, sl, i, |j| !replaced[j]);
            if len >= MIN_SPAN_LINES
                && best.as_ref().is_none_or(|b| len > b.len)
                && !ambiguous_above(lines, sl, len, i, &replaced)
            {
                best = Some(Candidate { block: None, line: sl, len });
            }
        }
        let Some(c) = best else {
            i += 1;
            continue;
        };
        // A file view folds only as a whole (all its numbered lines, one source): an Edit anchor
        // the model copies from it is then whole here or whole in the one block the marker names.
        // A span boundary inside a view could cut an anchor that exists nowhere else in one piece.
        let run = c.len;
        if view_whole && (i != view.start || i + run != view.end) {
            i += 1;
            continue;
        }
        let (at, sl, len) = (i, c.line, run);
        let range = lines[at].start as usize..lines[at + len - 1].end as usize;
        let removed = &text[range.clone()];
        if removed.len() < MIN_SPAN_BYTES {
            i += 1;
            continue;
        }
        let (src_lines, src_label, src_pos) = match c.block {
            Some(sb) => {
                let s = &st.srcs[sb];
                let label = markers::label(s, lv.short_markers, &markers::Ids(&st.tools));
                (&s.lines[..], Some(label), (s.lines[sl].pos, s.lines[sl + len - 1].pos))
            }
            None => {
                let all: Vec<&Edit> = edits.iter().chain(&found).collect();
                let pos = |j| forwarded_pos_refs(text, lines, j, &all);
                (lines, None, (pos(sl), pos(sl + len - 1)))
            }
        };
        let nums = |l: &[Line], j: usize| l[j].num.map(|a| (i64::from(a), i64::from(a) + len as i64 - 1));
        // An unnumbered source still at its own positions (a call's content, an unedited output)
        // shows line k at position k: those are its numbers too.
        let src_nums = nums(src_lines, sl).or_else(|| {
            let at_own = src_pos.0 as usize == sl + 1 && src_pos.1 as usize == sl + len;
            (lines[at].num.is_some() && at_own).then(|| (i64::from(src_pos.0), i64::from(src_pos.1)))
        });
        let span = SpanLines { here_nums: nums(lines, at), len, src_nums, src_pos };
        let id = markers::content_id(removed, lv.short_markers);
        let marker = markers::span(&span, src_label.as_deref(), &id, lv.short_markers);
        match gate(removed, &marker, lv.calibrated_gate) {
            Some(saved) => {
                found.push(Edit {
                    range,
                    marker,
                    mechanism: Mechanism::Span,
                    source: c.block.unwrap_or(ord),
                    source_lines: Some(sl..sl + len),
                    est_saved: saved,
                });
                replaced[at..at + len].iter_mut().for_each(|r| *r = true);
                blocked[at..at + len].iter_mut().for_each(|r| *r = true);
                i += run;
            }
            None => i += 1,
        }
    }
    edits.extend(found);
}

/// 1-based position of line `j` in the forwarded block once `edits` (each before or after it,
/// never across it) are applied: every removed newline moves it up one line.
fn forwarded_pos_refs(text: &str, lines: &[Line], j: usize, edits: &[&Edit]) -> u32 {
    let start = lines[j].start as usize;
    let removed: usize = edits
        .iter()
        .filter(|e| e.range.end <= start)
        .map(|e| memchr::memchr_iter(b'\n', text[e.range.clone()].as_bytes()).count())
        .sum();
    (j + 1 - removed) as u32
}
