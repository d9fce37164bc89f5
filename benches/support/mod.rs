//! Pieces of the proxy overhead bench: the zero-delay mock provider, a keep-alive HTTP/1.1 load
//! client, realistic request bodies, and the `tokenfold serve` child process.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Mock provider

const ANTHROPIC_REPLY: &[u8] = br#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Done."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":250,"output_tokens":3}}"#;
const GEMINI_REPLY: &[u8] = br#"{"candidates":[{"content":{"parts":[{"text":"Done."}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":250,"candidatesTokenCount":3,"totalTokenCount":253},"modelVersion":"gemini-bench","responseId":"bench"}"#;
const OPENAI_REPLY: &[u8] = br#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"gpt-5","choices":[{"index":0,"message":{"role":"assistant","content":"Done."},"finish_reason":"stop"}],"usage":{"prompt_tokens":250,"completion_tokens":3,"total_tokens":253}}"#;

/// The first SSE event goes out at once; the rest follow after `STREAM_GAP`, so the time to the
/// first event is distinct from the time to the end of the stream.
pub const STREAM_GAP: Duration = Duration::from_millis(1);
const ANTHROPIC_SSE: [&str; 2] = [
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":250,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
     event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Done.\"}}\n\n\
     event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
     event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n\n\
     event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
];
const OPENAI_SSE: [&str; 2] = [
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Done.\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":250,\"completion_tokens\":3,\"total_tokens\":253}}\n\n\
     data: [DONE]\n\n",
];

/// Gemini streams: one `GenerateContentResponse` per event, `\r\n\r\n` between events, no end marker.
const GEMINI_SSE: [&str; 2] = [
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Do\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":250,\"totalTokenCount\":250},\"modelVersion\":\"gemini-bench\",\"responseId\":\"bench\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"ne.\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":250,\"candidatesTokenCount\":3,\"totalTokenCount\":253},\"modelVersion\":\"gemini-bench\",\"responseId\":\"bench\"}\r\n\r\n",
];

pub type MockBody = BoxBody<Bytes, Infallible>;

/// Starts the mock on 127.0.0.1:0 on its own single-threaded runtime; it lives until the process exits.
pub fn start_mock() -> SocketAddr {
    spawn_mock("mock-provider", mock_handle)
}

/// Serves `handle` over HTTP/1.1 on 127.0.0.1:0 from a thread of its own (a single-threaded
/// runtime), until the process exits. A handler's error resets the connection.
pub fn spawn_mock<F, Fut, E>(name: &str, handle: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<MockBody>, E>> + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the mock provider");
    listener.set_nonblocking(true).expect("mock listener non-blocking");
    let addr = listener.local_addr().expect("mock address");
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("mock runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("mock tokio listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let _ = stream.set_nodelay(true);
                    let handle = handle.clone();
                    tokio::task::spawn_local(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service_fn(handle))
                            .await;
                    });
                }
            });
        })
        .expect("spawn the mock thread");
    addr
}

async fn mock_handle(req: Request<Incoming>) -> Result<Response<MockBody>, Infallible> {
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", Full::new(Bytes::new()).boxed())),
    };
    // Gemini names streaming in the path; the others in the body.
    let streamed = memchr::memmem::find(&body, b"\"stream\":true").is_some();
    let (json_reply, sse, streamed) = match path.as_str() {
        "/v1/messages" => (ANTHROPIC_REPLY, ANTHROPIC_SSE, streamed),
        "/v1/chat/completions" => (OPENAI_REPLY, OPENAI_SSE, streamed),
        "/v1beta/models/gemini-bench:generateContent" => (GEMINI_REPLY, GEMINI_SSE, false),
        "/v1beta/models/gemini-bench:streamGenerateContent" => (GEMINI_REPLY, GEMINI_SSE, true),
        _ => return Ok(reply(StatusCode::NOT_FOUND, "text/plain", Full::new(Bytes::new()).boxed())),
    };
    if !streamed {
        return Ok(reply(StatusCode::OK, "application/json", Full::new(Bytes::from_static(json_reply)).boxed()));
    }
    let events = futures_util::stream::unfold(0usize, move |i| async move {
        let event = sse.get(i)?;
        if i > 0 {
            tokio::time::sleep(STREAM_GAP).await;
        }
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(event.as_bytes()))), i + 1))
    });
    Ok(reply(StatusCode::OK, "text/event-stream", StreamBody::new(events).boxed()))
}

