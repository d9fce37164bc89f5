//! One conversation's clearing history, rebuilt from the request alone: the earlier requests are
//! the prefixes of this one that end where a model turn starts, so replaying the decision at each
//! of them gives the steps the proxy took then (or would have, had it been running). A cached
//! `Conv` only saves redoing that: turn N+1 resumes from turn N's.

use std::collections::HashMap;
use std::sync::Arc;

use crate::dialect::blocks::{Block, Kind, Loc};
use crate::dialect::json;
use crate::fold::originals;
use crate::fold::state::State;

use super::candidates;
use super::cost::{self, Economics};
use super::outline::{self, Seen, Shape, Subject};
use super::stub;
use super::Settings;

/// Outputs smaller than this many estimated tokens are never cleared: a stub would save little.
pub const MIN_OUTPUT_TOKENS: u32 = 150;
/// A cleared output must save this many tokens and keep at most this share of them in its stub.
pub const MIN_SAVED_TOKENS: u32 = 100;
pub const MAX_STUB_SHARE: f64 = 0.5;
/// The newest view of a file stays while the file was viewed, edited or written within this many
/// tool outputs, since the agent may still edit from it (clearing it would cut the anchor). A file
/// only read so far is often edited much later from that read (explore, plan, then edit); one the
/// agent has edited already has its new text in the edit calls and their results, and is usually
/// read again when the agent comes back to it. A big view costs more per turn, so it stays less.
/// Tuned on the Claude Code corpus (`tokenfold replay`, README).
pub const LIVE_VIEW_OUTPUTS: u32 = 20;
pub const LIVE_EDITED_VIEW_OUTPUTS: u32 = 4;
pub const BIG_VIEW_TOKENS: u32 = 3000;
pub const LIVE_BIG_VIEW_OUTPUTS: u32 = 8;

/// One tool output as clearing sees it.
#[derive(Debug, Clone)]
pub struct Output {
    pub block: u32,
    /// Which output it is in the conversation (text parts of one tool result share it).
    pub group: u32,
    /// Its call id (`toolu_...`, `call_...`), when it has one.
    pub tool_id: Option<String>,
    /// May be cleared at all: not excluded, and its stub is small enough.
    pub eligible: bool,
    /// The stub's text as JSON string contents (escaped), and its estimated tokens.
    pub stub: Arc<[u8]>,
    pub stub_tokens: u32,
    /// The id of its original in the store.
    pub original_id: String,
    pub shape: Shape,
    /// For a file view: the file (index into `Conv::files`) and the lines it shows.
    pub file: Option<u32>,
    pub lines_shown: Option<(u32, u32)>,
    /// A later view or whole write of the same file covers it.
    pub superseded: bool,
    pub cleared: bool,
    /// Its original was handed to the store by this process.
    pub stored: bool,
}

#[derive(Debug, Clone, Default)]
struct FileState {
    /// `Conv::groups` when the file was last viewed, edited or written.
    last_touch: u32,
    /// The agent edited or wrote it.
    edited: bool,
    views: Vec<u32>,
}

/// What the decision at the end of the latest request did.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Outputs cleared by it, in block order.
    pub newly: Vec<u32>,
    /// The cached tokens it made the provider write again (estimated).
    pub rewritten: u64,
}

/// Estimated tokens of a block: escaped JSON bytes / 4 (only compared with each other).
fn est(bytes: usize) -> u32 {
    (bytes as u64).div_ceil(4).min(u64::from(u32::MAX)) as u32
}

