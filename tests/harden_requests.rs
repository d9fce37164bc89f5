//! Hostile requests and pages (issue 15, items 2, 5 and 6), against the real binary: a web page
//! posting `text/plain` JSON with its `Origin`, DNS rebinding (`Host: evil.example`), CORS
//! preflights, a 200 MB SSE event with no blank line, invalid UTF-8 and lone surrogates in a
//! body, and the modes of the files the proxy writes under `umask 000`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::mock::{self, Reply};
use common::{config_for, spawn_proxy, spawn_proxy_after, temp_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(base: &str, server: &str) -> String {
    config_for(base, server, "auth = \"client\"")
}

/// Sends `request` as it is on a new connection and returns the whole answer.
fn raw(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(addr: &str, path: &str, host: &str) -> String {
    raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
}

const CHAT: &str = r#"{"model":"gpt-test","messages":[{"role":"user","content":"spend the user's quota"}]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_can_neither_spend_the_quota_nor_read_answers() {
    let mock = mock::start(|_| Reply::ok_json(mock::chat_completion("hi"))).await;
    let cfg = temp_file("origins.toml", &config(&mock.base(), ""));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off")]);
    let addr = proxy.addr();
    let c = reqwest::Client::new();

    // A page's `fetch(url, {method: "POST", body})`: text/plain needs no preflight.
    for (path, shape) in [("/v1/chat/completions", "\"error\":{"), ("/v1/messages", "\"type\":\"error\"")] {
        let r = c
            .post(proxy.url(path))
            .header("content-type", "text/plain;charset=UTF-8")
            .header("origin", "https://evil.example")
            .body(CHAT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
        let text = r.text().await.unwrap();
        assert!(text.contains(shape) && text.contains("server.allowed_origins"), "{path}: {text}");
    }
    assert!(mock.requests().is_empty(), "a cross-origin request was forwarded");

    // DNS rebinding: the page's own name, resolved to 127.0.0.1.
    for path in ["/dashboard/data", "/pool", "/o/0123456789ab", "/v1/models", "/healthz"] {
        let answer = get(&addr, path, "evil.example:8411");
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
        assert!(answer.contains("server.allowed_hosts"), "{path}: {answer}");
    }
    // The same machine's names still work, and so does a same-origin page.
    for host in [addr.as_str(), "localhost:8411", "[::1]:8411"] {
        assert!(get(&addr, "/pool", host).starts_with("HTTP/1.1 200"), "{host}");
    }
    let r = c.post(proxy.url("/v1/chat/completions")).header("origin", proxy.base.as_str()).body(CHAT).send().await;
    assert_eq!(r.unwrap().status().as_u16(), 200);
    let r = c.post(proxy.url("/v1/chat/completions")).header("origin", "http://localhost:5173").body(CHAT).send().await;
    assert_eq!(r.unwrap().status().as_u16(), 200, "a local web app on another port");

    // A preflight from a page not allowed gets no CORS grant.
    let preflight = c
        .request(reqwest::Method::OPTIONS, proxy.url("/v1/chat/completions"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 403);
    assert!(preflight.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_origins_and_hosts_are_served_with_cors() {
    let mock = mock::start(|_| Reply::ok_json(mock::chat_completion("hi"))).await;
    let server = "allowed_origins = [\"https://app.example.com\"]\nallowed_hosts = [\"tokenfold.internal\"]";
    let cfg = temp_file("cors.toml", &config(&mock.base(), server));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off")]);
    let c = reqwest::Client::new();
    let preflight = c
        .request(reqwest::Method::OPTIONS, proxy.url("/v1/chat/completions"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, authorization")
        .header("access-control-request-private-network", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert_eq!(h["access-control-allow-headers"], "content-type, authorization");
    assert_eq!(h["access-control-allow-private-network"], "true");
    let r =
        c.post(proxy.url("/v1/chat/completions")).header("origin", "https://app.example.com").body(CHAT).send().await;
    let r = r.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(mock.requests().len(), 1);
    assert!(get(&proxy.addr(), "/pool", "Tokenfold.Internal:8411").starts_with("HTTP/1.1 200"));
    assert!(get(&proxy.addr(), "/pool", "other.internal").starts_with("HTTP/1.1 403"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_api_keys_any_host_may_ask_but_needs_the_key() {
    let mock = mock::start(|_| Reply::ok_json(mock::chat_completion("hi"))).await;
    let cfg = temp_file("keyed-hosts.toml", &config(&mock.base(), "api_keys = [\"${TF_HOSTS_KEY}\"]"));
    let proxy =
        spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off"), ("TF_HOSTS_KEY", "k1")]);
    let with_key =
        "GET /v1/models HTTP/1.1\r\nHost: tokenfold.team:8411\r\nx-tokenfold-key: k1\r\nConnection: close\r\n\r\n";
    assert!(raw(&proxy.addr(), with_key).starts_with("HTTP/1.1 200"));
    assert!(get(&proxy.addr(), "/v1/models", "tokenfold.team:8411").starts_with("HTTP/1.1 401"));
}

/// A provider whose stream has one `size`-byte event with no blank line, then a last event.
async fn huge_event_provider(size: usize, first: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request (headers and a body of Content-Length bytes).
                let mut req = Vec::new();
                let mut buf = [0u8; 65536];
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                let piece = vec![b'x'; 1 << 20];
                let mut sent = 0;
                let mut ok = s.write_all(head.as_bytes()).await.is_ok() && s.write_all(first).await.is_ok();
                ok &= s.write_all(b"data: {\"pad\":\"").await.is_ok();
                while ok && sent < size {
                    ok = s.write_all(&piece).await.is_ok();
                    sent += piece.len();
                }
                let _ = s.write_all(b"\"}\n\ndata: [DONE]\n\n").await;
            });
        }
    });
    format!("http://{addr}")
}

/// The proxy's peak resident memory, from /proc.
fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

const FIRST_CHAT_EVENT: &[u8] = b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"a\"},\"finish_reason\":null}]}\n\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_200_mb_event_is_relayed_without_being_held() {
    let base = huge_event_provider(200 << 20, FIRST_CHAT_EVENT).await;
    let cfg = temp_file("huge.toml", &config(&base, ""));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off")]);
    let before = peak_rss_mb(proxy.pid());
    let body = r#"{"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut r = reqwest::Client::new().post(proxy.url("/v1/chat/completions")).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (mut total, mut tail) = (0usize, Vec::new());
    while let Some(chunk) = r.chunk().await.unwrap() {
        total += chunk.len();
        tail.extend_from_slice(&chunk);
        let keep = tail.len().saturating_sub(64);
        tail.drain(..keep);
    }
    assert!(total > 200 << 20, "relayed {total} bytes");
    assert!(tail.ends_with(b"data: [DONE]\n\n"), "{}", String::from_utf8_lossy(&tail));
    let peak = peak_rss_mb(proxy.pid());
    eprintln!("proxy peak RSS: {before} MB before, {peak} MB after relaying a 200 MB event");
    assert!(peak < before + 80, "peak RSS {peak} MB (was {before} MB before the 200 MB event)");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_too_large_to_translate_ends_the_stream_with_an_error_event() {
    let base = huge_event_provider(20 << 20, FIRST_CHAT_EVENT).await;
    let proxy =
        spawn_proxy(&["--upstream", &base, "--upstream-dialect", "openai-chat"], &[("TOKENFOLD_LEDGER", "off")]);
    let body = r#"{"model":"claude-test","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = reqwest::Client::new()
        .post(proxy.url("/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = tokio::time::timeout(Duration::from_secs(20), r.text()).await.expect("stream never ended").unwrap();
    assert!(text.contains("event: message_start"), "{}", &text[..text.len().min(2000)]);
    let error = text.split("event: error").nth(1).unwrap_or_else(|| panic!("no error event: {text}"));
    assert!(error.contains("\"type\":\"error\"") && error.contains("over 16 MiB"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn text_that_is_not_utf8_gets_a_400_and_is_not_forwarded() {
    let mock = mock::start(|_| Reply::ok_json(mock::chat_completion("hi"))).await;
    let cfg = temp_file("utf8.toml", &config(&mock.base(), ""));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off")]);
    let c = reqwest::Client::new();
    let bodies: [(&str, Vec<u8>); 4] = [
        (
            "/v1/chat/completions",
            b"{\"model\":\"gpt-test\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}".to_vec(),
        ),
        (
            "/v1/chat/completions",
            br#"{"model":"gpt-test","messages":[{"role":"user","content":"half \ud83d a pair"}]}"#.to_vec(),
        ),
        (
            "/v1/messages",
            br#"{"model":"claude-test","max_tokens":5,"messages":[{"role":"user","content":"\udc00"}]}"#.to_vec(),
        ),
        ("/v1/responses", b"{\"model\":\"gpt-test\",\"input\":\"\xc3\"}".to_vec()),
    ];
    for (path, body) in bodies {
        let r = c.post(proxy.url(path)).header("anthropic-version", "2023-06-01").body(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
        let e: serde_json::Value = r.json().await.unwrap();
        let msg = e["error"]["message"].as_str().unwrap_or_else(|| panic!("{e}"));
        assert!(msg.contains("not valid JSON") && msg.contains("line 1 column"), "{path}: {msg}");
    }
    assert!(mock.requests().is_empty(), "a body with broken text was forwarded");
    // A proper surrogate pair and non-ASCII text go through.
    let fine = r#"{"model":"gpt-test","messages":[{"role":"user","content":"café \ud83d\ude00 😀"}]}"#;
    assert_eq!(c.post(proxy.url("/v1/chat/completions")).body(fine).send().await.unwrap().status().as_u16(), 200);
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_private_whatever_the_umask() {
    let mock = mock::start(|_| Reply::ok_json(mock::anthropic_message("ok"))).await;
    let home = std::env::temp_dir().join(format!("tokenfold-modes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let (data, cache) = (home.join("data"), home.join("cache"));
    let cfg = temp_file("modes.toml", &config(&mock.base(), ""));
    let proxy = spawn_proxy_after(
        "umask 000",
        &["--config", cfg.to_str().unwrap()],
        &[("XDG_DATA_HOME", data.to_str().unwrap()), ("XDG_CACHE_HOME", cache.to_str().unwrap())],
    );
    // A long command output: filtered, so its original is stored.
    let output: String =
        (0..400).map(|i| format!("npm http fetch GET 200 https://registry.example/pkg-{i} 12ms\n")).collect();
    let body = serde_json::json!({"model": "claude-test", "max_tokens": 100, "messages": [
        {"role": "user", "content": "install the deps"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "npm install"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": output + "added 48 packages in 3s\n"}]}]});
    let r = reqwest::Client::new().post(proxy.url("/v1/messages")).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let originals = cache.join("tokenfold/o");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let found: Vec<_> = std::fs::read_dir(&originals)
            .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "txt")).collect())
            .unwrap_or_default();
        let ledger_written = rusqlite::Connection::open(data.join("tokenfold/ledger.db"))
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n == 1);
        if !found.is_empty() && ledger_written {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "no original or ledger row: {:?}\n{}", found, proxy.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for dir in [data.join("tokenfold"), cache.join("tokenfold"), originals.clone()] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let mut files = stored;
    for name in ["ledger.db", "ledger.db-wal", "ledger.db-shm", "tokenfold.db", "tokenfold.db-wal", "tokenfold.db-shm"]
    {
        let p = data.join("tokenfold").join(name);
        if p.exists() {
            files.push(p);
        }
    }
    assert!(files.iter().any(|f| f.ends_with("ledger.db")) && files.iter().any(|f| f.ends_with("tokenfold.db")));
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    drop(proxy);
    let _ = std::fs::remove_dir_all(&home);
}

fn chromium() -> Option<String> {
    let candidates =
        [std::env::var("CHROMIUM").unwrap_or_default(), "/usr/bin/chromium".into(), "/usr/bin/chromium-browser".into()];
    candidates.into_iter().find(|c| !c.is_empty() && Path::new(c).exists())
}

/// Serves `html` to every request (a web page on another origin).
async fn page_server(html: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    html.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(html.as_bytes()).await;
            });
        }
    });
    port
}

/// In a real browser: a page on another site (`evil.example`, resolved to 127.0.0.1) posts
/// `text/plain` JSON to the proxy, which needs no preflight; and a page served under the
/// rebinding name itself asks for the dashboard data. Neither reaches the provider or the data.
#[tokio::test(flavor = "multi_thread")]
async fn in_chromium_a_foreign_page_cannot_use_the_proxy() {
    let Some(browser) = chromium() else {
        assert!(std::env::var("CI").map(|v| v != "true").unwrap_or(true), "CI=true but chromium is not installed");
        eprintln!("SKIPPED browser check: chromium is not installed (apt-get install chromium)");
        return;
    };
    let mock = mock::start(|_| Reply::ok_json(mock::chat_completion("spent"))).await;
    let cfg = temp_file("chromium-origin.toml", &config(&mock.base(), ""));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off")]);
    let port = proxy.addr().rsplit(':').next().unwrap().to_string();
    let script = format!(
        r#"<html><body><p id="out">not run</p><script>
        const out = document.getElementById("out");
        out.textContent = "attempted";
        const say = (what) => {{ out.textContent += " | " + what; }};
        fetch("http://127.0.0.1:{port}/v1/chat/completions", {{method: "POST", headers: {{"content-type": "text/plain"}},
              body: JSON.stringify({{model: "gpt-test", messages: [{{role: "user", content: "hi"}}]}})}})
          .then(r => r.text().then(t => say("post " + r.status + " " + t.slice(0, 40))), e => say("post refused"))
          .then(() => fetch("http://evil.example:{port}/dashboard/data"))
          .then(r => r.text().then(t => say("rebind " + r.status + " " + t.slice(0, 40))), e => say("rebind refused"));
        </script></body></html>"#
    );
    let page = page_server(script).await;
    let profile = std::env::temp_dir().join(format!("tokenfold-chromium-origin-{}", std::process::id()));
    let args: Vec<String> = vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--host-resolver-rules=MAP evil.example 127.0.0.1".into(),
        "--virtual-time-budget=5000".into(),
        format!("--user-data-dir={}", profile.display()),
        "--dump-dom".into(),
        format!("http://evil.example:{page}/"),
    ];
    let out = tokio::task::spawn_blocking(move || std::process::Command::new(browser).args(args).output().unwrap())
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let result = dom.split("id=\"out\">").nth(1).and_then(|t| t.split('<').next()).unwrap_or("");
    assert!(result.starts_with("attempted") && result.contains("rebind"), "the page did not run: {result}\n{dom}");
    eprintln!("the page saw: {result}");
    assert!(mock.requests().is_empty(), "the page's request reached the provider: {result}");
    assert!(!result.contains("post 200") && !result.contains("summary"), "the page read an answer: {result}");
    let _ = std::fs::remove_dir_all(profile);
}
