//! Detection robustness: outputs that look like something a filter knows but are not (logs that
//! resemble grep output, indented prose that resembles git status, numbered files, CSV, ...)
//! get no lossy filter: every line is forwarded as it was, with or without a command line.

mod filters_support;

use filters_support::*;
use tokenfold::fold::filters::{compress, Level};

/// Deterministic words for the generated texts (no corpus text, no files).
const WORDS: &[&str] = &[
    "river", "stone", "window", "garden", "signal", "harbor", "lantern", "meadow", "engine", "copper", "violet",
    "thunder", "orchard", "compass", "velvet", "marble", "canyon", "ember", "falcon", "glacier",
];

/// A pseudo-random word per index (xorshift), so that no generated line repeats another.
fn word(k: usize) -> &'static str {
    let mut x = (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    WORDS[(x % WORDS.len() as u64) as usize]
}

fn lookalikes() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    // A log whose lines look like `path:line:` grep hits, all different.
    out.push((
        "log like grep",
        (0..90)
            .map(|i| {
                format!(
                    "12:{:02}:{:02}: session {} opened by {} from {}",
                    i / 60,
                    i % 60,
                    i * 37 % 1000,
                    word(i),
                    word(i + 3)
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    out.push((
        "dotted hosts like paths",
        (0..90)
            .map(|i| format!("node{}.{}.internal:{}: {} {}", i % 9, word(i), 8000 + i, word(i + 1), word(i + 2)))
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    // Prose indented by three spaces (and tabs), with words git status uses.
    out.push((
        "indented prose",
        (0..80)
            .map(|i| {
                let lead = if i % 9 == 0 { "\t" } else { "   " };
                format!("{lead}modified: the {} near the {} was {} again", word(i), word(i + 5), word(i + 9))
            })
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    out.push((
        "prose starting like git status",
        format!(
            "On branch {} we met.\n\nChanges to be committed:\n{}",
            word(1),
            (0..60)
                .map(|i| format!("\t{} and {} by the {}", word(i), word(i + 2), word(i + 4)))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    ));
    // Numbered lines: a numbered list and a file shown with `N:` numbers.
    out.push((
        "numbered list",
        (1..=90).map(|i| format!("{i}. {} {} {}", word(i), word(i + 1), word(i * 3))).collect::<Vec<_>>().join("\n"),
    ));
    out.push((
        "numbered file",
        (1..=90)
            .map(|i| format!("{i}:    let {} = {}({});", word(i), word(i + 2), i * 13))
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    // Tables of numbers: CSV and TSV rows differ only in their numbers, like log repeats would.
    out.push((
        "csv",
        std::iter::once("id,name,score,ratio".to_string())
            .chain((0..120).map(|i| format!("{i},{},{},{}.{}", word(i), i * 17 % 101, i % 7, i % 10)))
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    out.push((
        "tsv of numbers",
        (0..120).map(|i| format!("{}\t{}\t{}\t{}", i, i * i % 977, i * 31 % 89, i % 5)).collect::<Vec<_>>().join("\n"),
    ));
    // Timestamped lines that are all different (a log with nothing repeated).
    out.push((
        "distinct log",
        (0..80)
            .map(|i| {
                format!(
                    "2024-05-0{} 10:{:02}:{:02} INFO {} {} {}",
                    1 + i % 9,
                    i / 60,
                    i % 60,
                    word(i),
                    word(i + 7),
                    word(i + 11)
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    // Not JSON rows, though it starts like them; and a listing of sentences with slashes.
    out.push(("broken json", format!("[{{\"a\": 1}}, {{\"b\": 2}},\n{}", "x".repeat(800))));
    out.push((
        "slashes in prose",
        (0..60)
            .map(|i| format!("{} and/or {} either/or {}", word(i), word(i + 1), word(i + 2)))
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    out
}

#[test]
fn lookalikes_get_no_lossy_filter() {
    for (name, text) in lookalikes() {
        assert!(text.len() >= 600, "{name}: long enough to be considered ({} bytes)", text.len());
        for level in [Level::Balanced, Level::Aggressive] {
            for cmd in [None, Some("python3 report.py"), Some("./run.sh --verbose")] {
                let c = compress(cmd, &text, level);
                assert!(c.is_none(), "{name} ({cmd:?}, {level:?}): got {:?}", c.map(|c| (c.filter, c.what)));
            }
        }
    }
}

#[test]
fn the_same_harness_does_filter_real_command_output() {
    // A control: without it, a detector that never fires would pass the tests above.
    for name in ["app_log", "git_status", "rg_repo", "npm_install"] {
        let fx = fixture(name);
        assert!(compress(None, &fx.output, Level::Balanced).is_some(), "{name}");
    }
}

#[test]
fn lookalikes_pass_through_the_folder_unchanged() {
    let (f, dir) = folder(Level::Aggressive, "lookalikes");
    for (name, text) in lookalikes() {
        for cmd in [None, Some("python3 report.py")] {
            let (out, folded) = fold_output(&f, cmd, &text);
            assert!(folded.is_none(), "{name}: folded by {:?}", mechanisms(&folded));
            assert!(out.starts_with(&text), "{name}: forwarded as it was");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
