//! The optional savings rules of the fold engine. All are on in the proxy; `tokenfold replay
//! --without NAME` switches one off so that its gain can be measured on recorded sessions. They are
//! part of the cache key, so two settings never share cached state.

/// Which optional rules run. `Levers::default()` is what the proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Levers {
    /// A span identical to an earlier span of the same block becomes "lines a-b above".
    pub same_block: bool,
    /// SWE-agent's demonstration and the instructions of its instance message are agent
    /// templates (not typed by a person), so repeated text inside them folds.
    pub templates: bool,
    /// `path:N:` prefixes of grep output are stripped for matching, like file-view numbers.
    pub grep_prefixes: bool,
    /// Compact markers (no repeated line range, fewer words); off: the part-1 wording.
    pub short_markers: bool,
    /// The net-positive gate prices markers with the estimate calibrated on o200k; off: 2 bytes
    /// per token.
    pub calibrated_gate: bool,
    /// Spans inside file views (numbered tool output). Off by default, so views fold only as a
    /// whole: a span boundary inside a view can cut an Edit anchor that then exists nowhere in one
    /// piece (the corpus has such anchors). On only to measure what that would save.
    pub view_spans: bool,
}

impl Default for Levers {
    fn default() -> Levers {
        Levers {
            same_block: true,
            templates: true,
            grep_prefixes: true,
            short_markers: true,
            calibrated_gate: true,
            view_spans: false,
        }
    }
}

impl Levers {
    /// Names accepted by `replay --without` (on by default), with what each switches off.
    pub const NAMES: [(&'static str, &'static str); 5] = [
        ("same-block", "repeats inside one block"),
        ("templates", "SWE-agent demonstration and instance instructions as template text"),
        ("grep-prefixes", "stripping grep's path:N: prefixes"),
        ("short-markers", "compact marker wording"),
        ("calibrated-gate", "the o200k-calibrated marker estimate in the gate"),
    ];

    /// Levers off by default that `replay --with` switches on (they break a guarantee).
    pub const OPT_IN: [(&'static str, &'static str); 1] =
        [("view-spans", "spans inside file views (can cut Edit anchors; measurement only)")];

    /// These levers with opt-in lever `name` switched on; `None` for an unknown name.
    pub fn with(mut self, name: &str) -> Option<Levers> {
        match name {
            "view-spans" => self.view_spans = true,
            _ => return None,
        }
        Some(self)
    }

    /// These levers with `name` switched off; `None` for an unknown name.
    pub fn without(mut self, name: &str) -> Option<Levers> {
        match name {
            "same-block" => self.same_block = false,
            "templates" => self.templates = false,
            "grep-prefixes" => self.grep_prefixes = false,
            "short-markers" => self.short_markers = false,
            "calibrated-gate" => self.calibrated_gate = false,
            _ => return None,
        }
        Some(self)
    }

    /// A small number that identifies the setting in cache keys.
    pub fn bits(self) -> u64 {
        [self.same_block, self.templates, self.grep_prefixes, self.short_markers, self.calibrated_gate, self.view_spans]
            .iter()
            .enumerate()
            .map(|(i, &on)| u64::from(on) << i)
            .sum()
    }
}
