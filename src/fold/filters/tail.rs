//! Anything else that is long: the head and the tail stay, the middle folds except its
//! protected lines (errors, locations, summaries) and lines other edits own (`fixed`), which
//! stay in place.

use super::{Cut, Input, Level};

struct Limits {
    /// The output must exceed one of these to be cut.
    min_lines: usize,
    min_bytes: usize,
    /// Head and tail keep up to this many lines and bytes each.
    keep_lines: usize,
    keep_bytes: usize,
}

fn limits(level: Level) -> Limits {
    match level {
        Level::Aggressive => Limits { min_lines: 150, min_bytes: 10_000, keep_lines: 40, keep_bytes: 3_000 },
        _ => Limits { min_lines: 250, min_bytes: 16_000, keep_lines: 100, keep_bytes: 8_000 },
    }
}

pub fn compress(inp: &Input, fixed: &[bool]) -> Option<(Vec<Cut>, String)> {
    let lim = limits(inp.level);
    let n = inp.len();
    if n <= lim.min_lines && inp.text.len() <= lim.min_bytes {
        return None;
    }
    let mut head = 0;
    let mut bytes = 0;
    while head < n && head < lim.keep_lines && bytes + inp.lines[head].len() < lim.keep_bytes {
        bytes += inp.lines[head].len() + 1;
        head += 1;
    }
    let mut tail = n;
    bytes = 0;
    while tail > head && n - tail < lim.keep_lines && bytes + inp.lines[tail - 1].len() < lim.keep_bytes {
        bytes += inp.lines[tail - 1].len() + 1;
        tail -= 1;
    }
    // One very long line can leave head or tail empty: keep at least the first and last line.
    let head = head.max(1);
    let tail = tail.min(n.saturating_sub(1)).max(head);
    let mut cuts = Vec::new();
    let mut i = head;
    let stays = |i: usize| inp.protect.any(i) || fixed.get(i) == Some(&true);
    while i < tail {
        if stays(i) {
            i += 1;
            continue;
        }
        let s = i;
        while i < tail && !stays(i) {
            i += 1;
        }
        if i - s >= 2 || inp.lines[s].len() > 200 {
            cuts.push(Cut { lines: s..i, with: format!("[tokenfold: {} lines]", i - s) });
        }
    }
    Some((cuts, "the middle of a long output".to_string()))
}
