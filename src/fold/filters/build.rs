//! Build, compile and install logs (cargo, npm/yarn/pnpm, pip, make, tsc, webpack, mix, go):
//! progress, download and "Compiling x" lines fold into counts; errors and warnings with their
//! `file:line` (protected) and the final status lines (not progress) stay.

use super::{count_list, fold_runs, Cut, Input, Level};

/// Cargo's right-aligned status words that only report progress.
const CARGO_PROGRESS: &[&str] = &[
    "Compiling",
    "Checking",
    "Downloaded",
    "Downloading",
    "Fresh",
    "Updating",
    "Locking",
    "Adding",
    "Blocking",
    "Documenting",
    "Packaging",
    "Verifying",
    "Archiving",
    "Unpacking",
    "Installing",
    "Removing",
    "Packaged",
    "Building",
];

/// The progress category of a line, or `None` when the line says something.
pub fn progress(l: &str) -> Option<&'static str> {
    let t = l.trim_start();
    let indent = l.len() - t.len();
    // `   Compiling foo v1.2.3 (/path)`: cargo pads status words to 12 columns.
    if let Some((word, rest)) = t.split_once(' ') {
        let versioned = rest
            .split(' ')
            .nth(1)
            .is_some_and(|v| v.strip_prefix('v').is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())));
        if CARGO_PROGRESS.contains(&word) && (indent > 0 || versioned) && !rest.is_empty() {
            return Some(cargo_label(word));
        }
    }
    if t.starts_with("Building [") && t.contains(']') {
        return Some("Compiling");
    }
    // npm / yarn / pnpm.
    for (p, label) in [
        ("npm http ", "npm http"),
        ("npm timing ", "npm timing"),
        ("npm sill ", "npm verbose"),
        ("npm verb ", "npm verbose"),
        ("npm verbose ", "npm verbose"),
        ("npm info ", "npm verbose"),
        ("Progress: resolved ", "pnpm progress"),
        ("[#", "progress bar"),
        ("info fetch", "yarn fetch"),
        ("YN0000: ", "yarn progress"),
    ] {
        if t.starts_with(p) {
            return Some(label);
        }
    }
    // pip.
    for (p, label) in [
        ("Collecting ", "pip collect"),
        ("Downloading ", "pip download"),
        ("Using cached ", "pip download"),
        ("Obtaining ", "pip collect"),
        ("Requirement already satisfied: ", "already satisfied"),
        ("Preparing metadata", "pip build step"),
        ("Getting requirements to build", "pip build step"),
        ("Installing build dependencies", "pip build step"),
        ("Building wheel for ", "pip build step"),
        ("Created wheel for ", "pip build step"),
        ("Stored in directory: ", "pip build step"),
        ("Attempting uninstall: ", "pip uninstall step"),
        ("Found existing installation: ", "pip uninstall step"),
        ("Uninstalling ", "pip uninstall step"),
        ("Successfully uninstalled ", "pip uninstall step"),
        ("Looking in indexes: ", "pip index"),
        ("Looking in links: ", "pip index"),
    ] {
        if t.starts_with(p) {
            return Some(label);
        }
    }
    if is_bar(t) {
        return Some("progress bar");
    }
    // make, kbuild, ninja, cmake.
    if (t.starts_with("make[") || t.starts_with("make:"))
        && (t.contains("Entering directory") || t.contains("Leaving directory"))
    {
        return Some("make directory");
    }
    if t.starts_with('[') && t.contains('/') && t.contains("] ") && ninja_step(t) {
        return Some("build step");
    }
    // webpack module listings.
    if (t.starts_with("./")
        || t.starts_with("modules by ")
        || t.starts_with("cacheable modules")
        || t.starts_with("orphan modules"))
        && (t.contains("[built]") || t.contains("[code generated]") || t.contains(" KiB") || t.contains(" bytes"))
    {
        return Some("webpack modules");
    }
    // mix / hex / go modules.
    if t.starts_with("==> ") || t.starts_with("* Getting ") || t.starts_with("* Updating ") {
        return Some("deps");
    }
    if (t.starts_with("Generated ") && t.ends_with(" app")) || (t.starts_with("Compiling ") && t.contains(" file")) {
        return Some("Compiling");
    }
    if t.starts_with("go: downloading ") || t.starts_with("go: finding ") || t.starts_with("go: extracting ") {
        return Some("go download");
    }
    None
}

