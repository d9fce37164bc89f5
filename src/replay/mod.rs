//! `tokenfold replay`: folds recorded sessions turn by turn exactly as the proxy would (through
//! `Folder::fold`) and reports what it would have saved and whether every prefix stayed stable.

pub mod ceiling;
pub mod clearing;
pub mod progress;
pub mod report;
mod retention;
pub mod sources;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::fold::clear::Economics;
use crate::fold::locate::{self, Kind, Loc};
use crate::fold::originals::Originals;
use crate::fold::{json, FoldOptions, Folder, Level, Levers, Mechanism, Prepared};
use crate::tokens;
use ceiling::Ceiling;
use progress::Progress;
use sources::Conversation;

pub struct Options {
    pub paths: Vec<PathBuf>,
    pub json: bool,
    /// Tokens of a stand-in system prompt + tool schemas per request, for sources whose files do
    /// not record them (Claude Code, Codex): reported as a second "with system + tools" figure.
    /// 0 leaves that figure out.
    pub system_tokens: u64,
    /// Levers switched off for the whole run (names from `Levers::NAMES`).
    pub without: Vec<String>,
    /// Opt-in levers switched on for the whole run (names from `Levers::OPT_IN`).
    pub with: Vec<String>,
    /// Also replay once per lever with that lever off and report what each one saves.
    pub levers: bool,
    /// Also measure the lossless ceiling (see `ceiling`).
    pub ceiling: bool,
    /// Count tokens with the byte estimate instead of o200k (fast; the digests do not change).
    pub estimate: bool,
    /// Each level is replayed and reported on its own (the proxy's default is `balanced`).
    pub levels: Vec<Level>,
    /// The economics clearing decides for (`--target-kind`).
    pub target: TargetKind,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            paths: Vec::new(),
            json: false,
            system_tokens: DEFAULT_SYSTEM_TOKENS,
            without: Vec::new(),
            with: Vec::new(),
            levers: false,
            ceiling: false,
            estimate: false,
            levels: vec![Level::default()],
            target: TargetKind::default(),
        }
    }
}

/// Stand-in size of Claude Code's system prompt + tool schemas (10-20k tokens, identical in every
/// request), which its session files do not record.
pub const DEFAULT_SYSTEM_TOKENS: u64 = 15_000;

/// Formats whose files leave out the system prompt and tool schemas.
pub fn lacks_system(format: &str) -> bool {
    matches!(format, "claude-code" | "codex")
}

/// What one conversation (or a sum of them) measured.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub name: String,
    pub format: String,
    pub conversations: u64,
    pub turns: u64,
    /// Tokens of message text (system, messages, tool-call arguments) summed over turns.
    pub tokens_before: u64,
    pub tokens_after: u64,
    /// Tokens saved per mechanism, summed over turns.
    pub saved_by: BTreeMap<String, u64>,
    /// Blocks of already-sent messages compared with the previous turn, and how many differed.
    pub prefix_blocks_checked: u64,
    pub prefix_blocks_changed: u64,
    /// The last turn folded with a fresh `Folder` equals the cached (incremental) result.
    pub scratch_mismatches: u64,
    pub fold_ms: f64,
    pub measure_ms: f64,
    /// blake3 of every forwarded body in order (length-prefixed): equal across processes.
    pub digest: String,
    /// Distinct markers: how many, their bytes, their tokens, the gate's estimate of them, and
    /// how many the estimate priced below their real count.
    pub markers: u64,
    pub marker_bytes: u64,
    pub marker_tokens: u64,
    pub marker_estimate: u64,
    pub markers_underestimated: u64,
    /// With `--levers`: tokens after folding with each lever off (opt-in ones: on), summed over
    /// turns.
    pub after_without: BTreeMap<String, u64>,
    pub after_with: BTreeMap<String, u64>,
    /// With `--ceiling`: the lossless upper bounds (tokens summed over turns).
    pub ceiling: Option<Ceiling>,
    /// Error-like lines of changed blocks, and how many are still in the forwarded request
    /// (verbatim, or in the earlier block a pointer names). Must be all of them.
    pub error_lines_checked: u64,
    pub error_lines_kept: u64,
    /// A few error-like lines that went missing (for the report; empty when retention is 100%).
    pub error_lines_lost: Vec<String>,
    /// Clearing steps taken, the cached tokens they made the provider write again (estimated, as
    /// the cost model sees them), and blocks of earlier turns they rewrote (allowed only at a step).
    pub steps: u64,
    pub rewritten: u64,
    pub step_blocks_changed: u64,
    /// Turns that re-sent a previous request's blocks, and of those the ones whose forwarded
    /// prefix stayed byte-identical (no step).
    pub turns_compared: u64,
    pub turns_stable: u64,
    /// Simulated cache-billed input (token units; see `clearing::billed`), of the requests as
    /// sent and as forwarded.
    pub billed_direct: f64,
    pub billed_forwarded: f64,
    /// Turns whose request had cleared outputs; the checks below are made in those.
    pub cleared_turns: u64,
    /// Edits the model made next whose `old_string` was in the request, and how many of those
    /// were still in the forwarded one.
    pub anchors_checked: u64,
    pub anchors_kept: u64,
    /// Identifiers the model wrote next that were in the request, and still in the forwarded one.
    pub refs_checked: u64,
    pub refs_kept: u64,
    /// The first error-like line of each cleared command output, and how many are still forwarded.
    pub first_errors_checked: u64,
    pub first_errors_kept: u64,
    pub first_errors_lost: Vec<String>,
}

