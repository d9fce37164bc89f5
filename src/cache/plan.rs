//! Where tokenfold puts Anthropic cache breakpoints in a request that has none. A pure function
//! of the request's blocks: the same conversation gets the same placement in every process, so
//! the bytes before a breakpoint are identical on the next turn.
//!
//! - **Stable prefix**: the last system block (or the last tool when there is no system prompt).
//!   Tools and system are the same on every turn and across conversations of one agent.
//! - **Rolling**: the last block of the final message that can carry one. It moves forward each
//!   turn; next turn the provider finds this turn's entry by looking back from the new one.
//! - **Within reach**: the provider looks back only about 20 blocks from a breakpoint for an
//!   earlier entry. When the previous turn's rolling breakpoint (the end of the message before the
//!   last assistant turn) is further back than that, a breakpoint goes there too, so that entry is
//!   still read. After a clearing step, one goes on the block before the first tool output it
//!   rewrote: the entries still current lie before that output.
//!
//! Never more than 4, never on thinking or empty blocks (the dialect marks those), never where
//! the prefix is shorter than the model's minimum cacheable length (the provider ignores those).

use crate::dialect::breakpoints::{Section, Site};

/// The API's limit per request.
pub const MAX_BREAKPOINTS: usize = 4;
/// How far back from a breakpoint the provider looks for an earlier entry: "about 20 blocks".
pub const LOOKBACK_BLOCKS: usize = 20;
/// An earlier entry this many blocks back or more gets a breakpoint of its own. Below the
/// documented 20 because the figure is approximate, and a breakpoint on a prefix that is already
/// cached costs nothing (it is read, not written).
const OUT_OF_REACH: usize = LOOKBACK_BLOCKS - 4;

/// Estimated tokens of a block from its JSON size: 4 bytes a token, which under-counts the
/// provider's own count on code and prose (its tokens are shorter, and tool definitions come
/// with a system preamble), so a prefix estimated above the minimum is above it.
fn tokens(site: &Site) -> u64 {
    (site.bytes as u64).div_ceil(4)
}

/// Indices into `sites` of the blocks to mark, in body order. `min_tokens` is the model's minimum
/// cacheable prefix; `cleared_tool_use_id` names the first tool output that clearing newly
/// rewrote in this request, if any.
pub fn place(sites: &[Site], min_tokens: u64, cleared_tool_use_id: Option<&str>) -> Vec<usize> {
    let mut prefix_tokens = Vec::with_capacity(sites.len());
    let mut sum = 0;
    for s in sites {
        sum += tokens(s);
        prefix_tokens.push(sum);
    }
    let long_enough = |i: usize| prefix_tokens[i] >= min_tokens;
    // The last site at or before `end` that can carry a breakpoint.
    let mark_at_or_before = |end: usize| (0..=end).rev().find(|&i| sites[i].cacheable);

    let Some(rolling) = sites.len().checked_sub(1).and_then(mark_at_or_before) else { return Vec::new() };
    let mut chosen = Vec::with_capacity(MAX_BREAKPOINTS);
    let stable_end = sites.iter().rposition(|s| matches!(s.section, Section::Tools | Section::System));
    if let Some(stable) = stable_end.and_then(mark_at_or_before) {
        chosen.push(stable);
    }
    // The previous turn's entry, when the rolling breakpoint may be too far from it to find it.
    if let Some(previous) = previous_turn_end(sites).and_then(mark_at_or_before) {
        if rolling - previous.min(rolling) >= OUT_OF_REACH {
            chosen.push(previous);
        }
    }
    // After a clearing step the last entry still current lies before the first rewritten output,
    // possibly further back than the rolling breakpoint looks: a breakpoint just before that
    // output looks back from there (and writes an entry a later step can read up to).
    let cleared = cleared_tool_use_id.and_then(|id| sites.iter().position(|s| s.tool_use_id.as_deref() == Some(id)));
    if let Some(before_cleared) = cleared.and_then(|c| c.checked_sub(1)).and_then(mark_at_or_before) {
        chosen.push(before_cleared);
    }
    chosen.push(rolling);
    chosen.retain(|&i| long_enough(i));
    chosen.sort_unstable();
    chosen.dedup();
    // At most 4 by construction (stable, two earlier, rolling); kept explicit.
    chosen.truncate(MAX_BREAKPOINTS);
    chosen
}

