//! Small readers over `serde_json::Value` so the translators read like the wire formats.

use serde_json::{Map, Value};

pub(crate) trait Get {
    fn str_of(&self, key: &str) -> Option<&str>;
    /// The array at `key`, or an empty slice when absent or not an array.
    fn arr_of(&self, key: &str) -> &[Value];
    fn u64_of(&self, key: &str) -> Option<u64>;
    fn bool_of(&self, key: &str) -> bool;
    /// The value at `key` unless absent or null.
    fn some(&self, key: &str) -> Option<&Value>;
}

impl Get for Value {
    fn str_of(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    fn arr_of(&self, key: &str) -> &[Value] {
        self.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }

    fn u64_of(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    fn bool_of(&self, key: &str) -> bool {
        self.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    fn some(&self, key: &str) -> Option<&Value> {
        self.get(key).filter(|v| !v.is_null())
    }
}

/// Copies `key` from `from` into `to` under `as_key` when present and not null.
pub(crate) fn copy(from: &Value, key: &str, to: &mut Map<String, Value>, as_key: &str) {
    if let Some(v) = from.some(key) {
        to.insert(as_key.to_string(), v.clone());
    }
}

/// Text of a content value that is either a string or an array of parts carrying `text`
/// (any part type with a string `text`), joined by blank lines.
pub(crate) fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => join(parts.iter().filter_map(|p| p.str_of("text")).filter(|t| !t.is_empty())),
        _ => String::new(),
    }
}

/// Joins text pieces with a blank line between them.
pub(crate) fn join<'a>(pieces: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for p in pieces {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(p);
    }
    out
}

/// `serde_json::to_string` for values that cannot fail to serialize.
pub(crate) fn to_string(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A tool definition `{name, description?, <out_key>: schema}` from one whose schema is at
/// `in_key`; a missing schema becomes an empty object schema.
pub(crate) fn tool_def(src: &Value, in_key: &str, out_key: &str) -> Option<Map<String, Value>> {
    let mut def = Map::new();
    def.insert("name".into(), Value::String(src.str_of("name")?.to_string()));
    copy(src, "description", &mut def, "description");
    let schema = src.some(in_key).cloned().unwrap_or_else(|| serde_json::json!({ "type": "object", "properties": {} }));
    def.insert(out_key.into(), schema);
    Some(def)
}
