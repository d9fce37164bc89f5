//! Test runners (cargo/nextest/libtest, pytest/unittest, jest/vitest/mocha, go test, rspec,
//! ExUnit, dotnet): only lines that positively say "this test passed" (and build progress) are
//! folded into a count. Failing tests, their assertion/panic/traceback blocks, headers and the
//! summary lines are everything else, so they stay.

use super::{build, fold_runs, Cut, Input, Level};

/// What a passing-test line looks like, per runner.
fn passing(l: &str) -> bool {
    let t = l.trim_start();
    // libtest / unittest: `test a::b ... ok`, `test_x (m.C) ... ok`, `... ignored`.
    if (t.starts_with("test ") || t.starts_with("test_"))
        && (t.ends_with(" ... ok") || t.ends_with(" ... ignored") || t.contains(" ... ignored, "))
    {
        return true;
    }
    // nextest.
    for p in ["PASS [", "START [", "SKIP [", "SLOW [", "LEAK ["] {
        if t.starts_with(p) && l.starts_with(' ') {
            return true;
        }
    }
    // pytest -v: `path::test_x[p] PASSED  [ 12%]`.
    if t.contains("::") {
        let core = t.split(" [").next().unwrap_or(t).trim_end();
        if core.ends_with(" PASSED")
            || core.ends_with(" SKIPPED")
            || core.contains(" SKIPPED (")
            || core.ends_with(" XFAIL")
        {
            return true;
        }
    }
    // pytest progress: `tests/test_a.py ......ss.  [ 40%]` (no F/E on the line).
    if let Some((path, rest)) = t.split_once(' ') {
        if path.ends_with(".py") && progress_marks(rest.split(" [").next().unwrap_or(rest).trim_end()) {
            return true;
        }
    }
    // Progress dots alone (unittest, rspec, ExUnit, phpunit): `.....*..`.
    if t.len() >= 3 && progress_marks(t) {
        return true;
    }
    // jest/vitest/mocha/playwright ticks; jest per-file PASS.
    for p in ["✓ ", "✔ ", "√ ", "○ skipped", "↓ ", "PASS "] {
        if t.starts_with(p) && (p != "PASS " || !l.starts_with(' ')) {
            return true;
        }
    }
    // go test.
    for p in ["=== RUN ", "=== PAUSE ", "=== CONT ", "=== NAME ", "--- PASS: ", "--- SKIP: ", "?   \t"] {
        if t.starts_with(p) {
            return true;
        }
    }
    if let Some(rest) = l.strip_prefix("ok  \t").or_else(|| l.strip_prefix("ok \t")) {
        return rest.ends_with('s') || rest.ends_with("(cached)");
    }
    // ExUnit --trace: `  * test renders x (1.2ms) [L#12]`; dotnet: `  Passed Name [1 ms]`.
    if t.starts_with("* test ") && t.contains("ms)") {
        return true;
    }
    t.starts_with("Passed ") && t.ends_with(']') && l.starts_with(' ')
}

fn progress_marks(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'.' | b's' | b'x' | b'*' | b'S'))
}

/// Whether the whole output reads like a test run (for outputs without a known command).
pub fn detect(inp: &Input) -> bool {
    // Every runner prints at least one of these somewhere.
    const SIGNS: &[&str] = &[
        "test result: ",
        "test session starts",
        "Tests:",
        "Test Files ",
        "Finished in ",
        "--- FAIL: ",
        "FAIL\t",
        " passing",
        " ... ok",
        " PASSED",
        "✓ ",
        "✔ ",
        "=== RUN",
        "--- PASS: ",
        "PASS [",
        "Passed ",
    ];
    if !super::mentions(inp, SIGNS) {
        return false;
    }
    let mut passes = 0;
    for i in 0..inp.len() {
        let l = inp.line(i);
        let t = l.trim();
        if t.starts_with("test result: ")
            || (t.starts_with("=====") && (t.contains(" passed") || t.contains(" failed")) && t.contains(" in "))
            || t.contains("test session starts")
            || (t.starts_with("Tests:") && (t.contains(" passed") || t.contains(" failed")))
            || (t.starts_with("Test Files ") && t.contains('('))
            || (t.starts_with("Finished in ") && (t.ends_with("seconds") || t.contains(" seconds (")))
            || l.starts_with("--- FAIL: ")
            || l.starts_with("FAIL\t")
            || t.ends_with(" passing") && t.split(' ').next().is_some_and(|n| n.parse::<u32>().is_ok())
        {
            return true;
        }
        if passing(l) && !progress_marks(t) {
            passes += 1;
        }
    }
    passes >= 5
}

pub fn compress(inp: &Input) -> Option<(Vec<Cut>, String)> {
    let min = if inp.level == Level::Aggressive { 2 } else { 3 };
    let mut any_pass = false;
    let mut any_build = false;
    let cuts = fold_runs(
        inp,
        min,
        |i| {
            let l = inp.line(i);
            if l.trim().is_empty() {
                Some("")
            } else if passing(l) {
                Some("passing tests")
            } else {
                build::progress(l)
            }
        },
        |n, counts| {
            for (l, _) in counts {
                if *l == "passing tests" {
                    any_pass = true;
                } else {
                    any_build = true;
                }
            }
            match counts {
                [(label, _)] => format!("[tokenfold: {n} {label}]"),
                _ => format!("[tokenfold: {n} lines: {}]", super::count_list(counts)),
            }
        },
    );
    let what = match (any_pass, any_build) {
        (true, true) => "passing tests and build progress",
        (true, false) => "passing tests",
        _ => "build progress",
    };
    Some((cuts, what.to_string()))
}
