//! The fold invariants on every turn of every conversation of the shared corpus of real
//! transcripts, and determinism across processes. Skips (with a note) when the corpus is absent.

mod fold_support;

use std::collections::HashMap;
use std::process::Command;

use bytes::Bytes;
use fold_support::{corpus_root, strip_numbers, texts};
use tokenfold::dialect::blocks::{Block, Kind};
use tokenfold::fold::{shapes, EditNote, Folder, Levers};
use tokenfold::replay::{measure, sources, Counter, Setup};
use xxhash_rust::xxh3::xxh3_64;

const DIRS: [&str; 5] =
    ["claude-code_spotter", "swe-agent", "aider_friendly-names", "codex-format-sample", "gemini-cli_gemini-cli"];

/// Every `old_string` / `old_str` an edit call passes in the conversation, with the first turn
/// whose request holds the call (the agent chose it after seeing the requests before).
fn edit_anchors(c: &sources::Conversation) -> Vec<(String, usize)> {
    let mut out: HashMap<String, usize> = HashMap::new();
    for (t, body) in c.turns.iter().enumerate() {
        for (b, text) in texts(c.dialect, body) {
            // Aider's SEARCH/REPLACE blocks: the SEARCH part must match the file exactly.
            if let (Kind::AssistantText, Some(said)) = (b.kind, &text) {
                for part in said.split("<<<<<<< SEARCH\n").skip(1) {
                    if let Some(search) = part.split("\n=======").next().filter(|s| s.trim().len() >= 20) {
                        out.entry(search.to_string()).or_insert(t);
                    }
                }
            }
            if b.kind != Kind::ToolCall {
                continue;
            }
            let raw = &body[b.range.clone()];
            let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
            let v = match v.as_str() {
                Some(s) => serde_json::from_str(s).unwrap_or_default(),
                None => v,
            };
            let mut found = vec![v.get("old_string"), v.get("old_str"), v.get("search")];
            for e in v.get("edits").and_then(|e| e.as_array()).into_iter().flatten() {
                found.push(e.get("old_string"));
            }
            for s in found.into_iter().flatten().filter_map(|s| s.as_str()) {
                // Anchors of a line or two can legitimately recur anywhere; the interesting ones span lines.
                if s.trim().len() >= 20 {
                    out.entry(s.to_string()).or_insert(t);
                }
            }
        }
    }
    let mut v: Vec<(String, usize)> = out.into_iter().collect();
    v.sort();
    v
}

/// Where each edit's removed text sits in the block's original text, from the forwarded text.
fn edit_ranges(fwd: &str, edits: &[&EditNote]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut cursor, mut shift) = (0usize, 0isize);
    for e in edits {
        let at = fwd[cursor..].find(&*e.marker).map(|k| k + cursor).expect("marker is in the forwarded block");
        let start = (at as isize + shift) as usize;
        out.push(start..start + e.removed.len());
        shift += e.removed.len() as isize - e.marker.len() as isize;
        cursor = at + e.marker.len();
    }
    out
}

/// Numbers-stripped text and, per stripped byte, the original byte offset of its line start.
fn stripped_with_lines(t: &str) -> (String, Vec<(usize, usize)>) {
    let mut s = String::new();
    let mut map = Vec::new(); // (stripped line start, original line start)
    let mut at = 0;
    for line in t.split('\n') {
        map.push((s.len(), at));
        let body = match shapes::number_prefix(line) {
            Some((_, _, n)) => &line[n..],
            None => line,
        };
        s.push_str(body);
        s.push('\n');
        at += line.len() + 1;
    }
    (s, map)
}

struct Checker {
    counter: Counter,
    exact: HashMap<u64, u64>,
    markers_checked: u64,
    anchors_checked: u64,
    blocks_counted: u64,
    /// Anchors that are no longer reachable in one place.
    broken: Vec<String>,
}