impl Stats {
    pub fn saved_pct(&self) -> f64 {
        pct(self.tokens_before.saturating_sub(self.tokens_after), self.tokens_before)
    }

    /// Saved share with a stand-in of `system` tokens added to every request on both sides.
    pub fn saved_pct_with_system(&self, system: u64) -> f64 {
        let extra = system * self.turns;
        pct(self.tokens_before.saturating_sub(self.tokens_after), self.tokens_before + extra)
    }

    pub fn stability_pct(&self) -> f64 {
        if self.prefix_blocks_checked == 0 {
            return 100.0;
        }
        100.0 * (self.prefix_blocks_checked - self.prefix_blocks_changed) as f64 / self.prefix_blocks_checked as f64
    }

    pub fn retention_pct(&self) -> f64 {
        if self.error_lines_checked == 0 {
            return 100.0;
        }
        100.0 * self.error_lines_kept as f64 / self.error_lines_checked as f64
    }

    /// Tokens saved by all filters together.
    pub fn filters_saved(&self) -> u64 {
        self.saved_by.iter().filter(|(k, _)| k.starts_with("filter:")).map(|(_, v)| *v).sum()
    }

    /// Stable prefixes between steps, incremental equal to cold, every error-like line of a
    /// folded block kept and the first error line of every cleared command output.
    pub fn sound(&self) -> bool {
        self.prefix_blocks_changed == 0
            && self.scratch_mismatches == 0
            && self.error_lines_kept == self.error_lines_checked
            && self.first_errors_kept == self.first_errors_checked
    }

    /// Simulated cache-billed input as forwarded, over the same as sent.
    pub fn billed_ratio(&self) -> f64 {
        if self.billed_direct == 0.0 {
            1.0
        } else {
            self.billed_forwarded / self.billed_direct
        }
    }

    pub fn stable_turns_pct(&self) -> f64 {
        if self.turns_compared == 0 {
            return 100.0;
        }
        pct(self.turns_stable, self.turns_compared)
    }

    pub fn add(&mut self, o: &Stats) {
        self.conversations += o.conversations;
        self.turns += o.turns;
        self.tokens_before += o.tokens_before;
        self.tokens_after += o.tokens_after;
        for (k, v) in &o.saved_by {
            *self.saved_by.entry(k.clone()).or_default() += v;
        }
        self.prefix_blocks_checked += o.prefix_blocks_checked;
        self.prefix_blocks_changed += o.prefix_blocks_changed;
        self.scratch_mismatches += o.scratch_mismatches;
        self.fold_ms += o.fold_ms;
        self.measure_ms += o.measure_ms;
        self.markers += o.markers;
        self.marker_bytes += o.marker_bytes;
        self.marker_tokens += o.marker_tokens;
        self.marker_estimate += o.marker_estimate;
        self.markers_underestimated += o.markers_underestimated;
        for (k, v) in &o.after_without {
            *self.after_without.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.after_with {
            *self.after_with.entry(k.clone()).or_default() += v;
        }
        if let Some(c) = &o.ceiling {
            self.ceiling.get_or_insert_with(Ceiling::default).add(c);
        }
        self.error_lines_checked += o.error_lines_checked;
        self.error_lines_kept += o.error_lines_kept;
        for l in &o.error_lines_lost {
            if self.error_lines_lost.len() < 5 {
                self.error_lines_lost.push(l.clone());
            }
        }
        self.steps += o.steps;
        self.rewritten += o.rewritten;
        self.step_blocks_changed += o.step_blocks_changed;
        self.turns_compared += o.turns_compared;
        self.turns_stable += o.turns_stable;
        self.billed_direct += o.billed_direct;
        self.billed_forwarded += o.billed_forwarded;
        self.cleared_turns += o.cleared_turns;
        self.anchors_checked += o.anchors_checked;
        self.anchors_kept += o.anchors_kept;
        self.refs_checked += o.refs_checked;
        self.refs_kept += o.refs_kept;
        self.first_errors_checked += o.first_errors_checked;
        self.first_errors_kept += o.first_errors_kept;
        for l in &o.first_errors_lost {
            if self.first_errors_lost.len() < 5 {
                self.first_errors_lost.push(l.clone());
            }
        }
    }
}

pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Token counts memoized by content hash: turn N+1 repeats turn N's blocks.
#[derive(Default)]
pub struct Counter {
    memo: HashMap<u64, u64>,
    /// Byte estimates instead of o200k (for fast checks).
    pub estimate_only: bool,
}

impl Counter {
    /// A counter that uses byte estimates: fast, for stability checks.
    pub fn estimating() -> Counter {
        Counter { estimate_only: true, ..Counter::default() }
    }

