//! Puts Chat stream pieces in an order the one-block-at-a-time dialects (Anthropic content blocks,
//! Responses output items) can write: everything of one tool call between its start and its end.
//!
//! Chat streams may interleave calls (`index` 0 gets more arguments after `index` 1 started).
//! A tool call stays the open block until its arguments form a whole JSON value; pieces of other
//! blocks that arrive before that are held back and replayed in arrival order once it is whole,
//! or when the turn finishes. The usual stream (one call after the other) is never delayed.

use std::collections::VecDeque;

use super::chat_in::Piece;

/// A piece kept for later: `Piece` with owned text.
enum Held {
    Reasoning(String),
    Text(String),
    ToolStart { slot: usize, id: String, name: String },
    ToolArgs { slot: usize, args: String },
}

impl Held {
    fn of(p: &Piece<'_>) -> Option<Held> {
        Some(match p {
            Piece::Reasoning(t) => Held::Reasoning(t.to_string()),
            Piece::Text(t) => Held::Text(t.to_string()),
            Piece::ToolStart { slot, id, name } => {
                Held::ToolStart { slot: *slot, id: id.clone(), name: name.to_string() }
            }
            Piece::ToolArgs { slot, args } => Held::ToolArgs { slot: *slot, args: args.to_string() },
            _ => return None,
        })
    }

    fn block(&self) -> Block {
        match self {
            Held::Reasoning(_) => Block::Reasoning,
            Held::Text(_) => Block::Text,
            Held::ToolStart { slot, .. } | Held::ToolArgs { slot, .. } => Block::Tool(*slot),
        }
    }

    fn piece(&self) -> Piece<'_> {
        match self {
            Held::Reasoning(t) => Piece::Reasoning(t),
            Held::Text(t) => Piece::Text(t),
            Held::ToolStart { slot, id, name } => Piece::ToolStart { slot: *slot, id: id.clone(), name },
            Held::ToolArgs { slot, args } => Piece::ToolArgs { slot: *slot, args },
        }
    }
}

/// The block content pieces belong to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Reasoning,
    Text,
    Tool(usize),
}

fn block_of(p: &Piece<'_>) -> Option<Block> {
    match p {
        Piece::Reasoning(_) => Some(Block::Reasoning),
        Piece::Text(_) => Some(Block::Text),
        Piece::ToolStart { slot, .. } | Piece::ToolArgs { slot, .. } => Some(Block::Tool(*slot)),
        _ => None,
    }
}

#[derive(Default)]
pub(super) struct Orderer {
    /// The tool call being written and how far its arguments are whole.
    open_tool: Option<(usize, JsonEnd)>,
    /// Tool calls already written (their arguments were whole, or the next block had to start).
    closed_tools: Vec<usize>,
    held: VecDeque<Held>,
}

impl Orderer {
    /// Passes `p` on to `f` now, or holds it back until the open tool call is whole.
    pub fn push(&mut self, p: Piece<'_>, f: &mut impl FnMut(Piece<'_>)) {
        match p {
            Piece::Finish { .. } | Piece::Done => {
                self.release(true, f);
                f(p);
            }
            // Neither opens a block: order does not matter for them.
            Piece::Start { .. } | Piece::Usage(_) | Piece::Error(..) => f(p),
            _ if !self.held.is_empty() => {
                self.held.extend(Held::of(&p));
                self.release(false, f);
            }
            _ => self.pass(p, f),
        }
    }

    /// Writes `p`, unless it starts another block while the open tool call is unfinished.
    fn pass(&mut self, p: Piece<'_>, f: &mut impl FnMut(Piece<'_>)) {
        let Some(block) = block_of(&p) else { return f(p) };
        match (block, &mut self.open_tool) {
            (Block::Tool(slot), Some((open, end))) if slot == *open => {
                if let Piece::ToolArgs { args, .. } = &p {
                    end.feed(args);
                }
                f(p);
            }
            (Block::Tool(slot), _) if self.closed_tools.contains(&slot) => {
                // Its block is closed: a delta now would break the client's event sequence.
                tracing::debug!(slot, "tool-call arguments after the call's JSON was whole; dropped");
            }
            (_, Some((_, end))) if !end.is_whole() => self.held.extend(Held::of(&p)),
            _ => {
                self.close_tool();
                if let Piece::ToolStart { slot, .. } = &p {
                    self.open_tool = Some((*slot, JsonEnd::default()));
                }
                f(p);
            }
        }
    }

    fn close_tool(&mut self) {
        if let Some((open, _)) = self.open_tool.take() {
            self.closed_tools.push(open);
        }
    }

    /// Replays held pieces: first those of the open tool call (they belong to the open block),
    /// then, once it is whole, the next piece in arrival order. With `finished` no more
    /// arguments can come, so an unfinished call is closed to let the next block start.
    fn release(&mut self, finished: bool, f: &mut impl FnMut(Piece<'_>)) {
        loop {
            if let Some((slot, _)) = self.open_tool {
                while let Some(at) = self.held.iter().position(|h| h.block() == Block::Tool(slot)) {
                    if let Some(h) = self.held.remove(at) {
                        self.pass(h.piece(), f);
                    }
                }
            }
            if self.held.is_empty() {
                return;
            }
            match self.open_tool {
                Some((_, end)) if !end.is_whole() && !finished => return,
                Some(_) => self.close_tool(),
                None => {}
            }
            if let Some(h) = self.held.pop_front() {
                self.pass(h.piece(), f);
            }
        }
    }
}

