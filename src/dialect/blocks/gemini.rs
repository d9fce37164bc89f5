//! The blocks of a Gemini request: `systemInstruction.parts`, then `contents[].parts[]`.
//! `functionResponse.response.output` (or `.error`) is tool output; `functionCall.args` a call.
//!
//! Gemini CLI puts an `id` on each `functionResponse`, but older versions left it off the
//! `functionCall` the model sent, and some entries answer a call further back. A response whose
//! id names no call is paired with the earliest unanswered call of the same name before it.

use std::ops::Range;

use super::{Block, Kind, Loc};
use crate::dialect::json::{self, is_array, is_object, is_string, Obj, Res};

/// A call seen so far, for pairing responses that do not name it.
struct Call {
    name: String,
    id: Option<String>,
    /// The pairing number the call got when it had no id.
    pair: Option<u32>,
    answered: bool,
}

#[derive(Default)]
struct Pairing {
    calls: Vec<Call>,
    next: u32,
}

pub fn locate(b: &[u8], top: &Obj, out: &mut Vec<Block>) -> Res<()> {
    if let Some(r) = top.get("systemInstruction") {
        if is_string(b, &r) {
            out.push(Block::new(Kind::System, Loc::System(0), r));
        } else if is_object(b, &r) {
            if let Some(parts) = Obj::parse(b, r)?.get("parts").filter(|p| is_array(b, p)) {
                for (k, p) in json::items(b, parts)?.into_iter().enumerate() {
                    part(b, p, Kind::System, Loc::System(k as u32), false, &mut Pairing::default(), out)?;
                }
            }
        }
    }
    let Some(contents) = top.get("contents").filter(|r| is_array(b, r)) else {
        return Ok(());
    };
    let mut seen_model = false;
    let mut pairing = Pairing::default();
    for (i, c) in json::items(b, contents)?.into_iter().enumerate() {
        let loc = Loc::Message(i as u32);
        if !is_object(b, &c) {
            out.push(Block::new(Kind::Other, loc, c));
            continue;
        }
        let o = Obj::parse(b, c.clone())?;
        // `function` is the old role of function responses; a missing role is the user's.
        let kind = match o.str("role").as_deref() {
            Some("model") => Kind::AssistantText,
            Some("user" | "function") | None => Kind::UserText,
            Some(_) => Kind::Other,
        };
        let Some(parts) = o.get("parts").filter(|p| is_array(b, p) && kind != Kind::Other) else {
            out.push(Block::new(Kind::Other, loc, c));
            continue;
        };
        let before = out.len();
        for p in json::items(b, parts)? {
            part(b, p, kind, loc, seen_model, &mut pairing, out)?;
        }
        super::mark_model(&mut out[before..], kind == Kind::AssistantText);
        seen_model |= kind == Kind::AssistantText;
    }
    Ok(())
}

/// One part: text (thoughts are left alone), a function call or response, or anything else.
fn part(
    b: &[u8],
    p: Range<usize>,
    kind: Kind,
    loc: Loc,
    seen_model: bool,
    pairing: &mut Pairing,
    out: &mut Vec<Block>,
) -> Res<()> {
    if !is_object(b, &p) {
        out.push(Block::new(Kind::Other, loc, p));
        return Ok(());
    }
    let o = Obj::parse(b, p.clone())?;
    let thought = o.get("thought").is_some_and(|t| &b[t] == b"true");
    if let Some(t) = o.get("text").filter(|t| is_string(b, t) && !thought) {
        let mut blk = Block::new(kind, loc, t);
        super::classify_user(b, &mut blk, seen_model);
        out.push(blk);
    } else if let Some(f) = o.get("functionCall").filter(|f| is_object(b, f)) {
        let fo = Obj::parse(b, f.clone())?;
        let mut blk = Block::new(Kind::ToolCall, loc, fo.get("args").unwrap_or(f));
        blk.tool_name = fo.get("name").filter(|r| is_string(b, r));
        blk.tool_id = fo.get("id").filter(|r| is_string(b, r));
        let id = fo.str("id").map(|s| s.into_owned());
        if id.is_none() {
            blk.pair = Some(pairing.next);
            pairing.next += 1;
        }
        let name = fo.str("name").map(|s| s.into_owned()).unwrap_or_default();
        pairing.calls.push(Call { name, id, pair: blk.pair, answered: false });
        out.push(blk);
    } else if let Some(f) = o.get("functionResponse").filter(|f| is_object(b, f)) {
        let fo = Obj::parse(b, f.clone())?;
        let output = match fo.get("response").filter(|r| is_object(b, r)) {
            Some(r) => {
                let ro = Obj::parse(b, r)?;
                ro.get("output").or_else(|| ro.get("error")).filter(|t| is_string(b, t))
            }
            None => None,
        };
        let Some(text) = output else {
            out.push(Block::new(Kind::Other, loc, p));
            return Ok(());
        };
        let mut blk = Block::new(Kind::ToolOutput, loc, text);
        let id = fo.str("id");
        let name = fo.str("name").unwrap_or_default();
        match pairing.answer(id.as_deref(), &name) {
            Answer::ById => blk.tool_id = fo.get("id").filter(|r| is_string(b, r)),
            Answer::ByPair(n) => blk.pair = Some(n),
            Answer::Unknown => blk.tool_id = fo.get("id").filter(|r| is_string(b, r)),
        }
        out.push(blk);
    } else {
        out.push(Block::new(Kind::Other, loc, p));
    }
    Ok(())
}

