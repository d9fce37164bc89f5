//! Translation overhead, against the targets of issue 6: added p99 ≤ 400 µs for a 1 KB translated
//! request, added latency per streamed event ≤ 50 µs.
//!
//! ```text
//! cargo bench --bench translate              # full run
//! cargo bench --bench translate -- --quick   # smoke run
//! ```
//!
//! Two parts. The translator alone: a ~1 KB request in every direction, and each stream
//! direction per event (plain std timing, p50/p99). Then through the real proxy: one Anthropic
//! client stream of many events, sent through `tokenfold serve --upstream-dialect openai-chat` to a
//! zero-delay mock that streams Chat chunks one frame each, against the same Chat stream read
//! straight from the mock, interleaved; per event added = (proxy total − direct total) / events.
//! Prints a verdict per target and writes the figures to `target/bench-translate.json`.

#[allow(dead_code)]
mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use support::{Api, Conn, Prepared};
use tokenfold::dialect::translate::{translate_request, StreamTranslator};
use tokenfold::dialect::Dialect::{Anthropic, OpenaiChat, OpenaiResponses};

const REQUEST_P99_TARGET_US: f64 = 400.0;
const PER_EVENT_TARGET_US: f64 = 50.0;

fn claude_code_request() -> Value {
    json!({
        "model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": true,
        "system": [{"type": "text", "text": "You are a coding agent. Be concise and careful.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read src/main.rs and run the tests, then fix what fails."}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Reading the file and running the tests."},
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "/repo/src/main.rs"}},
                {"type": "tool_use", "id": "toolu_02", "name": "Bash", "input": {"command": "cargo test"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "     1\tfn main() {\n     2\t    println!(\"hi\");\n     3\t}\n"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": true, "content": "test result: FAILED. 1 passed; 1 failed"}]}
        ],
        "tools": [
            {"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}},
            {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
        ]
    })
}

/// A Codex-shaped Responses request of about the same size.
fn codex_request() -> Value {
    json!({
        "model": "gpt-5-codex", "stream": true, "store": false, "parallel_tool_calls": true,
        "instructions": "You are Codex, a coding agent. Be concise and careful.",
        "reasoning": {"effort": "medium", "summary": "auto"}, "include": ["reasoning.encrypted_content"],
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Read src/main.rs and run the tests, then fix what fails."}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Reading the file and running the tests."}]},
            {"type": "function_call", "call_id": "call_01", "name": "shell", "arguments": "{\"command\":[\"cat\",\"src/main.rs\"]}"},
            {"type": "function_call", "call_id": "call_02", "name": "shell", "arguments": "{\"command\":[\"cargo\",\"test\"]}"},
            {"type": "function_call_output", "call_id": "call_01", "output": "fn main() {\n    println!(\"hi\");\n}\n"},
            {"type": "function_call_output", "call_id": "call_02", "output": "test result: FAILED. 1 passed; 1 failed"}
        ],
        "tools": [
            {"type": "function", "name": "shell", "description": "Runs a shell command", "strict": false,
             "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}, "required": ["command"]}},
            {"type": "custom", "name": "apply_patch", "description": "Apply a patch to files", "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}}
        ]
    })
}

/// Median and p99 of `iters` timed runs of `f`, in microseconds.
fn time(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut samples: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[iters / 2], samples[(iters * 99 / 100).min(iters - 1)])
}

fn chat_event(i: usize) -> Vec<u8> {
    let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": format!("token {i} ")}, "finish_reason": null}]});
    format!("data: {c}\n\n").into_bytes()
}

fn chat_events(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(chat_event).collect()
}

fn anthropic_events(n: usize) -> Vec<Vec<u8>> {
    let mut out = vec![b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n".to_vec(),
        b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_vec()];
    for i in 0..n {
        out.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token {i} \"}}}}\n\n").into_bytes());
    }
    out
}

