//! The filters over the shared corpus of real transcripts, at every level: 100% prefix stability,
//! incremental == cold, every error-like line kept, never larger. Skips with a note when the
//! corpus is absent (`TOKENFOLD_CORPUS` overrides where it is looked for).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use tokenfold::fold::filters::{self, command, Level};
use tokenfold::replay::{measure, sources, Counter, Setup};

fn corpus() -> Option<PathBuf> {
    let root = std::env::var_os("TOKENFOLD_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if root.is_dir() {
        Some(root)
    } else {
        println!("note: {} is absent; corpus test skipped", root.display());
        None
    }
}

#[test]
fn corpus_replay_is_stable_and_keeps_every_error_line_at_every_level() {
    let Some(root) = corpus() else { return };
    for level in Level::ALL {
        let mut counter = Counter::estimating();
        for dir in ["claude-code_spotter", "swe-agent", "aider_friendly-names", "codex-format-sample"] {
            for c in sources::load(&root.join(dir)) {
                let s = measure(&c, &mut counter, &mut Setup { level, ..Setup::default() });
                let at = format!("{}/{dir}/{}", level.name(), c.name);
                assert_eq!(s.prefix_blocks_changed, 0, "{at}: a re-sent block changed");
                assert_eq!(s.scratch_mismatches, 0, "{at}: incremental != cold");
                assert_eq!(s.error_lines_kept, s.error_lines_checked, "{at}: lost {:?}", s.error_lines_lost);
                assert!(s.tokens_after <= s.tokens_before, "{at}: grew");
                if level == Level::Lossless {
                    assert_eq!(s.filters_saved(), 0, "{at}: lossless runs no filter");
                }
            }
        }
    }
}

/// Command outputs of the corpus (command line, output): Claude Code Bash results and SWE-agent
/// observations after a fenced command.
fn command_outputs(root: &std::path::Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for dir in ["claude-code_spotter", "swe-agent"] {
        for c in sources::load(&root.join(dir)) {
            let Some(last) = c.turns.last() else { continue };
            let v: Value = serde_json::from_slice(last).unwrap_or_default();
            let msgs = v["messages"].as_array().cloned().unwrap_or_default();
            let mut cmds: BTreeMap<String, String> = BTreeMap::new();
            let mut fenced: Option<String> = None;
            for m in &msgs {
                match &m["content"] {
                    Value::Array(parts) => {
                        for p in parts {
                            if p["type"] == "tool_use" && p["name"] == "Bash" {
                                let cmd = p["input"]["command"].as_str().unwrap_or("").to_string();
                                cmds.insert(p["id"].as_str().unwrap_or("").to_string(), cmd);
                            }
                            if p["type"] == "tool_result" {
                                let id = p["tool_use_id"].as_str().unwrap_or("");
                                let text = match &p["content"] {
                                    Value::String(s) => s.clone(),
                                    Value::Array(a) => a.iter().filter_map(|x| x["text"].as_str()).collect(),
                                    _ => String::new(),
                                };
                                if let Some(cmd) = cmds.get(id) {
                                    out.push((dir.to_string(), cmd.clone(), text));
                                }
                            }
                        }
                    }
                    Value::String(s) if m["role"] == "assistant" => {
                        fenced = tokenfold::fold::shapes::assistant_command(s)
                    }
                    Value::String(s) if m["role"] == "user" || m["role"] == "tool" => {
                        if let Some(cmd) = fenced.take() {
                            out.push((dir.to_string(), cmd, s.clone()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// Where command output bytes are and what each filter makes of them (run with --ignored --nocapture).
#[test]
#[ignore]
fn corpus_command_outputs_by_tool() {
    let Some(root) = corpus() else { return };
    let mut by: BTreeMap<(String, String, String), (usize, usize, usize)> = BTreeMap::new();
    for (dir, cmd, text) in command_outputs(&root) {
        let tool = format!("{:?}", command::classify(&cmd));
        let prog = cmd.split_whitespace().find(|w| !w.contains('=') && *w != "cd").unwrap_or("").to_string();
        let c = filters::compress(Some(&cmd), &text, Level::Balanced);
        let (filter, kept) = match &c {
            Some(c) => {
                let cut: usize = c.cuts.iter().map(|(_, k)| k.with.len()).sum();
                let removed: usize = c
                    .cuts
                    .iter()
                    .map(|(_, k)| {
                        text.split('\n').skip(k.lines.start).take(k.lines.len()).map(|l| l.len() + 1).sum::<usize>()
                    })
                    .sum();
                (c.filter.name().to_string(), text.len() + cut - removed)
            }
            None => ("-".to_string(), text.len()),
        };
        let e = by.entry((dir, format!("{tool} {prog}"), filter)).or_default();
        e.0 += 1;
        e.1 += text.len();
        e.2 += kept;
    }
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by_key(|(_, v)| std::cmp::Reverse(v.1));
    for ((dir, tool, filter), (n, bytes, kept)) in rows.into_iter().take(60) {
        println!("{dir:<20} {tool:<40} {filter:<20} {n:>4} {bytes:>9} -> {kept:>9}");
    }
}
