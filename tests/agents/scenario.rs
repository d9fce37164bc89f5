//! The coding task every agent plays: a scratch git repository, the five tool steps the scripted
//! model asks for, and what each step's tool result must show for the script to go on.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

pub const FILE: &str = "src/config.py";
pub const OLD_LINE: &str = "TIMEOUT = 30";
pub const NEW_LINE: &str = "TIMEOUT = 45";
pub const ERROR_LINE: &str = "ERROR widget-217: checksum mismatch (expected 0x9f, got 0x3c) at src/config.py:122";
pub const FINAL_ANSWER: &str =
    "FINAL: raised TIMEOUT to 45 in src/config.py; check.sh reported one error (widget-217 checksum mismatch).";
/// Answer to requests outside the task (title generation and the like).
pub const SIDE_ANSWER: &str = "Raise the widget timeout";
pub const PROMPT: &str = "Raise TIMEOUT in src/config.py from 30 to 45, then run check.sh and tell me what failed.";
/// Lines `check.sh` prints.
pub const CHECK_LINES: usize = 400;

/// One step of the script, in order. The index is the number of tool results already in the
/// conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Read,
    Edit,
    ReRead,
    Grep,
    Run,
    Final,
}

pub const STEPS: [Step; 6] = [Step::Read, Step::Edit, Step::ReRead, Step::Grep, Step::Run, Step::Final];

impl Step {
    pub fn at(results: usize) -> Step {
        STEPS.get(results).copied().unwrap_or(Step::Final)
    }

    /// What the tool result of this step must contain, as the model sees it (after folding), for
    /// the script to continue. `None`: anything goes.
    pub fn expect_in_result(self) -> Option<&'static str> {
        match self {
            Step::Read => Some(OLD_LINE),
            Step::Edit | Step::Final => None,
            Step::ReRead | Step::Grep => Some(NEW_LINE),
            Step::Run => Some(ERROR_LINE),
        }
    }
}

/// Writes the repository: a 240-line Python file (long enough for its re-read to fold), a check
/// script printing `CHECK_LINES` lines with one error line, the long session's `gen.sh`, one
/// commit.
pub fn create_repo(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join(FILE), config_py())?;
    std::fs::write(dir.join("check.sh"), check_sh())?;
    std::fs::write(dir.join("gen.sh"), long::gen_sh())?;
    std::fs::write(dir.join("README.md"), "# widgets\n\nA small service used by the tokenfold agent tests.\n")?;
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &["-c", "user.name=tokenfold", "-c", "user.email=tests@tokenfold.invalid", "commit", "-q", "-m", "widgets"],
    ] {
        let out = Command::new("git").args(args).current_dir(dir).output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
        }
    }
    Ok(())
}

fn config_py() -> String {
    let mut s = String::from("\"\"\"Settings and limits of the widget service.\"\"\"\n\nimport os\n\n");
    for ch in 1..=58 {
        if ch == 30 {
            s.push_str("# How long a widget may take to answer, in seconds.\n");
            s.push_str(OLD_LINE);
            s.push('\n');
        }
        s.push_str(&format!("def limit_{ch:03}(value):\n"));
        s.push_str(&format!("    \"\"\"Clamp `value` to the range allowed on channel {ch}.\"\"\"\n"));
        s.push_str(&format!("    return max({}, min(value, {}))\n\n", ch * 3, ch * 1700 + 11));
    }
    s
}

/// Exits 0: Claude Code keeps only the head and tail of a *failing* command's long output (about
/// 10K characters), which would cut the error line before the proxy ever saw it.
fn check_sh() -> String {
    let script = r#"#!/usr/bin/env bash
# Checks every widget and prints one line each.
for i in $(seq 1 {lines}); do
  if [ "$i" -eq 217 ]; then
    echo '{error_line}'
  else
    printf 'widget-%03d ok  checksum 0x%02x  latency %d ms\n' "$i" $(( i * 37 % 256 )) $(( i % 17 + 3 ))
  fi
done
"#;
    script.replace("{lines}", &CHECK_LINES.to_string()).replace("{error_line}", ERROR_LINE)
}

