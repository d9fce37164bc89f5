//! Tool output and template text that agents send inside user messages (SWE-agent,
//! mini-swe-agent, OpenHands, Aider): their wire conventions, recognised by the templates the
//! agents really use, so that locating a request's blocks tells them from text a person typed.

use memchr::memmem;

/// What a user message (raw JSON string bytes) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserShape {
    /// Text a person typed (the default for anything not matching a known agent template).
    Typed,
    /// Tool output an agent wrapped as a user turn.
    ToolOutput,
    /// Text an agent generated from a template (SWE-agent's in-prompt demonstration).
    Template,
}

/// Classifies a user message by the agents' real templates. Conservative: a template must match
/// where the agent puts it (the start, or SWE-agent's closing state lines), so pasted terminal
/// text that merely contains a prompt or an exit-code line stays typed text.
pub fn user_shape(raw: &[u8], seen_assistant: bool) -> UserShape {
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or(raw);
    let has = |needle: &[u8]| memmem::find(inner, needle).is_some();
    // Aider's file and repo-map messages are generated, not typed, wherever they appear.
    for p in [
        &b"I have *added these files to the chat*"[..],
        b"Here are summaries of some files present in my git repo",
        b"I added these files to the chat: ",
    ] {
        if inner.starts_with(p) {
            return UserShape::ToolOutput;
        }
    }
    // SWE-agent's demonstration: a recorded trajectory between fixed delimiters.
    if inner.starts_with(b"Here is a demonstration of how to correctly accomplish this task.")
        && has(b"--- DEMONSTRATION ---")
        && has(b"--- END OF DEMONSTRATION ---")
    {
        return UserShape::Template;
    }
    if !seen_assistant {
        return UserShape::Typed;
    }
    // SWE-agent observations close with its state lines and prompt.
    if inner.ends_with(b"bash-$") && swe_agent_state_tail(inner) {
        return UserShape::ToolOutput;
    }
    // mini-swe-agent: `<returncode>N</returncode>` then the output.
    if let Some(rest) = inner.strip_prefix(b"<returncode>") {
        let digits = rest.iter().take_while(|c| c.is_ascii_digit() || **c == b'-').count();
        if digits > 0 && rest[digits..].starts_with(b"</returncode>") {
            return UserShape::ToolOutput;
        }
    }
    // OpenHands observations in non-function-calling mode.
    if inner.starts_with(b"OBSERVATION:") || (inner.starts_with(b"EXECUTION RESULT of [") && has(b"]:")) {
        return UserShape::ToolOutput;
    }
    // Aider's `/run` output and an editor's file view.
    if inner.starts_with(b"I ran this command:\\n\\n") && has(b"\\n\\nAnd got this output:") {
        return UserShape::ToolOutput;
    }
    if inner.starts_with(b"Here's the result of running `cat -n` on ") {
        return UserShape::ToolOutput;
    }
    UserShape::Typed
}

/// Whether raw JSON string contents end with SWE-agent's state lines: `(Open file: ...)`,
/// `(Current directory: ...)`, an optional `(Interactive session: ...)`, then `bash-$`.
fn swe_agent_state_tail(inner: &[u8]) -> bool {
    // Lines are separated by the two-byte escape `\n` in the raw JSON.
    let is_line = |l: &[u8], p: &[u8]| l.starts_with(p) && l.ends_with(b")");
    let mut parts: Vec<&[u8]> = Vec::with_capacity(4);
    let mut end = inner.len();
    for _ in 0..4 {
        let Some(k) = memmem::rfind(&inner[..end], b"\\n") else { break };
        parts.push(&inner[k + 2..end]);
        end = k;
    }
    let (open, cwd, session) = (&b"(Open file: "[..], &b"(Current directory: "[..], &b"(Interactive session: "[..]);
    match parts.as_slice() {
        [last, a, b, rest @ ..] if *last == b"bash-$" => {
            (is_line(a, cwd) && is_line(b, open))
                || (is_line(a, session) && is_line(b, cwd) && rest.first().is_some_and(|c| is_line(c, open)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_shapes() {
        use UserShape::*;
        let swe = b"\"ls\\n(Open file: n/a)\\n(Current directory: /r)\\nbash-$\"";
        assert_eq!(user_shape(swe, true), ToolOutput);
        assert_eq!(user_shape(swe, false), Typed, "before any assistant turn it is the task");
        assert_eq!(user_shape(b"\"<returncode>0</returncode>\\n<output>\\nx</output>\"", true), ToolOutput);
        assert_eq!(user_shape(b"\"please fix the bug in main.rs\"", true), Typed);
        assert_eq!(user_shape(b"\"see:\\n[Command finished with exit code 1]\\nhelp\"", true), Typed);
        assert_eq!(user_shape(b"\"my prompt is bash-$\"", true), Typed);
        let demo = b"\"Here is a demonstration of how to correctly accomplish this task.\\n--- DEMONSTRATION ---\\nx\\n--- END OF DEMONSTRATION ---\\n\"";
        assert_eq!(user_shape(demo, false), Template);
    }
}
