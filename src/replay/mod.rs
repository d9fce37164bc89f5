//! `tokenfold replay`: folds recorded sessions turn by turn exactly as the proxy would (through
//! `Folder::fold`) and reports what it would have saved and whether every prefix stayed stable.

pub mod report;
pub mod sources;

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::dialect::Dialect;
use crate::fold::locate::{self, Kind};
use crate::fold::originals::Originals;
use crate::fold::{json, FoldOptions, Folder, Level, Mechanism};
use crate::tokens;

mod retention;

pub struct Options {
    pub paths: Vec<PathBuf>,
    pub json: bool,
    /// Tokens of a stand-in system prompt + tool schemas added to every request (before and after
    /// alike) for transcripts that do not record them. 0 leaves them out.
    pub system_tokens: u64,
    /// Each level is replayed and reported on its own (the proxy's default is `balanced`).
    pub levels: Vec<Level>,
}

/// A folder that folds as the proxy would at `level`, storing nothing (markers name the default
/// store; replay only measures).
pub fn folder_at(level: Level) -> Folder {
    Folder::with_options(
        true,
        FoldOptions { level, originals: std::sync::Arc::new(Originals::unstored()), filters_allowed: true },
    )
}

/// What one conversation (or a sum of them) measured.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub name: String,
    pub format: String,
    pub conversations: u64,
    pub turns: u64,
    /// o200k tokens of message text (system, messages, tool-call arguments) summed over turns.
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
    /// Error-like lines of changed blocks, and how many are still in the forwarded request
    /// (verbatim, or in the earlier block a pointer names). Must be all of them.
    pub error_lines_checked: u64,
    pub error_lines_kept: u64,
    /// A few error-like lines that went missing (for the report; empty when retention is 100%).
    pub error_lines_lost: Vec<String>,
}

