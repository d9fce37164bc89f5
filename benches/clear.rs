//! Clearing cost (Criterion): what clearing adds to a ~200 KB Claude Code shaped request once
//! folding has prepared it, for a cache-billed target. Cold: no cached history, so every earlier
//! request's decision is replayed from the request alone; incremental: turn N+1 with turn N
//! cached. Targets: cold <= 2 ms, incremental <= 0.3 ms. `cargo bench --bench clear` (full) or
//! `-- --quick` (a smoke run).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};
use tokenfold::dialect::Dialect;
use tokenfold::fold::clear::Economics;
use tokenfold::fold::{FoldOptions, Folder, Level, Prepared};

#[path = "shared/session.rs"]
mod session;
use session::body;

const CACHE: Economics = Economics::Cached { read: 0.1, write: 1.25, any_prefix: false };

/// A fixed xorshift stream (no files, no corpus text).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn code(seed: &mut u64, file: usize, n: usize) -> String {
    let words = ["session", "render", "token", "window", "route", "quota", "state", "block", "cache", "entry"];
    (0..n)
        .map(|i| {
            let s = next(seed);
            let (a, b) = (words[(s % 10) as usize], words[((s >> 8) % 10) as usize]);
            format!(
                "{:>6}→    let {a}_{file}_{i} = {b}.get_{a}(\"{a}\").map(|v| v * {}).unwrap_or_default();\n",
                i + 1,
                s % 997
            )
        })
        .collect()
}

fn run_output(seed: &mut u64, k: usize) -> String {
    let mut s = format!("Running tests for module_{k}\n");
    for i in 0..60 {
        let v = next(seed) % 1000;
        s.push_str(&format!("test module_{k}::case_{i}_{v} ... ok\n"));
    }
    s.push_str(&format!("error: test module_{k}::edge_case failed: expected {} got 0\n", next(seed) % 100));
    s
}

/// Messages of a session: reads of files, edits and test runs, about `target_bytes` long.
fn session(target_bytes: usize) -> Vec<Value> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut msgs = vec![json!({"role": "user", "content": "Refactor the session module and make the tests pass."})];
    let (mut size, mut k) = (0, 0);
    while size < target_bytes {
        let id = format!("toolu_bench_{k:04}");
        let (name, input, out) = match k % 3 {
            0 => ("Read", json!({"file_path": format!("/p/src/f{}.rs", k % 7)}), code(&mut seed, k % 7, 60 + k % 40)),
            1 => ("Bash", json!({"command": format!("cargo test module_{k}")}), run_output(&mut seed, k)),
            _ => (
                "Edit",
                json!({"file_path": format!("/p/src/f{}.rs", k % 7), "old_string": "let a", "new_string": "let b"}),
                format!("The file /p/src/f{}.rs has been updated successfully.", k % 7),
            ),
        };
        msgs.push(json!({"role": "assistant", "content": [{"type": "text", "text": format!("Step {k}.")}, {"type": "tool_use", "id": id, "name": name, "input": input}]}));
        msgs.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": out}]}));
        size += out.len() + 250;
        k += 1;
    }
    msgs
}

fn folder() -> Folder {
    Folder::with_options(true, FoldOptions { level: Level::Balanced, ..FoldOptions::default() })
}

fn prepared(f: &Folder, b: &Bytes) -> Prepared {
    f.prepare(Dialect::Anthropic, b, Level::Balanced).expect("the bench request has blocks")
}

fn bench(c: &mut Criterion) {
    let msgs = session(200_000);
    let full = body(&msgs);
    let prev = body(&msgs[..msgs.len() - 2]);
    let mut g = c.benchmark_group("clear");
    g.sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Bytes(full.len() as u64));
    g.bench_function(format!("cold {} KB request: every earlier decision replayed", full.len() / 1000), |b| {
        b.iter_batched(
            || {
                let f = folder();
                let p = prepared(&f, &full);
                (f, p)
            },
            |(f, p)| black_box(f.clear(&p, CACHE)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("incremental: turn N+1 with turn N cached", |b| {
        b.iter_batched(
            || {
                let f = folder();
                f.clear(&prepared(&f, &prev), CACHE);
                let p = prepared(&f, &full);
                (f, p)
            },
            |(f, p)| black_box(f.clear(&p, CACHE)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
    let f = folder();
    let out = f.clear(&prepared(&f, &full), CACHE).expect("the bench session clears");
    println!(
        "clear bench: {} messages, {} bytes, {} outputs cleared, {} KB forwarded; targets: cold <= 2 ms, incremental <= 0.3 ms",
        msgs.len(),
        full.len(),
        out.cleared,
        out.body.len() / 1000
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
