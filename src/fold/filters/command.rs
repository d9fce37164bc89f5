//! What a shell command line runs, as far as choosing a filter goes. A coarse shell splitter
//! (quotes respected, `&&`/`||`/`;`/`|`/newlines separate), wrappers and no-output commands
//! skipped, pipeline tails (`| head`, `| grep x`) ignored because they keep the shape of what
//! they filter. Anything that shows a file's contents is a file read and never gets a filter.

use super::Filter;

/// The tool behind a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Tests,
    Build,
    GitStatus,
    GitDiff,
    GitLog,
    Search,
    Find,
    /// `ls`; `long` with `-l`, `times` when the listing was asked to sort or show by time.
    Ls {
        long: bool,
        times: bool,
    },
    Tree,
    /// `cat`, `head`, `sed -n`, SWE-agent `open`/`goto`/... : file contents, only part-1 dedup.
    FileRead,
    /// A known command whose output has no typed filter (content detection decides).
    Other,
    Unknown,
}

impl Tool {
    /// The filter a tool's output always gets; `None` leaves it to content detection.
    pub fn filter(self) -> Option<Filter> {
        match self {
            Tool::Tests => Some(Filter::TestRunner),
            Tool::Build => Some(Filter::Build),
            Tool::GitStatus | Tool::GitDiff | Tool::GitLog => Some(Filter::Git),
            Tool::Search | Tool::Find | Tool::Ls { .. } | Tool::Tree => Some(Filter::Listing),
            Tool::FileRead | Tool::Other | Tool::Unknown => None,
        }
    }
}

/// Whether an observation an agent sent as a user message shows command output (rather than
/// files: Aider's added files and repo map, an editor's `cat -n` view).
pub fn observation_is_command(text: &str) -> bool {
    ![
        "I have *added these files to the chat*",
        "Here are summaries of some files present in my git repo.",
        "I added these files to the chat",
        "Here's the result of running `cat -n`",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

/// Tool names whose outputs are command output (everything else is left to part 1).
pub fn is_command_tool(name: &str, args: &serde_json::Value) -> bool {
    let n = name.to_ascii_lowercase();
    if matches!(
        n.as_str(),
        "bash"
            | "shell"
            | "exec_command"
            | "write_stdin"
            | "execute_bash"
            | "execute_command"
            | "run_command"
            | "run_shell_command"
            | "run_terminal_cmd"
            | "terminal"
            | "local_shell"
            | "shell_command"
            | "container.exec"
    ) {
        return true;
    }
    // Responses `local_shell_call`: no name, an `exec` action.
    args.get("type").and_then(|t| t.as_str()) == Some("exec") && args.get("command").is_some()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sep {
    Pipe,
    Seq,
}

/// Splits a command line into simple commands (words, quotes removed) with the separator that
/// follows each.
fn split(line: &str) -> Vec<(Vec<String>, Sep)> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, words: &mut Vec<String>| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                } else if c == '\\' && q == '"' {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                } else {
                    word.push(c);
                }
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    in_word = true;
                }
                '\\' => {
                    if let Some(n) = chars.next() {
                        if n != '\n' {
                            word.push(n);
                            in_word = true;
                        }
                    }
                }
                ' ' | '\t' => end_word(&mut word, &mut in_word, &mut words),
                '|' | '&' | ';' | '\n' => {
                    end_word(&mut word, &mut in_word, &mut words);
                    let doubled = chars.peek() == Some(&c);
                    if doubled {
                        chars.next();
                    }
                    // `2>&1`, `&>` are redirections, not separators.
                    if c == '&' && !doubled && (word.ends_with('>') || chars.peek() == Some(&'>')) {
                        continue;
                    }
                    let sep = if c == '|' && !doubled { Sep::Pipe } else { Sep::Seq };
                    if !words.is_empty() {
                        out.push((std::mem::take(&mut words), sep));
                    }
                }
                _ => {
                    word.push(c);
                    in_word = true;
                }
            },
        }
    }
    end_word(&mut word, &mut in_word, &mut words);
    if !words.is_empty() {
        out.push((words, Sep::Seq));
    }
    out
}

/// Commands that print nothing worth classifying (or only echo text).
fn is_quiet(w: &str) -> bool {
    matches!(
        w,
        "cd" | "pushd"
            | "popd"
            | "export"
            | "set"
            | "unset"
            | "source"
            | "."
            | "true"
            | "false"
            | "sleep"
            | "echo"
            | "printf"
            | "mkdir"
            | "rm"
            | "cp"
            | "mv"
            | "touch"
            | "chmod"
            | "ln"
            | "wait"
            | "clear"
            | "ulimit"
            | "trap"
            | ":"
    )
}

