//! Listings: `find`/`fd`/`tree` paths grouped by directory (`src/fold/: a.rs b.rs`), `ls -l`
//! without the permission, owner and date columns (kept when the listing sorts by time, or
//! owners differ), search results via `search.rs`. Every name stays.

use super::search;
use super::{Cut, Input, Tool};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Search,
    Paths,
    Tree,
    Long,
}

fn shape(inp: &Input) -> Option<Shape> {
    match inp.tool {
        Tool::Search => return Some(Shape::Search),
        Tool::Find => return Some(Shape::Paths),
        Tool::Tree => return Some(Shape::Tree),
        Tool::Ls { long: true, .. } => return Some(Shape::Long),
        Tool::Ls { .. } => return None,
        _ => {}
    }
    if search::detect(inp) {
        return Some(Shape::Search);
    }
    let entries: Vec<usize> = (0..inp.len()).filter(|&i| !inp.line(i).trim().is_empty()).collect();
    let share = |f: &dyn Fn(&str) -> bool| {
        let k = entries.iter().filter(|&&i| f(inp.line(i))).count();
        k >= 8 && k * 10 >= entries.len() * 9
    };
    if share(&|l| ls_entry(l).is_some() || l.starts_with("total ") || (l.ends_with(':') && !l.contains(' '))) {
        return Some(Shape::Long);
    }
    if share(&|l| tree_entry(l).is_some() || is_tree_footer(l))
        && (0..inp.len()).any(|i| tree_entry(inp.line(i)).is_some_and(|(d, _)| d > 0))
    {
        return Some(Shape::Tree);
    }
    let pathish = |l: &str| search::is_path(l) && l.contains('/') && !l.ends_with(':');
    if share(&pathish) && entries.len() >= 12 {
        return Some(Shape::Paths);
    }
    None
}

pub fn detect(inp: &Input) -> bool {
    shape(inp).is_some()
}

pub fn compress(inp: &Input) -> Option<(Vec<Cut>, String)> {
    match shape(inp)? {
        Shape::Search => search::compress(inp),
        Shape::Paths => {
            let paths: Vec<Option<String>> = (0..inp.len())
                .map(|i| {
                    let l = inp.line(i);
                    (search::is_path(l) && l.contains('/')).then(|| l.to_string())
                })
                .collect();
            Some((group_paths(inp, &paths), "paths grouped by directory".to_string()))
        }
        Shape::Tree => Some((group_paths(inp, &tree_paths(inp)), "tree grouped by directory".to_string())),
        Shape::Long => long_listing(inp),
    }
}

/// Whether the output is a file shown with line numbers (a view): never compressed lossily.
pub fn looks_like_file_view(text: &str) -> bool {
    // An editor window names its file in its first line (SWE-agent `[File: path (N lines total)]`).
    let head = &text[..text.floor_char_boundary(text.len().min(512))];
    if crate::fold::shapes::viewed_file(head).is_some() || text.starts_with("Here's the result of running `cat -n`") {
        return true;
    }
    // Over the whole text, stopping as soon as the answer is known: at least 60% of the
    // non-empty lines carry a number prefix.
    let total = memchr::memchr_iter(b'\n', text.as_bytes()).count() + 1;
    let (mut lines, mut numbered, mut other) = (0usize, 0usize, 0usize);
    let b = text.as_bytes();
    let mut from = 0;
    for end in memchr::memchr_iter(b'\n', b).chain(std::iter::once(b.len())) {
        let l = &text[from..end];
        from = end + 1;
        let t = l.trim_start_matches(' ');
        if t.is_empty() || t == "\r" {
            continue;
        }
        lines += 1;
        if t.as_bytes()[0].is_ascii_digit() && crate::fold::shapes::number_prefix(l).is_some() {
            numbered += 1;
        } else {
            other += 1;
            if other * 10 > total * 4 {
                return false;
            }
        }
    }
    lines >= 3 && numbered * 10 >= lines * 6
}

