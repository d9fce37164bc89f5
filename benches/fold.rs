//! Fold throughput (Criterion): a ~200 KB Claude Code shaped request folded cold (fresh state),
//! and the incremental cost of turn N+1 when turn N is cached. Targets: cold <= 2 ms, incremental
//! <= 0.3 ms. `cargo bench --bench fold` (full) or `-- --quick` (a smoke run of a few seconds).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};
use tokenfold::dialect::Dialect;
use tokenfold::fold::Folder;

#[path = "shared/session.rs"]
mod session;
use session::body;

/// Code-like lines from a fixed xorshift stream (no files, no corpus text).
fn lines(seed: &mut u64, n: usize) -> Vec<String> {
    let words = ["session", "render", "token", "window", "route", "quota", "state", "block", "cache", "entry"];
    (0..n)
        .map(|i| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let a = words[(*seed % 10) as usize];
            let b = words[((*seed >> 8) % 10) as usize];
            format!("    let {a}_{i} = {b}.get(\"{a}\").map(|v| v * {}).unwrap_or_default();", *seed % 997)
        })
        .collect()
}

/// Messages of a session: reads of files (some re-read with shifted numbers) and command output.
fn session(target_bytes: usize) -> Vec<Value> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let files: Vec<Vec<String>> = (0..6).map(|_| lines(&mut seed, 220)).collect();
    let mut msgs = vec![json!({"role": "user", "content": "Refactor the session module."})];
    let mut size = 0;
    let mut k = 0;
    while size < target_bytes {
        let f = &files[k % files.len()];
        let from = if k >= files.len() { 5 * (k % 4) } else { 0 };
        let out: String = f.iter().enumerate().skip(from).map(|(i, l)| format!("{:>6}→{l}\n", i + 1 + k / 7)).collect();
        let id = format!("toolu_bench_{k:04}");
        msgs.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": format!("/p/src/f{}.rs", k % 6)}}]}));
        msgs.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": out}]}));
        size += out.len() + 200;
        k += 1;
    }
    msgs
}

fn bench(c: &mut Criterion) {
    let msgs = session(200_000);
    let full = body(&msgs);
    let prev = body(&msgs[..msgs.len() - 2]);
    let small = body(&msgs[..3]);
    let mut g = c.benchmark_group("fold");
    g.sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Bytes(full.len() as u64));
    g.bench_function(format!("cold {} KB request, empty cache", full.len() / 1000), |b| {
        b.iter_batched(|| Folder::new(true), |f| black_box(f.fold(Dialect::Anthropic, &full)), BatchSize::PerIteration)
    });
    g.bench_function("incremental: turn N+1 with turn N cached", |b| {
        b.iter_batched(
            || {
                let f = Folder::new(true);
                f.fold(Dialect::Anthropic, &prev);
                f
            },
            |f| black_box(f.fold(Dialect::Anthropic, &full)),
            BatchSize::PerIteration,
        )
    });
    let warm = Folder::new(true);
    warm.fold(Dialect::Anthropic, &full);
    g.bench_function("repeat: the same request again (count_tokens)", |b| {
        b.iter(|| black_box(warm.fold(Dialect::Anthropic, &full)))
    });
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("small request (3 messages), cold", |b| {
        b.iter_batched(|| Folder::new(true), |f| black_box(f.fold(Dialect::Anthropic, &small)), BatchSize::PerIteration)
    });
    g.finish();
    let folded = Folder::new(true).fold(Dialect::Anthropic, &full).map(|f| f.edits.len()).unwrap_or(0);
    println!(
        "fold bench: {} messages, {} bytes, {folded} replacements; targets: cold <= 2 ms, incremental <= 0.3 ms",
        msgs.len(),
        full.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
