//! Rebuilds the per-turn request bodies an agent sent, from the session files agents leave behind.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{json, Value};

use super::gemini_sources;
use crate::dialect::Dialect;

/// One conversation: the request body of every model turn, in order.
pub struct Conversation {
    pub name: String,
    pub format: &'static str,
    pub dialect: Dialect,
    pub turns: Vec<Bytes>,
}

/// All files under `path` (or `path` itself), sorted for a stable order.
pub fn walk(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Loads every conversation found under `path`. Unreadable or unknown files are skipped with a
/// note on stderr; request-body files in one directory form one conversation.
pub fn load(path: &Path) -> Vec<Conversation> {
    let mut convs = Vec::new();
    let mut bodies: std::collections::BTreeMap<PathBuf, Vec<(Dialect, Bytes)>> = Default::default();
    for f in walk(path) {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let label = f.strip_prefix(path).ok().filter(|p| !p.as_os_str().is_empty()).unwrap_or(&f).display().to_string();
        let conv = if name == ".aider.llm.history" {
            aider(&text).map(|t| ("aider", Dialect::OpenaiChat, t))
        } else if name.ends_with(".jsonl") {
            jsonl(&text)
        } else if name.ends_with(".traj") || name.ends_with(".json") {
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => {
                    if let Some(d) = request_dialect(&v) {
                        let dir = f.parent().map(Path::to_path_buf).unwrap_or_default();
                        bodies.entry(dir).or_default().push((d, Bytes::from(text)));
                        None
                    } else {
                        gemini_sources::shared_history(&v)
                            .or_else(|| gemini_sources::session(&v))
                            .or_else(|| chat_history(&v))
                    }
                }
                Err(_) => None,
            }
        } else {
            None
        };
        match conv {
            Some((format, dialect, turns)) if !turns.is_empty() => {
                convs.push(Conversation { name: label, format, dialect, turns })
            }
            _ => {}
        }
    }
    for (dir, list) in bodies {
        let dialect = list[0].0;
        let turns = list.into_iter().filter(|(d, _)| *d == dialect).map(|(_, b)| b).collect();
        convs.push(Conversation { name: dir.display().to_string(), format: "request-bodies", dialect, turns });
    }
    convs
}

