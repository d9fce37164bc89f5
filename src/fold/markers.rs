//! The wording of fold markers: how a marker names the earlier block it points at and the lines
//! there. Markers are short (every byte is paid for on every later turn) but always name the
//! block and the lines, so the model can follow them.

use super::state::{Src, ToolInfo};
use crate::dialect::blocks::{Kind, Loc};

pub fn is_read_tool(name: &str) -> bool {
    matches!(
        name,
        "Read"
            | "read_file"
            | "read_many_files"
            | "view"
            | "read"
            | "open"
            | "cat"
            | "View"
            | "str_replace_based_edit_tool"
    )
}

/// How a marker names an earlier block. `short` is the compact wording (ids cut to a prefix that
/// is unique among the calls seen so far, fewer filler words); off, the part-1 wording.
pub fn label(src: &Src, short: bool, ids: &Ids) -> String {
    let msg = match src.loc {
        Loc::Message(i) => format!("message {i}"),
        Loc::System(_) => "the system prompt".to_string(),
    };
    let (sep, call) = if short { (" ", " ") } else { (" in ", " call ") };
    let id = |t: &ToolInfo| if short { ids.short(&t.id) } else { t.id.clone() };
    match src.kind {
        Kind::ToolOutput => match (&src.tool, &src.view) {
            (Some(t), _) if !t.id.is_empty() => match (&t.subject, is_read_tool(&t.name)) {
                // The id names the read; the file name is enough to say what it was.
                (Some(s), true) if short => format!("{} read {}", s.rsplit('/').next().unwrap_or(s), id(t)),
                (Some(s), true) => format!("{s} read{sep}{}", id(t)),
                _ => format!("{} output{sep}{}", t.name, id(t)),
            },
            (_, Some(v)) => format!("{v} view in {msg}"),
            _ => format!("tool output in {msg}"),
        },
        Kind::Template => format!("the demonstration in {msg}"),
        Kind::System if matches!(src.loc, Loc::System(_)) => msg,
        Kind::System => format!("system text in {msg}"),
        Kind::UserText => format!("user text in {msg}"),
        Kind::AssistantText => format!("assistant text in {msg}"),
        Kind::ToolCall => match (&src.tool, &src.view) {
            (Some(t), Some(field)) => format!("{field} of {}{call}{}", t.name, id(t)),
            _ => msg,
        },
        Kind::Other => msg,
    }
}

/// The call ids seen so far, to cut an id to its shortest unique prefix.
pub struct Ids<'a>(pub &'a std::collections::HashMap<String, std::sync::Arc<ToolInfo>>);

impl Ids<'_> {
    /// `toolu_013N7awXXv51SY4TWyUvUHYd` -> `toolu_013N7a…`: at least 6 characters after the type
    /// prefix, more while another call seen so far shares the prefix. Short ids stay whole.
    pub fn short(&self, id: &str) -> String {
        let head = id.rfind('_').map_or(0, |k| k + 1);
        let mut end = head + 6;
        while end < id.len() && id.is_char_boundary(end) {
            let prefix = &id[..end];
            if !self.0.keys().any(|k| k != id && k.starts_with(prefix)) {
                break;
            }
            end += 1;
        }
        if end + 2 >= id.len() || !id.is_char_boundary(end) {
            return id.to_string();
        }
        format!("{}…", &id[..end])
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

/// Short content id of removed text (blake3 hex), so that a marker can be checked and expanded:
/// 4 hex digits in the compact wording (hex costs about a token per character), else 6.
pub fn content_id(s: &str, short: bool) -> String {
    let h = blake3::hash(s.as_bytes());
    h.to_hex().as_str().get(..if short { 4 } else { 6 }).unwrap_or("").to_string()
}
