//! Per-conversation fold state: what was forwarded verbatim so far (the index later blocks may
//! point into) and the frozen result of every block. A pure function of the blocks seen so far.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::Arc;

use super::filters::Filter;
use super::levers::Levers;
use super::shapes::Style;
use crate::dialect::blocks::{Kind, Loc};

/// Keys are already xxh3 outputs; hashing them again is wasted work.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Which rule removed text; reported per mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// A whole tool output identical to an earlier block.
    WholeOutput,
    /// A span of 3+ lines identical (line numbers aside) to a span of an earlier block.
    Span,
    /// A repeated system prompt or `<system-reminder>` segment.
    Reminder,
    /// Typed compression of command output (part 2); the original is in the store.
    Filter(Filter),
}

impl Mechanism {
    pub const ALL: [Mechanism; 11] = [
        Mechanism::WholeOutput,
        Mechanism::Span,
        Mechanism::Reminder,
        Mechanism::Filter(Filter::TestRunner),
        Mechanism::Filter(Filter::Build),
        Mechanism::Filter(Filter::Log),
        Mechanism::Filter(Filter::Git),
        Mechanism::Filter(Filter::Listing),
        Mechanism::Filter(Filter::Json),
        Mechanism::Filter(Filter::HeadTail),
        Mechanism::Filter(Filter::Repeat),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::WholeOutput => "whole-output",
            Mechanism::Span => "span",
            Mechanism::Reminder => "system-reminder",
            Mechanism::Filter(f) => f.name(),
        }
    }

    pub fn is_filter(self) -> bool {
        matches!(self, Mechanism::Filter(_))
    }
}

/// One replacement made in a block. Filter edits point at their own block (`source == block`,
/// no lines): what they removed is in the store of originals, named by the block's footer.
#[derive(Debug, Clone)]
pub struct EditNote {
    pub mechanism: Mechanism,
    /// Ordinal of the edited block in the request's block order.
    pub block: usize,
    /// The original text that the marker stands for.
    pub removed: Arc<str>,
    pub marker: Arc<str>,
    /// The block the marker points at and the line indexes there (None: the whole block).
    pub source: usize,
    pub source_lines: Option<Range<usize>>,
}

/// The frozen folded form of one block.
#[derive(Debug)]
pub struct BlockResult {
    /// New JSON string contents (escaped, without quotes).
    pub escaped: Vec<u8>,
    pub notes: Vec<EditNote>,
    pub est_saved: u64,
}

/// What is known about the call that produced a tool output.
#[derive(Debug, Clone, Default)]
pub struct ToolInfo {
    /// The call id (`toolu_...`, `call_...`); empty for tool output an agent sends as a user
    /// message (SWE-agent, mini-swe-agent, OpenHands, Aider), which has none.
    pub id: String,
    /// The tool name; empty for user-message tool output.
    pub name: String,
    /// A short human subject: the file path or the command, clipped.
    pub subject: Option<String>,
    /// The file the call names (`file_path`, `path`, `filePath`, ...), whole.
    pub path: Option<String>,
    /// The command line of the producing call, unclipped, when it ran a command: a call's
    /// `command`/`cmd` argument (argv arrays joined; `bash -lc SCRIPT` gives SCRIPT), the command
    /// in the assistant message before a user-message tool output (its last ``` fenced block,
    /// `<command>`, OpenHands `<execute_bash>` / `<function=...>`), or Aider's `/run` command.
    /// May span lines (heredocs, SWE-agent `edit` blocks); filters usually look at the first.
    pub command: Option<String>,
    /// The call runs commands (a shell/exec tool, or a user-message observation of a command):
    /// its output may be filtered.
    pub runs_command: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Line {
    /// xxh3 of the line without its number prefix.
    pub h: u64,
    pub num: Option<u32>,
    pub style: Option<Style>,
    /// Which file a grep line names (hash of its path); 0 for other lines.
    pub group: u32,
    /// Byte range of the whole line (prefix included, newline excluded) in the block text.
    pub start: u32,
    pub end: u32,
    /// Forwarded verbatim: may be pointed at.
    pub verbatim: bool,
    /// 1-based line position in the forwarded text (earlier markers shift unnumbered lines).
    pub pos: u32,
}

/// What later markers need to know about an earlier block.
#[derive(Debug, Clone)]
pub struct Src {
    pub kind: Kind,
    pub loc: Loc,
    pub tool: Option<Arc<ToolInfo>>,
    /// The file a SWE-agent style view shows (outputs), or the argument indexed (calls).
    pub view: Option<String>,
    pub lines: Vec<Line>,
}

#[derive(Clone, Default)]
pub struct State {
    /// Rolling hash of the blocks processed so far.
    pub chain: u64,
    pub levers: Levers,
    /// The message of the latest assistant block, and the command it asked to run: the producer
    /// of a tool output that follows as a user message.
    pub last_assistant: Option<u32>,
    pub pending_command: Option<String>,
    pub srcs: Vec<Src>,
    pub results: Vec<Option<Arc<BlockResult>>>,
    /// 3-line window hash -> earliest (block, first line) occurrences forwarded verbatim.
    pub windows: IdMap<Vec<(u32, u32)>>,
    /// Whole text hash -> earliest block forwarded verbatim.
    pub whole: IdMap<u32>,
    /// `<system-reminder>` segment hash -> earliest block holding it verbatim.
    pub reminders: IdMap<u32>,
    pub tools: HashMap<String, Arc<ToolInfo>>,
    /// Originals stored for filtered blocks: id -> the filter that shortened it.
    pub stored: HashMap<String, Mechanism>,
    /// Tool calls that read a stored original back: (call block, the filter it undoes).
    pub recalls: Vec<(usize, Mechanism)>,
    /// Rough heap size, for the cache's memory bound.
    pub approx_bytes: usize,
}

/// Candidates kept per window: the earliest ones (keep-earliest), bounded for speed.
pub const WINDOW_CANDIDATES: usize = 64;

pub fn window_key(a: u64, b: u64, c: u64) -> u64 {
    let m = |x: u64, y: u64| (x ^ y.rotate_left(23)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    m(m(a, b), c) ^ 0x5bd1_e995
}

impl State {
    pub fn new(seed: u64, levers: Levers) -> State {
        State { chain: seed, levers, ..State::default() }
    }

    /// Records block `ord`'s verbatim lines, whole text and reminders as pointable.
    pub fn index_block(&mut self, ord: usize, text: &str, edited: bool, reminders: &[Range<usize>]) {
        let Some(src) = self.srcs.get(ord) else {
            return;
        };
        let lines = &src.lines;
        for i in 0..lines.len().saturating_sub(2) {
            let (a, b, c) = (lines[i], lines[i + 1], lines[i + 2]);
            if !(a.verbatim && b.verbatim && c.verbatim) {
                continue;
            }
            let e = self.windows.entry(window_key(a.h, b.h, c.h)).or_default();
            if e.len() < WINDOW_CANDIDATES {
                e.push((ord as u32, i as u32));
            }
        }
        // Per line: the line itself (and its vector's slack) plus its window entry and candidate
        // vector; measured against RSS under load, where counting the line alone was 2.5x low.
        self.approx_bytes += lines.len() * (2 * std::mem::size_of::<Line>() + 96) + 128;
        if !edited {
            self.whole.entry(xxhash_rust::xxh3::xxh3_64(text.as_bytes())).or_insert(ord as u32);
        }
        for r in reminders {
            if let Some(seg) = text.get(r.clone()) {
                self.reminders.entry(xxhash_rust::xxh3::xxh3_64(seg.as_bytes())).or_insert(ord as u32);
            }
        }
    }
}