/// The tools an agent offers, told apart by their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kit {
    /// Read, Edit, Bash (Grep when offered).
    ClaudeCode,
    /// exec_command and apply_patch.
    Codex,
    /// read, edit or apply_patch, grep, bash.
    OpenCode,
    /// read_file, replace, grep_search, run_shell_command.
    GeminiCli,
}

impl Kit {
    pub fn detect(tools: &[OfferedTool]) -> Option<Kit> {
        let has = |n: &str| tools.iter().any(|t| t.name == n);
        if has("Read") && has("Edit") && has("Bash") {
            Some(Kit::ClaudeCode)
        } else if has("exec_command") || has("shell") {
            Some(Kit::Codex)
        } else if has("read") && has("bash") {
            Some(Kit::OpenCode)
        } else if has("read_file") && has("replace") && has("run_shell_command") {
            Some(Kit::GeminiCli)
        } else {
            None
        }
    }
}

/// A tool in the request's tool list: its name and whether it is a freeform (custom) tool.
#[derive(Debug, Clone)]
pub struct OfferedTool {
    pub name: String,
    pub custom: bool,
}

/// A call the scripted model makes: `input` is the JSON arguments, or the raw text of a custom tool.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub name: String,
    pub input: String,
    pub custom: bool,
}

fn call(name: &str, args: Value) -> ToolCall {
    ToolCall { name: name.to_string(), input: args.to_string(), custom: false }
}

fn patch() -> String {
    format!("*** Begin Patch\n*** Update File: {FILE}\n@@\n-{OLD_LINE}\n+{NEW_LINE}\n*** End Patch\n")
}

/// The call for `step` in the agent's own tool schema.
pub fn tool_call(kit: Kit, tools: &[OfferedTool], step: Step, repo: &Path) -> Option<ToolCall> {
    let abs = |p: &str| repo.join(p).display().to_string();
    let find = |n: &str| tools.iter().find(|t| t.name == n);
    let c = match (kit, step) {
        (_, Step::Final) => return None,
        (Kit::ClaudeCode, Step::Read | Step::ReRead) => call("Read", json!({"file_path": abs(FILE)})),
        (Kit::ClaudeCode, Step::Edit) => call(
            "Edit",
            json!({"file_path": abs(FILE), "old_string": OLD_LINE, "new_string": NEW_LINE, "replace_all": false}),
        ),
        (Kit::ClaudeCode, Step::Grep) if find("Grep").is_some() => {
            call("Grep", json!({"pattern": "TIMEOUT", "path": abs("src"), "output_mode": "content", "-n": true}))
        }
        (Kit::ClaudeCode, Step::Grep) => {
            call("Bash", json!({"command": "grep -rn TIMEOUT src", "description": "Find TIMEOUT"}))
        }
        (Kit::ClaudeCode, Step::Run) => {
            call("Bash", json!({"command": "bash check.sh", "description": "Run the widget checks"}))
        }
        (Kit::Codex, s) => {
            let exec = if find("exec_command").is_some() { "exec_command" } else { "shell" };
            let run = |cmd: &str| {
                if exec == "exec_command" {
                    call(exec, json!({"cmd": cmd}))
                } else {
                    call(exec, json!({"command": ["bash", "-lc", cmd]}))
                }
            };
            match s {
                Step::Read | Step::ReRead => run(&format!("cat {FILE}")),
                Step::Edit => match find("apply_patch") {
                    Some(t) if t.custom => ToolCall { name: t.name.clone(), input: patch(), custom: true },
                    Some(t) => call(&t.name, json!({"input": patch()})),
                    None => run(&format!("sed -i 's/^{OLD_LINE}$/{NEW_LINE}/' {FILE}")),
                },
                Step::Grep => run("grep -rn TIMEOUT src"),
                Step::Run | Step::Final => run("bash check.sh"),
            }
        }
        (Kit::OpenCode, Step::Read | Step::ReRead) => call("read", json!({"filePath": abs(FILE)})),
        (Kit::OpenCode, Step::Edit) if find("edit").is_some() => {
            call("edit", json!({"filePath": abs(FILE), "oldString": OLD_LINE, "newString": NEW_LINE}))
        }
        (Kit::OpenCode, Step::Edit) => call("apply_patch", json!({"patchText": patch()})),
        (Kit::OpenCode, Step::Grep) if find("grep").is_some() => {
            call("grep", json!({"pattern": "TIMEOUT", "path": abs("src")}))
        }
        (Kit::OpenCode, Step::Grep) => {
            call("bash", json!({"command": "grep -rn TIMEOUT src", "description": "Find TIMEOUT"}))
        }
        (Kit::OpenCode, Step::Run) => {
            call("bash", json!({"command": "bash check.sh", "description": "Run the widget checks"}))
        }
        (Kit::GeminiCli, Step::Read | Step::ReRead) => call("read_file", json!({"file_path": abs(FILE)})),
        (Kit::GeminiCli, Step::Edit) => call(
            "replace",
            json!({"file_path": abs(FILE), "instruction": "Raise the widget timeout from 30 to 45 seconds.",
                   "old_string": OLD_LINE, "new_string": NEW_LINE}),
        ),
        (Kit::GeminiCli, Step::Grep) => call("grep_search", json!({"pattern": "TIMEOUT", "dir_path": abs("src")})),
        (Kit::GeminiCli, Step::Run) => {
            call("run_shell_command", json!({"command": "bash check.sh", "description": "Run the widget checks"}))
        }
    };
    Some(c)
}

