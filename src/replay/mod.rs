//! `tokenfold replay`: folds recorded sessions turn by turn exactly as the proxy would (through
//! `Folder::fold`) and reports what it would have saved and whether every prefix stayed stable.

pub mod ceiling;
pub mod clearing;
pub mod fit;
mod gemini_sources;
pub mod progress;
pub mod report;
mod retention;
pub mod sources;
mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use crate::dialect::blocks::{self as locate, Kind};
use crate::dialect::json;
use crate::fold::clear::Economics;
use crate::fold::originals::Originals;
use crate::fold::{FoldOptions, Folder, Level, Levers, Mechanism, Prepared};
use crate::tokens;
use ceiling::Ceiling;
pub use clearing::TargetKind;
use progress::Progress;
use sources::Conversation;
pub use stats::{pct, Stats};

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
    /// Fit every turn to a free tier's budget instead (`--fit`), and report that.
    pub fit: Option<fit::Limit>,
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
            fit: None,
        }
    }
}

/// Stand-in size of Claude Code's system prompt + tool schemas (10-20k tokens, identical in every
/// request), which its session files do not record.
pub const DEFAULT_SYSTEM_TOKENS: u64 = 15_000;

/// Formats whose files leave out the system prompt and tool schemas.
pub fn lacks_system(format: &str) -> bool {
    matches!(format, "claude-code" | "codex" | "gemini-cli" | "gemini-cli-session")
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
            TargetKind::Cache => Economics::Cached { read: clearing::READ, write: clearing::WRITE, any_prefix: false },
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
    let mut entries = clearing::CacheEntries::default();
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
        st.billed_at_entries += entries.billed(&tout, &out_ids);
        if let (Some(p), Some(cl)) = (&turn.prepared, &turn.cleared) {
            st.cleared_turns += 1;
            clearing::check_visibility(c, t, body, &bin, &out, &bout, p, cl, &mut first_errors_seen, &mut st);
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

/// Default places agents keep sessions.
fn default_paths() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let codex = std::env::var_os("CODEX_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".codex"));
    [home.join(".claude/projects"), codex.join("sessions"), home.join(".gemini/tmp")]
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

/// Runs the replay; returns the process exit code.
pub fn run(opts: Options) -> u8 {
    let paths = if opts.paths.is_empty() { default_paths() } else { opts.paths.clone() };
    if paths.is_empty() {
        eprintln!("replay: no path given and none of ~/.claude/projects, ~/.codex/sessions, ~/.gemini/tmp exists");
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
    if let Some(limit) = opts.fit {
        let mut counter = Counter { estimate_only: opts.estimate, ..Counter::default() };
        let figures = fit::measure(&loaded, limit, opts.system_tokens, &mut counter);
        let out = if opts.json {
            fit::json(&figures, limit, opts.system_tokens)
        } else {
            fit::text(&figures, limit, opts.system_tokens)
        };
        println!("{out}");
        return 0;
    }
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