/// The last site of the message before the last assistant message: where the previous turn's
/// request ended, so where its rolling breakpoint was.
fn previous_turn_end(sites: &[Site]) -> Option<usize> {
    let last_answer = sites.iter().rev().find_map(|s| match s.section {
        Section::Message { index, assistant: true } => Some(index),
        _ => None,
    })?;
    sites.iter().rposition(|s| matches!(s.section, Section::Message { index, .. } if index < last_answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::breakpoints::{self, Sites};

    /// A body with `system_bytes` of system prompt and `turns` exchanges of `calls` parallel tool
    /// calls each, ending with the user's tool results.
    fn conversation(system_bytes: usize, turns: usize, calls: usize) -> Vec<u8> {
        let mut messages = vec![serde_json::json!({"role": "user", "content": "start"})];
        for t in 0..turns {
            let uses: Vec<_> = (0..calls)
                .map(
                    |c| serde_json::json!({"type": "tool_use", "id": format!("t{t}_{c}"), "name": "read", "input": {}}),
                )
                .collect();
            let results: Vec<_> = (0..calls)
                .map(|c| serde_json::json!({"type": "tool_result", "tool_use_id": format!("t{t}_{c}"), "content": "x".repeat(400)}))
                .collect();
            messages.push(serde_json::json!({"role": "assistant", "content": uses}));
            messages.push(serde_json::json!({"role": "user", "content": results}));
        }
        let body = serde_json::json!({"model": "m", "system": "s".repeat(system_bytes),
            "tools": [{"name": "read", "input_schema": {}}], "messages": messages});
        serde_json::to_vec(&body).unwrap()
    }

    fn sites(body: &[u8]) -> Sites {
        breakpoints::sites(body).unwrap()
    }

    #[test]
    fn stable_prefix_and_rolling_on_a_short_conversation() {
        let body = conversation(8000, 2, 1);
        let s = sites(&body);
        let got = place(&s.sites, 1024, None);
        // tools[0], system, m0 text, (m1 use, m2 result) x 2: system is 1, the last result 6.
        assert_eq!(got, [1, s.sites.len() - 1]);
    }

    #[test]
    fn below_the_minimum_nothing_is_placed() {
        let body = conversation(100, 1, 1);
        let s = sites(&body);
        assert!(place(&s.sites, 1024, None).is_empty());
        // A short system prompt alone is skipped, the longer whole prefix is not.
        let got = place(&s.sites, 150, None);
        assert_eq!(got, [s.sites.len() - 1]);
    }

    #[test]
    fn the_previous_turns_end_gets_one_when_out_of_reach() {
        // 12 parallel calls: 24 new blocks between the previous and this turn's ends.
        let body = conversation(8000, 2, 12);
        let s = sites(&body);
        let got = place(&s.sites, 1024, None);
        let previous = 3 + 12 + 12 - 1; // tools, system, m0, then turn one's uses and results
        assert_eq!(got, [1, previous, s.sites.len() - 1]);
        // Two parallel calls stay within reach: no third breakpoint.
        let s = sites(&conversation(8000, 3, 2));
        assert_eq!(place(&s.sites, 1024, None).len(), 2);
    }

    #[test]
    fn the_block_before_the_first_cleared_output() {
        let body = conversation(8000, 12, 1);
        let s = sites(&body);
        // Turn 1's result (t1_0) is at index 3 + 2*1 + 1 = 6; the block before it is 5.
        let got = place(&s.sites, 1024, Some("t1_0"));
        assert_eq!(got, [1, 5, s.sites.len() - 1]);
        // Near the end as well: the entry still current may lie further back than the rolling
        // breakpoint looks (t11_0 is at 3 + 2*11 + 1 = 26).
        assert_eq!(place(&s.sites, 1024, Some("t11_0")), [1, 25, s.sites.len() - 1]);
        assert_eq!(place(&s.sites, 1024, Some("no-such-id")), [1, s.sites.len() - 1]);
        // Both hints out of reach: four breakpoints, never more.
        let s = sites(&conversation(8000, 12, 12));
        let got = place(&s.sites, 1024, Some("t1_0"));
        assert_eq!(got.len(), MAX_BREAKPOINTS, "{got:?}");
    }

    #[test]
    fn thinking_and_empty_blocks_are_passed_over() {
        let body = br#"{"model":"m","system":"","messages":[{"role":"user","content":"hello there"},
            {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"}]},
            {"role":"user","content":[{"type":"text","text":"go on"},{"type":"text","text":" "}]}]}"#;
        let s = sites(body);
        // The final message's last cacheable block is its first text block (index 3).
        assert_eq!(place(&s.sites, 1, None), [3]);
        let only_thinking = br#"{"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"t"}]}]}"#;
        assert!(place(&sites(only_thinking).sites, 0, None).is_empty());
    }

    #[test]
    fn placement_is_the_same_on_every_call() {
        let body = conversation(8000, 9, 3);
        let s = sites(&body);
        let first = place(&s.sites, 1024, Some("t2_1"));
        for _ in 0..5 {
            assert_eq!(place(&sites(&body).sites, 1024, Some("t2_1")), first);
        }
    }
}
