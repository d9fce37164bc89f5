//! Folding: removes repeated context from a request before it is forwarded.
//!
//! Pipeline: `locate` the text blocks in the raw JSON, extend the cached per-conversation `State`
//! (keyed by a rolling xxh3 of the blocks so far) with the blocks it has not seen, `dedup` each new
//! block against text forwarded verbatim before it, then splice the frozen results into the
//! original buffer. A block's result depends only on the blocks before it (prefix stability).

pub mod dedup;
pub mod json;
pub mod levers;
pub mod locate;
pub mod lru;
pub mod markers;
pub mod shapes;
pub mod state;

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::dialect::Dialect;
use json::{Malformed, Res};
pub use levers::Levers;
use locate::{Block, Kind, Loc};
use state::State;
pub use state::{EditNote, Mechanism, ToolInfo};

/// Bump when folding output changes for the same input: it is part of every cache key.
pub const FOLD_VERSION: u64 = 2;

/// A request body after folding.
pub struct Folded {
    pub body: Bytes,
    /// Estimated tokens removed from the request (byte-based; see `tokens`).
    pub saved_tokens: u64,
    /// Every replacement present in this request (earlier turns' included), in block order.
    pub edits: Vec<EditNote>,
}

impl Folded {
    /// Estimated tokens saved per mechanism (same estimate as `saved_tokens`).
    pub fn savings_by_mechanism(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Vec::new();
        for e in &self.edits {
            let saved =
                crate::tokens::estimate_text(&e.removed).saturating_sub(crate::tokens::estimate_marker(&e.marker));
            match out.iter_mut().find(|(m, _)| *m == e.mechanism.name()) {
                Some((_, n)) => *n += saved,
                None => out.push((e.mechanism.name(), saved)),
            }
        }
        out
    }
}

pub struct Folder {
    enabled: bool,
    levers: Levers,
    cache: Mutex<lru::Lru>,
}

impl Folder {
    pub fn new(enabled: bool) -> Folder {
        Folder::with_levers(enabled, Levers::default())
    }

