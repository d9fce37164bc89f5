//! The outline a cleared output keeps: what the model may still refer back to. Identifiers (paths,
//! dotted, snake_case and camelCase names) in order of first appearance, the symbols a file view
//! defines, the hits of a search, the failing tests and first error line of a run.
//!
//! Built from the output's text alone plus the set of identifiers the conversation showed before
//! it, so the same output in the same conversation always gets the same outline.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use xxhash_rust::xxh3::xxh3_64;

use crate::fold::state::IdHasher;

use crate::fold::filters::{has_summary, is_error_line, is_path};
use crate::fold::shapes;

/// What kind of output an outline is for, which decides what it lists first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A file's contents (Read, `cat`, an editor window).
    View,
    /// Search hits (`grep -n`, Grep, `rg`): `path:line` per hit.
    Search,
    /// File listings (Glob, `ls`, `find`).
    Listing,
    /// A command run (tests, builds, anything else a shell printed).
    Run,
    Other,
}

/// Most identifiers an outline lists; symbols, hits and failing names count against it too.
/// With names listed at their first appearance only, 80 keep 99.7% of the identifiers the model
/// went on to write visible on the Claude Code corpus (200: 99.8%, 40: 99.1%).
pub const MAX_NAMES: usize = 80;
/// Most bytes of an outline's lists (the header line comes on top), and at most this share of the
/// output's own bytes (a long listing's outline would be nearly the listing).
pub const MAX_BYTES: usize = 4096;
pub const MAX_SHARE: f64 = 0.3;
const MAX_SYMBOLS: usize = 60;
const MAX_FAILING: usize = 30;
/// Longer error and summary lines are kept as their first this many bytes.
pub const MAX_LINE: usize = 300;

/// Identifiers in `text`, in order, with repeats: words of letters, digits, `_`, `.`, `/` and
/// `-` that are paths or dotted, snake_case or camelCase names (4+ bytes, a letter in them).
/// Works on raw JSON string bytes as well as on decoded text: a backslash escape separates words.
pub fn identifiers(text: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < text.len() {
            // Skip to a word start; `\x` and `\uXXXX` are separators.
            if text[i] == b'\\' {
                i += if text.get(i + 1) == Some(&b'u') { 6 } else { 2 };
                continue;
            }
            if !is_word_byte(text[i]) {
                i += 1;
                continue;
            }
            let s = i;
            while i < text.len() && is_word_byte(text[i]) {
                i += 1;
            }
            let w = trim_word(&text[s..i]);
            if is_identifier(w) {
                return Some(w);
            }
        }
        None
    })
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-')
}

/// Drops what a word cannot end with (`lib/a.ex.` at a sentence end) or start with (`-x`,
/// `./x`, `../x`); an absolute path keeps its `/`, a dot file its dot.
fn trim_word(mut w: &[u8]) -> &[u8] {
    while let Some(r) = w.strip_prefix(b"./").or_else(|| w.strip_prefix(b"../")).or_else(|| w.strip_prefix(b"-")) {
        w = r;
    }
    let e = w.iter().rposition(|c| !matches!(c, b'.' | b'/' | b'-')).map_or(0, |k| k + 1);
    &w[..e]
}

fn is_identifier(w: &[u8]) -> bool {
    if w.len() < 4 || w.len() > 200 || !w.iter().any(u8::is_ascii_alphabetic) {
        return false;
    }
    let mut slashes = 0;
    for k in 1..w.len() {
        let (a, b) = (w[k - 1], w[k]);
        // snake_case, a dotted name, a camel-case hump.
        if (b == b'_' && a.is_ascii_alphanumeric())
            || (a == b'.' && b.is_ascii_alphabetic())
            || (a.is_ascii_lowercase() && b.is_ascii_uppercase())
        {
            return true;
        }
        slashes += usize::from(a == b'/' && b.is_ascii_alphabetic());
    }
    // A path without a dot or an underscore needs two separators: `lib/spotter/web`, but not
    // prose like `read/write` or a closing tag like `/div`.
    slashes >= 2
}

/// The identifiers a conversation has shown so far (hashes): an outline lists only the ones an
/// output shows first, since every earlier one stays visible somewhere (verbatim, or in an
/// earlier output's outline).
#[derive(Clone, Default)]
pub struct Seen(HashSet<u64, BuildHasherDefault<IdHasher>>);

