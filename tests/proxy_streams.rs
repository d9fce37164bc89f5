//! Streaming through the real binary: SSE relayed event by event in each dialect, stalls, long
//! first events, and clients that go away (before the answer starts and after its first byte).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mock::{self, Chunk, Reply};
use common::{config_for, spawn_proxy, temp_file};
use futures_util::StreamExt;

const CLIENT_AUTH: &str = "auth = \"client\"";

/// A proxy in front of `mock` with its own ledger file (returned with it).
fn proxy_with_ledger(mock: &mock::Mock) -> (common::Proxy, PathBuf) {
    let cfg = temp_file("streams.toml", &config_for(&mock.base(), "", CLIENT_AUTH));
    let db = temp_file("streams.db", "");
    std::fs::remove_file(&db).unwrap();
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", db.to_str().unwrap())]);
    (proxy, db)
}

/// Waits (bounded) until `done` holds.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (outcome, status) of every ledger row, once `n` rows are written.
async fn ledger_rows(db: &Path, n: usize) -> Vec<(String, i64)> {
    let read = || -> Vec<(String, i64)> {
        let Ok(conn) = rusqlite::Connection::open(db) else { return Vec::new() };
        let Ok(mut stmt) = conn.prepare("SELECT outcome, status FROM requests ORDER BY id") else { return Vec::new() };
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map(|rows| rows.map_while(Result::ok).collect())
            .unwrap_or_default()
    };
    wait_until(&format!("the ledger has {n} rows"), || read().len() >= n).await;
    read()
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Each dialect's own stream (Anthropic and Responses with `event:` lines): the mock waits on a
/// gate before every further event, so the client must see each event before the mock sends
/// the next one; meanwhile the request counts as in flight.
#[tokio::test]
async fn sse_events_are_relayed_one_by_one_in_every_dialect() {
    for (path, events) in [
        ("/v1/messages", mock::anthropic_stream("hello")),
        ("/v1/chat/completions", mock::chat_stream("hello")),
        ("/v1/responses", mock::responses_stream("hello")),
    ] {
        assert!(events.iter().all(|e| path.ends_with("completions") || e.starts_with(b"event: ")), "{path}");
        let gate = Arc::new(tokio::sync::Notify::new());
        let (g, ev) = (gate.clone(), events.clone());
        let mock = mock::start(move |_| {
            let mut chunks = vec![Chunk::Bytes(ev[0].clone())];
            for e in &ev[1..] {
                chunks.push(Chunk::Gate(g.clone()));
                chunks.push(Chunk::Bytes(e.clone()));
            }
            Reply::sse(chunks)
        })
        .await;
        let (proxy, db) = proxy_with_ledger(&mock);
        let resp = reqwest::Client::new()
            .post(proxy.url(path))
            .body(r#"{"model":"m","stream":true,"messages":[]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut body = resp.bytes_stream();
        let mut seen = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let want = events[..=i].concat();
            while seen.len() < want.len() {
                let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
                    .await
                    .unwrap_or_else(|_| panic!("{path}: event {i} not relayed before the mock sent the next"))
                    .expect("stream ended early")
                    .unwrap();
                seen.extend_from_slice(&chunk);
            }
            assert_eq!(seen, want, "{path}: event {i} ({})", String::from_utf8_lossy(event));
            if i == 0 {
                assert_eq!(metric(&proxy.metrics().await, "tokenfold_in_flight"), Some(1), "{path}");
            }
            gate.notify_one();
        }
        assert!(body.next().await.is_none(), "{path}: nothing after the last event");
        assert_eq!(ledger_rows(&db, 1).await, [("completed".to_string(), 200)], "{path}");
        assert_eq!(metric(&proxy.metrics().await, "tokenfold_in_flight"), Some(0), "{path}");
    }
}

#[tokio::test]
async fn a_stalled_stream_ends_with_an_error_event_in_the_callers_dialect() {
    for (path, first, check) in [
        ("/v1/messages", mock::anthropic_stream("a")[0].clone(), "event: error\ndata: {"),
        ("/v1/chat/completions", mock::chat_stream("a")[0].clone(), "data: {\"error\":"),
        ("/v1/responses", mock::responses_stream("a")[0].clone(), "event: error\ndata: {"),
    ] {
        let f = first.clone();
        let mock =
            mock::start(move |_| Reply::sse(vec![Chunk::Bytes(f.clone()), Chunk::Sleep(Duration::from_secs(30))]))
                .await;
        let (proxy, db) = proxy_with_ledger(&mock);
        let started = Instant::now();
        let text = reqwest::Client::new()
            .post(proxy.url(path))
            .body(r#"{"stream":true}"#)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "{path}: bounded by idle_ms");
        assert!(text.starts_with(std::str::from_utf8(&first).unwrap()), "{text}");
        let tail = &text[first.len()..];
        assert!(tail.starts_with(check), "{path}: {tail}");
        assert!(tail.contains("idle_ms") && tail.ends_with("\n\n"), "{tail}");
        let data: serde_json::Value = serde_json::from_str(tail.trim_end().rsplit("data: ").next().unwrap()).unwrap();
        let shape_ok = match path {
            "/v1/chat/completions" => data.get("type").is_none() && data["error"]["message"].is_string(),
            "/v1/messages" => data["type"] == "error" && data["error"]["message"].is_string(),
            _ => data["type"] == "error" && data["message"].is_string(),
        };
        assert!(shape_ok, "{path}: {data}");
        assert_eq!(ledger_rows(&db, 1).await, [("upstream_failed".to_string(), 200)], "{path}");
    }
}

/// A first event that never ends is not buffered until the idle timeout: past the peek limit
/// the answer is committed and streamed on as it arrives.
#[tokio::test]
async fn an_endless_first_event_is_streamed_after_the_peek_limit() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    // 64 chunks of 8 KiB of one `data:` line with no blank line: 512 KiB, beyond the 256 KiB limit.
    let piece = vec![b'x'; 8 * 1024];
    let mock = mock::start(move |_| {
        let mut chunks = vec![Chunk::Bytes(b"data: ".to_vec())];
        chunks.extend((0..64).map(|_| Chunk::Bytes(piece.clone())));
        chunks.push(Chunk::Gate(g.clone()));
        chunks.push(Chunk::Bytes(b"\n\n".to_vec()));
        Reply::sse(chunks)
    })
    .await;
    let (proxy, _db) = proxy_with_ledger(&mock);
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        reqwest::Client::new().post(proxy.url("/v1/chat/completions")).body(r#"{"stream":true}"#).send(),
    )
    .await
    .expect("the answer must start while the first event is still open")
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = 0;
    while seen < 6 + 64 * 8 * 1024 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("bytes of the open event are relayed")
            .unwrap()
            .unwrap();
        seen += chunk.len();
    }
    gate.notify_one();
    while let Some(chunk) = body.next().await {
        seen += chunk.unwrap().len();
    }
    assert_eq!(seen, 6 + 64 * 8 * 1024 + 2);
}