fn reply(status: StatusCode, content_type: &'static str, body: MockBody) -> Response<MockBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

// ---------------------------------------------------------------------------------------------
// Request bodies

#[derive(Clone, Copy, PartialEq)]
pub enum Api {
    Anthropic,
    OpenaiChat,
    /// The model `gemini-bench`; a stream is asked for in the URL.
    Gemini {
        stream: bool,
    },
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Anthropic => "/v1/messages",
            Api::OpenaiChat => "/v1/chat/completions",
            Api::Gemini { stream: false } => "/v1beta/models/gemini-bench:generateContent",
            Api::Gemini { stream: true } => "/v1beta/models/gemini-bench:streamGenerateContent?alt=sse",
        }
    }
}

/// A request ready to send many times (the body is shared, not copied).
#[derive(Clone)]
pub struct Prepared {
    pub api: Api,
    pub body: Bytes,
}

/// Source-file-like text for tool results (varied, with newlines and quotes to escape).
fn file_text(i: usize) -> String {
    let mut s = String::new();
    for line in 0..24 {
        s.push_str(&format!(
            "    let value_{i}_{line} = compute(\"key-{line}\", {}, &config.section_{});\n",
            (i * 31 + line * 7) % 997,
            line % 5
        ));
    }
    s
}

/// An exchange the agent had earlier: a tool call and its result.
fn turn(api: Api, i: usize) -> Vec<Value> {
    let id = format!("call_{i:04}");
    let path = format!("src/module_{}/file_{i}.rs", i % 7);
    match api {
        Api::Anthropic => vec![
            json!({"role": "assistant", "content": [
                {"type": "text", "text": format!("Let me look at {path}.")},
                {"type": "tool_use", "id": id, "name": "read_file", "input": {"path": path}}]}),
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": id, "content": file_text(i)}]}),
        ],
        Api::OpenaiChat => vec![
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
                "function": {"name": "read_file", "arguments": json!({"path": path}).to_string()}}]}),
            json!({"role": "tool", "tool_call_id": id, "content": file_text(i)}),
        ],
        Api::Gemini { .. } => vec![
            json!({"role": "model", "parts": [{"text": format!("Let me look at {path}.")},
                {"functionCall": {"id": id, "name": "read_file", "args": {"path": path}}, "thoughtSignature": "c2lnbmF0dXJl"}]}),
            json!({"role": "user", "parts": [
                {"functionResponse": {"id": id, "name": "read_file", "response": {"output": file_text(i)}}}]}),
        ],
    }
}

fn tools(api: Api) -> Value {
    let names = ["read_file", "write_file", "edit_file", "run_command", "search_code", "list_dir"];
    let schema = |n: &str| {
        json!({"type": "object", "properties": {
            "path": {"type": "string", "description": format!("Path of the file or directory for {n}, relative to the workspace root.")},
            "content": {"type": "string", "description": "Text to use; omit when not needed."}},
            "required": ["path"]})
    };
    let list: Vec<Value> = names
        .iter()
        .map(|n| match api {
            Api::Anthropic => json!({"name": n, "description": format!("Tool {n}: acts on the workspace."), "input_schema": schema(n)}),
            Api::OpenaiChat => json!({"type": "function", "function": {"name": n,
                "description": format!("Tool {n}: acts on the workspace."), "parameters": schema(n)}}),
            Api::Gemini { .. } => json!({"name": n, "description": format!("Tool {n}: acts on the workspace."),
                "parametersJsonSchema": schema(n)}),
        })
        .collect();
    match api {
        Api::Gemini { .. } => json!([{ "functionDeclarations": list }]),
        _ => Value::Array(list),
    }
}

