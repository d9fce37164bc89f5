//! Hand-built conversations for the fold tests: a deterministic pseudo-random code base, an agent
//! that reads, re-reads, edits and runs commands, in the shapes Claude Code and SWE-agent send.
#![allow(dead_code)]

use bytes::Bytes;
use serde_json::{json, Value};
use tokenfold::dialect::Dialect;
use tokenfold::dialect::{blocks as locate, json as fjson};
use tokenfold::fold::shapes;

/// Small deterministic generator (xorshift), so fixtures need no files.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "session",
    "render",
    "transcript",
    "count",
    "value",
    "index",
    "buffer",
    "parse",
    "token",
    "window",
    "route",
    "quota",
    "state",
    "block",
    "marker",
    "splice",
    "hash",
    "cache",
    "entry",
    "reply",
];

/// A source file of `n` code-like lines.
pub fn file(rng: &mut Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let a = WORDS[rng.below(WORDS.len() as u64) as usize];
            let b = WORDS[rng.below(WORDS.len() as u64) as usize];
            match i % 7 {
                0 => format!("fn {a}_{b}_{i}(x: &str) -> Result<u32, Error> {{"),
                1 => format!("    let {a} = {b}.get(\"{a}\").copied().unwrap_or({});", rng.below(1000)),
                2 => format!("    if {a}.len() > {} {{ return Err(Error::{b}); }}", rng.below(99)),
                3 => format!("    // {a} {b}: keep the {a} of the {b} in order"),
                4 => format!("    total += {a} * {} + {b}.len() as u32;", rng.below(50)),
                5 => "    Ok(total)".to_string(),
                _ => "}".to_string(),
            }
        })
        .collect()
}

/// Claude Code's Read output: `     N→line`.
pub fn read_output(lines: &[String], from: usize) -> String {
    let mut s = String::new();
    for (i, l) in lines.iter().enumerate().skip(from) {
        s.push_str(&format!("{:>6}→{}\n", i + 1, l));
    }
    s
}

pub struct Convo {
    pub dialect: Dialect,
    pub messages: Vec<Value>,
    /// Message counts at which the agent sends a request.
    pub turn_ends: Vec<usize>,
    pub top: Value,
}

impl Convo {
    pub fn bodies(&self) -> Vec<Bytes> {
        self.turn_ends
            .iter()
            .map(|&k| {
                let mut top = self.top.clone();
                if let Some(o) = top.as_object_mut() {
                    o.insert("messages".into(), Value::Array(self.messages[..k].to_vec()));
                }
                Bytes::from(serde_json::to_vec(&top).unwrap_or_default())
            })
            .collect()
    }
}

const REMINDER: &str = "<system-reminder>\nWhenever you read a file, consider whether it looks malicious. You may \
    analyse such code but must refuse to improve it. This reminder is repeated on purpose so that the proxy \
    has something to fold.\n</system-reminder>";

/// A Claude Code shaped session: reads, partial and full re-reads, an edit that shifts line
/// numbers, repeated command output, a repeated reminder, and text a person typed twice.
pub fn claude_code(seed: u64) -> Convo {
    let mut rng = Rng(seed | 1);
    let mut files: Vec<(String, Vec<String>)> =
        (0..3).map(|k| (format!("/work/proj/src/mod_{k}.rs"), file(&mut rng, 60 + 20 * k))).collect();
    let mut msgs = vec![json!({"role": "user", "content": "Please refactor the session module.\nThanks!"})];
    let mut turns = Vec::new();
    let mut call = 0;
    let mut tool = |msgs: &mut Vec<Value>, turns: &mut Vec<usize>, name: &str, input: Value, out: String| {
        call += 1;
        let id = format!("toolu_{seed:x}_{call:03}");
        turns.push(msgs.len());
        msgs.push(json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Let me look.", "signature": "c2lnbmF0dXJl"},
            {"type": "tool_use", "id": id, "name": name, "input": input}]}));
        msgs.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": out, "cache_control": {"type": "ephemeral"}}]}));
    };
    for step in 0..14 {
        let k = (step + rng.below(3) as usize) % files.len();
        let (path, lines) = files[k].clone();
        match step % 5 {
            0 | 1 => {
                let from = if step % 2 == 0 { 0 } else { lines.len() / 3 };
                let mut out = read_output(&lines, from);
                if step % 3 == 0 {
                    out.push_str(REMINDER);
                }
                tool(&mut msgs, &mut turns, "Read", json!({"file_path": path}), out);
            }
            2 => {
                // Edit inserts two lines: later re-reads shift every following line number.
                let at = 10 + rng.below(20) as usize;
                let old = lines[at..at + 3].join("\n");
                let mut new_lines = lines[at..at + 3].to_vec();
                new_lines.insert(1, format!("    // edited at step {step}"));
                new_lines.insert(1, "    let extra = 1;".to_string());
                let new = new_lines.join("\n");
                let mut changed = lines.clone();
                changed.splice(at..at + 3, new_lines);
                files[k].1 = changed;
                tool(
                    &mut msgs,
                    &mut turns,
                    "Edit",
                    json!({"file_path": path, "old_string": old, "new_string": new}),
                    format!("The file {path} has been updated successfully."),
                );
            }
            3 => {
                let log: String = (0..30).map(|i| format!("test session::case_{i} ... ok\n")).collect();
                tool(&mut msgs, &mut turns, "Bash", json!({"command": "cargo test"}), log);
            }
            _ => {
                turns.push(msgs.len());
                msgs.push(json!({"role": "assistant", "content": [{"type": "text", "text": "Done with that step."}]}));
                msgs.push(json!({"role": "user", "content": [
                    {"type": "text", "text": "Please refactor the session module.\nThanks!"},
                    {"type": "text", "text": REMINDER}]}));
            }
        }
    }
    turns.push(msgs.len());
    let top = json!({"model": "claude-sonnet-4-5", "max_tokens": 32000, "system": [
        {"type": "text", "text": "You are a coding agent."},
        {"type": "text", "text": REMINDER, "cache_control": {"type": "ephemeral"}}], "messages": []});
    Convo { dialect: Dialect::Anthropic, messages: msgs, turn_ends: turns, top }
}

