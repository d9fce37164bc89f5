//! Per-filter fixture tests on command output recorded on this machine (fixtures/filters/, see
//! record.sh there): what must stay stays, the output shrinks, and the marker's file is the
//! byte-exact original.

mod filters_support;

use filters_support::*;
use tokenfold::fold::Level;
use tokenfold::tokens;

/// (fixture, expected mechanism, minimum share of tokens saved at balanced)
const CASES: &[(&str, &str, f64)] = &[
    ("cargo_test_failing", "filter:test-runner", 0.10),
    ("pytest_failing", "filter:test-runner", 0.20),
    ("npm_install", "filter:build", 0.60),
    ("pip_install", "filter:build", 0.30),
    ("git_diff_context", "filter:git", 0.10),
    ("git_log", "filter:git", 0.30),
    ("git_log_plain", "filter:git", 0.20),
    ("git_status", "filter:git", 0.30),
    ("rg_repo", "filter:listing", 0.10),
    ("grep_repo", "filter:listing", 0.10),
    ("ls_la", "filter:listing", 0.40),
    ("find_repo", "filter:listing", 0.30),
    ("tree_repo", "filter:listing", 0.20),
    ("app_log", "filter:log", 0.50),
];

/// The block was shortened by `mechanism` (and maybe repeats inside it), nothing else.
fn assert_filter(name: &str, folded: &Option<tokenfold::fold::Folded>, mechanism: &str) {
    let m = mechanisms(folded);
    assert!(m.contains(&mechanism), "{name}: {mechanism} expected, got {m:?}");
    assert!(m.iter().all(|x| *x == mechanism || *x == "filter:repeat"), "{name}: {m:?}");
}

fn show(name: &str, out: &str) {
    if std::env::var_os("TOKENFOLD_SHOW").is_some() {
        eprintln!("===== {name}\n{out}");
    }
}

#[test]
fn every_fixture_keeps_what_matters_saves_and_recovers() {
    let (f, dir) = folder(Level::Balanced, "fixtures");
    for &(name, mechanism, min_saved) in CASES {
        let fx = fixture(name);
        let (out, folded) = fold_output(&f, Some(&fx.command), &fx.output);
        show(name, &out);
        assert_filter(name, &folded, mechanism);
        assert_nothing_important_lost(name, &fx.output, &out, mechanism == "filter:listing");
        let (before, after) = (tokens::count(&fx.output), tokens::count(&out));
        let saved = 1.0 - after as f64 / before as f64;
        assert!(saved >= min_saved, "{name}: saved {:.1}% < {:.1}%", saved * 100.0, min_saved * 100.0);
        assert_recoverable(name, &f, &fx.output, &out);
        // The figures agree with what was removed.
        let fo = folded.unwrap();
        assert!(fo.saved_tokens > 0);
        assert_eq!(fo.turn_elisions, vec![(mechanism, 1)]);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn failing_tests_keep_names_panics_and_counts() {
    let (f, dir) = folder(Level::Balanced, "tests");
    let fx = fixture("cargo_test_failing");
    let (out, _) = fold_output(&f, Some(&fx.command), &fx.output);
    for needle in [
        "test tests::clamp_panics_on_nothing ... FAILED",
        "thread 'tests::port_rejects_overflow'",
        "index out of bounds: the len is 0 but the index is 0",
        "test result: FAILED. 30 passed; 3 failed;",
        "error: test failed, to rerun pass `--lib`",
        "Exit code 101",
        "[tokenfold: 29 passing tests]",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    assert!(!out.contains("test tests::port_8080 ... ok"), "passing lines fold");
    let fx = fixture("pytest_failing");
    let (out, _) = fold_output(&f, Some(&fx.command), &fx.output);
    for needle in [
        "E       AssertionError: assert 8 == 9",
        "FAILED test_inventory.py::test_restock_handles_none",
        "2 failed, 41 passed",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn content_detection_finds_the_same_filters_without_a_command() {
    let (f, dir) = folder(Level::Balanced, "content");
    for &(name, mechanism, _) in CASES {
        let fx = fixture(name);
        let (out, folded) = fold_output(&f, None, &fx.output);
        assert_filter(name, &folded, mechanism);
        assert_nothing_important_lost(name, &fx.output, &out, mechanism == "filter:listing");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn short_or_unrecognised_outputs_are_left_alone() {
    let (f, dir) = folder(Level::Balanced, "alone");
    for name in ["npm_install_error", "indented_help", "pytest_failing_quiet"] {
        let fx = fixture(name);
        let (out, folded) = fold_output(&f, Some(&fx.command), &fx.output);
        if name == "pytest_failing_quiet" {
            // Nothing passes line by line here: the failure report is all there is.
            assert!(mechanisms(&folded).is_empty() || out.contains("FAILURES"), "{name}");
            continue;
        }
        assert!(folded.is_none(), "{name}: nothing to fold, got {:?}", mechanisms(&folded));
        assert_eq!(out, fx.output, "{name}: forwarded as it was");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn aggressive_saves_at_least_as_much_and_keeps_the_same_lines() {
    let (bal, d1) = folder(Level::Balanced, "bal");
    let (agg, d2) = folder(Level::Aggressive, "agg");
    for &(name, mechanism, _) in CASES {
        let fx = fixture(name);
        let (ob, _) = fold_output(&bal, Some(&fx.command), &fx.output);
        let (oa, _) = fold_output(&agg, Some(&fx.command), &fx.output);
        assert!(tokens::count(&oa) <= tokens::count(&ob) + 2, "{name}: aggressive saves less");
        assert_nothing_important_lost(name, &fx.output, &oa, mechanism == "filter:listing");
        assert_recoverable(name, &agg, &fx.output, &oa);
    }
    let _ = (std::fs::remove_dir_all(d1), std::fs::remove_dir_all(d2));
}

#[test]
fn diffs_keep_every_changed_line_and_hunk_header() {
    let fx = fixture("git_diff");
    // At balanced a -U3 diff only loses its `index` lines: too little to pay for a footer.
    let (bal, d1) = folder(Level::Balanced, "diff-bal");
    let (out, folded) = fold_output(&bal, Some(&fx.command), &fx.output);
    assert!(folded.is_none() && out == fx.output, "nothing worth folding at balanced");
    // Aggressive keeps one line of context.
    let (agg, d2) = folder(Level::Aggressive, "diff-agg");
    for name in ["git_diff", "git_diff_context"] {
        let fx = fixture(name);
        let (out, folded) = fold_output(&agg, Some(&fx.command), &fx.output);
        show(name, &out);
        assert_filter(name, &folded, "filter:git");
        let kept: std::collections::HashSet<&str> = out.split('\n').collect();
        for l in fx.output.lines() {
            let changed = (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---");
            if changed
                || l.starts_with("@@ ")
                || l.starts_with("diff --git ")
                || l.starts_with("+++ ")
                || l.starts_with("--- ")
            {
                assert!(kept.contains(l), "{name}: diff line lost: {l:?}");
            }
            if l.starts_with("index ") {
                assert!(!kept.contains(l), "{name}: index line kept");
            }
        }
        assert_nothing_important_lost(name, &fx.output, &out, false);
        assert_recoverable(name, &agg, &fx.output, &out);
    }
    let _ = (std::fs::remove_dir_all(d1), std::fs::remove_dir_all(d2));
}