/// Commands after a `|` that keep the shape of their input.
fn is_line_filter(w: &str) -> bool {
    matches!(
        w,
        "head"
            | "tail"
            | "grep"
            | "egrep"
            | "fgrep"
            | "rg"
            | "sort"
            | "uniq"
            | "cut"
            | "awk"
            | "sed"
            | "tr"
            | "wc"
            | "tee"
            | "less"
            | "more"
            | "cat"
            | "column"
            | "nl"
            | "fold"
    )
}

/// Drops env assignments, redirections and wrappers (`sudo`, `timeout 60`, `npx`, `uv run`, ...).
fn strip_wrappers(words: &[String]) -> Vec<&str> {
    let mut w: Vec<&str> = words.iter().map(String::as_str).filter(|x| !is_redirection(x)).collect();
    loop {
        let Some(&first) = w.first() else { return w };
        let base = first.rsplit('/').next().unwrap_or(first);
        let skip = if first.contains('=') && !first.starts_with('-') && !first.starts_with('=') {
            1
        } else {
            match base {
                "sudo" | "time" | "nice" | "nohup" | "command" | "exec" | "env" | "xvfb-run" | "npx" | "bunx" => {
                    1 + w.iter().skip(1).take_while(|x| x.starts_with('-')).count()
                }
                "timeout" => 1 + w.iter().skip(1).take_while(|x| x.starts_with('-')).count() + 1,
                "stdbuf" => 1 + w.iter().skip(1).take_while(|x| x.starts_with('-')).count(),
                "uv" | "poetry" | "pipenv" | "pdm" | "hatch" | "rye" if w.get(1) == Some(&"run") => 2,
                "bundle" if w.get(1) == Some(&"exec") => 2,
                "pnpm" | "yarn" if w.get(1) == Some(&"exec") || w.get(1) == Some(&"dlx") => 2,
                _ => 0,
            }
        };
        if skip == 0 || skip > w.len() {
            return w;
        }
        w.drain(..skip);
    }
}

fn is_redirection(w: &str) -> bool {
    let t = w.trim_start_matches(|c: char| c.is_ascii_digit());
    t.starts_with('>') || t.starts_with('<') || t.starts_with("&>")
}