    /// A folder with some optional rules switched off (to measure what each one saves).
    pub fn with_levers(enabled: bool, levers: Levers) -> Folder {
        // A local proxy keeps its memory modest: 512 conversations, 128 MiB of index state at most.
        Folder { enabled, levers, cache: Mutex::new(lru::Lru::new(512, 128 << 20)) }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Folds `body` (a request of `dialect`). `None` means nothing was folded: forward the
    /// original bytes. Any internal problem also yields `None` (fail open).
    pub fn fold(&self, dialect: Dialect, body: &Bytes) -> Option<Folded> {
        self.try_fold(dialect, body).ok().flatten()
    }

    /// Conversation states currently cached.
    pub fn cached_states(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::Lru> {
        // The lock is never held across folding work, so a poisoned map is still consistent.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_fold(&self, dialect: Dialect, body: &Bytes) -> Res<Option<Folded>> {
        let b: &[u8] = body;
        let blocks = locate::locate(dialect, b)?;
        if blocks.is_empty() {
            return Ok(None);
        }
        let seed = xxh3_64_with_seed(dialect.name().as_bytes(), FOLD_VERSION ^ self.levers.bits() << 32);
        let mut chains = Vec::with_capacity(blocks.len());
        let mut chain = seed;
        for blk in &blocks {
            chain = xxh3_64_with_seed(&block_hash(b, blk).to_le_bytes(), chain);
            chains.push(chain);
        }
        let n = blocks.len();

        let (cached, start) = {
            let mut lru = self.lock();
            match (0..n).rev().find(|&j| lru.contains(chains[j])) {
                Some(j) if j + 1 == n => (lru.get(chains[j]), n),
                Some(j) => (lru.take(chains[j]), j + 1),
                None => (None, 0),
            }
        };
        let cached = cached.filter(|s| s.srcs.len() == start && s.results.len() == start);
        let state = match cached {
            Some(s) if start == n => s,
            found => {
                let from = if found.is_some() { start } else { 0 };
                let mut st = match found {
                    Some(a) => Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()),
                    None => State::new(seed, self.levers),
                };
                for j in from..n {
                    process(&mut st, b, &blocks[j], j)?;
                    st.chain = chains[j];
                }
                let st = Arc::new(st);
                self.lock().insert(chains[n - 1], Arc::clone(&st));
                st
            }
        };
        Ok(splice(b, &blocks, &state))
    }
}

/// The producing call of every located block of `body`, as the engine (and command-output
/// filters) see it: `Some` for tool output and calls. Tool output an agent sends as a user
/// message gets the command of the assistant message before it (`ToolInfo::command`).
pub fn producers(dialect: Dialect, body: &[u8]) -> Option<Vec<Option<Arc<ToolInfo>>>> {
    let blocks = locate::locate(dialect, body).ok()?;
    let mut st = State::new(0, Levers::default());
    for (j, blk) in blocks.iter().enumerate() {
        process(&mut st, body, blk, j).ok()?;
    }
    Some(st.srcs.into_iter().map(|s| s.tool).collect())
}

/// Identity of a block for the prefix chain: its raw bytes and what it is, not where it sits in
/// the buffer (so `cache_control` moving between turns does not matter for text blocks).
fn block_hash(b: &[u8], blk: &Block) -> u64 {
    let loc = match blk.loc {
        Loc::System(k) => 1u64 << 40 | u64::from(k),
        Loc::Message(i) => 2u64 << 40 | u64::from(i),
    };
    let mut seed = (blk.kind as u64) | u64::from(blk.user_shaped) << 8;
    seed ^= loc.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    if let Some(r) = &blk.tool_id {
        seed ^= xxh3_64(b.get(r.clone()).unwrap_or_default()).rotate_left(7);
    }
    if let Some(r) = &blk.tool_name {
        seed ^= xxh3_64(b.get(r.clone()).unwrap_or_default()).rotate_left(13);
    }
    xxh3_64_with_seed(b.get(blk.range.clone()).unwrap_or_default(), seed)
}

fn decode_opt(b: &[u8], r: &Option<std::ops::Range<usize>>) -> Option<String> {
    r.as_ref().and_then(|r| json::decode(b, r.clone()).ok()).map(|c| c.into_owned())
}

/// Runs one new block through the engine, appending its result to `st`.
fn process(st: &mut State, b: &[u8], blk: &Block, ord: usize) -> Res<()> {
    if let Loc::Message(i) = blk.loc {
        let assistant = matches!(blk.kind, Kind::AssistantText | Kind::ToolCall);
        if assistant && st.last_assistant != Some(i) {
            // A new assistant message: the command of the one before no longer applies.
            st.last_assistant = Some(i);
            st.pending_command = None;
        }
    }
    if !blk.is_text() {
        let mut src = state::Src { kind: blk.kind, loc: blk.loc, tool: None, view: None, lines: Vec::new() };
        let mut content = None;
        if blk.kind == Kind::ToolCall {
            let raw = b.get(blk.range.clone()).ok_or(Malformed)?;
            let args: serde_json::Value = if json::is_string(b, &blk.range) {
                serde_json::from_str(&json::decode(b, blk.range.clone())?).unwrap_or_default()
            } else {
                serde_json::from_slice(raw).unwrap_or_default()
            };
            let command = shapes::call_command(&args);
            if command.is_some() {
                st.pending_command = command.clone();
            }
            if let Some(id) = decode_opt(b, &blk.tool_id) {
                let name = decode_opt(b, &blk.tool_name).unwrap_or_else(|| "tool".to_string());
                let info = Arc::new(ToolInfo { id: id.clone(), name, subject: shapes::call_subject(&args), command });
                st.tools.insert(id, Arc::clone(&info));
                // What a call writes is verbatim in the request: a later read may point at it.
                if let Some((field, text)) = shapes::call_content(&args) {
                    src.lines = dedup::lines_of(text, st.levers.grep_prefixes);
                    src.view = Some(field.to_string());
                    content = Some(text.to_string());
                }
                src.tool = Some(info);
            }
        }
        st.srcs.push(src);
        st.results.push(None);
        if let Some(text) = content {
            st.index_block(ord, &text, false, &[]);
        }
        return Ok(());
    }
    let text = json::decode(b, blk.range.clone())?;
    let mut kind = blk.kind;
    if kind == Kind::Template && !st.levers.templates {
        kind = Kind::UserText;
    }
    let tool = match decode_opt(b, &blk.tool_id) {
        Some(id) => st.tools.get(&id).cloned(),
        None if blk.user_shaped && kind == Kind::ToolOutput => {
            // Tool output sent as a user message: produced by the command the assistant asked for.
            let command = shapes::aider_run_command(&text).or_else(|| st.pending_command.clone());
            let subject = command.as_deref().map(|c| shapes::clip(c, 48));
            Some(Arc::new(ToolInfo { command, subject, ..ToolInfo::default() }))
        }
        None => None,
    };
    if kind == Kind::AssistantText {
        if let Some(c) = shapes::assistant_command(&text) {
            st.pending_command = Some(c);
        }
    }
    dedup::process_text(st, ord, kind, blk.loc, tool, &text);
    Ok(())
}

/// Writes the frozen results into the original buffer; `None` when nothing changed.
fn splice(b: &[u8], blocks: &[Block], st: &State) -> Option<Folded> {
    let mut changed: Vec<(&Block, &Arc<state::BlockResult>)> =
        blocks.iter().zip(&st.results).filter_map(|(blk, r)| r.as_ref().map(|r| (blk, r))).collect();
    if changed.is_empty() {
        return None;
    }
    changed.sort_by_key(|(blk, _)| blk.range.start);
    let mut out = Vec::with_capacity(b.len());
    let mut at = 0;
    let mut saved = 0;
    let mut edits = Vec::new();
    for (blk, r) in changed {
        // Text block ranges are JSON strings: keep the quotes, replace the contents.
        let (s, e) = (blk.range.start + 1, blk.range.end.checked_sub(1)?);
        if s < at || e < s {
            return None;
        }
        out.extend_from_slice(b.get(at..s)?);
        out.extend_from_slice(&r.escaped);
        at = e;
        saved += r.est_saved;
        edits.extend(r.notes.iter().cloned());
    }
    out.extend_from_slice(b.get(at..)?);
    edits.sort_by_key(|n| n.block);
    Some(Folded { body: Bytes::from(out), saved_tokens: saved, edits })
}
