//! Compact tool schemas: JSON-Schema boilerplate a model does not need (`$schema`,
//! `additionalProperties: false`, an empty `required`, a `default` its description already
//! states) goes, and whitespace runs in descriptions become one space. Deterministic: the same
//! tools give the same bytes on every turn, so a prompt cache over them keeps working. Only the
//! schema objects and description strings are rewritten; the rest of the body is spliced as is.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::dialect::fit_parts;
use crate::dialect::json;
use crate::dialect::Dialect;

/// Keys whose value is a map of named subschemas.
const SCHEMA_MAPS: &[&str] = &["properties", "patternProperties", "$defs", "definitions"];
/// Keys whose value is one subschema.
const SCHEMA_ONE: &[&str] = &["items", "additionalProperties", "not", "contains", "additionalItems"];
/// Keys whose value is a list of subschemas.
const SCHEMA_LISTS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];

/// `body` with every tool's schema and description compacted; `None` when nothing changes
/// (or the body cannot be read: fail open).
pub fn compact_tools(dialect: Dialect, body: &[u8]) -> Option<Bytes> {
    let parts = fit_parts::tool_parts(dialect, body).ok()?;
    let mut edits: Vec<(std::ops::Range<usize>, Vec<u8>)> = Vec::new();
    for fit_parts::ToolParts { description, schema } in parts {
        if let Some(r) = description {
            let text = json::decode(body, r.clone()).ok()?;
            let collapsed = collapse_ws(&text);
            if collapsed != text {
                let mut out = Vec::with_capacity(collapsed.len() + 2);
                out.push(b'"');
                json::encode_into(&collapsed, &mut out);
                out.push(b'"');
                edits.push((r, out));
            }
        }
        if let Some(r) = schema {
            let mut v: Value = serde_json::from_slice(body.get(r.clone())?).ok()?;
            if compact_schema(&mut v) {
                edits.push((r, serde_json::to_vec(&v).ok()?));
            }
        }
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for (r, text) in edits {
        out.extend_from_slice(body.get(at..r.start)?);
        out.extend_from_slice(&text);
        at = r.end;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(Bytes::from(out))
}

/// Runs of whitespace become one space; the ends are trimmed.
fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Compacts one schema in place; whether anything changed.
fn compact_schema(v: &mut Value) -> bool {
    let Value::Object(o) = v else { return false };
    let mut changed = false;
    changed |= o.remove("$schema").is_some();
    if o.get("additionalProperties") == Some(&Value::Bool(false)) {
        o.remove("additionalProperties");
        changed = true;
    }
    if o.get("required").and_then(Value::as_array).is_some_and(Vec::is_empty) {
        o.remove("required");
        changed = true;
    }
    if let Some(Value::String(d)) = o.get_mut("description") {
        let c = collapse_ws(d);
        if c != *d {
            *d = c;
            changed = true;
        }
    }
    if default_is_stated(o) {
        o.remove("default");
        changed = true;
    }
    for key in SCHEMA_MAPS {
        if let Some(Value::Object(m)) = o.get_mut(*key) {
            for sub in m.values_mut() {
                changed |= compact_schema(sub);
            }
        }
    }
    for key in SCHEMA_ONE {
        if let Some(sub) = o.get_mut(*key) {
            changed |= compact_schema(sub);
        }
    }
    for key in SCHEMA_LISTS {
        if let Some(Value::Array(list)) = o.get_mut(*key) {
            for sub in list {
                changed |= compact_schema(sub);
            }
        }
    }
    changed
}

/// A `default` the description already gives (`Defaults to 10`, `(default: "auto")`).
fn default_is_stated(o: &Map<String, Value>) -> bool {
    let (Some(d), Some(Value::String(desc))) = (o.get("default"), o.get("description")) else { return false };
    let shown = match d {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return false,
    };
    let lower = desc.to_lowercase();
    lower.contains("default") && lower.contains(&shown.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strict_tools_schema_is_left_as_sent() {
        let body = br#"{"model":"m","tools":[{"type":"function","function":{"name":"f","strict":true,"description":"Does  it.","parameters":{"type":"object","additionalProperties":false,"required":[],"properties":{}}}}],"messages":[]}"#;
        let out = compact_tools(Dialect::OpenaiChat, body).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let f = &v["tools"][0]["function"];
        assert_eq!(f["description"], "Does it.");
        assert_eq!(f["parameters"]["additionalProperties"], false);
        assert_eq!(f["parameters"]["required"], serde_json::json!([]));
    }

    #[test]
    fn boilerplate_goes_and_meaning_stays() {
        let body = br#"{"model":"m","tools":[{"name":"Read","description":"Reads   a file.\n\n  Use it  often.","input_schema":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","additionalProperties":false,"required":["path"],"properties":{"path":{"type":"string","description":"The\n  path"},"limit":{"type":"number","default":2000,"description":"Lines to read (default 2000)"},"opts":{"type":"object","required":[],"additionalProperties":true}}}}],"messages":[]}"#;
        let out = compact_tools(Dialect::Anthropic, body).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let t = &v["tools"][0];
        assert_eq!(t["description"], "Reads a file. Use it often.");
        let s = &t["input_schema"];
        assert!(s.get("$schema").is_none() && s.get("additionalProperties").is_none());
        assert_eq!(s["required"], serde_json::json!(["path"]));
        assert_eq!(s["properties"]["path"]["description"], "The path");
        assert!(s["properties"]["limit"].get("default").is_none());
        assert!(s["properties"]["opts"].get("required").is_none());
        assert_eq!(s["properties"]["opts"]["additionalProperties"], true, "only `false` is boilerplate");
        // Untouched bytes outside the tools stay.
        assert!(out.starts_with(br#"{"model":"m","tools":[{"name":"Read","description":"#));
        assert!(out.ends_with(br#"],"messages":[]}"#));
        // Deterministic, and compacting again changes nothing.
        assert_eq!(compact_tools(Dialect::Anthropic, body).unwrap(), out);
        assert!(compact_tools(Dialect::Anthropic, &out).is_none());
    }

    #[test]
    fn a_default_the_description_does_not_state_stays() {
        let body = br#"{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"n":{"type":"integer","default":5,"description":"How many"}},"$schema":"x"}}}]}"#;
        let out = compact_tools(Dialect::OpenaiChat, body).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["tools"][0]["function"]["parameters"]["properties"]["n"]["default"], 5);
    }
}