impl Seen {
    /// Records every identifier of `text`.
    pub fn add(&mut self, text: &[u8]) {
        for w in identifiers(text) {
            self.0.insert(xxh3_64(w));
        }
    }

    /// Records what an outline found in its output (`Outline::shown`).
    pub fn extend(&mut self, hashes: &[u64]) {
        self.0.extend(hashes.iter().copied());
    }

    pub fn contains(&self, w: &[u8]) -> bool {
        self.0.contains(&xxh3_64(w))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What an outline knows about the output besides its text.
pub struct Subject<'a> {
    pub shape: Shape,
    /// The file a view shows (listed once, not as a name).
    pub path: Option<&'a str>,
}

/// Collects outline lines under the name and byte budgets.
struct Budget {
    names: usize,
    bytes: usize,
    max_bytes: usize,
    lines: Vec<String>,
}

impl Budget {
    /// Adds `label: a, b, c` with as many items as the budgets allow.
    fn list(&mut self, label: &str, items: impl IntoIterator<Item = String>) {
        let mut line = String::new();
        for it in items {
            if self.names >= MAX_NAMES || self.bytes + line.len() + it.len() + 2 > self.max_bytes {
                break;
            }
            if line.is_empty() {
                line.push_str(label);
                line.push_str(": ");
            } else {
                line.push_str(", ");
            }
            line.push_str(&it);
            self.names += 1;
        }
        if !line.is_empty() {
            self.bytes += line.len() + 1;
            self.lines.push(line);
        }
    }

    fn line(&mut self, label: &str, text: &str) {
        let text = clip_line(text);
        if self.bytes + text.len() + label.len() + 3 <= self.max_bytes {
            self.bytes += text.len() + label.len() + 3;
            self.lines.push(format!("{label}: {text}"));
        }
    }
}

/// An output's outline, and what the output shows that later outlines need not list again.
pub struct Outline {
    /// The outline lines (without the stub's header line).
    pub lines: Vec<String>,
    /// Hashes of the identifiers in the output and the symbols a view defines.
    pub shown: Vec<u64>,
}

/// The outline of `text`. `seen` holds the identifiers shown before this output; the names line
/// lists the others, in order of first appearance.
pub fn outline(text: &str, subject: &Subject, seen: &Seen) -> Outline {
    let max_bytes = MAX_BYTES.min((text.len() as f64 * MAX_SHARE) as usize);
    let mut b = Budget { names: 0, bytes: 0, max_bytes, lines: Vec::new() };
    // Hashes of what the outline lists already (the view's path, its symbols, hits, paths).
    let mut listed: HashSet<u64> = HashSet::new();
    if let Some(p) = subject.path {
        listed.insert(xxh3_64(p.as_bytes()));
    }
    if subject.shape != Shape::View {
        // The first error line of anything but a file's contents (where `error` is just code),
        // whatever the budgets: every cleared output keeps it.
        let first_error = first_error_line(text);
        if let Some(e) = first_error {
            let line = format!("first error: {}", clip_line(e));
            b.bytes += line.len() + 1;
            b.lines.push(line);
        }
        if subject.shape == Shape::Run {
            b.list("failing", failing_names(text).into_iter().take(MAX_FAILING));
            let summary = text.lines().rev().map(str::trim).find(|l| has_summary(l) && Some(*l) != first_error);
            if let Some(s) = summary {
                b.line("summary", s);
            }
        }
    }
    let mut shown: Vec<u64> = Vec::new();
    match subject.shape {
        Shape::View => {
            // Symbols an earlier outline of the conversation listed are not repeated (a re-read).
            let syms = symbols(text);
            shown.extend(syms.iter().map(|s| xxh3_64(s.as_bytes())));
            let new: Vec<&String> = syms.iter().filter(|s| !seen.contains(s.as_bytes())).collect();
            listed.extend(new.iter().map(|s| xxh3_64(s.as_bytes())));
            b.list("defines", new.into_iter().take(MAX_SYMBOLS).cloned());
        }
        Shape::Search => {
            let hits = hits(text);
            listed.extend(hits.iter().map(|(p, _)| xxh3_64(p.as_bytes())));
            b.list(
                "hits",
                hits.into_iter().map(|(p, nums)| if nums.is_empty() { p.to_string() } else { format!("{p}:{nums}") }),
            );
        }
        Shape::Listing => {
            let paths = listing_paths(text);
            listed.extend(paths.iter().map(|p| xxh3_64(p.as_bytes())));
            b.list("paths", paths.into_iter().map(str::to_string));
        }
        Shape::Run | Shape::Other => {}
    }
    let mut names: Vec<&[u8]> = Vec::new();
    for w in identifiers(text.as_bytes()) {
        let h = xxh3_64(w);
        shown.push(h);
        if !seen.0.contains(&h) && listed.insert(h) {
            names.push(w);
        }
    }
    b.list("names", names.into_iter().map(|w| String::from_utf8_lossy(w).into_owned()));
    Outline { lines: b.lines, shown }
}

/// The first error-like line of an output, trimmed (the stub keeps it as `clip_line` gives it).
pub fn first_error_line(text: &str) -> Option<&str> {
    text.lines().map(|l| l.trim()).find(|l| is_error_line(l))
}

/// A line as a stub keeps it: whole up to `MAX_LINE` bytes, else its first `MAX_LINE` bytes
/// and `…`.
pub fn clip_line(l: &str) -> String {
    let l = l.trim();
    if l.len() <= MAX_LINE {
        return l.to_string();
    }
    let mut end = MAX_LINE;
    while !l.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &l[..end])
}

