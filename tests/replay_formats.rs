//! `tokenfold replay` rebuilds per-turn requests from each agent's session format.

use std::path::PathBuf;

mod fold_support;

use tokenfold::dialect::Dialect;
use tokenfold::replay::sources;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tokenfold-replay-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn claude_code_jsonl_merges_split_events_and_skips_noise() {
    let d = tmp("cc");
    let lines = [
        r#"{"type":"file-history-snapshot","snapshot":{}}"#,
        r#"{"type":"progress","data":{"type":"hook_progress"}}"#,
        r#"{"type":"user","message":{"role":"user","content":"fix it"}}"#,
        r#"{"type":"assistant","message":{"id":"m1","role":"assistant","model":"claude-x","content":[{"type":"text","text":"ok"}]}}"#,
        r#"{"type":"assistant","message":{"id":"m1","role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Read","input":{"file_path":"/a.rs"}}]}}"#,
        r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"1→x"}]},"toolUseResult":{"file":{"content":"DUPLICATE"}}}"#,
        r#"{"type":"assistant","message":{"id":"m2","role":"assistant","content":[{"type":"text","text":"done"}]}}"#,
        r#"{"type":"system","subtype":"compact_boundary"}"#,
        r#"{"type":"user","message":{"role":"user","content":"summary"}}"#,
        r#"{"type":"assistant","message":{"id":"m3","role":"assistant","content":[{"type":"text","text":"go on"}]}}"#,
    ];
    std::fs::write(d.join("s.jsonl"), lines.join("\n")).unwrap();
    let c = sources::load(&d);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].dialect, Dialect::Anthropic);
    assert_eq!(c[0].turns.len(), 3);
    let t2: serde_json::Value = serde_json::from_slice(&c[0].turns[1]).unwrap();
    assert_eq!(t2["messages"].as_array().unwrap().len(), 3);
    assert_eq!(t2["messages"][1]["content"].as_array().unwrap().len(), 2, "split assistant events merge");
    assert!(!String::from_utf8_lossy(&c[0].turns[1]).contains("DUPLICATE"), "toolUseResult is not sent");
    let t3: serde_json::Value = serde_json::from_slice(&c[0].turns[2]).unwrap();
    assert_eq!(t3["messages"].as_array().unwrap().len(), 1, "compaction starts a fresh context");
}

