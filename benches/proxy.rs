//! Proxy overhead: what `tokenfold serve` adds on top of talking to the provider directly.
//!
//! ```text
//! cargo bench --bench proxy              # full run (~30 s)
//! cargo bench --bench proxy -- --quick   # smoke run for CI (a few seconds)
//! TOKENFOLD_BIN=path/to/tokenfold cargo bench --bench proxy   # measure another build
//! ```
//!
//! An in-process zero-delay mock provider answers `/v1/messages`, `/v1/chat/completions` and
//! Gemini's `/v1beta/models/gemini-bench:generateContent` / `:streamGenerateContent`. The
//! real release binary runs as `tokenfold serve --upstream http://MOCK --listen 127.0.0.1:0`. The
//! same load client sends each request once straight to the mock and once through the proxy,
//! interleaved, so machine noise hits both sides alike; "added" is proxy minus direct.
//! Prints a markdown table and writes the figures to `target/bench-proxy.json`.

#[path = "proxy/gemini.rs"]
mod gemini;
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{chat_body, Api, Conn, Prepared, Proxy};

const KB: usize = 1024;
const MB: f64 = 1024.0 * 1024.0;

/// Targets (issue 8, 2 cores): added latency at 1 KB, c=32 throughput, idle RSS, start-up.
const TARGET_P50_US: f64 = 100.0;
const TARGET_P99_US: f64 = 250.0;
const TARGET_RPS: f64 = 10_000.0;
const TARGET_IDLE_RSS_MB: f64 = 15.0;
const TARGET_START_MS: u128 = 50;