type Parsed = Option<(&'static str, Dialect, Vec<Bytes>)>;

/// A request body file: which dialect it is.
fn request_dialect(v: &Value) -> Option<Dialect> {
    let o = v.as_object()?;
    if o.contains_key("history") || o.contains_key("trajectory") {
        return None;
    }
    if o.contains_key("input") && o.contains_key("model") {
        return Some(Dialect::OpenaiResponses);
    }
    let msgs = o.get("messages")?.as_array()?;
    let anthropic = o.contains_key("system")
        || msgs.iter().any(|m| {
            m.get("content").and_then(Value::as_array).is_some_and(|a| {
                a.iter().any(|p| {
                    matches!(p.get("type").and_then(Value::as_str), Some("tool_use" | "tool_result" | "image"))
                })
            })
        });
    o.contains_key("model").then_some(if anthropic { Dialect::Anthropic } else { Dialect::OpenaiChat })
}

/// Joins pre-serialized messages into one body per turn: `{"model":..,"messages":[m0,..,mk]}`.
fn bodies(head: &str, key: &str, msgs: &[String], turn_ends: &[usize]) -> Vec<Bytes> {
    turn_ends
        .iter()
        .map(|&k| {
            let mut s = String::with_capacity(msgs[..k].iter().map(|m| m.len() + 1).sum::<usize>() + 64);
            s.push('{');
            s.push_str(head);
            s.push_str(",\"");
            s.push_str(key);
            s.push_str("\":[");
            s.push_str(&msgs[..k].join(","));
            s.push_str("]}");
            Bytes::from(s)
        })
        .collect()
}

fn jsonl(text: &str) -> Parsed {
    let events: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    if events.iter().any(|e| e.get("type").and_then(Value::as_str) == Some("response_item")) {
        return codex(&events);
    }
    gemini_sources::session_records(&events).or_else(|| claude_code(&events))
}

/// One message being assembled from Claude Code events.
struct CcMessage {
    role: String,
    /// `message.id` of an assistant message (one model response).
    id: Option<String>,
    parts: Vec<Value>,
}

impl CcMessage {
    fn only_tool_results(&self) -> bool {
        self.role == "user" && self.parts.iter().all(|p| p.get("type").and_then(Value::as_str) == Some("tool_result"))
    }
}

/// Claude Code session JSONL: only `message.content` of user/assistant events reaches the model.
///
/// Claude Code logs one event per content block of a response and runs tools while the response
/// still streams, so the blocks of one assistant message (one `message.id`) can be interleaved
/// with the results of its earlier tool calls. It sends them as one assistant message (blocks in
/// logged order) followed by one user message holding every tool result (in logged order) and any
/// text after them. So an assistant event joins the last assistant message when it has the same
/// `message.id` and only tool results came in between; a new `message.id` is a new model turn,
/// whose request is every message before it. Consecutive user events form one message.
fn claude_code(events: &[Value]) -> Parsed {
    let mut msgs: Vec<CcMessage> = Vec::new();
    let mut ser: Vec<String> = Vec::new(); // serialized messages that can no longer change
    let mut model = "claude".to_string();
    let mut turns = Vec::new();
    for e in events {
        let ty = e.get("type").and_then(Value::as_str).unwrap_or_default();
        if ty == "system" && e.get("subtype").and_then(Value::as_str) == Some("compact_boundary") {
            // After compaction the model sees a fresh context that starts with the summary.
            msgs.clear();
            ser.clear();
            continue;
        }
        if ty != "user" && ty != "assistant" {
            continue;
        }
        let Some(m) = e.get("message") else { continue };
        let role = m.get("role").and_then(Value::as_str).unwrap_or(ty).to_string();
        if let Some(md) = m.get("model").and_then(Value::as_str) {
            model = md.to_string();
        }
        let parts: Vec<Value> = match m.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(a)) => a.clone(),
            _ => continue,
        };
        if role == "assistant" {
            let id = m.get("id").and_then(Value::as_str).map(str::to_string);
            let open = msgs.iter().rposition(|x| x.role == "assistant").filter(|&k| {
                id.is_some() && msgs[k].id == id && msgs[k + 1..].iter().all(CcMessage::only_tool_results)
            });
            if let Some(k) = open {
                msgs[k].parts.extend(parts);
                continue;
            }
            if !msgs.is_empty() {
                // Every earlier message is complete now: this is the request of a model turn.
                for c in &msgs[ser.len()..] {
                    ser.push(json!({"role": c.role, "content": c.parts}).to_string());
                }
                let head = format!("\"model\":{},\"max_tokens\":32000", Value::String(model.clone()));
                turns.extend(bodies(&head, "messages", &ser, &[ser.len()]));
            }
            msgs.push(CcMessage { role, id, parts });
            continue;
        }
        match msgs.last_mut() {
            Some(last) if last.role == role => last.parts.extend(parts),
            _ => msgs.push(CcMessage { role, id: None, parts }),
        }
    }
    Some(("claude-code", Dialect::Anthropic, turns))
}

/// Codex rollout JSONL: `response_item` payloads are the Responses `input` items.
fn codex(events: &[Value]) -> Parsed {
    let mut items: Vec<String> = Vec::new();
    let mut turn_ends = Vec::new();
    let mut last_was_model = false;
    for e in events {
        if e.get("type").and_then(Value::as_str) != Some("response_item") {
            continue;
        }
        let Some(p) = e.get("payload") else { continue };
        let ty = p.get("type").and_then(Value::as_str).unwrap_or_default();
        let role = p.get("role").and_then(Value::as_str).unwrap_or_default();
        let is_model = matches!(ty, "reasoning" | "function_call" | "custom_tool_call" | "local_shell_call")
            || (ty == "message" && role == "assistant");
        if is_model && !last_was_model && !items.is_empty() {
            turn_ends.push(items.len());
        }
        last_was_model = is_model;
        items.push(p.to_string());
    }
    Some(("codex", Dialect::OpenaiResponses, bodies("\"model\":\"codex\"", "input", &items, &turn_ends)))
}