enum Answer {
    /// A call with this id was seen.
    ById,
    /// Paired with the id-less call of this number.
    ByPair(u32),
    Unknown,
}

impl Pairing {
    fn answer(&mut self, id: Option<&str>, name: &str) -> Answer {
        if let Some(c) = id.and_then(|id| self.calls.iter_mut().find(|c| c.id.as_deref() == Some(id))) {
            c.answered = true;
            return Answer::ById;
        }
        match self.calls.iter_mut().find(|c| !c.answered && c.pair.is_some() && c.name == name) {
            Some(c) => {
                c.answered = true;
                c.pair.map_or(Answer::Unknown, Answer::ByPair)
            }
            None => Answer::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{locate, Kind};
    use crate::dialect::Dialect;

    #[test]
    fn parts_become_blocks_and_responses_find_their_calls() {
        let body = br#"{"systemInstruction":{"parts":[{"text":"be brief"}]},"contents":[
            {"role":"user","parts":[{"text":"fix it"}]},
            {"role":"model","parts":[{"text":"plan","thought":true},{"functionCall":{"name":"read_file","args":{"file_path":"a.rs"}},"thoughtSignature":"c2ln"},{"functionCall":{"name":"read_file","args":{"file_path":"b.rs"}}}]},
            {"role":"user","parts":[{"functionResponse":{"id":"read_file-1-x","name":"read_file","response":{"output":"A"}}},{"functionResponse":{"id":"read_file-2-y","name":"read_file","response":{"output":"B"}}}]},
            {"role":"model","parts":[{"functionCall":{"id":"c9","name":"run_shell_command","args":{"command":"ls"}}}]},
            {"role":"user","parts":[{"functionResponse":{"id":"c9","name":"run_shell_command","response":{"error":"[Operation Cancelled]"}}},{"inlineData":{"mimeType":"image/png","data":"AAA="}}]}
        ],"tools":[{"functionDeclarations":[{"name":"read_file"}]}]}"#;
        let blocks = locate(Dialect::Gemini, body).unwrap();
        let kinds: Vec<Kind> = blocks.iter().map(|b| b.kind).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            [System, UserText, Other, ToolCall, ToolCall, ToolOutput, ToolOutput, ToolCall, ToolOutput, Other]
        );
        let text = |i: usize| std::str::from_utf8(&body[blocks[i].range.clone()]).unwrap();
        assert_eq!(
            (text(0), text(5), text(6), text(8)),
            ("\"be brief\"", "\"A\"", "\"B\"", "\"[Operation Cancelled]\"")
        );
        // The id-less calls pair with the responses in order; the one with an id by id.
        assert_eq!((blocks[3].pair, blocks[4].pair), (Some(0), Some(1)));
        assert_eq!((blocks[5].pair, blocks[6].pair, blocks[5].tool_id.clone()), (Some(0), Some(1), None));
        assert_eq!(text(7), r#"{"command":"ls"}"#);
        assert_eq!(blocks[8].pair, None);
        assert_eq!(&body[blocks[8].tool_id.clone().unwrap()], b"\"c9\"");
    }
}
