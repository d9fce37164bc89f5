//! Gemini CLI's records of a conversation, rebuilt into the `contents` of every model turn's
//! request (Gemini dialect):
//!
//! - the `/chat share FILE.json` export: a JSON array of the API's `Content` objects, the
//!   history as the CLI sends it (thought parts and signatures included);
//! - session files under `~/.gemini/tmp/<project>/chats/`: `session-*.json` (one object with
//!   `messages`, older versions) or `session-*.jsonl` (a metadata line, then message records,
//!   `$set` updates and `$rewindTo` records; a record with an id seen before replaces it). Their
//!   `gemini` messages keep the answer's text and its tool calls with their results, but not the
//!   thought parts and signatures the CLI sent back, so those requests are a little smaller than
//!   the real ones.
//!
//! None of them records the system instruction and tool declarations sent beside `contents`.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::dialect::Dialect;

type Parsed = Option<(&'static str, Dialect, Vec<Bytes>)>;

/// The `/chat share` array: every entry a `Content` with a `user` or `model` role and parts.
pub fn shared_history(v: &Value) -> Parsed {
    let entries = v.as_array().filter(|a| !a.is_empty())?;
    let is_content = |e: &Value| {
        matches!(e.get("role").and_then(Value::as_str), Some("user" | "model"))
            && e.get("parts").is_some_and(Value::is_array)
    };
    if !entries.iter().all(is_content) {
        return None;
    }
    Some(("gemini-cli", Dialect::Gemini, turns(entries)))
}

/// One request per `model` entry: the contents before it (entries need not alternate).
fn turns(contents: &[Value]) -> Vec<Bytes> {
    let serialized: Vec<String> = contents.iter().map(Value::to_string).collect();
    contents
        .iter()
        .enumerate()
        .filter(|(i, c)| *i > 0 && c.get("role").and_then(Value::as_str) == Some("model"))
        .map(|(i, _)| Bytes::from(format!("{{\"contents\":[{}]}}", serialized[..i].join(","))))
        .collect()
}

/// A legacy session file: `{"sessionId", "projectHash", ..., "messages": [...]}`.
pub fn session(v: &Value) -> Parsed {
    let o = v.as_object()?;
    if !(o.contains_key("sessionId") && o.contains_key("projectHash")) {
        return None;
    }
    let messages = o.get("messages")?.as_array()?;
    Some(("gemini-cli-session", Dialect::Gemini, turns(&contents_of(messages))))
}

/// A JSONL session file: its records applied in order, then rebuilt like a legacy file.
pub fn session_records(records: &[Value]) -> Parsed {
    let first = records.first()?.as_object()?;
    if !(first.contains_key("sessionId") && first.contains_key("projectHash")) {
        return None;
    }
    let mut messages: Vec<Value> = Vec::new();
    let put = |messages: &mut Vec<Value>, m: &Value| {
        let id = m.get("id");
        match messages.iter_mut().find(|x| x.get("id") == id) {
            Some(old) => *old = m.clone(),
            None => messages.push(m.clone()),
        }
    };
    for r in records {
        if let Some(set) = r.get("$set") {
            if let Some(list) = set.get("messages").and_then(Value::as_array) {
                // A checkpoint: the whole list from here.
                messages.clear();
                list.iter().for_each(|m| put(&mut messages, m));
            }
        } else if let Some(to) = r.get("$rewindTo").and_then(Value::as_str) {
            let at = messages.iter().position(|m| m.get("id").and_then(Value::as_str) == Some(to));
            messages.truncate(at.unwrap_or(0));
        } else if r.get("id").is_some_and(Value::is_string) {
            put(&mut messages, r);
        } else if let Some(list) = r.get("messages").and_then(Value::as_array) {
            // Metadata written on one line with its messages (a file converted from `.json`).
            list.iter().for_each(|m| put(&mut messages, m));
        }
    }
    Some(("gemini-cli-session", Dialect::Gemini, turns(&contents_of(&messages))))
}

/// The API contents a session's messages stand for: user messages as user content; a `gemini`
/// message as model content (its text, then a function call per tool call) followed by a user
/// content with the calls' results, unless a user message carries them (Gemini CLI 0.61 records
/// the function responses it sends as a user message too). Info, warning and error messages
/// never reach the model.
fn contents_of(messages: &[Value]) -> Vec<Value> {
    let response_id =
        |p: &Value| p.get("functionResponse").and_then(|f| f.get("id")).and_then(Value::as_str).map(str::to_string);
    let sent_by_user: std::collections::HashSet<String> = messages
        .iter()
        .filter(|m| m.get("type").and_then(Value::as_str) == Some("user"))
        .flat_map(|m| parts_of(m.get("content").unwrap_or(&Value::Null)))
        .filter_map(|p| response_id(&p))
        .collect();
    let mut out = Vec::new();
    for m in messages {
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.get("type").and_then(Value::as_str) {
            Some("user") => {
                let parts = parts_of(content);
                if !parts.is_empty() {
                    out.push(json!({"role": "user", "parts": parts}));
                }
            }
            Some("gemini") => {
                let calls = m.get("toolCalls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                let mut parts = parts_of(content);
                let mut results = Vec::new();
                for c in calls {
                    let mut call = serde_json::Map::new();
                    for key in ["id", "name"] {
                        if let Some(v) = c.get(key).filter(|v| v.is_string()) {
                            call.insert(key.into(), v.clone());
                        }
                    }
                    call.insert("args".into(), c.get("args").cloned().unwrap_or_else(|| json!({})));
                    parts.push(json!({ "functionCall": call }));
                    let result = parts_of(c.get("result").unwrap_or(&Value::Null));
                    results.extend(
                        result.into_iter().filter(|p| response_id(p).is_none_or(|id| !sent_by_user.contains(&id))),
                    );
                }
                if !parts.is_empty() {
                    out.push(json!({"role": "model", "parts": parts}));
                }
                if !results.is_empty() {
                    out.push(json!({"role": "user", "parts": results}));
                }
            }
            _ => {}
        }
    }
    out
}

/// A `PartListUnion` as parts: a string is one text part; empty text is left out.
fn parts_of(v: &Value) -> Vec<Value> {
    let text_part = |s: &str| (!s.is_empty()).then(|| json!({"text": s}));
    match v {
        Value::String(s) => text_part(s).into_iter().collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => text_part(s),
                Value::Object(o) if o.get("text").and_then(Value::as_str) == Some("") && o.len() == 1 => None,
                Value::Object(_) => Some(p.clone()),
                _ => None,
            })
            .collect(),
        Value::Object(_) => vec![v.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(b: &Bytes) -> Vec<Value> {
        serde_json::from_slice::<Value>(b).unwrap()["contents"].as_array().unwrap().clone()
    }

    #[test]
    fn a_shared_history_is_one_request_per_model_entry() {
        let v = json!([
            {"role": "user", "parts": [{"text": "ctx"}]},
            {"role": "user", "parts": [{"text": "fix it"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "read_file", "args": {"file_path": "a"}}, "thoughtSignature": "s"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "read_file", "response": {"output": "x"}}}]},
            {"role": "model", "parts": [{"text": "ok"}]},
            {"role": "model", "parts": [{"text": "more"}]}
        ]);
        let (format, d, t) = shared_history(&v).unwrap();
        assert_eq!((format, d, t.len()), ("gemini-cli", Dialect::Gemini, 3));
        assert_eq!(contents(&t[0]).len(), 2);
        assert_eq!(contents(&t[2]).len(), 5, "adjacent model entries: the second sees the first");
        assert!(shared_history(&json!([{"role": "assistant", "content": "x"}])).is_none());
        assert!(shared_history(&json!([])).is_none());
    }

    #[test]
    fn session_records_rebuild_calls_and_results() {
        let lines = [
            json!({"sessionId": "s", "projectHash": "p", "startTime": "t", "kind": "main"}),
            json!({"$set": {"messages": [{"id": "u0", "type": "user", "content": [{"text": "<session_context>"}]}]}}),
            json!({"id": "u1", "type": "user", "content": [{"text": "read a"}]}),
            json!({"id": "g1", "type": "gemini", "content": "", "toolCalls": [{"id": "read_file_1", "name": "read_file", "args": {"file_path": "a"}, "status": "executing"}]}),
            // The same message again, now with the result.
            json!({"id": "g1", "type": "gemini", "content": "", "toolCalls": [{"id": "read_file_1", "name": "read_file", "args": {"file_path": "a"}, "status": "success",
                   "result": [{"functionResponse": {"id": "read_file_1", "name": "read_file", "response": {"output": "A"}}}]}]}),
            json!({"id": "i1", "type": "info", "content": "ignored"}),
            json!({"id": "g2", "type": "gemini", "content": "Done."}),
            json!({"id": "u2", "type": "user", "content": [{"text": "wrong way"}]}),
            json!({"id": "g3", "type": "gemini", "content": "undone"}),
            json!({"$rewindTo": "u2"}),
            json!({"$set": {"lastUpdated": "t2"}}),
        ];
        let (format, _, t) = session_records(&lines).unwrap();
        assert_eq!((format, t.len()), ("gemini-cli-session", 2));
        let last = contents(&t[1]);
        let roles: Vec<&str> = last.iter().map(|c| c["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "user", "model", "user"]);
        assert_eq!(last[2]["parts"][0]["functionCall"]["name"], "read_file");
        assert_eq!(last[3]["parts"][0]["functionResponse"]["response"]["output"], "A");
        // 0.61 also records the responses as a user message: they are sent once.
        let mut with_user = lines.to_vec();
        with_user.insert(5, json!({"id": "u9", "type": "user", "content": [{"functionResponse": {"id": "read_file_1", "name": "read_file", "response": {"output": "A"}}}]}));
        let t = session_records(&with_user).unwrap().2;
        let text = String::from_utf8_lossy(&t[1]);
        assert_eq!(text.matches("\"output\":\"A\"").count(), 1, "{text}");
        let legacy = json!({"sessionId": "s", "projectHash": "p", "messages": [lines[2], lines[4], lines[6]]});
        assert_eq!(session(&legacy).unwrap().2.len(), 2);
        assert!(session(&json!({"messages": []})).is_none(), "mini-swe-agent files are not sessions");
    }
}
