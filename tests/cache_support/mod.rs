//! Multi-turn agent sessions in each client's wire shape (Codex on Responses, OpenCode on Chat,
//! Aider and Claude Code on Anthropic), built by hand to the sizes and layouts those clients
//! send: a long system prompt and tool schemas repeated every turn, then tool calls and their
//! outputs (file views) appended turn by turn.
#![allow(dead_code)]

use serde_json::{json, Value};

/// Deterministic prose for system prompts: `n` sentences.
pub fn prose(tag: &str, n: usize) -> String {
    const WORDS: [&str; 16] = [
        "agent",
        "repository",
        "command",
        "carefully",
        "edit",
        "files",
        "tests",
        "before",
        "changing",
        "explain",
        "result",
        "workspace",
        "sandbox",
        "approval",
        "output",
        "concise",
    ];
    (0..n)
        .map(|i| {
            let words: Vec<&str> = (0..12).map(|k| WORDS[(i * 7 + k * 3 + tag.len()) % WORDS.len()]).collect();
            format!("{tag} rule {i}: {}.", words.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A source file view of `lines` lines, as an agent's read tool shows it.
pub fn file_view(name: &str, lines: usize) -> String {
    (1..=lines)
        .map(|i| {
            format!("{i:>6}\tpub fn {name}_step_{i}(input: &str) -> Result<usize, Error> {{ parse(input, {i}) }}\n")
        })
        .collect()
}

/// Codex CLI's request (Responses dialect) at `turn` (1-based): `calls` parallel shell calls per
/// earlier turn, each answered with a file view.
pub fn codex_body(turn: usize, calls: usize, model: &str, stream: bool) -> Vec<u8> {
    let mut input = vec![
        json!({"type": "message", "role": "developer", "content": [{"type": "input_text",
            "text": "<permissions instructions>approval policy: on-request; sandbox: workspace-write</permissions instructions>"}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text",
            "text": "<environment_context>\n  <cwd>/repo</cwd>\n  <shell>bash</shell>\n</environment_context>"}]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text",
            "text": "The parser rejects empty lines; find out why and fix it."}]}),
    ];
    for t in 1..turn {
        input.push(json!({"type": "reasoning", "id": format!("rs_{t}"), "summary": [], "encrypted_content": format!("gAAAA{t}")}));
        for c in 0..calls {
            let id = format!("call_{t}_{c}");
            let args =
                json!({"command": ["bash", "-lc", format!("sed -n '1,80p' src/part_{t}_{c}.rs")], "workdir": "/repo"});
            input.push(json!({"type": "function_call", "name": "shell", "arguments": args.to_string(), "call_id": id}));
        }
        for c in 0..calls {
            let output = json!({"output": file_view(&format!("part_{t}_{c}"), 40), "metadata": {"exit_code": 0, "duration_seconds": 0.1}});
            input.push(json!({"type": "function_call_output", "call_id": format!("call_{t}_{c}"), "output": output.to_string()}));
        }
    }
    let tools = json!([
        {"type": "function", "name": "shell", "description": prose("shell", 12), "strict": false,
         "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}},
            "workdir": {"type": "string"}, "timeout_ms": {"type": "number"}}, "required": ["command"]}},
        {"type": "custom", "name": "apply_patch", "description": prose("patch", 10),
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF"}},
        {"type": "function", "name": "update_plan", "description": prose("plan", 6), "strict": false,
         "parameters": {"type": "object", "properties": {"plan": {"type": "array", "items": {"type": "object"}}}}},
    ]);
    serde_json::to_vec(&json!({
        "model": model,
        "instructions": prose("codex", 90),
        "input": input,
        "tools": tools,
        "tool_choice": "auto",
        "parallel_tool_calls": calls > 1,
        "reasoning": {"effort": "medium"},
        "store": false,
        "stream": stream,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "019a7c3e-codex-session",
    }))
    .unwrap()
}

/// OpenCode's request (Chat dialect) at `turn`: one read call per earlier turn.
pub fn opencode_body(turn: usize, model: &str, task: &str) -> Vec<u8> {
    let mut messages =
        vec![json!({"role": "system", "content": prose("opencode", 70)}), json!({"role": "user", "content": task})];
    for t in 1..turn {
        let id = format!("toolu_oc_{t}");
        let args = json!({"filePath": format!("/repo/src/mod_{t}.rs")});
        messages.push(json!({"role": "assistant", "content": format!("Reading module {t}."),
            "tool_calls": [{"id": id, "type": "function", "function": {"name": "read", "arguments": args.to_string()}}]}));
        messages.push(json!({"role": "tool", "tool_call_id": id, "content": file_view(&format!("mod_{t}"), 50)}));
    }
    let tool = |name: &str| {
        json!({"type": "function", "function": {"name": name, "description": prose(name, 8),
            "parameters": {"type": "object", "properties": {"filePath": {"type": "string", "description": "absolute path"}},
                "required": ["filePath"], "additionalProperties": false}}})
    };
    let tools: Vec<Value> =
        ["bash", "read", "edit", "write", "glob", "grep", "list", "todowrite"].iter().map(|n| tool(n)).collect();
    serde_json::to_vec(&json!({
        "model": model,
        "messages": messages,
        "tools": tools,
        "tool_choice": "auto",
        "max_tokens": 32000,
        "stream": false,
    }))
    .unwrap()
}