/// The file's lines after the scripted edit.
pub fn edited_file(repo: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(repo.join(FILE))
}

pub fn repo_dir(case_dir: &Path) -> PathBuf {
    case_dir.join("repo")
}

/// The long session: one large command output per turn until the proxy clears an old one (a
/// free-tier target clears as soon as enough is clearable), then a read of that output's original
/// through the command its stub gives, then the final answer.
pub mod long {
    use std::path::Path;

    use super::{call, json, Kit, OfferedTool, ToolCall};

    pub const PROMPT: &str =
        "Run `bash gen.sh N` for the parts N = 0, 1, 2, ... one at a time, then tell me what part 0 printed.";
    pub const FINAL_ANSWER: &str = "FINAL: part 0 was cleared from the context and read back whole from its original.";
    /// Most parts the model asks for before giving up on seeing a cleared output.
    pub const MAX_RUNS: usize = 10;
    /// Lines each part prints (about 3,500 tokens).
    pub const LINES: usize = 240;

    pub fn first_line(k: usize) -> String {
        format!("gen.sh part {k} begins")
    }

    pub fn last_line(k: usize) -> String {
        format!("gen.sh part {k} ends")
    }

    /// How the parts reach the model.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Parts {
        /// `bash gen.sh N`: command output of `LINES` lines.
        Run,
        /// Reads of `parts/part_N.txt`, of that many lines: a file view is never compressed
        /// lossily, so each counts whole.
        Read(usize),
    }

    impl Parts {
        pub fn lines(self) -> usize {
            match self {
                Parts::Run => LINES,
                Parts::Read(n) => n,
            }
        }

        /// The call that shows part `k`, in the agent's own tool schema (only Claude Code's
        /// kit reads; another kit `cat`s the file).
        pub fn call(self, kit: Kit, tools: &[OfferedTool], repo: &Path, k: usize) -> ToolCall {
            let path = part_path(repo, k);
            match (self, kit) {
                (Parts::Run, _) => shell(kit, tools, &format!("bash gen.sh {k}")),
                (Parts::Read(_), Kit::ClaudeCode) => call("Read", json!({"file_path": path.display().to_string()})),
                (Parts::Read(_), _) => shell(kit, tools, &format!("cat {}", path.display())),
            }
        }
    }

    pub fn part_path(repo: &Path, k: usize) -> std::path::PathBuf {
        repo.join("parts").join(format!("part_{k}.txt"))
    }

    /// Writes the files `Parts::Read(lines)` reads: what `gen.sh N` would print in `lines` lines.
    pub fn write_parts(repo: &Path, lines: usize) -> std::io::Result<()> {
        std::fs::create_dir_all(repo.join("parts"))?;
        for k in 0..=MAX_RUNS {
            let mut s = format!("{}\n", first_line(k));
            for i in 1..=lines {
                let (sum, team) = ((i * 7919 + k * 31) % 65536, (i + k) % 9);
                s.push_str(&format!(
                    "part {k} line {i:03}: widget_{k}_{i:03} checksum 0x{sum:04x} owner team_{team}\n"
                ));
            }
            // No newline at the end: Read would show an empty last line, which a shell's
            // read-back of the original trims.
            s.push_str(&last_line(k));
            std::fs::write(part_path(repo, k), s)?;
        }
        Ok(())
    }

    /// `gen.sh N` prints part N: distinct lines between a first and a last line.
    pub fn gen_sh() -> String {
        format!(
            r#"#!/usr/bin/env bash
# Prints part $1 of a long report: one line per widget.
k="$1"
echo "gen.sh part $k begins"
for i in $(seq 1 {LINES}); do
  printf 'part %s line %03d: widget_%s_%03d checksum 0x%04x owner team_%d\n' "$k" "$i" "$k" "$i" $(( (i * 7919 + k * 31) % 65536 )) $(( (i + k) % 9 ))
done
echo "gen.sh part $k ends"
"#
        )
    }

    /// What the model does next in the long session, from the tool results so far.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Next {
        Run(usize),
        /// Read the original a stub names (the command the stub gives).
        Recall(String),
        Final,
        Abort(String),
    }

    /// The part a tool result shows whole, if any.
    pub fn part_shown(result: &str) -> Option<usize> {
        (0..=MAX_RUNS).find(|&k| result.contains(&first_line(k)) && result.contains(&last_line(k)))
    }

    pub fn is_stub(result: &str) -> bool {
        result.trim_start().starts_with("[tokenfold: cleared ")
    }

    /// The command a stub gives to read its original (`Original: cat PATH]`).
    pub fn recall_command(stub: &str) -> Option<String> {
        let first = stub.trim_start().lines().next()?;
        let k = first.find("Original: ")? + "Original: ".len();
        Some(first[k..].trim_end_matches(']').to_string())
    }

    /// `lines`: the lines each part shows.
    pub fn next(results: &[String], lines: usize) -> Next {
        // A result showing an earlier part whole is the read-back of that part's original.
        for (i, r) in results.iter().enumerate() {
            if let Some(k) = part_shown(r).filter(|&k| k < i) {
                // A file view's lines carry line numbers before the text.
                let line = format!("part {k} line ");
                return match r.lines().filter(|l| l.starts_with(&line) || l.contains(&format!("\t{line}"))).count() {
                    n if n == lines => Next::Final,
                    n => Next::Abort(format!("the read-back of part {k} has {n} of its {lines} lines")),
                };
            }
        }
        if let Some(stub) = results.iter().find(|r| is_stub(r)) {
            return match recall_command(stub) {
                Some(c) => Next::Recall(c),
                None => Next::Abort(format!("a stub without a way back: {}", stub.lines().next().unwrap_or(""))),
            };
        }
        if results.len() < MAX_RUNS {
            return Next::Run(results.len());
        }
        Next::Abort(format!("no tool output was cleared after {MAX_RUNS} parts"))
    }

    /// The shell call that runs `command` in the agent's own tool schema.
    pub fn shell(kit: Kit, tools: &[OfferedTool], command: &str) -> ToolCall {
        match kit {
            Kit::ClaudeCode => call("Bash", json!({"command": command, "description": "Run a command"})),
            Kit::Codex if tools.iter().any(|t| t.name == "exec_command") => {
                call("exec_command", json!({"cmd": command}))
            }
            Kit::Codex => call("shell", json!({"command": ["bash", "-lc", command]})),
            Kit::OpenCode => call("bash", json!({"command": command, "description": "Run a command"})),
            Kit::GeminiCli => call("run_shell_command", json!({"command": command, "description": "Run a command"})),
        }
    }
}
