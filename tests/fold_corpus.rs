//! Runs the folder over the shared corpus of real transcripts: 100% prefix stability, and the
//! incremental result equals a cold fold. Skips (with a note) when `../shared/corpus` is absent.

use std::path::Path;

use tokenfold::replay::{measure, sources, Counter};

#[test]
fn corpus_prefix_stability() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !root.is_dir() {
        println!("note: ../shared/corpus is absent; corpus test skipped");
        return;
    }
    let mut counter = Counter::estimating();
    let mut turns = 0;
    for dir in ["claude-code_spotter", "swe-agent", "aider_friendly-names", "codex-format-sample"] {
        for c in sources::load(&root.join(dir)) {
            let s = measure(&c.name, c.format, c.dialect, &c.turns, &mut counter, 0);
            assert_eq!(s.prefix_blocks_changed, 0, "{dir}/{}: a re-sent block changed", c.name);
            assert_eq!(s.scratch_mismatches, 0, "{dir}/{}: incremental != cold", c.name);
            assert!(s.tokens_after <= s.tokens_before);
            turns += s.turns;
        }
    }
    assert!(turns > 1000, "the corpus has over a thousand turns, got {turns}");
}
