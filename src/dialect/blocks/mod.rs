//! Finds every text-bearing block of a request in the raw JSON, per dialect, with its byte range:
//! what folding, clearing and the ledger's session id read. Wire field names of request bodies
//! are spelled here.

use std::ops::Range;

mod gemini;
mod user_shape;

use super::json::{self, is_array, is_object, is_string, Obj, Res};
use super::Dialect;
use user_shape::UserShape;

/// What a block is, which decides whether folding may touch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// System prompt text (top-level or a `system`/`developer` message).
    System,
    /// Text a person typed (or the agent's own task text): never rewritten, except repeated
    /// `<system-reminder>` segments inside it.
    UserText,
    AssistantText,
    /// A tool call's arguments (raw JSON), never rewritten.
    ToolCall,
    /// Output of a tool, including tool output that an agent sends as a user message.
    ToolOutput,
    /// Text an agent generated from a template and sends as a user message (SWE-agent's
    /// demonstration): not typed by a person, not command output.
    Template,
    /// Images, thinking, unknown shapes: hashed for the prefix chain, never touched.
    Other,
}

/// Where a block sits in the request, for markers that point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// The top-level system prompt / instructions, part `k`.
    System(u32),
    /// `messages[i]` / `input[i]`.
    Message(u32),
}

#[derive(Debug, Clone)]
pub struct Block {
    pub kind: Kind,
    pub loc: Loc,
    /// The JSON value range: a string (quotes included) for text blocks, the raw value otherwise.
    pub range: Range<usize>,
    /// Tool call id (for calls and outputs).
    pub tool_id: Option<Range<usize>>,
    /// Tool name (calls only): range of the JSON string.
    pub tool_name: Option<Range<usize>>,
    /// The output was recognised in a user message (SWE-agent, mini-swe-agent, OpenHands, Aider).
    pub user_shaped: bool,
    /// A call and its output paired by position when the request names no id for them (Gemini
    /// function calls): the same number on both.
    pub pair: Option<u32>,
    /// Part of a message (or Responses item) the model wrote: assistant text, tool calls,
    /// thinking and reasoning. The first such block after others starts a model turn, i.e. ends
    /// the request an earlier turn sent.
    pub from_model: bool,
}

impl Block {
    pub(super) fn new(kind: Kind, loc: Loc, range: Range<usize>) -> Block {
        Block { kind, loc, range, tool_id: None, tool_name: None, user_shaped: false, pair: None, from_model: false }
    }

    /// Text blocks are JSON strings whose contents may be rewritten.
    pub fn is_text(&self) -> bool {
        !matches!(self.kind, Kind::ToolCall | Kind::Other)
    }
}

/// Locates the blocks of `body` in request order (system first, then messages).
pub fn locate(dialect: Dialect, b: &[u8]) -> Res<Vec<Block>> {
    json::with_index(b, || locate_indexed(dialect, b))
}

fn locate_indexed(dialect: Dialect, b: &[u8]) -> Res<Vec<Block>> {
    let top = Obj::parse(b, json::root(b)?)?;
    let mut out = Vec::new();
    match dialect {
        Dialect::Anthropic => {
            if let Some(r) = top.get("system") {
                system_value(b, r, &mut out)?;
            }
            if let Some(r) = top.get("messages") {
                let mut seen_assistant = false;
                for (i, m) in json::items(b, r)?.into_iter().enumerate() {
                    let before = out.len();
                    let model = anthropic_message(b, m, Loc::Message(i as u32), &mut seen_assistant, &mut out)?;
                    mark_model(&mut out[before..], model);
                }
            }
        }
        Dialect::OpenaiChat => {
            if let Some(r) = top.get("messages") {
                let mut seen_assistant = false;
                for (i, m) in json::items(b, r)?.into_iter().enumerate() {
                    let before = out.len();
                    let model = chat_message(b, m, Loc::Message(i as u32), &mut seen_assistant, &mut out)?;
                    mark_model(&mut out[before..], model);
                }
            }
        }
        Dialect::OpenaiResponses => {
            if let Some(r) = top.get("instructions") {
                system_value(b, r, &mut out)?;
            }
            if let Some(r) = top.get("input") {
                if is_string(b, &r) {
                    out.push(Block::new(Kind::UserText, Loc::Message(0), r));
                } else if is_array(b, &r) {
                    let mut seen_assistant = false;
                    for (i, it) in json::items(b, r)?.into_iter().enumerate() {
                        let before = out.len();
                        let model = responses_item(b, it, Loc::Message(i as u32), &mut seen_assistant, &mut out)?;
                        mark_model(&mut out[before..], model);
                    }
                }
            }
        }
        Dialect::Gemini => gemini::locate(b, &top, &mut out)?,
    }
    Ok(out)
}

/// Notes whether the model wrote these blocks (all of one message or item).
pub(super) fn mark_model(blocks: &mut [Block], model: bool) {
    for blk in blocks {
        blk.from_model = model;
    }
}

