//! What the command-output filters cost: a ~200 KB Claude Code shaped request (file reads plus
//! Bash results recorded in fixtures/filters) folded cold at each level, the difference between
//! `lossless` and `balanced` being the filters' share; the cost of one new turn whose Bash output
//! is filtered; and `filters::compress` alone per fixture (MB/s).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};
use tokenfold::dialect::Dialect;
use tokenfold::fold::filters::{self, Level};
use tokenfold::fold::originals::Originals;
use tokenfold::fold::{FoldOptions, Folder};

#[path = "shared/session.rs"]
mod session;
use session::body;

const FIXTURES: &[&str] = &[
    "cargo_test_failing",
    "pytest_failing",
    "npm_install",
    "pip_install",
    "git_diff_context",
    "git_log",
    "git_status",
    "rg_repo",
    "grep_repo",
    "ls_la",
    "find_repo",
    "tree_repo",
    "app_log",
];

fn fixture(name: &str) -> (String, String) {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/filters");
    let read = |ext: &str| std::fs::read_to_string(d.join(format!("{name}.{ext}"))).unwrap_or_default();
    (read("cmd"), read("out"))
}

/// Code-like lines from a fixed xorshift stream.
fn file(seed: &mut u64, n: usize) -> String {
    let words = ["session", "render", "token", "window", "route", "quota", "state", "block", "cache", "entry"];
    (0..n)
        .map(|i| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let a = words[(*seed % 10) as usize];
            format!(
                "{:>6}→    let {a}_{i} = lookup(\"{a}\").map(|v| v * {}).unwrap_or_default();\n",
                i + 1,
                *seed % 997
            )
        })
        .collect()
}

/// Messages alternating file reads and recorded command runs until about `target` bytes.
fn session(target: usize) -> Vec<Value> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut msgs = vec![json!({"role": "user", "content": "Make the tests pass."})];
    let (mut size, mut k) = (0, 0);
    while size < target {
        let id = format!("toolu_bench_{k:04}");
        let (input, name, out) = if k % 2 == 0 {
            (json!({"file_path": format!("/p/src/f{k}.rs")}), "Read", file(&mut seed, 120))
        } else {
            let (cmd, out) = fixture(FIXTURES[(k / 2) % FIXTURES.len()]);
            (json!({"command": cmd}), "Bash", out)
        };
        size += out.len() + 200;
        msgs.push(
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": input}]}),
        );
        msgs.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": out}]}));
        k += 1;
    }
    msgs
}

fn folder(level: Level) -> Folder {
    Folder::with_options(
        true,
        FoldOptions { level, originals: Arc::new(Originals::unstored()), ..FoldOptions::default() },
    )
}

fn bench(c: &mut Criterion) {
    let msgs = session(200_000);
    let full = body(&msgs);
    // Turn N+1 adds one Bash run (the last pair of messages) to turn N.
    let cut = msgs.iter().rposition(|m| m.to_string().contains("\"Bash\"")).unwrap_or(msgs.len());
    let prev = body(&msgs[..cut]);
    let next = body(&msgs[..cut + 2]);

    let mut g = c.benchmark_group("fold 200 KB request");
    g.throughput(Throughput::Bytes(full.len() as u64));
    for level in Level::ALL {
        g.bench_with_input(BenchmarkId::new("cold", level.name()), &level, |b, &level| {
            b.iter(|| folder(level).fold(Dialect::Anthropic, &full))
        });
    }
    for level in Level::ALL {
        g.bench_with_input(BenchmarkId::new("turn N+1 adds a Bash output", level.name()), &level, |b, &level| {
            b.iter_batched(
                || {
                    let f = folder(level);
                    f.fold(Dialect::Anthropic, &prev);
                    f
                },
                |f| f.fold(Dialect::Anthropic, &next),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("filters::compress");
    for name in FIXTURES {
        let (cmd, out) = fixture(name);
        g.throughput(Throughput::Bytes(out.len() as u64));
        g.bench_function(*name, |b| b.iter(|| filters::compress(Some(&cmd), &out, Level::Balanced)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
