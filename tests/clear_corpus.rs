//! Clearing on the shared corpus of real transcripts, replayed as the proxy would forward them
//! (o200k token counts): the targets the README quotes. Skips, with a note, when the corpus is
//! absent.

mod fold_support;

use fold_support::corpus_root;
use tokenfold::fold::Level;
use tokenfold::replay::{measure, sources, Counter, Setup, Stats, TargetKind};

fn replay(dir: &str, level: Level, target: TargetKind, counter: &mut Counter) -> Option<Stats> {
    let root = corpus_root()?.join(dir);
    let mut total = Stats::default();
    for c in sources::load(&root) {
        total.add(&measure(&c, counter, &mut Setup { level, target, ..Setup::default() }));
    }
    Some(total)
}

fn pct(k: u64, n: u64) -> f64 {
    100.0 * k as f64 / n.max(1) as f64
}

#[test]
fn claude_code_sessions_meet_the_clearing_targets() {
    let mut counter = Counter::default();
    let Some(s) = replay("claude-code_spotter", Level::Balanced, TargetKind::Cache, &mut counter) else {
        println!("note: ../shared/corpus is absent; clearing targets not checked");
        return;
    };
    let (anchors, refs) = (pct(s.anchors_kept, s.anchors_checked), pct(s.refs_kept, s.refs_checked));
    println!(
        "claude-code_spotter: saved {:.1}%, cache-billed {:.3}x, {} steps, anchors {anchors:.1}% of {}, references {refs:.2}% of {}, first errors {}/{}",
        s.saved_pct(),
        s.billed_ratio(),
        s.steps,
        s.anchors_checked,
        s.refs_checked,
        s.first_errors_kept,
        s.first_errors_checked
    );
    assert!(s.saved_pct() >= 45.0, "saved {:.1}%", s.saved_pct());
    assert!(s.billed_ratio() <= 0.70, "cache-billed {:.3}x direct", s.billed_ratio());
    assert!(anchors >= 90.0 && s.anchors_checked > 100, "Edit anchors {anchors:.1}% of {}", s.anchors_checked);
    assert!(refs >= 99.0 && s.refs_checked > 1000, "references {refs:.2}% of {}", s.refs_checked);
    assert!(s.first_errors_checked > 20 && s.first_errors_kept == s.first_errors_checked, "{:?}", s.first_errors_lost);
    // Between steps nothing already sent changes; cold equals incremental.
    assert_eq!((s.prefix_blocks_changed, s.scratch_mismatches), (0, 0));
}

/// Short sessions: clearing rarely pays there, and must never make the bill bigger.
#[test]
fn short_sessions_never_cost_more() {
    let mut counter = Counter::default();
    for dir in ["swe-agent", "aider_friendly-names"] {
        let Some(s) = replay(dir, Level::Balanced, TargetKind::Cache, &mut counter) else {
            println!("note: ../shared/corpus is absent; {dir} not checked");
            return;
        };
        println!("{dir}: saved {:.1}%, cache-billed {:.3}x, {} steps", s.saved_pct(), s.billed_ratio(), s.steps);
        assert!(s.billed_ratio() <= 1.0, "{dir}: cache-billed {:.3}x", s.billed_ratio());
        assert_eq!(s.prefix_blocks_changed, 0, "{dir}");
    }
}
