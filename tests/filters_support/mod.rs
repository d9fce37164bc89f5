//! Helpers for the filter tests: recorded fixtures, requests that carry them as Bash output, a
//! folder with a store in a temp dir, and the checks every filtered output must pass.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use tokenfold::dialect::Dialect;
use tokenfold::dialect::{blocks as locate, json as fjson};
use tokenfold::fold::filters::{has_location, has_summary, is_error_line};
use tokenfold::fold::originals::{Originals, StoreConfig};
use tokenfold::fold::{FoldOptions, Folded, Folder, Level};

pub struct Fixture {
    pub name: String,
    pub command: String,
    pub output: String,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/filters")
}

pub fn fixture(name: &str) -> Fixture {
    let d = fixtures_dir();
    let read = |ext: &str| {
        std::fs::read_to_string(d.join(format!("{name}.{ext}"))).unwrap_or_else(|e| panic!("fixture {name}.{ext}: {e}"))
    };
    Fixture { name: name.to_string(), command: read("cmd"), output: read("out") }
}

/// A folder at `level` whose originals go to a fresh temp dir (returned for reading back).
pub fn folder(level: Level, tag: &str) -> (Folder, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tokenfold-filters-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (folder_in(level, &dir), dir)
}

/// A folder at `level` with its store in `dir` (kept as it is: two folders may share one).
pub fn folder_in(level: Level, dir: &Path) -> Folder {
    let dir = dir.to_path_buf();
    let store = Originals::open(StoreConfig {
        dir: dir.clone(),
        max_bytes: 64 << 20,
        max_age: std::time::Duration::from_secs(3600),
        remote: None,
    })
    .expect("store opens");
    Folder::with_options(true, FoldOptions { level, originals: Arc::new(store), ..FoldOptions::default() })
}

/// A Claude Code request: the task, then `command` run through Bash with `output` as its result.
pub fn bash_request(command: &str, output: &str) -> Bytes {
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": [
        {"role": "user", "content": "Run it and tell me what failed."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": command}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": output}]}]});
    Bytes::from(body.to_string())
}

/// The forwarded text of the last block of `body` (the tool result).
pub fn last_text(d: Dialect, body: &[u8]) -> String {
    let blocks = locate::locate(d, body).unwrap();
    let b = blocks.last().unwrap();
    fjson::decode(body, b.range.clone()).unwrap().into_owned()
}

/// Folds one output as Bash output; returns the forwarded text and the fold.
pub fn fold_output(f: &Folder, command: Option<&str>, output: &str) -> (String, Option<Folded>) {
    let body = match command {
        Some(c) => bash_request(c, output),
        // No known command: the same output as a SWE-agent style observation (user message).
        None => observation_request(output),
    };
    let d = if command.is_some() { Dialect::Anthropic } else { Dialect::OpenaiChat };
    let folded = f.fold(d, &body);
    let out = folded.as_ref().map(|x| x.body.clone()).unwrap_or(body);
    (last_text(d, &out), folded)
}

/// An OpenAI-chat request whose last user message is an observation with no command.
pub fn observation_request(output: &str) -> Bytes {
    let obs = format!("{output}\n(Open file: n/a)\n(Current directory: /repo)\nbash-$");
    let body = json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You are an autonomous programmer."},
        {"role": "user", "content": "Fix the failing test."},
        {"role": "assistant", "content": "Let me look at the output."},
        {"role": "user", "content": obs}]});
    Bytes::from(body.to_string())
}

/// `full output: cat DIR/ID.txt` -> the path, from the footer.
pub fn recall_path(out: &str) -> Option<PathBuf> {
    let k = out.rfind("full output: cat ")?;
    let rest = &out[k + "full output: cat ".len()..];
    let p = rest.split(']').next()?;
    Some(PathBuf::from(p))
}

/// The checks every filtered output passes (DESIGN.md invariant 4).
pub fn assert_nothing_important_lost(name: &str, original: &str, out: &str, grouped_search: bool) {
    let kept: std::collections::HashSet<&str> = out.split('\n').collect();
    for l in original.split('\n') {
        if is_error_line(l) {
            assert!(kept.contains(l), "{name}: error-like line lost: {l:?}");
        }
        if has_summary(l) {
            assert!(kept.contains(l), "{name}: summary line lost: {l:?}");
        }
        if has_location(l) {
            if grouped_search {
                // Search results are regrouped: the path heads its group and `N:text` follows.
                let (path, rest) = split_search(l);
                assert!(out.contains(&format!("{path}:\n")) || kept.contains(l), "{name}: group of {path} lost");
                assert!(out.contains(rest), "{name}: match lost: {l:?}");
            } else {
                assert!(kept.contains(l), "{name}: location line lost: {l:?}");
            }
        }
    }
    if let Some(first) = original.lines().next().filter(|l| l.starts_with("Exit code ")) {
        assert!(kept.contains(first), "{name}: exit status lost");
    }
    assert!(out.len() <= original.len(), "{name}: output grew");
}

fn split_search(l: &str) -> (&str, &str) {
    let mut parts = l.splitn(2, ':');
    let path = parts.next().unwrap_or("");
    (path, parts.next().unwrap_or(""))
}

/// The stored original the footer names, byte for byte.
pub fn assert_recoverable(name: &str, f: &Folder, original: &str, out: &str) {
    f.originals().flush();
    let path = recall_path(out).unwrap_or_else(|| panic!("{name}: no recall path in footer:\n{out}"));
    let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {} unreadable: {e}", path.display()));
    assert_eq!(stored, original.as_bytes(), "{name}: stored original differs");
}

pub fn mechanisms(f: &Option<Folded>) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = f.iter().flat_map(|f| f.edits.iter().map(|e| e.mechanism.name())).collect();
    v.dedup();
    v
}

pub fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}