fn responses_events(n: usize) -> Vec<Vec<u8>> {
    let head = [
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
               "item": {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
    ];
    let mut out: Vec<Vec<u8>> = head
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")).into_bytes())
        .collect();
    for i in 0..n {
        let e = json!({"type": "response.output_text.delta", "sequence_number": i + 2, "item_id": "msg_1",
                       "output_index": 0, "content_index": 0, "delta": format!("token {i} ")});
        out.push(format!("event: response.output_text.delta\ndata: {e}\n\n").into_bytes());
    }
    out
}

/// One line of the verdict table.
struct Row {
    name: String,
    p50: f64,
    p99: f64,
    target: Option<f64>,
    /// Which figure the target is about.
    judged: &'static str,
}

impl Row {
    fn met(&self) -> Option<bool> {
        let v = if self.judged == "p99" { self.p99 } else { self.p50 };
        self.target.map(|t| v <= t)
    }

    fn print(&self) {
        let verdict = match (self.target, self.met()) {
            (Some(t), Some(true)) => format!("{} ≤ {t:.0} µs: ok", self.judged),
            (Some(t), _) => format!("{} ≤ {t:.0} µs: MISSED", self.judged),
            _ => String::new(),
        };
        println!("| {} | {:.2} µs | {:.2} µs | {verdict} |", self.name, self.p50, self.p99);
    }

    fn json(&self) -> Value {
        json!({"name": self.name, "p50_us": round(self.p50), "p99_us": round(self.p99),
               "target_us": self.target, "judged": self.judged, "met": self.met()})
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn translator_rows(quick: bool) -> Vec<Row> {
    let iters = if quick { 500 } else { 5000 };
    let anthropic = serde_json::to_vec(&claude_code_request()).unwrap_or_default();
    let chat = translate_request(Anthropic, OpenaiChat, &anthropic, None).unwrap_or_default();
    let responses = serde_json::to_vec(&codex_request()).unwrap_or_default();
    println!("request bodies: Anthropic {} B, Chat {} B, Responses {} B", anthropic.len(), chat.len(), responses.len());
    let mut rows = Vec::new();
    for (from, to, body) in [
        (Anthropic, OpenaiChat, &anthropic),
        (OpenaiChat, Anthropic, &chat),
        (OpenaiResponses, OpenaiChat, &responses),
        (OpenaiResponses, Anthropic, &responses),
        (OpenaiChat, OpenaiResponses, &chat),
        (Anthropic, OpenaiResponses, &anthropic),
    ] {
        assert!(translate_request(from, to, body, None).is_ok(), "{from} -> {to} translates");
        let (p50, p99) = time(iters, || {
            black_box(translate_request(from, to, black_box(body), None).ok());
        });
        rows.push(Row {
            name: format!("translator: request {from} -> {to}, {} B", body.len()),
            p50,
            p99,
            target: Some(REQUEST_P99_TARGET_US),
            judged: "p99",
        });
    }
    let n = if quick { 2000 } else { 20000 };
    let (chat_s, anthropic_s, responses_s) = (chat_events(n), anthropic_events(n), responses_events(n));
    for (upstream, client, evs) in [
        (OpenaiChat, Anthropic, &chat_s),
        (OpenaiChat, OpenaiResponses, &chat_s),
        (Anthropic, OpenaiChat, &anthropic_s),
        (Anthropic, OpenaiResponses, &anthropic_s),
        (OpenaiResponses, OpenaiChat, &responses_s),
        (OpenaiResponses, Anthropic, &responses_s),
    ] {
        let mut t = StreamTranslator::new(upstream, client, "client-model");
        let mut it = evs.iter();
        let (p50, p99) = time(evs.len(), || {
            if let Some(ev) = it.next() {
                black_box(t.push(black_box(ev)));
            }
        });
        rows.push(Row {
            name: format!("translator: stream {upstream} -> {client}, per event"),
            p50,
            p99,
            target: Some(PER_EVENT_TARGET_US),
            judged: "p99",
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Through the proxy

/// A zero-delay mock whose `/v1/chat/completions` streams `events` chunks, one frame each.
fn start_stream_mock(events: usize) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the mock");
    listener.set_nonblocking(true).expect("non-blocking mock listener");
    let addr = listener.local_addr().expect("mock address");
    let frames: std::sync::Arc<Vec<Bytes>> = std::sync::Arc::new(
        std::iter::once(Bytes::from_static(b"data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"))
            .chain((0..events).map(|i| Bytes::from(chat_event(i))))
            .chain(std::iter::once(Bytes::from_static(b"data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":250,\"completion_tokens\":3,\"total_tokens\":253}}\n\ndata: [DONE]\n\n")))
            .collect(),
    );
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let frames = frames.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let frames = frames.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            let body = futures_util::stream::iter(
                                (0..frames.len()).map(move |i| Ok::<_, Infallible>(Frame::data(frames[i].clone()))),
                            );
                            let mut r = Response::new(StreamBody::new(body).boxed());
                            r.headers_mut().insert("content-type", http::HeaderValue::from_static("text/event-stream"));
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
    });
    addr
}

/// Total stream times straight from the mock and through the translating proxy.
/// With `translated`, an Anthropic client's stream through the proxy; else the same Chat request
/// the mock gets directly (the proxy relays without translating).
async fn proxy_streams(
    mock: SocketAddr,
    proxy: SocketAddr,
    streams: usize,
    translated: bool,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let mut anthropic = claude_code_request();
    anthropic["stream"] = json!(true);
    let anthropic_req =
        Prepared { api: Api::Anthropic, body: Bytes::from(serde_json::to_vec(&anthropic).unwrap_or_default()) };
    let chat = translate_request(Anthropic, OpenaiChat, &anthropic_req.body, None).map_err(|e| e.to_string())?;
    let direct_req = Prepared { api: Api::OpenaiChat, body: Bytes::from(chat) };
    let via_req = if translated { anthropic_req } else { direct_req.clone() };
    let mut direct = Conn::open(mock).await?;
    let mut via = Conn::open(proxy).await?;
    for _ in 0..3 {
        direct.send(&direct_req).await?;
        via.send(&via_req).await?;
    }
    let (mut d, mut p) = (Vec::with_capacity(streams), Vec::with_capacity(streams));
    for i in 0..streams {
        let us = |t: support::Timing| t.total.as_secs_f64() * 1e6;
        if i % 2 == 0 {
            d.push(us(direct.send(&direct_req).await?));
            p.push(us(via.send(&via_req).await?));
        } else {
            p.push(us(via.send(&via_req).await?));
            d.push(us(direct.send(&direct_req).await?));
        }
    }
    Ok((d, p))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

/// Per-event added latency through the proxy: a translated stream (judged against the target)
/// and, for scale, the same stream relayed without translation.
fn proxy_rows(quick: bool, target_dir: &Path) -> Result<(Vec<Row>, Value), String> {
    let events = if quick { 500 } else { 2000 };
    let streams = if quick { 10 } else { 40 };
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = support::proxy_binary(manifest_dir, target_dir)?;
    let mock = start_stream_mock(events);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut figures = json!({"events_per_stream": events, "streams": streams});
    for translated in [true, false] {
        let extra: &[&str] = if translated { &["--upstream-dialect", "openai-chat"] } else { &[] };
        // No ledger: one record per stream would not show per event anyway.
        let proxy = support::spawn_proxy_with(&bin, mock, Path::new("off"), extra)?;
        let (mut direct, mut via) = rt
            .block_on(proxy_streams(mock, proxy.addr, streams, translated))
            .map_err(|e| format!("{e}\n{}", proxy.log_tail()))?;
        // Pairs are interleaved, so the per-stream difference cancels machine noise best.
        let mut per_event: Vec<f64> = via.iter().zip(&direct).map(|(p, d)| (p - d) / events as f64).collect();
        let (name, key, target) = if translated {
            ("translated stream Chat -> Anthropic", "translated", Some(PER_EVENT_TARGET_US))
        } else {
            ("same stream relayed untranslated (for scale)", "relayed", None)
        };
        rows.push(Row {
            name: format!("proxy: {name}, {events} events, added per event"),
            p50: median(&mut per_event),
            p99: percentile(&mut per_event, 0.99),
            target,
            judged: "p50",
        });
        figures[key] = json!({
            "direct_total_median_us": round(median(&mut direct)), "proxy_total_median_us": round(median(&mut via)),
        });
    }
    Ok((rows, figures))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| manifest_dir.join("target"));
    let mut rows = translator_rows(quick);
    let proxy = proxy_rows(quick, &target_dir);
    println!("\n| measure | p50 | p99 | target |\n|---|---:|---:|---|");
    for r in &rows {
        r.print();
    }
    let proxy_figures = match proxy {
        Ok((proxy_rows, figures)) => {
            for r in &proxy_rows {
                r.print();
            }
            println!(
                "\nthrough the proxy ({} events per stream, {} streams), median stream: translated {} µs direct / {} µs \
                 via proxy; relayed {} µs direct / {} µs via proxy",
                figures["events_per_stream"],
                figures["streams"],
                figures["translated"]["direct_total_median_us"],
                figures["translated"]["proxy_total_median_us"],
                figures["relayed"]["direct_total_median_us"],
                figures["relayed"]["proxy_total_median_us"],
            );
            rows.extend(proxy_rows);
            figures
        }
        Err(e) => {
            eprintln!("bench: the through-the-proxy part did not run: {e}");
            json!({"error": e})
        }
    };
    println!("(translator rows time the translation alone; the added request p99 through the proxy is the translated row of `cargo bench --bench proxy`)");
    let report = json!({
        "mode": if quick { "quick" } else { "full" },
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "proxy_stream": proxy_figures,
        "all_targets_met": rows.iter().all(|r| r.met() != Some(false)),
    });
    let out = target_dir.join("bench-translate.json");
    match serde_json::to_string_pretty(&report) {
        Ok(text) => match std::fs::write(&out, text + "\n") {
            Ok(()) => eprintln!("bench: figures written to {}", out.display()),
            Err(e) => eprintln!("bench: cannot write {}: {e}", out.display()),
        },
        Err(e) => eprintln!("bench: {e}"),
    }
}
