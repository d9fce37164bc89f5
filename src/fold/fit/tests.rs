//! The fitting ladder on hand-built sessions in three dialects: only the steps a budget needs,
//! in order; what is never dropped; every tool call still paired with its result.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::fold::originals::Originals;
use crate::fold::{FoldOptions, Folder, Level};

fn folder() -> Folder {
    let opts =
        FoldOptions { level: Level::Balanced, originals: Arc::new(Originals::unstored()), ..FoldOptions::default() };
    Folder::with_options(true, opts)
}

/// Output of call `t`: a test run of distinct lines.
fn output(t: usize, lines: usize) -> String {
    (0..lines)
        .map(|i| format!("row_{t}_{i} widget_{t}_{i} value={} owner=team_{}\n", (i * 37 + t) % 1000, i % 7))
        .collect()
}

const SYSTEM: &str = "You are a careful coding agent. Follow the user's instructions.";
const CALLS: usize = 6;

fn schema() -> Value {
    json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": false,
           "required": ["command"], "properties": {"command": {"type": "string", "description": "The   command\n\n   to run"},
           "timeout": {"type": "number", "default": 120000, "description": "Timeout in ms (default 120000)"}}})
}

fn tool_description() -> String {
    "Runs a shell command.\n\n    Use it for tests, builds and git.\n\n".repeat(20)
}

/// A session of `CALLS` Bash runs with thinking before each call, in `dialect`.
fn session(dialect: Dialect) -> Value {
    let mut msgs = Vec::new();
    match dialect {
        Dialect::Anthropic => {
            msgs.push(json!({"role": "user", "content": "fix the failing tests"}));
            for k in 0..CALLS {
                let id = format!("toolu_{k:04}");
                let thinking = format!("I should run the tests of module {k} and look at what fails. ").repeat(30);
                msgs.push(json!({"role": "assistant", "content": [
                    {"type": "thinking", "thinking": thinking, "signature": "sig"},
                    {"type": "tool_use", "id": id, "name": "Bash", "input": {"command": format!("pytest tests/test_{k}.py")}}]}));
                msgs.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": output(k, 120)}]}));
            }
            json!({"model": "m", "max_tokens": 100, "system": SYSTEM, "messages": msgs,
                   "tools": [{"name": "Bash", "description": tool_description(), "input_schema": schema()}]})
        }
        Dialect::OpenaiChat => {
            msgs.push(json!({"role": "system", "content": SYSTEM}));
            msgs.push(json!({"role": "user", "content": "fix the failing tests"}));
            for k in 0..CALLS {
                let id = format!("call_{k:04}");
                let args = json!({"command": format!("pytest tests/test_{k}.py")}).to_string();
                msgs.push(json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": id, "type": "function", "function": {"name": "Bash", "arguments": args}}]}));
                msgs.push(json!({"role": "tool", "tool_call_id": id, "content": output(k, 120)}));
            }
            json!({"model": "m", "max_tokens": 100, "messages": msgs, "tools": [
                {"type": "function", "function": {"name": "Bash", "description": tool_description(), "parameters": schema()}}]})
        }
        _ => {
            msgs.push(json!({"role": "user", "content": "fix the failing tests"}));
            for k in 0..CALLS {
                let id = format!("call_{k:04}");
                let summary = format!("Run the tests of module {k}. ").repeat(30);
                msgs.push(json!({"type": "reasoning", "id": format!("rs_{k}"), "summary": [{"type": "summary_text", "text": summary}]}));
                let args = json!({"command": format!("pytest tests/test_{k}.py")}).to_string();
                msgs.push(json!({"type": "function_call", "call_id": id, "name": "Bash", "arguments": args}));
                msgs.push(json!({"type": "function_call_output", "call_id": id, "output": output(k, 120)}));
            }
            // A user message after the calls: the reasoning before it is old.
            msgs.push(json!({"role": "user", "content": "go on"}));
            json!({"model": "m", "instructions": SYSTEM, "input": msgs, "tools": [
                {"type": "function", "name": "Bash", "description": tool_description(), "parameters": schema()}]})
        }
    }
}

fn measure(b: &Bytes) -> u64 {
    b.len() as u64 / 4
}

fn run(f: &Folder, dialect: Dialect, body: &Value, budget: u64) -> Result<Fitted, NoFit> {
    let b = Bytes::from(body.to_string());
    let p = f.prepare(dialect, &b, Level::Balanced).unwrap();
    let start = Start { dialect, body: p.forwarded().clone(), cleared: None, prepared: Some(&p) };
    fit(f, start, budget, &mut measure)
}

fn names(f: &Fitted) -> Vec<&'static str> {
    f.steps.iter().map(|(s, _)| *s).collect()
}

