//! Clearing stale tool output: old tool results are replaced by a stub (what the output was, how
//! to get it back, its outline), in steps, when the chosen target's economics say it pays.
//!
//! Runs per attempt, after the pool picked a target, on the ingress dialect (translation comes
//! after), from the request as folding prepared it. The cleared set is a pure function of the
//! request bytes, the settings and the target's economics: every earlier request of the
//! conversation is a prefix of this one, and the decision taken at each is replayed
//! (`state::Conv`), so a restart, a second instance and `tokenfold replay` decide the same. The
//! per-conversation cache only saves the replay: turn N+1 resumes from turn N.

pub mod candidates;
pub mod cost;
pub mod outline;
mod state;
pub mod stub;

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::lru::Lru;
use super::originals::Originals;
use super::Prepared;
use crate::dialect::blocks::Block;
use crate::dialect::json;
pub use cost::Economics;
use state::{Conv, Input};

/// Bump when clearing output changes for the same input: it is part of every cache key.
pub const CLEAR_VERSION: u64 = 1;

/// The name clearing's figures go under in the ledger and `report --by mechanism`.
pub const MECHANISM: &str = "clear";

/// `[fold]` settings of clearing.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The newest tool outputs never cleared (`keep_recent`, default 3).
    pub keep_recent: usize,
    /// On a quota-bound target, a step needs this many clearable tokens (`clear_at_least`).
    pub clear_at_least: u64,
    /// Tools whose output is never cleared (`exclude_tools`).
    pub exclude_tools: Vec<String>,
    /// Keep the newest view of a file the agent touched recently even past `keep_recent` (it
    /// may edit from it). Not configurable: only fitting turns it off, when nothing else fits.
    pub keep_live_views: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            keep_recent: 3,
            clear_at_least: 2000,
            exclude_tools: candidates::DEFAULT_EXCLUDED.iter().map(|s| s.to_string()).collect(),
            keep_live_views: true,
        }
    }
}

impl Settings {
    fn key(&self) -> u64 {
        let seed = self.clear_at_least ^ u64::from(!self.keep_live_views) << 63;
        let mut k = xxh3_64_with_seed(&(self.keep_recent as u64).to_le_bytes(), seed);
        for t in &self.exclude_tools {
            k = xxh3_64_with_seed(t.as_bytes(), k);
        }
        k
    }
}

/// A request after clearing for one target.
#[derive(Debug, Clone)]
pub struct Cleared {
    /// The body to send (folding and clearing applied), in the ingress dialect.
    pub body: Bytes,
    /// The call id of the first tool output the step taken in this request cleared; `None` when
    /// this request took no step (or that output has no id). Ids survive translation, so a cache
    /// breakpoint can be placed before it in any dialect.
    pub first_newly_cleared: Option<String>,
    /// Estimated tokens clearing removes from this request (over folding's result).
    pub saved_tokens: u64,
    /// Outputs cleared by this request's step (0: no step), and in the request as a whole.
    pub newly_cleared: u64,
    pub cleared: u64,
    /// Estimated cached tokens the step makes the provider write again (0 without a step).
    pub rewritten_tokens: u64,
    /// Reads of cleared originals in this turn (tool calls or commands naming their id).
    pub recalls: u64,
    /// The ordinals (in `Prepared::blocks`) of the blocks forwarded as stubs.
    pub cleared_blocks: Vec<u32>,
}

impl Cleared {
    pub fn stepped(&self) -> bool {
        self.newly_cleared > 0
    }
}

/// How a fitting step clears: the quota rule with these settings in place of the configured ones.
#[derive(Debug, Clone, Copy)]
pub struct FitClearing {
    pub keep_recent: usize,
    pub clear_at_least: u64,
    pub keep_live_views: bool,
}

pub struct Clearer {
    settings: Settings,
    originals: Arc<Originals>,
    cache: Mutex<Lru<Conv>>,
}

/// Where each request of the conversation ends: the start of every model turn after the first
/// block, then the end of this request.
fn request_ends(blocks: &[Block]) -> Vec<usize> {
    let mut ends: Vec<usize> =
        (1..blocks.len()).filter(|&k| blocks[k].from_model && !blocks[k - 1].from_model).collect();
    ends.push(blocks.len());
    ends
}