/// How much work each phase does.
struct Plan {
    quick: bool,
    warmup: usize,
    latency_requests: usize,
    stream_requests: usize,
    throughput_round: Duration,
    rounds: usize,
    concurrency: usize,
    starts: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                warmup: 50,
                latency_requests: 300,
                stream_requests: 100,
                throughput_round: Duration::from_millis(250),
                rounds: 2,
                concurrency: 32,
                starts: 3,
            }
        } else {
            Plan {
                quick,
                warmup: 200,
                latency_requests: 2000,
                stream_requests: 500,
                throughput_round: Duration::from_millis(1500),
                rounds: 2,
                concurrency: 32,
                starts: 7,
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else but `--quick` is ignored.
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = Plan::new(quick);
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| manifest_dir.join("target"));
    let bin = support::proxy_binary(manifest_dir, &target_dir).expect("a tokenfold binary to measure");
    // The proxy records every request in its ledger, as in real use: a fresh one under target/
    // unless TOKENFOLD_LEDGER is set (`TOKENFOLD_LEDGER=off` measures without it).
    let ledger = match std::env::var_os("TOKENFOLD_LEDGER") {
        Some(v) => PathBuf::from(v),
        None => {
            let dir = target_dir.join("bench-proxy-ledger");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the bench ledger directory");
            dir.join("ledger.db")
        }
    };
    let load_before = loadavg();
    eprintln!(
        "bench: measuring {} ({} mode, ledger {}, load average {load_before})",
        bin.display(),
        if quick { "quick" } else { "full" },
        ledger.display()
    );

    let mock = support::start_mock();
    let small = chat_body(Api::Anthropic, KB, false);
    let large = chat_body(Api::Anthropic, 200 * KB, false);
    let small_chat = chat_body(Api::OpenaiChat, KB, false);
    let stream = chat_body(Api::Anthropic, KB, true);

    // Start-up: several cold-ish starts; the last proxy stays up for the load phases.
    let mut starts = Vec::new();
    let mut proxy: Option<Proxy> = None;
    for _ in 0..plan.starts {
        drop(proxy.take());
        let p = support::spawn_proxy(&bin, mock, &ledger).expect("the proxy starts");
        starts.push((p.to_listening, p.to_first_200));
        proxy = Some(p);
    }
    let proxy = proxy.expect("at least one start");
    std::thread::sleep(Duration::from_millis(200));
    let (idle_rss, _) = support::rss(proxy.pid()).expect("read /proc/PID/status of the proxy");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("load runtime");
    let load = rt.block_on(run_load(&plan, mock, &proxy, &small, &large, &small_chat, &stream));
    let load = match load {
        Ok(l) => l,
        Err(e) => panic!("bench failed: {e}\nlast proxy log lines:\n{}", proxy.log_tail()),
    };
    let (rss_after, peak_rss) = support::rss(proxy.pid()).expect("read /proc/PID/status of the proxy");
    drop(proxy);

    // Translation: an Anthropic client through a proxy whose upstream speaks OpenAI Chat, against
    // the same Chat request sent straight to the mock.
    let translating = support::spawn_proxy_with(&bin, mock, &ledger, &["--upstream-dialect", "openai-chat"])
        .expect("the translating proxy starts");
    let small_chat_stream = chat_body(Api::OpenaiChat, KB, true);
    let translated = rt
        .block_on(async {
            let mut direct = Conn::open(mock).await?;
            let mut via = Conn::open(translating.addr).await?;
            eprintln!("bench: translation Anthropic -> OpenAI Chat at concurrency 1");
            let request =
                pair_with(&plan, plan.latency_requests, &mut direct, &mut via, &small_chat, &small, false).await?;
            let stream =
                pair_with(&plan, plan.stream_requests, &mut direct, &mut via, &small_chat_stream, &stream, true)
                    .await?;
            Ok::<_, String>((request, stream))
        })
        .unwrap_or_else(|e| panic!("translation bench failed: {e}\n{}", translating.log_tail()));
    drop(translating);
    let gemini = gemini::rows(&plan, &rt, &bin, mock, &ledger);
    let load_after = loadavg();

    let mut to_200: Vec<Duration> = starts.iter().map(|s| s.1).collect();
    let first_start = to_200[0];
    to_200.sort();
    let start_median = to_200[to_200.len() / 2];
    let mut to_listen: Vec<Duration> = starts.iter().map(|s| s.0).collect();
    to_listen.sort();

    let report = Report {
        plan: &plan,
        load,
        idle_rss,
        rss_after,
        peak_rss,
        start_median,
        start_first: first_start,
        start_max: to_200[to_200.len() - 1],
        listen_median: to_listen[to_listen.len() / 2],
        load_before,
        load_after,
        settings: proxy_settings(&ledger),
    };
    println!("{}", report.markdown());
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    for (name, p, target) in [
        ("translated request Anthropic -> Chat, 1 KB", &translated.0, Some(TRANSLATED_P99_TARGET_US)),
        ("translated stream, time to first event, 1 KB", &translated.1, None),
    ] {
        let (d50, d99) = (percentile(&p.direct, 0.5), percentile(&p.direct, 0.99));
        let (p50, p99) = (percentile(&p.proxy, 0.5), percentile(&p.proxy, 0.99));
        let target =
            target.map(|t| format!("added p99 ≤ {t:.0} µs: {}", verdict(added_us(p, 0.99) <= t))).unwrap_or_default();
        println!(
            "| {name} p50 / p99 | {} / {} | {} / {} | +{} / +{} | {target} |",
            us(d50),
            us(d99),
            us(p50),
            us(p99),
            us(p50.saturating_sub(d50)),
            us(p99.saturating_sub(d99))
        );
    }
    gemini::print_rows(&gemini);
    let mut figures = report.json();
    figures["translated_request_anthropic_to_chat_c1_1k"] = pair_json(&translated.0);
    figures["translated_stream_first_event_c1_1k"] = pair_json(&translated.1);
    for (_, key, p) in &gemini {
        figures[*key] = pair_json(p);
    }
    let added = added_us(&translated.0, 0.99);
    figures["targets"]["translated_added_p99_1k_us"] =
        json!({"target": TRANSLATED_P99_TARGET_US, "measured": added, "met": added <= TRANSLATED_P99_TARGET_US});
    let out = target_dir.join("bench-proxy.json");
    let text = serde_json::to_string_pretty(&figures).expect("serialize the figures");
    std::fs::write(&out, text + "\n").expect("write target/bench-proxy.json");
    eprintln!("bench: figures written to {}", out.display());
}

