//! Fold throughput: a ~200 KB Claude Code shaped request folded cold (fresh state), and the
//! incremental cost of turn N+1 when turn N is cached. Plain std timing; prints a table.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokenfold::dialect::Dialect;
use tokenfold::fold::Folder;

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

fn body(msgs: &[Value]) -> Bytes {
    Bytes::from(
        json!({"model": "claude", "max_tokens": 32000, "system": "You are a coding agent.", "messages": msgs})
            .to_string(),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let msgs = session(200_000);
    let full = body(&msgs);
    let prev = body(&msgs[..msgs.len() - 2]);
    let small = body(&msgs[..3]);
    let iters = 30;

    let cold = median(
        (0..iters)
            .map(|_| {
                let f = Folder::new(true);
                let t = Instant::now();
                std::hint::black_box(f.fold(Dialect::Anthropic, &full));
                t.elapsed()
            })
            .collect(),
    );
    let incremental = median(
        (0..iters)
            .map(|_| {
                let f = Folder::new(true);
                f.fold(Dialect::Anthropic, &prev);
                let t = Instant::now();
                std::hint::black_box(f.fold(Dialect::Anthropic, &full));
                t.elapsed()
            })
            .collect(),
    );
    let f = Folder::new(true);
    f.fold(Dialect::Anthropic, &full);
    let repeat = median(
        (0..iters)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f.fold(Dialect::Anthropic, &full));
                t.elapsed()
            })
            .collect(),
    );
    let tiny = median(
        (0..iters)
            .map(|_| {
                let f = Folder::new(true);
                let t = Instant::now();
                std::hint::black_box(f.fold(Dialect::Anthropic, &small));
                t.elapsed()
            })
            .collect(),
    );
    let mb = full.len() as f64 / 1e6;
    println!("fold bench ({} messages, request {:.0} KB; median of {iters})", msgs.len(), full.len() as f64 / 1e3);
    println!("{:<44} {:>10} {:>10}", "case", "ms", "MB/s");
    let row = |name: &str, d: Duration, bytes: f64| {
        println!("{name:<44} {:>10.3} {:>10.0}", d.as_secs_f64() * 1e3, bytes / d.as_secs_f64());
    };
    row("cold: 200 KB request, empty cache", cold, mb);
    row("incremental: turn N+1 with turn N cached", incremental, mb);
    row("repeat: same request again (count_tokens)", repeat, mb);
    row("small request (3 messages), cold", tiny, small.len() as f64 / 1e6);
    println!("targets: cold <= 2 ms, incremental <= 0.3 ms");
}
