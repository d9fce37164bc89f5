//! Error-line retention: every error-like line of a block that folding changed must still be in
//! the forwarded request, in the block itself (filters keep such lines verbatim) or in the
//! earlier block a pointer names (dedup). Lines compare without their line-number prefixes.

use std::collections::HashSet;

use xxhash_rust::xxh3::xxh3_64;

use super::Stats;
use crate::dialect::blocks::{Block, Kind};
use crate::dialect::json;
use crate::dialect::Dialect;
use crate::fold::filters::is_error_line;
use crate::fold::shapes;

#[derive(Default)]
pub struct Retention {
    /// (input block, output block) pairs already checked: frozen blocks repeat every turn.
    seen: HashSet<u64>,
}

fn strip(l: &str) -> &str {
    match shapes::number_prefix(l) {
        Some((_, _, n)) => &l[n..],
        None => l,
    }
}

/// Hashes of every line of every text block (and of what tool calls write) in a request.
fn all_lines(body: &[u8], blocks: &[Block]) -> HashSet<u64> {
    let mut set = HashSet::new();
    for b in blocks {
        let text = match b.kind {
            Kind::Other => continue,
            Kind::ToolCall => {
                let v = json::call_args(body, &b.range).unwrap_or_default();
                match shapes::call_content(&v) {
                    Some((_, t)) => t.to_string(),
                    None => continue,
                }
            }
            _ => match json::decode(body, b.range.clone()) {
                Ok(t) => t.into_owned(),
                Err(_) => continue,
            },
        };
        for l in text.split('\n') {
            set.insert(xxh3_64(strip(l).as_bytes()));
        }
    }
    set
}

impl Retention {
    /// Checks the blocks folding changed; `cleared` blocks (stubs, checked by the clearing
    /// figures) are left out.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &mut self,
        _d: Dialect,
        body: &[u8],
        bin: &[Block],
        out: &[u8],
        bout: &[Block],
        cleared: &[u32],
        st: &mut Stats,
    ) {
        let mut everything: Option<HashSet<u64>> = None;
        for (k, (i, o)) in bin.iter().zip(bout).enumerate() {
            if !i.is_text() || cleared.contains(&(k as u32)) {
                continue;
            }
            let (Some(ri), Some(ro)) = (body.get(i.range.clone()), out.get(o.range.clone())) else { continue };
            if ri == ro {
                continue;
            }
            if !self.seen.insert(xxh3_64(ri) ^ xxh3_64(ro).rotate_left(17)) {
                continue;
            }
            let (Ok(tin), Ok(tout)) = (json::decode(body, i.range.clone()), json::decode(out, o.range.clone())) else {
                continue;
            };
            let here: HashSet<&str> = tout.split('\n').map(strip).collect();
            for l in tin.split('\n').filter(|l| is_error_line(l)) {
                st.error_lines_checked += 1;
                let s = strip(l);
                if here.contains(s)
                    || everything.get_or_insert_with(|| all_lines(out, bout)).contains(&xxh3_64(s.as_bytes()))
                {
                    st.error_lines_kept += 1;
                } else if st.error_lines_lost.len() < 5 {
                    st.error_lines_lost.push(crate::fold::shapes::clip(l, 160));
                }
            }
        }
    }
}
