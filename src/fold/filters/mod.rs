//! Typed compression of command output (fold engine, part 2).
//!
//! A filter is a pure function of (command line, output text, level) that proposes `Cut`s: line
//! ranges replaced by a short marker or by a compacted rewrite of the same facts. The framework
//! here picks the filter (by the command line when it names a known tool, else by the whole
//! content, else none), then checks every proposal before anyone sees it: cuts are sorted,
//! disjoint, smaller than what they replace, and never cover a protected line. Protected lines
//! (error/fail/panic/exception/traceback/fatal/warn lines, `file:line` locations, exit codes and
//! summary counts) are forwarded verbatim; a filter that tries to cut one is refused outright.
//! `dedup.rs` turns the cuts into edits and adds the footer that says where the original is.
//!
//! Only command output comes here (shell/exec tool results, agents' command observations), and
//! not even all of it: a command line that shows a file (`cat`, `head`, `sed -n`, SWE-agent
//! `open`) and any output shaped like a numbered file view get no filter, only part-1 dedup.
//!
//! How this combines with part 1 (dedup), per block:
//! 1. A whole output identical to an earlier verbatim block keeps the part-1 pointer; no filter.
//! 2. Otherwise the filter runs first, on the original text. What it cuts is no longer verbatim,
//!    so no later marker can point at it; the block is never a whole-output source either (a
//!    later identical output is filtered the same way, deterministically).
//! 3. Span dedup then runs on the lines the filter kept verbatim (they may still become pointers
//!    to earlier blocks, and later blocks may point at them), except the lines a repeat marker
//!    of this block names, which stay verbatim.
//!
//! The invariants: the filtered form is a pure function of (command line, text, level, how the
//! store is named), and the level and the store's fingerprint are in the fold cache key, so the
//! block folds the same on every turn and in every process; filter markers name the store, never
//! another block, and repeat markers name verbatim lines above them; every cut shrinks and the
//! block must save more than its footer costs; any rule broken means no filter (fail open).

pub mod apply;
mod build;
pub mod command;
mod git;
mod json_rows;
mod listing;
mod logs;
mod protect;
mod repeats;
mod search;
mod tail;
mod tests_out;

use std::ops::Range;

pub use apply::{plan, Applied, Origin};
pub use command::Tool;
pub use protect::{has_location, has_summary, is_error_line, Protect};
pub use search::is_path;

/// How hard to compress. `Lossless` is part 1 only (pointer dedup); it is the floor every level keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Level {
    Lossless,
    #[default]
    Balanced,
    Aggressive,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Lossless, Level::Balanced, Level::Aggressive];

    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lossless" => Some(Level::Lossless),
            "balanced" => Some(Level::Balanced),
            "aggressive" => Some(Level::Aggressive),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Lossless => "lossless",
            Level::Balanced => "balanced",
            Level::Aggressive => "aggressive",
        }
    }
}

/// One filter per content type; each is its own mechanism in the savings figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Filter {
    TestRunner,
    Build,
    Log,
    Git,
    Listing,
    Json,
    HeadTail,
    /// Runs of lines repeated inside one output (any command output).
    Repeat,
}

impl Filter {
    pub const ALL: [Filter; 8] = [
        Filter::TestRunner,
        Filter::Build,
        Filter::Log,
        Filter::Git,
        Filter::Listing,
        Filter::Json,
        Filter::HeadTail,
        Filter::Repeat,
    ];

    /// The mechanism name in savings figures and the ledger.
    pub fn name(self) -> &'static str {
        match self {
            Filter::TestRunner => "filter:test-runner",
            Filter::Build => "filter:build",
            Filter::Log => "filter:log",
            Filter::Git => "filter:git",
            Filter::Listing => "filter:listing",
            Filter::Json => "filter:json",
            Filter::HeadTail => "filter:head-tail",
            Filter::Repeat => "filter:repeat",
        }
    }
}

/// Lines `lines` (indexes into the output's `\n`-split lines) are replaced by `with`. An empty
/// `with` removes the lines together with their newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub lines: Range<usize>,
    pub with: String,
}