/// Claude Code runs tools while a response still streams: the blocks of one assistant message
/// (one `message.id`) arrive interleaved with the results of its earlier calls. It sends them as
/// one assistant message and one user message of results, so that is one model turn.
#[test]
fn claude_code_parallel_calls_are_one_message() {
    let d = tmp("cc-parallel");
    let lines = [
        r#"{"type":"user","message":{"role":"user","content":"look at both"}}"#,
        r#"{"type":"assistant","message":{"id":"m1","role":"assistant","content":[{"type":"text","text":"reading"}]}}"#,
        r#"{"type":"assistant","message":{"id":"m1","role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Read","input":{"file_path":"/a"}}]}}"#,
        r#"{"type":"progress","data":{}}"#,
        r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"A"}]}}"#,
        r#"{"type":"assistant","message":{"id":"m1","role":"assistant","content":[{"type":"tool_use","id":"t2","name":"Read","input":{"file_path":"/b"}}]}}"#,
        r#"{"type":"assistant","message":{"id":"m1","role":"assistant","content":[{"type":"tool_use","id":"t3","name":"Read","input":{"file_path":"/c"}}]}}"#,
        r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t3","content":"C"}]}}"#,
        r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t2","content":"B"}]}}"#,
        r#"{"type":"assistant","message":{"id":"m2","role":"assistant","content":[{"type":"text","text":"both read"}]}}"#,
        r#"{"type":"user","message":{"role":"user","content":"thanks"}}"#,
        r#"{"type":"assistant","message":{"id":"m3","role":"assistant","content":[{"type":"text","text":"ok"}]}}"#,
        // The same id after typed text is a new message (not a continuation).
        r#"{"type":"user","message":{"role":"user","content":"and?"}}"#,
        r#"{"type":"assistant","message":{"id":"m3","role":"assistant","content":[{"type":"text","text":"more"}]}}"#,
    ];
    std::fs::write(d.join("s.jsonl"), lines.join("\n")).unwrap();
    let c = sources::load(&d);
    assert_eq!(c[0].turns.len(), 4, "one request per model response");
    let t: serde_json::Value = serde_json::from_slice(&c[0].turns[1]).unwrap();
    let m = t["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3, "user, one assistant message, one user message of results");
    let kinds: Vec<&str> = m[1]["content"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text", "tool_use", "tool_use", "tool_use"]);
    let ids: Vec<&str> =
        m[2]["content"].as_array().unwrap().iter().map(|p| p["tool_use_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t1", "t3", "t2"], "results in the order they were logged");
    let last: serde_json::Value = serde_json::from_slice(&c[0].turns[3]).unwrap();
    assert_eq!(last["messages"].as_array().unwrap().len(), 7);
    // The corpus: one request per distinct assistant message id (899 in claude-code_spotter).
    if let Some(root) = fold_support::corpus_root() {
        let n: usize = sources::load(&root.join("claude-code_spotter")).iter().map(|c| c.turns.len()).sum();
        assert_eq!(n, 899);
    }
}

#[test]
fn trajectories_aider_codex_and_bodies() {
    let d = tmp("mix");
    let traj = serde_json::json!({"history": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "task"},
        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "obs"},
        {"role": "assistant", "content": "a2"}]});
    std::fs::write(d.join("x.traj"), traj.to_string()).unwrap();
    let mini =
        serde_json::json!({"messages": [{"role": "user", "content": "t"}, {"role": "assistant", "content": "a"}]});
    std::fs::write(d.join("y.traj.json"), mini.to_string()).unwrap();
    let aider = "TO LLM 2025\n-------\nSYSTEM be helpful\nSYSTEM more\n-------\nUSER hi\n-------\nLLM RESPONSE 2025\nASSISTANT hello\nTO LLM 2025\n-------\nSYSTEM be helpful\n-------\nUSER hi\n-------\nASSISTANT hello\n-------\nUSER again\nLLM RESPONSE 2025\n";
    std::fs::write(d.join(".aider.llm.history"), aider).unwrap();
    let codex = [
        r#"{"type":"session_meta","payload":{}}"#,
        r#"{"type":"response_item","payload":{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}}"#,
        r#"{"type":"response_item","payload":{"type":"function_call","name":"shell","arguments":"{}","call_id":"c"}}"#,
        r#"{"type":"response_item","payload":{"type":"function_call_output","call_id":"c","output":"ok"}}"#,
        r#"{"type":"response_item","payload":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"done"}]}}"#,
    ];
    std::fs::write(d.join("rollout.jsonl"), codex.join("\n")).unwrap();
    std::fs::create_dir_all(d.join("bodies")).unwrap();
    std::fs::write(d.join("bodies/1.json"), r#"{"model":"m","messages":[{"role":"user","content":"a"}]}"#).unwrap();
    std::fs::write(d.join("bodies/2.json"), r#"{"model":"m","messages":[{"role":"user","content":"b"}]}"#).unwrap();
    let convs = sources::load(&d);
    let find = |f: &str| convs.iter().find(|c| c.format == f).unwrap_or_else(|| panic!("no {f}"));
    assert_eq!(find("swe-agent").turns.len(), 2);
    assert_eq!(find("mini-swe-agent").turns.len(), 1);
    let a = find("aider");
    assert_eq!(a.turns.len(), 2);
    let v: serde_json::Value = serde_json::from_slice(&a.turns[1]).unwrap();
    assert_eq!(v["messages"].as_array().unwrap().len(), 4);
    assert_eq!(v["messages"][0]["content"], "be helpful");
    let c = find("codex");
    assert_eq!((c.dialect, c.turns.len()), (Dialect::OpenaiResponses, 2));
    assert_eq!(find("request-bodies").turns.len(), 2);
}

#[test]
fn replay_run_reports_and_succeeds() {
    let d = tmp("run");
    let traj =
        serde_json::json!({"history": [{"role": "user", "content": "t"}, {"role": "assistant", "content": "a"}]});
    std::fs::write(d.join("x.traj"), traj.to_string()).unwrap();
    let opts = tokenfold::replay::Options { paths: vec![d.clone()], json: true, ..Default::default() };
    assert_eq!(tokenfold::replay::run(opts), 0);
    let opts = tokenfold::replay::Options { paths: vec![d.clone()], levers: true, ceiling: true, ..Default::default() };
    assert_eq!(tokenfold::replay::run(opts), 0);
    let opts =
        tokenfold::replay::Options { paths: vec![d], without: vec!["no-such-lever".into()], ..Default::default() };
    assert_eq!(tokenfold::replay::run(opts), 2, "an unknown lever is a usage error");
}

/// Gemini CLI's session files (`chats/session-*.jsonl` of 0.61, `session-*.json` before) and the
/// `/chat share` export, side by side in one folder as `~/.gemini/tmp/<project>/chats` holds them.
#[test]
fn gemini_cli_sessions_and_shared_histories() {
    let d = tmp("gemini").join("tmp/project/chats");
    std::fs::create_dir_all(&d).unwrap();
    let records = [
        r#"{"sessionId":"5b4b","projectHash":"6ae6","startTime":"2026-12-06T21:42:22.112Z","kind":"main"}"#,
        r#"{"$set":{"messages":[{"id":"d049","timestamp":"t","type":"user","content":[{"text":"<session_context>\nMy operating system is: linux\n</session_context>"}]}],"lastUpdated":"t"}}"#,
        r#"{"id":"2f6d","timestamp":"t","type":"user","content":[{"text":"fix config.py"}]}"#,
        r#"{"id":"41d5","timestamp":"t","type":"gemini","content":"","toolCalls":[{"id":"read_file_1","name":"read_file","args":{"file_path":"src/config.py"},"status":"scheduled","timestamp":"t"}],"thoughts":[],"model":"gemini-x"}"#,
        r#"{"id":"41d5","timestamp":"t","type":"gemini","content":"","toolCalls":[{"id":"read_file_1","name":"read_file","args":{"file_path":"src/config.py"},"status":"success","timestamp":"t","result":[{"functionResponse":{"id":"read_file_1","name":"read_file","response":{"output":"TIMEOUT = 30\n"}}}]}],"thoughts":[],"model":"gemini-x"}"#,
        r#"{"$set":{"lastUpdated":"t"}}"#,
        r#"{"id":"77aa","timestamp":"t","type":"gemini","content":"It is 30.","thoughts":[],"model":"gemini-x"}"#,
    ];
    std::fs::write(d.join("session-2026-12-06T21-42-5b4b.jsonl"), records.join("\n")).unwrap();
    let legacy = serde_json::json!({"sessionId": "s", "projectHash": "p", "startTime": "t", "lastUpdated": "t", "messages": [
        {"id": "1", "type": "user", "content": "hi"},
        {"id": "2", "type": "info", "content": "not sent"},
        {"id": "3", "type": "gemini", "content": "hello"}]});
    std::fs::write(d.join("session-2026-01-02T10-00-s.json"), legacy.to_string()).unwrap();
    let shared = serde_json::json!([
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [{"text": "plan", "thought": true}, {"functionCall": {"name": "glob", "args": {"pattern": "*"}}, "thoughtSignature": "c2ln"}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "glob_1_0", "name": "glob", "response": {"output": "a.rs"}}}]},
        {"role": "model", "parts": [{"text": "done"}]}]);
    std::fs::write(d.join("shared.json"), shared.to_string()).unwrap();
    let convs = sources::load(&d);
    assert_eq!(convs.len(), 3);
    assert!(convs.iter().all(|c| c.dialect == Dialect::Gemini));
    let find = |name: &str| convs.iter().find(|c| c.name.contains(name)).unwrap();
    let jsonl = find(".jsonl");
    assert_eq!((jsonl.format, jsonl.turns.len()), ("gemini-cli-session", 2));
    let last: serde_json::Value = serde_json::from_slice(&jsonl.turns[1]).unwrap();
    let c = last["contents"].as_array().unwrap();
    assert_eq!(c.len(), 4, "context, prompt, the call, its result: {last}");
    assert_eq!(
        c[2]["parts"][0]["functionCall"],
        serde_json::json!({"id": "read_file_1", "name": "read_file", "args": {"file_path": "src/config.py"}})
    );
    assert_eq!(c[3]["parts"][0]["functionResponse"]["response"]["output"], "TIMEOUT = 30\n");
    assert_eq!(find("-s.json").turns.len(), 1);
    let share = find("shared.json");
    assert_eq!((share.format, share.turns.len()), ("gemini-cli", 2));
    // The whole replay runs on them.
    let opts = tokenfold::replay::Options { paths: vec![d], json: true, ..Default::default() };
    assert_eq!(tokenfold::replay::run(opts), 0);
}

/// The shared corpus's three Gemini CLI histories: 140 model turns (skips when it is absent).
#[test]
fn the_gemini_cli_corpus_reads_as_140_turns() {
    let Some(root) = fold_support::corpus_root() else {
        eprintln!("skipped: the shared corpus is not here (../shared/corpus)");
        return;
    };
    let convs = sources::load(&root.join("gemini-cli_gemini-cli"));
    assert_eq!(convs.len(), 3);
    assert_eq!(convs.iter().map(|c| c.turns.len()).sum::<usize>(), 140);
    assert!(convs.iter().all(|c| c.format == "gemini-cli" && c.dialect == Dialect::Gemini));
}
