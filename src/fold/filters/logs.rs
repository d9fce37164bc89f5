//! Generic logs: lines that carry a timestamp or level prefix and are identical to another line
//! of the output except for numbers, timestamps and ids repeat a "shape". The first line of each
//! frequent shape stays verbatim; later ones fold into `[tokenfold: 37 more like above, 12:00:01-12:04:55]`.
//! Error-like lines (WARN/ERROR/fatal included) always stay. Lines without a log prefix (stack
//! traces, CSV rows, prose) are never folded, so a table of numbers is not a log.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64;

use super::{Cut, Input, Level};

const LEVELS: &[&str] = &["TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"];

fn digits(b: &[u8], at: usize, n: usize) -> bool {
    b.len() >= at + n && b[at..at + n].iter().all(u8::is_ascii_digit)
}

/// Length of a time `HH:MM:SS` at `at` (with `.fff` / `,fff`), or 0.
fn time_len(b: &[u8], at: usize) -> usize {
    if !(digits(b, at, 2)
        && b.get(at + 2) == Some(&b':')
        && digits(b, at + 3, 2)
        && b.get(at + 5) == Some(&b':')
        && digits(b, at + 6, 2))
    {
        return 0;
    }
    let mut n = 8;
    if matches!(b.get(at + n), Some(b'.' | b',')) {
        let f = b[at + n + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if f > 0 {
            n += 1 + f;
        }
    }
    n
}

/// The leading timestamp or level of a log line: (prefix length, the time text if any).
pub fn log_prefix(l: &str) -> Option<(usize, Option<&str>)> {
    let b = l.as_bytes();
    let open = usize::from(b.first() == Some(&b'['));
    let at = open;
    // 2024-12-01[T ]09:00:00...
    let date = digits(b, at, 4) && b.get(at + 4) == Some(&b'-') && digits(b, at + 5, 2) && b.get(at + 7) == Some(&b'-');
    if date && digits(b, at + 8, 2) && matches!(b.get(at + 10), Some(b'T' | b' ')) {
        let t = time_len(b, at + 11);
        if t > 0 {
            let mut end = at + 11 + t;
            while end < b.len()
                && (b[end] == b'Z' || b[end] == b'+' || b[end] == b'-' || b[end] == b':' || b[end].is_ascii_digit())
            {
                end += 1;
            }
            return Some((end, l.get(at + 11..at + 11 + t)));
        }
    }
    // 09:00:00.123
    let t = time_len(b, at);
    if t > 0 {
        return Some((at + t, l.get(at..at + t)));
    }
    // Dec  1 09:00:00 (syslog)
    if b.len() > 15 && b[..3].iter().all(u8::is_ascii_alphabetic) && b[3] == b' ' {
        let day_at = if b[4] == b' ' { 5 } else { 4 };
        let day = b[day_at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if (1..=2).contains(&day) && b.get(day_at + day) == Some(&b' ') {
            let t = time_len(b, day_at + day + 1);
            if t > 0 {
                let s = day_at + day + 1;
                return Some((s + t, l.get(s..s + t)));
            }
        }
    }
    // I1201 09:00:00.123456 (glog)
    if matches!(b.first(), Some(b'I' | b'W' | b'E' | b'F')) && digits(b, 1, 4) && b.get(5) == Some(&b' ') {
        let t = time_len(b, 6);
        if t > 0 {
            return Some((6 + t, l.get(6..6 + t)));
        }
    }
    // INFO ..., [INFO] ..., level=info
    let word_len = b[open..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
    if let Some(word) = l.get(open..open + word_len).filter(|w| LEVELS.contains(w)) {
        return Some((open + word.len(), None));
    }
    if l.starts_with("level=") || l.starts_with("time=") || l.starts_with("ts=") {
        return Some((0, None));
    }
    None
}

/// The shape of a line: every run of characters holding a digit (numbers, times, hex ids)
/// becomes `#`.
#[cfg(test)]
fn shape(l: &str) -> u64 {
    shape_in(l, &mut Vec::new())
}

/// `shape` with a reusable buffer.
fn shape_in(l: &str, out: &mut Vec<u8>) -> u64 {
    out.clear();
    let b = l.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let tok = &b[s..i];
            if tok.iter().any(u8::is_ascii_digit) {
                out.push(b'#');
            } else {
                out.extend_from_slice(tok);
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    xxh3_64(out)
}

pub fn detect(inp: &Input) -> bool {
    let mut lines = 0;
    let mut prefixed = 0;
    for i in 0..inp.len() {
        let l = inp.line(i);
        if l.trim().is_empty() {
            continue;
        }
        lines += 1;
        if log_prefix(l).is_some() {
            prefixed += 1;
        }
    }
    lines >= 20 && prefixed * 2 >= lines
}

pub fn compress(inp: &Input) -> Option<(Vec<Cut>, String)> {
    let min_count = if inp.level == Level::Aggressive { 3 } else { 4 };
    let n = inp.len();
    let mut shapes: Vec<Option<u64>> = vec![None; n];
    let mut counts: HashMap<u64, usize> = HashMap::new();
    let mut buf = Vec::with_capacity(256);
    for (i, s) in shapes.iter_mut().enumerate() {
        let l = inp.line(i);
        if inp.protect.any(i) || log_prefix(l).is_none() {
            continue;
        }
        let h = shape_in(l, &mut buf);
        *counts.entry(h).or_default() += 1;
        *s = Some(h);
    }
    let mut seen: HashMap<u64, ()> = HashMap::new();
    let foldable: Vec<bool> = shapes
        .iter()
        .map(|s| match s {
            Some(h) if counts.get(h).copied().unwrap_or(0) >= min_count => seen.insert(*h, ()).is_some(),
            _ => false,
        })
        .collect();
    let mut cuts = Vec::new();
    let mut i = 0;
    while i < n {
        if !foldable[i] {
            i += 1;
            continue;
        }
        let s = i;
        let mut kinds: Vec<u64> = Vec::new();
        while i < n && foldable[i] {
            if let Some(h) = shapes[i] {
                if !kinds.contains(&h) {
                    kinds.push(h);
                }
            }
            i += 1;
        }
        if i - s < 2 {
            continue;
        }
        let first = log_prefix(inp.line(s)).and_then(|(_, t)| t);
        let last = log_prefix(inp.line(i - 1)).and_then(|(_, t)| t);
        let span = match (first, last) {
            (Some(a), Some(b)) => format!(", {}-{}", trim_frac(a), trim_frac(b)),
            _ => String::new(),
        };
        let like = if kinds.len() == 1 {
            "more like above".to_string()
        } else {
            format!("more of {} shapes above", kinds.len())
        };
        cuts.push(Cut { lines: s..i, with: format!("[tokenfold: x{} {like}{span}]", i - s) });
    }
    Some((cuts, "repeated log lines".to_string()))
}

fn trim_frac(t: &str) -> &str {
    t.split(['.', ',']).next().unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(log_prefix("2024-12-01 09:00:00 INFO x").map(|p| p.1), Some(Some("09:00:00")));
        assert_eq!(log_prefix("2024-12-01T09:00:00.123Z x").map(|p| p.1), Some(Some("09:00:00.123")));
        assert_eq!(log_prefix("[12:00:01] started").map(|p| p.1), Some(Some("12:00:01")));
        assert_eq!(log_prefix("Dec  1 09:00:00 host sshd[1]: x").map(|p| p.1), Some(Some("09:00:00")));
        assert!(log_prefix("[INFO] Building").is_some());
        assert!(log_prefix("1,2,3").is_none());
        assert!(log_prefix("   the quick brown fox").is_none());
    }

    #[test]
    fn shapes_ignore_numbers_only() {
        assert_eq!(shape("09:00:01 GET /a/12 200 req=0ed90475"), shape("09:04:55 GET /a/9 500 req=ffe0a123"));
        assert_ne!(shape("09:00:01 GET /a/12"), shape("09:00:01 PUT /a/12"));
    }
}