impl Clearer {
    pub fn new(settings: Settings, originals: Arc<Originals>, cache_bytes: usize) -> Clearer {
        Clearer { settings, originals, cache: Mutex::new(Lru::new(512, cache_bytes)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<Conv>> {
        // Never held across clearing work, so a poisoned map is still consistent.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Clears `p` for a target with `econ`. `None`: nothing is cleared, send what folding made.
    /// Any internal problem also gives `None` (fail open).
    pub fn clear(&self, p: &Prepared, econ: Economics) -> Option<Cleared> {
        self.try_clear(p, econ, &self.settings).ok().flatten()
    }

    /// Clears by the quota rule with `keep_recent` and `clear_at_least` in place of the
    /// configured ones (fitting a request to a budget). Same engine, same cache.
    pub fn clear_to_fit(&self, p: &Prepared, fit: FitClearing) -> Option<Cleared> {
        let settings = Settings {
            keep_recent: fit.keep_recent.max(1),
            clear_at_least: fit.clear_at_least,
            keep_live_views: fit.keep_live_views,
            ..self.settings.clone()
        };
        self.try_clear(p, Economics::Quota, &settings).ok().flatten()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn try_clear(&self, p: &Prepared, econ: Economics, settings: &Settings) -> json::Res<Option<Cleared>> {
        let n = p.blocks.len();
        if n == 0 || p.chains.len() != n || p.state.results.len() != n {
            return Ok(None);
        }
        let key = xxh3_64_with_seed(
            &(econ.key() ^ settings.key()).to_le_bytes(),
            CLEAR_VERSION ^ self.originals.fingerprint(),
        );
        let cache_key = |end: usize| p.chains[end - 1] ^ key;
        let ends = request_ends(&p.blocks);
        let (cached, at) = {
            let mut lru = self.lock();
            match ends.iter().rposition(|&e| lru.contains(cache_key(e))) {
                Some(i) if ends[i] == n => (lru.get(cache_key(n)), i + 1),
                Some(i) => (lru.take(cache_key(ends[i])), i + 1),
                None => (None, 0),
            }
        };
        let done = ends[..at].last().copied().unwrap_or(0);
        let recall = |id: &str| self.originals.recall(id);
        let inp = Input { body: &p.body, blocks: &p.blocks, fold: &p.state, settings, recall: &recall };
        let conv = match cached.filter(|c| c.blocks as usize == done && c.turns as usize == at) {
            Some(c) if done == n => c,
            found => {
                let mut conv = match found {
                    Some(c) => Arc::try_unwrap(c).unwrap_or_else(|c| (*c).clone()),
                    None => Conv::default(),
                };
                for (i, &end) in ends.iter().enumerate().skip(conv.turns as usize) {
                    conv.extend(&inp, end)?;
                    if i + 1 == ends.len() {
                        // Reads of originals cleared before this request's own decision.
                        conv.count_recalls(&inp, ends[..i].last().copied().unwrap_or(0));
                    }
                    conv.decide(end, econ, settings);
                }
                self.store_originals(&mut conv, &inp);
                let conv = Arc::new(conv);
                self.lock().insert(cache_key(n), Arc::clone(&conv));
                conv
            }
        };
        Ok(self.splice(p, &conv))
    }

    /// Hands the originals of newly cleared outputs to the store (once per process).
    fn store_originals(&self, conv: &mut Conv, inp: &Input) {
        if self.originals.dir().is_none() {
            return;
        }
        for k in conv.unstored() {
            let o = &conv.outputs[k as usize];
            let Some(blk) = inp.blocks.get(o.block as usize) else { continue };
            if let Ok(text) = json::decode(inp.body, blk.range.clone()) {
                self.originals.put(&o.original_id, &text);
            }
        }
    }

    /// The request with cleared outputs as stubs, other blocks as folded (or as sent, when a
    /// marker in them points into a cleared output).
    fn splice(&self, p: &Prepared, conv: &Conv) -> Option<Cleared> {
        let cleared = conv.cleared();
        if cleared == 0 {
            return None;
        }
        let b: &[u8] = &p.body;
        let mut edits: Vec<(&Block, &[u8])> = Vec::new();
        for (j, blk) in p.blocks.iter().enumerate() {
            if let Some(stub) = conv.stub_at(j) {
                edits.push((blk, stub));
            } else if !conv.unfolded[j] {
                if let Some(r) = p.state.results[j].as_ref() {
                    edits.push((blk, &r.escaped));
                }
            }
        }
        edits.sort_by_key(|(blk, _)| blk.range.start);
        let mut out = Vec::with_capacity(b.len());
        let mut at = 0;
        for (blk, text) in edits {
            // Text block ranges are JSON strings: keep the quotes, replace the contents.
            let (s, e) = (blk.range.start + 1, blk.range.end.checked_sub(1)?);
            if s < at || e < s {
                return None;
            }
            out.extend_from_slice(b.get(at..s)?);
            out.extend_from_slice(text);
            at = e;
        }
        out.extend_from_slice(b.get(at..)?);
        let step = conv.last_step.as_ref();
        let first_newly_cleared =
            step.and_then(|s| s.newly.first()).and_then(|&k| conv.outputs[k as usize].tool_id.clone());
        Some(Cleared {
            body: Bytes::from(out),
            first_newly_cleared,
            saved_tokens: conv.saved_tokens(),
            newly_cleared: step.map_or(0, |s| s.newly.len() as u64),
            cleared: cleared as u64,
            rewritten_tokens: step.map_or(0, |s| s.rewritten),
            recalls: conv.last_recalls,
            cleared_blocks: conv.outputs.iter().filter(|o| o.cleared).map(|o| o.block).collect(),
        })
    }
}

#[cfg(test)]
mod tests;
