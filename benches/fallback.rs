//! Fallback hop: what trying a first target that fails before its first byte adds to a request
//! answered by the second target.
//!
//! ```text
//! cargo bench --bench fallback              # full run
//! cargo bench --bench fallback -- --quick   # smoke run (a few seconds)
//! ```
//!
//! The release binary serves three routes over the same zero-delay mock provider:
//! `direct` (the mock alone), `via-refused` (a port nothing listens on, then the mock) and
//! `via-503` (a provider answering 503, then the mock). The pool is set to try the failing
//! target first on every request (1 ms demotion, breaker never opening), requests are 1 ms
//! apart for that, and the load client sends, in turn, each request straight to the mock and
//! through the three routes. Reported: p50/p99 of each, the hop (route minus `direct`) and the
//! total over the second target's own latency (route minus straight to the mock); target
//! ≤ 1 ms. Figures are also written to `target/bench-fallback.json`.

// The proxy bench uses the rest of it.
#[allow(dead_code)]
mod support;

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use support::{chat_body, Api, Conn, Prepared};

const ROUTES: [&str; 3] = ["direct", "via-refused", "via-503"];

struct RunningProxy(Child);

impl Drop for RunningProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (warmup, n) = if quick { (30, 300) } else { (200, 3000) };
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| manifest_dir.join("target"));
    let bin = support::proxy_binary(manifest_dir, &target_dir).expect("a tokenfold binary to measure");

    let mock = support::start_mock();
    let (down, down_hits) = start_503();
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to free");
        l.local_addr().expect("its address")
    };
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
[pool]
store = "memory"
# Try the failing target first on every request: demoted for 1 ms only, breaker never opens.
short_cooldown_ms = 1
breaker_failures = 1000000000
breaker_open_ms = 1
[[providers]]
name = "mock"
kind = "anthropic"
base_url = "http://{mock}/v1"
auth = "client"
[[providers]]
name = "refused"
kind = "anthropic"
base_url = "http://{refused}/v1"
auth = "client"
[[providers]]
name = "down"
kind = "anthropic"
base_url = "http://{down}/v1"
auth = "client"
[routes.direct]
targets = ["mock/claude-sonnet-4-5"]
[routes.via-refused]
targets = ["refused/claude-sonnet-4-5", "mock/claude-sonnet-4-5"]
[routes.via-503]
targets = ["down/claude-sonnet-4-5", "mock/claude-sonnet-4-5"]
"#
    );
    let config_path = target_dir.join("bench-fallback.toml");
    std::fs::write(&config_path, config).expect("write the bench config");
    let (proxy, addr) = spawn(&bin, &config_path);

    let base = chat_body(Api::Anthropic, 1024, false);
    let text = String::from_utf8(base.body.to_vec()).expect("a UTF-8 body");
    let route_body = |route: &str| Prepared {
        api: Api::Anthropic,
        body: Bytes::from(text.replacen("\"model\":\"claude-sonnet-4-5\"", &format!("\"model\":\"{route}\""), 1)),
    };
    let bodies: Vec<Prepared> = ROUTES.iter().map(|r| route_body(r)).collect();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("load runtime");
    let samples = rt
        .block_on(async {
            let mut direct = Conn::open(mock).await?;
            let mut via = Conn::open(addr).await?;
            let mut out: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); ROUTES.len() + 1];
            for i in 0..warmup + n {
                // Each round in another order, so drift hits every series alike.
                for k in 0..=ROUTES.len() {
                    let which = (k + i) % (ROUTES.len() + 1);
                    // The failing target's 1 ms demotion must be over.
                    tokio::time::sleep(Duration::from_micros(1100)).await;
                    let t = if which == 0 { direct.send(&base).await? } else { via.send(&bodies[which - 1]).await? };
                    if i >= warmup {
                        out[which].push(t.total);
                    }
                }
            }
            Ok::<_, String>(out)
        })
        .unwrap_or_else(|e| panic!("bench failed: {e}"));
    // Every request of `via-503` tried the failing target first.
    let hops_503 = down_hits.load(Ordering::Relaxed);
    let refused_hops = rt.block_on(consecutive_failures(addr, "refused"));
    drop(proxy);

    let pct = |v: &[Duration], q: f64| {
        let mut v = v.to_vec();
        v.sort();
        v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let signed = |a: Duration, b: Duration| us(a) - us(b);
    let own = &samples[0];
    let via_direct = &samples[1];
    println!("\n| fallback hop, 1 KB Anthropic request, concurrency 1 | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| mock alone (the second target's own latency) | {:.1} µs | {:.1} µs |",
        us(pct(own, 0.5)),
        us(pct(own, 0.99))
    );
    println!(
        "| through the proxy, no hop (`direct`) | {:.1} µs | {:.1} µs |",
        us(pct(via_direct, 0.5)),
        us(pct(via_direct, 0.99))
    );
    let mut figures = Vec::new();
    for (i, (name, first)) in [("via-refused", "connection refused"), ("via-503", "503")].iter().enumerate() {
        let s = &samples[i + 2];
        let (p50, p99) = (pct(s, 0.5), pct(s, 0.99));
        let hop = (signed(p50, pct(via_direct, 0.5)), signed(p99, pct(via_direct, 0.99)));
        let over = (signed(p50, pct(own, 0.5)), signed(p99, pct(own, 0.99)));
        println!("| through the proxy, first target {first} (`{name}`) | {:.1} µs | {:.1} µs |", us(p50), us(p99));
        println!("| — the hop itself ({name} minus direct) | {:+.1} µs | {:+.1} µs |", hop.0, hop.1);
        let verdict = if over.1 <= 1000.0 { "ok" } else { "MISSED" };
        println!(
            "| — over the second target's own latency (target ≤ 1 ms) | {:+.1} µs | {:+.1} µs {verdict} |",
            over.0, over.1
        );
        figures.push(json!({
            "route": name, "first_target": first,
            "p50_us": us(p50), "p99_us": us(p99),
            "hop_p50_us": hop.0, "hop_p99_us": hop.1,
            "over_second_target_p50_us": over.0, "over_second_target_p99_us": over.1,
        }));
    }
    println!(
        "\nhops made: {hops_503} requests reached the 503 provider, {refused_hops} connections were refused \
         ({} measured + {warmup} warm-up per route)",
        n
    );
    let report = json!({
        "quick": quick, "requests_per_series": n,
        "mock_p50_us": us(pct(own, 0.5)), "mock_p99_us": us(pct(own, 0.99)),
        "direct_p50_us": us(pct(via_direct, 0.5)), "direct_p99_us": us(pct(via_direct, 0.99)),
        "routes": figures, "hops_503": hops_503, "hops_refused": refused_hops,
    });
    let out = target_dir.join("bench-fallback.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).expect("serialize") + "\n").expect("write the figures");
    eprintln!("bench: figures written to {}", out.display());
}

/// A provider that answers every request with 503 (keep-alive), counting them.
fn start_503() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the 503 provider");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("address");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("503 runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        async {
                            let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
                            let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                            *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            r.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
    });
    (addr, hits)
}

/// `tokenfold serve --config PATH --listen 127.0.0.1:0`; returns it with its address.
fn spawn(bin: &Path, config: &Path) -> (RunningProxy, SocketAddr) {
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("TOKENFOLD_CONFIG")
        .env("TOKENFOLD_LEDGER", "off")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stderr = child.stderr.take().expect("stderr pipe");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("tokenfold listening on http://") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let child = RunningProxy(child);
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("the proxy printed its listening line");
    let addr: SocketAddr = addr.parse().expect("a listening address");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the proxy does not accept connections");
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, addr)
}

/// The failing target's consecutive failures from `GET /pool` (one per hop made).
async fn consecutive_failures(addr: SocketAddr, provider: &str) -> u64 {
    let Ok(resp) = reqwest::get(format!("http://{addr}/pool")).await else { return 0 };
    let Ok(status) = resp.json::<serde_json::Value>().await else { return 0 };
    status["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == provider))
        .and_then(|p| p["accounts"][0]["consecutive_failures"].as_u64())
        .unwrap_or(0)
}
