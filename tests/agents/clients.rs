//! How each real agent is run headless against a base URL: its config files, environment and
//! command line, and where its final answer is in its JSON output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::provider::Dialect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    ClaudeCode,
    Codex,
    OpenCode,
    GeminiCli,
}

/// The key every agent is given; the mock ignores it, the proxy forwards it (`auth = "client"`).
const KEY: &str = "sk-tokenfold-agents-test";
const KEY_ENV: &str = "TOKENFOLD_AGENTS_KEY";

impl Agent {
    pub fn bin(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude",
            Agent::Codex => "codex",
            Agent::OpenCode => "opencode",
            Agent::GeminiCli => "gemini",
        }
    }

    pub fn package(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "@anthropic-ai/claude-code",
            Agent::Codex => "@openai/codex",
            Agent::OpenCode => "opencode-ai",
            Agent::GeminiCli => "@google/gemini-cli",
        }
    }

    /// The dialect the agent speaks with the settings below.
    pub fn dialect(self) -> Dialect {
        match self {
            Agent::ClaudeCode => Dialect::Anthropic,
            Agent::Codex => Dialect::Responses,
            Agent::OpenCode => Dialect::Chat,
            Agent::GeminiCli => Dialect::Gemini,
        }
    }

    pub fn model(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-test",
            // A model Codex knows, so it offers its usual tools (apply_patch among them).
            Agent::Codex => "gpt-5.5",
            Agent::OpenCode => "gpt-test",
            // A Gemini 3 name: the Gemini mock then checks the thought signatures it hands out.
            Agent::GeminiCli => "gemini-3-test",
        }
    }

    /// The command, after `prefix` (strace), with its config files written under `case_dir`.
    /// `base` is the URL the agent talks to, without `/v1`.
    pub fn command(
        self,
        prefix: &[String],
        exe: &Path,
        case_dir: &Path,
        repo: &Path,
        base: &str,
        prompt: &str,
    ) -> std::io::Result<Command> {
        let home = case_dir.join("home");
        std::fs::create_dir_all(&home)?;
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.env_clear()
            .env("PATH", super::prereqs::agent_path())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .env("NO_COLOR", "1")
            .env(KEY_ENV, KEY)
            .current_dir(repo)
            .stdin(Stdio::null());
        match self {
            Agent::ClaudeCode => {
                cmd.env("ANTHROPIC_BASE_URL", base)
                    .env("ANTHROPIC_API_KEY", KEY)
                    .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
                    .env("DISABLE_AUTOUPDATER", "1")
                    .env("DISABLE_TELEMETRY", "1")
                    .env("DISABLE_ERROR_REPORTING", "1")
                    .env("ANTHROPIC_DEFAULT_HAIKU_MODEL", self.model())
                    .env("ANTHROPIC_SMALL_FAST_MODEL", self.model())
                    .args(["-p", prompt, "--output-format", "json", "--model", self.model()])
                    .args(["--permission-mode", "acceptEdits", "--allowedTools", "Read,Edit,Bash,Grep"]);
            }
            Agent::Codex => {
                let codex_home = case_dir.join("codex-home");
                std::fs::create_dir_all(&codex_home)?;
                std::fs::write(codex_home.join("config.toml"), codex_config(base, self.model()))?;
                cmd.env("CODEX_HOME", &codex_home)
                    .args(["exec", "--json", "--skip-git-repo-check", "--sandbox", "danger-full-access"])
                    .arg("-C")
                    .arg(repo)
                    .arg(prompt);
            }
            Agent::OpenCode => {
                let config = case_dir.join("opencode.json");
                let store = case_dir.join("originals");
                std::fs::write(&config, serde_json::to_string_pretty(&opencode_config(base, self.model(), &store))?)?;
                // At every start OpenCode installs @opencode-ai/plugin into its config directory from
                // the npm registry, unless that directory has node_modules and a lockfile listing it.
                let dir = home.join(".config/opencode");
                std::fs::create_dir_all(dir.join("node_modules"))?;
                let lock =
                    json!({"lockfileVersion": 3, "packages": {"": {"dependencies": {"@opencode-ai/plugin": "*"}}}});
                std::fs::write(dir.join("package-lock.json"), lock.to_string())?;
                cmd.env("OPENCODE_CONFIG", &config)
                    .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
                    // Without these two it looks up models.dev and the npm registry at start.
                    .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
                    .env("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1")
                    .env("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
                    .env("OPENCODE_DISABLE_SHARE", "1")
                    .args(["run", "--format", "json", "-m", &format!("tokenfold/{}", self.model()), prompt]);
            }
            Agent::GeminiCli => {
                // With GOOGLE_GEMINI_BASE_URL alone it picks a "gateway" sign-in that
                // non-interactive mode refuses: the API key method is chosen in its settings,
                // with usage statistics, telemetry and update checks off.
                let dir = home.join(".gemini");
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("settings.json"), gemini_settings().to_string())?;
                cmd.env("GEMINI_API_KEY", KEY)
                    .env("GOOGLE_GEMINI_BASE_URL", base)
                    // Headless runs refuse an untrusted folder.
                    .env("GEMINI_CLI_TRUST_WORKSPACE", "true")
                    // --yolo: without approval it offers no editing or shell tools headless.
                    .args(["-p", prompt, "--output-format", "json", "--yolo", "-m", self.model()]);
            }
        }
        Ok(cmd)
    }

    /// The agent's final answer from its stdout.
    pub fn final_answer(self, stdout: &str) -> Option<String> {
        match self {
            Agent::ClaudeCode => {
                let v: Value = serde_json::from_str(stdout.trim()).ok()?;
                (v["is_error"] != true).then(|| v["result"].as_str().map(str::to_string)).flatten()
            }
            Agent::Codex => json_lines(stdout)
                .filter(|v| v["type"] == "item.completed" && v["item"]["type"] == "agent_message")
                .filter_map(|v| v["item"]["text"].as_str().map(str::to_string))
                .last(),
            Agent::OpenCode => json_lines(stdout)
                .filter(|v| v["type"] == "text")
                .filter_map(|v| v["part"]["text"].as_str().map(str::to_string))
                .last(),
            Agent::GeminiCli => {
                let v: Value = serde_json::from_str(stdout.trim()).ok()?;
                v["response"].as_str().map(str::to_string)
            }
        }
    }
}

