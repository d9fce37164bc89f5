//! JSON arrays of objects (API / MCP tool output): the keys once, then one compact row per
//! object. Values are copied as raw JSON text (whitespace outside strings removed), so numbers
//! and escapes stay exactly as sent. A huge array keeps its first and last rows and every row with
//! an error-like value. Outputs with a protected line are left alone: JSON cannot keep a line in place.

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{is_error_line, Cut, Input, Level};

/// One object, its members in the order written.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

struct Rows(Vec<Members>);

impl<'de> Deserialize<'de> for Rows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rows;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Rows, A::Error> {
                let mut out = Vec::new();
                while let Some(m) = s.next_element::<Members>()? {
                    out.push(m);
                }
                Ok(Rows(out))
            }
        }
        d.deserialize_seq(V)
    }
}

fn parse(text: &str) -> Option<Vec<Members>> {
    let t = text.trim();
    if !t.starts_with('[') || !t.ends_with(']') {
        return None;
    }
    serde_json::from_str::<Rows>(t).ok().map(|r| r.0).filter(|r| r.len() >= 3)
}

pub fn detect(inp: &Input) -> bool {
    let t = inp.text.trim_start();
    t.starts_with('[') && t.contains('{') && parse(inp.text).is_some()
}

/// Raw JSON without whitespace outside strings.
fn compact(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_str = false;
    let mut esc = false;
    for c in raw.chars() {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

pub fn compress(inp: &Input) -> Option<(Vec<Cut>, String)> {
    if (0..inp.len()).any(|i| inp.protect.any(i)) {
        return None;
    }
    let rows = parse(inp.text)?;
    // Columns: every key in first-seen order; rows that miss a key or add one print as objects.
    let mut cols: Vec<&str> = Vec::new();
    for r in &rows {
        for (k, _) in &r.0 {
            if !cols.contains(&k.as_str()) {
                cols.push(k);
            }
        }
    }
    let regular =
        rows.iter().filter(|r| r.0.len() == cols.len() && r.0.iter().zip(&cols).all(|((k, _), c)| k == c)).count();
    if regular * 10 < rows.len() * 8 || cols.is_empty() {
        return None;
    }
    let render = |r: &Members| -> String {
        let ordered = r.0.len() == cols.len() && r.0.iter().zip(&cols).all(|((k, _), c)| k == c);
        if ordered {
            let vals: Vec<String> = r.0.iter().map(|(_, v)| compact(v.get())).collect();
            format!("[{}]", vals.join(","))
        } else {
            let kv: Vec<String> =
                r.0.iter()
                    .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap_or_default(), compact(v.get())))
                    .collect();
            format!("{{{}}}", kv.join(","))
        }
    };
    let header: Vec<String> = cols.iter().map(|c| serde_json::to_string(c).unwrap_or_default()).collect();
    let mut out = vec![format!(
        "[tokenfold: JSON array of {} objects as rows of [{}]; objects with other keys as written]",
        rows.len(),
        header.join(",")
    )];
    let huge = if inp.level == Level::Aggressive { 60 } else { 300 };
    let (first, last) = if inp.level == Level::Aggressive { (10, 5) } else { (40, 20) };
    let mut skipped = 0;
    for (i, r) in rows.iter().enumerate() {
        let keep = rows.len() <= huge
            || i < first
            || i + last >= rows.len()
            || r.0.iter().any(|(_, v)| is_error_line(v.get()));
        if keep {
            if skipped > 0 {
                out.push(format!("[tokenfold: {skipped} rows]"));
                skipped = 0;
            }
            out.push(render(r));
        } else {
            skipped += 1;
        }
    }
    if skipped > 0 {
        out.push(format!("[tokenfold: {skipped} rows]"));
    }
    let what = if rows.len() > huge { "JSON rows (middle rows folded)" } else { "JSON keys written once" };
    Some((vec![Cut { lines: 0..inp.len(), with: out.join("\n") }], what.to_string()))
}
