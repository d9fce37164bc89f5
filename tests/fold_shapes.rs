//! Agent shapes the fold engine recognises, and the ones it must not: tool output and templates
//! sent as user messages, typed text that only looks like them, the command behind an output,
//! renumbered spans with gaps, and repeats inside one block.

mod fold_support;

use bytes::Bytes;
use serde_json::{json, Value};
use tokenfold::dialect::Dialect;
use tokenfold::fold::{producers, Folded, Folder, Mechanism};

/// A long, distinctive body that folds whenever it is allowed to.
fn pasted() -> String {
    (0..24).map(|i| format!("    step_{i}: compile the module and check the result of stage {i} carefully\n")).collect()
}

fn chat(messages: Vec<Value>) -> Bytes {
    Bytes::from(json!({"model": "m", "messages": messages}).to_string())
}

fn fold_chat(messages: Vec<Value>) -> Option<Folded> {
    Folder::new(true).fold(Dialect::OpenaiChat, &chat(messages))
}

/// The same text sent twice as user messages after an assistant turn.
fn twice(first: &str, second: &str) -> Vec<Value> {
    vec![
        json!({"role": "user", "content": "Please help me with the build."}),
        json!({"role": "assistant", "content": "Sure, paste the output."}),
        json!({"role": "user", "content": first}),
        json!({"role": "assistant", "content": "And again?"}),
        json!({"role": "user", "content": second}),
    ]
}

#[test]
fn pasted_terminal_text_stays_typed() {
    let p = pasted();
    let cases = [
        // An exit-code line in the middle of what a person pasted.
        format!("my build says:\n{p}[Command finished with exit code 1]\nwhat now?"),
        format!("{p}[The command completed with exit code 2.]\nany idea?"),
        // A shell prompt at the end, without SWE-agent's state lines.
        format!("here is my terminal:\n{p}bash-$"),
        format!("{p}(Current directory: /repo)\nbash-$"),
        // Template words that are not at the start.
        format!("I got <returncode>1</returncode> and\n{p}</output>"),
        format!("Look: OBSERVATION:\n{p}"),
        format!("I ran this command:\n\nmake\n\nbut it printed\n{p}"),
        format!("<returncode>x</returncode>\n{p}"),
    ];
    for text in cases {
        assert!(fold_chat(twice(&text, &text)).is_none(), "typed text was rewritten: {:?}", &text[..40]);
    }
}

#[test]
fn agent_templates_fold() {
    let p = pasted();
    let cases = [
        format!("{p}\n(Open file: /repo/a.py)\n(Current directory: /repo)\nbash-$"),
        format!("{p}\n(Open file: n/a)\n(Current directory: /repo)\n(Interactive session: n/a)\nbash-$"),
        format!("<returncode>0</returncode>\n<output>\n{p}</output>"),
        format!("OBSERVATION:\n{p}[Command finished with exit code 0]"),
        format!("EXECUTION RESULT of [execute_bash]:\n{p}[The command completed with exit code 0.]"),
        format!("I ran this command:\n\nmake test\n\nAnd got this output:\n\n{p}"),
    ];
    for text in cases {
        let f = fold_chat(twice(&text, &text)).unwrap_or_else(|| panic!("template did not fold: {:?}", &text[..30]));
        assert_eq!(f.edits[0].mechanism, Mechanism::WholeOutput);
    }
}

