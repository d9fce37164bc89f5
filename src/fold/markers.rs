//! The wording of fold markers: how a marker names the earlier block it points at and the lines
//! there. Markers are short (every byte is paid for on every later turn) but always name the
//! block and the lines, so the model can follow them.

use super::locate::{Kind, Loc};
use super::shapes;
use super::state::Src;

pub fn is_read_tool(name: &str) -> bool {
    matches!(name, "Read" | "read_file" | "view" | "read" | "open" | "cat" | "View" | "str_replace_based_edit_tool")
}

/// How a marker names an earlier block. `short` drops filler words (the part-1 wording had
/// "read in", "output in").
pub fn label(src: &Src, short: bool) -> String {
    let msg = match src.loc {
        Loc::Message(i) => format!("message {i}"),
        Loc::System(_) => "the system prompt".to_string(),
    };
    let sep = if short { " " } else { " in " };
    match src.kind {
        Kind::ToolOutput => match (&src.tool, &src.view) {
            (Some(t), _) if !t.id.is_empty() => match (&t.subject, is_read_tool(&t.name)) {
                (Some(s), true) => format!("{s} read{sep}{}", t.id),
                _ => format!("{} output{sep}{}", t.name, t.id),
            },
            (_, Some(v)) => format!("{v} view in {msg}"),
            (Some(t), None) if short => match &t.command {
                Some(c) => format!("output of `{}` in {msg}", shapes::clip(c, 40)),
                None => format!("tool output in {msg}"),
            },
            _ => format!("tool output in {msg}"),
        },
        Kind::Template => format!("the demonstration in {msg}"),
        Kind::System if matches!(src.loc, Loc::System(_)) => msg,
        Kind::System => format!("system text in {msg}"),
        Kind::UserText => format!("user text in {msg}"),
        Kind::AssistantText => format!("assistant text in {msg}"),
        Kind::ToolCall => match (&src.tool, &src.view) {
            (Some(t), Some(field)) => format!("{field} of {} call {}", t.name, t.id),
            _ => msg,
        },
        Kind::Other => msg,
    }
}

/// Which lines a span marker stands for, here and at the source.
pub struct SpanLines {
    /// Numbers shown on the replaced lines (first, last), when numbered.
    pub here_nums: Option<(i64, i64)>,
    pub len: usize,
    /// Numbers shown on the source lines, when numbered; else their forwarded positions.
    pub src_nums: Option<(i64, i64)>,
    pub src_pos: (u32, u32),
}

/// `[tokenfold: lines 40-112 same as src/a.rs read toolu_01 #a1b2c3]` and its variants. `src`
/// is `None` for a span of the same block ("above").
pub fn span(l: &SpanLines, src: Option<&str>, id: &str, short: bool) -> String {
    let here = match l.here_nums {
        Some((a, b)) => format!("lines {a}-{b}"),
        None => format!("{} lines", l.len),
    };
    let there = match l.src_nums {
        Some((a, b)) => format!("lines {a}-{b}"),
        None => format!("lines {}-{}", l.src_pos.0, l.src_pos.1),
    };
    match (src, short) {
        (None, _) => format!("[tokenfold: {here} same as {there} above #{id}]"),
        // Same numbers on both sides need saying once.
        (Some(s), true) if l.here_nums.is_some() && l.here_nums == l.src_nums => {
            format!("[tokenfold: {here} same as {s} #{id}]")
        }
        (Some(s), true) => format!("[tokenfold: {here} same as {there} of {s} #{id}]"),
        (Some(s), false) => format!("[tokenfold: {here} same as {s} ({there}) #{id}]"),
    }
}

/// A whole block identical to an earlier one.
pub fn whole(what: &str, src: &str, id: &str, short: bool) -> String {
    if short {
        format!("[tokenfold: same as {src} #{id}]")
    } else {
        format!("[tokenfold: {what} same as {src} #{id}]")
    }
}

pub fn reminder(src: &str, id: &str) -> String {
    format!("[tokenfold: system-reminder same as in {src} #{id}]")
}

/// Short content id of removed text (blake3), so that a marker can be checked and expanded.
pub fn content_id(s: &str) -> String {
    let h = blake3::hash(s.as_bytes());
    h.to_hex().as_str().get(..6).unwrap_or("").to_string()
}