    fn count(&self, s: &str) -> u64 {
        if self.estimate_only {
            tokens::estimate_text(s)
        } else {
            tokens::count(s)
        }
    }

    pub fn text(&mut self, s: &str) -> u64 {
        let h = xxh3_64(s.as_bytes());
        if let Some(&n) = self.memo.get(&h) {
            return n;
        }
        let n = self.count(s);
        self.memo.insert(h, n);
        n
    }

    /// Tokens of a located block, keyed by its raw bytes so that repeats skip decoding.
    pub fn block(&mut self, b: &[u8], blk: &locate::Block) -> u64 {
        let Some(raw) = b.get(blk.range.clone()) else {
            return 0;
        };
        let key = xxh3_64(raw) ^ 0xb10c;
        if let Some(&n) = self.memo.get(&key) {
            return n;
        }
        let n = match blk.kind {
            Kind::Other => 0,
            Kind::ToolCall if !json::is_string(b, &blk.range) => self.count(&String::from_utf8_lossy(raw)),
            _ => json::decode(b, blk.range.clone()).map(|t| self.count(&t)).unwrap_or(0),
        };
        self.memo.insert(key, n);
        n
    }
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

/// How one conversation is replayed.
#[derive(Default)]
pub struct Setup<'a> {
    pub levers: Levers,
    /// The fold level (`balanced` by default, as the proxy folds).
    pub level: Level,
    pub target: TargetKind,
    pub ceiling: bool,
    pub progress: Option<&'a mut Progress>,
}

impl Setup<'_> {
    /// A folder that folds as the proxy would, storing nothing (markers name the default store;
    /// replay only measures).
    fn folder(&self) -> Folder {
        let originals = std::sync::Arc::new(Originals::unstored());
        Folder::with_options(
            true,
            FoldOptions { level: self.level, originals, levers: self.levers, ..FoldOptions::default() },
        )
    }

    /// The economics clearing decides for (the folder applies the level: `lossless` never
    /// clears, `aggressive` always by the quota rule).
    fn economics(&self) -> Economics {
        match self.target {
            TargetKind::Quota => Economics::Quota,
            TargetKind::Cache => Economics::Cached { read: clearing::READ, write: clearing::WRITE },
        }
    }
}

/// Identity of an input block for the stability check: its bytes, kind and place.
pub fn block_id(body: &[u8], b: &locate::Block) -> u64 {
    let loc = match b.loc {
        locate::Loc::System(k) => u64::from(k).wrapping_mul(31),
        locate::Loc::Message(i) => (u64::from(i) + 1).wrapping_mul(0x9E37_79B9),
    };
    xxh3_64(body.get(b.range.clone()).unwrap_or_default()) ^ (b.kind as u64) ^ loc
}

/// One conversation's request as the proxy forwards it: folded once, then cleared.
fn forward(folder: &Folder, econ: Economics, c: &Conversation, body: &Bytes, level: Level) -> Turn {
    let prepared = folder.prepare(c.dialect, body, level);
    let cleared = prepared.as_ref().and_then(|p| folder.clear(p, econ));
    let out = match (&cleared, &prepared) {
        (Some(cl), _) => cl.body.clone(),
        (None, Some(p)) => p.forwarded().clone(),
        (None, None) => body.clone(),
    };
    Turn { prepared, cleared, out }
}

