//! What cache planning costs on the request path, next to what the proxy already spends reading
//! every request (the envelope scan), on agent-shaped bodies of 20 KB and 200 KB:
//!
//! - a Claude Code body with its own breakpoints: only the check for them (the common case);
//! - an Aider-shaped Anthropic body without: find the blocks, place, splice;
//! - a Chat body to an OpenAI target: the conversation id and the derived `prompt_cache_key`.
//!
//! ```text
//! cargo bench --bench cache              # full run
//! cargo bench --bench cache -- --quick   # smoke run
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Value};
use tokenfold::cache::{key, plan};
use tokenfold::dialect::{breakpoints, cache_key, envelope, Dialect};

/// Source-like text of about `bytes` bytes.
fn text(tag: &str, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 100);
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(&format!("{i:>6}\tpub fn {tag}_{i}(input: &str) -> Result<usize, Error> {{ parse(input, {i}) }}\n"));
        i += 1;
    }
    s
}

/// An Anthropic conversation of about `bytes`: a system prompt, tools, and tool turns.
fn anthropic(bytes: usize, with_breakpoints: bool) -> Vec<u8> {
    let turns = (bytes / 4000).max(1);
    let mut messages = vec![json!({"role": "user", "content": "Fix the parser."})];
    for t in 0..turns {
        let id = format!("toolu_{t}");
        messages.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": format!("/r/{t}.rs")}}]}));
        messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": text(&format!("f{t}"), 3500)}]}));
    }
    let mut system = json!([{"type": "text", "text": text("system", 2000)}]);
    if with_breakpoints {
        system[0]["cache_control"] = json!({"type": "ephemeral"});
        let last = messages.last_mut().and_then(|m| m["content"].as_array_mut()).and_then(|c| c.last_mut());
        if let Some(block) = last {
            block["cache_control"] = json!({"type": "ephemeral"});
        }
    }
    let tools: Vec<Value> = (0..8)
        .map(|i| json!({"name": format!("tool{i}"), "description": text("d", 300), "input_schema": {"type": "object"}}))
        .collect();
    serde_json::to_vec(&json!({"model": "claude-sonnet-4-5", "max_tokens": 8192, "system": system, "tools": tools, "messages": messages}))
        .unwrap()
}

/// A Chat conversation of about `bytes` without a `prompt_cache_key`.
fn chat(bytes: usize) -> Vec<u8> {
    let turns = (bytes / 4000).max(1);
    let mut messages =
        vec![json!({"role": "system", "content": text("system", 2000)}), json!({"role": "user", "content": "Fix it."})];
    for t in 0..turns {
        let id = format!("call_{t}");
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": "read", "arguments": "{}"}}]}));
        messages.push(json!({"role": "tool", "tool_call_id": id, "content": text(&format!("f{t}"), 3500)}));
    }
    serde_json::to_vec(&json!({"model": "gpt-5", "messages": messages})).unwrap()
}

fn planning(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache");
    for kb in [20usize, 200] {
        let own = anthropic(kb * 1024, true);
        let bare = anthropic(kb * 1024, false);
        let chat = chat(kb * 1024);
        g.bench_with_input(BenchmarkId::new("envelope scan (baseline, every request)", kb), &bare, |b, body| {
            b.iter(|| black_box(envelope::scan(body).is_ok()))
        });
        g.bench_with_input(BenchmarkId::new("client breakpoints found (Claude Code)", kb), &own, |b, body| {
            b.iter(|| black_box(breakpoints::has_client_breakpoints(body)))
        });
        g.bench_with_input(BenchmarkId::new("breakpoints placed (Aider)", kb), &bare, |b, body| {
            b.iter(|| {
                let sites = breakpoints::sites(body).unwrap();
                let chosen = plan::place(&sites.sites, 1024, None);
                black_box(breakpoints::add(body, &sites, &chosen, breakpoints::CacheTtl::FiveMinutes))
            })
        });
        g.bench_with_input(BenchmarkId::new("prompt_cache_key derived (Chat)", kb), &chat, |b, body| {
            b.iter(|| {
                let session = tokenfold::ledger::session::from_body(Dialect::OpenaiChat, body);
                black_box(cache_key::add(body, &key::derive("openai", "client", &session)))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, planning);
criterion_main!(benches);
