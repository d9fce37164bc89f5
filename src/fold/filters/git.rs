//! git: `status` compacted (hints dropped, short codes, untracked files grouped by directory);
//! `diff`/`show` keep every changed line and hunk header, drop only `index` lines and trim
//! unchanged context beyond 3 lines (1 when aggressive); `log` keeps hash, author date and
//! subject (the author line and bodies fold). `--stat` graphs lose their `+++--` bars.

use super::{Cut, Input, Level, Tool};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Status,
    Diff,
    Log,
}

fn shape(inp: &Input) -> Option<Shape> {
    match inp.tool {
        Tool::GitStatus => return Some(Shape::Status),
        Tool::GitDiff => return Some(Shape::Diff),
        Tool::GitLog => return Some(Shape::Log),
        _ => {}
    }
    let first = (0..inp.len()).map(|i| inp.line(i)).find(|l| !l.trim().is_empty()).unwrap_or("");
    let has = |p: &str| (0..inp.len()).any(|i| inp.line(i).starts_with(p));
    if (first.starts_with("On branch ") || first.starts_with("HEAD detached ") || first.starts_with("Not currently on"))
        && (has("Changes to be committed:")
            || has("Changes not staged for commit:")
            || has("Untracked files:")
            || has("nothing to commit"))
    {
        return Some(Shape::Status);
    }
    if has("diff --git ") && has("@@ -") {
        return Some(Shape::Diff);
    }
    let commits = (0..inp.len())
        .filter(|&i| {
            is_commit_line(inp.line(i)) && (1..4).any(|k| i + k < inp.len() && inp.line(i + k).starts_with("Author: "))
        })
        .count();
    (commits >= 2).then_some(Shape::Log)
}

