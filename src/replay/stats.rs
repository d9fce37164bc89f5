//! What a replay measured, per conversation and summed.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ceiling::Ceiling;

/// What one conversation (or a sum of them) measured.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub name: String,
    pub format: String,
    pub conversations: u64,
    pub turns: u64,
    /// Tokens of message text (system, messages, tool-call arguments) summed over turns.
    pub tokens_before: u64,
    pub tokens_after: u64,
    /// Tokens saved per mechanism, summed over turns.
    pub saved_by: BTreeMap<String, u64>,
    /// Blocks of already-sent messages compared with the previous turn, and how many differed.
    pub prefix_blocks_checked: u64,
    pub prefix_blocks_changed: u64,
    /// The last turn folded with a fresh `Folder` equals the cached (incremental) result.
    pub scratch_mismatches: u64,
    pub fold_ms: f64,
    pub measure_ms: f64,
    /// blake3 of every forwarded body in order (length-prefixed): equal across processes.
    pub digest: String,
    /// Distinct markers: how many, their bytes, their tokens, the gate's estimate of them, and
    /// how many the estimate priced below their real count.
    pub markers: u64,
    pub marker_bytes: u64,
    pub marker_tokens: u64,
    pub marker_estimate: u64,
    pub markers_underestimated: u64,
    /// With `--levers`: tokens after folding with each lever off (opt-in ones: on), summed over
    /// turns.
    pub after_without: BTreeMap<String, u64>,
    pub after_with: BTreeMap<String, u64>,
    /// With `--ceiling`: the lossless upper bounds (tokens summed over turns).
    pub ceiling: Option<Ceiling>,
    /// Error-like lines of changed blocks, and how many are still in the forwarded request
    /// (verbatim, or in the earlier block a pointer names). Must be all of them.
    pub error_lines_checked: u64,
    pub error_lines_kept: u64,
    /// A few error-like lines that went missing (for the report; empty when retention is 100%).
    pub error_lines_lost: Vec<String>,
    /// Clearing steps taken, the cached tokens they made the provider write again (estimated, as
    /// the cost model sees them), and blocks of earlier turns they rewrote (allowed only at a step).
    pub steps: u64,
    pub rewritten: u64,
    pub step_blocks_changed: u64,
    /// Turns that re-sent a previous request's blocks, and of those the ones whose forwarded
    /// prefix stayed byte-identical (no step).
    pub turns_compared: u64,
    pub turns_stable: u64,
    /// Simulated cache-billed input (token units; see `clearing::billed`), of the requests as
    /// sent and as forwarded.
    pub billed_direct: f64,
    pub billed_forwarded: f64,
    /// The forwarded requests billed by a cache read only where an earlier request ended
    /// (`clearing::CacheEntries`).
    pub billed_at_entries: f64,
    /// Turns whose request had cleared outputs; the checks below are made in those.
    pub cleared_turns: u64,
    /// Edits the model made next whose `old_string` was in the request, and how many of those
    /// were still in the forwarded one.
    pub anchors_checked: u64,
    pub anchors_kept: u64,
    /// Identifiers the model wrote next that were in the request, and still in the forwarded one.
    pub refs_checked: u64,
    pub refs_kept: u64,
    /// The first error-like line of each cleared command output, and how many are still forwarded.
    pub first_errors_checked: u64,
    pub first_errors_kept: u64,
    pub first_errors_lost: Vec<String>,
}

impl Stats {
    pub fn saved_pct(&self) -> f64 {
        pct(self.tokens_before.saturating_sub(self.tokens_after), self.tokens_before)
    }

    /// Saved share with a stand-in of `system` tokens added to every request on both sides.
    pub fn saved_pct_with_system(&self, system: u64) -> f64 {
        let extra = system * self.turns;
        pct(self.tokens_before.saturating_sub(self.tokens_after), self.tokens_before + extra)
    }

    pub fn stability_pct(&self) -> f64 {
        if self.prefix_blocks_checked == 0 {
            return 100.0;
        }
        100.0 * (self.prefix_blocks_checked - self.prefix_blocks_changed) as f64 / self.prefix_blocks_checked as f64
    }

