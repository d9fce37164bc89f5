//! Which blocks are tool output that clearing may replace, and what each one is: a file view
//! (which file, which lines), a search, a listing or a command run. Built on what the fold engine
//! already recognised per block (`Src`: kind, producing call, line numbers).

use crate::dialect::blocks::Kind;
use crate::fold::filters::command::{self, Tool};
use crate::fold::markers::is_read_tool;
use crate::fold::shapes;
use crate::fold::state::{Src, ToolInfo};

use super::outline::Shape;

/// Tools whose output is a summary or an answer, not stale context: never cleared by default.
pub const DEFAULT_EXCLUDED: &[&str] = &[
    "Task",
    "Agent",
    "TodoWrite",
    "TodoRead",
    "AskUserQuestion",
    "ExitPlanMode",
    "Skill",
    "task",
    "todowrite",
    "todoread",
    "update_plan",
];

/// Tools that write a whole file: a later write makes every earlier view of the file stale.
fn writes_whole(name: &str) -> bool {
    matches!(name, "Write" | "write" | "write_file" | "create_file" | "create")
}

/// Tools that change part of a file (their output, if numbered, is a view of the changed part;
/// a whole write's numbered output shows the file).
fn edits(name: &str) -> bool {
    matches!(name, "Edit" | "MultiEdit" | "edit" | "str_replace_editor" | "str_replace_based_edit_tool" | "replace")
}

/// What a tool output is, as far as its stub and the clearing policy go.
#[derive(Debug, Clone)]
pub struct Described {
    pub shape: Shape,
    /// The tool as the stub names it (`Read`, `Bash`, `observation` for user-message output).
    pub tool: String,
    /// The command that produced it, when one did.
    pub command: Option<String>,
    /// For a file view: the file, and the first and last line numbers shown (none: unnumbered).
    pub path: Option<String>,
    pub lines_shown: Option<(u32, u32)>,
    /// Never cleared: an excluded tool, or an agent's current-context message (Aider's files).
    pub excluded: bool,
}

/// What a call does to a file, for the view policy: it touches `path`, and may replace it whole.
pub struct FileTouch<'a> {
    pub path: &'a str,
    pub whole: bool,
}

/// The file a tool call writes or edits, if any.
pub fn call_touch(tool: &ToolInfo) -> Option<FileTouch<'_>> {
    let path = tool.path.as_deref()?;
    (writes_whole(&tool.name) || edits(&tool.name)).then_some(FileTouch { path, whole: writes_whole(&tool.name) })
}

/// Describes tool output block `src` with decoded `text`; `None` when it is not tool output.
pub fn describe(src: &Src, text: &str, excluded_tools: &[String]) -> Option<Described> {
    if src.kind != Kind::ToolOutput {
        return None;
    }
    let tool = src.tool.as_deref();
    let name = tool.map(|t| t.name.as_str()).filter(|n| !n.is_empty());
    let cmd = tool.and_then(|t| t.command.clone());
    let excluded = name.is_some_and(|n| excluded_tools.iter().any(|e| e == n)) || agent_context(text);
    let numbered = numbered_range(src);
    let by_command = cmd.as_deref().map(command::classify);
    let swe_view = name.is_none().then(|| swe_agent_view(text)).flatten();
    let (shape, path) = if name.is_some_and(is_read_tool) {
        (Shape::View, tool.and_then(|t| t.path.clone()))
    } else if let Some(p) = swe_view {
        (Shape::View, Some(p))
    } else if name.is_some_and(|n| edits(n) || writes_whole(n)) && numbered.is_some() {
        (Shape::View, tool.and_then(|t| t.path.clone()))
    } else {
        match (by_command, name) {
            (Some(Tool::FileRead), _) => (Shape::View, cmd.as_deref().and_then(command_path)),
            (Some(Tool::Search), _) | (_, Some("Grep" | "grep" | "search_file_content" | "grep_search")) => {
                (Shape::Search, None)
            }
            (Some(Tool::Find | Tool::Ls { .. } | Tool::Tree), _) | (_, Some("Glob" | "glob" | "LS" | "list")) => {
                (Shape::Listing, None)
            }
            (Some(_), _) => (Shape::Run, None),
            (None, _) if tool.is_some_and(|t| t.runs_command) => (Shape::Run, None),
            _ => (Shape::Other, None),
        }
    };
    let tool_name = match name {
        Some(n) => n.to_string(),
        None => "observation".to_string(),
    };
    Some(Described { shape, tool: tool_name, command: cmd, path, lines_shown: numbered, excluded })
}

/// Aider's chat files and repo map: the agent's current context, rebuilt on every request.
fn agent_context(text: &str) -> bool {
    [
        "I have *added these files to the chat*",
        "Here are summaries of some files present in my git repo",
        "I added these files to the chat: ",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

/// First and last line numbers of a numbered view (Read's `12→`, `cat -n`, SWE-agent's `12:`).
fn numbered_range(src: &Src) -> Option<(u32, u32)> {
    let mut nums = src.lines.iter().filter(|l| l.style.is_some_and(|s| s != shapes::Style::Grep)).filter_map(|l| l.num);
    let first = nums.next()?;
    let last = nums.next_back().unwrap_or(first);
    Some((first.min(last), first.max(last)))
}

/// SWE-agent's and similar editors' window header: `[File: /repo/a.py (240 lines total)]`.
fn swe_agent_view(text: &str) -> Option<String> {
    let s = text.find("[File: ")? + 7;
    let rest = &text[s..];
    let e = rest.find(" (")?;
    Some(rest[..e].to_string())
}

/// The file a file-showing command reads: its last argument that looks like a path.
fn command_path(cmd: &str) -> Option<String> {
    let first = cmd.lines().next()?;
    let stage = first.split(['|', ';']).next().unwrap_or(first);
    stage
        .split_whitespace()
        .rev()
        .map(|w| w.trim_matches(['"', '\'']))
        .find(|w| !w.starts_with('-') && crate::fold::filters::is_path(w))
        .map(str::to_string)
}

/// The exit status an output reports (`Exit code 1` from Claude Code, `Exit code: 0` from
/// Codex, `<returncode>1</returncode>` from mini-swe-agent, `exit code 2` in OpenCode's footer).
pub fn exit_status(text: &str) -> Option<i64> {
    let head: Vec<&str> = text.lines().take(3).collect();
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    for l in head.iter().chain(tail.iter()) {
        let t = l.trim();
        let rest = ["Exit code: ", "Exit code ", "exit code: ", "exit code ", "Process exited with code "]
            .iter()
            .find_map(|p| t.strip_prefix(p))
            .or_else(|| t.strip_prefix("<returncode>").and_then(|r| r.split_once("</returncode>").map(|(n, _)| n)));
        if let Some(n) = rest.and_then(|r| r.split(|c: char| !c.is_ascii_digit() && c != '-').next()) {
            if let Ok(v) = n.parse() {
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_in_each_agents_shape() {
        assert_eq!(exit_status("Exit code 2\nerror: x"), Some(2));
        assert_eq!(exit_status("Exit code: 0\nWall time: 1s\nOutput:\nok"), Some(0));
        assert_eq!(exit_status("<returncode>1</returncode>\n<output>\nx</output>"), Some(1));
        assert_eq!(exit_status("all good"), None);
    }

    #[test]
    fn command_paths() {
        assert_eq!(command_path("cat -n src/a.py").as_deref(), Some("src/a.py"));
        assert_eq!(command_path("sed -n '1,80p' lib/x.ex | head").as_deref(), Some("lib/x.ex"));
        assert_eq!(command_path("cat"), None);
    }
}
