//! Ledger benchmark.
//!
//! 1. The request path at a paced 1,000 requests/s through the real proxy (release binary, mock
//!    provider): the same load against a proxy with the ledger on and one with
//!    `TOKENFOLD_LEDGER=off`, rounds interleaved so machine noise hits both alike; p50/p99 side
//!    by side. Requests start on schedule on a free keep-alive connection (a new one when all are
//!    busy, so a slow response never delays the next request); latency is from send to the end
//!    of the response.
//! 2. What `Ledger::record` costs a request (the hand-over only).
//! 3. The file size after 100k requests, raw and compacted into daily aggregates.
//!
//! `cargo bench --bench ledger` (full) or `-- --quick` (smoke run for CI).

#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{chat_body, Api, Conn, Prepared};
use tokenfold::dialect::usage::Usage;
use tokenfold::ledger::{Ledger, Record, RequestOutcome};
use tokenfold::price::Price;

const RATE_PER_S: u64 = 1_000;
/// Connections the paced client may open (requests overlap when the proxy is slow).
const MAX_CONNS: usize = 64;

fn record(i: u64, ts_ms: i64) -> Record {
    let mut r = Record::empty();
    r.ts_ms = ts_ms;
    r.client = "Claude Code";
    r.dialect = "anthropic";
    r.route = "free-coder".into();
    r.provider = ["groq", "gemini", "anthropic"][(i % 3) as usize].into();
    r.account = "default".into();
    r.model = "claude-sonnet-4-5".into();
    r.status = 200;
    r.outcome = RequestOutcome::Completed;
    r.latency_ms = 900 + i % 300;
    r.ttfb_us = 400_000 + i % 1000;
    r.upstream_us = 899_950;
    r.overhead_us = 30 + i % 20;
    r.free_tier = i % 3 != 2;
    r.prices = Price { input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6.0 };
    r.add_saving("whole-output", |s| (s.tokens, s.turn_tokens, s.elisions) = (1200 + i % 500, 300, 1));
    r.add_saving("system-reminder", |s| s.tokens = 80);
    r.session = format!("{:016x}", i / 40);
    r.settle(Usage { input: 3000, output: 700, cache_read: 60_000, cache_write: 2_000, cache_write_1h: 0 });
    r
}