#[test]
fn user_message_output_knows_its_command() {
    let obs = |body: &str| format!("{body}\n(Open file: n/a)\n(Current directory: /repo)\nbash-$");
    let fence = "Let me run the tests.\n```\npytest -x tests/test_a.py\n```";
    let mini = "THOUGHT: list files\n\n```bash\nls -la src\n```";
    let openhands = "Checking.\n<function=execute_bash>\n<parameter=command>\ncargo build\n</parameter>\n</function>";
    let xml = "<command>\nfind_file \"a.py\"\n</command>";
    let messages = vec![
        json!({"role": "system", "content": "You are an agent."}),
        json!({"role": "user", "content": "Fix the bug."}),
        json!({"role": "assistant", "content": fence}),
        json!({"role": "user", "content": obs("1 passed")}),
        json!({"role": "assistant", "content": mini}),
        json!({"role": "user", "content": "<returncode>0</returncode>\n<output>\na.rs\n</output>"}),
        json!({"role": "assistant", "content": openhands}),
        json!({"role": "user", "content": "EXECUTION RESULT of [execute_bash]:\nok"}),
        json!({"role": "assistant", "content": xml}),
        json!({"role": "user", "content": obs("Found 1 matches")}),
        json!({"role": "assistant", "content": "I think we are done."}),
        json!({"role": "user", "content": obs("no command in the message before")}),
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"git status\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "c1", "content": "clean"}),
        json!({"role": "user", "content": "I ran this command:\n\nhatch run lint\n\nAnd got this output:\n\nAll good"}),
    ];
    let tools = producers(Dialect::OpenaiChat, &chat(messages)).expect("located");
    let cmd = |k: usize| tools[k].as_ref().and_then(|t| t.command.clone());
    // Blocks: system, task, then one block per message from index 2.
    assert_eq!(cmd(3).as_deref(), Some("pytest -x tests/test_a.py"));
    assert_eq!(cmd(5).as_deref(), Some("ls -la src"));
    assert_eq!(cmd(7).as_deref(), Some("cargo build"));
    assert_eq!(cmd(9).as_deref(), Some("find_file \"a.py\""));
    assert_eq!(cmd(11), None, "the assistant message before ran nothing");
    assert_eq!(cmd(12).as_deref(), Some("git status"), "the call itself");
    assert_eq!(cmd(13).as_deref(), Some("git status"), "its output");
    assert_eq!(cmd(14).as_deref(), Some("hatch run lint"), "Aider names the command in the message");
    assert!(tools[1].is_none(), "typed text has no producer");
}

/// A Chat conversation with two tool outputs.
fn two_outputs(first: &str, second: &str) -> Option<Folded> {
    let call = |id: &str| {
        json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": id, "type": "function", "function": {"name": "sh", "arguments": "{\"cmd\":\"grep -n x src/app.py\"}"}}]})
    };
    fold_chat(vec![
        json!({"role": "user", "content": "find x"}),
        call("c1"),
        json!({"role": "tool", "tool_call_id": "c1", "content": first}),
        call("c2"),
        json!({"role": "tool", "tool_call_id": "c2", "content": second}),
    ])
}

#[test]
fn renumbered_spans_need_consecutive_numbers() {
    // A re-run `grep -n` after two lines were inserted above: 12, 40, 88 became 14, 42, 90.
    let hits = [12usize, 40, 88, 130, 170, 222];
    let body = |shift: usize| -> String {
        hits.iter()
            .map(|&n| format!("{}:    value = compute_the_value_of_this_line(\"argument number {n}\")\n", n + shift))
            .collect()
    };
    assert!(two_outputs(&body(0), &body(2)).is_none(), "gapped numbers must not fold as a range");
    // Consecutive lines renumbered by the same shift do fold, naming both ranges.
    let view = |from: usize| -> String {
        (0..12)
            .map(|k| format!("{}:    value = compute_the_value_of_this_line(\"argument number {k}\")\n", from + k))
            .collect()
    };
    let f = two_outputs(&view(10), &view(12)).expect("shifted view folds");
    let m = &f.edits[0].marker;
    assert!(m.contains("lines 12-23") && m.contains("lines 10-21"), "{m}");
    // The same gapped output unchanged is identical: it folds as a whole.
    let f = two_outputs(&body(0), &body(0)).expect("identical output folds");
    assert_eq!(f.edits[0].mechanism, Mechanism::WholeOutput);
}

#[test]
fn repeats_inside_one_block_point_above() {
    let section: String = (0..8)
        .map(|i| format!("  warning: unused variable `value_{i}` in function `compute` of module core\n"))
        .collect();
    let out = format!("first build:\n{section}second build:\n{section}done\n");
    let f = two_outputs("nothing yet", &out).expect("the repeat folds");
    let e = &f.edits[0];
    assert_eq!(e.mechanism, Mechanism::Span);
    assert_eq!(e.source, e.block, "points into the same block");
    assert!(e.marker.contains("same as lines 2-9 above"), "{}", e.marker);
    let v: Value = serde_json::from_slice(&f.body).unwrap();
    let forwarded = v["messages"][4]["content"].as_str().unwrap();
    let shown: Vec<&str> = forwarded.split('\n').collect();
    assert_eq!(shown[1..9].join("\n") + "\n", section, "lines 2-9 of the forwarded block are the section");
    assert!(forwarded.contains(&*e.marker) && forwarded.ends_with("done\n"));
    // With the lever off it does not fold.
    let off = tokenfold::fold::Levers::default().without("same-block").unwrap();
    let body = chat(vec![
        json!({"role": "user", "content": "x"}),
        json!({"role": "assistant", "content": "y"}),
        json!({"role": "user", "content": format!("<returncode>0</returncode>\n<output>\n{out}</output>")}),
    ]);
    assert!(Folder::with_levers(true, off).fold(Dialect::OpenaiChat, &body).is_none());
    assert!(Folder::new(true).fold(Dialect::OpenaiChat, &body).is_some());
}