#[derive(Clone, Default)]
pub struct Conv {
    /// Blocks processed, and requests (model turns) decided so far.
    pub blocks: u32,
    pub turns: u32,
    /// Blocks of the previous request: the prefix the provider has cached.
    prev_end: u32,
    /// Where the provider holds a cached prefix that is still current, ascending: the end of each
    /// request (its rolling breakpoint wrote there), dropped once a step rewrites before it. A
    /// step re-writes from the last of these at or before its first cleared output, not from that
    /// output: a cache is read only up to a point where an earlier request wrote one.
    cache_entries: Vec<u32>,
    /// Per block: estimated tokens as sent originally and as folded.
    orig: Vec<u32>,
    folded: Vec<u32>,
    /// Per block: the blocks whose fold markers point into it (forwarded unfolded once it is cleared).
    referrers: Vec<Vec<u32>>,
    /// Per block: forwarded as the client sent it, because a block its markers point at is cleared.
    pub unfolded: Vec<bool>,
    /// Per block: the output it is, if any.
    output_of: Vec<Option<u32>>,
    pub outputs: Vec<Output>,
    /// Tool outputs seen (groups).
    groups: u32,
    last_group: Option<(Loc, Option<String>)>,
    seen: Seen,
    files: HashMap<String, u32>,
    file_states: Vec<FileState>,
    by_original: HashMap<String, u32>,
    /// The step taken at the latest request, if one was.
    pub last_step: Option<Step>,
    /// Reads of cleared originals in the latest request's model turn.
    pub last_recalls: u64,
    approx_bytes: usize,
}

impl crate::fold::lru::Weighed for Conv {
    fn approx_bytes(&self) -> usize {
        // The identifier set grows with the conversation: about 16 bytes an entry.
        self.approx_bytes + self.seen.len() * 16
    }
}

/// What processing needs besides the conversation: the request and how to word stubs.
pub struct Input<'a> {
    pub body: &'a [u8],
    pub blocks: &'a [Block],
    pub fold: &'a State,
    pub settings: &'a Settings,
    pub recall: &'a dyn Fn(&str) -> String,
}

impl Conv {
    /// The forwarded size of block `j` now.
    fn fwd(&self, j: usize) -> u32 {
        match self.output_of[j].map(|o| &self.outputs[o as usize]) {
            Some(o) if o.cleared => o.stub_tokens,
            _ if self.unfolded[j] => self.orig[j],
            _ => self.folded[j],
        }
    }

    /// Processes blocks `self.blocks..end` of the request.
    pub fn extend(&mut self, inp: &Input, end: usize) -> json::Res<()> {
        for j in self.blocks as usize..end {
            self.block(inp, j)?;
        }
        self.blocks = end as u32;
        Ok(())
    }

    fn block(&mut self, inp: &Input, j: usize) -> json::Res<()> {
        let blk = &inp.blocks[j];
        let raw = inp.body.get(blk.range.clone()).ok_or(json::Malformed)?;
        let inner = if blk.is_text() { raw.len().saturating_sub(2) } else { raw.len() };
        let result = inp.fold.results.get(j).and_then(|r| r.as_ref());
        self.orig.push(est(inner));
        self.folded.push(result.map_or(est(inner), |r| est(r.escaped.len())));
        self.referrers.push(Vec::new());
        self.unfolded.push(false);
        self.output_of.push(None);
        for n in result.map(|r| r.notes.as_slice()).unwrap_or_default() {
            if n.source == j {
                continue;
            }
            if let Some(r) = self.referrers.get_mut(n.source) {
                if !r.contains(&(j as u32)) {
                    r.push(j as u32);
                }
            }
            // A marker pointing into an output cleared already cannot be followed: send it whole.
            if self.output_of.get(n.source).copied().flatten().is_some_and(|o| self.outputs[o as usize].cleared) {
                self.unfolded[j] = true;
            }
        }
        let src = inp.fold.srcs.get(j).ok_or(json::Malformed)?;
        if blk.kind == Kind::ToolCall {
            if let Some(t) = src.tool.as_deref().and_then(candidates::call_touch) {
                let f = self.file(t.path);
                let groups = self.groups;
                let st = &mut self.file_states[f as usize];
                st.last_touch = groups;
                st.edited = true;
                if t.whole {
                    for &v in &st.views {
                        self.outputs[v as usize].superseded = true;
                    }
                }
            }
        }
        if blk.kind == Kind::ToolOutput {
            let text = json::decode(inp.body, blk.range.clone())?;
            self.output(inp, j, &text)?;
        }
        // Identifiers the model has been shown (an output's own are recorded by `output`).
        if !matches!(blk.kind, Kind::Other | Kind::ToolOutput) {
            self.seen.add(raw);
        }

        self.approx_bytes += 48;
        Ok(())
    }