/// Sends a streaming request and drops it once `ready` holds (before any answer reached us).
async fn send_and_go_away(proxy: &common::Proxy, ready: impl FnMut() -> bool) {
    let send =
        reqwest::Client::new().post(proxy.url("/v1/messages")).body(r#"{"model":"claude-test","stream":true}"#).send();
    let mut send = Box::pin(send);
    let mut ready = ready;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ready() {
        assert!(Instant::now() < deadline, "the mock never got the request");
        tokio::select! {
            r = &mut send => panic!("the proxy answered before the test went away: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    // Let the proxy reach the point under test (waiting for headers, or peeking the first event).
    tokio::select! {
        r = &mut send => panic!("the proxy answered before the test went away: {r:?}"),
        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
    drop(send);
}

#[tokio::test]
async fn client_gone_while_the_upstream_has_not_answered_is_cancelled_and_recorded() {
    let mock = mock::start(|_| Reply::Hang).await;
    let (proxy, db) = proxy_with_ledger(&mock);
    send_and_go_away(&proxy, || mock.requests().len() == 1).await;
    wait_until("the upstream request is cancelled", || mock.disconnects.load(Ordering::SeqCst) == 1).await;
    assert_eq!(ledger_rows(&db, 1).await, [("cancelled".to_string(), 499)]);
    let m = proxy.metrics().await;
    assert_eq!(metric(&m, "tokenfold_requests_cancelled_total"), Some(1), "{m}");
    assert_eq!(metric(&m, "tokenfold_in_flight"), Some(0), "{m}");
    assert!(proxy.logs().contains("upstream request cancelled"), "{}", proxy.logs());
}

#[tokio::test]
async fn client_gone_while_the_first_event_is_peeked_is_cancelled_and_recorded() {
    // Headers and half an event, then nothing: the proxy is still judging the first event.
    let mock = mock::start(|_| {
        Reply::sse(vec![
            Chunk::Bytes(b"event: message_start\ndata: {\"type\":\"mess".to_vec()),
            Chunk::Sleep(Duration::from_secs(30)),
        ])
    })
    .await;
    let (proxy, db) = proxy_with_ledger(&mock);
    send_and_go_away(&proxy, || mock.requests().len() == 1).await;
    wait_until("the upstream stream is cancelled", || mock.disconnects.load(Ordering::SeqCst) == 1).await;
    assert_eq!(ledger_rows(&db, 1).await, [("cancelled".to_string(), 499)]);
    let m = proxy.metrics().await;
    assert_eq!(metric(&m, "tokenfold_requests_cancelled_total"), Some(1), "{m}");
    assert_eq!(metric(&m, "tokenfold_in_flight"), Some(0), "{m}");
}

#[tokio::test]
async fn client_gone_after_the_first_byte_cancels_the_upstream_and_is_recorded() {
    let ev = mock::anthropic_stream("a");
    let mock = mock::start(move |_| {
        let mut chunks = vec![Chunk::Bytes(ev[0].clone())];
        for _ in 0..50 {
            chunks.push(Chunk::Sleep(Duration::from_millis(100)));
            chunks.push(Chunk::Bytes(b"event: ping\ndata: {\"type\":\"ping\"}\n\n".to_vec()));
        }
        Reply::sse(chunks)
    })
    .await;
    let (proxy, db) = proxy_with_ledger(&mock);
    let resp = reqwest::Client::new().post(proxy.url("/v1/messages")).body("{\"stream\":true}").send().await.unwrap();
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    wait_until("the upstream stream is cancelled", || mock.disconnects.load(Ordering::SeqCst) == 1).await;
    assert_eq!(ledger_rows(&db, 1).await, [("cancelled".to_string(), 200)]);
    let m = proxy.metrics().await;
    assert_eq!(metric(&m, "tokenfold_requests_cancelled_total"), Some(1), "{m}");
    assert_eq!(metric(&m, "tokenfold_in_flight"), Some(0), "{m}");
    assert!(proxy.logs().contains("cancelled"));
}
