//! Ledger benchmark: the cost of `Ledger::record` on the request path at 1,000 requests/s, and
//! the file size after 100k requests (raw, then compacted into daily aggregates).
//! `cargo bench --bench ledger` (full) or `-- --quick` (smoke run for CI).

use std::time::{Duration, Instant};

use tokenfold::dialect::usage::Usage;
use tokenfold::ledger::{Ledger, MechanismSaving, Prices, Record, RequestOutcome};

fn record(i: u64, ts_ms: i64) -> Record {
    let mut r = Record::empty();
    r.ts_ms = ts_ms;
    r.client = "Claude Code";
    r.dialect = "anthropic";
    r.route = "free-coder".into();
    r.provider = ["groq", "gemini", "anthropic"][(i % 3) as usize].into();
    r.account = "GROQ_API_KEY".into();
    r.model = "claude-sonnet-4-5".into();
    r.status = 200;
    r.outcome = RequestOutcome::Completed;
    r.latency_ms = 900 + i % 300;
    r.ttfb_ms = 400;
    r.overhead_us = 30 + i % 20;
    r.prices = Prices { input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75 };
    r.savings = vec![
        MechanismSaving { mechanism: "dedup_span".into(), tokens: 1200 + i % 500 },
        MechanismSaving { mechanism: "reminder".into(), tokens: 80 },
    ];
    r.session = format!("{:016x}", i / 40);
    r.settle(Usage { input: 3000, output: 700, cache_read: 60_000, cache_write: 2_000 });
    r
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 5_000 } else { 100_000 };
    let dir = std::env::temp_dir().join(format!("tokenfold-ledger-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ledger.db");

    // Hot-path cost at a paced 1,000 requests/s: what a request pays to hand its record over.
    let ledger = Ledger::open(&path, Duration::from_secs(365 * 86_400));
    let paced = if quick { 500 } else { 3_000 };
    let now = tokenfold::ledger::now_ms();
    let mut costs = Vec::with_capacity(paced);
    let start = Instant::now();
    for i in 0..paced as u64 {
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

    // Bulk: the rest of the 100k, spread over 60 days so compaction has old days to fold.
    let bulk_start = Instant::now();
    for i in paced as u64..n {
        let day = (i % 60) as i64;
        ledger.record(record(i, now - day * 86_400_000));
        // The queue is bounded: let the writer keep up instead of counting bench records as lost.
        while ledger.pending() > 8_000 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let written = loop {
        let c: i64 = rusqlite::Connection::open(&path)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0)))
            .unwrap_or(0);
        if c as u64 + ledger.lost() >= n || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let bulk = bulk_start.elapsed();
    let size = |p: &std::path::Path| {
        ["", "-wal"]
            .iter()
            .map(|s| std::fs::metadata(format!("{}{s}", p.display())).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
    };
    let raw_size = size(&path);
    drop(ledger);

    // Compaction with a 30-day retention, as the writer does hourly.
    std::thread::sleep(Duration::from_millis(200));
    let compacted = Ledger::open(&path, Duration::from_secs(30 * 86_400));
    std::thread::sleep(Duration::from_millis(1500));
    drop(compacted);
    std::thread::sleep(Duration::from_millis(200));
    if let Ok(c) = rusqlite::Connection::open(&path) {
        let _ = c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;");
    }
    let compact_size = size(&path);

    println!("| ledger figure | value |");
    println!("|---|---|");
    println!(
        "| `record()` cost at 1,000 req/s, p50 / p99 / max | {} ns / {} ns / {} ns |",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!("| records written / lost | {written} / {} |", n as i64 - written);
    println!("| bulk write rate | {:.0} records/s |", (n - paced as u64) as f64 / bulk.as_secs_f64());
    println!(
        "| file size after {n} requests (raw) | {:.1} MB ({} B/record) |",
        raw_size as f64 / 1e6,
        raw_size / n.max(1)
    );
    println!("| file size after compaction (30-day retention, VACUUM) | {:.1} MB |", compact_size as f64 / 1e6);
    let _ = std::fs::remove_dir_all(&dir);
}