// ---------------------------------------------------------------------------------------------
// Load phases

/// Latencies of the same requests sent directly and through the proxy.
struct Pair {
    direct: Vec<Duration>,
    proxy: Vec<Duration>,
    /// Streams whose first event arrived less than half the mock's gap before the end, i.e.
    /// it was held back with the later events (direct, proxy).
    held: (usize, usize),
}

struct Throughput {
    direct_rps: f64,
    proxy_rps: f64,
    /// Proxy CPU (user + system) per request during the proxy rounds.
    proxy_cpu_per_req: Option<Duration>,
    /// This process's CPU (load client + mock) per request during the direct rounds, for scale.
    direct_cpu_per_req: Option<Duration>,
}

struct Load {
    latency_1k: Pair,
    latency_200k: Pair,
    latency_1k_chat: Pair,
    ttfb_stream: Pair,
    tput_1k: Throughput,
    tput_200k: Throughput,
}

async fn run_load(
    plan: &Plan,
    mock: SocketAddr,
    proxy: &Proxy,
    small: &Prepared,
    large: &Prepared,
    small_chat: &Prepared,
    stream: &Prepared,
) -> Result<Load, String> {
    let mut direct = Conn::open(mock).await?;
    let mut via = Conn::open(proxy.addr).await?;
    eprintln!("bench: latency at concurrency 1");
    let latency_1k = pair(plan, plan.latency_requests, &mut direct, &mut via, small, false).await?;
    let latency_1k_chat = pair(plan, plan.latency_requests, &mut direct, &mut via, small_chat, false).await?;
    let latency_200k = pair(plan, plan.latency_requests, &mut direct, &mut via, large, false).await?;
    let ttfb_stream = pair(plan, plan.stream_requests, &mut direct, &mut via, stream, true).await?;
    drop((direct, via));
    eprintln!("bench: throughput at concurrency {}, 1 KB", plan.concurrency);
    let tput_1k = throughput(plan, mock, proxy, small).await?;
    eprintln!("bench: throughput at concurrency {}, 200 KB", plan.concurrency);
    let tput_200k = throughput(plan, mock, proxy, large).await?;
    Ok(Load { latency_1k, latency_200k, latency_1k_chat, ttfb_stream, tput_1k, tput_200k })
}

/// Concurrency 1: after a warm-up, `n` requests each way, alternating which side goes first.
/// Records the time to the whole response, or with `first_event` to its first body bytes.
async fn pair(
    plan: &Plan,
    n: usize,
    direct: &mut Conn,
    via: &mut Conn,
    req: &Prepared,
    first_event: bool,
) -> Result<Pair, String> {
    pair_with(plan, n, direct, via, req, req, first_event).await
}

/// Like `pair`, with a different request through the proxy (an agent's dialect, translated into
/// the one the mock is sent directly).
async fn pair_with(
    plan: &Plan,
    n: usize,
    direct: &mut Conn,
    via: &mut Conn,
    direct_req: &Prepared,
    via_req: &Prepared,
    first_event: bool,
) -> Result<Pair, String> {
    let req = direct_req;
    for _ in 0..plan.warmup {
        direct.send(req).await?;
        via.send(via_req).await.map_err(|e| format!("via proxy: {e}"))?;
    }
    let mut out = Pair { direct: Vec::with_capacity(n), proxy: Vec::with_capacity(n), held: (0, 0) };
    let held = |t: &support::Timing| t.total.saturating_sub(t.first_byte) < support::STREAM_GAP / 2;
    for i in 0..n {
        let (d, p) = if i % 2 == 0 {
            let d = direct.send(req).await?;
            (d, via.send(via_req).await.map_err(|e| format!("via proxy: {e}"))?)
        } else {
            let p = via.send(via_req).await.map_err(|e| format!("via proxy: {e}"))?;
            (direct.send(req).await?, p)
        };
        out.held.0 += held(&d) as usize;
        out.held.1 += held(&p) as usize;
        let pick = |t: &support::Timing| if first_event { t.first_byte } else { t.total };
        out.direct.push(pick(&d));
        out.proxy.push(pick(&p));
    }
    Ok(out)
}