/// Lines of a view without their number prefixes.
fn stripped(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(|l| match shapes::number_prefix(l) {
        Some((_, _, n)) => &l[n..],
        None => l,
    })
}

/// The name a definition line introduces (`def name`, `pub fn name`, `class Name`, ...), across
/// the languages agents work in: its leading keywords, then the name.
fn defined_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    let mut keyword = false;
    loop {
        let (word, after) = rest.split_once(' ')?;
        match word {
            // Modifiers before the keyword.
            "pub" | "pub(crate)" | "async" | "export" | "default" | "static" | "abstract" | "final" => {}
            "defmodule" | "defprotocol" | "defimpl" | "defmacrop" | "defmacro" | "defp" | "def" | "defstruct"
            | "fn" | "struct" | "enum" | "trait" | "impl" | "mod" | "function" | "class" | "interface" | "type"
            | "func" | "module" => keyword = true,
            _ => return None,
        }
        rest = after.trim_start();
        if keyword {
            break;
        }
    }
    // Go methods: `func (r *T) Name(`.
    if rest.starts_with('(') {
        rest = rest.split_once(") ").map_or("", |(_, r)| r);
    }
    let end = rest.find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '!' | '?'))).unwrap_or(rest.len());
    let name = rest[..end].trim_end_matches('.');
    (name.len() >= 2).then_some(name)
}