    pub fn retention_pct(&self) -> f64 {
        if self.error_lines_checked == 0 {
            return 100.0;
        }
        100.0 * self.error_lines_kept as f64 / self.error_lines_checked as f64
    }

    /// Tokens saved by all filters together.
    pub fn filters_saved(&self) -> u64 {
        self.saved_by.iter().filter(|(k, _)| k.starts_with("filter:")).map(|(_, v)| *v).sum()
    }

    /// Stable prefixes between steps, incremental equal to cold, every error-like line of a
    /// folded block kept and the first error line of every cleared command output.
    pub fn sound(&self) -> bool {
        self.prefix_blocks_changed == 0
            && self.scratch_mismatches == 0
            && self.error_lines_kept == self.error_lines_checked
            && self.first_errors_kept == self.first_errors_checked
    }

    /// Simulated cache-billed input as forwarded, over the same as sent.
    pub fn billed_ratio(&self) -> f64 {
        if self.billed_direct == 0.0 {
            1.0
        } else {
            self.billed_forwarded / self.billed_direct
        }
    }

    /// The same, with the forwarded requests billed at cache entries (`clearing::CacheEntries`).
    pub fn billed_at_entries_ratio(&self) -> f64 {
        if self.billed_direct == 0.0 {
            1.0
        } else {
            self.billed_at_entries / self.billed_direct
        }
    }

    pub fn stable_turns_pct(&self) -> f64 {
        if self.turns_compared == 0 {
            return 100.0;
        }
        pct(self.turns_stable, self.turns_compared)
    }

    pub fn add(&mut self, o: &Stats) {
        self.conversations += o.conversations;
        self.turns += o.turns;
        self.tokens_before += o.tokens_before;
        self.tokens_after += o.tokens_after;
        for (k, v) in &o.saved_by {
            *self.saved_by.entry(k.clone()).or_default() += v;
        }
        self.prefix_blocks_checked += o.prefix_blocks_checked;
        self.prefix_blocks_changed += o.prefix_blocks_changed;
        self.scratch_mismatches += o.scratch_mismatches;
        self.fold_ms += o.fold_ms;
        self.measure_ms += o.measure_ms;
        self.markers += o.markers;
        self.marker_bytes += o.marker_bytes;
        self.marker_tokens += o.marker_tokens;
        self.marker_estimate += o.marker_estimate;
        self.markers_underestimated += o.markers_underestimated;
        for (k, v) in &o.after_without {
            *self.after_without.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.after_with {
            *self.after_with.entry(k.clone()).or_default() += v;
        }
        if let Some(c) = &o.ceiling {
            self.ceiling.get_or_insert_with(Ceiling::default).add(c);
        }
        self.error_lines_checked += o.error_lines_checked;
        self.error_lines_kept += o.error_lines_kept;
        for l in &o.error_lines_lost {
            if self.error_lines_lost.len() < 5 {
                self.error_lines_lost.push(l.clone());
            }
        }
        self.steps += o.steps;
        self.rewritten += o.rewritten;
        self.step_blocks_changed += o.step_blocks_changed;
        self.turns_compared += o.turns_compared;
        self.turns_stable += o.turns_stable;
        self.billed_direct += o.billed_direct;
        self.billed_forwarded += o.billed_forwarded;
        self.billed_at_entries += o.billed_at_entries;
        self.cleared_turns += o.cleared_turns;
        self.anchors_checked += o.anchors_checked;
        self.anchors_kept += o.anchors_kept;
        self.refs_checked += o.refs_checked;
        self.refs_kept += o.refs_kept;
        self.first_errors_checked += o.first_errors_checked;
        self.first_errors_kept += o.first_errors_kept;
        for l in &o.first_errors_lost {
            if self.first_errors_lost.len() < 5 {
                self.first_errors_lost.push(l.clone());
            }
        }
    }
}

/// `part` as a percentage of `whole`, for token counts.
pub fn pct(part: u64, whole: u64) -> f64 {
    crate::table::pct(part as f64, whole as f64)
}