/// Concurrency 32 for a fixed time, direct and proxy rounds alternating.
async fn throughput(plan: &Plan, mock: SocketAddr, proxy: &Proxy, req: &Prepared) -> Result<Throughput, String> {
    // Warm-up: lets the proxy open its upstream connections.
    blast(plan.concurrency, proxy.addr, req, Duration::from_millis(100)).await?;
    let (mut direct_n, mut direct_t, mut proxy_n, mut proxy_t) = (0u64, Duration::ZERO, 0u64, Duration::ZERO);
    let (mut proxy_cpu, mut direct_cpu) = (Some(Duration::ZERO), Some(Duration::ZERO));
    let used = |pid: u32, before: Option<Duration>| Some(support::cpu_time(pid)?.saturating_sub(before?));
    for _ in 0..plan.rounds {
        let before = support::cpu_time(std::process::id());
        let (n, t) = blast(plan.concurrency, mock, req, plan.throughput_round).await?;
        direct_cpu = direct_cpu.zip(used(std::process::id(), before)).map(|(a, b)| a + b);
        direct_n += n;
        direct_t += t;
        let before = support::cpu_time(proxy.pid());
        let (n, t) = blast(plan.concurrency, proxy.addr, req, plan.throughput_round)
            .await
            .map_err(|e| format!("via proxy: {e}"))?;
        proxy_cpu = proxy_cpu.zip(used(proxy.pid(), before)).map(|(a, b)| a + b);
        proxy_n += n;
        proxy_t += t;
    }
    let per_req = |cpu: Option<Duration>, n: u64| cpu.filter(|_| n > 0).map(|c| c.div_f64(n as f64));
    Ok(Throughput {
        direct_rps: direct_n as f64 / direct_t.as_secs_f64(),
        proxy_rps: proxy_n as f64 / proxy_t.as_secs_f64(),
        proxy_cpu_per_req: per_req(proxy_cpu, proxy_n),
        direct_cpu_per_req: per_req(direct_cpu, direct_n),
    })
}

/// `concurrency` keep-alive connections sending back to back until `duration` is over.
/// Returns the completed requests and the time until the last one finished.
async fn blast(
    concurrency: usize,
    addr: SocketAddr,
    req: &Prepared,
    duration: Duration,
) -> Result<(u64, Duration), String> {
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(Conn::open(addr).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let req = req.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    c.send(&req).await?;
                    n += 1;
                }
                Ok::<u64, String>(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| format!("load task: {e}"))??;
    }
    Ok((total, start.elapsed()))
}

// ---------------------------------------------------------------------------------------------
// Report

struct Report<'a> {
    plan: &'a Plan,
    load: Load,
    idle_rss: u64,
    rss_after: u64,
    peak_rss: u64,
    start_median: Duration,
    start_first: Duration,
    start_max: Duration,
    listen_median: Duration,
    load_before: String,
    load_after: String,
    /// Environment that changes how the proxy runs.
    settings: String,
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or_default()
}

