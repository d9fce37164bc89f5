//! The five invariants with filters on (balanced and aggressive), on a hand-built Claude Code
//! session that runs recorded commands, re-runs them, reads files and reads an original back.

mod filters_support;

use bytes::Bytes;
use filters_support::*;
use serde_json::{json, Value};
use tokenfold::dialect::blocks::Kind;
use tokenfold::dialect::Dialect;
use tokenfold::dialect::{blocks as locate, json as fjson};
use tokenfold::fold::filters::is_error_line;
use tokenfold::fold::{Folded, Folder, Level, Mechanism};

/// A code-like file (deterministic), shown the way Claude Code's Read shows it.
fn read_output(n: usize, from: usize) -> String {
    (from..n)
        .map(|i| {
            format!("{:>6}→    let value_{i} = table.get(\"key_{}\").copied().unwrap_or({});\n", i + 1, i * 7, i % 13)
        })
        .collect()
}

struct Session {
    messages: Vec<Value>,
    turn_ends: Vec<usize>,
}

impl Session {
    fn new() -> Session {
        Session {
            messages: vec![json!({"role": "user", "content": "Fix the failing tests, then tidy up."})],
            turn_ends: Vec::new(),
        }
    }

    fn call(&mut self, id: &str, name: &str, input: Value, output: &str) {
        self.turn_ends.push(self.messages.len());
        self.messages.push(
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": input}]}),
        );
        self.messages
            .push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": output}]}));
    }

    fn bodies(&self) -> Vec<Bytes> {
        let mut ends = self.turn_ends.clone();
        ends.push(self.messages.len());
        ends.iter()
            .map(|&k| {
                Bytes::from(
                    json!({"model": "claude-sonnet-4-5", "max_tokens": 1000, "system": "You are a coding agent.",
                           "messages": self.messages[..k]})
                    .to_string(),
                )
            })
            .collect()
    }
}

/// Runs fixtures, re-runs two of them, reads a file twice.
fn session() -> Session {
    let mut s = Session::new();
    s.call("toolu_r1", "Read", json!({"file_path": "/p/src/lib.rs"}), &read_output(120, 0));
    for (k, name) in
        ["cargo_test_failing", "git_status", "npm_install", "app_log", "rg_repo", "git_log"].iter().enumerate()
    {
        let fx = fixture(name);
        s.call(&format!("toolu_b{k}"), "Bash", json!({"command": fx.command}), &fx.output);
    }
    s.call("toolu_r2", "Read", json!({"file_path": "/p/src/lib.rs"}), &read_output(120, 20));
    let fx = fixture("cargo_test_failing");
    s.call("toolu_b9", "Bash", json!({"command": fx.command}), &fx.output);
    let fx = fixture("pytest_failing");
    s.call("toolu_b10", "Bash", json!({"command": fx.command}), &fx.output);
    s
}

fn out(body: &Bytes, f: &Option<Folded>) -> Bytes {
    f.as_ref().map(|f| f.body.clone()).unwrap_or_else(|| body.clone())
}

fn texts(d: Dialect, body: &[u8]) -> Vec<(locate::Block, Option<String>)> {
    locate::locate(d, body)
        .unwrap()
        .into_iter()
        .map(|b| {
            let t = if b.is_text() { fjson::decode(body, b.range.clone()).ok().map(|c| c.into_owned()) } else { None };
            (b, t)
        })
        .collect()
}

fn run(f: &Folder, bodies: &[Bytes]) -> Vec<(Bytes, Option<Folded>)> {
    bodies.iter().map(|b| (b.clone(), f.fold(Dialect::Anthropic, b))).collect()
}

