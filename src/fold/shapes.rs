//! Recognisers for the text shapes agents produce: tool output sent as user messages, line-number
//! prefixes of file views, `<system-reminder>` segments.

use memchr::memmem;

/// Whether a user message (raw JSON string bytes) is tool output an agent wrapped as a user turn.
/// Conservative: anything not matching a known agent template is text a person typed.
pub fn user_tool_output(raw: &[u8], seen_assistant: bool) -> bool {
    let has = |needle: &[u8]| memmem::find(raw, needle).is_some();
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or(raw);
    // Aider's file and repo-map messages are generated, not typed, wherever they appear.
    for p in [
        &b"I have *added these files to the chat*"[..],
        b"Here are summaries of some files present in my git repo.",
        b"I added these files to the chat",
    ] {
        if inner.starts_with(p) {
            return true;
        }
    }
    if !seen_assistant {
        return false;
    }
    // SWE-agent observations end with the state line and prompt.
    if has(b"(Open file:") && has(b"(Current directory:") {
        return true;
    }
    if inner.ends_with(b"bash-$") {
        return true;
    }
    // mini-swe-agent observations.
    if inner.starts_with(b"<returncode>") || (has(b"<returncode>") && has(b"</output>")) {
        return true;
    }
    // OpenHands observations in non-function-calling mode, Aider command output.
    for p in [
        &b"OBSERVATION:"[..],
        b"EXECUTION RESULT of [",
        b"I ran this command:",
        b"Here's the result of running `cat -n`",
    ] {
        if inner.starts_with(p) {
            return true;
        }
    }
    has(b"[Command finished with exit code") || has(b"[The command completed with exit code")
}

/// Numbering style of a line-number prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Claude Code Read: `    12→text`.
    Arrow,
    /// `cat -n`: `    12\ttext`.
    Tab,
    /// SWE-agent views and `grep -n` on one file: `12:text`.
    Colon,
}

/// Splits a line-number prefix off `line`: (style, number, prefix length in bytes).
pub fn number_prefix(line: &str) -> Option<(Style, u32, usize)> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    let ds = i;
    while i < b.len() && b[i].is_ascii_digit() && i - ds < 9 {
        i += 1;
    }
    if i == ds {
        return None;
    }
    let n: u32 = line.get(ds..i)?.parse().ok()?;
    let rest = b.get(i..)?;
    if rest.starts_with("→".as_bytes()) {
        return Some((Style::Arrow, n, i + "→".len()));
    }
    match rest.first() {
        Some(b'\t') => Some((Style::Tab, n, i + 1)),
        // `12:` without leading padding only: padded colon lines are usually timestamps or tables.
        Some(b':') if ds == 0 => Some((Style::Colon, n, i + 1)),
        _ => None,
    }
}

/// Byte ranges of complete `<system-reminder>...</system-reminder>` segments.
pub fn reminders(text: &str) -> Vec<std::ops::Range<usize>> {
    const OPEN: &[u8] = b"<system-reminder>";
    const CLOSE: &[u8] = b"</system-reminder>";
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(s) = memmem::find(&b[from..], OPEN) {
        let s = from + s;
        let Some(e) = memmem::find(&b[s..], CLOSE) else {
            break;
        };
        let e = s + e + CLOSE.len();
        out.push(s..e);
        from = e;
    }
    out
}

/// A short human subject for a tool call from its arguments: the file path or the command.
pub fn call_subject(v: &serde_json::Value) -> Option<String> {
    let o = v.as_object()?;
    for k in ["file_path", "path", "filename", "notebook_path", "command", "cmd", "pattern", "url", "query"] {
        let s = match o.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" "),
            _ => continue,
        };
        let s = if k.ends_with("path") || k == "filename" { short_path(&s) } else { s };
        return Some(clip(&s, 48));
    }
    None
}

/// The file content a call writes (Write `content`, Edit `new_string`, ...): later reads of the
/// file may point at it.
pub fn call_content(v: &serde_json::Value) -> Option<(&'static str, &str)> {
    let o = v.as_object()?;
    for k in ["content", "file_text", "new_string", "new_str", "code", "text"] {
        if let Some(serde_json::Value::String(s)) = o.get(k) {
            return Some((k, s.as_str()));
        }
    }
    None
}

/// The last two path components: enough to recognise a file, cheaper than the full path.
pub fn short_path(p: &str) -> String {
    let parts: Vec<&str> = p.rsplit('/').take(2).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

pub fn clip(s: &str, max: usize) -> String {
    let one_line = s.lines().next().unwrap_or("");
    if one_line.len() <= max && one_line.len() == s.len() {
        return one_line.to_string();
    }
    let mut end = max.min(one_line.len());
    while !one_line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &one_line[..end])
}

/// The file a SWE-agent style view shows: `[File: /path (N lines total)]`.
pub fn viewed_file(text: &str) -> Option<String> {
    let s = text.find("[File: ")? + 7;
    let rest = &text[s..];
    let e = rest.find(" (")?;
    Some(short_path(&rest[..e]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(number_prefix("    12→fn a()"), Some((Style::Arrow, 12, 9)));
        assert_eq!(number_prefix("     3\tx"), Some((Style::Tab, 3, 7)));
        assert_eq!(number_prefix("40:    def f():"), Some((Style::Colon, 40, 3)));
        assert_eq!(number_prefix("  12:30 meeting"), None);
        assert_eq!(number_prefix("plain"), None);
    }

    #[test]
    fn user_shapes() {
        assert!(user_tool_output(b"\"ls\\n(Open file: n/a)\\n(Current directory: /r)\\nbash-$\"", true));
        assert!(!user_tool_output(b"\"ls\\n(Open file: n/a)\\n(Current directory: /r)\\nbash-$\"", false));
        assert!(user_tool_output(b"\"<returncode>0</returncode>\\n<output>\\nx</output>\"", true));
        assert!(!user_tool_output(b"\"please fix the bug in main.rs\"", true));
    }

    #[test]
    fn finds_reminders() {
        let t = "a<system-reminder>x</system-reminder>b<system-reminder>y";
        assert_eq!(reminders(t), vec![1..37]);
    }
}
