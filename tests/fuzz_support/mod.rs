//! A small bounded fuzzer for `cargo test`. Each target first replays its corpus
//! (`fuzz/corpus/NAME/`), then for `TOKENFOLD_FUZZ_SECS` seconds (default 2) feeds its check
//! random inputs and mutations of the corpus from a seeded generator (`TOKENFOLD_FUZZ_SEED`
//! repeats a run). A failing input is saved under `target/fuzz-failures/NAME/` and the test fails
//! naming it. Checks take raw bytes (libFuzzer's convention: structured targets read them with
//! `arbitrary`), so the same functions can back coverage-guided targets.
#![allow(dead_code)]

pub mod gen;
pub mod skeleton;

use std::path::{Path, PathBuf};
use std::time::Instant;

/// A property over one input: `Err` says what broke.
pub type Check = fn(&[u8]) -> Result<(), String>;

/// Bytes that mean something to JSON, SSE or the scanners, spliced in by mutations.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\u",
    b"\\ud83d",
    b"\\udc00",
    b"\\ud83d\\ude00",
    b"\\u0000",
    b"1e999",
    b"-0",
    b"0.0",
    b"123456789012345678901234567890",
    b"null",
    b"true",
    b"\"model\":",
    b"\"stream\":",
    b"\"tools\":[{",
    b"\"type\":\"image\"",
    b"\"messages\":[",
    b"\"content\":",
    b"\n\n",
    b"\r\n\r\n",
    b"\r\r",
    b"\n",
    b"data: ",
    b"event: ",
    b"data: [DONE]\n\n",
    b":\n",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xf0\x9f\x98",
];

/// Replays the corpus of `name`, then fuzzes `check` for the time budget.
pub fn run(name: &str, check: Check) {
    let corpus = corpus(name);
    assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no seed inputs");
    for (path, input) in &corpus {
        if let Err(why) = attempt(check, input) {
            panic!("fuzz {name}: corpus file {} fails: {why}", path.display());
        }
    }
    let secs: f64 = std::env::var("TOKENFOLD_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let seed = std::env::var("TOKENFOLD_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    let seeds: Vec<&[u8]> = corpus.iter().map(|(_, b)| b.as_slice()).collect();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        let input = next_input(&mut rng, &seeds);
        n += 1;
        if let Err(why) = attempt(check, &input) {
            let saved = save_failure(name, &input);
            panic!(
                "fuzz {name}: input {n} of the run with TOKENFOLD_FUZZ_SEED={seed} fails: {why}\n  \
                 saved as {}; once fixed, add it to fuzz/corpus/{name}/",
                saved.display()
            );
        }
    }
    eprintln!(
        "fuzz {name}: {} corpus files and {n} generated inputs in {:.1} s (TOKENFOLD_FUZZ_SEED={seed})",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Runs one input; a panic in the code under test is a failure like any other.
fn attempt(check: Check, input: &[u8]) -> Result<(), String> {
    match std::panic::catch_unwind(|| check(input)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!("panicked: {}", msg.unwrap_or_default()))
        }
    }
}

fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(name)
}

fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(name))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files.into_iter().filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b))).collect()
}

fn save_failure(name: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../fuzz-failures").join(name);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(&blake3::hash(input).to_hex()[..16]);
    let _ = std::fs::write(&path, input);
    path
}

/// Random bytes (what structured targets mostly read), a mutated seed, or two seeds crossed.
fn next_input(rng: &mut fastrand::Rng, seeds: &[&[u8]]) -> Vec<u8> {
    let pick = |rng: &mut fastrand::Rng| seeds[rng.usize(..seeds.len())].to_vec();
    match rng.u8(..8) {
        0 | 1 => (0..rng.usize(..2048)).map(|_| rng.u8(..)).collect(),
        2 => {
            let (a, b) = (pick(rng), pick(rng));
            let (i, j) = (rng.usize(..=a.len()), rng.usize(..=b.len()));
            let mut out = [&a[..i], &b[j..]].concat();
            mutate(rng, &mut out, 1);
            out
        }
        _ => {
            let mut out = pick(rng);
            let ops = rng.usize(1..=6);
            mutate(rng, &mut out, ops);
            out
        }
    }
}

fn mutate(rng: &mut fastrand::Rng, b: &mut Vec<u8>, ops: usize) {
    for _ in 0..ops {
        let at = rng.usize(..=b.len());
        match rng.u8(..7) {
            0 if !b.is_empty() => {
                let i = rng.usize(..b.len());
                b[i] ^= 1 << rng.u8(..8);
            }
            1 => b.insert(at, rng.u8(..)),
            2 if at < b.len() => {
                let end = (at + rng.usize(1..=16)).min(b.len());
                b.drain(at..end);
            }
            3 if at < b.len() => {
                let end = (at + rng.usize(1..=64)).min(b.len());
                let copy = b[at..end].to_vec();
                let to = rng.usize(..=b.len());
                b.splice(to..to, copy);
            }
            4 => b.truncate(at),
            _ => {
                let t = TOKENS[rng.usize(..TOKENS.len())];
                b.splice(at..at, t.iter().copied());
            }
        }
    }
}
