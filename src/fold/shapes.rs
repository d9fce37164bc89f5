//! Recognisers for the text shapes agents produce: tool output and template text sent as user
//! messages, the command a tool output came from, line-number prefixes of file views,
//! `<system-reminder>` segments.

use memchr::memmem;

/// Byte offset where the template part of SWE-agent's instance message starts (its
/// `INSTRUCTIONS:` section, after the issue text a person wrote), if `text` is one.
pub fn instance_template_start(text: &str) -> Option<usize> {
    if !text.starts_with("We're currently solving the following ") {
        return None;
    }
    let k = text.rfind("\nINSTRUCTIONS:\nNow, you're going to solve this ")?;
    Some(k + 1)
}

/// The command a tool call ran, from its arguments: a `command`/`cmd` string, or an argv array
/// (`["bash", "-lc", script]` gives the script).
pub fn call_command(v: &serde_json::Value) -> Option<String> {
    let o = v.as_object()?;
    for k in ["command", "cmd"] {
        match o.get(k) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => return Some(s.trim().to_string()),
            Some(serde_json::Value::Array(a)) => {
                let argv: Vec<&str> = a.iter().filter_map(|x| x.as_str()).collect();
                return match argv.as_slice() {
                    [sh, flag, script] if sh.ends_with("sh") && flag.starts_with('-') && flag.contains('c') => {
                        Some(script.trim().to_string())
                    }
                    [] => None,
                    _ => Some(argv.join(" ")),
                };
            }
            _ => {}
        }
    }
    None
}

/// Read tools whose output is the file as it is, without line numbers (Gemini CLI's `read_file`,
/// and `read_many_files`, several files one after the other): their outputs are file views.
pub fn shows_files_unnumbered(tool_name: &str) -> bool {
    matches!(tool_name, "read_file" | "read_many_files")
}

/// The command an assistant message asks the agent to run, in the shapes agents parse from
/// text: OpenHands `<function=execute_bash><parameter=command>` and `<execute_bash>`, SWE-agent
/// `<command>`, else the last ``` fenced block (SWE-agent, mini-swe-agent).
pub fn assistant_command(text: &str) -> Option<String> {
    let between = |open: &str, close: &str| -> Option<String> {
        let s = text.rfind(open)? + open.len();
        let e = text[s..].find(close)? + s;
        let c = text[s..e].trim();
        (!c.is_empty()).then(|| c.to_string())
    };
    if let Some(f) = text.rfind("<function=") {
        let name: String = text[f + 10..].chars().take_while(|c| *c != '>').collect();
        let param = |p: &str| {
            let open = format!("<parameter={p}>");
            let s = text[f..].find(&open)? + f + open.len();
            let e = text[s..].find("</parameter>")? + s;
            Some(text[s..e].trim().to_string())
        };
        return match (name.as_str(), param("command")) {
            ("execute_bash" | "bash", Some(c)) if !c.is_empty() => Some(c),
            (_, c) => {
                let words: Vec<String> = [Some(name.clone()), c, param("path")].into_iter().flatten().collect();
                Some(words.join(" ")).filter(|w| !w.is_empty())
            }
        };
    }
    if let Some(c) = between("<execute_bash>", "</execute_bash>") {
        return Some(c);
    }
    if let Some(c) = between("<command>", "</command>") {
        return Some(c);
    }
    last_fenced_block(text)
}

/// Contents of the last complete ``` fenced block (its info string, e.g. `bash`, dropped).
fn last_fenced_block(text: &str) -> Option<String> {
    let mut open: Option<usize> = None;
    let mut last = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_end();
        if let Some(info) = t.strip_prefix("```") {
            match open {
                None if !info.contains('`') => open = Some(at + line.len()),
                Some(s) if info.is_empty() => {
                    last = Some(text[s..at].trim_end().to_string());
                    open = None;
                }
                _ => {}
            }
        }
        at += line.len();
    }
    last.filter(|c| !c.trim().is_empty())
}

