//! The lines no filter may drop or rewrite: error-like lines, `file:line` locations, exit codes
//! and summary counts, decided per line on first use: words count case-insensitively at the start of
//! a word (or at a camel-case hump: `TypeError`), so `verror` or `mirrored` do not.

use std::cell::Cell;

/// Words that make a line error-like (lowercase), by first letter.
fn error_words(first: u8) -> &'static [&'static [u8]] {
    match first {
        b'a' => &[b"abort", b"assert"],
        b'c' => &[b"critical", b"core dumped"],
        b'd' => &[b"denied"],
        b'e' => &[b"error", b"exception", b"err!", b"exit code", b"exit status", b"exited with"],
        b'f' => &[b"fail", b"fatal"],
        b'k' => &[b"killed"],
        b'p' => &[b"panic"],
        b'r' => &[b"returncode"],
        b's' => &[b"segmentation fault"],
        b't' => &[b"traceback", b"timed out"],
        b'w' => &[b"warn"],
        _ => &[],
    }
}

/// Words that, right after a number, make a line a summary count ("3 failed", "48 packages").
fn summary_words(first: u8) -> &'static [&'static [u8]] {
    match first {
        b'd' => &[b"deletion"],
        b'e' => &[b"example", b"error"],
        b'f' => &[b"failure", b"file", b"failed"],
        b'i' => &[b"ignored", b"insertion", b"issue"],
        b'm' => &[b"match"],
        b'p' => &[b"passed", b"passing", b"pending", b"package", b"problem"],
        b's' => &[b"skipped", b"suite"],
        b't' => &[b"test", b"total"],
        b'v' => &[b"vulnerabilit"],
        b'w' => &[b"warning"],
        _ => &[],
    }
}

/// Glyphs test runners print for a failure (matched anywhere; all start with 0xE2).
const FAIL_GLYPHS: &[&[u8]] = &["✗".as_bytes(), "✕".as_bytes(), "✘".as_bytes()];

/// Two-letter prefixes of the words above: bit `second` of `[first]` (letters as 0..26), so the
/// scan compares whole words only where one can start.
const fn prefixes(words: &[&[u8]]) -> [u32; 26] {
    let mut t = [0u32; 26];
    let mut k = 0;
    while k < words.len() {
        let w = words[k];
        t[(w[0] - b'a') as usize] |= 1 << (w[1] - b'a');
        k += 1;
    }
    t
}

const ERROR_PREFIXES: [u32; 26] = prefixes(&[
    b"abort",
    b"assert",
    b"critical",
    b"core",
    b"denied",
    b"error",
    b"exception",
    b"exit",
    b"fail",
    b"fatal",
    b"killed",
    b"panic",
    b"returncode",
    b"segmentation",
    b"traceback",
    b"timed",
    b"warn",
]);
const SUMMARY_PREFIXES: [u32; 26] = prefixes(&[
    b"deletion",
    b"example",
    b"error",
    b"failure",
    b"file",
    b"ignored",
    b"insertion",
    b"issue",
    b"match",
    b"passed",
    b"pending",
    b"skipped",
    b"suite",
    b"test",
    b"total",
    b"vulnerabilit",
    b"warning",
]);

#[inline]
fn word_at(b: &[u8], at: usize, prefixes: &[u32; 26], words: fn(u8) -> &'static [&'static [u8]]) -> bool {
    let (Some(&c1), Some(&c2)) = (b.get(at), b.get(at + 1)) else { return false };
    let (c1, c2) = (c1 | 0x20, c2 | 0x20);
    if !c1.is_ascii_lowercase() || !c2.is_ascii_lowercase() || prefixes[(c1 - b'a') as usize] >> (c2 - b'a') & 1 == 0 {
        return false;
    }
    words(c1)
        .iter()
        .any(|w| w[1] == c2 && b.len() >= at + w.len() && b[at + 2..at + w.len()].eq_ignore_ascii_case(&w[2..]))
}

/// Byte classes for the scan: what may start a word, continue one, or start a glyph.
const OTHER: u8 = 0;
const LOWER: u8 = 1;
const UPPER: u8 = 2;
const DIGIT: u8 = 3;
const GLYPH: u8 = 4;

const CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_lowercase() {
            LOWER
        } else if c.is_ascii_uppercase() {
            UPPER
        } else if c.is_ascii_digit() {
            DIGIT
        } else if c == 0xE2 {
            GLYPH
        } else {
            OTHER
        };
        i += 1;
    }
    t
};