#[test]
fn only_the_steps_a_budget_needs_in_order() {
    let f = folder();
    let body = session(Dialect::Anthropic);
    let full = measure(&Bytes::from(body.to_string()));
    let roomy = run(&f, Dialect::Anthropic, &body, full).unwrap();
    assert!(roomy.steps.is_empty() && roomy.tokens <= full, "a request within budget is sent as folded");

    // Each budget one token below what the steps so far reach needs a further step: the last
    // step taken walks the ladder in order, none skipped.
    let mut budget = full - 1;
    let mut last_steps: Vec<&'static str> = Vec::new();
    let err = loop {
        let fitted = match run(&f, Dialect::Anthropic, &body, budget) {
            Ok(fitted) => fitted,
            Err(e) => break e,
        };
        assert!(fitted.tokens <= budget);
        for (s, saved) in &fitted.steps {
            assert!(*saved > 0, "{s} saved nothing");
        }
        let last = *names(&fitted).last().unwrap();
        if last_steps.last() != Some(&last) {
            last_steps.push(last);
        }
        // The steps taken are a prefix of the ladder.
        let ladder = [CLEAR, KEEP_RECENT, SCHEMAS, REASONING];
        assert_eq!(names(&fitted), ladder[..names(&fitted).len()].to_vec(), "budget {budget}");
        budget = fitted.tokens - 1;
    };
    assert_eq!(last_steps, vec![CLEAR, KEEP_RECENT, SCHEMAS, REASONING]);
    assert_eq!(err.budget, budget);
    assert_eq!(err.needs, budget + 1, "every step taken, it still needs what the last one left");
    assert_eq!(err.to_string(), format!("needs {} tokens, budget {}", thousands(budget + 1), thousands(budget)));
}

#[test]
fn the_same_request_and_budget_fit_to_the_same_bytes() {
    let body = session(Dialect::Anthropic);
    let budget = run(&folder(), Dialect::Anthropic, &body, 0).unwrap_err().needs + 10;
    let a = run(&folder(), Dialect::Anthropic, &body, budget).unwrap();
    // Another process (a fresh folder) decides the same.
    let b = run(&folder(), Dialect::Anthropic, &body, budget).unwrap();
    assert_eq!(a.body, b.body);
    assert_eq!(names(&a), names(&b));
}

/// The most the ladder can do to `body`: fitted to exactly what every step leaves.
fn fully_fitted(dialect: Dialect) -> (Value, Value) {
    let f = folder();
    let body = session(dialect);
    let needs = run(&f, dialect, &body, 0).unwrap_err().needs;
    let fitted = run(&f, dialect, &body, needs).unwrap();
    assert!(
        names(&fitted).contains(&KEEP_RECENT) && names(&fitted).contains(&SCHEMAS),
        "{dialect:?}: {:?}",
        names(&fitted)
    );
    (body, serde_json::from_slice(&fitted.body).unwrap())
}

/// (call ids, result ids, user texts, system text, tool names, the newest output) of a request.
type Parts = (Vec<String>, Vec<String>, Vec<String>, String, Vec<String>, String);

fn parts(dialect: Dialect, v: &Value) -> Parts {
    let (mut calls, mut results, mut users, mut newest) = (Vec::new(), Vec::new(), Vec::new(), String::new());
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let (system, list) = match dialect {
        Dialect::Anthropic => (s(&v["system"]), &v["messages"]),
        Dialect::OpenaiChat => (s(&v["messages"][0]["content"]), &v["messages"]),
        _ => (s(&v["instructions"]), &v["input"]),
    };
    for m in list.as_array().unwrap() {
        match dialect {
            Dialect::Anthropic => {
                if m["content"].is_string() {
                    users.push(s(&m["content"]));
                }
                for p in m["content"].as_array().into_iter().flatten() {
                    match p["type"].as_str() {
                        Some("tool_use") => calls.push(s(&p["id"])),
                        Some("tool_result") => {
                            results.push(s(&p["tool_use_id"]));
                            newest = s(&p["content"]);
                        }
                        _ => {}
                    }
                }
            }
            Dialect::OpenaiChat => match m["role"].as_str() {
                Some("user") => users.push(s(&m["content"])),
                Some("tool") => {
                    results.push(s(&m["tool_call_id"]));
                    newest = s(&m["content"]);
                }
                _ => calls.extend(m["tool_calls"].as_array().into_iter().flatten().map(|c| s(&c["id"]))),
            },
            _ => match m["type"].as_str() {
                Some("function_call") => calls.push(s(&m["call_id"])),
                Some("function_call_output") => {
                    results.push(s(&m["call_id"]));
                    newest = s(&m["output"]);
                }
                _ if m["role"] == "user" => users.push(s(&m["content"])),
                _ => {}
            },
        }
    }
    let tools = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| s(t.get("name").or(t["function"].get("name")).unwrap_or(&Value::Null)))
        .collect();
    (calls, results, users, system, tools, newest)
}