fn is_commit_line(l: &str) -> bool {
    l.strip_prefix("commit ").is_some_and(|r| {
        let h = r.split(' ').next().unwrap_or("");
        h.len() >= 7 && h.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

pub fn detect(inp: &Input) -> bool {
    super::mentions(inp, &["On branch ", "HEAD detached ", "Not currently on", "diff --git ", "commit "])
        && shape(inp).is_some()
}

pub fn compress(inp: &Input) -> Option<(Vec<Cut>, String)> {
    match shape(inp)? {
        Shape::Status => status(inp),
        Shape::Diff => diff(inp),
        Shape::Log => log(inp),
    }
}

/// ` src/a.rs | 12 +++--` -> ` src/a.rs | 12`; `None` when the line is not a stat line.
fn stat_line(l: &str) -> Option<String> {
    if !l.starts_with(' ') || memchr::memchr(b'|', l.as_bytes()).is_none() {
        return None;
    }
    let (path, rest) = l.split_once(" | ")?;
    let rest = rest.trim();
    let (num, bar) = rest.split_once(' ').unwrap_or((rest, ""));
    let is_bin = rest.starts_with("Bin ");
    if !is_bin && (num.parse::<u32>().is_err() || !bar.bytes().all(|b| b == b'+' || b == b'-')) {
        return None;
    }
    Some(if is_bin { format!(" {} | {rest}", path.trim()) } else { format!(" {} | {num}", path.trim()) })
}

/// Rewrites consecutive stat lines into one cut (or a count when aggressive); `skip` marks lines
/// that belong to hunks.
fn stats(inp: &Input, skip: &[bool], cuts: &mut Vec<Cut>) {
    let mut i = 0;
    while i < inp.len() {
        if inp.protect.any(i) || skip.get(i) == Some(&true) || stat_line(inp.line(i)).is_none() {
            i += 1;
            continue;
        }
        let s = i;
        let mut rows = Vec::new();
        while i < inp.len() && !inp.protect.any(i) && skip.get(i) != Some(&true) {
            match stat_line(inp.line(i)) {
                Some(r) => rows.push(r),
                None => break,
            }
            i += 1;
        }
        let with = if inp.level == Level::Aggressive && rows.len() > 3 {
            format!(" [tokenfold: stat of {} files]", rows.len())
        } else {
            rows.join("\n")
        };
        cuts.push(Cut { lines: s..i, with });
    }
}

fn diff(inp: &Input) -> Option<(Vec<Cut>, String)> {
    let ctx = if inp.level == Level::Aggressive { 1 } else { 3 };
    let mut cuts = Vec::new();
    let mut in_hunk = false;
    // Start of the current run of context lines, and whether a change came before it.
    let mut run: Option<(usize, bool)> = None;
    let mut after_change = false;
    let mut hunk_lines = vec![false; inp.len()];
    let close_run = |cuts: &mut Vec<Cut>, s: usize, e: usize, before: bool, after: bool| {
        let keep_head = if before { ctx } else { 0 };
        let keep_tail = if after { ctx } else { 0 };
        let n = e - s;
        if n > keep_head + keep_tail + 1 {
            let (a, b) = (s + keep_head, e - keep_tail);
            cuts.push(Cut { lines: a..b, with: format!("[tokenfold: {} unchanged lines]", b - a) });
        }
    };
    for (i, in_this_hunk) in hunk_lines.iter_mut().enumerate() {
        let l = inp.line(i);
        *in_this_hunk = in_hunk;
        let is_context = in_hunk && (l.starts_with(' ') || l.is_empty()) && !inp.protect.any(i);
        if is_context {
            if run.is_none() {
                run = Some((i, after_change));
            }
            continue;
        }
        let changed = in_hunk && (l.starts_with('+') || l.starts_with('-') || l.starts_with('\\'));
        if let Some((s, before)) = run.take() {
            // A protected context line or a change ends the run; so does the hunk's end.
            close_run(&mut cuts, s, i, before, changed || inp.protect.any(i));
        }
        if l.starts_with("@@ ") {
            in_hunk = true;
            after_change = false;
        } else if l.starts_with("diff --git ") || l.starts_with("commit ") {
            in_hunk = false;
        } else if !in_hunk && l.starts_with("index ") && !inp.protect.any(i) {
            cuts.push(Cut { lines: i..i + 1, with: String::new() });
        } else if changed || (in_hunk && inp.protect.any(i)) {
            after_change = true;
        } else if in_hunk {
            // Anything else inside a hunk (a stat line of `git show`, a commit header) ends it.
            in_hunk = false;
            *in_this_hunk = false;
        }
    }
    if let Some((s, before)) = run {
        close_run(&mut cuts, s, inp.len(), before, false);
    }
    stats(inp, &hunk_lines, &mut cuts);
    cuts.sort_by_key(|c| c.lines.start);
    Some((cuts, "diff index lines and distant context".to_string()))
}

fn log(inp: &Input) -> Option<(Vec<Cut>, String)> {
    let mut cuts = Vec::new();
    let mut i = 0;
    let n = inp.len();
    while i < n {
        if !is_commit_line(inp.line(i)) {
            i += 1;
            continue;
        }
        // Header: commit, optional Merge:, Author:, Date: (AuthorDate: with --format=fuller), blank.
        let start = i;
        let hash_line = inp.line(i);
        let rest = &hash_line["commit ".len()..];
        let (hash, decor) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut date = None;
        let mut merge = false;
        let mut j = i + 1;
        while j < n {
            let l = inp.line(j);
            if let Some(d) = l.strip_prefix("Date:").or_else(|| l.strip_prefix("AuthorDate:")) {
                date = Some(d.trim());
            } else if l.starts_with("Merge:") {
                merge = true;
            } else if !(l.starts_with("Author:") || l.starts_with("Commit:") || l.starts_with("CommitDate:")) {
                break;
            }
            j += 1;
        }
        if j < n && inp.line(j).is_empty() {
            j += 1;
        }
        let header_ok = (start..j).all(|k| !inp.protect.any(k));
        if let (Some(date), true) = (date, header_ok) {
            let short = &hash[..hash.len().min(12)];
            let mut with = format!("commit {short}");
            if !decor.is_empty() {
                with.push(' ');
                with.push_str(decor);
            }
            with.push_str(" · ");
            with.push_str(date);
            if merge {
                with.push_str(" · merge");
            }
            cuts.push(Cut { lines: start..j, with });
        }
        // Subject: the first message line, kept.
        let mut k = j;
        if k < n && inp.line(k).starts_with("    ") {
            k += 1;
        }
        // Body: message lines until a stat line, the next commit or the end; protected lines stay.
        let body_start = k;
        while k < n && !is_commit_line(inp.line(k)) && stat_line(inp.line(k)).is_none() {
            let l = inp.line(k);
            if !(l.starts_with("    ") || l.is_empty()) {
                break;
            }
            k += 1;
        }
        let mut s = body_start;
        while s < k {
            if inp.protect.any(s) {
                s += 1;
                continue;
            }
            let mut e = s;
            while e < k && !inp.protect.any(e) {
                e += 1;
            }
            let words = (s..e).filter(|&x| !inp.line(x).trim().is_empty()).count();
            let trailing_blank = e == k && inp.line(e - 1).is_empty();
            if words > 0 {
                let end = if trailing_blank { e - 1 } else { e };
                cuts.push(Cut { lines: s..end, with: format!("    [tokenfold: {words} body lines]") });
            }
            s = e;
        }
        i = k.max(i + 1);
    }
    stats(inp, &[], &mut cuts);
    cuts.sort_by_key(|c| c.lines.start);
    Some((cuts, "commit author lines, bodies and stat graphs".to_string()))
}

/// `\tmodified:   a.rs` -> (`M`, `a.rs`).
fn status_entry(l: &str) -> Option<(&'static str, &str)> {
    let t = l.strip_prefix('\t')?;
    for (p, code) in [
        ("modified:", "M"),
        ("new file:", "A"),
        ("deleted:", "D"),
        ("renamed:", "R"),
        ("copied:", "C"),
        ("typechange:", "T"),
        ("both modified:", "UU"),
        ("both added:", "AA"),
        ("deleted by us:", "DU"),
        ("deleted by them:", "UD"),
        ("added by us:", "AU"),
        ("added by them:", "UA"),
    ] {
        if let Some(r) = t.strip_prefix(p) {
            return Some((code, r.trim_start()));
        }
    }
    Some(("", t))
}

fn status(inp: &Input) -> Option<(Vec<Cut>, String)> {
    let mut cuts = Vec::new();
    let mut i = 0;
    let n = inp.len();
    let mut untracked = false;
    while i < n {
        let l = inp.line(i);
        if l.starts_with("Untracked files:") || l.starts_with("Ignored files:") {
            untracked = true;
        } else if l.ends_with(':') && !l.starts_with('\t') && !l.starts_with(' ') {
            untracked = false;
        }
        // Hints: `  (use "git add <file>..." to ...)`.
        if l.starts_with("  (") && l.ends_with(')') && !inp.protect.any(i) {
            let s = i;
            while i < n && inp.line(i).starts_with("  (") && inp.line(i).ends_with(')') && !inp.protect.any(i) {
                i += 1;
            }
            cuts.push(Cut { lines: s..i, with: String::new() });
            continue;
        }
        if status_entry(l).is_none() || inp.protect.any(i) {
            i += 1;
            continue;
        }
        let s = i;
        let mut entries = Vec::new();
        while i < n && !inp.protect.any(i) {
            match status_entry(inp.line(i)) {
                Some(e) => entries.push(e),
                None => break,
            }
            i += 1;
        }
        let with = if untracked { group_untracked(&entries, inp.level) } else { short_entries(&entries) };
        cuts.push(Cut { lines: s..i, with });
    }
    Some((cuts, "status hints and padding".to_string()))
}

fn short_entries(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(c, p)| if c.is_empty() { format!("\t{p}") } else { format!("\t{c} {p}") })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Untracked files, several per directory on one line: `\tnotes/: a.txt b.txt (2)`.
fn group_untracked(entries: &[(&str, &str)], level: Level) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (_, p) in entries {
        let (dir, name) = match p.trim_end_matches('/').rfind('/') {
            Some(k) => (&p[..=k], &p[k + 1..]),
            None => ("", *p),
        };
        match groups.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, v)) => v.push(name),
            None => groups.push((dir, vec![name])),
        }
    }
    let mut out = Vec::new();
    for (dir, names) in groups {
        if names.len() < 4 || dir.is_empty() {
            out.extend(names.iter().map(|nm| format!("\t{dir}{nm}")));
        } else if level == Level::Aggressive && names.len() > 20 {
            out.push(format!("\t{dir} [tokenfold: {} untracked files]", names.len()));
        } else {
            out.push(format!("\t{dir}: {} ({})", names.join(" "), names.len()));
        }
    }
    out.join("\n")
}
