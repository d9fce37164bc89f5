//! What clearing did to a replayed conversation, beyond tokens: the simulated cache-billed input,
//! and what the model could still see in the requests that had cleared outputs: the `old_string`
//! of each Edit it went on to make (an anchor), the identifiers it went on to write, and the
//! first error line of every cleared command output.

use std::collections::HashSet;

use memchr::memmem;
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use super::sources::Conversation;
use super::Stats;
use crate::dialect::blocks::{self, Block, Kind, Loc};
use crate::dialect::json;
use crate::fold::clear::outline::{self, Shape};
use crate::fold::clear::{candidates, Cleared};
use crate::fold::{shapes, Prepared};

/// Prices of the billing simulation, relative to input: a cache read of the prefix the previous
/// request shared, a cache write of the rest (Anthropic's 5-minute cache).
pub const READ: f64 = 0.1;
pub const WRITE: f64 = 1.25;

/// Input billed for one request whose blocks have `tokens` and identities `ids`, after a request
/// with identities `prev` (empty for the first): the common leading blocks as cache reads, the
/// rest as cache writes.
pub fn billed(tokens: &[u64], ids: &[u64], prev: &[u64]) -> f64 {
    let common = ids.iter().zip(prev).take_while(|(a, b)| a == b).count();
    let read: u64 = tokens[..common].iter().sum();
    let rest: u64 = tokens[common..].iter().sum();
    READ * read as f64 + WRITE * rest as f64
}

/// The same bill as a prompt cache that is read only where an earlier request wrote: each request's
/// breakpoint at its end writes the prefix it sent, and a later request reads the longest such
/// prefix it starts with. This is what a client's own rolling breakpoint gets (Claude Code's), and
/// stricter than `billed`: after a step, a prefix shared with the previous request is read only up
/// to the last place a request ended before the first changed block.
#[derive(Default)]
pub struct CacheEntries {
    /// Chained hashes of the block identities of every prefix written.
    written: HashSet<u64>,
}

impl CacheEntries {
    pub fn billed(&mut self, tokens: &[u64], ids: &[u64]) -> f64 {
        let (mut h, mut read_upto) = (0u64, 0);
        let mut chain = Vec::with_capacity(ids.len());
        for (k, id) in ids.iter().enumerate() {
            h = xxh3_64(&[h.to_le_bytes(), id.to_le_bytes()].concat());
            chain.push(h);
            if self.written.contains(&h) {
                read_upto = k + 1;
            }
        }
        if let Some(&end) = chain.last() {
            self.written.insert(end);
        }
        let read: u64 = tokens[..read_upto].iter().sum();
        let rest: u64 = tokens[read_upto..].iter().sum();
        READ * read as f64 + WRITE * rest as f64
    }
}

fn strip(l: &str) -> &str {
    match shapes::number_prefix(l) {
        Some((_, _, n)) => &l[n..],
        None => l,
    }
}

/// The text of a request as the model reads it: every text block and what tool calls write,
/// lines without their number prefixes, blocks apart (an anchor lies within one block).
pub fn visible_text(body: &[u8], blocks: &[Block]) -> String {
    let mut out = String::with_capacity(body.len());
    for b in blocks {
        match b.kind {
            Kind::Other => continue,
            Kind::ToolCall => {
                let v = json::call_args(body, &b.range).unwrap_or_default();
                strings(&v, &mut |s| push_stripped(&mut out, s));
            }
            _ => {
                if let Ok(t) = json::decode(body, b.range.clone()) {
                    push_stripped(&mut out, &t);
                }
            }
        }
        out.push_str("\n\u{0}\n");
    }
    out
}

fn push_stripped(out: &mut String, text: &str) {
    for l in text.split('\n') {
        out.push_str(strip(l));
        out.push('\n');
    }
}

/// Calls `f` with every string value in `v`.
fn strings(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, f)),
        Value::Object(o) => o.values().for_each(|x| strings(x, f)),
        _ => {}
    }
}

/// What the model wrote in answer to a request: the identifiers it used and the `old_string`s
/// of its edits.
#[derive(Default)]
pub struct Reply {
    pub identifiers: Vec<String>,
    pub anchors: Vec<String>,
}

/// The model message that follows message `after` in `next` (the conversation's next request).
pub fn reply(next: &[u8], blocks: &[Block], after: u32) -> Reply {
    let mut r = Reply::default();
    let start = blocks.iter().position(|b| matches!(b.loc, Loc::Message(m) if m >= after));
    let Some(start) = start.filter(|&k| blocks[k].from_model) else { return r };
    let mut seen = HashSet::new();
    let mut add_ids = |text: &str, r: &mut Reply| {
        for w in outline::identifiers(text.as_bytes()) {
            if seen.insert(xxh3_64(w)) {
                r.identifiers.push(String::from_utf8_lossy(w).into_owned());
            }
        }
    };
    for b in blocks[start..].iter().take_while(|b| b.from_model) {
        match b.kind {
            Kind::AssistantText => {
                if let Ok(t) = json::decode(next, b.range.clone()) {
                    add_ids(&t, &mut r);
                }
            }
            Kind::ToolCall => {
                let v = json::call_args(next, &b.range).unwrap_or_default();
                strings(&v, &mut |s| add_ids(s, &mut r));
                old_strings(&v, &mut r.anchors);
            }
            _ => {}
        }
    }
    r
}