    fn file(&mut self, path: &str) -> u32 {
        let key = path.trim_start_matches("./");
        if let Some(&f) = self.files.get(key) {
            return f;
        }
        let f = self.file_states.len() as u32;
        self.files.insert(key.to_string(), f);
        self.file_states.push(FileState::default());
        self.approx_bytes += key.len() + 64;
        f
    }

    fn output(&mut self, inp: &Input, j: usize, text: &str) -> json::Res<()> {
        let blk = &inp.blocks[j];
        let src = &inp.fold.srcs[j];
        let tool_id = blk.tool_id.as_ref().and_then(|r| json::decode(inp.body, r.clone()).ok()).map(|c| c.into_owned());
        let key = (blk.loc, tool_id.clone());
        if tool_id.is_none() || self.last_group.as_ref() != Some(&key) {
            self.groups += 1;
        }
        self.last_group = Some(key);
        let Some(d) = candidates::describe(src, text, &inp.settings.exclude_tools) else {
            self.seen.add(text.as_bytes());
            return Ok(());
        };
        let mut out = Output {
            block: j as u32,
            group: self.groups - 1,
            tool_id,
            eligible: false,
            stub: Arc::from(&[][..]),
            stub_tokens: 0,
            original_id: String::new(),
            shape: d.shape,
            file: None,
            lines_shown: d.lines_shown,
            superseded: false,
            cleared: false,
            stored: false,
        };
        if !d.excluded && self.orig[j] >= MIN_OUTPUT_TOKENS {
            out.original_id = originals::id_of(text);
            let subj = Subject { shape: d.shape, path: d.path.as_deref() };
            let outline = outline::outline(text, &subj, &self.seen);
            let subject = src.tool.as_deref().and_then(|t| t.subject.as_deref());
            let s = stub::text(&d, subject, text, &outline.lines, &(inp.recall)(&out.original_id));
            let mut escaped = Vec::with_capacity(s.len() + 16);
            json::encode_into(&s, &mut escaped);
            out.stub_tokens = est(escaped.len());
            out.eligible = out.stub_tokens as f64 <= MAX_STUB_SHARE * self.orig[j] as f64
                && self.orig[j].saturating_sub(out.stub_tokens) >= MIN_SAVED_TOKENS;
            self.approx_bytes += escaped.len();
            out.stub = Arc::from(escaped);
            // What it shows need not be listed by a later outline (a re-read lists no symbols).
            self.seen.extend(&outline.shown);
            // The first output with this text names it: a later read of the original shows the same.
            self.by_original.entry(out.original_id.clone()).or_insert(self.outputs.len() as u32);
        } else {
            self.seen.add(text.as_bytes());
        }
        let k = self.outputs.len() as u32;
        if let (Shape::View, Some(p)) = (d.shape, d.path.as_deref()) {
            let f = self.file(p);
            out.file = Some(f);
            let groups = self.groups;
            let covers = |old: Option<(u32, u32)>| match (d.lines_shown, old) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some((a, b)), Some((c, e))) => a <= c && e <= b,
            };
            let st = &mut self.file_states[f as usize];
            st.last_touch = groups;
            for &v in &st.views {
                let o = &mut self.outputs[v as usize];
                if covers(o.lines_shown) {
                    o.superseded = true;
                }
            }
            st.views.push(k);
        }
        self.output_of[j] = Some(k);
        self.approx_bytes += 160;
        self.outputs.push(out);
        Ok(())
    }

    /// Whether output `o` stays for now although it is old enough to clear: the newest view of a
    /// file the agent touched recently (it may edit from it).
    fn keeps(&self, o: &Output) -> bool {
        let (Shape::View, Some(f), false) = (o.shape, o.file, o.superseded) else { return false };
        let file = &self.file_states[f as usize];
        let mut live = if file.edited { LIVE_EDITED_VIEW_OUTPUTS } else { LIVE_VIEW_OUTPUTS };
        if self.orig[o.block as usize] > BIG_VIEW_TOKENS {
            live = live.min(LIVE_BIG_VIEW_OUTPUTS);
        }
        self.groups.saturating_sub(file.last_touch) < live
    }

    /// Decides the request that ends at block `end` (the blocks before it are processed): takes
    /// a step when the target's economics say it pays. On a cache-billed target the step clears
    /// the candidates from the one where it pays best onwards (a later first output re-writes
    /// less of the cached prefix); on a quota-bound one, all of them.
    pub fn decide(&mut self, end: usize, econ: Economics, settings: &Settings) {
        let turns = self.turns + 1;
        self.turns = turns;
        self.last_step = None;
        let prev_end = std::mem::replace(&mut self.prev_end, end as u32) as usize;
        if prev_end > 0 && self.cache_entries.last() != Some(&(prev_end as u32)) {
            self.cache_entries.push(prev_end as u32);
        }
        let cutoff = self.groups.saturating_sub(settings.keep_recent as u32);
        // Candidates in block order, with what clearing each saves.
        let mut cands: Vec<(u32, i64)> = Vec::new();
        for (k, o) in self.outputs.iter().enumerate() {
            // Never an output the model has not answered yet (a turn of many parallel calls).
            if o.group >= cutoff
                || o.block as usize >= prev_end
                || !o.eligible
                || o.cleared
                || (settings.keep_live_views && self.keeps(o))
            {
                continue;
            }
            let gain = i64::from(self.fwd(o.block as usize)) - i64::from(o.stub_tokens);
            if gain >= i64::from(MIN_SAVED_TOKENS) {
                cands.push((k as u32, gain));
            }
        }
        let Some(&(first, _)) = cands.first() else { return };
        let first_block = self.outputs[first as usize].block as usize;
        let n = self.blocks as usize;
        // Per block from the first candidate: its size once every candidate is cleared, and for a
        // block a candidate's markers point into, the last such candidate (it is sent unfolded
        // when any of them is cleared).
        let mut cand_at: Vec<Option<usize>> = vec![None; n - first_block];
        for (i, &(k, _)) in cands.iter().enumerate() {
            cand_at[self.outputs[k as usize].block as usize - first_block] = Some(i);
        }
        let mut unfold_by: Vec<Option<usize>> = vec![None; n - first_block];
        for (i, &(k, _)) in cands.iter().enumerate() {
            for &r in &self.referrers[self.outputs[k as usize].block as usize] {
                let r = r as usize;
                if !self.unfolded[r] && cand_at[r - first_block].is_none() {
                    unfold_by[r - first_block] = Some(i);
                }
            }
        }
        let mut net_gain: Vec<i64> = cands.iter().map(|&(_, g)| g).collect();
        for (r, by) in unfold_by.iter().enumerate() {
            if let Some(i) = by {
                let j = r + first_block;
                net_gain[*i] -= i64::from(self.orig[j]) - i64::from(self.folded[j]);
            }
        }
        let after = |j: usize| -> u64 {
            let rel = j - first_block;
            match (cand_at[rel], unfold_by[rel]) {
                (Some(i), _) => u64::from(self.outputs[cands[i].0 as usize].stub_tokens),
                (None, Some(_)) => u64::from(self.orig[j]),
                _ => u64::from(self.fwd(j)),
            }
        };
        // A cache is read only up to where an earlier request wrote one, so a step re-writes the
        // blocks from the last current cache entry at or before its first cleared output as well
        // (unchanged by the step: markers point back, so the blocks it unfolds come after).
        // `unchanged_sum[k]`: tokens of the blocks `read_from..read_from + k` as forwarded now.
        let any_prefix = matches!(econ, Economics::Cached { any_prefix: true, .. });
        let entry_before = |b: usize| match any_prefix {
            true => b,
            false => self.cache_entries.iter().rev().find(|&&e| e as usize <= b).map_or(0, |&e| e as usize),
        };
        let read_from = entry_before(first_block);
        let last_block = self.outputs[cands[cands.len() - 1].0 as usize].block as usize;
        let mut unchanged_sum = Vec::with_capacity(last_block - read_from + 1);
        unchanged_sum.push(0u64);
        for j in read_from..last_block {
            unchanged_sum.push(unchanged_sum[j - read_from] + u64::from(self.fwd(j)));
        }
        // Suffix sums: tokens re-written and saved when the step starts at candidate i; the step
        // starts where it is worth most (a quota-bound step clears them all).
        let turns = u64::from(turns);
        let mut best: Option<(usize, f64, u64)> = None;
        let (mut from_first, mut saved, mut j, mut i) = (0u64, 0i64, prev_end.max(first_block), cands.len());
        while i > 0 {
            i -= 1;
            let b = self.outputs[cands[i].0 as usize].block as usize;
            while j > b {
                j -= 1;
                from_first += after(j);
            }
            saved += net_gain[i];
            let s = saved.max(0) as u64;
            // Re-written: from the last current cache entry at or before b to the cached end.
            let unchanged = unchanged_sum[b - read_from] - unchanged_sum[entry_before(b) - read_from];
            let rewritten = from_first + unchanged;
            let whole = i == 0 || matches!(econ, Economics::Cached { .. });
            let worth = cost::worth(econ, s, rewritten, turns);
            if whole
                && cost::pays(econ, s, rewritten, turns, settings.clear_at_least)
                && best.is_none_or(|b| worth > b.1)
            {
                best = Some((i, worth, rewritten));
            }
        }
        let Some((from, _, rewritten)) = best else { return };
        let first_cleared = self.outputs[cands[from].0 as usize].block;
        self.cache_entries.retain(|&e| e <= first_cleared);
        let newly: Vec<u32> = cands[from..].iter().map(|&(k, _)| k).collect();
        for &k in &newly {
            self.outputs[k as usize].cleared = true;
        }
        for (r, by) in unfold_by.iter().enumerate() {
            if by.is_some_and(|i| i >= from) {
                self.unfolded[r + first_block] = true;
            }
        }
        self.last_step = Some(Step { newly, rewritten });
    }

    /// Counts reads of cleared originals (their id in a tool call or an agent's command) in blocks
    /// `from..` of the request.
    pub fn count_recalls(&mut self, inp: &Input, from: usize) {
        let mut n = 0;
        for blk in inp.blocks.iter().skip(from) {
            if !matches!(blk.kind, Kind::ToolCall | Kind::AssistantText) {
                continue;
            }
            let raw = inp.body.get(blk.range.clone()).unwrap_or_default();
            n += originals::ids_in(raw)
                .filter(|id| self.by_original.get(*id).is_some_and(|&k| self.outputs[k as usize].cleared))
                .count() as u64;
        }
        self.last_recalls = n;
    }

    /// Outputs now cleared whose original this process has not stored yet (marked stored).
    pub fn unstored(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        for (k, o) in self.outputs.iter_mut().enumerate() {
            if o.cleared && !o.stored {
                o.stored = true;
                out.push(k as u32);
            }
        }
        out
    }

    /// Estimated tokens clearing removes from the request as it stands: cleared outputs against
    /// their folded form, less the pointers it had to unfold.
    pub fn saved_tokens(&self) -> u64 {
        let mut saved: i64 = 0;
        for o in self.outputs.iter().filter(|o| o.cleared) {
            let j = o.block as usize;
            let before = if self.unfolded[j] { self.orig[j] } else { self.folded[j] };
            saved += i64::from(before) - i64::from(o.stub_tokens);
        }
        for (j, &u) in self.unfolded.iter().enumerate() {
            if u && !self.output_of[j].is_some_and(|o| self.outputs[o as usize].cleared) {
                saved -= i64::from(self.orig[j]) - i64::from(self.folded[j]);
            }
        }
        saved.max(0) as u64
    }

    /// The stub block `j` is forwarded as, when it is a cleared output.
    pub fn stub_at(&self, j: usize) -> Option<&[u8]> {
        let o = &self.outputs[self.output_of.get(j).copied().flatten()? as usize];
        o.cleared.then_some(&o.stub[..])
    }

    pub fn cleared(&self) -> usize {
        self.outputs.iter().filter(|o| o.cleared).count()
    }
}
