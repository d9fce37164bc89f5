//! Clearing on hand-built Anthropic sessions: stubs within budget, the same decisions cold and
//! incremental, recalls, and what is never cleared.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::outline::{MAX_BYTES, MAX_LINE};
use super::state::MAX_STUB_SHARE;
use super::{Economics, Settings};
use crate::dialect::Dialect;
use crate::fold::originals::Originals;
use crate::fold::{FoldOptions, Folder, Level};

const CACHE: Economics = Economics::Cached { read: 0.1, write: 1.25, any_prefix: false };

fn folder(level: Level) -> Folder {
    let opts = FoldOptions { level, originals: Arc::new(Originals::unstored()), ..FoldOptions::default() };
    Folder::with_options(true, opts)
}

/// Output of turn `t`: a command run with distinct lines and an error line.
fn output(t: usize, lines: usize) -> String {
    let mut s = String::new();
    for i in 0..lines {
        if i == lines / 2 {
            s.push_str(&format!("FAILED tests/test_mod_{t}.py::test_case_{i} - assert widget_{t} == {i}\n"));
        }
        s.push_str(&format!("row_{t}_{i} widget_{t}_{i} value={} owner=team_{}\n", (i * 37 + t) % 1000, i % 7));
    }
    s
}

/// (name, input, output) of each call; then the request an agent sends after them.
fn session(calls: &[(&str, Value, String)]) -> Value {
    let mut msgs = vec![json!({"role": "user", "content": "fix the failing tests"})];
    for (k, (name, input, out)) in calls.iter().enumerate() {
        let id = format!("toolu_{k:04}");
        msgs.push(
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": input}]}),
        );
        msgs.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": out}]}));
    }
    json!({"model": "claude-test", "max_tokens": 100, "messages": msgs})
}

fn runs(n: usize, lines: usize) -> Vec<(&'static str, Value, String)> {
    (0..n).map(|t| ("Bash", json!({"command": format!("pytest tests/test_mod_{t}.py")}), output(t, lines))).collect()
}

fn clear(f: &Folder, body: &Value, econ: Economics) -> Option<super::Cleared> {
    let b = Bytes::from(body.to_string());
    let p = f.prepare(Dialect::Anthropic, &b, f.level())?;
    f.clear(&p, econ)
}

fn tool_outputs(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["type"] == "tool_result")
        .map(|p| p["content"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn stubs_stay_within_budget() {
    let f = folder(Level::Balanced);
    // Outputs of every shape and size; a huge one full of distinct names.
    let mut calls = runs(6, 150);
    calls.push((
        "Read",
        json!({"file_path": "/r/lib/big.ex"}),
        (1..=900).map(|i| format!("{i:>6}→  def fun_{i}(a_{i}), do: Mod{i}.call_{i}(a_{i})\n")).collect(),
    ));
    calls.push((
        "Grep",
        json!({"pattern": "widget"}),
        (0..400).map(|i| format!("src/m_{i}.py:{i}:widget_{i} = 1\n")).collect(),
    ));
    calls.push((
        "Bash",
        json!({"command": "cargo build"}),
        format!("{}error[E0425]: {}\n", "Compiling x\n".repeat(50), "y".repeat(2000)),
    ));
    calls.extend(runs(10, 150).into_iter().map(|(n, i, o)| (n, i, o.replace("row_", "later_row_"))));
    let body = session(&calls);
    let cleared = clear(&f, &body, Economics::Quota).expect("a quota target clears");
    let before = tool_outputs(body.to_string().as_bytes());
    let after = tool_outputs(&cleared.body);
    let mut stubs = 0;
    for (orig, sent) in before.iter().zip(&after).filter(|(_, s)| s.starts_with("[tokenfold: cleared ")) {
        stubs += 1;
        let (header, outline) = sent.split_once('\n').unwrap_or((sent, ""));
        assert!(header.len() < 400, "{header}");
        assert!(outline.len() <= MAX_BYTES + MAX_LINE + 32, "{} bytes of outline", outline.len());
        assert!(sent.len() as f64 <= MAX_STUB_SHARE * orig.len() as f64 + 16.0, "{} of {}", sent.len(), orig.len());
    }
    assert!(stubs >= 8, "{stubs} stubs");
    let big = after.iter().find(|s| s.contains("lib/big.ex")).unwrap();
    assert!(big.contains("lines 1-900") && big.contains("Re-read it"), "{big}");
    assert!(after.iter().any(|s| s.contains("first error: error[E0425]: yyyy")), "a long error line is kept clipped");
}

#[test]
fn the_same_decisions_cold_and_incremental() {
    let calls = runs(40, 150);
    let warm = folder(Level::Balanced);
    let mut last = None;
    let mut steps = 0;
    for n in 1..=calls.len() {
        let c = clear(&warm, &session(&calls[..n]), CACHE);
        steps += usize::from(c.as_ref().is_some_and(|c| c.stepped()));
        last = c.map(|c| c.body);
    }
    let cold = clear(&folder(Level::Balanced), &session(&calls), CACHE).map(|c| c.body);
    assert!(steps >= 1, "a 40-turn session takes a step");
    assert_eq!(last, cold, "a fresh process forwards the same bytes");
}

#[test]
fn recalls_of_cleared_originals_are_counted() {
    let f = folder(Level::Balanced);
    let calls = runs(8, 150);
    let body = session(&calls);
    let first = clear(&f, &body, Economics::Quota).expect("cleared");
    let outs = tool_outputs(&first.body);
    let stub = outs.iter().find(|o| o.starts_with("[tokenfold: cleared ")).unwrap();
    let path = stub.split("Original: cat ").nth(1).unwrap().split(']').next().unwrap().to_string();
    let mut calls2 = calls.clone();
    calls2.push(("Bash", json!({"command": format!("cat {path}")}), output(0, 150)));
    let again = clear(&f, &session(&calls2), Economics::Quota).expect("cleared");
    assert_eq!(again.recalls, 1, "{path}");
    assert_eq!(first.recalls, 0);
}

#[test]
fn lossless_and_excluded_tools_are_never_cleared() {
    let mut calls = runs(8, 150);
    calls[0].0 = "Task";
    let body = session(&calls);
    assert!(clear(&folder(Level::Lossless), &body, Economics::Quota).is_none());
    let c = clear(&folder(Level::Balanced), &body, Economics::Quota).expect("cleared");
    let outs = tool_outputs(&c.body);
    assert!(!outs[0].starts_with("[tokenfold"), "a Task summary stays");
    assert!(outs[1].starts_with("[tokenfold: cleared Bash output of `pytest tests/test_mod_1.py`"), "{}", outs[1]);
    let excluded = Settings { exclude_tools: vec!["Bash".into()], ..Settings::default() };
    let opts = FoldOptions { level: Level::Balanced, clear: excluded, ..FoldOptions::default() };
    assert!(clear(&Folder::with_options(true, opts), &body, Economics::Quota).is_none(), "exclude_tools");
}