fn json_lines(s: &str) -> impl Iterator<Item = Value> + '_ {
    s.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok())
}

fn codex_config(base: &str, model: &str) -> String {
    format!(
        r#"model = "{model}"
model_provider = "tokenfold"
check_for_update_on_startup = false

[model_providers.tokenfold]
name = "tokenfold"
base_url = "{base}/v1"
env_key = "{KEY_ENV}"
wire_api = "responses"

[analytics]
enabled = false

# Plugins, apps and the remote plugin catalog reach github.com and chatgpt.com at start-up.
[features]
plugins = false
apps = false
remote_plugin = false
"#
    )
}

fn gemini_settings() -> Value {
    json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false},
        "general": {"disableAutoUpdate": true, "disableUpdateNag": true}
    })
}

/// `store`: the proxy's originals, outside the project, which OpenCode reads only when allowed to
/// (as a user allows `~/.cache/tokenfold/o/*`).
fn opencode_config(base: &str, model: &str, store: &Path) -> Value {
    json!({
        "$schema": "https://opencode.ai/config.json",
        "model": format!("tokenfold/{model}"),
        "small_model": format!("tokenfold/{model}"),
        "autoupdate": false,
        "share": "disabled",
        "permission": {
            "edit": "allow",
            "bash": "allow",
            "external_directory": {format!("{}/*", store.display()): "allow"}
        },
        "provider": {
            "tokenfold": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "tokenfold",
                "options": {"baseURL": format!("{base}/v1"), "apiKey": format!("{{env:{KEY_ENV}}}")},
                "models": {model: {"name": model, "tool_call": true}}
            }
        }
    })
}

pub struct Run {
    pub code: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` in its own process group, killed whole after `limit`.
pub fn run(mut cmd: Command, out_dir: &Path, limit: Duration) -> std::io::Result<Run> {
    use std::os::unix::process::CommandExt;
    let (out_path, err_path): (PathBuf, PathBuf) = (out_dir.join("agent.stdout"), out_dir.join("agent.stderr"));
    cmd.stdout(std::fs::File::create(&out_path)?).stderr(std::fs::File::create(&err_path)?).process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if started.elapsed() > limit {
            timed_out = true;
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(Run {
        code: status.and_then(|s| s.code()),
        timed_out,
        elapsed: started.elapsed(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    })
}
