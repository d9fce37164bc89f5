//! The front door under hostile or careless clients (issue 15, items 1, 7 and 8), against the
//! real binary: silent sockets under a low open-file limit, a slowloris, an endless chunked body,
//! idle keep-alive connections, a stop (SIGTERM) with requests in flight, and HTTP/2 with prior
//! knowledge. Timeouts are set short in the config rather than waited out at their defaults.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::mock::{self, Chunk, Reply};
use common::{config_for, spawn_proxy, spawn_proxy_after, temp_file};

fn config(base: &str, server: &str) -> String {
    config_for(base, server, "auth = \"client\"")
}

/// A fresh ledger path for one test.
fn ledger(name: &str) -> String {
    let path = temp_file(name, "");
    std::fs::remove_file(&path).unwrap();
    path.to_str().unwrap().to_string()
}

/// `(status, overhead_us, outcome)` of every ledger row, waiting up to 10 s for `n` of them.
fn ledger_rows(path: &str, n: usize) -> Vec<(u16, u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<(u16, u64, String)> = rusqlite::Connection::open(path)
            .and_then(|c| {
                let mut stmt = c.prepare("SELECT status, overhead_us, outcome FROM requests ORDER BY id")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect()
            })
            .unwrap_or_default();
        if rows.len() >= n || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the proxy closes `s` within `limit` (reads nothing more, or a reset).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
    false
}

/// One `GET /healthz` on a new connection, answered within a second.
fn healthy(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 200")
}

#[test]
fn silent_sockets_under_a_low_fd_limit_are_dropped_and_health_answers() {
    let cfg = temp_file("silent.toml", &config("http://127.0.0.1:9", "header_timeout_ms = 400"));
    let proxy =
        spawn_proxy_after("ulimit -n 256", &["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off")]);
    let addr = proxy.addr();
    // More silent connections than the process has descriptors.
    let mut silent: Vec<TcpStream> = (0..300).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    assert!(silent.len() >= 250, "only {} connections opened", silent.len());
    let started = Instant::now();
    while !healthy(&addr) {
        assert!(started.elapsed() < Duration::from_secs(5), "no health answer in 5 s:\n{}", proxy.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let still_open =
        silent.iter_mut().map(|s| closed_within(s, Duration::from_secs(3))).filter(|closed| !closed).count();
    assert_eq!(still_open, 0, "silent connections kept open:\n{}", proxy.logs());
    let logs = proxy.logs();
    assert!(logs.contains("connection limit reached"), "no log line about the cap:\n{logs}");
    assert!(logs.matches("accept failed").count() <= 1, "accept errors spin:\n{logs}");
}

#[test]
fn the_soft_fd_limit_is_raised_to_the_hard_limit() {
    let cfg = temp_file("fdlimit.toml", &config("http://127.0.0.1:9", ""));
    let proxy =
        spawn_proxy_after("ulimit -Sn 300", &["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off")]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", proxy.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft limit not raised to the hard one: {line}");
    assert_ne!(numbers[0], "300", "{line}");
}

fn slow_stream() -> Reply {
    let mut chunks = Vec::new();
    for part in mock::chat_stream("slow but steady") {
        chunks.push(Chunk::Bytes(part));
        chunks.push(Chunk::Sleep(Duration::from_millis(300)));
    }
    Reply::sse(chunks)
}

fn answer(rec: &mock::Recorded) -> Reply {
    let body = String::from_utf8_lossy(&rec.body);
    if body.contains("slow") {
        slow_stream()
    } else if body.contains("hang") {
        Reply::Hang
    } else {
        Reply::ok_json(mock::chat_completion("hi"))
    }
}

