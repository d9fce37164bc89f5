//! Folding: removes repeated context from a request before it is forwarded.
//!
//! Pipeline: `locate` the text blocks in the raw JSON, extend the cached per-conversation `State`
//! (keyed by a rolling xxh3 of the blocks so far) with the blocks it has not seen, `dedup` each new
//! block against text forwarded verbatim before it, then splice the frozen results into the
//! original buffer. A block's result depends only on the blocks before it (prefix stability).

pub mod clear;
pub mod dedup;
pub mod filters;
pub mod fit;
pub mod levers;
pub mod lru;
pub mod markers;
pub mod originals;
pub mod shapes;
pub mod state;

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::dialect::blocks::{self, Block, Kind, Loc};
use crate::dialect::json::{self, Malformed, Res};
use crate::dialect::Dialect;
pub use filters::Level;
use filters::Origin;
pub use levers::Levers;
use originals::Originals;
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
    /// Estimated tokens saved per mechanism in this turn's blocks only: the blocks from the last
    /// assistant message onward (all blocks when there is none). The rest of the saving sits in
    /// blocks an earlier request already sent, i.e. in the provider-cached prefix; the ledger
    /// prices the two parts differently. Depends only on the request, never on caching.
    pub turn_savings: Vec<(&'static str, u64)>,
    /// Outputs each filter shortened in this turn (originals stored behind a marker), per filter.
    pub turn_elisions: Vec<(&'static str, u64)>,
    /// Reads of elided originals (`cat ~/.cache/tokenfold/o/<hash>.txt`, `GET /o/<hash>`) new in
    /// this turn, per filter that made the elision read.
    pub turn_recalls: Vec<(&'static str, u64)>,
}

impl Folded {
    /// Estimated tokens saved per mechanism (same estimate as `saved_tokens`). A filter's footer
    /// is an edit that removes nothing: its cost counts against its filter.
    pub fn savings_by_mechanism(&self) -> Vec<(&'static str, u64)> {
        sum_by_mechanism(&self.edits)
    }
}

/// Estimated tokens each mechanism saved in `edits`; an edit that only adds (a filter's footer)
/// counts against its mechanism.
fn sum_by_mechanism<'a>(edits: impl IntoIterator<Item = &'a EditNote>) -> Vec<(&'static str, u64)> {
    let mut out: Vec<(&'static str, i64)> = Vec::new();
    for e in edits {
        let saved = crate::tokens::estimate_text(&e.removed) as i64 - crate::tokens::estimate_marker(&e.marker) as i64;
        match out.iter_mut().find(|(m, _)| *m == e.mechanism.name()) {
            Some((_, n)) => *n += saved,
            None => out.push((e.mechanism.name(), saved)),
        }
    }
    out.into_iter().map(|(m, n)| (m, n.max(0) as u64)).collect()
}

/// Ordinal of the first block of this turn: the first block of the last message holding assistant
/// output (text or a tool call), or 0 when no assistant message exists yet.
fn turn_start(blocks: &[Block]) -> usize {
    let last_assistant = blocks
        .iter()
        .filter(|b| matches!(b.kind, Kind::AssistantText | Kind::ToolCall))
        .filter_map(|b| match b.loc {
            Loc::Message(i) => Some(i),
            Loc::System(_) => None,
        })
        .max();
    match last_assistant {
        Some(i) => blocks.iter().position(|b| b.loc == Loc::Message(i)).unwrap_or(0),
        None => 0,
    }
}

/// How a `Folder` folds: the default level and where filtered outputs' originals go.
pub struct FoldOptions {
    pub level: Level,
    pub originals: Arc<Originals>,
    /// Without a store no elision could be undone: then every request folds losslessly.
    pub filters_allowed: bool,
    /// Optional dedup rules (all default ones on); replay switches them to measure each.
    pub levers: Levers,
    /// Memory for cached conversation states (`[fold] cache_mb`).
    pub cache_bytes: usize,
    /// Clearing stale tool output (`[fold] keep_recent`, `clear_at_least`, `exclude_tools`).
    pub clear: clear::Settings,
}

impl Default for FoldOptions {
    /// Part 1 only, nothing stored: what `Folder::new` does.
    fn default() -> Self {
        FoldOptions {
            level: Level::Lossless,
            originals: Arc::new(Originals::unstored()),
            filters_allowed: true,
            levers: Levers::default(),
            cache_bytes: 64 << 20,
            clear: clear::Settings::default(),
        }
    }
}

pub struct Folder {
    enabled: bool,
    levers: Levers,
    cache: Mutex<lru::Lru<State>>,
    level: Level,
    originals: Arc<Originals>,
    filters_allowed: bool,
    clearer: clear::Clearer,
}

impl Folder {
    /// A folder that dedups only (part 1, `Level::Lossless`); see `with_options` for filters.
    pub fn new(enabled: bool) -> Folder {
        Folder::with_options(enabled, FoldOptions::default())
    }

    /// A lossless folder with some optional rules switched off (to measure what each one saves).
    pub fn with_levers(enabled: bool, levers: Levers) -> Folder {
        Folder::with_options(enabled, FoldOptions { levers, ..FoldOptions::default() })
    }

    pub fn with_options(enabled: bool, opts: FoldOptions) -> Folder {
        // At most 512 conversations, and `cache_bytes` of index state.
        Folder {
            enabled,
            levers: opts.levers,
            cache: Mutex::new(lru::Lru::new(512, opts.cache_bytes)),
            level: opts.level,
            clearer: clear::Clearer::new(opts.clear, Arc::clone(&opts.originals), opts.cache_bytes),
            originals: opts.originals,
            filters_allowed: opts.filters_allowed,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The level used when a request does not ask for one.
    pub fn level(&self) -> Level {
        self.level
    }

    pub fn originals(&self) -> &Originals {
        &self.originals
    }

    /// Folds `body` (a request of `dialect`) at the default level. `None` means nothing was
    /// folded: forward the original bytes. Any internal problem also yields `None` (fail open).
    pub fn fold(&self, dialect: Dialect, body: &Bytes) -> Option<Folded> {
        self.fold_at(dialect, body, self.level)
    }

    /// Folds at `level` (a request's `x-tokenfold-level`); the level is part of the cache key.
    pub fn fold_at(&self, dialect: Dialect, body: &Bytes, level: Level) -> Option<Folded> {
        self.prepare(dialect, body, level).and_then(|p| p.folded)
    }

    /// Folds at `level` and keeps what clearing needs besides the folded body: the located
    /// blocks of `body`, their prefix chain and the conversation state. `None` when `body` has no
    /// blocks or cannot be read (fail open: forward the original bytes).
    pub fn prepare(&self, dialect: Dialect, body: &Bytes, level: Level) -> Option<Prepared> {
        let level = if self.filters_allowed { level } else { Level::Lossless };
        self.try_prepare(dialect, body, level).ok().flatten()
    }

    /// Clears stale tool output from a prepared request for a target with `target` economics,
    /// at the request's level: `lossless` never clears, `aggressive` clears by the quota rule on
    /// every target. Needs the store of originals (every cleared output must be recoverable).
    /// `None`: nothing cleared, send `p.forwarded()`.
    pub fn clear(&self, p: &Prepared, target: clear::Economics) -> Option<clear::Cleared> {
        if !self.enabled || !self.filters_allowed {
            return None;
        }
        let econ = match p.level {
            Level::Lossless => return None,
            Level::Aggressive => clear::Economics::Quota,
            Level::Balanced => target,
        };
        self.clearer.clear(p, econ)
    }

    /// Clears by the quota rule with `keep_recent` (fitting a request to a target's budget):
    /// never at the `lossless` level, and only with a store of originals, like all clearing.
    pub fn clear_to_fit(&self, p: &Prepared, fit: clear::FitClearing) -> Option<clear::Cleared> {
        if !self.enabled || !self.filters_allowed || p.level == Level::Lossless {
            return None;
        }
        self.clearer.clear_to_fit(p, fit)
    }

    /// The configured clearing settings (`keep_recent`, `clear_at_least`).
    pub fn clear_settings(&self) -> &clear::Settings {
        self.clearer.settings()
    }

    /// Conversation states currently cached.
    pub fn cached_states(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::Lru<State>> {
        // The lock is never held across folding work, so a poisoned map is still consistent.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_prepare(&self, dialect: Dialect, body: &Bytes, level: Level) -> Res<Option<Prepared>> {
        let b: &[u8] = body;
        let blocks = blocks::locate(dialect, b)?;
        if blocks.is_empty() {
            return Ok(None);
        }
        // Levers, level and the store's marker form change the output: all are in the cache key.
        let mut seed = xxh3_64_with_seed(dialect.name().as_bytes(), FOLD_VERSION ^ self.levers.bits() << 32);
        if level != Level::Lossless {
            seed = xxh3_64_with_seed(&self.originals.fingerprint().to_le_bytes(), seed ^ level as u64);
        }
        let ctx = Ctx { level, store: &self.originals };
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
                    process(&mut st, b, &blocks[j], j, &ctx)?;
                    st.chain = chains[j];
                }
                let st = Arc::new(st);
                self.lock().insert(chains[n - 1], Arc::clone(&st));
                st
            }
        };
        let folded = splice(b, &blocks, &state);
        Ok(Some(Prepared { dialect, level, body: body.clone(), blocks, chains, state, folded }))
    }
}

/// A request folded once, with what a later per-target step (clearing) needs to rewrite it again
/// from the original bytes: the located blocks, the rolling hash of the blocks up to each one (a
/// prefix's identity), and the conversation state with every block's frozen fold result.
pub struct Prepared {
    pub dialect: Dialect,
    pub level: Level,
    /// The request as the client sent it.
    pub body: Bytes,
    pub blocks: Vec<Block>,
    pub chains: Vec<u64>,
    pub state: Arc<State>,
    /// The folded request; `None` when folding changed nothing.
    pub folded: Option<Folded>,
}

impl Prepared {
    /// The body folding forwards (the original when nothing folded).
    pub fn forwarded(&self) -> &Bytes {
        self.folded.as_ref().map_or(&self.body, |f| &f.body)
    }
}

/// The producing call of every located block of `body`, as the engine (and command-output
/// filters) see it: `Some` for tool output and calls. Tool output an agent sends as a user
/// message gets the command of the assistant message before it (`ToolInfo::command`).
pub fn producers(dialect: Dialect, body: &[u8]) -> Option<Vec<Option<Arc<ToolInfo>>>> {
    let blocks = blocks::locate(dialect, body).ok()?;
    let mut st = State::new(0, Levers::default());
    let store = Originals::unstored();
    let ctx = Ctx { level: Level::Lossless, store: &store };
    for (j, blk) in blocks.iter().enumerate() {
        process(&mut st, body, blk, j, &ctx).ok()?;
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
    if let Some(n) = blk.pair {
        seed ^= u64::from(n).wrapping_add(1).rotate_left(21);
    }
    xxh3_64_with_seed(b.get(blk.range.clone()).unwrap_or_default(), seed)
}

fn decode_opt(b: &[u8], r: &Option<std::ops::Range<usize>>) -> Option<String> {
    r.as_ref().and_then(|r| json::decode(b, r.clone()).ok()).map(|c| c.into_owned())
}

/// The id that ties a call to its output: the request's own, else the pairing `locate` made
/// (`#N`, which no client id looks like).
fn tool_key(b: &[u8], blk: &Block) -> Option<String> {
    decode_opt(b, &blk.tool_id).or_else(|| blk.pair.map(|n| format!("#{n}")))
}

/// What processing a block needs beyond the state: this request's level and the store.
struct Ctx<'a> {
    level: Level,
    store: &'a Originals,
}

/// Tool calls (and agents' fenced commands) that name a stored original (its id in a path or a
/// `/o/<id>` URL) read it back: a recall for the filter that made it.
fn note_recalls(st: &mut State, ord: usize, text: &[u8]) {
    if st.stored.is_empty() {
        return;
    }
    for id in originals::ids_in(text) {
        if let Some(&m) = st.stored.get(id) {
            st.recalls.push((ord, m));
        }
    }
}

/// `Some(command line if known)` when the block is command output that filters may compress.
fn command_output(kind: Kind, tool: Option<&ToolInfo>, level: Level) -> Option<Option<String>> {
    if level == Level::Lossless || kind != Kind::ToolOutput {
        return None;
    }
    tool.filter(|t| t.runs_command).map(|t| t.command.clone())
}

/// Runs one new block through the engine, appending its result to `st`.
fn process(st: &mut State, b: &[u8], blk: &Block, ord: usize, ctx: &Ctx) -> Res<()> {
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
            let args = json::call_args(b, &blk.range)?;
            // A call naming a stored original reads it back: a recall for the filter that made it.
            note_recalls(st, ord, raw);
            let command = shapes::call_command(&args);
            if command.is_some() {
                st.pending_command = command.clone();
            }
            if let Some(id) = tool_key(b, blk) {
                let name = decode_opt(b, &blk.tool_name).unwrap_or_else(|| "tool".to_string());
                let runs_command = filters::command::is_command_tool(&name, &args);
                let info = Arc::new(ToolInfo {
                    id: id.clone(),
                    name,
                    subject: shapes::call_subject(&args),
                    path: shapes::call_path(&args),
                    command,
                    runs_command,
                });
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
    let tool = match tool_key(b, blk) {
        Some(id) => st.tools.get(&id).cloned(),
        None if blk.user_shaped && kind == Kind::ToolOutput => {
            // Tool output sent as a user message: produced by the command the assistant asked for
            // (none known leaves the choice of filter to the content).
            let command = shapes::aider_run_command(&text).or_else(|| st.pending_command.clone());
            let subject = command.as_deref().map(|c| shapes::clip(c, 48));
            let runs_command = filters::command::observation_is_command(&text);
            Some(Arc::new(ToolInfo { command, subject, runs_command, ..ToolInfo::default() }))
        }
        None => None,
    };
    if kind == Kind::AssistantText {
        if let Some(c) = shapes::assistant_command(&text) {
            // Agents without tool calls can read an original back with the command they ask for.
            note_recalls(st, ord, c.as_bytes());
            st.pending_command = Some(c);
        }
    }
    let command = command_output(kind, tool.as_deref(), ctx.level);
    let origin = command.as_ref().map(|c| Origin { command: c.as_deref(), level: ctx.level, store: ctx.store });
    dedup::process_text(st, ord, kind, blk.loc, tool, &text, origin.as_ref());
    Ok(())
}

/// This turn's elisions (filtered outputs) and recalls, per filter.
/// Counts per mechanism name.
type Counts = Vec<(&'static str, u64)>;

fn turn_figures(blocks: &[Block], st: &State) -> (Counts, Counts) {
    let from = turn_start(blocks);
    let mut elisions: Vec<(&'static str, u64)> = Vec::new();
    let bump = |v: &mut Vec<(&'static str, u64)>, m: Mechanism| match v.iter_mut().find(|(n, _)| *n == m.name()) {
        Some((_, c)) => *c += 1,
        None => v.push((m.name(), 1)),
    };
    for r in st.results.iter().skip(from).flatten() {
        // The footer (the block's last filter edit) carries the filter the block counts for.
        if let Some(n) = r.notes.iter().rev().find(|n| n.mechanism.is_filter()) {
            bump(&mut elisions, n.mechanism);
        }
    }
    let mut recalls = Vec::new();
    for &(ord, m) in &st.recalls {
        if ord >= from {
            bump(&mut recalls, m);
        }
    }
    (elisions, recalls)
}

/// Writes the frozen results into the original buffer; `None` when nothing changed.
fn splice(b: &[u8], blocks: &[Block], st: &State) -> Option<Folded> {
    let mut changed: Vec<(&Block, &Arc<state::BlockResult>)> =
        blocks.iter().zip(&st.results).filter_map(|(blk, r)| r.as_ref().map(|r| (blk, r))).collect();
    if changed.is_empty() {
        return None;
    }
    let (turn_elisions, turn_recalls) = turn_figures(blocks, st);
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
    let first = turn_start(blocks);
    let turn_savings = sum_by_mechanism(edits.iter().filter(|e| e.block >= first));
    Some(Folded { body: Bytes::from(out), saved_tokens: saved, edits, turn_savings, turn_elisions, turn_recalls })
}