fn cargo_label(word: &str) -> &'static str {
    match word {
        "Downloaded" | "Downloading" | "Unpacking" => "Downloaded",
        "Compiling" | "Checking" | "Fresh" | "Building" | "Documenting" => "Compiling",
        _ => "cargo progress",
    }
}

/// A progress bar: mostly bar glyphs, optional sizes and rates.
fn is_bar(t: &str) -> bool {
    let bar = t.chars().filter(|c| matches!(c, '━' | '█' | '░' | '▓' | '▒' | '■' | '╸' | '╺' | '#' | '=')).count();
    bar >= 10
        && (t.contains('%')
            || t.contains("eta")
            || t.contains("/s")
            || t.contains(" kB")
            || t.contains(" MB")
            || bar * 2 > t.chars().count())
}

/// `[12/340] Building CXX object ...` (ninja, cmake).
fn ninja_step(t: &str) -> bool {
    let Some(inner) = t.strip_prefix('[').and_then(|r| r.split(']').next()) else { return false };
    let inner = inner.trim().trim_end_matches('%');
    inner.split('/').all(|n| n.trim().parse::<u32>().is_ok())
}

/// Whether the whole output reads like a build or install log.
pub fn detect(inp: &Input) -> bool {
    const SIGNS: &[&str] = &[
        "Compiling ",
        "Checking ",
        "Download",
        "Collecting ",
        "Requirement already",
        "npm ",
        "Progress: resolved",
        "━",
        "█",
        "[#",
        "make[",
        "make:",
        "] Building",
        "] Linking",
        "[built]",
        "modules by",
        "==> ",
        "* Getting",
        "Generated ",
        "go: ",
        "Using cached",
        "Installing",
        "YN0000",
    ];
    if !super::mentions(inp, SIGNS) {
        return false;
    }
    let lines = inp.len();
    let prog = (0..lines).filter(|&i| progress(inp.line(i)).is_some()).count();
    prog >= 5 && prog * 3 >= lines.min(300)
}

pub fn compress(inp: &Input) -> Option<(Vec<Cut>, String)> {
    let min = if inp.level == Level::Aggressive { 2 } else { 3 };
    let mut labels: Vec<&'static str> = Vec::new();
    let cuts = fold_runs(
        inp,
        min,
        |i| {
            let l = inp.line(i);
            if l.trim().is_empty() {
                Some("")
            } else {
                progress(l)
            }
        },
        |n, counts| {
            for (l, _) in counts {
                if !labels.contains(l) {
                    labels.push(l);
                }
            }
            format!("[tokenfold: {n} progress lines: {}]", count_list(counts))
        },
    );
    Some((cuts, format!("build progress ({})", labels.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::progress;

    #[test]
    fn progress_lines() {
        assert_eq!(progress("   Compiling tinycrate v0.1.0 (/tmp/tinycrate)"), Some("Compiling"));
        assert_eq!(progress("  Downloaded serde v1.0.200"), Some("Downloaded"));
        assert_eq!(progress("npm http fetch GET 200 https://registry.npmjs.org/qs 42ms"), Some("npm http"));
        assert_eq!(progress("Collecting idna<4,>=2.5 (from requests==2.31.0)"), Some("pip collect"));
        assert_eq!(
            progress("     ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 62.6/62.6 kB 240.4 MB/s eta 0:00:00"),
            Some("progress bar")
        );
        assert_eq!(progress("    Finished `test` profile [unoptimized] target(s) in 3.80s"), None);
        assert_eq!(progress("Successfully installed requests-2.31.0"), None);
        assert_eq!(progress("Compiling is slow today"), None);
        assert_eq!(progress("make[1]: Entering directory '/src/lib'"), Some("make directory"));
        assert_eq!(progress("[12/340] Building CXX object src/a.o"), Some("build step"));
    }
}