fn envelope(api: Api, history: &[Value], ask: &str, stream: bool, with_tools: bool) -> Value {
    let system = "You are a coding agent working in a Rust repository. Read before you edit; keep changes small.";
    let mut messages: Vec<Value> = Vec::with_capacity(history.len() + 2);
    let mut v = match api {
        Api::Anthropic => json!({"model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": stream,
            "system": [{"type": "text", "text": system}]}),
        Api::OpenaiChat => {
            messages.push(json!({"role": "system", "content": system}));
            json!({"model": "gpt-5", "max_tokens": 4096, "stream": stream})
        }
        Api::Gemini { .. } => json!({"systemInstruction": {"parts": [{"text": system}]},
            "generationConfig": {"maxOutputTokens": 4096}}),
    };
    let said = |text: &str| match api {
        Api::Gemini { .. } => json!({"role": "user", "parts": [{"text": text}]}),
        _ => json!({"role": "user", "content": text}),
    };
    messages.push(said("Fix the failing test in the parser module."));
    messages.extend(history.iter().cloned());
    messages.push(said(ask));
    let key = if matches!(api, Api::Gemini { .. }) { "contents" } else { "messages" };
    v[key] = Value::Array(messages);
    if with_tools {
        v["tools"] = tools(api);
    }
    v
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

/// A chat-shaped JSON request of exactly `size` bytes: system prompt, tools (for large bodies),
/// earlier tool calls with file contents, and a last user message padded to the size.
pub fn chat_body(api: Api, size: usize, stream: bool) -> Prepared {
    let with_tools = size >= 16 * 1024;
    let mut history: Vec<Value> = Vec::new();
    for i in 0.. {
        let mut trial = history.clone();
        trial.extend(turn(api, i));
        if json_len(&envelope(api, &trial, "", stream, with_tools)) + 64 > size {
            break;
        }
        history = trial;
    }
    let base = json_len(&envelope(api, &history, "", stream, with_tools));
    assert!(base <= size, "a {size}-byte body is too small for the request envelope ({base} bytes)");
    let words = "Please check the error handling around the tokenizer and keep the public API unchanged. ";
    let ask: String = words.chars().cycle().take(size - base).collect();
    let body = serde_json::to_vec(&envelope(api, &history, &ask, stream, with_tools)).expect("serialize body");
    assert_eq!(body.len(), size, "body padding is exact");
    Prepared { api, body: Bytes::from(body) }
}

// ---------------------------------------------------------------------------------------------
// Load client: one keep-alive HTTP/1.1 connection per concurrent caller.

pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

pub struct Timing {
    /// Until the first body frame (the first SSE event of a stream).
    pub first_byte: Duration,
    /// Until the end of the body.
    pub total: Duration,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    /// Sends one request and reads the whole response; anything but a 200 is an error.
    pub async fn send(&mut self, p: &Prepared) -> Result<Timing, String> {
        self.sender.ready().await.map_err(|e| format!("connection closed: {e}"))?;
        let mut req = Request::post(p.api.path())
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("user-agent", "tokenfold-bench/1")
            .header("x-api-key", "sk-bench-not-a-secret");
        if p.api == Api::Anthropic {
            req = req.header("anthropic-version", "2023-06-01");
        }
        if matches!(p.api, Api::Gemini { .. }) {
            req = req.header("x-goog-api-key", "bench-not-a-secret");
        }
        let req = req.body(Full::new(p.body.clone())).map_err(|e| format!("build request: {e}"))?;
        let start = Instant::now();
        let resp = self.sender.send_request(req).await.map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut first_byte = None;
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the response: {e}"))?;
            if let Some(data) = frame.data_ref() {
                first_byte.get_or_insert_with(|| start.elapsed());
                received.extend_from_slice(data);
            }
        }
        let total = start.elapsed();
        if status != StatusCode::OK || received.is_empty() {
            let text = String::from_utf8_lossy(&received[..received.len().min(300)]).into_owned();
            return Err(format!("{} answered {status}: {text}", p.api.path()));
        }
        Ok(Timing { first_byte: first_byte.unwrap_or(total), total })
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy process

/// A running `tokenfold serve`; killed when dropped (also when the bench panics).
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    /// From spawn until the listening line, and until the first 200 from /healthz.
    pub to_listening: Duration,
    pub to_first_200: Duration,
    log_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Proxy {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the proxy wrote to stderr (for error messages).
    pub fn log_tail(&self) -> String {
        self.log_tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `BIN serve --upstream URL --listen 127.0.0.1:0`, learns the port from stderr, and polls
/// GET /healthz until it answers 200. Stderr keeps being drained (the proxy may log every request with --debug).
pub fn spawn_proxy(bin: &Path, upstream: SocketAddr, ledger: &Path) -> Result<Proxy, String> {
    spawn_proxy_with(bin, upstream, ledger, &[])
}

/// `spawn_proxy` with further `serve` arguments.
pub fn spawn_proxy_with(bin: &Path, upstream: SocketAddr, ledger: &Path, extra: &[&str]) -> Result<Proxy, String> {
    let mut args = vec!["--upstream".to_string(), format!("http://{upstream}")];
    args.extend(extra.iter().map(|a| a.to_string()));
    spawn_serve(bin, &args, ledger, &[])
}

/// Spawns `BIN serve ARGS --listen 127.0.0.1:0` with the ledger at `ledger` and `env` added.
pub fn spawn_serve(bin: &Path, args: &[String], ledger: &Path, env: &[(&str, &Path)]) -> Result<Proxy, String> {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("TOKENFOLD_CONFIG")
        .env("TOKENFOLD_LEDGER", ledger)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let log_tail = Arc::new(Mutex::new(VecDeque::new()));
    let (tx, rx) = mpsc::channel();
    let tail = log_tail.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("tokenfold listening on http://") {
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send((addr, Instant::now()));
            }
            if let Ok(mut t) = tail.lock() {
                if t.len() == 40 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    });
    // From here on the child is killed on every early return.
    let mut proxy = Proxy {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        to_listening: Duration::ZERO,
        to_first_200: Duration::ZERO,
        log_tail,
    };
    let (addr, listening_at) = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| format!("the proxy printed no listening line within 10 s:\n{}", proxy.log_tail()))?;
    proxy.to_listening = listening_at.duration_since(started);
    proxy.addr = addr.parse().map_err(|_| format!("cannot parse the listening address `{addr}`"))?;
    let deadline = started + Duration::from_secs(10);
    loop {
        if healthz_ok(proxy.addr) {
            proxy.to_first_200 = started.elapsed();
            return Ok(proxy);
        }
        if Instant::now() > deadline {
            return Err(format!("GET /healthz gave no 200 within 10 s:\n{}", proxy.log_tail()));
        }
        if let Ok(Some(status)) = proxy.child.try_wait() {
            return Err(format!("the proxy exited ({status}):\n{}", proxy.log_tail()));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn healthz_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return false };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// (VmRSS, VmHWM) of a process in bytes.
pub fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User plus system CPU time a process has used (from /proc/PID/stat, USER_HZ = 100).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

// ---------------------------------------------------------------------------------------------
// Finding the binary

/// `$TOKENFOLD_BIN`, else the release binary, rebuilt with `cargo build --release` when it is
/// missing or older than the sources.
pub fn proxy_binary(manifest_dir: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("TOKENFOLD_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() { Ok(bin) } else { Err(format!("TOKENFOLD_BIN={} is not a file", bin.display())) };
    }
    // Cargo builds the binary (bench profile = release settings) before running a bench.
    let bin = option_env!("CARGO_BIN_EXE_tokenfold")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir.join("release").join("tokenfold"));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let newest_source =
        ["src", "config", "Cargo.toml", "Cargo.lock"].iter().filter_map(|p| newest_mtime(&manifest_dir.join(p))).max();
    let stale = match (built, newest_source) {
        (None, _) => true,
        (Some(b), Some(s)) => b < s,
        (Some(_), None) => false,
    };
    if !stale {
        return Ok(bin);
    }
    // Under `cargo bench` cargo has just built it; a nested build would only race with edits.
    if std::env::var_os("CARGO_PKG_NAME").is_some() && bin.is_file() {
        eprintln!("bench: sources changed after cargo built {}; measuring it as built", bin.display());
        return Ok(bin);
    }
    eprintln!(
        "bench: {} is missing or older than the sources; running cargo build --release --bin tokenfold",
        bin.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--release", "--bin", "tokenfold"])
        .current_dir(manifest_dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let release = target_dir.join("release").join("tokenfold");
    match (ok, release.is_file(), bin.is_file()) {
        (true, true, _) => Ok(release),
        (false, _, true) => {
            eprintln!("bench: the build failed; measuring the existing {}", bin.display());
            Ok(bin)
        }
        _ => Err("cargo build --release --bin tokenfold failed and there is no binary to measure".into()),
    }
}

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path).ok()?.filter_map(|e| e.ok()).filter_map(|e| newest_mtime(&e.path())).max()
}