/// Names a view defines, in order, once each.
pub fn symbols(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in stripped(text) {
        if let Some(name) = defined_name(l) {
            if !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// `path:line` search hits grouped per path in order: (path, "12,40,77").
fn hits(text: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for l in text.lines() {
        let (path, num) = match split_hit(l) {
            Some(h) => h,
            None => match l.trim() {
                p if is_path(p) => (p, None),
                _ => continue,
            },
        };
        let k = match out.iter().position(|(p, _)| *p == path) {
            Some(k) => k,
            None => {
                out.push((path, String::new()));
                out.len() - 1
            }
        };
        if let Some(n) = num {
            let nums = &mut out[k].1;
            if !nums.is_empty() {
                nums.push(',');
            }
            nums.push_str(n);
        }
    }
    out
}

/// `path:12:text` -> (path, "12").
fn split_hit(l: &str) -> Option<(&str, Option<&str>)> {
    let (path, rest) = l.split_once(':')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !rest[digits..].starts_with([':', '-']) || !is_path(path) {
        return None;
    }
    Some((path, Some(&rest[..digits])))
}

/// The paths of a listing, one per line (Glob output, `find`, `ls -1`), in order.
fn listing_paths(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for l in text.lines() {
        let p = l.trim();
        if is_path(p) && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Names of failing tests, in the shapes test runners print them.
pub fn failing_names(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        let s = shapes::clip(s.trim(), 160);
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    for l in text.lines() {
        let t = l.trim();
        if let Some(r) = t.strip_prefix("FAILED ").or_else(|| t.strip_prefix("ERROR ")) {
            // pytest: `FAILED tests/x.py::test_y - AssertionError`.
            add(r.split(" - ").next().unwrap_or(r));
        } else if let Some(r) = t.strip_prefix("--- FAIL: ") {
            add(r.split(' ').next().unwrap_or(r));
        } else if let Some(r) = t.strip_prefix("test ").and_then(|r| r.strip_suffix(" ... FAILED")) {
            add(r);
        } else if let Some(r) = t.strip_prefix("✕ ").or_else(|| t.strip_prefix("✗ ")).or_else(|| t.strip_prefix("× "))
        {
            add(r);
        } else if let Some(r) = exunit_failure(t) {
            add(r);
        }
    }
    out
}

/// ExUnit: `1) test renders the page (MyAppWeb.PageLiveTest)`.
fn exunit_failure(t: &str) -> Option<&str> {
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let rest = t.get(digits..)?.strip_prefix(") ")?;
    (digits > 0 && (rest.starts_with("test ") || rest.starts_with("doctest ")) && rest.ends_with(')')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` with plain filler after it, so the share budget does not cut a small example.
    fn padded(text: &str) -> String {
        format!("{text}{}", "ok ok ok ok\n".repeat(200))
    }

    fn ids(s: &str) -> Vec<String> {
        identifiers(s.as_bytes()).map(|w| String::from_utf8_lossy(w).into_owned()).collect()
    }

    #[test]
    fn finds_paths_and_names() {
        assert_eq!(
            ids("see lib/spotter/session.ex. Then call Spotter.Session.get/1 and session_id or fooBar, not Foo or 1.2.3"),
            ["lib/spotter/session.ex", "Spotter.Session.get/1", "session_id", "fooBar"]
        );
        // Raw JSON: `\n` is not part of the next word.
        assert_eq!(ids(r"a\nlib/a_b.rs\u00e9xy_z"), ["lib/a_b.rs", "xy_z"]);
        assert!(ids("e.g. abc def").is_empty());
        assert_eq!(ids("read/write </div> lib/spotter/web"), ["lib/spotter/web"]);
    }

    #[test]
    fn view_outline_lists_symbols_then_new_names() {
        let text = "     1→defmodule Spotter.Session do\n     2→  def get_by_id(id), do: Repo.get(id)\n     3→  defp load_all(x), do: x.session_rows\n";
        let mut seen = Seen::default();
        seen.add(b"earlier: x.session_rows");
        let o = outline(&padded(text), &Subject { shape: Shape::View, path: Some("lib/s.ex") }, &seen).lines;
        assert_eq!(o[0], "defines: Spotter.Session, get_by_id, load_all");
        assert_eq!(o[1], "names: Repo.get", "known names and the symbols are not repeated");
    }

    #[test]
    fn run_outline_keeps_failures_and_the_first_error() {
        let text = "Compiling\n  1) test renders x (AppWeb.PageTest)\n     ** (MatchError) no match of right hand side value: nil\n  2) test other (AppWeb.PageTest)\nerror: second\n12 tests, 2 failures\n";
        let o = outline(&padded(text), &Subject { shape: Shape::Run, path: None }, &Seen::default()).lines;
        assert_eq!(o[0], "first error: ** (MatchError) no match of right hand side value: nil");
        assert_eq!(o[1], "failing: test renders x (AppWeb.PageTest), test other (AppWeb.PageTest)");
        assert_eq!(o[2], "summary: 12 tests, 2 failures");
    }

    #[test]
    fn search_outline_groups_hits_per_path() {
        let text = "src/a.rs:12:let x\nsrc/a.rs:40:let y\nsrc/b.rs:7:z\n";
        let o = outline(&padded(text), &Subject { shape: Shape::Search, path: None }, &Seen::default()).lines;
        assert_eq!(o[0], "hits: src/a.rs:12,40, src/b.rs:7");
        // A small output gets a small outline, but its first error line whatever the budget.
        let o = outline(
            "src/a.rs:12:  raise Error, 'no way'\n",
            &Subject { shape: Shape::Search, path: None },
            &Seen::default(),
        );
        assert_eq!(o.lines, ["first error: src/a.rs:12:  raise Error, 'no way'"]);
    }

    #[test]
    fn budgets_bound_the_outline() {
        let text: String = (0..2000).map(|i| format!("name_{i} ")).collect();
        let o = outline(&text, &Subject { shape: Shape::Other, path: None }, &Seen::default()).lines;
        let bytes: usize = o.iter().map(|l| l.len() + 1).sum();
        assert!(bytes <= MAX_BYTES, "{bytes}");
        assert!(o[0].matches(", ").count() < MAX_NAMES);
    }
}
