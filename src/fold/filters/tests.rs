//! Unit tests of the framework rules; per-filter fixture tests are in tests/filters_fixtures.rs.

use super::*;

fn passing_run(n: usize) -> String {
    let mut s = String::from("running 40 tests\n");
    for i in 0..n {
        s.push_str(&format!("test tests::case_{i} ... ok\n"));
    }
    s.push_str("test tests::broken ... FAILED\n\nfailures:\n\n---- tests::broken stdout ----\n");
    s.push_str("thread 'tests::broken' panicked at src/lib.rs:9:5:\nassertion failed\n\n");
    s.push_str("test result: FAILED. 39 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n");
    s
}

#[test]
fn lossless_and_short_outputs_are_left_alone() {
    let text = passing_run(39);
    assert!(compress(Some("cargo test"), &text, Level::Lossless).is_none());
    assert!(compress(Some("cargo test"), "test a ... ok\n", Level::Balanced).is_none());
    assert!(compress(Some("cargo test"), &text, Level::Balanced).is_some());
}

#[test]
fn file_reads_never_get_a_filter() {
    let text = passing_run(39);
    assert!(compress(Some("cat test-output.txt"), &text, Level::Aggressive).is_none());
    assert!(compress(Some("sed -n '1,80p' log.txt"), &text, Level::Aggressive).is_none());
    let numbered: String = (1..200).map(|i| format!("{i:>6}\tlet x_{i} = {i};\n")).collect();
    assert!(compress(None, &numbered, Level::Aggressive).is_none());
}

#[test]
fn a_cut_over_a_protected_line_refuses_the_whole_filter() {
    let text = passing_run(39);
    let inp = Input::new(&text, Level::Balanced, Tool::Tests);
    let panic_line = inp.lines.iter().position(|l| l.contains("panicked")).unwrap();
    let bad = vec![Cut { lines: 1..panic_line + 1, with: "[x]".into() }];
    assert!(verify(&inp, Filter::TestRunner, bad).is_none());
    let overlapping = vec![Cut { lines: 1..10, with: "[x]".into() }, Cut { lines: 5..12, with: "[y]".into() }];
    assert!(verify(&inp, Filter::TestRunner, overlapping).is_none());
    let growing = vec![Cut { lines: 1..2, with: "x".repeat(200) }, Cut { lines: 3..20, with: "[z]".into() }];
    assert_eq!(verify(&inp, Filter::TestRunner, growing).unwrap().len(), 1, "a cut that grows is dropped");
}

#[test]
fn passing_lines_fold_and_failures_stay() {
    let text = passing_run(39);
    let c = compress(Some("cargo test"), &text, Level::Balanced).unwrap();
    assert_eq!(c.filter, Filter::TestRunner);
    assert_eq!(c.cuts.len(), 1);
    assert_eq!(c.cuts[0].1.with, "[tokenfold: 39 passing tests]");
    assert_eq!(c.cuts[0].0, Filter::TestRunner);
    assert_eq!(c.lines_folded, 39);
}

#[test]
fn levels_parse() {
    for l in Level::ALL {
        assert_eq!(Level::parse(l.name()), Some(l));
    }
    assert_eq!(Level::parse(" Aggressive "), Some(Level::Aggressive));
    assert_eq!(Level::parse("max"), None);
}
