//! What the Gemini translators share: where a thought signature rides when the client is not a
//! Gemini client, finish reasons both ways, and Gemini's schema spelling.
//!
//! Gemini puts a `thoughtSignature` on the first function call of each step, and Gemini 3 refuses
//! a history whose current turn lacks it. Chat, Anthropic and Responses clients have no field for
//! it, but each echoes a call's id verbatim (its result must name it): the signature travels in
//! the id, after `SIGNATURE_MARK`, and is taken out again, unchanged, when the history goes back
//! to Gemini. A signature in standard base64 (what Gemini sends) is written URL-safe there, so
//! the id stays within `[A-Za-z0-9_-]` (Anthropic's pattern for tool ids, should a route fall
//! back to it); any other signature follows `RAW_MARK` as it is.

use serde_json::{Map, Value};

/// Separates a call id from its thought signature in URL-safe base64 without padding.
const SIGNATURE_MARK: &str = "__thought__";
/// Separates a call id from a signature that is not standard base64, kept as it is.
const RAW_MARK: &str = "__thoughtraw__";
/// Ids made up for calls Gemini gave none; they are not sent back to Gemini.
const MADE_UP: &str = "gmcall_";
/// Google's documented stand-in for a call that has no signature of Gemini's own (the history
/// came from another model): Gemini 3 then skips its signature check.
pub(crate) const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// The id a non-Gemini client sees for a Gemini call: Gemini's own id, else one made from
/// `response_id` and the call's position; with the call's signature appended.
pub(crate) fn client_call_id(
    gemini_id: Option<&str>,
    response_id: &str,
    index: usize,
    signature: Option<&str>,
) -> String {
    let mut id = match gemini_id.filter(|i| !i.is_empty()) {
        Some(i) => i.to_string(),
        None => format!("{MADE_UP}{}_{index}", sanitize(response_id)),
    };
    if let Some(sig) = signature.filter(|s| !s.is_empty()) {
        if is_standard_base64(sig) {
            id.push_str(SIGNATURE_MARK);
            id.extend(sig.trim_end_matches('=').chars().map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            }));
        } else {
            id.push_str(RAW_MARK);
            id.push_str(sig);
        }
    }
    id
}

/// A client's call id read back: the id to give Gemini (none for a made-up one) and the
/// signature it carried, exactly as Gemini gave it.
pub(crate) fn split_call_id(id: &str) -> (Option<&str>, Option<String>) {
    let (base, sig) = if let Some((b, raw)) = id.split_once(RAW_MARK) {
        (b, Some(raw.to_string()))
    } else if let Some((b, safe)) = id.split_once(SIGNATURE_MARK) {
        let mut sig: String = safe
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        while !sig.len().is_multiple_of(4) {
            sig.push('=');
        }
        (b, Some(sig))
    } else {
        (id, None)
    };
    let base = Some(base).filter(|b| !b.is_empty() && !b.starts_with(MADE_UP));
    (base, sig.filter(|s| !s.is_empty()))
}

/// Padded standard base64: the alphabet, `=` only at the end (at most two), a multiple of four
/// long. Exactly these survive the URL-safe spelling unchanged.
fn is_standard_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - body.len() <= 2
        && !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Keeps a response id usable inside a call id (clients restrict the characters of ids).
fn sanitize(id: &str) -> String {
    let clean: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').take(40).collect();
    if clean.is_empty() {
        "r".to_string()
    } else {
        clean
    }
}

/// Chat `finish_reason` for a Gemini `finishReason`.
pub(crate) fn chat_finish(reason: Option<&str>, has_calls: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some("SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY") => {
            "content_filter"
        }
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

/// Gemini `finishReason` for a Chat `finish_reason` (a turn ending in calls is `STOP` there).
pub(crate) fn gemini_finish(reason: Option<&str>) -> &'static str {
    match reason {
        Some("length") => "MAX_TOKENS",
        Some("content_filter") => "SAFETY",
        _ => "STOP",
    }
}

/// A Gemini schema as JSON Schema: Gemini spells types in capitals (`OBJECT`, `STRING`), in its
/// OpenAPI-style `parameters` and often in `parametersJsonSchema` too; other dialects want them
/// lower-case.
pub(crate) fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                let v = match (k.as_str(), v) {
                    ("type", Value::String(t)) => Value::String(t.to_ascii_lowercase()),
                    ("type", Value::Array(ts)) => Value::Array(
                        ts.iter()
                            .map(|t| t.as_str().map(|s| Value::String(s.to_ascii_lowercase())).unwrap_or(t.clone()))
                            .collect(),
                    ),
                    // Enum values and defaults are data, not schema.
                    ("enum" | "default" | "const" | "example", v) => v.clone(),
                    (_, v) => json_schema(v),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

/// A thinking budget in tokens as a reasoning effort (Chat, Responses).
pub(crate) fn effort_of_budget(budget: i64) -> Option<&'static str> {
    match budget {
        0 => None,
        b if b < 0 => Some("medium"), // -1: the model decides
        1..=4095 => Some("low"),
        4096..=16383 => Some("medium"),
        _ => Some("high"),
    }
}

/// A reasoning effort as a thinking budget in tokens (the budgets Chat -> Anthropic uses).
pub(crate) fn budget_of_effort(effort: &str) -> Option<u64> {
    match effort {
        "none" => Some(0),
        "minimal" | "low" => Some(2048),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signatures_ride_in_ids_and_come_back_unchanged() {
        let sig = "Cs8BAXLI2nw+/ab=";
        let id = client_call_id(None, "resp-1.x", 2, Some(sig));
        assert_eq!(id, "gmcall_resp-1x_2__thought__Cs8BAXLI2nw-_ab");
        assert_eq!(split_call_id(&id), (None, Some(sig.to_string())));
        let id = client_call_id(Some("fc-9"), "r", 0, Some(sig));
        assert_eq!(split_call_id(&id), (Some("fc-9"), Some(sig.to_string())));
        assert_eq!(split_call_id("toolu_01A"), (Some("toolu_01A"), None));
        assert_eq!(client_call_id(Some("fc-9"), "r", 0, None), "fc-9");
    }

    #[test]
    fn any_signature_comes_back_byte_for_byte() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const CHARS: &[u8] = b"ABCxyz019+/=-_.~ ";
        for _ in 0..5000 {
            let len = 1 + (next() % 24) as usize;
            let sig: String = (0..len).map(|_| CHARS[(next() % CHARS.len() as u64) as usize] as char).collect();
            let id = client_call_id(Some("call_1"), "r", 0, Some(&sig));
            assert_eq!(split_call_id(&id), (Some("call_1"), Some(sig.clone())), "{sig:?} as {id:?}");
            if is_standard_base64(&sig) {
                assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{id}");
            }
        }
    }

    #[test]
    fn schemas_get_lower_case_types_but_data_stays() {
        let s = json!({"type": "OBJECT", "properties": {"type": {"type": "STRING", "enum": ["A", "B"]}, "n": {"type": ["INTEGER", "NULL"]}}, "required": ["type"]});
        let want = json!({"type": "object", "properties": {"type": {"type": "string", "enum": ["A", "B"]}, "n": {"type": ["integer", "null"]}}, "required": ["type"]});
        assert_eq!(json_schema(&s), want);
    }
}