/// What a filter made of one output.
#[derive(Debug, Clone)]
pub struct Compressed {
    /// The typed filter (or head + tail), else `Repeat` when only repeats were folded.
    pub filter: Filter,
    /// Sorted, disjoint; each with the filter it counts for.
    pub cuts: Vec<(Filter, Cut)>,
    /// Lines repeats point at: they must stay verbatim (no other edit may touch them).
    pub reserved: Vec<Range<usize>>,
    /// Lines of the original that no longer appear verbatim.
    pub lines_folded: usize,
    pub lines_total: usize,
    /// A few words for the footer: "passing tests, build progress".
    pub what: String,
}

/// Outputs shorter than this are left alone: nothing to win that pays for a footer.
const MIN_BYTES: usize = 600;

/// The output being compressed, split once, with its protected lines marked.
pub struct Input<'a> {
    pub text: &'a str,
    pub lines: Vec<&'a str>,
    pub protect: Protect<'a>,
    pub level: Level,
    pub tool: Tool,
}

impl<'a> Input<'a> {
    pub fn new(text: &'a str, level: Level, tool: Tool) -> Input<'a> {
        let mut lines: Vec<&str> = Vec::with_capacity(memchr::memchr_iter(b'\n', text.as_bytes()).count() + 1);
        let mut from = 0;
        for k in memchr::memchr_iter(b'\n', text.as_bytes()) {
            lines.push(&text[from..k]);
            from = k + 1;
        }
        lines.push(&text[from..]);
        let protect = Protect::scan(&lines);
        Input { text, lines, protect, level, tool }
    }

    /// The line without a trailing `\r`.
    pub fn line(&self, i: usize) -> &'a str {
        let l = self.lines[i];
        l.strip_suffix('\r').unwrap_or(l)
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn bytes_of(&self, r: &Range<usize>) -> usize {
        self.lines[r.clone()].iter().map(|l| l.len() + 1).sum()
    }
}

/// Folds maximal runs of consecutive lines that `class` labels (and that are not protected).
/// `class` returns `Some("")` for a line that may sit inside a run without being counted (blank
/// lines). Runs shorter than `min_run` counted lines stay. `marker` renders a run from its count
/// per label.
pub fn fold_runs(
    inp: &Input,
    min_run: usize,
    class: impl Fn(usize) -> Option<&'static str>,
    mut marker: impl FnMut(usize, &[(&'static str, usize)]) -> String,
) -> Vec<Cut> {
    let mut cuts = Vec::new();
    let mut i = 0;
    let n = inp.len();
    while i < n {
        let Some(first) = class(i).filter(|l| !l.is_empty() && !inp.protect.any(i)) else {
            i += 1;
            continue;
        };
        let mut counts: Vec<(&'static str, usize)> = vec![(first, 1)];
        let mut total = 1;
        let mut end = i + 1;
        let mut j = i + 1;
        while j < n && !inp.protect.any(j) {
            match class(j) {
                Some("") => j += 1,
                Some(label) => {
                    match counts.iter_mut().find(|(l, _)| *l == label) {
                        Some((_, c)) => *c += 1,
                        None => counts.push((label, 1)),
                    }
                    total += 1;
                    j += 1;
                    end = j;
                }
                None => break,
            }
        }
        if total >= min_run {
            cuts.push(Cut { lines: i..end, with: marker(total, &counts) });
        }
        i = end.max(i + 1);
    }
    cuts
}

/// Whether any of `needles` occurs anywhere in the output (a whole-content SIMD prefilter
/// that lets a detector skip its line-by-line pass).
pub fn mentions(inp: &Input, needles: &[&str]) -> bool {
    needles.iter().any(|n| memchr::memmem::find(inp.text.as_bytes(), n.as_bytes()).is_some())
}

/// "Compiling 36, Downloaded 2" for a run marker.
pub fn count_list(counts: &[(&'static str, usize)]) -> String {
    counts.iter().map(|(l, c)| format!("{l} {c}")).collect::<Vec<_>>().join(", ")
}

/// Compresses one command output. `command` is the command line that produced it, when known.
/// `None` means: forward it as it is (apart from part-1 dedup).
pub fn compress(command: Option<&str>, text: &str, level: Level) -> Option<Compressed> {
    if level == Level::Lossless || text.len() < MIN_BYTES {
        return None;
    }
    let tool = command.map(command::classify).unwrap_or(Tool::Unknown);
    if tool == Tool::FileRead || listing::looks_like_file_view(text) {
        return None;
    }
    let inp = Input::new(text, level, tool);
    let chosen = match tool.filter() {
        Some(f) => Some(f),
        None => detect(&inp),
    };
    let typed = chosen.and_then(|f| run(f, &inp).and_then(|(c, w)| Some((f, verify(&inp, f, c)?, w))));
    let mut taken = vec![false; inp.len()];
    let mut cuts: Vec<(Filter, Cut)> = Vec::new();
    let mut what = Vec::new();
    if let Some((f, c, w)) = &typed {
        mark(&mut taken, c);
        cuts.extend(c.iter().map(|c| (*f, c.clone())));
        what.push(w.clone());
    }
    // Repeats inside the output, among what the typed filter kept; their sources stay verbatim.
    let reps = repeats::find(&inp, &taken);
    for r in &reps {
        for i in r.source.clone().chain(r.cut.lines.clone()) {
            taken[i] = true;
        }
    }
    if !reps.is_empty() {
        what.push("repeated lines".to_string());
    }
    let reserved: Vec<Range<usize>> = reps.iter().map(|r| r.source.clone()).collect();
    cuts.extend(reps.into_iter().map(|r| (Filter::Repeat, r.cut)));
    // A long output no typed filter took gets head + tail, except search results (every match
    // line stays).
    let mut filter = typed.as_ref().map(|t| t.0);
    if typed.is_none() && chosen != Some(Filter::Listing) {
        if let Some((c, w)) = tail::compress(&inp, &taken) {
            if let Some(c) = verify(&inp, Filter::HeadTail, c) {
                cuts.extend(c.into_iter().map(|c| (Filter::HeadTail, c)));
                what.push(w);
                filter = Some(Filter::HeadTail);
            }
        }
    }
    if cuts.is_empty() {
        return None;
    }
    cuts.sort_by_key(|(_, c)| c.lines.start);
    let lines_folded = cuts.iter().map(|(_, c)| c.lines.len()).sum();
    let filter = filter.unwrap_or(Filter::Repeat);
    Some(Compressed { filter, cuts, reserved, lines_folded, lines_total: inp.len(), what: what.join("; ") })
}

fn mark(taken: &mut [bool], cuts: &[Cut]) {
    for c in cuts {
        for t in taken.iter_mut().take(c.lines.end).skip(c.lines.start) {
            *t = true;
        }
    }
}

/// Content detection over the whole output, most specific first; `None` when unsure.
fn detect(inp: &Input) -> Option<Filter> {
    if tests_out::detect(inp) {
        Some(Filter::TestRunner)
    } else if git::detect(inp) {
        Some(Filter::Git)
    } else if build::detect(inp) {
        Some(Filter::Build)
    } else if listing::detect(inp) {
        Some(Filter::Listing)
    } else if json_rows::detect(inp) {
        Some(Filter::Json)
    } else if logs::detect(inp) {
        Some(Filter::Log)
    } else {
        None
    }
}

fn run(f: Filter, inp: &Input) -> Option<(Vec<Cut>, String)> {
    let (cuts, what) = match f {
        Filter::TestRunner => tests_out::compress(inp)?,
        Filter::Build => build::compress(inp)?,
        Filter::Log => logs::compress(inp)?,
        Filter::Git => git::compress(inp)?,
        Filter::Listing => listing::compress(inp)?,
        Filter::Json => json_rows::compress(inp)?,
        Filter::HeadTail | Filter::Repeat => return None,
    };
    (!cuts.is_empty()).then_some((cuts, what))
}

/// Refuses a proposal that breaks a rule; drops single cuts that would not shrink their lines.
fn verify(inp: &Input, filter: Filter, cuts: Vec<Cut>) -> Option<Vec<Cut>> {
    let mut at = 0;
    let mut kept = Vec::with_capacity(cuts.len());
    for c in cuts {
        if c.lines.start < at || c.lines.end > inp.len() || c.lines.is_empty() {
            return None;
        }
        for i in c.lines.clone() {
            // Search results are regrouped (path once, then `line:text`): a location stays whole
            // there, but an error-like line never changes anywhere.
            let loc_ok = filter == Filter::Listing && !inp.protect.beyond_location(i);
            if inp.protect.any(i) && !loc_ok {
                return None;
            }
        }
        at = c.lines.end;
        if c.with.len() + 1 < inp.bytes_of(&c.lines) {
            kept.push(c);
        }
    }
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests;