struct Turn {
    prepared: Option<Prepared>,
    cleared: Option<crate::fold::clear::Cleared>,
    out: Bytes,
}

/// Replays one conversation through its own `Folder` (conversations are never pooled).
pub fn measure(c: &Conversation, counter: &mut Counter, setup: &mut Setup) -> Stats {
    let mut st = Stats { name: c.name.clone(), format: c.format.to_string(), conversations: 1, ..Stats::default() };
    let folder = setup.folder();
    let econ = setup.economics();
    let mut retention = retention::Retention::default();
    let mut prev: Vec<(u64, u64)> = Vec::new(); // per block: (input identity, output bytes hash)
    let mut prev_out_ids: Vec<u64> = Vec::new();
    let mut last_out: Option<Bytes> = None;
    let mut digest = blake3::Hasher::new();
    let mut seen_markers: HashSet<u64> = HashSet::new();
    let mut first_errors_seen: HashSet<u64> = HashSet::new();
    let mut meter = setup.ceiling.then(ceiling::Meter::default);
    let mut bounds = Ceiling::default();
    for (t, body) in c.turns.iter().enumerate() {
        let t0 = Instant::now();
        let turn = forward(&folder, econ, c, body, setup.level);
        st.fold_ms += t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        st.turns += 1;
        let out = turn.out.clone();
        digest.update(&(out.len() as u64).to_le_bytes());
        digest.update(&out);
        let (Ok(bin), Ok(bout)) = (locate::locate(c.dialect, body), locate::locate(c.dialect, &out)) else {
            st.prefix_blocks_changed += 1;
            continue;
        };
        let tin: Vec<u64> = bin.iter().map(|b| counter.block(body, b)).collect();
        let tout: Vec<u64> = bout.iter().map(|b| counter.block(&out, b)).collect();
        st.tokens_before += tin.iter().sum::<u64>();
        st.tokens_after += tout.iter().sum::<u64>();
        let folded = turn.prepared.as_ref().and_then(|p| p.folded.as_ref());
        let cleared_blocks: &[u32] = turn.cleared.as_ref().map_or(&[], |cl| &cl.cleared_blocks);
        if let Some(f) = folded {
            // Signed per mechanism: a filter's footer removes nothing and costs its tokens.
            let mut by: BTreeMap<&'static str, i64> = BTreeMap::new();
            for e in f.edits.iter().filter(|e| !cleared_blocks.contains(&(e.block as u32))) {
                let marker_tokens = counter.text(&e.marker);
                *by.entry(e.mechanism.name()).or_default() += counter.text(&e.removed) as i64 - marker_tokens as i64;
                if seen_markers.insert(xxh3_64(e.marker.as_bytes())) {
                    let est = tokens::estimate_marker(&e.marker);
                    st.markers += 1;
                    st.marker_bytes += e.marker.len() as u64;
                    st.marker_tokens += marker_tokens;
                    st.marker_estimate += est;
                    st.markers_underestimated += u64::from(est < marker_tokens);
                }
            }
            for (m, n) in by {
                *st.saved_by.entry(m.to_string()).or_default() += n.max(0) as u64;
            }
        }
        if folded.is_some() || turn.cleared.is_some() {
            retention.check(c.dialect, body, &bin, &out, &bout, cleared_blocks, &mut st);
        }
        // Prefix stability: every block that the previous turn also sent, unchanged, in the same
        // place, must be forwarded with exactly the bytes forwarded then, except at a step.
        if bin.len() != bout.len() {
            // The folded body must keep the request's shape; count it as a broken prefix.
            st.prefix_blocks_changed += 1;
        }
        let ids: Vec<u64> = bin.iter().map(|i| block_id(body, i)).collect();
        let cur: Vec<(u64, u64)> =
            ids.iter().zip(&bout).map(|(&id, o)| (id, xxh3_64(out.get(o.range.clone()).unwrap_or_default()))).collect();
        let stepped = turn.cleared.as_ref().is_some_and(|cl| cl.stepped());
        st.steps += u64::from(stepped);
        st.rewritten += turn.cleared.as_ref().map_or(0, |cl| cl.rewritten_tokens);
        let same_context = !prev.is_empty() && prev.iter().zip(&cur).all(|(p, c)| p.0 == c.0);
        let mut changed = 0;
        for (p, c) in prev.iter().zip(&cur) {
            if p.0 != c.0 {
                break;
            }
            st.prefix_blocks_checked += 1;
            changed += u64::from(p.1 != c.1);
        }
        if stepped {
            st.step_blocks_changed += changed;
        } else {
            st.prefix_blocks_changed += changed;
        }
        if same_context {
            st.turns_compared += 1;
            st.turns_stable += u64::from(changed == 0);
        }
        // Cache billing: the leading blocks shared with the previous request are cache reads.
        let out_ids: Vec<u64> = bout.iter().map(|o| block_id(&out, o)).collect();
        let prev_in: Vec<u64> = if same_context { prev.iter().map(|p| p.0).collect() } else { Vec::new() };
        st.billed_direct += clearing::billed(&tin, &ids, &prev_in);
        st.billed_forwarded += clearing::billed(&tout, &out_ids, if same_context { &prev_out_ids } else { &[] });
        if let (Some(p), Some(cl)) = (&turn.prepared, &turn.cleared) {
            st.cleared_turns += 1;
            check_visibility(c, t, body, &bin, &out, &bout, p, cl, &mut first_errors_seen, &mut st);
        }
        if let Some(m) = &mut meter {
            m.turn(body, &bin, &ids, counter, &mut bounds);
        }
        prev = cur;
        prev_out_ids = out_ids;
        last_out = Some(out);
        st.measure_ms += t1.elapsed().as_secs_f64() * 1e3;
        if let Some(p) = setup.progress.as_deref_mut() {
            p.turn();
        }
    }
    let clear_saved = st.tokens_before.saturating_sub(st.tokens_after).saturating_sub(st.saved_by.values().sum());
    if setup.level != Level::Lossless {
        st.saved_by.insert(CLEAR.to_string(), clear_saved);
    }
    // The incremental path must give what a cold start gives (determinism across processes).
    if let (Some(body), Some(out)) = (c.turns.last(), last_out) {
        let fresh = forward(&setup.folder(), econ, c, body, setup.level).out;
        if fresh != out {
            st.scratch_mismatches += 1;
        }
    }
    for m in Mechanism::ALL {
        st.saved_by.entry(m.name().to_string()).or_default();
    }
    st.digest = digest.finalize().to_hex().to_string();
    st.ceiling = meter.map(|_| bounds);
    st
}

