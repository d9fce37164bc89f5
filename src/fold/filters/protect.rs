//! The lines no filter may drop or rewrite: error-like lines, `file:line` locations, exit codes
//! and summary counts. One pass over the text with a case-insensitive automaton.

use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

/// Words that make a line error-like (case-insensitive, anywhere in the line).
const ERROR_WORDS: &[&str] = &[
    "error",
    "fail",
    "panic",
    "exception",
    "traceback",
    "fatal",
    "warn",
    "abort",
    "denied",
    "assert",
    "critical",
    "err!",
    "exit code",
    "exit status",
    "exited with",
    "returncode",
    "segmentation fault",
    "core dumped",
    "timed out",
    "killed",
    "✗",
    "✕",
    "✘",
];

/// Words that, right after a number, make a line a summary count ("3 failed", "48 packages").
const SUMMARY_WORDS: &[&str] = &[
    "passed",
    "passing",
    "pending",
    "skipped",
    "ignored",
    "test",
    "example",
    "failure",
    "error",
    "warning",
    "package",
    "file",
    "insertion",
    "deletion",
    "match",
    "suite",
    "total",
    "vulnerabilit",
    "issue",
    "problem",
];

fn errors() -> Option<&'static AhoCorasick> {
    static AC: OnceLock<Option<AhoCorasick>> = OnceLock::new();
    AC.get_or_init(|| AhoCorasick::builder().ascii_case_insensitive(true).build(ERROR_WORDS).ok()).as_ref()
}

/// Whether one line is error-like (the replay's retention check uses the same rule).
pub fn is_error_line(line: &str) -> bool {
    match errors() {
        Some(ac) => ac.find_iter(line).any(|m| starts_word(line.as_bytes(), m.start())),
        None => true,
    }
}

/// A word starts at `at`: after a non-alphanumeric byte, or at a camel-case hump (`TypeError`),
/// so that `verror` or `mirrored` are not errors.
fn starts_word(b: &[u8], at: usize) -> bool {
    match at.checked_sub(1).and_then(|p| b.get(p)) {
        None => true,
        Some(prev) => !prev.is_ascii_alphanumeric() || (prev.is_ascii_lowercase() && b[at].is_ascii_uppercase()),
    }
}

/// Per-line flags for one output.
pub struct Protect {
    flags: Vec<u8>,
}

const ERROR: u8 = 1;
const LOCATION: u8 = 2;
const SUMMARY: u8 = 4;

impl Protect {
    pub fn scan(text: &str, lines: &[&str]) -> Protect {
        let mut flags = vec![0u8; lines.len()];
        let mut starts = Vec::with_capacity(lines.len());
        let mut at = 0;
        for l in lines {
            starts.push(at);
            at += l.len() + 1;
        }
        match errors() {
            Some(ac) => {
                for m in ac.find_iter(text) {
                    if starts_word(text.as_bytes(), m.start()) {
                        let i = starts.partition_point(|&s| s <= m.start()).saturating_sub(1);
                        flags[i] |= ERROR;
                    }
                }
            }
            // Without the automaton nothing can be told apart: protect everything (fail safe).
            None => flags.iter_mut().for_each(|f| *f |= ERROR),
        }
        for (i, l) in lines.iter().enumerate() {
            if has_location(l) {
                flags[i] |= LOCATION;
            }
            if has_summary(l) {
                flags[i] |= SUMMARY;
            }
        }
        Protect { flags }
    }

    pub fn any(&self, i: usize) -> bool {
        self.flags.get(i).is_some_and(|&f| f != 0)
    }

    pub fn error(&self, i: usize) -> bool {
        self.flags.get(i).is_some_and(|&f| f & ERROR != 0)
    }

    pub fn location(&self, i: usize) -> bool {
        self.flags.get(i).is_some_and(|&f| f & LOCATION != 0)
    }

    pub fn summary(&self, i: usize) -> bool {
        self.flags.get(i).is_some_and(|&f| f & SUMMARY != 0)
    }

    /// Protected for a reason other than being a location.
    pub fn beyond_location(&self, i: usize) -> bool {
        self.flags.get(i).is_some_and(|&f| f & !LOCATION != 0)
    }
}

fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'\\' | b'~' | b'@' | b'+')
}

/// `path.ext:12`, `path/x:12:5`, `File "x.py", line 12`, `at x.js:3:9`.
pub fn has_location(line: &str) -> bool {
    let b = line.as_bytes();
    if line.contains("File \"") && line.contains("\", line ") {
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
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_digit() || b[j] == b',') {
            j += 1;
        }
        if b.get(j) == Some(&b' ') {
            let rest = &line[j + 1..];
            let word: String = rest.chars().take(14).collect::<String>().to_ascii_lowercase();
            if SUMMARY_WORDS.iter().any(|w| word.starts_with(w)) {
                return true;
            }
        }
        i = j.max(i + 1);
    }
    false
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
