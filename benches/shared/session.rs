//! What the fold, filters and clear benches share: a Claude Code-shaped request around their
//! generated sessions.

use bytes::Bytes;
use serde_json::{json, Value};

/// An Anthropic Messages request carrying `msgs`.
pub fn body(msgs: &[Value]) -> Bytes {
    Bytes::from(
        json!({"model": "claude", "max_tokens": 32000, "system": "You are a coding agent.", "messages": msgs})
            .to_string(),
    )
}
