//! Search output (`rg`, `grep -rn`, `git grep`): every match line stays, grouped by file so the
//! path is written once: `src/a.rs:` then `12:text` lines. Error-like and summary match lines
//! stay verbatim (with their path) in place.

use super::{Cut, Input, Level};

/// Splits `path:12:text` / `path-12-text` (context) / `path:text` into (path, rest after path).
/// `known` is the current group's path, which resolves context lines and number-less matches.
fn split_line<'a>(l: &'a str, known: Option<&str>) -> Option<(&'a str, &'a str)> {
    if let Some(p) = known {
        if let Some(rest) = l.strip_prefix(p) {
            let mut c = rest.chars();
            let sep = c.next();
            let digits = c.as_str().bytes().take_while(u8::is_ascii_digit).count();
            if matches!(sep, Some(':' | '-')) && digits > 0 && rest[1 + digits..].starts_with(sep.unwrap_or(':')) {
                return Some((&l[..p.len()], rest));
            }
        }
    }
    let b = l.as_bytes();
    let mut from = 0;
    while let Some(k) = memchr::memchr(b':', &b[from..]) {
        let c = from + k;
        let digits = b[c + 1..].iter().take_while(|x| x.is_ascii_digit()).count();
        if digits > 0 && b.get(c + 1 + digits) == Some(&b':') {
            let path = &l[..c];
            return is_path(path).then(|| (path, &l[c..]));
        }
        from = c + 1;
        if from >= b.len() {
            break;
        }
    }
    None
}

/// A relative or absolute file path: no spaces or tabs, a separator or an extension, not a time.
pub fn is_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() < 400
        && !p.contains(' ')
        && !p.contains('\t')
        && (p.contains('/') || p.contains('.'))
        && p.bytes().any(|b| b.is_ascii_alphabetic())
        && !p.starts_with(|c: char| c.is_ascii_digit() && !p.contains('/'))
        && !p.contains("://")
}

/// Whether most lines are `path:N:` matches over more than one line per file on average.
pub fn detect(inp: &Input) -> bool {
    let mut matched = 0;
    let mut other = 0;
    let mut files: Vec<&str> = Vec::new();
    for i in 0..inp.len() {
        let l = inp.line(i);
        if l.is_empty() || l == "--" {
            continue;
        }
        match split_line(l, None) {
            Some((p, _)) => {
                matched += 1;
                if files.last() != Some(&p) {
                    files.push(p);
                }
            }
            None => other += 1,
        }
    }
    matched >= 8 && other * 10 <= matched && files.len() * 2 <= matched
}

pub fn compress(inp: &Input) -> Option<(Vec<Cut>, String)> {
    let mut cuts = Vec::new();
    let mut i = 0;
    let n = inp.len();
    let clip = inp.level == Level::Aggressive;
    while i < n {
        let Some((path, _)) = split_line(inp.line(i), None) else {
            i += 1;
            continue;
        };
        if inp.protect.beyond_location(i) {
            i += 1;
            continue;
        }
        // A run of this file's lines (matches, context, `--`), none error-like.
        let s = i;
        let mut with = String::with_capacity(inp.bytes_of(&(s..(s + 64).min(n))));
        with.push_str(path);
        with.push(':');
        // Length of `with` before the last row, to drop a trailing `--` (it belongs to the next group).
        let mut before_last = with.len();
        let mut last_sep = false;
        while i < n && !inp.protect.beyond_location(i) {
            let l = inp.line(i);
            let rest = if l == "--" {
                "--"
            } else {
                match split_line(l, Some(path)) {
                    Some((p, rest)) if p == path => &rest[1..],
                    _ => break,
                }
            };
            before_last = with.len();
            last_sep = l == "--";
            with.push('\n');
            if clip && !last_sep {
                with.push_str(&clip_line(rest));
            } else {
                with.push_str(rest);
            }
            i += 1;
        }
        let mut e = i;
        if last_sep && e > s + 1 {
            with.truncate(before_last);
            e -= 1;
            i = e;
        }
        if e - s >= 2 {
            cuts.push(Cut { lines: s..e, with });
        }
        i = i.max(s + 1);
    }
    Some((cuts, "search results grouped by file".to_string()))
}

/// Aggressive only: very long match lines (minified code, lock files) keep their first 240 chars.
fn clip_line(rest: &str) -> String {
    if rest.len() <= 300 {
        return rest.to_string();
    }
    let mut end = 240;
    while !rest.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [tokenfold: +{} chars]", &rest[..end], rest.len() - end)
}