impl Checker {
    fn tokens(&mut self, s: &str) -> u64 {
        *self.exact.entry(xxh3_64(s.as_bytes())).or_insert_with(|| tokenfold::tokens::count(s))
    }

    /// Checks the edits of block `k` (new in this turn) against the forwarded request.
    /// `anchors`: the ones the agent passes after this block was first sent.
    fn block(&mut self, ctx: &str, k: usize, r: &Req, edits: &[&EditNote], anchors: &[&str]) {
        let (Some(orig), Some(fwd)) = (&r.tin[k].1, &r.tout[k].1) else {
            panic!("{ctx}: an edited block is text");
        };
        assert!(self.tokens(fwd) <= self.tokens(orig), "{ctx}: block {k} grew");
        self.blocks_counted += 1;
        for e in edits {
            self.markers_checked += 1;
            assert!(e.source <= k, "{ctx}: marker points forward: {}", e.marker);
            // The pointed text is forwarded verbatim in this very request.
            let (src_in, src_fwd) = source_texts(r, e.source);
            let removed = strip_numbers(&e.removed);
            match &e.source_lines {
                Some(r) => {
                    let pointed = src_in.split('\n').collect::<Vec<_>>()[r.clone()].join("\n");
                    assert!(src_fwd.contains(&pointed), "{ctx}: pointed lines not verbatim: {}", e.marker);
                    assert_eq!(removed, strip_numbers(&pointed), "{ctx}: marker {}", e.marker);
                    if e.source == k {
                        assert!(!e.removed.is_empty() && fwd.contains(&pointed), "{ctx}: same-block source kept");
                    }
                }
                None => {
                    assert!(src_fwd.contains(&*e.removed), "{ctx}: whole/reminder source not verbatim: {}", e.marker)
                }
            }
        }
        // Edit anchors found in the original block stay reachable: verbatim in the forwarded block,
        // or inside one replaced span whose pointed source holds them verbatim.
        let (s_orig, lines_orig) = stripped_with_lines(orig);
        let s_fwd = strip_numbers(fwd);
        let ranges = edit_ranges(fwd, edits);
        for a in anchors {
            let Some(at) = s_orig.find(a) else { continue };
            self.anchors_checked += 1;
            if s_fwd.contains(a) {
                continue;
            }
            let line_of = |off: usize| lines_orig.partition_point(|&(s, _)| s <= off) - 1;
            let (l0, l1) = (line_of(at), line_of(at + a.len().saturating_sub(1)));
            let (o0, o1) = (lines_orig[l0].1, lines_orig[l1].1);
            let covering = ranges.iter().zip(edits).find(|(r, _)| r.start <= o0 && o1 < r.end.max(r.start + 1));
            let Some((_, e)) = covering else {
                let overlapping: Vec<usize> = ranges
                    .iter()
                    .zip(edits)
                    .filter(|(r, _)| r.start <= lines_orig[l1].1 && lines_orig[l0].1 < r.end)
                    .map(|(_, e)| e.source)
                    .collect();
                let in_src = overlapping.iter().any(|&s| strip_numbers(&source_texts(r, s).1).contains(a));
                let anywhere = r
                    .tout
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != k)
                    .any(|(_, (_, t))| t.as_deref().is_some_and(|t| strip_numbers(t).contains(a)));
                let covered = |l: usize| ranges.iter().any(|r| r.start <= lines_orig[l].1 && lines_orig[l].1 < r.end);
                let verb: Vec<usize> = (l0..=l1).filter(|&l| !covered(l)).collect();
                let ext = match (verb.first(), verb.last()) {
                    (Some(&f), Some(&g)) => format!("{}+{}", f - l0, l1 - g),
                    _ => "all".into(),
                };
                self.broken.push(format!("{ctx}: Edit anchor split by a marker in block {k} (in a pointed source: {in_src}, elsewhere: {anywhere}) ext {ext} of {} lines [{}]: {:?}", l1 - l0 + 1, clip(orig.lines().next().unwrap_or("")), clip(a)));
                continue;
            };
            let (_, src_fwd) = source_texts(r, e.source);
            if !strip_numbers(&src_fwd).contains(a) {
                self.broken.push(format!("{ctx}: anchor not at the pointed source of {}: {:?}", e.marker, clip(a)));
            }
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Original and forwarded text of block `k`: a text block, or what a call writes (calls are
/// forwarded byte for byte).
fn source_texts(r: &Req, k: usize) -> (String, String) {
    match (&r.tin[k].1, &r.tout[k].1) {
        (Some(i), Some(o)) => (i.clone(), o.clone()),
        _ => {
            let (bi, bo) = (&r.tin[k].0, &r.tout[k].0);
            assert_eq!(&r.body[bi.range.clone()], &r.out[bo.range.clone()], "a call's arguments are never rewritten");
            let v: serde_json::Value = serde_json::from_slice(&r.body[bi.range.clone()]).expect("call arguments");
            let v = match v.as_str() {
                Some(s) => serde_json::from_str(s).expect("arguments string"),
                None => v,
            };
            let t = shapes::call_content(&v).expect("a pointed call writes text").1.to_string();
            (t.clone(), t)
        }
    }
}

/// One turn's request, original and forwarded, with its located blocks.
struct Req<'a> {
    body: &'a [u8],
    out: &'a [u8],
    tin: Vec<(Block, Option<String>)>,
    tout: Vec<(Block, Option<String>)>,
}

/// Folds every turn of every corpus conversation with `levers`, checking on each: prefix
/// stability, markers pointing at text forwarded verbatim in that request, Edit anchors, and
/// tokens(out) <= tokens(in) per block. Anchor problems are collected, the rest panics.
fn check_corpus(root: &std::path::Path, levers: Levers) -> (Checker, u64) {
    let mut ck = Checker {
        counter: Counter::estimating(),
        exact: HashMap::new(),
        markers_checked: 0,
        anchors_checked: 0,
        blocks_counted: 0,
        broken: Vec::new(),
    };
    let mut turns = 0;
    for dir in DIRS {
        for c in sources::load(&root.join(dir)) {
            let anchors = edit_anchors(&c);
            let folder = Folder::with_levers(true, levers);
            let mut prev: Vec<(u64, Bytes)> = Vec::new(); // per block: input id, forwarded bytes
            for (t, body) in c.turns.iter().enumerate() {
                let ctx = format!("{dir}/{} turn {t}", c.name);
                let folded = folder.fold(c.dialect, body);
                let out = folded.as_ref().map(|f| f.body.clone()).unwrap_or_else(|| body.clone());
                let r = Req { body, out: &out, tin: texts(c.dialect, body), tout: texts(c.dialect, &out) };
                assert_eq!(r.tin.len(), r.tout.len(), "{ctx}: block structure kept");
                let cur: Vec<(u64, Bytes)> = r
                    .tin
                    .iter()
                    .zip(&r.tout)
                    .map(|((bi, _), (bo, _))| (tokenfold::replay::block_id(body, bi), out.slice(bo.range.clone())))
                    .collect();
                let same = prev.iter().zip(&cur).take_while(|(p, c)| p.0 == c.0).count();
                for (k, (p, c)) in prev.iter().zip(&cur).take(same).enumerate() {
                    assert_eq!(p.1, c.1, "{ctx}: re-sent block {k} forwarded differently (prefix broken)");
                }
                if let Some(f) = &folded {
                    // Blocks re-sent unchanged were checked when they were new.
                    for k in same..r.tin.len() {
                        let edits: Vec<&EditNote> = f.edits.iter().filter(|e| e.block == k).collect();
                        if !edits.is_empty() {
                            let later: Vec<&str> =
                                anchors.iter().filter(|(_, t0)| *t0 > t).map(|(a, _)| a.as_str()).collect();
                            ck.block(&ctx, k, &r, &edits, &later);
                        }
                    }
                }
                prev = cur;
                turns += 1;
            }
            let s = measure(&c, &mut ck.counter, &mut Setup { levers, ..Setup::default() });
            assert_eq!((s.prefix_blocks_changed, s.scratch_mismatches), (0, 0), "{dir}/{}", c.name);
        }
    }
    (ck, turns)
}

#[test]
fn corpus_invariants_on_every_turn() {
    let Some(root) = corpus_root() else {
        println!("note: ../shared/corpus is absent; corpus invariants skipped");
        return;
    };
    let (ck, turns) = check_corpus(&root, Levers::default());
    println!(
        "corpus: {turns} turns, {} markers, {} edited blocks counted, {} anchor occurrences checked",
        ck.markers_checked, ck.blocks_counted, ck.anchors_checked
    );
    assert!(ck.broken.is_empty(), "{} anchors broken:\n{}", ck.broken.len(), ck.broken.join("\n"));
    assert!(turns > 1000, "the corpus has over a thousand turns, got {turns}");
    assert!(ck.markers_checked > 100 && ck.anchors_checked > 10);
}

/// Why file views fold only as a whole: with spans inside views, real anchors the agents later
/// passed end up cut by a marker (and the check above sees it).
#[test]
fn spans_inside_file_views_would_cut_edit_anchors() {
    let Some(root) = corpus_root() else {
        println!("note: ../shared/corpus is absent; corpus anchor check skipped");
        return;
    };
    let levers = Levers::default().with("view-spans").expect("an opt-in lever");
    let (ck, _) = check_corpus(&root, levers);
    println!("with view-spans: {} of {} anchor occurrences cut", ck.broken.len(), ck.anchors_checked);
    assert!(!ck.broken.is_empty(), "the anchor check finds the cut anchors");
}

#[derive(serde::Deserialize)]
struct ReplayJson {
    sources: Vec<SourceJson>,
}
#[derive(serde::Deserialize)]
struct SourceJson {
    conversations: Vec<ConvJson>,
}
#[derive(serde::Deserialize)]
struct ConvJson {
    name: String,
    digest: String,
    turns: u64,
}

fn replay_digests(root: &std::path::Path) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenfold"));
    cmd.args(["replay", "--json", "--estimate"]);
    for d in DIRS {
        cmd.arg(root.join(d));
    }
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().expect("run tokenfold replay")
}

#[test]
fn forwarded_bodies_are_identical_across_processes() {
    let Some(root) = corpus_root() else {
        println!("note: ../shared/corpus is absent; cross-process determinism on the corpus skipped");
        return;
    };
    // Two separate processes at once, then this process: every conversation's digest agrees.
    let (a, b) = (replay_digests(&root), replay_digests(&root));
    let parse = |c: std::process::Child| -> Vec<(String, String, u64)> {
        let out = c.wait_with_output().expect("replay finishes");
        assert!(out.status.success(), "replay exits 0 (100% stable)");
        let r: ReplayJson = serde_json::from_slice(&out.stdout).expect("replay --json output");
        r.sources.into_iter().flat_map(|s| s.conversations).map(|c| (c.name, c.digest, c.turns)).collect()
    };
    let (da, db) = (parse(a), parse(b));
    assert_eq!(da, db, "digests differ between processes");
    assert!(da.len() > 40 && da.iter().all(|(_, d, _)| d.len() == 64));
    let mut counter = Counter::estimating();
    let mine: Vec<(String, String, u64)> = DIRS
        .iter()
        .flat_map(|d| sources::load(&root.join(d)))
        .map(|c| {
            let s = measure(&c, &mut counter, &mut Setup::default());
            (s.name, s.digest, s.turns)
        })
        .collect();
    assert_eq!(da, mine, "the binary and the library fold the same bytes");
}
