//! Shared test harness: the real `tokenfold` binary on port 0, and in-process mock providers.
#![allow(dead_code)]

pub mod gemini;
pub mod mock;
pub mod prompt_cache;
pub mod scripted;
pub mod services;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `tokenfold serve` child process; killed on drop.
pub struct Proxy {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    stderr: Arc<Mutex<String>>,
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The proxy's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the proxy has written to stderr so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `host:port` the proxy listens on.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// Sends the proxy a signal (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the proxy to exit; its exit status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics")).await.unwrap().text().await.unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tokenfold serve ARGS... --listen 127.0.0.1:0` and waits until it listens.
pub fn spawn_proxy(args: &[&str], env: &[(&str, &str)]) -> Proxy {
    try_spawn_proxy(args, env).unwrap_or_else(|(code, logs)| panic!("proxy did not start (exit {code:?}):\n{logs}"))
}

/// Like `spawn_proxy`, but `shell` (e.g. `ulimit -n 256; umask 000`) runs first in the proxy's
/// own process, which then execs the binary.
pub fn spawn_proxy_after(shell: &str, args: &[&str], env: &[(&str, &str)]) -> Proxy {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("{shell}\nexec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_tokenfold")]);
    start(cmd, args, env).unwrap_or_else(|(code, logs)| panic!("proxy did not start (exit {code:?}):\n{logs}"))
}

/// Like `spawn_proxy`, but returns the exit code and output when the proxy refuses to start.
pub fn try_spawn_proxy(args: &[&str], env: &[(&str, &str)]) -> Result<Proxy, (Option<i32>, String)> {
    start(Command::new(env!("CARGO_BIN_EXE_tokenfold")), args, env)
}

fn start(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Result<Proxy, (Option<i32>, String)> {
    cmd.arg("serve").args(args);
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    // The caller's `env` comes last so it can override these (a test may clear NO_COLOR).
    cmd.env_remove("TOKENFOLD_CONFIG")
        .env("NO_COLOR", "1")
        .env("XDG_DATA_HOME", std::env::temp_dir().join(format!("tokenfold-tests-{}", std::process::id())))
        // Originals of filtered command output go to the cache dir: keep tests out of the real one.
        .env("XDG_CACHE_HOME", std::env::temp_dir().join(format!("tokenfold-tests-{}", std::process::id())))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tokenfold");
    let stderr = child.stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let base = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send(base);
            }
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(base) = rx.recv_timeout(Duration::from_millis(20)) {
            return Ok(Proxy { child, base, stderr: logs });
        }
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(50));
            let out = logs.lock().unwrap().clone();
            return Err((status.code(), out));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err((None, logs.lock().unwrap().clone()));
        }
    }
}

static CONFIG_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty temp directory (unique per call and per test process).
pub fn temp_dir(name: &str) -> PathBuf {
    let n = CONFIG_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tokenfold-tests-{}", std::process::id())).join(format!("{n}-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to a fresh temp file and returns its path.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    let n = CONFIG_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tokenfold-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{n}-{name}"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A config with one provider per dialect, all pointing at `base` (a mock's `http://addr`).
pub fn config_for(base: &str, extra_server: &str, auth: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{extra_server}

[timeouts]
connect_ms = 2000
first_byte_ms = 1500
idle_ms = 1500

[[providers]]
name = "mock-anthropic"
kind = "anthropic"
base_url = "{base}/v1"
{auth}
models = ["claude-test"]

[[providers]]
name = "mock-openai"
kind = "openai"
base_url = "{base}/v1"
{auth}
models = ["gpt-test"]

[[providers]]
name = "mock-responses"
kind = "openai-responses"
base_url = "{base}/v1"
{auth}

[default_upstream]
anthropic = "mock-anthropic"
openai-chat = "mock-openai"
openai-responses = "mock-responses"
"#
    )
}