fn system_value(b: &[u8], r: Range<usize>, out: &mut Vec<Block>) -> Res<()> {
    if is_string(b, &r) {
        out.push(Block::new(Kind::System, Loc::System(0), r));
    } else if is_array(b, &r) {
        for (k, p) in json::items(b, r)?.into_iter().enumerate() {
            text_part(b, p, Kind::System, Loc::System(k as u32), out)?;
        }
    }
    Ok(())
}

/// A content part that is text (`text`, `input_text`, `output_text`) or anything else.
fn text_part(b: &[u8], p: Range<usize>, kind: Kind, loc: Loc, out: &mut Vec<Block>) -> Res<()> {
    if is_object(b, &p) {
        let o = Obj::parse(b, p.clone())?;
        let ty = o.str("type");
        let is_text = matches!(ty.as_deref(), Some("text" | "input_text" | "output_text") | None);
        if let (true, Some(t)) = (is_text, o.get("text")) {
            if is_string(b, &t) {
                out.push(Block::new(kind, loc, t));
                return Ok(());
            }
        }
    } else if is_string(b, &p) {
        out.push(Block::new(kind, loc, p));
        return Ok(());
    }
    out.push(Block::new(Kind::Other, loc, p));
    Ok(())
}

fn role_kind(role: Option<&str>) -> Kind {
    match role {
        Some("system" | "developer") => Kind::System,
        Some("assistant") => Kind::AssistantText,
        Some("user") => Kind::UserText,
        _ => Kind::Other,
    }
}

fn anthropic_message(
    b: &[u8],
    m: Range<usize>,
    loc: Loc,
    seen_assistant: &mut bool,
    out: &mut Vec<Block>,
) -> Res<bool> {
    if !is_object(b, &m) {
        out.push(Block::new(Kind::Other, loc, m));
        return Ok(false);
    }
    let o = Obj::parse(b, m.clone())?;
    let kind = role_kind(o.str("role").as_deref());
    let seen = *seen_assistant;
    let model = kind == Kind::AssistantText;
    if model {
        *seen_assistant = true;
    }
    let Some(c) = o.get("content") else {
        return Ok(model);
    };
    if kind == Kind::Other {
        out.push(Block::new(Kind::Other, loc, c));
        return Ok(model);
    }
    if is_string(b, &c) {
        let mut blk = Block::new(kind, loc, c);
        classify_user(b, &mut blk, seen);
        out.push(blk);
        return Ok(model);
    }
    if !is_array(b, &c) {
        out.push(Block::new(Kind::Other, loc, c));
        return Ok(model);
    }
    for p in json::items(b, c)? {
        if !is_object(b, &p) {
            out.push(Block::new(Kind::Other, loc, p));
            continue;
        }
        let po = Obj::parse(b, p.clone())?;
        match po.str("type").as_deref() {
            Some("text") => {
                let before = out.len();
                text_part(b, p, kind, loc, out)?;
                for blk in &mut out[before..] {
                    classify_user(b, blk, seen);
                }
            }
            Some("tool_use" | "server_tool_use") => {
                let mut blk = Block::new(Kind::ToolCall, loc, po.get("input").unwrap_or(p));
                blk.tool_id = po.get("id").filter(|r| is_string(b, r));
                blk.tool_name = po.get("name").filter(|r| is_string(b, r));
                out.push(blk);
            }
            Some("tool_result") => {
                let id = po.get("tool_use_id").filter(|r| is_string(b, r));
                match po.get("content") {
                    Some(r) if is_string(b, &r) => out.push(tool_output(r, loc, id)),
                    Some(r) if is_array(b, &r) => {
                        for q in json::items(b, r)? {
                            let before = out.len();
                            text_part(b, q, Kind::ToolOutput, loc, out)?;
                            for blk in &mut out[before..] {
                                blk.tool_id = id.clone();
                            }
                        }
                    }
                    _ => out.push(Block::new(Kind::Other, loc, p)),
                }
            }
            _ => out.push(Block::new(Kind::Other, loc, p)),
        }
    }
    Ok(model)
}

fn tool_output(r: Range<usize>, loc: Loc, id: Option<Range<usize>>) -> Block {
    let mut blk = Block::new(Kind::ToolOutput, loc, r);
    blk.tool_id = id;
    blk
}

/// Content that is a string or an array of text parts.
fn content(b: &[u8], c: Range<usize>, kind: Kind, loc: Loc, out: &mut Vec<Block>) -> Res<()> {
    if is_string(b, &c) {
        out.push(Block::new(kind, loc, c));
    } else if is_array(b, &c) {
        for p in json::items(b, c)? {
            text_part(b, p, kind, loc, out)?;
        }
    } else if &b[c.clone()] != b"null" {
        out.push(Block::new(Kind::Other, loc, c));
    }
    Ok(())
}