#[test]
fn never_dropped_and_every_call_keeps_its_result_in_three_dialects() {
    for dialect in [Dialect::Anthropic, Dialect::OpenaiChat, Dialect::OpenaiResponses] {
        let (before, after) = fully_fitted(dialect);
        let (b, a) = (parts(dialect, &before), parts(dialect, &after));
        assert_eq!(a.0, b.0, "{dialect:?}: every tool call stays, in order");
        assert_eq!(a.1, a.0, "{dialect:?}: each call is followed by its own result");
        assert_eq!(a.2, b.2, "{dialect:?}: user messages are never touched");
        assert_eq!(a.3, b.3, "{dialect:?}: the system prompt is never touched");
        assert_eq!(a.4, b.4, "{dialect:?}: every tool stays");
        assert_eq!(a.5, b.5, "{dialect:?}: the newest tool output is sent whole");
        // Older outputs became stubs that say how to get them back.
        assert_ne!(after.to_string().len(), before.to_string().len());
    }
}

#[test]
fn only_old_reasoning_goes() {
    let body = session(Dialect::Anthropic);
    let out = drop_old_reasoning(Dialect::Anthropic, body.to_string().as_bytes()).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let thinking: Vec<usize> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, m)| m["content"].as_array().is_some_and(|c| c.iter().any(|p| p["type"] == "thinking")))
        .map(|(i, _)| i)
        .collect();
    // Only the latest assistant message keeps its thinking (a tool loop in progress needs it).
    assert_eq!(thinking, vec![2 * CALLS - 1]);
    let (fitted, _) = (
        drop_old_reasoning(Dialect::OpenaiResponses, session(Dialect::OpenaiResponses).to_string().as_bytes()).unwrap(),
        (),
    );
    let v: Value = serde_json::from_slice(&fitted).unwrap();
    assert!(
        v["input"].as_array().unwrap().iter().all(|i| i["type"] != "reasoning"),
        "all before the last user message"
    );
}

/// Reads of `files` distinct files, `lines` numbered lines each, as Claude Code shows them.
fn reads(files: usize, lines: usize) -> Value {
    let mut msgs = vec![json!({"role": "user", "content": "read the parts"})];
    for k in 0..files {
        let id = format!("toolu_r{k:03}");
        let view: String = (1..=lines)
            .map(|i| format!("{i}\tpart {k} line {i:03}: widget_{k}_{i:03} owner team_{}\n", i % 9))
            .collect();
        msgs.push(json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": format!("/repo/parts/part_{k}.txt")}}]}));
        msgs.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": view}]}));
    }
    json!({"model": "m", "max_tokens": 100, "system": SYSTEM, "messages": msgs})
}

#[test]
fn the_newest_views_of_recently_read_files_are_cleared_when_nothing_else_fits() {
    let f = folder();
    // Three files read once each: every output is the newest view of a file just read, which
    // clearing keeps while the agent may edit from it.
    let body = reads(3, 400);
    let full = measure(&Bytes::from(body.to_string()));
    let fitted = run(&f, Dialect::Anthropic, &body, full * 2 / 3).unwrap();
    assert_eq!(names(&fitted), [KEEP_RECENT]);
    let v: Value = serde_json::from_slice(&fitted.body).unwrap();
    let outputs: Vec<String> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"][0]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(outputs.len(), 3);
    assert!(outputs[0].starts_with("[tokenfold: cleared Read of /repo/parts/part_0.txt"), "{}", outputs[0]);
    assert!(outputs[0].contains("Re-read it for the current text before an Edit"), "{}", outputs[0]);
    assert!(outputs[2].contains("part 2 line 400"), "the newest view stays whole");
}