/// `old_string` (Claude Code Edit, MultiEdit's `edits`), `old_str` (str_replace editors),
/// `oldString` (OpenCode) of a call's arguments.
fn old_strings(v: &Value, out: &mut Vec<String>) {
    let Some(o) = v.as_object() else { return };
    for k in ["old_string", "old_str", "oldString"] {
        if let Some(s) = o.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()) {
            out.push(s.to_string());
        }
    }
    if let Some(edits) = o.get("edits").and_then(Value::as_array) {
        edits.iter().for_each(|e| old_strings(e, out));
    }
}

/// Whether `needle` (lines without number prefixes) is in `haystack` (a `visible_text`).
pub fn visible(haystack: &str, needle: &str) -> bool {
    let stripped: String = needle.split('\n').map(strip).collect::<Vec<_>>().join("\n");
    memmem::find(haystack.as_bytes(), stripped.as_bytes()).is_some()
}

/// The first error-like line of each cleared command output (file views excluded: their code is
/// not a run's error), as (block, line).
pub fn first_errors(p: &Prepared, cleared: &[u32]) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for &j in cleared {
        let (Some(blk), Some(src)) = (p.blocks.get(j as usize), p.state.srcs.get(j as usize)) else { continue };
        let Ok(text) = json::decode(&p.body, blk.range.clone()) else { continue };
        let Some(d) = candidates::describe(src, &text, &[]) else { continue };
        if d.shape == Shape::View {
            continue;
        }
        // As long as a stub keeps error lines (longer ones: their first `MAX_LINE` bytes).
        if let Some(l) = outline::first_error_line(&text) {
            let kept = outline::clip_line(l);
            out.push((j, kept.trim_end_matches('…').to_string()));
        }
    }
    out
}

/// The economics clearing is replayed for (`--target-kind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TargetKind {
    /// A provider that caches prefixes, billed as the simulation bills (reads 0.1x, writes 1.25x).
    #[default]
    Cache,
    /// A quota-bound target (a free tier): every token counts.
    Quota,
}

impl TargetKind {
    pub fn parse(s: &str) -> Option<TargetKind> {
        match s {
            "cache" => Some(TargetKind::Cache),
            "quota" => Some(TargetKind::Quota),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Cache => "cache",
            TargetKind::Quota => "quota",
        }
    }
}

/// In a request with cleared outputs: the Edit anchors and identifiers of the model's next
/// message that were in the request, and the first error line of each cleared command output,
/// must still be in the forwarded request.
#[allow(clippy::too_many_arguments)]
pub fn check_visibility(
    c: &Conversation,
    t: usize,
    body: &[u8],
    bin: &[Block],
    out: &[u8],
    bout: &[Block],
    p: &Prepared,
    cl: &Cleared,
    first_errors_seen: &mut HashSet<u64>,
    st: &mut Stats,
) {
    let orig_text = visible_text(body, bin);
    let fwd_text = visible_text(out, bout);
    if let Some(next) = c.turns.get(t + 1) {
        let messages = bin.iter().filter_map(|b| match b.loc {
            Loc::Message(i) => Some(i + 1),
            Loc::System(_) => None,
        });
        let after = messages.max().unwrap_or(0);
        if let Ok(nblocks) = blocks::locate(c.dialect, next) {
            let reply = reply(next, &nblocks, after);
            for a in &reply.anchors {
                if visible(&orig_text, a) {
                    st.anchors_checked += 1;
                    st.anchors_kept += u64::from(visible(&fwd_text, a));
                }
            }
            for id in &reply.identifiers {
                if memchr::memmem::find(orig_text.as_bytes(), id.as_bytes()).is_some() {
                    st.refs_checked += 1;
                    st.refs_kept += u64::from(memchr::memmem::find(fwd_text.as_bytes(), id.as_bytes()).is_some());
                }
            }
        }
    }
    let lines: HashSet<&str> = fwd_text.split('\n').map(str::trim).collect();
    for (j, l) in first_errors(p, &cl.cleared_blocks) {
        let raw = p.blocks.get(j as usize).and_then(|b| body.get(b.range.clone())).unwrap_or_default();
        if !first_errors_seen.insert(xxh3_64(raw)) {
            continue;
        }
        st.first_errors_checked += 1;
        if lines.contains(l.as_str()) || fwd_text.contains(&l) {
            st.first_errors_kept += 1;
        } else if st.first_errors_lost.len() < 5 {
            st.first_errors_lost.push(shapes::clip(&l, 160));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_reads_the_shared_prefix() {
        let t = [100, 50, 10];
        assert_eq!(billed(&t, &[1, 2, 3], &[]), 1.25 * 160.0);
        assert!((billed(&t, &[1, 2, 3], &[1, 2]) - (0.1 * 150.0 + 1.25 * 10.0)).abs() < 1e-9);
        assert!((billed(&t, &[1, 9, 3], &[1, 2]) - (0.1 * 100.0 + 1.25 * 60.0)).abs() < 1e-9);
    }

    #[test]
    fn anchors_match_without_line_numbers() {
        let hay = "     1→def a():\n     2→    return 1\n";
        let text: String = hay.split('\n').map(strip).collect::<Vec<_>>().join("\n");
        assert!(visible(&text, "def a():\n    return 1"));
        assert!(!visible(&text, "def b():"));
    }
}