fn file_size(p: &Path) -> u64 {
    ["", "-wal"].iter().map(|s| std::fs::metadata(format!("{}{s}", p.display())).map(|m| m.len()).unwrap_or(0)).sum()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted.get(((sorted.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or_default()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One side of the comparison: latencies from the scheduled send time, and the proxy's CPU time.
#[derive(Default)]
struct Side {
    latencies: Vec<Duration>,
    cpu: Duration,
    requests: u64,
}

/// Sends `n` requests at `RATE_PER_S` to `addr`, each at its scheduled time on a free connection.
async fn paced(addr: SocketAddr, req: &Prepared, n: u64) -> Result<Vec<Duration>, String> {
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::default();
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(5);
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + Duration::from_micros(i * 1_000_000 / RATE_PER_S);
        tokio::time::sleep_until(due).await;
        let (pool, opened, req) = (pool.clone(), opened.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            let taken = pool.lock().map_err(|_| "pool lock")?.pop();
            let mut conn = match taken {
                Some(c) => c,
                None => {
                    if opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= MAX_CONNS {
                        return Err(format!("more than {MAX_CONNS} requests in flight: the proxy cannot keep up"));
                    }
                    Conn::open(addr).await?
                }
            };
            let sent = Instant::now();
            conn.send(&req).await?;
            let latency = sent.elapsed();
            pool.lock().map_err(|_| "pool lock")?.push(conn);
            Ok::<_, String>(latency)
        }));
    }
    let mut out = Vec::with_capacity(n as usize);
    for t in tasks {
        out.push(t.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

fn request_path(quick: bool) -> (Side, Side, PathBuf) {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| manifest_dir.join("target"));
    let bin = support::proxy_binary(manifest_dir, &target_dir).expect("a tokenfold binary to measure");
    let dir = target_dir.join("bench-ledger");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    let ledger_path = dir.join("ledger.db");
    let mock = support::start_mock();
    let on = support::spawn_proxy(&bin, mock, &ledger_path).expect("the proxy (ledger on) starts");
    let off = support::spawn_proxy(&bin, mock, Path::new("off")).expect("the proxy (ledger off) starts");
    let req = chat_body(Api::Anthropic, 1024, false);
    let (rounds, per_round) = if quick { (1, 300) } else { (5, 2_000) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (mut with, mut without) = (Side::default(), Side::default());
    rt.block_on(async {
        for proxy in [&on, &off] {
            paced(proxy.addr, &req, 200).await.unwrap_or_else(|e| panic!("warm-up: {e}\n{}", proxy.log_tail()));
        }
        for round in 0..rounds {
            // Alternate which side goes first.
            let order = if round % 2 == 0 { [(&on, true), (&off, false)] } else { [(&off, false), (&on, true)] };
            for (proxy, ledger_on) in order {
                let cpu_before = support::cpu_time(proxy.pid());
                let lat = paced(proxy.addr, &req, per_round)
                    .await
                    .unwrap_or_else(|e| panic!("paced load: {e}\n{}", proxy.log_tail()));
                let cpu = cpu_before.zip(support::cpu_time(proxy.pid())).map(|(a, b)| b.saturating_sub(a));
                let side = if ledger_on { &mut with } else { &mut without };
                side.latencies.extend(lat);
                side.cpu += cpu.unwrap_or_default();
                side.requests += per_round;
            }
        }
    });
    with.latencies.sort_unstable();
    without.latencies.sort_unstable();
    drop((on, off));
    (with, without, ledger_path)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");

    // 1. The request path, ledger on and off.
    let (with, without, proxy_ledger) = request_path(quick);
    let recorded: i64 = rusqlite::Connection::open(&proxy_ledger)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0)))
        .unwrap_or(0);

    // 2. The hand-over cost at a paced 1,000 records/s, in-process.
    let n: u64 = if quick { 5_000 } else { 100_000 };
    let dir = std::env::temp_dir().join(format!("tokenfold-ledger-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ledger.db");
    let ledger = Ledger::open(&path, Duration::from_secs(365 * 86_400));
    let paced_n = if quick { 500 } else { 3_000 };
    let now = tokenfold::ledger::now_ms();
    let mut costs = Vec::with_capacity(paced_n);
    let start = Instant::now();
    for i in 0..paced_n as u64 {
        let r = record(i, now);
        let t = Instant::now();
        ledger.record(r);
        costs.push(t.elapsed().as_nanos() as u64);
        let due = start + Duration::from_micros(1000 * (i + 1));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    costs.sort_unstable();
    let pct = |p: f64| costs[((costs.len() - 1) as f64 * p) as usize];

    // 3. Bulk: the rest of the 100k, spread over 60 days so compaction has old days to fold.
    let bulk_start = Instant::now();
    for i in paced_n as u64..n {
        let day = (i % 60) as i64;
        ledger.record(record(i, now - day * 86_400_000));
        // The queue is bounded: let the writer keep up instead of counting bench records as lost.
        while ledger.pending() > 8_000 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let lost = ledger.lost();
    // Dropping the last handle makes the writer write what is queued, then stop.
    drop(ledger);
    let deadline = Instant::now() + Duration::from_secs(120);
    let written = loop {
        let c: i64 = rusqlite::Connection::open(&path)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0)))
            .unwrap_or(0);
        if c as u64 + lost >= n || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let bulk = bulk_start.elapsed();
    if let Ok(c) = rusqlite::Connection::open(&path) {
        let _ = c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }
    let raw_size = file_size(&path);

    // Compaction with a 30-day retention, as the writer does at start and hourly.
    let compacted = Ledger::open(&path, Duration::from_secs(30 * 86_400));
    std::thread::sleep(Duration::from_millis(300));
    drop(compacted);
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(c) = rusqlite::Connection::open(&path) {
        let _ = c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;");
    }
    let compact_size = file_size(&path);

    let row = |s: &Side, q: f64| us(percentile(&s.latencies, q));
    println!(
        "| request path at 1,000 req/s (1 KB Anthropic JSON, mock provider) | ledger on | ledger off | difference |"
    );
    println!("|---|---|---|---|");
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (row(&with, q), row(&without, q));
        println!("| latency {name} | {a:.0} µs | {b:.0} µs | {:+.0} µs |", a - b);
    }
    let cpu = |s: &Side| us(s.cpu) / s.requests.max(1) as f64;
    println!(
        "| proxy CPU per request | {:.0} µs | {:.0} µs | {:+.0} µs |",
        cpu(&with),
        cpu(&without),
        cpu(&with) - cpu(&without)
    );
    println!("| requests measured (each side) | {} | {} | |", with.requests, without.requests);
    println!("| records the ledger-on proxy wrote (incl. warm-up) | {recorded} | - | |");
    println!();
    println!("| ledger figure | value |");
    println!("|---|---|");
    println!(
        "| `record()` hand-over at 1,000 req/s, p50 / p99 / max | {} ns / {} ns / {} ns |",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!("| records written / lost | {written} / {} |", n as i64 - written);
    println!("| bulk write rate | {:.0} records/s |", (n - paced_n as u64) as f64 / bulk.as_secs_f64());
    println!(
        "| file size after {n} requests (raw) | {:.1} MB ({} B/record) |",
        raw_size as f64 / 1e6,
        raw_size / n.max(1)
    );
    println!("| file size after compaction (30-day retention, VACUUM) | {:.1} MB |", compact_size as f64 / 1e6);
    let _ = std::fs::remove_dir_all(&dir);
}