/// A SWE-agent shaped session (OpenAI chat): observations come back as user messages with
/// `N:` numbered windows; the first user message is the task and is never touched.
pub fn swe_agent(seed: u64) -> Convo {
    let mut rng = Rng(seed | 1);
    let lines = file(&mut rng, 150);
    let view = |from: usize| {
        let mut s = String::from("[File: /repo/src/app.py (150 lines total)]\n");
        for (i, l) in lines.iter().enumerate().skip(from).take(60) {
            s.push_str(&format!("{}:{}\n", i + 1, l));
        }
        s.push_str("\n(Open file: /repo/src/app.py)\n(Current directory: /repo)\nbash-$");
        s
    };
    let task = format!("We're solving this issue:\n{}\n(Open file: n/a)\n(Current directory: /repo)\nbash-$", view(0));
    let mut msgs = vec![
        json!({"role": "system", "content": "SETTING: you are an autonomous programmer."}),
        json!({"role": "user", "content": task}),
    ];
    let mut turns = Vec::new();
    for (i, from) in [0usize, 20, 40, 0, 30, 60, 10].into_iter().enumerate() {
        turns.push(msgs.len());
        msgs.push(json!({"role": "assistant", "content": format!("Let me look.\n```\ngoto {}\n```", from + 1)}));
        msgs.push(json!({"role": "user", "content": view(from)}));
        if i == 3 {
            msgs.push(json!({"role": "assistant", "content": "ok"}));
            msgs.push(json!({"role": "user", "content": "please also check the tests\nthanks"}));
        }
    }
    turns.push(msgs.len());
    Convo {
        dialect: Dialect::OpenaiChat,
        messages: msgs,
        turn_ends: turns,
        top: json!({"model": "gpt-4o", "messages": []}),
    }
}

/// Decoded text of every located block (None for non-text blocks).
pub fn texts(d: Dialect, body: &[u8]) -> Vec<(locate::Block, Option<String>)> {
    let blocks = locate::locate(d, body).unwrap_or_default();
    blocks
        .into_iter()
        .map(|b| {
            let t = if b.is_text() { fjson::decode(body, b.range.clone()).ok().map(|c| c.into_owned()) } else { None };
            (b, t)
        })
        .collect()
}

/// Text with line-number prefixes removed (how an edit anchor is found in a file view).
pub fn strip_numbers(t: &str) -> String {
    t.split('\n')
        .map(|l| match shapes::number_prefix(l) {
            Some((_, _, n)) => &l[n..],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shared corpus of real transcripts: `$TOKENFOLD_CORPUS`, else `../shared/corpus` next to
/// the project (a checkout beside `shared/`), else `../../shared/corpus` (a worktree one level
/// deeper). `None` when absent: corpus tests then skip with a note.
pub fn corpus_root() -> Option<std::path::PathBuf> {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("TOKENFOLD_CORPUS").map(std::path::PathBuf::from),
        Some(here.join("../shared/corpus")),
        Some(here.join("../../shared/corpus")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_dir())
}
