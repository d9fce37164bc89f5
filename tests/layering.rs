//! The house's floors: which room (a top-level module of `src/`) may import which. The test reads
//! every `crate::…` path (in `use` lines and inline) and every `super::` that climbs out of a room,
//! and fails on an import the table does not allow, on a cycle, and on a room the table does not
//! place yet.
//!
//! From the ground up:
//! - `dialect`, `tokens`, `files.rs` (the on-disk helpers: private files, locks), `table.rs` (the
//!   terminal tables of `report`, `pool` and `replay`) and `shared` (the Redis connection of a
//!   team gateway) import no other room;
//! - `price` knows `dialect`'s usage; `fold` works on `dialect`'s blocks;
//! - `config` validates the file into the other rooms' settings (`fold::Level`, …), so it sits
//!   above `fold`;
//! - `pool` and `ledger` both read `config` and never each other;
//! - `cache` plans the prompt cache for one attempt: above `config` and `pool`, below `server`;
//! - `replay` runs `fold` over transcripts;
//! - `server` may import everyone, and no one imports `server`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each room and the rooms it may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("dialect", &[]),
    ("tokens", &[]),
    ("files", &[]),
    ("shared", &[]),
    ("table", &[]),
    ("price", &["dialect"]),
    ("fold", &["dialect", "tokens", "files", "price", "shared"]),
    ("config", &["dialect", "fold", "price"]),
    ("pool", &["config", "dialect", "files", "price", "shared", "table"]),
    ("ledger", &["config", "dialect", "files", "price", "table"]),
    ("cache", &["config", "dialect", "pool", "price", "tokens"]),
    ("replay", &["dialect", "fold", "tokens", "price", "files", "table"]),
    (
        "server",
        &[
            "cache", "config", "dialect", "files", "fold", "ledger", "pool", "price", "replay", "shared", "table",
            "tokens",
        ],
    ),
];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/`: `pool/admission/mod.rs` -> [pool, admission].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a file without `//` comments (doc comments may name other rooms freely).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.split("//").next().unwrap_or(""))).filter(|(_, l)| !l.is_empty())
}

/// The first identifier of `s`.
fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The rooms `line` (in module `module`) reaches: `crate::room`, or `super::` chains that climb
/// to the crate root and go down into a room.
fn rooms_named(line: &str, module: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let before = line[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || "_:$".contains(c)) {
            continue; // `$crate::`, `some_crate::` or a longer path
        }
        let rest = &line[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b}`: the first segment of each item (one line is enough in this tree).
            let group = group.split('}').next().unwrap_or("");
            out.extend(group.split(',').map(|item| ident(item.trim()).to_string()).filter(|s| !s.is_empty()));
        } else {
            out.push(ident(rest).to_string());
        }
    }
    for (at, _) in line.match_indices("super::") {
        if line[..at].ends_with("super::") || line[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric()) {
            continue; // counted from the first `super` of the chain
        }
        let mut rest = &line[at..];
        let mut depth = module.len();
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            depth = depth.saturating_sub(1);
        }
        if depth == 0 {
            out.push(ident(rest).to_string());
        }
    }
    out
}

/// room -> rooms it imports, with one place each import is written.
fn imports(src: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let rooms: BTreeSet<String> =
        files.iter().filter_map(|f| module_path(f.strip_prefix(src).ok()?).first().cloned()).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let module = module_path(rel);
        let Some(room) = module.first().cloned() else { continue };
        if room == "lib" || room == "main" {
            continue; // the crate root declares the rooms; main.rs is a client of the library
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let entry = graph.entry(room.clone()).or_default();
        for (n, line) in code_lines(&text) {
            // A `super::` path in an inline `mod tests` climbs one level less than counted here:
            // only names of rooms count, so `super::Pool` is never taken for a room.
            for other in rooms_named(line, &module).into_iter().filter(|r| rooms.contains(r)) {
                if other != room {
                    entry.entry(other).or_insert_with(|| format!("src/{}:{n}", rel.display()));
                }
            }
        }
    }
    graph
}

fn cycle(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    fn visit(
        room: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|r| r == room) {
            let mut c = path[i..].to_vec();
            c.push(room.to_string());
            return Some(c);
        }
        if done.contains(room) {
            return None;
        }
        path.push(room.to_string());
        for next in graph.get(room).into_iter().flat_map(|m| m.keys()) {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(room.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|r| visit(r, graph, &mut Vec::new(), &mut done))
}

#[test]
fn rooms_import_only_the_floors_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    // The reader sees real imports (a parser that finds nothing would pass everything).
    assert!(graph["server"].contains_key("pool") && graph["pool"].contains_key("config"), "{graph:?}");
    let mut wrong = Vec::new();
    for (room, imported) in &graph {
        let Some(may) = allowed.get(room.as_str()) else {
            wrong.push(format!("room `{room}` is not placed in tests/layering.rs's ALLOWED table"));
            continue;
        };
        for (other, at) in imported {
            if !may.contains(&other.as_str()) {
                wrong.push(format!("{at}: `{room}` imports `{other}`, which it may not"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    assert_eq!(cycle(&graph), None, "import cycle between rooms");
}

#[test]
fn the_table_itself_keeps_the_rules() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for (room, may) in &allowed {
        assert!(!may.contains(&"server"), "no one imports server, but {room} may");
    }
    assert!(allowed["dialect"].is_empty() && allowed["tokens"].is_empty());
    assert!(!allowed["pool"].contains(&"ledger") && !allowed["ledger"].contains(&"pool"));
    let table: BTreeMap<String, BTreeMap<String, String>> = allowed
        .iter()
        .map(|(r, may)| (r.to_string(), may.iter().map(|m| (m.to_string(), String::new())).collect()))
        .collect();
    assert_eq!(cycle(&table), None, "the table itself has a cycle");
}

#[test]
fn the_reader_finds_crate_and_super_paths_and_skips_comments() {
    let m = |p: &str| module_path(Path::new(p));
    assert_eq!(rooms_named("use crate::pool::Attempt;", &m("cache/mod.rs")), ["pool"]);
    assert_eq!(rooms_named("use crate::{config::X, dialect};", &m("fold/mod.rs")), ["config", "dialect"]);
    assert_eq!(rooms_named("let z = crate::config::DayZone::utc();", &m("pool/x.rs")), ["config"]);
    assert_eq!(rooms_named("use super::super::server::X;", &m("ledger/a/b.rs")), Vec::<String>::new());
    assert_eq!(rooms_named("use super::server::X;", &m("ledger/mod.rs")), ["server"]);
    assert_eq!(rooms_named("use super::state::State;", &m("pool/admission/mod.rs")), Vec::<String>::new());
    assert_eq!(rooms_named("$crate::x and other_crate::y", &m("pool/x.rs")), Vec::<String>::new());
    let lines: Vec<_> = code_lines("// crate::server\nuse crate::dialect; // crate::server\n").collect();
    assert_eq!(lines, [(2, "use crate::dialect; ")]);
}