/// The mechanism name clearing's saving is reported under.
pub const CLEAR: &str = crate::fold::clear::MECHANISM;

/// In a request with cleared outputs: the Edit anchors and identifiers of the model's next
/// message that were in the request, and the first error line of each cleared command output,
/// must still be in the forwarded request.
#[allow(clippy::too_many_arguments)]
fn check_visibility(
    c: &Conversation,
    t: usize,
    body: &[u8],
    bin: &[locate::Block],
    out: &[u8],
    bout: &[locate::Block],
    p: &Prepared,
    cl: &crate::fold::clear::Cleared,
    first_errors_seen: &mut HashSet<u64>,
    st: &mut Stats,
) {
    let orig_text = clearing::visible_text(body, bin);
    let fwd_text = clearing::visible_text(out, bout);
    if let Some(next) = c.turns.get(t + 1) {
        let messages = bin.iter().filter_map(|b| match b.loc {
            Loc::Message(i) => Some(i + 1),
            Loc::System(_) => None,
        });
        let after = messages.max().unwrap_or(0);
        if let Ok(nblocks) = locate::locate(c.dialect, next) {
            let reply = clearing::reply(next, &nblocks, after);
            for a in &reply.anchors {
                if clearing::visible(&orig_text, a) {
                    st.anchors_checked += 1;
                    st.anchors_kept += u64::from(clearing::visible(&fwd_text, a));
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
    for (j, l) in clearing::first_errors(p, &cl.cleared_blocks) {
        let raw = p.blocks.get(j as usize).and_then(|b| body.get(b.range.clone())).unwrap_or_default();
        if !first_errors_seen.insert(xxh3_64(raw)) {
            continue;
        }
        st.first_errors_checked += 1;
        if lines.contains(l.as_str()) || fwd_text.contains(&l) {
            st.first_errors_kept += 1;
        } else if st.first_errors_lost.len() < 5 {
            st.first_errors_lost.push(crate::fold::shapes::clip(&l, 160));
        }
    }
}

/// Default places agents keep sessions.
fn default_paths() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let codex = std::env::var_os("CODEX_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".codex"));
    [home.join(".claude/projects"), codex.join("sessions")].into_iter().filter(|p| p.exists()).collect()
}

/// Runs the replay; returns the process exit code.
pub fn run(opts: Options) -> u8 {
    let paths = if opts.paths.is_empty() { default_paths() } else { opts.paths.clone() };
    if paths.is_empty() {
        eprintln!("replay: no path given and neither ~/.claude/projects nor ~/.codex/sessions exists");
        return 2;
    }
    let mut levers = Levers::default();
    let lever_names = || {
        let all: Vec<&str> = Levers::NAMES.iter().chain(&Levers::OPT_IN).map(|(n, _)| *n).collect();
        all.join(", ")
    };
    for name in &opts.without {
        match levers.without(name) {
            Some(l) => levers = l,
            None => {
                eprintln!("replay: unknown lever {name:?} for --without; known: {}", lever_names());
                return 2;
            }
        }
    }
    for name in &opts.with {
        match levers.with(name) {
            Some(l) => levers = l,
            None => {
                eprintln!("replay: unknown lever {name:?} for --with; opt-in levers: {}", lever_names());
                return 2;
            }
        }
    }
    let started = Instant::now();
    let mut loaded: Vec<(String, Vec<Conversation>)> = Vec::new();
    for p in &paths {
        if !p.exists() {
            eprintln!("replay: {} does not exist", p.display());
            return 2;
        }
        loaded.push((p.display().to_string(), sources::load(p)));
    }
    let loaded_s = started.elapsed().as_secs_f64();
    let levels = if opts.levels.is_empty() { vec![Level::default()] } else { opts.levels.clone() };
    let turns: u64 = loaded.iter().flat_map(|(_, l)| l).map(|c| c.turns.len() as u64).sum();
    let passes = if opts.levers { 1 + (Levers::NAMES.len() + Levers::OPT_IN.len()) as u64 } else { 1 };
    let mut progress = Progress::new(turns * passes * levels.len() as u64, std::io::stderr().is_terminal());
    let mut counter = Counter { estimate_only: opts.estimate, ..Counter::default() };
    let mut outs = Vec::new();
    let mut sound = true;
    for &level in &levels {
        let started = Instant::now();
        let sources = replay_level(&opts, &loaded, levers, level, &mut counter, &mut progress);
        sound &= sources.iter().flat_map(|(_, v)| v).all(Stats::sound);
        let elapsed = loaded_s + started.elapsed().as_secs_f64();
        let view = report::View {
            system_tokens: opts.system_tokens,
            elapsed_s: elapsed,
            estimate: opts.estimate,
            levers,
            level,
            target: opts.target,
        };
        outs.push(if opts.json { report::json(&sources, &view) } else { report::text(&sources, &view) });
    }
    progress.finish();
    // One level prints one report (one JSON object); several print one after another (a JSON array).
    match (opts.json, outs.len()) {
        (true, n) if n > 1 => println!("[{}]", outs.join(",")),
        _ => println!("{}", outs.join("\n")),
    }
    if sound {
        0
    } else {
        1
    }
}

/// Replays every loaded conversation at one level (and, with `--levers`, once per lever).
fn replay_level(
    opts: &Options,
    loaded: &[(String, Vec<Conversation>)],
    levers: Levers,
    level: Level,
    counter: &mut Counter,
    progress: &mut Progress,
) -> Vec<(String, Vec<Stats>)> {
    let mut sources: Vec<(String, Vec<Stats>)> = Vec::new();
    for (src, convs) in loaded {
        let mut per = Vec::new();
        for c in convs {
            progress.start(&c.name);
            let target = opts.target;
            let mut setup = Setup { levers, level, target, ceiling: opts.ceiling, progress: Some(&mut *progress) };
            let mut s = measure(c, counter, &mut setup);
            if opts.levers {
                for (name, _) in Levers::NAMES {
                    let Some(off) = levers.without(name) else { continue };
                    let mut setup =
                        Setup { levers: off, level, target, ceiling: false, progress: Some(&mut *progress) };
                    let t = measure(c, counter, &mut setup);
                    s.after_without.insert(name.to_string(), t.tokens_after);
                }
                for (name, _) in Levers::OPT_IN {
                    let Some(on) = levers.with(name) else { continue };
                    let mut setup = Setup { levers: on, level, target, ceiling: false, progress: Some(&mut *progress) };
                    let t = measure(c, counter, &mut setup);
                    s.after_with.insert(name.to_string(), t.tokens_after);
                }
            }
            per.push(s);
        }
        sources.push((src.clone(), per));
    }
    sources
}
