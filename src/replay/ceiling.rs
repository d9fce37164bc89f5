//! Upper bounds on what lossless dedup could remove (`replay --ceiling`), measured on the same
//! rebuilt turn requests and with the same o200k counter as the replay itself.
//!
//! A line counts as removable when some window of 3 consecutive lines containing it (line-number
//! prefixes stripped, as the engine compares them) appeared earlier. No minimum span, no marker
//! cost, no gate: no pointer scheme can remove more, so these are ceilings, not estimates.
//! Each bound contains the one before:
//! - `cross_block`: windows seen in an earlier block of a non-assistant message (system, user
//!   text, tool output); targets are tool output (including tool output sent as user messages).
//! - `same_block`: also windows seen earlier in the same block.
//! - `any_source`: also assistant text and tool-call arguments as sources, and agent template
//!   text (SWE-agent demonstration, instance instructions) as targets.
//! - `gated`: `any_source` under the engine's span rules: maximal covered runs of 3+ lines and
//!   120+ bytes, each paying a 15-token marker (less than any real marker costs), kept when that
//!   saves 24+ tokens. Still an upper bound: one run may need several markers.
//! - `anchor_safe`: `gated` where a file view (numbered tool output) counts only when one run
//!   covers all of it, as the engine folds views (a span boundary inside a view can cut an Edit
//!   anchor). The bound under every invariant.
//! - `all_tool_output`: every token of tool output. Not lossless; the room there is at all.

use std::collections::HashSet;

use serde::Serialize;

use super::Counter;
use crate::dialect::blocks::{Block, Kind};
use crate::dialect::json;
use crate::fold::state::window_key;
use crate::fold::{dedup, shapes};

/// Token sums over a conversation's turn requests.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Ceiling {
    pub cross_block: u64,
    pub same_block: u64,
    pub any_source: u64,
    pub gated: u64,
    pub anchor_safe: u64,
    pub all_tool_output: u64,
}

/// The cheapest marker the gated bound charges per run.
pub const MIN_MARKER_TOKENS: u64 = 15;

impl Ceiling {
    pub fn add(&mut self, o: &Ceiling) {
        self.cross_block += o.cross_block;
        self.same_block += o.same_block;
        self.any_source += o.any_source;
        self.gated += o.gated;
        self.anchor_safe += o.anchor_safe;
        self.all_tool_output += o.all_tool_output;
    }
}

/// Per-conversation state: windows seen so far, and each block's removable tokens.
#[derive(Default)]
pub struct Meter {
    ids: Vec<u64>,
    per_block: Vec<Ceiling>,
    seen_non_assistant: HashSet<u64>,
    seen_any: HashSet<u64>,
}

impl Meter {
    /// Adds the bounds of one turn request (`ids`: block identities, as the stability check uses).
    pub fn turn(&mut self, body: &[u8], blocks: &[Block], ids: &[u64], counter: &mut Counter, total: &mut Ceiling) {
        let keep = ids.len() >= self.ids.len() && ids[..self.ids.len()] == self.ids[..];
        if !keep {
            // A new context (after compaction): start over.
            *self = Meter::default();
        }
        for (k, blk) in blocks.iter().enumerate().skip(self.ids.len()) {
            let c = self.block(body, blk, counter);
            self.per_block.push(c);
            self.ids.push(ids[k]);
        }
        for c in &self.per_block {
            total.add(c);
        }
    }

    fn block(&mut self, body: &[u8], blk: &Block, counter: &mut Counter) -> Ceiling {
        let text: Option<String> = match blk.kind {
            Kind::Other => None,
            Kind::ToolCall => {
                let args = json::call_args(body, &blk.range).unwrap_or_default();
                shapes::call_content(&args).map(|(_, t)| t.to_string())
            }
            _ => json::decode(body, blk.range.clone()).ok().map(|t| t.into_owned()),
        };
        let Some(text) = text else { return Ceiling::default() };
        let lines = dedup::lines_of(&text, true);
        let windows: Vec<u64> = lines.windows(3).map(|w| window_key(w[0].h, w[1].h, w[2].h)).collect();
        let tool_output = blk.kind == Kind::ToolOutput;
        // Template text: the demonstration, or the instructions part of an instance message.
        let template_from = match blk.kind {
            Kind::Template => Some(0),
            Kind::UserText => shapes::instance_template_start(&text),
            _ => None,
        };
        let mut out = Ceiling::default();
        if tool_output {
            out.all_tool_output = counter.text(&text);
        }
        if tool_output || template_from.is_some() {
            let from_line = template_from.map_or(0, |b| lines.partition_point(|l| (l.start as usize) < b));
            let mut local = HashSet::new();
            let mut cover = [vec![false; lines.len()], vec![false; lines.len()], vec![false; lines.len()]];
            for (j, w) in windows.iter().enumerate() {
                let earlier_here = local.contains(w);
                let hits = [
                    tool_output && self.seen_non_assistant.contains(w),
                    tool_output && (self.seen_non_assistant.contains(w) || earlier_here),
                    j >= from_line && (self.seen_any.contains(w) || earlier_here),
                ];
                for (c, hit) in cover.iter_mut().zip(hits) {
                    if hit {
                        c[j..j + 3].iter_mut().for_each(|x| *x = true);
                    }
                }
                local.insert(*w);
            }
            let count = |c: &[bool], counter: &mut Counter| {
                let kept: Vec<&str> = lines
                    .iter()
                    .zip(c)
                    .filter(|(_, &on)| on)
                    .map(|(l, _)| &text[l.start as usize..l.end as usize])
                    .collect();
                if kept.is_empty() {
                    0
                } else {
                    counter.text(&kept.join("\n"))
                }
            };
            out.cross_block = count(&cover[0], counter);
            out.same_block = count(&cover[1], counter);
            out.any_source = count(&cover[2], counter);
            // Maximal runs of covered lines under the span rules.
            let in_view = |l: &crate::fold::state::Line| l.num.is_some() && l.style != Some(shapes::Style::Grep);
            let view = match (lines.iter().position(in_view), lines.iter().rposition(in_view)) {
                (Some(a), Some(b)) if tool_output => Some((a, b + 1)),
                _ => None,
            };
            let mut j = 0;
            while j < lines.len() {
                if !cover[2][j] {
                    j += 1;
                    continue;
                }
                let k = (j..lines.len()).find(|&k| !cover[2][k]).unwrap_or(lines.len());
                let bytes = lines[k - 1].end as usize - lines[j].start as usize;
                if k - j >= dedup::MIN_SPAN_LINES && bytes >= dedup::MIN_SPAN_BYTES {
                    let run = &text[lines[j].start as usize..lines[k - 1].end as usize];
                    let saved = counter.text(run).saturating_sub(MIN_MARKER_TOKENS);
                    if saved >= dedup::MIN_SAVED_TOKENS {
                        out.gated += saved;
                        match view {
                            None => out.anchor_safe += saved,
                            Some((a, b)) if j <= a && b <= k => {
                                let whole = &text[lines[a].start as usize..lines[b - 1].end as usize];
                                out.anchor_safe += counter.text(whole).saturating_sub(MIN_MARKER_TOKENS);
                            }
                            Some(_) => {}
                        }
                    }
                }
                j = k;
            }
        }
        let assistant = matches!(blk.kind, Kind::AssistantText | Kind::ToolCall);
        for w in windows {
            self.seen_any.insert(w);
            if !assistant {
                self.seen_non_assistant.insert(w);
            }
        }
        out
    }
}
