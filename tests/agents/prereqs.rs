//! What the agents test needs on this machine, checked before anything is installed or run, so a
//! missing tool is named (with the Debian package that brings it) instead of surfacing as an odd
//! failure of one step. `.ci/run` installs them all; under `CI=true` a missing one fails the run,
//! elsewhere the cases that need it say SKIPPED and why.

use std::path::{Path, PathBuf};

use super::clients::Agent;

struct Prereq {
    bin: &'static str,
    package: &'static str,
    why: &'static str,
    /// `None`: every case needs it.
    only: Option<Agent>,
}

const PREREQS: [Prereq; 5] = [
    Prereq { bin: "node", package: "nodejs", why: "the agents run on it", only: None },
    Prereq { bin: "npm", package: "npm", why: "it installs the pinned agents", only: None },
    Prereq { bin: "git", package: "git", why: "it holds the scratch repository the agents edit", only: None },
    Prereq { bin: "strace", package: "strace", why: "it records every address an agent tries to reach", only: None },
    Prereq {
        bin: "rg",
        package: "ripgrep",
        why: "OpenCode's Grep runs it; without it OpenCode downloads ripgrep from github.com at run time, \
              which fails offline (a DNS query, then \"ripgrep execution failed\")",
        only: Some(Agent::OpenCode),
    },
];

/// Where the agents look for programs, besides the directories of the tools found above.
const AGENT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A tool this machine lacks.
pub struct Missing {
    pub bin: &'static str,
    only: Option<Agent>,
    line: String,
}

impl Missing {
    /// Whether a case of `agent` needs it.
    pub fn needed_by(&self, agent: Agent) -> bool {
        self.only.is_none_or(|a| a == agent)
    }

    /// `` `rg` is missing (Debian package ripgrep): why `` for messages.
    pub fn line(&self) -> &str {
        &self.line
    }
}

/// The tools this machine lacks. `STRACE` names another strace, as `sandbox::strace` reads it.
pub fn missing() -> Vec<Missing> {
    PREREQS
        .iter()
        .filter(|p| match p.bin {
            "strace" => std::env::var("STRACE").map_or_else(|_| find("strace").is_none(), |s| find(&s).is_none()),
            bin => find(bin).is_none(),
        })
        .map(|p| Missing {
            bin: p.bin,
            only: p.only,
            line: format!("`{}` is missing (Debian package {}): {}", p.bin, p.package, p.why),
        })
        .collect()
}

/// The PATH the agents run with: the usual directories, after the directories where this
/// machine keeps the tools above when they live elsewhere (nvm's node, cargo's rg), so that the
/// agents find exactly what was checked.
pub fn agent_path() -> String {
    let usual: Vec<&Path> = AGENT_PATH.split(':').map(Path::new).collect();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for p in &PREREQS {
        if let Some(dir) = find(p.bin).and_then(|f| f.parent().map(Path::to_path_buf)) {
            if !usual.contains(&dir.as_path()) && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    let mut path: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    path.push(AGENT_PATH.to_string());
    path.join(":")
}

/// CI systems (GitHub Actions, GitLab, ...) set `CI=true`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// `bin` as the shell would find it: a path as it is, else the first executable in `PATH`.
fn find(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        return is_executable(Path::new(bin)).then(|| PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(bin)).find(|f| is_executable(f))
}

fn is_executable(f: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(f).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