/// The tool one simple command (wrappers stripped) runs.
fn simple(w: &[&str]) -> Tool {
    let Some(&first) = w.first() else { return Tool::Other };
    let prog = first.rsplit('/').next().unwrap_or(first);
    let sub = w.get(1).copied().unwrap_or("");
    let has = |s: &str| w.contains(&s);
    let flags = || w.iter().filter(|x| x.starts_with('-') && !x.starts_with("--")).flat_map(|x| x.chars().skip(1));
    match prog {
        "cargo" => match sub {
            "test" | "t" | "nextest" => Tool::Tests,
            "build" | "b" | "check" | "c" | "clippy" | "run" | "r" | "install" | "fetch" | "update" | "doc"
            | "bench" | "add" => Tool::Build,
            _ => Tool::Other,
        },
        "pytest" | "py.test" | "tox" | "nox" | "jest" | "vitest" | "mocha" | "rspec" | "phpunit" | "ctest"
        | "playwright" | "cypress" | "ava" | "tap" => Tool::Tests,
        "python" | "python3" | "python3.11" | "python3.12" | "py" => match (sub, w.get(2).copied()) {
            ("-m", Some("pytest" | "unittest" | "nose2" | "tox")) => Tool::Tests,
            ("-m", Some("pip" | "build" | "mypy" | "compileall")) => Tool::Build,
            _ => Tool::Other,
        },
        "go" => match sub {
            "test" => Tool::Tests,
            "build" | "vet" | "get" | "install" | "mod" | "generate" => Tool::Build,
            _ => Tool::Other,
        },
        "mix" => match sub {
            "test" => Tool::Tests,
            "compile" | "deps.get" | "deps.compile" | "credo" | "dialyzer" | "format" | "ecto.migrate"
            | "ash.codegen" | "assets.build" => Tool::Build,
            _ => Tool::Other,
        },
        "npm" | "yarn" | "pnpm" | "bun" => {
            let script = if sub == "run" || sub == "run-script" { w.get(2).copied().unwrap_or("") } else { sub };
            if script == "test" || script == "t" || script.starts_with("test:") || script == "e2e" {
                Tool::Tests
            } else if matches!(
                script,
                "install"
                    | "i"
                    | "ci"
                    | "add"
                    | "update"
                    | "upgrade"
                    | "remove"
                    | "uninstall"
                    | "build"
                    | "lint"
                    | "typecheck"
                    | "compile"
                    | ""
            ) {
                Tool::Build
            } else {
                Tool::Other
            }
        }
        "pip" | "pip3" | "make" | "gmake" | "cmake" | "ninja" | "tsc" | "webpack" | "vite" | "esbuild" | "rollup"
        | "mvn" | "gradle" | "gradlew" | "./gradlew" | "gcc" | "g++" | "clang" | "cc" | "rustc" | "eslint" | "mypy"
        | "ruff" | "flake8" | "pylint" | "apt-get" | "apt" | "apk" | "brew" | "gem" | "composer" | "conda"
        | "dotnet" | "swift" | "zig" | "bazel" => match (prog, sub) {
            ("dotnet" | "swift" | "zig" | "bazel" | "mvn" | "gradle", "test") => Tool::Tests,
            _ => Tool::Build,
        },
        "uv" | "poetry" | "bundle" | "docker" | "podman" => match sub {
            "pip" | "install" | "sync" | "add" | "lock" | "build" | "update" => Tool::Build,
            _ => Tool::Other,
        },
        "deno" => match sub {
            "test" => Tool::Tests,
            _ => Tool::Other,
        },
        "git" => git_tool(&w[1..]),
        "rg" | "grep" | "egrep" | "fgrep" | "ag" | "ack" => {
            // `grep -c` counts and `grep -l` lists files: still listing output.
            Tool::Search
        }
        "find" | "fd" | "fdfind" | "locate" => Tool::Find,
        "ls" | "ll" | "exa" | "eza" => {
            let long = prog == "ll" || flags().any(|c| c == 'l') || has("--long");
            let times = flags().any(|c| c == 't' || c == 'u' || c == 'c') || w.iter().any(|x| x.contains("time"));
            Tool::Ls { long, times }
        }
        "tree" => Tool::Tree,
        "cat" | "head" | "tail" | "nl" | "bat" | "batcat" | "less" | "more" | "view" | "type" => {
            // `tail -f log` still shows a file; any of these with a path argument is a read.
            Tool::FileRead
        }
        "sed" if flags().any(|c| c == 'n') || w.iter().any(|x| x.ends_with('p') && x.contains(',')) => Tool::FileRead,
        "awk" => Tool::FileRead,
        // SWE-agent's windowed file viewer and editor commands.
        "open" | "goto" | "scroll_up" | "scroll_down" | "create" | "edit" | "str_replace_editor" => Tool::FileRead,
        "search_dir" | "search_file" => Tool::Search,
        "find_file" => Tool::Find,
        _ => Tool::Unknown,
    }
}

fn git_tool(w: &[&str]) -> Tool {
    // Skip global options: `git -C dir --no-pager log`.
    let mut i = 0;
    while i < w.len() && w[i].starts_with('-') {
        i += if matches!(w[i], "-C" | "-c") { 2 } else { 1 };
    }
    let rest = w.get(i + 1..).unwrap_or_default();
    let short = rest.iter().any(|x| {
        matches!(*x, "-s" | "--short" | "--porcelain" | "--oneline")
            || x.starts_with("--format")
            || x.starts_with("--pretty")
            || x.starts_with("--porcelain")
    });
    match w.get(i).copied() {
        Some("status") if !short => Tool::GitStatus,
        Some("diff" | "show") => Tool::GitDiff,
        Some("log") if !short && !rest.iter().any(|x| *x == "-p" || *x == "--patch") => Tool::GitLog,
        Some("log") if !short => Tool::GitDiff,
        Some("grep") => Tool::Search,
        Some("ls-files") => Tool::Find,
        Some("blame") => Tool::FileRead,
        _ => Tool::Other,
    }
}

/// Whether a command line shows a file's contents: its output is a file view (an Edit anchor
/// source), which span dedup folds only as a whole and no filter touches.
pub fn shows_file(line: &str) -> bool {
    classify(line) == Tool::FileRead
}

