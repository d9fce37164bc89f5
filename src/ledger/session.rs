//! Which conversation a request belongs to, for `report --session`. Clients that name their
//! session are believed (Claude Code's `metadata.user_id`, Codex's `session_id` header and
//! `prompt_cache_key`); otherwise the id is a hash of the conversation's first blocks, which every
//! later turn repeats unchanged. It asks `dialect` for the request's blocks.

use http::HeaderMap;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::dialect::blocks::{self, Kind};
use crate::dialect::json::{self, Obj};
use crate::dialect::Dialect;

/// Headers agents put their conversation id in (Codex CLI sends `session_id`).
const SESSION_HEADERS: [&str; 4] = ["session_id", "session-id", "x-session-id", "x-claude-code-session-id"];
/// Longest id kept; longer ones are hashed.
const MAX_LEN: usize = 64;

pub fn session_id(dialect: Dialect, headers: &HeaderMap, body: &[u8]) -> String {
    from_headers(headers).unwrap_or_else(|| from_body(dialect, body))
}

/// The id a client sent in a header: cheap, so read on the request path.
pub fn from_headers(headers: &HeaderMap) -> Option<String> {
    SESSION_HEADERS.iter().find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()).and_then(clean))
}

/// The id from the body: read by the ledger writer, off the request path (it scans the body).
pub fn from_body(dialect: Dialect, body: &[u8]) -> String {
    named_in_body(body).or_else(|| first_blocks_hash(dialect, body)).unwrap_or_default()
}

fn named_in_body(b: &[u8]) -> Option<String> {
    let top = Obj::parse(b, json::root(b).ok()?).ok()?;
    if let Some(meta) = top.get("metadata").filter(|r| json::is_object(b, r)) {
        let meta = Obj::parse(b, meta).ok()?;
        if let Some(id) = meta.str("user_id").as_deref().and_then(claude_code_session) {
            return Some(id);
        }
        if let Some(id) = meta.str("session_id").as_deref().and_then(clean) {
            return Some(id);
        }
    }
    top.str("prompt_cache_key").as_deref().and_then(clean)
}

/// Claude Code's `metadata.user_id`: `user_<hash>_account_<uuid>_session_<uuid>` in older
/// versions, a JSON string `{"device_id":…,"account_uuid":…,"session_id":…}` in newer ones.
/// Only the session part is kept (the rest identifies the user).
fn claude_code_session(user_id: &str) -> Option<String> {
    let user_id = user_id.trim();
    if user_id.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(user_id).ok()?;
        return v.get("session_id").and_then(|s| s.as_str()).and_then(clean);
    }
    user_id.rsplit_once("_session_").and_then(|(_, s)| clean(s))
}

/// An id safe to store and show: printable, no separators that break tables, bounded length.
fn clean(id: &str) -> Option<String> {
    let id = id.trim();
    if id.is_empty() || !id.bytes().all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\') {
        return None;
    }
    if id.len() <= MAX_LEN {
        Some(id.to_string())
    } else {
        Some(format!("h{:016x}", xxh3_64_with_seed(id.as_bytes(), 1)))
    }
}

/// `h` + xxh3 of the system blocks and the first user text: the opening of the conversation,
/// which every later request of it repeats (text ranges only, so moving `cache_control`
/// markers do not change it).
fn first_blocks_hash(dialect: Dialect, b: &[u8]) -> Option<String> {
    let blocks = blocks::locate(dialect, b).ok()?;
    let first_user = blocks.iter().position(|blk| blk.kind == Kind::UserText);
    let upto = first_user.map(|i| i + 1).unwrap_or(blocks.len().min(2));
    if upto == 0 {
        return None;
    }
    let mut h = 0x746f_6b65_6e66_6f6c;
    for blk in &blocks[..upto] {
        h = xxh3_64_with_seed(b.get(blk.range.clone())?, h);
    }
    Some(format!("h{h:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(dialect: Dialect, headers: &[(&'static str, &str)], body: &str) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        session_id(dialect, &h, body.as_bytes())
    }

    #[test]
    fn claude_code_user_id_both_forms() {
        let legacy =
            r#"{"model":"m","messages":[],"metadata":{"user_id":"user_abc123_account_6f1e_session_9b2c-44aa"}}"#;
        assert_eq!(id(Dialect::Anthropic, &[], legacy), "9b2c-44aa");
        let empty_account = r#"{"metadata":{"user_id":"user_abc_account__session_77e0"},"messages":[]}"#;
        assert_eq!(id(Dialect::Anthropic, &[], empty_account), "77e0");
        let json_form =
            r#"{"metadata":{"user_id":"{\"device_id\":\"d1\",\"account_uuid\":\"\",\"session_id\":\"s-42\"}"}}"#;
        assert_eq!(id(Dialect::Anthropic, &[], json_form), "s-42");
    }

    #[test]
    fn codex_header_then_cache_key() {
        let body = r#"{"model":"gpt-5-codex","prompt_cache_key":"019a-key","input":[]}"#;
        assert_eq!(id(Dialect::OpenaiResponses, &[("session_id", "019a-conv")], body), "019a-conv");
        assert_eq!(id(Dialect::OpenaiResponses, &[], body), "019a-key");
    }

    #[test]
    fn otherwise_the_opening_blocks_are_hashed() {
        let turn1 = r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"fix the bug"}]}"#;
        let turn2 = r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"fix the bug"},
            {"role":"assistant","content":"done"},{"role":"user","content":"thanks"}]}"#;
        let other = r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"add a test"}]}"#;
        let a = id(Dialect::OpenaiChat, &[], turn1);
        assert!(a.starts_with('h') && a.len() == 17, "{a}");
        assert_eq!(a, id(Dialect::OpenaiChat, &[], turn2), "later turns keep the id");
        assert_ne!(a, id(Dialect::OpenaiChat, &[], other));
        // Anthropic: cache_control moving to another part does not change the id.
        let with_cc = r#"{"system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[{"type":"text","text":"go","cache_control":{"type":"ephemeral"}}]}]}"#;
        let without = r#"{"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":[{"type":"text","text":"go"}]},{"role":"assistant","content":"ok"}]}"#;
        assert_eq!(id(Dialect::Anthropic, &[], with_cc), id(Dialect::Anthropic, &[], without));
    }

    #[test]
    fn unusable_ids_are_refused_or_hashed() {
        assert_eq!(clean("a b"), None);
        assert_eq!(clean(""), None);
        assert!(clean(&"x".repeat(200)).unwrap().starts_with('h'));
        assert_eq!(id(Dialect::Anthropic, &[], "{nope"), "");
    }
}