/// Writes `head` and then `drip` every 100 ms until the proxy answers or closes; returns what it
/// answered and when.
fn drip(addr: &str, head: &[u8], drip: &'static [u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while started.elapsed() < Duration::from_secs(6) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if s.write_all(drip).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_idle_and_endless_clients_are_cut_off_but_a_slow_answer_is_not() {
    let mock = mock::start(answer).await;
    let server = "header_timeout_ms = 500\nkeepalive_timeout_ms = 600\nbody_timeout_ms = 700";
    let cfg = temp_file("slow.toml", &config(&mock.base(), server));
    let db = ledger("slow.db");
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", db.as_str())]);
    let addr = proxy.addr();

    // A slowloris: a header byte every 100 ms.
    let a = addr.clone();
    let (_, took) = tokio::task::spawn_blocking(move || drip(&a, b"GET /healthz HTTP/1.1\r\n", b"X")).await.unwrap();
    assert!(took < Duration::from_secs(3), "slowloris held for {took:?}");

    // A chunked body that never ends: a 408 in the caller's dialect, after the body timeout.
    let a = addr.clone();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n";
    let (answer, took) = tokio::task::spawn_blocking(move || drip(&a, head, b"1\r\n \r\n")).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("server.body_timeout_ms") && answer.contains("\"error\""), "{answer}");
    assert!(took < Duration::from_secs(3), "endless body held for {took:?}");

    // An idle keep-alive connection is closed after keepalive_timeout_ms.
    let a = addr.clone();
    let idle_for = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&a).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let t = Instant::now();
        assert!(closed_within(&mut s, Duration::from_secs(3)), "idle connection kept open");
        t.elapsed()
    })
    .await
    .unwrap();
    assert!(idle_for >= Duration::from_millis(500), "closed after {idle_for:?}, before the idle timeout");

    // A streamed answer slower than every client timeout still arrives whole.
    let t = Instant::now();
    let body = r#"{"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"slow"}]}"#;
    let text = reqwest::Client::new().post(proxy.url("/v1/chat/completions")).body(body).send().await.unwrap();
    let text = text.text().await.unwrap();
    assert!(text.contains("slow but steady") && text.contains("[DONE]"), "{text}");
    assert!(t.elapsed() > Duration::from_millis(1000));

    // The client's 0.7 s of not sending is not the proxy's overhead.
    let rows = ledger_rows(&db, 2);
    let timed_out = rows.iter().find(|r| r.0 == 408).unwrap_or_else(|| panic!("{rows:?}"));
    assert!(timed_out.1 < 200_000, "overhead {} µs for a body the client never finished", timed_out.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_client_does_not_keep_its_connection() {
    let mock = mock::start(answer).await;
    let cfg = temp_file("keys.toml", &config(&mock.base(), "api_keys = [\"${TF_HARDEN_KEY}\"]"));
    let proxy =
        spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off"), ("TF_HARDEN_KEY", "k")]);
    let addr = proxy.addr();
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 401"), "{}", String::from_utf8_lossy(&buf[..n]));
        closed_within(&mut s, Duration::from_secs(2))
    })
    .await
    .unwrap();
    assert!(closed, "an unauthenticated client kept its connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_with_prior_knowledge_is_served() {
    let mock = mock::start(answer).await;
    let cfg = temp_file("h2c.toml", &config(&mock.base(), ""));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", "off")]);
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let health = h2.get(proxy.url("/healthz")).send().await.unwrap();
    assert_eq!((health.version(), health.status().as_u16()), (http::Version::HTTP_2, 200));
    let body = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;
    let r = h2.post(proxy.url("/v1/chat/completions")).body(body).send().await.unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (http::Version::HTTP_2, 200));
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["choices"][0]["message"]["content"], "hi");
    // Several streams at once on the one connection, one of them slow.
    let stream = r#"{"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"slow"}]}"#;
    let (slow, quick) = tokio::join!(
        h2.post(proxy.url("/v1/chat/completions")).body(stream).send(),
        h2.get(proxy.url("/healthz")).send()
    );
    assert_eq!(quick.unwrap().status().as_u16(), 200);
    assert!(slow.unwrap().text().await.unwrap().contains("[DONE]"));
    assert!(mock.requests().len() >= 2);

    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", "--http2-prior-knowledge", &proxy.url("/healthz")])
        .output();
    match out {
        Ok(o) => assert_eq!(String::from_utf8_lossy(&o.stdout), "{\"status\":\"ok\"}", "curl: {o:?}"),
        Err(e) => eprintln!("curl not run ({e}); the reqwest h2 client above covers h2c"),
    }
}

fn refuses_connections(addr: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn chat(content: &str) -> String {
    serde_json::json!({"model": "gpt-test", "stream": content == "slow", "messages": [{"role": "user", "content": content}]})
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_requests_in_flight_finish_and_keeps_every_ledger_row() {
    let mock = mock::start(answer).await;
    let cfg = temp_file("stop.toml", &config(&mock.base(), "shutdown_timeout_ms = 5000"));
    let db = ledger("stop.db");
    let mut proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", db.as_str())]);
    let c = reqwest::Client::new();
    // A burst, then a slow stream that is still going when the stop comes.
    for i in 0..20 {
        let r = c.post(proxy.url("/v1/chat/completions")).body(chat(&format!("burst {i}"))).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let mut slow = c.post(proxy.url("/v1/chat/completions")).body(chat("slow")).send().await.unwrap();
    let first = slow.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    proxy.signal("TERM");
    let addr = proxy.addr();
    let refused = tokio::task::spawn_blocking(move || refuses_connections(&addr, Duration::from_secs(3)));
    let mut rest = first.to_vec();
    while let Some(chunk) = slow.chunk().await.expect("the stream in flight was cut") {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"), "{}", String::from_utf8_lossy(&rest));
    assert!(refused.await.unwrap(), "still accepting after SIGTERM");
    let status = proxy.wait_exit(Duration::from_secs(10)).expect("no exit after the stream ended");
    assert!(status.success(), "{status:?}\n{}", proxy.logs());
    assert!(proxy.logs().contains("stopping"), "{}", proxy.logs());
    // Read at once: the rows must be on disk when the process is gone.
    let rows = ledger_rows(&db, 0);
    assert_eq!(rows.iter().filter(|r| r.0 == 200).count(), 21, "{rows:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_past_the_stop_deadline_is_recorded_as_cancelled() {
    let mock = mock::start(answer).await;
    let cfg = temp_file("stop-deadline.toml", &config(&mock.base(), "shutdown_timeout_ms = 300"));
    let db = ledger("stop-deadline.db");
    let mut proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", db.as_str())]);
    let hanging =
        tokio::spawn(reqwest::Client::new().post(proxy.url("/v1/chat/completions")).body(chat("hang")).send());
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.requests().is_empty() {
        assert!(Instant::now() < deadline, "the request never reached the mock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped_at = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(Duration::from_secs(5)).expect("no exit after the deadline");
    assert!(status.success());
    assert!(stopped_at.elapsed() < Duration::from_secs(3), "took {:?}", stopped_at.elapsed());
    assert!(hanging.await.unwrap().is_err(), "the cut request got an answer");
    let rows = ledger_rows(&db, 0);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].2.as_str()), (499, "cancelled"), "{rows:?}");
}