/// The command of Aider's `/run` output message (`I ran this command:\n\nCMD\n\nAnd got ...`).
pub fn aider_run_command(text: &str) -> Option<String> {
    let rest = text.strip_prefix("I ran this command:\n\n")?;
    let e = rest.find("\n\nAnd got this output:")?;
    Some(rest[..e].trim().to_string()).filter(|c| !c.is_empty())
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
    /// `grep -n` over several files: `path:12:text` (the path is kept in `Line::group`).
    Grep,
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
        // `12:` without leading padding only (padded colon lines are usually tables), and not
        // `21:41` (a time).
        Some(b':') if ds == 0 && !rest.get(1).is_some_and(u8::is_ascii_digit) => Some((Style::Colon, n, i + 1)),
        _ => None,
    }
}

/// Splits a grep `path:N:` prefix off `line`: (hash of the path, number, prefix length). The
/// path has no spaces and looks like one (a `/` or `.` in it).
pub fn grep_prefix(line: &str) -> Option<(u32, u32, usize)> {
    let b = line.as_bytes();
    let colon = memchr::memchr(b':', b.get(..b.len().min(256))?)?;
    let path = &b[..colon];
    if path.len() < 2 || path.iter().any(|c| c.is_ascii_whitespace()) || !path.iter().any(|&c| c == b'/' || c == b'.') {
        return None;
    }
    let digits = b[colon + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 9 || b.get(colon + 1 + digits) != Some(&b':') {
        return None;
    }
    let n: u32 = line.get(colon + 1..colon + 1 + digits)?.parse().ok()?;
    Some((xxhash_rust::xxh3::xxh3_64(path) as u32 | 1, n, colon + digits + 2))
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

/// The file a tool call names, whole (read, write and edit tools of every agent).
pub fn call_path(v: &serde_json::Value) -> Option<String> {
    let o = v.as_object()?;
    ["file_path", "filePath", "path", "filename", "notebook_path", "target_file"]
        .iter()
        .find_map(|k| o.get(*k).and_then(|p| p.as_str()))
        .filter(|p| !p.is_empty())
        .map(str::to_string)
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

/// The file name a SWE-agent style view shows: `[File: /path/name (N lines total)]`.
pub fn viewed_file(text: &str) -> Option<String> {
    let s = text.find("[File: ")? + 7;
    let rest = &text[s..];
    let e = rest.find(" (")?;
    let path = &rest[..e];
    Some(path.rsplit('/').next().unwrap_or(path).to_string())
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
    fn commands_in_assistant_text() {
        assert_eq!(assistant_command("ok\n```\ngoto 12\n```\n").as_deref(), Some("goto 12"));
        assert_eq!(assistant_command("a\n```bash\nls\n```\nthen\n```sh\nmake test\n```").as_deref(), Some("make test"));
        assert_eq!(assistant_command("<execute_bash>\npwd\n</execute_bash>").as_deref(), Some("pwd"));
        assert_eq!(assistant_command("I am done, no command.").as_deref(), None);
        assert_eq!(assistant_command("```\nunclosed").as_deref(), None);
        let edit = "```\nedit 1:1\nimport os\nend_of_edit\n```";
        assert_eq!(assistant_command(edit).as_deref(), Some("edit 1:1\nimport os\nend_of_edit"));
        let v = serde_json::json!({"command": ["bash", "-lc", "cargo test"]});
        assert_eq!(call_command(&v).as_deref(), Some("cargo test"));
        assert_eq!(
            aider_run_command("I ran this command:\n\nmake\n\nAnd got this output:\n\nok").as_deref(),
            Some("make")
        );
    }

    #[test]
    fn grep_and_time_prefixes() {
        assert_eq!(grep_prefix("src/a.rs:12:    let x = 1;").map(|(_, n, l)| (n, l)), Some((12, 12)));
        assert_eq!(grep_prefix("note: 12: not a path"), None);
        assert_eq!(grep_prefix("plain:12:x"), None, "a path has a / or a .");
        assert_eq!(number_prefix("21:41:05.928 [info] ready"), None, "a time is not a line number");
        assert_eq!(
            instance_template_start("We're currently solving the following issue.\nISSUE:\nx\nINSTRUCTIONS:\nNow, you're going to solve this issue"),
            Some(54)
        );
    }

    #[test]
    fn finds_reminders() {
        let t = "a<system-reminder>x</system-reminder>b<system-reminder>y";
        assert_eq!(reminders(t), vec![1..37]);
    }
}