fn us(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

fn added_us(p: &Pair, q: f64) -> f64 {
    ((us(percentile(&p.proxy, q)) - us(percentile(&p.direct, q))) * 10.0).round() / 10.0
}

/// Issue 6: what translating a 1 KB request may add at p99.
const TRANSLATED_P99_TARGET_US: f64 = 400.0;

/// The JSON figures of a translated row (the same fields as the other latency rows).
fn pair_json(p: &Pair) -> Value {
    json!({
        "direct_p50_us": us(percentile(&p.direct, 0.5)), "proxy_p50_us": us(percentile(&p.proxy, 0.5)),
        "added_p50_us": added_us(p, 0.5),
        "direct_p99_us": us(percentile(&p.direct, 0.99)), "proxy_p99_us": us(percentile(&p.proxy, 0.99)),
        "added_p99_us": added_us(p, 0.99),
        "samples": p.direct.len(),
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

impl Report<'_> {
    fn markdown(&self) -> String {
        let l = &self.load;
        let mut rows: Vec<[String; 5]> = Vec::new();
        let mut lat = |name: &str, p: &Pair, target: Option<f64>| {
            for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                let added = added_us(p, q);
                let target = match (target, q) {
                    (Some(_), 0.5) => format!("added ≤ {TARGET_P50_US} µs: {}", verdict(added <= TARGET_P50_US)),
                    (Some(_), _) => format!("added ≤ {TARGET_P99_US} µs: {}", verdict(added <= TARGET_P99_US)),
                    _ => String::new(),
                };
                rows.push([
                    format!("{name} {label}"),
                    format!("{:.1} µs", us(percentile(&p.direct, q))),
                    format!("{:.1} µs", us(percentile(&p.proxy, q))),
                    format!("{added:+.1} µs"),
                    target,
                ]);
            }
        };
        lat("latency c=1, 1 KB `/v1/messages`", &l.latency_1k, Some(0.0));
        lat("latency c=1, 1 KB `/v1/chat/completions`", &l.latency_1k_chat, None);
        lat("latency c=1, 200 KB `/v1/messages`", &l.latency_200k, None);
        lat("stream time to first event c=1, 1 KB", &l.ttfb_stream, None);
        if let Some(row) = rows.last_mut() {
            let (d, p) = l.ttfb_stream.held;
            row[4] =
                format!("first event held back to the end: direct {d}, proxy {p} of {}", l.ttfb_stream.proxy.len());
        }
        for (name, t) in [("1 KB", &l.tput_1k), ("200 KB", &l.tput_200k)] {
            let mut cpu = match (t.proxy_cpu_per_req, t.direct_cpu_per_req) {
                (Some(p), Some(d)) => {
                    format!("CPU per request: proxy {:.0} µs; load client + mock {:.0} µs (direct)", us(p), us(d))
                }
                _ => String::new(),
            };
            if name == "1 KB" {
                cpu = format!("≥ {TARGET_RPS:.0} req/s: {}; {cpu}", verdict(t.proxy_rps >= TARGET_RPS));
            }
            rows.push([
                format!("throughput c={}, {name}", self.plan.concurrency),
                format!("{:.0} req/s", t.direct_rps),
                format!("{:.0} req/s", t.proxy_rps),
                format!("{:+.1} %", (t.proxy_rps / t.direct_rps - 1.0) * 100.0),
                cpu,
            ]);
        }
        let mb = |b: u64| format!("{:.1} MB", b as f64 / MB);
        rows.push([
            "idle RSS (after start)".into(),
            String::new(),
            mb(self.idle_rss),
            String::new(),
            format!("≤ {TARGET_IDLE_RSS_MB} MB: {}", verdict(self.idle_rss as f64 <= TARGET_IDLE_RSS_MB * MB)),
        ]);
        rows.push([
            "peak RSS (VmHWM after load)".into(),
            String::new(),
            mb(self.peak_rss),
            String::new(),
            format!("RSS after load {}", mb(self.rss_after)),
        ]);
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        rows.push([
            format!("start to first 200 (median of {})", self.plan.starts),
            String::new(),
            ms(self.start_median),
            String::new(),
            format!(
                "≤ {TARGET_START_MS} ms: {} (first {}, max {}, listening line {})",
                verdict(self.start_median.as_millis() <= TARGET_START_MS),
                ms(self.start_first),
                ms(self.start_max),
                ms(self.listen_median)
            ),
        ]);

        let mut s =
            String::from("| measure | direct | via proxy | added | target / note |\n|---|---:|---:|---:|---|\n");
        for r in rows {
            s.push_str(&format!("| {} | {} | {} | {} | {} |\n", r[0], r[1], r[2], r[3], r[4]));
        }
        s.push_str(&format!(
            "\n{} run: {} requests per side per latency row ({} for the stream row) after {} warm-up; throughput {} × {:.2} s per side. \
             Load average before {}, after {} ({} CPUs). Proxy: {}.\n",
            if self.plan.quick { "Quick" } else { "Full" },
            self.plan.latency_requests,
            self.plan.stream_requests,
            self.plan.warmup,
            self.plan.rounds,
            self.plan.throughput_round.as_secs_f64(),
            self.load_before,
            self.load_after,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            self.settings,
        ));
        s
    }

    fn json(&self) -> Value {
        let l = &self.load;
        let lat = |p: &Pair| {
            json!({
                "direct_p50_us": us(percentile(&p.direct, 0.5)), "proxy_p50_us": us(percentile(&p.proxy, 0.5)),
                "added_p50_us": added_us(p, 0.5),
                "direct_p99_us": us(percentile(&p.direct, 0.99)), "proxy_p99_us": us(percentile(&p.proxy, 0.99)),
                "added_p99_us": added_us(p, 0.99),
                "samples": p.direct.len(),
            })
        };
        let tput = |t: &Throughput| {
            json!({
                "concurrency": self.plan.concurrency, "direct_rps": t.direct_rps.round(), "proxy_rps": t.proxy_rps.round(),
                "proxy_cpu_us_per_request": t.proxy_cpu_per_req.map(us),
                "client_and_mock_cpu_us_per_request_direct": t.direct_cpu_per_req.map(us),
            })
        };
        let added_p50 = added_us(&l.latency_1k, 0.5);
        let added_p99 = added_us(&l.latency_1k, 0.99);
        json!({
            "mode": if self.plan.quick { "quick" } else { "full" },
            "latency_c1_1k_messages": lat(&l.latency_1k),
            "latency_c1_1k_chat": lat(&l.latency_1k_chat),
            "latency_c1_200k_messages": lat(&l.latency_200k),
            "stream_first_event_c1_1k": lat(&l.ttfb_stream),
            "stream_first_event_held_back": {"direct": l.ttfb_stream.held.0, "proxy": l.ttfb_stream.held.1,
                "of": l.ttfb_stream.proxy.len()},
            "throughput_1k": tput(&l.tput_1k),
            "throughput_200k": tput(&l.tput_200k),
            "rss": {"idle_bytes": self.idle_rss, "after_load_bytes": self.rss_after, "peak_bytes": self.peak_rss},
            "start_to_first_200_ms": {
                "median": self.start_median.as_secs_f64() * 1e3, "first": self.start_first.as_secs_f64() * 1e3,
                "max": self.start_max.as_secs_f64() * 1e3, "runs": self.plan.starts,
                "to_listening_line_median": self.listen_median.as_secs_f64() * 1e3,
            },
            "targets": {
                "added_p50_1k_us": {"target": TARGET_P50_US, "measured": added_p50, "met": added_p50 <= TARGET_P50_US},
                "added_p99_1k_us": {"target": TARGET_P99_US, "measured": added_p99, "met": added_p99 <= TARGET_P99_US},
                "throughput_c32_1k_rps": {"target": TARGET_RPS, "measured": l.tput_1k.proxy_rps.round(),
                    "met": l.tput_1k.proxy_rps >= TARGET_RPS},
                "idle_rss_mb": {"target": TARGET_IDLE_RSS_MB, "measured": self.idle_rss as f64 / MB,
                    "met": self.idle_rss as f64 <= TARGET_IDLE_RSS_MB * MB},
                "start_to_first_200_ms": {"target": TARGET_START_MS, "measured": self.start_median.as_secs_f64() * 1e3,
                    "met": self.start_median.as_millis() <= TARGET_START_MS},
            },
            "load_average": {"before": self.load_before, "after": self.load_after},
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "proxy_settings": self.settings,
        })
    }
}

/// The proxy's logging, runtime and ledger settings as the bench ran it.
fn proxy_settings(ledger: &Path) -> String {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    format!(
        "TOKENFOLD_LOG={}, TOKIO_WORKER_THREADS={}, ledger {}",
        var("TOKENFOLD_LOG", "(default: info; per-request lines only with --debug)"),
        var("TOKIO_WORKER_THREADS", "(default: one worker thread per CPU)"),
        ledger.display()
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