/// Consecutive paths in the same directory become one line: `dir/: a b c`. Lines whose path is
/// `None` (headers, footers), protected lines and names with spaces stay as they are.
fn group_paths(inp: &Input, paths: &[Option<String>]) -> Vec<Cut> {
    let mut cuts = Vec::new();
    let mut i = 0;
    let split = |p: &str| -> (String, String) {
        let t = p.trim_end_matches('/');
        match t.rfind('/') {
            Some(k) => (t[..=k].to_string(), p[k + 1..].to_string()),
            None => (String::new(), p.to_string()),
        }
    };
    while i < inp.len() {
        let ok = |j: usize| !inp.protect.any(j) && paths[j].as_ref().is_some_and(|p| !p.contains(' '));
        if !ok(i) {
            i += 1;
            continue;
        }
        let s = i;
        while i < inp.len() && ok(i) {
            i += 1;
        }
        if i - s < 3 {
            continue;
        }
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        for p in paths[s..i].iter().flatten() {
            let (dir, name) = split(p);
            match rows.last_mut() {
                Some((d, names)) if *d == dir => names.push(name),
                _ => rows.push((dir, vec![name])),
            }
        }
        let mut with: Vec<String> = Vec::with_capacity(rows.len());
        for (k, (d, names)) in rows.iter().enumerate() {
            if names.len() == 1 {
                let full = format!("{d}{}", names[0]);
                // A directory entry right before the row of its contents says nothing more.
                if full.ends_with('/') && rows.get(k + 1).is_some_and(|(nd, _)| *nd == full) {
                    continue;
                }
                with.push(full);
            } else {
                with.push(format!("{d}: {}", names.join(" ")));
            }
        }
        cuts.push(Cut { lines: s..i, with: with.join("\n") });
    }
    cuts
}

/// `│   ├── name` -> (depth, name).
fn tree_entry(l: &str) -> Option<(usize, &str)> {
    let mut rest = l;
    let mut depth = 0;
    loop {
        if let Some(r) = rest.strip_prefix("├── ").or_else(|| rest.strip_prefix("└── ")) {
            return (!r.is_empty()).then_some((depth + 1, r));
        }
        if let Some(r) = rest
            .strip_prefix("│   ")
            .or_else(|| rest.strip_prefix("    "))
            .or_else(|| rest.strip_prefix("│\u{a0}\u{a0} "))
        {
            rest = r;
            depth += 1;
            continue;
        }
        return None;
    }
}

fn is_tree_footer(l: &str) -> bool {
    l.contains(" director") && (l.contains(" file") || l.ends_with("directories") || l.ends_with("directory"))
}

/// Full paths of tree entries (the root line gives the prefix); `None` for other lines.
fn tree_paths(inp: &Input) -> Vec<Option<String>> {
    let mut stack: Vec<String> = Vec::new();
    let mut root: Option<String> = None;
    let mut out: Vec<Option<String>> = vec![None; inp.len()];
    for (i, slot) in out.iter_mut().enumerate() {
        let l = inp.line(i);
        match tree_entry(l) {
            Some((depth, name)) => {
                stack.truncate(depth - 1);
                let name = name.split(" -> ").next().unwrap_or(name);
                stack.push(name.to_string());
                let base = root.as_deref().map(|r| format!("{}/", r.trim_end_matches('/'))).unwrap_or_default();
                // A directory is an entry whose next line is deeper.
                let is_dir = inp.lines.get(i + 1).and_then(|n| tree_entry(n)).is_some_and(|(d, _)| d > depth);
                *slot = Some(format!("{base}{}{}", stack.join("/"), if is_dir { "/" } else { "" }));
            }
            None if !l.trim().is_empty() && root.is_none() && !is_tree_footer(l) => root = Some(l.trim().to_string()),
            None => {}
        }
    }
    out
}

/// One `ls -l` entry: (start of the name, size field, owner:group, date text).
struct LsEntry<'a> {
    kind: u8,
    exec: bool,
    size: &'a str,
    owner: String,
    date: String,
    name: &'a str,
}