#[test]
fn swe_agent_templates_fold_but_the_issue_text_does_not() {
    let instructions: String = (0..12)
        .map(|i| format!("{i}. Remember to follow the interface rules of this environment carefully, step {i}.\n"))
        .collect();
    let issue: String =
        (0..10).map(|i| format!("The parser drops field {i} when the input has a trailing comma.\n")).collect();
    let instance = |issue: &str| {
        format!(
            "We're currently solving the following issue within our repository. Here's the issue text:\nISSUE:\n{issue}\nINSTRUCTIONS:\nNow, you're going to solve this issue on your own.\n{instructions}\n(Open file: n/a)\n(Current directory: /repo)\nbash-$"
        )
    };
    let demo = format!(
        "Here is a demonstration of how to correctly accomplish this task.\n--- DEMONSTRATION ---\n{}\n--- END OF DEMONSTRATION ---\n",
        instance(&issue)
    );
    let body = chat(vec![
        json!({"role": "system", "content": "SETTING: you are an autonomous programmer."}),
        json!({"role": "user", "content": demo}),
        json!({"role": "user", "content": instance(&issue)}),
    ]);
    let f =
        Folder::new(true).fold(Dialect::OpenaiChat, &body).expect("the instructions fold against the demonstration");
    assert!(f.edits.iter().all(|e| e.block == 2 && e.source == 1), "only the instance message, pointing at the demo");
    for e in &f.edits {
        assert!(!e.removed.contains("trailing comma"), "the issue text stays");
        assert!(e.marker.contains("the demonstration in message 1"), "{}", e.marker);
    }
    let off = tokenfold::fold::Levers::default().without("templates").unwrap();
    assert!(Folder::with_levers(true, off).fold(Dialect::OpenaiChat, &body).is_none());
}

/// A Claude Code conversation reading `/repo/lib.rs` twice, with the given Read outputs.
fn two_reads(first: &str, second: &str) -> Bytes {
    let call = |id: &str| {
        json!({"role": "assistant", "content": [
        {"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": "/repo/src/lib.rs"}}]})
    };
    let result = |id: &str, out: &str| {
        json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": id, "content": out}]})
    };
    Bytes::from(
        json!({"model": "claude", "max_tokens": 100, "messages": [
            {"role": "user", "content": "look at lib.rs"},
            call("toolu_01AAAAAAAAAAAAAAAAAAAAAAAA"), result("toolu_01AAAAAAAAAAAAAAAAAAAAAAAA", first),
            call("toolu_01BBBBBBBBBBBBBBBBBBBBBBBB"), result("toolu_01BBBBBBBBBBBBBBBBBBBBBBBB", second)]})
        .to_string(),
    )
}

#[test]
fn file_views_fold_only_as_a_whole() {
    let code: Vec<String> =
        (0..80).map(|i| format!("    let value_{i} = compute(\"argument {i}\", {i} * 3);")).collect();
    let view = |lines: &[String], from: usize, shift: usize| -> String {
        lines.iter().enumerate().skip(from).map(|(i, l)| format!("{:>6}→{l}\n", i + 1 + shift)).collect()
    };
    // A re-read with one changed line: folding around it would leave a marker boundary next to
    // the change, where an Edit anchor could be cut. It stays verbatim.
    let mut edited = code.clone();
    edited[40] = "    let changed = 1;".to_string();
    let body = two_reads(&view(&code, 0, 0), &view(&edited, 0, 0));
    assert!(Folder::new(true).fold(Dialect::Anthropic, &body).is_none(), "a changed view stays whole");
    let spans = tokenfold::fold::Levers::default().with("view-spans").unwrap();
    let f = Folder::with_levers(true, spans).fold(Dialect::Anthropic, &body).expect("view-spans folds around it");
    assert_eq!(f.edits.len(), 2);
    // A partial re-read, renumbered (two lines were inserted above), folds as one span.
    let mut shifted = code.clone();
    shifted.insert(0, "// header".to_string());
    shifted.insert(0, "// license".to_string());
    let f = Folder::new(true).fold(Dialect::Anthropic, &two_reads(&view(&code, 0, 0), &view(&shifted, 12, 0))).unwrap();
    assert_eq!(f.edits.len(), 1);
    let e = &f.edits[0];
    assert!(e.marker.contains("lines 13-82 same as lines 11-80 of lib.rs read toolu_01AAAA"), "{}", e.marker);
    assert!(e.marker.contains('…'), "the id is cut to a unique prefix: {}", e.marker);
}