#[test]
fn prefix_stable_deterministic_never_larger_at_every_filter_level() {
    let bodies = session().bodies();
    for level in [Level::Balanced, Level::Aggressive] {
        let (f, dir) = folder(level, &format!("inv-{}", level.name()));
        let res = run(&f, &bodies);
        let mut prev: Option<Vec<(Option<String>, Option<String>)>> = None;
        for (body, folded) in &res {
            let o = out(body, folded);
            let (tin, tout) = (texts(Dialect::Anthropic, body), texts(Dialect::Anthropic, &o));
            assert_eq!(tin.len(), tout.len(), "block structure kept");
            let cur: Vec<_> = tin.iter().zip(&tout).map(|((_, a), (_, b))| (a.clone(), b.clone())).collect();
            if let Some(p) = &prev {
                for (i, (pb, cb)) in p.iter().zip(&cur).enumerate() {
                    assert_eq!(pb.1, cb.1, "{level:?}: block {i} changed between turns");
                }
            }
            prev = Some(cur);
            for ((bi, ti), (_, to)) in tin.iter().zip(&tout) {
                let (Some(ti), Some(to)) = (ti, to) else { continue };
                assert!(tokenfold::tokens::count(to) <= tokenfold::tokens::count(ti), "{level:?}: a block grew");
                if bi.kind != Kind::ToolOutput {
                    assert_eq!(ti, to, "only tool output changes");
                }
            }
            assert!(serde_json::from_slice::<Value>(&o).is_ok());
        }
        // Cold folds (fresh folder, no cache) and reversed order give the same bytes.
        // Same store directory: markers name it, so it is part of what must match.
        let cold = run(&folder_in(level, &dir), &bodies);
        for ((b, a), (_, c)) in res.iter().zip(&cold) {
            assert_eq!(out(b, a), out(b, c), "{level:?}: incremental == cold");
        }
        let g = folder_in(level, &dir);
        for (b, a) in res.iter().rev() {
            assert_eq!(out(b, a), out(b, &g.fold(Dialect::Anthropic, b)), "{level:?}: order does not matter");
        }
        let last = res.last().unwrap().1.as_ref().unwrap();
        assert!(last.edits.iter().any(|e| e.mechanism.is_filter()), "{level:?}: filters ran");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn file_reads_keep_edit_anchors_and_markers_point_at_verbatim_text() {
    let bodies = session().bodies();
    let (f, dir) = folder(Level::Aggressive, "anchors");
    let body = bodies.last().unwrap();
    let folded = f.fold(Dialect::Anthropic, body).unwrap();
    let (tin, tout) = (texts(Dialect::Anthropic, body), texts(Dialect::Anthropic, &folded.body));
    let v: Value = serde_json::from_slice(body).unwrap();
    let mut read_blocks = Vec::new();
    for (i, (b, _)) in tin.iter().enumerate() {
        let tool_id = b.tool_id.as_ref().map(|r| fjson::decode(body, r.clone()).unwrap().into_owned());
        if b.kind == Kind::ToolOutput && tool_id.as_deref().is_some_and(|t| t.starts_with("toolu_r")) {
            read_blocks.push(i);
        }
    }
    assert_eq!(read_blocks.len(), 2);
    for e in &folded.edits {
        if read_blocks.contains(&e.block) {
            assert!(!e.mechanism.is_filter(), "a file read got a lossy filter: {}", e.marker);
        }
        if e.mechanism.is_filter() {
            assert_eq!(e.source, e.block, "filter edits name their own block");
            continue;
        }
        assert!(e.source < e.block, "pointers point backwards");
        let src = tout[e.source].1.as_deref().unwrap();
        match &e.source_lines {
            Some(r) => {
                let src_in: Vec<&str> = tin[e.source].1.as_deref().unwrap().split('\n').collect();
                assert!(src.contains(&src_in[r.clone()].join("\n")), "pointed lines forwarded verbatim");
            }
            None => assert_eq!(&*e.removed, src, "whole-output pointer names a verbatim block"),
        }
    }
    // The first Read is forwarded exactly; the second only loses spans seen in the first.
    assert_eq!(tin[read_blocks[0]].1, tout[read_blocks[0]].1);
    assert!(v["messages"].as_array().unwrap().len() > 10);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_error_line_survives_every_turn() {
    let bodies = session().bodies();
    for level in [Level::Balanced, Level::Aggressive] {
        let (f, dir) = folder(level, &format!("errs-{}", level.name()));
        for (body, folded) in run(&f, &bodies) {
            let o = out(&body, &folded);
            let forwarded: std::collections::HashSet<String> = texts(Dialect::Anthropic, &o)
                .into_iter()
                .filter_map(|(_, t)| t)
                .flat_map(|t| t.split('\n').map(str::to_string).collect::<Vec<_>>())
                .collect();
            for (_, t) in texts(Dialect::Anthropic, &body) {
                for l in t.iter().flat_map(|t| t.split('\n')).filter(|l| is_error_line(l)) {
                    assert!(forwarded.contains(l), "{level:?}: lost {l:?}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn reading_an_original_back_counts_as_a_recall_for_its_filter() {
    let mut s = session();
    let (f, dir) = folder(Level::Balanced, "recall");
    let body = s.bodies().pop().unwrap();
    let folded = f.fold(Dialect::Anthropic, &body).unwrap();
    // This turn: the last assistant message (the pytest run) and its output, filtered once.
    assert_eq!(folded.turn_elisions, vec![("filter:test-runner", 1)]);
    assert!(folded.turn_recalls.is_empty());
    // The agent follows the git status marker.
    let status_id = {
        let t = texts(Dialect::Anthropic, &folded.body);
        let status = t.iter().filter_map(|(_, t)| t.as_deref()).find(|t| t.starts_with("On branch filters")).unwrap();
        recall_path(status).unwrap()
    };
    f.originals().flush();
    let original = std::fs::read_to_string(&status_id).unwrap();
    assert_eq!(original, fixture("git_status").output, "the marker's file is the byte-exact original");
    s.call("toolu_back", "Bash", json!({"command": format!("cat {}", status_id.display())}), &original);
    let body = s.bodies().pop().unwrap();
    let folded = f.fold(Dialect::Anthropic, &body).unwrap();
    assert_eq!(folded.turn_recalls, vec![("filter:git", 1)]);
    // `cat` is a file read: the original shown again is never filtered.
    assert!(folded.turn_elisions.is_empty(), "{:?}", folded.turn_elisions);
    // Next turn: the recall belongs to the turn before.
    s.call("toolu_next", "Bash", json!({"command": "true"}), "");
    let folded = f.fold(Dialect::Anthropic, &s.bodies().pop().unwrap()).unwrap();
    assert!(folded.turn_recalls.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_level_is_part_of_the_cache_key() {
    let bodies = session().bodies();
    let (f, dir) = folder(Level::Balanced, "levels");
    let body = bodies.last().unwrap();
    let balanced = f.fold(Dialect::Anthropic, body).unwrap();
    let lossless = f.fold_at(Dialect::Anthropic, body, Level::Lossless);
    assert!(lossless.iter().flat_map(|l| &l.edits).all(|e| !e.mechanism.is_filter()), "lossless runs no filter");
    let aggressive = f.fold_at(Dialect::Anthropic, body, Level::Aggressive).unwrap();
    assert!(aggressive.body.len() < balanced.body.len(), "aggressive folds more");
    // Back to balanced on the same folder: exactly what it gave before.
    assert_eq!(f.fold(Dialect::Anthropic, body).unwrap().body, balanced.body);
    let names: Vec<&str> = balanced.savings_by_mechanism().into_iter().map(|(m, _)| m).collect();
    assert!(names.iter().any(|m| m.starts_with("filter:")), "{names:?}");
    assert!(Mechanism::ALL.iter().filter(|m| m.is_filter()).count() >= 7);
    let _ = std::fs::remove_dir_all(dir);
}

/// SWE-agent style: observations come back as user messages; the command is the fenced block of
/// the assistant message before. A test run is filtered, a file view is not, and a message
/// without a command leaves the next observation to content detection.
#[test]
fn observations_take_the_command_of_the_message_before() {
    let pytest = fixture("pytest_failing").output;
    let obs = |out: &str| format!("{out}\n(Open file: /repo/src/app.py)\n(Current directory: /repo)\nbash-$");
    let view: String = (1..=80).map(|i| format!("{i}:    total += item_{i} * {i}  # passed along\n")).collect();
    let view = format!("[File: /repo/src/app.py (80 lines total)]\n{view}");
    let listing = fixture("ls_la").output;
    let body = json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "SETTING: you are an autonomous programmer."},
        {"role": "user", "content": "We're solving this issue: the tests fail."},
        {"role": "assistant", "content": "Run the tests.\n```\npython -m pytest -v test_inventory.py\n```"},
        {"role": "user", "content": obs(&pytest)},
        {"role": "assistant", "content": "Open the file.\n```\nopen src/app.py\n```"},
        {"role": "user", "content": obs(&view)},
        {"role": "assistant", "content": "Hmm, let me think about the listing."},
        {"role": "user", "content": obs(&listing)}]});
    let body = Bytes::from(body.to_string());
    let (f, dir) = folder(Level::Balanced, "observations");
    let folded = f.fold(Dialect::OpenaiChat, &body).unwrap();
    let t = texts(Dialect::OpenaiChat, &folded.body);
    let text_of = |m: u32| {
        t.iter()
            .find(|(b, _)| b.loc == tokenfold::dialect::blocks::Loc::Message(m))
            .and_then(|(_, t)| t.clone())
            .unwrap()
    };
    assert!(text_of(3).contains("[tokenfold: 41 passing tests]"), "{}", text_of(3));
    assert!(text_of(3).ends_with("bash-$"), "the prompt line stays");
    assert_eq!(text_of(5), obs(&view), "a file view is never filtered");
    // No command: content detection still recognises `ls -l` output.
    assert!(text_of(7).contains("full output: cat"), "{}", text_of(7));
    let by_block: Vec<_> = folded.edits.iter().map(|e| (e.block, e.mechanism.name())).collect();
    assert!(by_block.iter().any(|(_, m)| *m == "filter:test-runner"));
    assert!(by_block.iter().any(|(_, m)| *m == "filter:listing"));
    let _ = std::fs::remove_dir_all(dir);
}