impl Stats {
    pub fn saved_pct(&self) -> f64 {
        pct(self.tokens_before.saturating_sub(self.tokens_after), self.tokens_before)
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
        self.error_lines_checked += o.error_lines_checked;
        self.error_lines_kept += o.error_lines_kept;
        for l in &o.error_lines_lost {
            if self.error_lines_lost.len() < 5 {
                self.error_lines_lost.push(l.clone());
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
    /// Byte estimates instead of o200k (for fast stability checks in tests).
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
    fn block(&mut self, b: &[u8], blk: &locate::Block) -> u64 {
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

/// Replays one conversation at the default level (`balanced`, as the proxy folds).
pub fn measure(
    name: &str,
    format: &str,
    dialect: Dialect,
    turns: &[Bytes],
    counter: &mut Counter,
    system_tokens: u64,
) -> Stats {
    measure_at(name, format, dialect, turns, counter, system_tokens, Level::default())
}

/// Replays one conversation through its own `Folder` (conversations are never pooled).
pub fn measure_at(
    name: &str,
    format: &str,
    dialect: Dialect,
    turns: &[Bytes],
    counter: &mut Counter,
    system_tokens: u64,
    level: Level,
) -> Stats {
    let mut st = Stats { name: name.to_string(), format: format.to_string(), conversations: 1, ..Stats::default() };
    let folder = folder_at(level);
    let mut retention = retention::Retention::default();
    let mut prev: Vec<(u64, u64)> = Vec::new(); // per block: (input identity, output bytes hash)
    let mut last_out: Option<Bytes> = None;
    for body in turns {
        let t0 = Instant::now();
        let folded = folder.fold(dialect, body);
        st.fold_ms += t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        st.turns += 1;
        let out = folded.as_ref().map(|f| f.body.clone()).unwrap_or_else(|| body.clone());
        let (Ok(bin), Ok(bout)) = (locate::locate(dialect, body), locate::locate(dialect, &out)) else {
            st.prefix_blocks_changed += 1;
            continue;
        };
        st.tokens_before += system_tokens + bin.iter().map(|b| counter.block(body, b)).sum::<u64>();
        st.tokens_after += system_tokens + bout.iter().map(|b| counter.block(&out, b)).sum::<u64>();
        if let Some(f) = &folded {
            // Signed per mechanism: a filter's footer removes nothing and costs its tokens.
            let mut by: BTreeMap<&'static str, i64> = BTreeMap::new();
            for e in &f.edits {
                *by.entry(e.mechanism.name()).or_default() +=
                    counter.text(&e.removed) as i64 - counter.text(&e.marker) as i64;
            }
            for (m, n) in by {
                *st.saved_by.entry(m.to_string()).or_default() += n.max(0) as u64;
            }
            retention.check(dialect, body, &bin, &out, &bout, &mut st);
        }
        // Prefix stability: every block that the previous turn also sent, unchanged, in the same
        // place, must be forwarded with exactly the bytes forwarded then.
        if bin.len() != bout.len() {
            // The folded body must keep the request's shape; count it as a broken prefix.
            st.prefix_blocks_changed += 1;
        }
        let cur: Vec<(u64, u64)> = bin
            .iter()
            .zip(&bout)
            .map(|(i, o)| {
                let id = xxh3_64(&body[i.range.clone()]) ^ (i.kind as u64) ^ loc_id(i);
                (id, xxh3_64(out.get(o.range.clone()).unwrap_or_default()))
            })
            .collect();
        for (p, c) in prev.iter().zip(&cur) {
            if p.0 != c.0 {
                break;
            }
            st.prefix_blocks_checked += 1;
            if p.1 != c.1 {
                st.prefix_blocks_changed += 1;
            }
        }
        prev = cur;
        last_out = Some(out);
        st.measure_ms += t1.elapsed().as_secs_f64() * 1e3;
    }
    // The incremental path must give what a cold start gives (determinism across processes).
    if let (Some(body), Some(out)) = (turns.last(), last_out) {
        let fresh = folder_at(level).fold(dialect, body).map(|f| f.body).unwrap_or_else(|| body.clone());
        if fresh != out {
            st.scratch_mismatches += 1;
        }
    }
    for m in Mechanism::ALL {
        st.saved_by.entry(m.name().to_string()).or_default();
    }
    st
}

fn loc_id(b: &locate::Block) -> u64 {
    match b.loc {
        locate::Loc::System(k) => u64::from(k).wrapping_mul(31),
        locate::Loc::Message(i) => (u64::from(i) + 1).wrapping_mul(0x9E37_79B9),
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
    if let Some(p) = paths.iter().find(|p| !p.exists()) {
        eprintln!("replay: {} does not exist", p.display());
        return 2;
    }
    let levels = if opts.levels.is_empty() { vec![Level::default()] } else { opts.levels.clone() };
    let mut code = 0;
    let mut counter = Counter::default();
    let mut outs = Vec::new();
    for level in levels {
        let (out, c) = run_level(&opts, &paths, level, &mut counter);
        code = code.max(c);
        outs.push(out);
    }
    if opts.json {
        println!("[{}]", outs.join(","));
    } else {
        println!("{}", outs.join("\n\n"));
    }
    code
}

/// Replays every path at one level; returns the rendered report and the exit code.
fn run_level(opts: &Options, paths: &[PathBuf], level: Level, counter: &mut Counter) -> (String, u8) {
    let started = Instant::now();
    let mut sources: Vec<(String, Vec<Stats>)> = Vec::new();
    let tty = std::io::stderr().is_terminal();
    for p in paths {
        let convs = sources::load(p);
        let total = convs.len();
        let mut per = Vec::new();
        for (i, c) in convs.iter().enumerate() {
            if tty {
                eprint!("\r\x1b[Kreplay {}: {}/{} {} ({} turns)", p.display(), i + 1, total, c.name, c.turns.len());
            } else if c.turns.len() > 100 || (i + 1) % 10 == 0 {
                eprintln!("replay {}: {}/{} {} ({} turns)", p.display(), i + 1, total, c.name, c.turns.len());
            }
            per.push(measure_at(&c.name, c.format, c.dialect, &c.turns, counter, opts.system_tokens, level));
        }
        if tty {
            eprint!("\r\x1b[K");
        }
        sources.push((p.display().to_string(), per));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let out = if opts.json {
        report::json(&sources, opts.system_tokens, elapsed, level)
    } else {
        report::text(&sources, opts.system_tokens, elapsed, level)
    };
    let sound = sources.iter().flat_map(|(_, v)| v).all(|s| {
        s.prefix_blocks_changed == 0 && s.scratch_mismatches == 0 && s.error_lines_kept == s.error_lines_checked
    });
    (out, if sound { 0 } else { 1 })
}
