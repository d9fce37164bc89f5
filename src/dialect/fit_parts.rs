//! The parts of a request fitting may rewrite besides text blocks, located in the raw JSON per
//! dialect: each tool's parameter schema, and the model's old reasoning (Anthropic `thinking`
//! blocks, Responses `reasoning` items, Gemini thought parts) that a target does not need.

use std::ops::Range;

use super::json::{self, is_array, is_object, Obj, Res};
use super::Dialect;

/// The byte ranges of each tool's description (a string) and parameter schema (an object), in
/// request order.
pub fn tool_schemas(dialect: Dialect, b: &[u8]) -> Res<Vec<Range<usize>>> {
    Ok(tool_parts(dialect, b)?.into_iter().filter_map(|t| t.schema).collect())
}

/// Where one tool's description (a string) and parameter schema (an object) are.
pub struct ToolParts {
    pub description: Option<Range<usize>>,
    pub schema: Option<Range<usize>>,
}

/// Each tool's description and schema ranges (either may be absent).
pub fn tool_parts(dialect: Dialect, b: &[u8]) -> Res<Vec<ToolParts>> {
    json::with_index(b, || {
        let top = Obj::parse(b, json::root(b)?)?;
        let mut out = Vec::new();
        let Some(tools) = top.get("tools").filter(|r| is_array(b, r)) else { return Ok(out) };
        for t in json::items(b, tools)? {
            if !is_object(b, &t) {
                continue;
            }
            let tool = Obj::parse(b, t)?;
            let mut push = |o: &Obj, schema_key: &str| {
                let description = o.get("description").filter(|r| json::is_string(b, r));
                // A strict tool's schema is a contract the provider checks (OpenAI's strict mode
                // requires `additionalProperties: false` on every object): left as sent.
                let strict = o.get("strict").is_some_and(|r| b.get(r) == Some(&b"true"[..]));
                let schema = o.get(schema_key).filter(|r| !strict && is_object(b, r));
                if description.is_some() || schema.is_some() {
                    out.push(ToolParts { description, schema });
                }
            };
            match dialect {
                Dialect::Anthropic => push(&tool, "input_schema"),
                // Chat nests the function; Responses has its fields at the top.
                Dialect::OpenaiChat => {
                    if let Some(f) = tool.get("function").filter(|r| is_object(b, r)) {
                        push(&Obj::parse(b, f)?, "parameters");
                    }
                }
                Dialect::OpenaiResponses => push(&tool, "parameters"),
                Dialect::Gemini => {
                    if let Some(decl) = tool.get("functionDeclarations").filter(|r| is_array(b, r)) {
                        for d in json::items(b, decl)? {
                            if is_object(b, &d) {
                                let d = Obj::parse(b, d)?;
                                let key =
                                    if d.get("parameters").is_some() { "parameters" } else { "parametersJsonSchema" };
                                push(&d, key);
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    })
}

/// Byte ranges to delete (each an array element with the comma before or after it) holding
/// the model's reasoning from before its latest message: a target reads only the reasoning of
/// the turn in progress (Anthropic ignores older thinking blocks, and a tool loop needs only
/// the last one). A message left with nothing but reasoning keeps it.
pub fn old_reasoning(dialect: Dialect, b: &[u8]) -> Res<Vec<Range<usize>>> {
    json::with_index(b, || {
        let top = Obj::parse(b, json::root(b)?)?;
        let mut out = Vec::new();
        match dialect {
            Dialect::Anthropic | Dialect::Gemini => {
                let (list, role, model_role, parts) = match dialect {
                    Dialect::Anthropic => ("messages", "role", "assistant", "content"),
                    _ => ("contents", "role", "model", "parts"),
                };
                let Some(msgs) = top.get(list).filter(|r| is_array(b, r)) else { return Ok(out) };
                let items = json::items(b, msgs)?;
                let mut model_msgs = Vec::new();
                for m in items {
                    if is_object(b, &m) {
                        let o = Obj::parse(b, m)?;
                        if o.str(role).as_deref() == Some(model_role) {
                            model_msgs.push(o.get(parts).filter(|r| is_array(b, r)));
                        }
                    }
                }
                model_msgs.pop();
                for content in model_msgs.into_iter().flatten() {
                    let elems = json::items(b, content.clone())?;
                    let drop: Vec<bool> = elems.iter().map(|e| is_reasoning_part(dialect, b, e)).collect::<Res<_>>()?;
                    if drop.iter().all(|&d| d) {
                        continue;
                    }
                    out.extend(element_cuts(b, &elems, &drop));
                }
            }
            Dialect::OpenaiResponses => {
                let Some(input) = top.get("input").filter(|r| is_array(b, r)) else { return Ok(out) };
                let elems = json::items(b, input)?;
                let mut kinds = Vec::with_capacity(elems.len());
                for e in &elems {
                    let o = if is_object(b, e) { Some(Obj::parse(b, e.clone())?) } else { None };
                    kinds.push(o.and_then(|o| o.str("type").map(|t| t.into_owned())));
                }
                // Reasoning after the last user message belongs to the turn in progress.
                let last_user = elems
                    .iter()
                    .zip(&kinds)
                    .rposition(|(e, k)| {
                        k.as_deref() != Some("reasoning")
                            && is_object(b, e)
                            && Obj::parse(b, e.clone()).is_ok_and(|o| o.str("role").as_deref() == Some("user"))
                    })
                    .unwrap_or(0);
                let drop: Vec<bool> =
                    kinds.iter().enumerate().map(|(i, k)| i < last_user && k.as_deref() == Some("reasoning")).collect();
                out.extend(element_cuts(b, &elems, &drop));
            }
            // Chat has no reasoning in its messages' standard shape.
            Dialect::OpenaiChat => {}
        }
        Ok(out)
    })
}

fn is_reasoning_part(dialect: Dialect, b: &[u8], e: &Range<usize>) -> Res<bool> {
    if !is_object(b, e) {
        return Ok(false);
    }
    let o = Obj::parse(b, e.clone())?;
    Ok(match dialect {
        Dialect::Anthropic => matches!(o.str("type").as_deref(), Some("thinking" | "redacted_thinking")),
        _ => o.get("thought").is_some_and(|r| b.get(r) == Some(b"true".as_slice())),
    })
}

/// Deletion ranges for the elements marked in `drop` (not all of them): each with the comma
/// that joins it to a kept neighbour, so the array stays valid JSON.
fn element_cuts(b: &[u8], elems: &[Range<usize>], drop: &[bool]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let Some(first_kept) = drop.iter().position(|&d| !d) else { return out };
    for (i, e) in elems.iter().enumerate() {
        if !drop[i] {
            continue;
        }
        if i < first_kept {
            // Before every kept element: take it and the separator after it, up to the next one.
            out.push(e.start..elems[i + 1].start);
        } else {
            // After a kept element: take the separator before it.
            out.push(json::skip_ws(b, elems[i - 1].end)..e.end);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(b: &str, ranges: &[Range<usize>]) -> String {
        let mut s = b.to_string();
        for r in ranges.iter().rev() {
            s.replace_range(r.clone(), "");
        }
        s
    }

    #[test]
    fn finds_schemas_in_every_dialect() {
        let a = r#"{"tools":[{"name":"Read","input_schema":{"type":"object"}}]}"#;
        let c = r#"{"tools":[{"type":"function","function":{"name":"r","parameters":{"type":"object"}}}]}"#;
        let r = r#"{"tools":[{"type":"function","name":"r","parameters":{"type":"object"}}]}"#;
        let g = r#"{"tools":[{"functionDeclarations":[{"name":"r","parameters":{"type":"object"}}]}]}"#;
        for (d, b) in
            [(Dialect::Anthropic, a), (Dialect::OpenaiChat, c), (Dialect::OpenaiResponses, r), (Dialect::Gemini, g)]
        {
            let found = tool_schemas(d, b.as_bytes()).unwrap();
            assert_eq!(found.len(), 1, "{d:?}");
            assert_eq!(&b[found[0].clone()], r#"{"type":"object"}"#);
        }
    }

    #[test]
    fn old_thinking_goes_and_the_latest_stays() {
        let b = r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"thinking","thinking":"t1","signature":"s"}, {"type":"text","text":"a"},{"type":"redacted_thinking","data":"x"}]},{"role":"user","content":"go"},{"role":"assistant","content":[{"type":"thinking","thinking":"t2","signature":"s"},{"type":"tool_use","id":"t","name":"n","input":{}}]}]}"#;
        let out = cut(b, &old_reasoning(Dialect::Anthropic, b.as_bytes()).unwrap());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["messages"][1]["content"].as_array().unwrap().len(), 1);
        assert_eq!(v["messages"][1]["content"][0]["text"], "a");
        assert_eq!(v["messages"][3]["content"][0]["thinking"], "t2");
    }

    #[test]
    fn old_reasoning_items_go_in_responses() {
        let b = r#"{"input":[{"role":"user","content":"a"},{"type":"reasoning","id":"r1","summary":[]},{"type":"function_call","call_id":"c","name":"n","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"o"},{"role":"user","content":"b"},{"type":"reasoning","id":"r2","summary":[]}]}"#;
        let out = cut(b, &old_reasoning(Dialect::OpenaiResponses, b.as_bytes()).unwrap());
        assert!(!out.contains("\"r1\"") && out.contains("\"r2\""), "{out}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }
}