/// Classifies a whole command line. Any file read makes it a file read (its text must stay
/// an edit anchor); test runners win over build steps (`cargo build && cargo test`); several
/// different tools leave the choice to the content.
pub fn classify(line: &str) -> Tool {
    let mut mains: Vec<Tool> = Vec::new();
    // The current pipeline's tool: its first stage's, unless a later stage that is not a line
    // filter takes over (`cat x | python s.py`: the program's output is what shows).
    let mut pipeline: Option<Tool> = None;
    let mut after_pipe = false;
    for (words, sep) in split(line) {
        let w = strip_wrappers(&words);
        let prog = w.first().map(|f| f.rsplit('/').next().unwrap_or(f)).unwrap_or("");
        let piped_filter = after_pipe && is_line_filter(prog);
        after_pipe = sep == Sep::Pipe;
        if !prog.is_empty() && !piped_filter && !is_quiet(prog) {
            pipeline = Some(simple(&w));
        }
        if sep == Sep::Seq {
            mains.extend(pipeline.take());
        }
    }
    mains.extend(pipeline);
    if mains.is_empty() {
        return Tool::Unknown;
    }
    if mains.contains(&Tool::FileRead) {
        return Tool::FileRead;
    }
    if mains.contains(&Tool::Tests) {
        return Tool::Tests;
    }
    let first = mains[0];
    if mains.iter().all(|t| same_kind(*t, first)) {
        return first;
    }
    if mains.iter().all(|t| matches!(t, Tool::Build | Tool::Other | Tool::Unknown)) && mains.contains(&Tool::Build) {
        return Tool::Build;
    }
    Tool::Other
}

fn same_kind(a: Tool, b: Tool) -> bool {
    std::mem::discriminant(&a) == std::mem::discriminant(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_command_lines() {
        assert_eq!(classify("cargo test --lib fold::"), Tool::Tests);
        assert_eq!(classify("cd /r && RUST_LOG=x cargo test 2>&1 | tail -30"), Tool::Tests);
        assert_eq!(classify("mix test test/a_test.exs 2>&1"), Tool::Tests);
        assert_eq!(classify("python -m pytest -x tests/"), Tool::Tests);
        assert_eq!(classify("uv run pytest"), Tool::Tests);
        assert_eq!(classify("npx vitest run"), Tool::Tests);
        assert_eq!(classify("npm install --no-fund"), Tool::Build);
        assert_eq!(classify("cargo build --release && cargo test"), Tool::Tests);
        assert_eq!(classify("git status"), Tool::GitStatus);
        assert_eq!(classify("git status -s"), Tool::Other);
        assert_eq!(classify("git --no-pager log -n 5"), Tool::GitLog);
        assert_eq!(classify("git log --oneline"), Tool::Other);
        assert_eq!(classify("git diff HEAD~1 -- src"), Tool::GitDiff);
        assert_eq!(classify("rg -n 'fn main' src | head -50"), Tool::Search);
        assert_eq!(classify("ls -la src"), Tool::Ls { long: true, times: false });
        assert_eq!(classify("ls -lt"), Tool::Ls { long: true, times: true });
        assert_eq!(classify("find . -name '*.rs'"), Tool::Find);
        assert_eq!(classify("cat -n src/main.rs"), Tool::FileRead);
        assert_eq!(classify("sed -n '10,40p' src/a.rs"), Tool::FileRead);
        assert_eq!(classify("head -50 README.md"), Tool::FileRead);
        assert_eq!(classify("cd x && cat a.txt | grep foo"), Tool::FileRead);
        assert_eq!(classify("cat input.json | python3 -c 'import sys'"), Tool::Other);
        assert_eq!(classify("bd show spotter-1 2>/dev/null; echo ==="), Tool::Unknown);
        assert_eq!(classify("open src/a.py 40"), Tool::FileRead);
        assert_eq!(classify("echo 'a && cat b'"), Tool::Unknown);
        assert_eq!(classify("cargo build 2>&1 | grep -E 'error|warning'"), Tool::Build);
    }

    #[test]
    fn commands_from_call_arguments() {
        use crate::fold::shapes::call_command;
        let v = serde_json::json!({"command": ["bash", "-lc", "cargo test"]});
        assert_eq!(call_command(&v).as_deref(), Some("cargo test"));
        let v = serde_json::json!({"cmd": "ls -la"});
        assert_eq!(call_command(&v).as_deref(), Some("ls -la"));
        assert!(is_command_tool("Bash", &serde_json::Value::Null));
        assert!(!is_command_tool("Read", &serde_json::Value::Null));
        assert!(is_command_tool("tool", &serde_json::json!({"type": "exec", "command": ["ls"]})));
    }
}