/// Calls `hit(offset, is_summary)` for every error word (at a word start or camel-case hump),
/// failure glyph and summary count (a number starting a word, a space, a summary word).
fn scan_bytes(b: &[u8], mut hit: impl FnMut(usize, bool)) {
    let n = b.len();
    let mut i = 0;
    while i < n {
        match CLASS[b[i] as usize] {
            LOWER | UPPER => {
                // A word start; then its humps (`TypeError`).
                if word_at(b, i, &ERROR_PREFIXES, error_words) {
                    hit(i, false);
                }
                let mut prev = CLASS[b[i] as usize];
                i += 1;
                while i < n {
                    let c = CLASS[b[i] as usize];
                    if c == OTHER || c == GLYPH {
                        break;
                    }
                    if c == UPPER && prev == LOWER && word_at(b, i, &ERROR_PREFIXES, error_words) {
                        hit(i, false);
                    }
                    prev = c;
                    i += 1;
                }
            }
            DIGIT => {
                // `48 packages`, `1,204 tests`: a number starting a word, a space, a summary word.
                let after_dot = i > 0 && b[i - 1] == b'.';
                let mut j = i;
                while j < n && (b[j].is_ascii_digit() || b[j] == b',') {
                    j += 1;
                }
                if !after_dot && j + 1 < n && b[j] == b' ' && word_at(b, j + 1, &SUMMARY_PREFIXES, summary_words) {
                    hit(i, true);
                }
                // The rest of a token like `3rd` or `2a9f` is not a word start.
                while j < n && matches!(CLASS[b[j] as usize], LOWER | UPPER | DIGIT) {
                    j += 1;
                }
                i = j;
            }
            GLYPH => {
                if FAIL_GLYPHS.iter().any(|g| b[i..].starts_with(g)) {
                    hit(i, false);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
}

/// Whether one line is error-like (the replay's retention check uses the same rule).
pub fn is_error_line(line: &str) -> bool {
    let mut found = false;
    scan_bytes(line.as_bytes(), |_, summary| found |= !summary);
    found
}

/// Per-line flags for one output, computed the first time a line is asked about (filters only
/// ask about the lines they would cut).
pub struct Protect<'a> {
    lines: Vec<&'a str>,
    flags: Vec<Cell<u8>>,
}

const ERROR: u8 = 1;
const LOCATION: u8 = 2;
const SUMMARY: u8 = 4;
const UNKNOWN: u8 = 0x80;

impl<'a> Protect<'a> {
    pub fn scan(lines: &[&'a str]) -> Protect<'a> {
        Protect { lines: lines.to_vec(), flags: vec![Cell::new(UNKNOWN); lines.len()] }
    }

    fn flags(&self, i: usize) -> u8 {
        let Some(cell) = self.flags.get(i) else { return 0 };
        let f = cell.get();
        if f != UNKNOWN {
            return f;
        }
        let l = self.lines[i];
        let mut f = 0;
        scan_bytes(l.as_bytes(), |_, summary| f |= if summary { SUMMARY } else { ERROR });
        if has_location(l) {
            f |= LOCATION;
        }
        cell.set(f);
        f
    }

    pub fn any(&self, i: usize) -> bool {
        self.flags(i) != 0
    }

    pub fn error(&self, i: usize) -> bool {
        self.flags(i) & ERROR != 0
    }

    pub fn location(&self, i: usize) -> bool {
        self.flags(i) & LOCATION != 0
    }

    pub fn summary(&self, i: usize) -> bool {
        self.flags(i) & SUMMARY != 0
    }

    /// Protected for a reason other than being a location.
    pub fn beyond_location(&self, i: usize) -> bool {
        self.flags(i) & !LOCATION != 0
    }
}

fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'\\' | b'~' | b'@' | b'+')
}

/// `path.ext:12`, `path/x:12:5`, `File "x.py", line 12`, `at x.js:3:9`.
pub fn has_location(line: &str) -> bool {
    let b = line.as_bytes();
    if memchr::memchr(b'"', b).is_some() && line.contains("File \"") && line.contains("\", line ") {
        return true;
    }
    let mut from = 0;
    while let Some(k) = memchr::memchr(b':', &b[from..]) {
        let c = from + k;
        from = c + 1;
        if !b.get(c + 1).is_some_and(u8::is_ascii_digit) {
            continue;
        }
        let mut s = c;
        while s > 0 && is_path_byte(b[s - 1]) {
            s -= 1;
        }
        let token = &b[s..c];
        if token.starts_with(b"//") {
            continue; // a URL's host and port
        }
        // A path has a separator or an extension and is not a bare number (times, ratios).
        let has_ext = token.iter().rposition(|&x| x == b'.').is_some_and(|d| {
            let ext = &token[d + 1..];
            !ext.is_empty() && ext.len() <= 6 && ext.iter().all(u8::is_ascii_alphanumeric) && d > 0
        });
        let has_sep = token.contains(&b'/') || token.contains(&b'\\');
        let numeric = token.iter().all(|x| x.is_ascii_digit() || *x == b'.');
        if (has_ext || has_sep) && !numeric && token.iter().any(u8::is_ascii_alphabetic) {
            return true;
        }
    }
    false
}

/// A number followed by a summary word: `5 tests, 5 failures`, `added 48 packages`.
pub fn has_summary(line: &str) -> bool {
    let mut found = false;
    scan_bytes(line.as_bytes(), |_, summary| found |= summary);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines() {
        assert!(is_error_line("thread 'main' panicked at src/lib.rs:4:5"));
        assert!(is_error_line("npm ERR! code E404"));
        assert!(is_error_line("WARNING: Running pip as root"));
        assert!(is_error_line("Exit code 2"));
        assert!(!is_error_line("test tests::port_80 ... ok"));
        assert!(is_error_line("E   TypeError: unsupported operand"));
        assert!(is_error_line("test_fail_on_timeout PASSED"));
        assert!(!is_error_line("npm http fetch GET 200 https://registry.npmjs.org/verror 34ms"));
    }

    #[test]
    fn locations() {
        assert!(has_location("  --> src/lib.rs:46:31"));
        assert!(has_location("       test/spotter_web/live/x_test.exs:58"));
        assert!(has_location("  File \"/r/x.py\", line 17, in <module>"));
        assert!(has_location("    at Object.<anonymous> (src/a.test.js:12:5)"));
        assert!(!has_location("2024-12-01 09:00:00 INFO started"));
        assert!(!has_location("ratio 3.5:1 and time 12:30"));
        assert!(!has_location("see https://example.com:8080/x"));
    }

    #[test]
    fn summaries() {
        assert!(has_summary("test result: FAILED. 30 passed; 3 failed"));
        assert!(has_summary("5 tests, 5 failures"));
        assert!(has_summary("added 48 packages in 19s"));
        assert!(!has_summary("GET /api/items/50 200 12 ms"));
        assert!(!has_summary("v1.2 test"));
    }
}