fn chat_message(b: &[u8], m: Range<usize>, loc: Loc, seen_assistant: &mut bool, out: &mut Vec<Block>) -> Res<bool> {
    if !is_object(b, &m) {
        out.push(Block::new(Kind::Other, loc, m));
        return Ok(false);
    }
    let o = Obj::parse(b, m.clone())?;
    let role = o.str("role");
    let c = o.get("content");
    match role.as_deref() {
        Some("tool" | "function") => {
            let id = o.get("tool_call_id").filter(|r| is_string(b, r));
            if let Some(c) = c {
                let before = out.len();
                content(b, c, Kind::ToolOutput, loc, out)?;
                for blk in &mut out[before..] {
                    blk.tool_id = id.clone();
                }
            }
        }
        Some("user") => {
            if let Some(c) = c {
                let before = out.len();
                content(b, c, Kind::UserText, loc, out)?;
                for blk in &mut out[before..] {
                    classify_user(b, blk, *seen_assistant);
                }
            }
        }
        Some("assistant") => {
            *seen_assistant = true;
            if let Some(c) = c {
                content(b, c, Kind::AssistantText, loc, out)?;
            }
            if let Some(tc) = o.get("tool_calls").filter(|r| is_array(b, r)) {
                for call in json::items(b, tc)? {
                    out.push(chat_tool_call(b, call, loc)?);
                }
            }
        }
        r => {
            if let Some(c) = c {
                content(b, c, role_kind(r), loc, out)?;
            }
        }
    }
    Ok(role.as_deref() == Some("assistant"))
}

/// Recognises tool output and template text that an agent sends as a user message.
pub(super) fn classify_user(b: &[u8], blk: &mut Block, seen_assistant: bool) {
    if blk.kind != Kind::UserText {
        return;
    }
    let kind = match user_shape::user_shape(&b[blk.range.clone()], seen_assistant) {
        UserShape::Typed => return,
        UserShape::ToolOutput => Kind::ToolOutput,
        UserShape::Template => Kind::Template,
    };
    blk.kind = kind;
    blk.user_shaped = true;
}

fn chat_tool_call(b: &[u8], call: Range<usize>, loc: Loc) -> Res<Block> {
    let mut blk = Block::new(Kind::ToolCall, loc, call.clone());
    if is_object(b, &call) {
        let o = Obj::parse(b, call)?;
        blk.tool_id = o.get("id").filter(|r| is_string(b, r));
        if let Some(f) = o.get("function").filter(|r| is_object(b, r)) {
            let fo = Obj::parse(b, f)?;
            blk.tool_name = fo.get("name").filter(|r| is_string(b, r));
            if let Some(a) = fo.get("arguments") {
                blk.range = a;
            }
        }
    }
    Ok(blk)
}

fn responses_item(b: &[u8], it: Range<usize>, loc: Loc, seen_assistant: &mut bool, out: &mut Vec<Block>) -> Res<bool> {
    if !is_object(b, &it) {
        out.push(Block::new(Kind::Other, loc, it));
        return Ok(false);
    }
    let o = Obj::parse(b, it.clone())?;
    let id = o.get("call_id").filter(|r| is_string(b, r));
    let ty = o.str("type");
    let model = match ty.as_deref() {
        Some("message") | None => o.str("role").as_deref() == Some("assistant"),
        Some(t) => RESPONSES_MODEL_ITEMS.contains(&t),
    };
    match ty.as_deref() {
        Some("message") | None => {
            let role = o.str("role");
            let kind = role_kind(role.as_deref());
            if kind == Kind::AssistantText {
                *seen_assistant = true;
            }
            match (kind, o.get("content")) {
                (Kind::Other, _) | (_, None) => out.push(Block::new(Kind::Other, loc, it)),
                (kind, Some(c)) => {
                    let before = out.len();
                    content(b, c, kind, loc, out)?;
                    for blk in &mut out[before..] {
                        classify_user(b, blk, *seen_assistant);
                    }
                }
            }
        }
        Some(t @ ("function_call" | "custom_tool_call" | "local_shell_call")) => {
            *seen_assistant = true;
            let args = if t == "function_call" {
                o.get("arguments")
            } else if t == "custom_tool_call" {
                o.get("input")
            } else {
                o.get("action")
            };
            let mut blk = Block::new(Kind::ToolCall, loc, args.unwrap_or(it));
            blk.tool_id = id;
            blk.tool_name = o.get("name").filter(|r| is_string(b, r));
            out.push(blk);
        }
        Some("function_call_output" | "custom_tool_call_output" | "local_shell_call_output") => match o.get("output") {
            Some(r) => {
                let before = out.len();
                content(b, r, Kind::ToolOutput, loc, out)?;
                for blk in &mut out[before..] {
                    blk.tool_id = id.clone();
                }
            }
            None => out.push(Block::new(Kind::Other, loc, it)),
        },
        _ => out.push(Block::new(Kind::Other, loc, it)),
    }
    Ok(model)
}

/// Responses item types the model writes (besides assistant messages).
const RESPONSES_MODEL_ITEMS: [&str; 8] = [
    "reasoning",
    "function_call",
    "custom_tool_call",
    "local_shell_call",
    "web_search_call",
    "file_search_call",
    "computer_call",
    "mcp_call",
];