/// SWE-agent `.traj` (`history`), mini-swe-agent `.traj.json` (`messages`), OpenHands events.
fn chat_history(v: &Value) -> Parsed {
    let (format, list) = if let Some(h) = v.get("history").and_then(Value::as_array) {
        ("swe-agent", h.clone())
    } else if let Some(m) = v.get("messages").and_then(Value::as_array) {
        ("mini-swe-agent", m.clone())
    } else if let Some(a) = v.as_array() {
        ("openhands", openhands(a))
    } else {
        return None;
    };
    let mut msgs = Vec::new();
    let mut turn_ends = Vec::new();
    for m in &list {
        let Some(role) = m.get("role").and_then(Value::as_str) else {
            continue;
        };
        let mut out = serde_json::Map::new();
        out.insert("role".into(), Value::String(role.to_string()));
        out.insert("content".into(), m.get("content").cloned().unwrap_or(Value::Null));
        if let Some(tc) = m.get("tool_calls").filter(|t| t.is_array()) {
            out.insert("tool_calls".into(), tc.clone());
        }
        let call_id = m.get("tool_call_id").cloned().or_else(|| m.get("tool_call_ids").and_then(|a| a.get(0)).cloned());
        if let (Some(id), "tool") = (call_id, role) {
            out.insert("tool_call_id".into(), id);
        }
        if role == "assistant" && !msgs.is_empty() {
            turn_ends.push(msgs.len());
        }
        msgs.push(Value::Object(out).to_string());
    }
    Some((format, Dialect::OpenaiChat, bodies("\"model\":\"replay\"", "messages", &msgs, &turn_ends)))
}

/// OpenHands event list -> chat messages: agent actions are assistant turns, observations come
/// back as `OBSERVATION:` user messages (its non-function-calling prompt shape).
fn openhands(events: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for e in events {
        let source = e.get("source").and_then(Value::as_str).unwrap_or_default();
        let content = e.get("content").and_then(Value::as_str);
        let message = e.get("message").and_then(Value::as_str);
        if e.get("observation").is_some() {
            if let Some(c) = content {
                out.push(json!({"role": "user", "content": format!("OBSERVATION:\n{c}")}));
            }
        } else if e.get("action").is_some() {
            let args = e.get("args");
            let arg = |k: &str| args.and_then(|a| a.get(k)).and_then(Value::as_str);
            let role = if source == "user" { "user" } else { "assistant" };
            // Commands go in CodeAct's `<execute_bash>` tags, as its non-function-calling prompt has them.
            let text = match (role, arg("command")) {
                ("assistant", Some(cmd)) => {
                    let thought = arg("thought").or(message).unwrap_or_default();
                    format!("{thought}\n<execute_bash>\n{cmd}\n</execute_bash>").trim_start().to_string()
                }
                _ => arg("content").or_else(|| arg("code")).or(message).unwrap_or_default().to_string(),
            };
            out.push(json!({"role": role, "content": text}));
        }
    }
    out
}

/// Aider's `.aider.llm.history`: each `TO LLM` section is one complete request, messages
/// separated by `-------` lines, every line prefixed with its role.
fn aider(text: &str) -> Option<Vec<Bytes>> {
    let mut turns = Vec::new();
    let mut in_req = false;
    let mut msgs: Vec<(String, String)> = Vec::new();
    let flush = |msgs: &mut Vec<(String, String)>, turns: &mut Vec<Bytes>| {
        if msgs.is_empty() {
            return;
        }
        let m: Vec<Value> = msgs.drain(..).map(|(r, c)| json!({"role": r, "content": c})).collect();
        turns.push(Bytes::from(json!({"model": "aider", "messages": m}).to_string()));
    };
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        if line.starts_with("TO LLM ") {
            in_req = true;
            continue;
        }
        if line.starts_with("LLM RESPONSE ") {
            if let Some(c) = cur.take() {
                msgs.push(c);
            }
            flush(&mut msgs, &mut turns);
            in_req = false;
            continue;
        }
        if !in_req {
            continue;
        }
        if line == "-------" {
            if let Some(c) = cur.take() {
                msgs.push(c);
            }
            continue;
        }
        let (role, rest) = match line.split_once(' ') {
            Some((r @ ("SYSTEM" | "USER" | "ASSISTANT"), rest)) => (r, rest),
            _ if matches!(line, "SYSTEM" | "USER" | "ASSISTANT") => (line, ""),
            _ => continue,
        };
        let role = role.to_ascii_lowercase();
        match &mut cur {
            Some((r, c)) if *r == role => {
                c.push('\n');
                c.push_str(rest);
            }
            _ => {
                if let Some(c) = cur.take() {
                    msgs.push(c);
                }
                cur = Some((role, rest.to_string()));
            }
        }
    }
    if let Some(c) = cur.take() {
        msgs.push(c);
    }
    flush(&mut msgs, &mut turns);
    Some(turns)
}