fn ls_entry(l: &str) -> Option<LsEntry<'_>> {
    let b = l.as_bytes();
    let kind = *b.first()?;
    if !matches!(kind, b'-' | b'd' | b'l' | b'c' | b'b' | b'p' | b's') || b.len() < 11 {
        return None;
    }
    if !b[1..10].iter().all(|c| matches!(c, b'r' | b'w' | b'x' | b'-' | b's' | b'S' | b't' | b'T')) {
        return None;
    }
    // Fields separated by runs of spaces; remember where each starts.
    let mut fields: Vec<(usize, &str)> = Vec::new();
    let mut i = 0;
    while i < l.len() && fields.len() < 9 {
        while i < l.len() && b[i] == b' ' {
            i += 1;
        }
        let s = i;
        while i < l.len() && b[i] != b' ' {
            i += 1;
        }
        if s < i {
            fields.push((s, &l[s..i]));
        }
    }
    // perms links owner group size month day time|year name...; long-iso: ... size date time name.
    let (size_ix, date_len) =
        if fields.get(5).is_some_and(|(_, f)| f.len() == 10 && f.as_bytes()[4] == b'-') { (4, 2) } else { (4, 3) };
    let size = fields.get(size_ix)?.1;
    if !size.bytes().all(|c| c.is_ascii_digit() || c == b',' || c == b'.') && !size.ends_with(['K', 'M', 'G']) {
        return None;
    }
    fields.get(1)?.1.parse::<u32>().ok()?;
    let date_start = fields.get(size_ix + 1)?.0;
    let name_field = fields.get(size_ix + 1 + date_len)?;
    let date_end = fields.get(size_ix + date_len)?;
    let date = l[date_start..date_end.0 + date_end.1.len()].to_string();
    let owner = format!("{}:{}", fields.get(2)?.1, fields.get(3)?.1);
    Some(LsEntry {
        kind,
        exec: b[3] == b'x' || b[6] == b'x' || b[9] == b'x',
        size,
        owner,
        date,
        name: &l[name_field.0..],
    })
}

fn long_listing(inp: &Input) -> Option<(Vec<Cut>, String)> {
    let entries: Vec<Option<LsEntry>> = (0..inp.len()).map(|i| ls_entry(inp.line(i))).collect();
    let count = entries.iter().flatten().count();
    // A listing of a few entries is usually a question about them (permissions, owner): keep it.
    if count < 6 {
        return None;
    }
    let owners_differ = {
        let mut o = entries.iter().flatten().map(|e| e.owner.as_str());
        let first = o.next().unwrap_or("");
        o.any(|x| x != first)
    };
    let times = matches!(inp.tool, Tool::Ls { times: true, .. });
    let mut cuts = Vec::new();
    let mut i = 0;
    while i < inp.len() {
        if entries[i].is_none() || inp.protect.any(i) {
            i += 1;
            continue;
        }
        let s = i;
        let mut rows = Vec::new();
        while i < inp.len() && !inp.protect.any(i) {
            let Some(e) = &entries[i] else { break };
            i += 1;
            if e.kind == b'd' && (e.name == "." || e.name == "..") {
                continue;
            }
            let mut row = e.name.to_string();
            match e.kind {
                b'd' => row.push('/'),
                b'-' if e.exec => row.push('*'),
                b'-' => {}
                other => row.insert_str(0, &format!("{} ", other as char)),
            }
            if e.kind != b'd' {
                row.push(' ');
                row.push_str(e.size);
            }
            if times {
                row.push_str("  ");
                row.push_str(&e.date);
            }
            if owners_differ {
                row.push_str("  ");
                row.push_str(&e.owner);
            }
            rows.push(row);
        }
        cuts.push(Cut { lines: s..i, with: rows.join("\n") });
    }
    let what = if times { "ls -l permission and owner columns" } else { "ls -l permission, owner and date columns" };
    Some((cuts, what.to_string()))
}