/// Aider's request (Anthropic dialect, no `--cache-prompts`): its editing rules as the system
/// prompt, the repository map and the added files as message pairs, then the ask.
pub fn aider_body(model: &str) -> Vec<u8> {
    let repo_map: String =
        (0..60).map(|i| format!("src/module_{i}.rs:\n│fn handle_{i}(req: Request) -> Response\n")).collect();
    serde_json::to_vec(&json!({
        "model": model,
        "max_tokens": 8192,
        "system": prose("aider", 40),
        "messages": [
            {"role": "user", "content": format!("Here are summaries of some files present in my git repository.\n{repo_map}")},
            {"role": "assistant", "content": "Ok, I won't try and edit those files without asking first."},
            {"role": "user", "content": format!("I have *added these files to the chat*:\nsrc/parse.rs\n```\n{}```", file_view("parse", 60))},
            {"role": "assistant", "content": "Ok, any changes I propose will be to those files."},
            {"role": "user", "content": "Make the parser accept empty lines."},
        ],
    }))
    .unwrap()
}

/// Claude Code's request at `turn`, with its own breakpoints (two on the system prompt, one on
/// the last user block) and its session in `metadata.user_id`.
pub fn claude_code_body(turn: usize, model: &str) -> Vec<u8> {
    let cc = json!({"type": "ephemeral"});
    let mut messages = vec![json!({"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\nAs you answer, use the context below.\n</system-reminder>"},
        {"type": "text", "text": "Fix the empty-line bug in the parser."}]})];
    for t in 1..turn {
        let id = format!("toolu_cc_{t}");
        messages.push(json!({"role": "assistant", "content": [
            {"type": "text", "text": format!("Reading file {t}.")},
            {"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": format!("/repo/src/f{t}.rs")}}]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": file_view(&format!("f{t}"), 40)}]}));
    }
    // The last block of the last message carries Claude Code's rolling breakpoint.
    if let Some(last) = messages.last_mut().and_then(|m| m["content"].as_array_mut()).and_then(|c| c.last_mut()) {
        last["cache_control"] = cc.clone();
    }
    let tools: Vec<Value> = ["Bash", "Read", "Edit", "Grep", "Glob", "Write"]
        .iter()
        .map(|n| json!({"name": n, "description": prose(n, 8), "input_schema": {"type": "object", "properties": {}}}))
        .collect();
    serde_json::to_vec(&json!({
        "model": model,
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": cc},
            {"type": "text", "text": prose("claude", 60), "cache_control": cc},
        ],
        "tools": tools,
        "messages": messages,
        "metadata": {"user_id": "user_abc_account__session_5f1c-cc-session"},
        "stream": true,
    }))
    .unwrap()
}

/// Removes every `cache_control` and writes string contents as one text block: what is left is
/// what the client sent, if the proxy only added breakpoints.
pub fn without_breakpoints(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out: serde_json::Map<String, Value> = m
                .iter()
                .filter(|(k, _)| *k != "cache_control")
                .map(|(k, v)| (k.clone(), without_breakpoints(v)))
                .collect();
            for key in ["content", "system"] {
                if let Some(Value::String(s)) = out.get(key) {
                    out.insert(key.into(), json!([{"type": "text", "text": s}]));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(without_breakpoints).collect()),
        other => other.clone(),
    }
}

/// Paths in `v` that carry `cache_control`.
pub fn breakpoint_paths(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if m.contains_key("cache_control") {
                out.push(at.to_string());
            }
            for (k, x) in m {
                breakpoint_paths(x, &format!("{at}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                breakpoint_paths(x, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The proxy config: an Anthropic provider, two OpenAI ones that take `prompt_cache_key` (Chat
/// and Responses) and a strict Chat one that does not, all at `base`.
pub fn config(base: &str, cache_section: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[pool]
store = "memory"

[cache]
{cache_section}

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "{base}/v1"
auth = "client"
models = [
  {{ name = "claude-sonnet-4-5", price = {{ input = 3.0, output = 15.0, cached_input = 0.3, cache_write = 3.75 }} }},
  {{ name = "claude-haiku-4-5", cache_min_tokens = 4096, price = {{ input = 1.0, output = 5.0, cached_input = 0.1 }} }},
]

[[providers]]
name = "openai"
kind = "openai"
base_url = "{base}/v1"
auth = "client"
prompt_cache_key = true
models = ["gpt-test"]

[[providers]]
name = "responses"
kind = "openai-responses"
base_url = "{base}/v1"
auth = "client"
prompt_cache_key = true
models = ["gpt-resp"]

[[providers]]
name = "strict"
kind = "openai"
base_url = "{base}/v1"
auth = "client"
models = ["strict-test"]

[default_upstream]
anthropic = "claude"
openai-chat = "openai"
openai-responses = "responses"
"#
    )
}