/// Tracks whether streamed text has completed one JSON value (an object or array; tool
/// arguments are objects), reading strings and escapes so braces inside strings do not count.
#[derive(Default, Clone, Copy)]
pub(super) struct JsonEnd {
    depth: u32,
    opened: bool,
    in_string: bool,
    escaped: bool,
}

impl JsonEnd {
    pub fn feed(&mut self, text: &str) {
        for b in text.bytes() {
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    self.opened = true;
                }
                b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
    }

    pub fn is_whole(&self) -> bool {
        self.opened && self.depth == 0 && !self.in_string
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: Vec<Piece<'static>>) -> Vec<String> {
        let mut o = Orderer::default();
        let mut out = Vec::new();
        for p in pieces {
            o.push(p, &mut |p| {
                out.push(match p {
                    Piece::Text(t) => format!("text {t}"),
                    Piece::ToolStart { slot, .. } => format!("start {slot}"),
                    Piece::ToolArgs { slot, args } => format!("args {slot} {args}"),
                    Piece::Finish { .. } => "finish".to_string(),
                    _ => "other".to_string(),
                })
            });
        }
        out
    }

    fn start(slot: usize) -> Piece<'static> {
        Piece::ToolStart { slot, id: format!("c{slot}"), name: "f" }
    }

    fn finish() -> Piece<'static> {
        Piece::Finish { reason: Some("tool_calls"), matched: None, tool_calls: true }
    }

    #[test]
    fn interleaved_arguments_are_regrouped_per_call() {
        let out = run(vec![
            start(0),
            Piece::ToolArgs { slot: 0, args: "{\"a\":" },
            start(1),
            Piece::ToolArgs { slot: 1, args: "{\"b\":2}" },
            Piece::ToolArgs { slot: 0, args: "\"}{\"}" },
            finish(),
        ]);
        assert_eq!(out, ["start 0", "args 0 {\"a\":", "args 0 \"}{\"}", "start 1", "args 1 {\"b\":2}", "finish"]);
    }

    #[test]
    fn calls_one_after_the_other_are_not_delayed() {
        let out = run(vec![
            start(0),
            Piece::ToolArgs { slot: 0, args: "{}" },
            Piece::Text("x"),
            start(1),
            Piece::ToolArgs { slot: 1, args: "{\"k\":[1]}" },
        ]);
        assert_eq!(out, ["start 0", "args 0 {}", "text x", "start 1", "args 1 {\"k\":[1]}"]);
    }

    #[test]
    fn a_call_that_never_closes_is_written_at_finish() {
        let out = run(vec![start(0), start(1), Piece::ToolArgs { slot: 1, args: "{}" }, finish()]);
        assert_eq!(out, ["start 0", "start 1", "args 1 {}", "finish"]);
    }

    #[test]
    fn all_starts_first_then_arguments() {
        let out = run(vec![
            start(0),
            start(1),
            Piece::ToolArgs { slot: 0, args: "{}" },
            Piece::ToolArgs { slot: 1, args: "{}" },
        ]);
        assert_eq!(out, ["start 0", "args 0 {}", "start 1", "args 1 {}"]);
    }

    #[test]
    fn held_arguments_of_the_next_call_keep_their_order() {
        // Call 1 starts from the held pieces while text and its own first piece wait behind.
        let out = run(vec![
            start(0),
            Piece::ToolArgs { slot: 0, args: "{\"a\":" },
            start(1),
            Piece::Text("between"),
            Piece::ToolArgs { slot: 1, args: "{\"b\"" },
            Piece::ToolArgs { slot: 0, args: "1}" },
            Piece::ToolArgs { slot: 1, args: ":2}" },
            finish(),
        ]);
        assert_eq!(
            out,
            [
                "start 0",
                "args 0 {\"a\":",
                "args 0 1}",
                "start 1",
                "args 1 {\"b\"",
                "args 1 :2}",
                "text between",
                "finish"
            ]
        );
    }

    #[test]
    fn json_end_ignores_braces_in_strings() {
        let mut e = JsonEnd::default();
        e.feed(r#"{"s":"}\"{"#);
        assert!(!e.is_whole());
        e.feed(r#""}"#);
        assert!(e.is_whole());
    }
}
