//! Folding Gemini bodies: `functionResponse` output is tool output, Gemini CLI's `read_file` is a
//! file view (it shows the file without line numbers, so it folds only whole), shell output goes
//! through its filter, and a folded body differs from the original only inside those strings.

use bytes::Bytes;
use serde_json::{json, Value};
use tokenfold::dialect::Dialect;
use tokenfold::fold::{producers, Folder, Level, Mechanism};

fn file(changed_line: usize) -> String {
    (0..120)
        .map(|i| {
            if i == changed_line {
                "TIMEOUT = 45\n".to_string()
            } else {
                format!("def limit_{i:03}(value):  # clamp the widget value on channel {i}\n")
            }
        })
        .collect()
}

fn call(name: &str, args: Value) -> Value {
    json!({"role": "model", "parts": [{"functionCall": {"name": name, "args": args}}]})
}

/// Gemini CLI's shape: responses carry an id the call does not (older CLI versions).
fn response(name: &str, id: &str, output: &str) -> Value {
    json!({"role": "user", "parts": [{"functionResponse": {"id": id, "name": name, "response": {"output": output}}}]})
}

fn body(contents: Vec<Value>) -> Bytes {
    let mut all = vec![json!({"role": "user", "parts": [{"text": "raise the timeout"}]})];
    all.extend(contents);
    Bytes::from(json!({"contents": all, "systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]}}).to_string())
}

fn outputs(folded: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(folded).unwrap();
    v["contents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["parts"].as_array().unwrap().clone())
        .filter_map(|p| p["functionResponse"]["response"]["output"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_changed_re_read_stays_whole_and_an_unchanged_one_becomes_a_pointer() {
    let read = |id: &str, text: &str| {
        vec![call("read_file", json!({"file_path": "/r/config.py"})), response("read_file", id, text)]
    };
    let changed = body([read("read_file-1-a", &file(200)), read("read_file-2-b", &file(60))].concat());
    assert!(
        Folder::new(true).fold(Dialect::Gemini, &changed).is_none(),
        "a view that differs in one line must not fold in pieces: an edit anchor could be cut"
    );
    let same = body([read("read_file-1-a", &file(60)), read("read_file-2-b", &file(60))].concat());
    let f = Folder::new(true).fold(Dialect::Gemini, &same).expect("an identical re-read folds");
    let out = outputs(&f.body);
    assert_eq!(out[0], file(60), "the first view is never touched");
    assert!(out[1].starts_with("[tokenfold:") && out[1].contains("config.py"), "{}", out[1]);
    assert_eq!(f.edits.len(), 1);
    assert!(f.saved_tokens > 100);
    // Only the folded string changed: the bytes around it are the original's.
    let (orig, new) = (std::str::from_utf8(&same).unwrap(), std::str::from_utf8(&f.body).unwrap());
    let cut = orig.rfind(&json!(file(60)).to_string()[..40]).unwrap();
    assert_eq!(&orig[..cut], &new[..cut]);
}

#[test]
fn responses_find_calls_without_ids_and_shell_output_is_filtered() {
    let log: String =
        (1..=300).map(|i| format!("widget-{i:03} ok  checksum 0x{:02x}  latency 4 ms\n", i % 256)).collect();
    let log = log.replace(
        "widget-217 ok  checksum 0xd9  latency 4 ms",
        "ERROR widget-217: checksum mismatch at src/config.py:122",
    );
    let shell = format!("Command: bash check.sh\nDirectory: (root)\nOutput: {log}Error: (none)\nExit Code: 0");
    let b = body(vec![
        call("run_shell_command", json!({"command": "bash check.sh", "description": "checks"})),
        response("run_shell_command", "run_shell_command-17-x", &shell),
    ]);
    let tools = producers(Dialect::Gemini, &b).unwrap();
    let shell_tool = tools.iter().flatten().find(|t| t.name == "run_shell_command").unwrap();
    assert_eq!(shell_tool.command.as_deref(), Some("bash check.sh"));
    let folder =
        Folder::with_options(true, tokenfold::fold::FoldOptions { level: Level::Balanced, ..Default::default() });
    let f = folder.fold(Dialect::Gemini, &b).expect("the long output is filtered");
    let out = outputs(&f.body).remove(0);
    assert!(out.lines().count() < shell.lines().count(), "{out}");
    assert!(out.contains("ERROR widget-217: checksum mismatch at src/config.py:122"), "the error line stays");
    assert!(f.edits.iter().any(|e| e.mechanism.is_filter()));
    assert!(f.edits.iter().all(|e| e.mechanism != Mechanism::Span));
}

#[test]
fn thoughts_and_signatures_are_never_touched() {
    let thought = "**Planning** ".repeat(200);
    let model = json!({"role": "model", "parts": [{"text": thought, "thought": true}, {"functionCall": {"name": "glob", "args": {"pattern": "*.rs"}}, "thoughtSignature": "c2ln"}]});
    let b = body(vec![model.clone(), response("glob", "g1", "a.rs"), model, response("glob", "g2", "a.rs")]);
    if let Some(f) = Folder::new(true).fold(Dialect::Gemini, &b) {
        let v: Value = serde_json::from_slice(&f.body).unwrap();
        for c in v["contents"].as_array().unwrap().iter().filter(|c| c["role"] == "model") {
            assert_eq!(c["parts"][0]["text"], thought.as_str());
            assert_eq!(c["parts"][1]["thoughtSignature"], "c2ln");
        }
    }
}
