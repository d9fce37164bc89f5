//! Repeats inside one output: a run of 3+ lines (120+ bytes) identical to an earlier run of the
//! same output that is forwarded verbatim becomes `[tokenfold: 9 lines repeated from above, from
//! "(phoenix 1.8.3) lib/phoenix/token.ex:266…"]`. Test runners print the same stack trace for
//! every failure; that is where this pays. Protected lines may be folded here, because their
//! exact text stays in the output (in the earlier copy). The earlier copies are reserved: no
//! other edit may touch them.

use std::ops::Range;

use xxhash_rust::xxh3::xxh3_64;

use super::{Cut, Input};
use crate::fold::state::IdMap;

const MIN_LINES: usize = 3;
const MIN_BYTES: usize = 120;

/// A repeat: `cut` replaces lines identical to `source` (earlier, verbatim).
pub struct Repeat {
    pub cut: Cut,
    pub source: Range<usize>,
}

fn quote(l: &str) -> String {
    let t = l.trim();
    let mut end = t.len().min(48);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    let q = &t[..end];
    if end < t.len() {
        format!("{q}…")
    } else {
        q.to_string()
    }
}

/// Finds repeats among lines no other cut covers (`taken`), left to right, each against the first
/// earlier copy of its first three lines.
pub fn find(inp: &Input, taken: &[bool]) -> Vec<Repeat> {
    let n = inp.len();
    if taken.iter().filter(|t| !**t).count() < 2 * MIN_LINES {
        return Vec::new();
    }
    // Lines another cut owns can neither repeat nor be repeated: no need to hash them.
    let hashes: Vec<u64> = (0..n).map(|i| if taken[i] { 0 } else { xxh3_64(inp.line(i).as_bytes()) }).collect();
    let blank = |i: usize| inp.line(i).trim().is_empty();
    let mut cut = vec![false; n];
    // Keep-earliest: the first verbatim occurrence of each 3-line window.
    let mut windows: IdMap<usize> = IdMap::default();
    let key = |i: usize| hashes[i] ^ hashes[i + 1].rotate_left(21) ^ hashes[i + 2].rotate_left(42);
    let free = |i: usize, cut: &[bool]| !taken[i] && !cut[i];
    let mut out: Vec<Repeat> = Vec::new();
    let mut registered = 0; // windows starting before this index are registered
    let mut i = 0;
    while i + MIN_LINES <= n {
        // Register windows that end before `i` and are still verbatim.
        while registered + MIN_LINES <= i {
            let r = registered;
            if (r..r + MIN_LINES).all(|k| free(k, &cut)) && !(r..r + MIN_LINES).all(blank) {
                windows.entry(key(r)).or_insert(r);
            }
            registered += 1;
        }
        let mut best: Option<(usize, usize)> = None; // (len, source start)
        let source = windows.get(&key(i)).copied().filter(|_| (i..i + MIN_LINES).all(|k| free(k, &cut)));
        if let Some(j) = source {
            let mut len = 0;
            while i + len < n
                && j + len < i
                && hashes[i + len] == hashes[j + len]
                && free(i + len, &cut)
                && free(j + len, &cut)
                && inp.line(i + len) == inp.line(j + len)
            {
                len += 1;
            }
            if len >= MIN_LINES {
                best = Some((len, j));
            }
        }
        match best {
            Some((len, j)) if inp.bytes_of(&(i..i + len)) >= MIN_BYTES => {
                // Trailing blank lines stay: they separate what follows.
                let mut l = len;
                while l > MIN_LINES && blank(i + l - 1) {
                    l -= 1;
                }
                let first = (j..j + l).find(|&k| !blank(k)).unwrap_or(j);
                let with = format!("[tokenfold: {l} lines repeated from above, from \"{}\"]", quote(inp.line(first)));
                if with.len() + 1 >= inp.bytes_of(&(i..i + l)) {
                    i += 1;
                    continue;
                }
                out.push(Repeat { cut: Cut { lines: i..i + l, with }, source: j..j + l });
                for c in cut.iter_mut().skip(i).take(l) {
                    *c = true;
                }
                i += l;
            }
            _ => i += 1,
        }
    }
    out
}
