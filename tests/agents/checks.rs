//! What a case must show once the agent has finished: each check returns a failure message, and
//! the figures worth printing (turns, tokens folded, what the header and the ledger said).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::clients::{Agent, Run};
use super::model::Seen;
use super::provider::{self, Dialect, Turn};
use super::sandbox;
use super::scenario::{self, long, Step, STEPS};
use super::tap::Exchange;

pub const SAVED_HEADER: &str = "x-tokenfold-saved-tokens";

/// What `tokenfold report --json` says about the case's ledger.
pub struct LedgerTotals {
    pub requests: u64,
    pub saved: u64,
    /// `mechanism: tokens` per fold mechanism.
    pub by_mechanism: Vec<String>,
    /// Clearing steps taken, and reads of cleared originals, per the ledger.
    pub clear_steps: u64,
    pub clear_recalls: u64,
}

pub struct Evidence<'a> {
    pub agent: Agent,
    /// The long session (`scenario::long`) rather than the five-step task.
    pub long: bool,
    /// The dialect the mock spoke (differs from the agent's when the proxy translated).
    pub upstream: Dialect,
    pub run: &'a Run,
    pub exchanges: &'a [Exchange],
    pub seen: &'a [Seen],
    pub repo: &'a Path,
    pub trace: Option<&'a str>,
    pub ledger: Result<LedgerTotals, String>,
}

#[derive(Default)]
pub struct Outcome {
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    pub figures: Vec<String>,
}

impl Outcome {
    fn fail(&mut self, check: &str, why: impl Into<String>) {
        self.failures.push(format!("{check}: {}", why.into()));
    }
}

/// A mock request together with the agent's original of it.
struct Pair<'a> {
    agent: &'a Exchange,
    agent_turn: Option<Turn>,
    mock: &'a Seen,
}

fn path_dialect(path: &str) -> Option<Dialect> {
    Dialect::from_path(path.split('?').next().unwrap_or(path))
}

fn pairs<'a>(e: &'a Evidence) -> Vec<Pair<'a>> {
    let mut out = Vec::new();
    for mock in e.seen {
        let Some(agent) = mock.seq.and_then(|s| e.exchanges.iter().find(|x| x.seq == s)) else { continue };
        let agent_turn = path_dialect(&agent.path).and_then(|d| provider::parse(d, &agent.path, &agent.body).ok());
        out.push(Pair { agent, agent_turn, mock });
    }
    out.sort_by_key(|p| p.agent.seq);
    out
}

pub fn check(e: &Evidence) -> Outcome {
    let mut o = Outcome::default();
    let all = pairs(e);
    let main: Vec<&Pair> = all.iter().filter(|p| p.mock.main).collect();
    o.figures.push(format!("{} requests ({} in the task)", e.exchanges.len(), main.len()));
    finished(e, &mut o);
    answered(e, &all, &mut o);
    if e.long {
        long_session(e, &main, &mut o);
    } else {
        script(e, &main, &mut o);
        append_only(e, &main, &mut o);
        reread_and_error_line(&main, &mut o);
    }
    folding(e, &all, &mut o);
    prompt_cache(e, &main, &mut o);
    network(e, &mut o);
    o
}

/// On an Anthropic upstream the simulated prompt cache must be read on every task turn after the
/// first: the agent's own breakpoints (Claude Code) or those the proxy adds to a translated
/// request (Codex, OpenCode).
fn prompt_cache(e: &Evidence, main: &[&Pair], o: &mut Outcome) {
    if e.upstream != Dialect::Anthropic {
        return;
    }
    let billed: Vec<_> = main.iter().filter_map(|p| p.mock.billed).collect();
    if billed.len() != main.len() || billed.is_empty() {
        o.fail(
            "prompt cache",
            format!("{} of {} task requests were billed by the cache mock", billed.len(), main.len()),
        );
        return;
    }
    let missed: Vec<usize> =
        billed.iter().enumerate().skip(1).filter(|(_, b)| b.cache_read == 0).map(|(i, _)| i + 1).collect();
    if !missed.is_empty() {
        let shown: Vec<String> =
            billed.iter().map(|b| format!("r{}/w{}/i{}", b.cache_read, b.cache_write, b.input)).collect();
        o.fail(
            "prompt cache",
            format!("no cache read on task turns {missed:?} (read/write/input: {})", shown.join(" ")),
        );
    }
    let paid: f64 = billed.iter().map(|b| b.billed_equivalent()).sum();
    let all: u64 = billed.iter().map(|b| b.total_input()).sum();
    o.figures.push(format!(
        "prompt cache read on {} of {} later turns, billed input {:.2}x uncached",
        billed.len() - 1 - missed.len(),
        billed.len() - 1,
        paid / all.max(1) as f64
    ));
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Exit 0 within the limit, the scripted final answer, and the edit on disk.
fn finished(e: &Evidence, o: &mut Outcome) {
    let r = e.run;
    o.figures.push(format!("agent ran {:.1} s", r.elapsed.as_secs_f64()));
    if r.timed_out {
        o.fail("exit", format!("the agent did not finish in time; stderr:\n{}", tail(&r.stderr, 15)));
    } else if r.code != Some(0) {
        o.fail("exit", format!("exit code {:?}; stderr:\n{}", r.code, tail(&r.stderr, 15)));
    }
    let expected = if e.long { long::FINAL_ANSWER } else { scenario::FINAL_ANSWER };
    match e.agent.final_answer(&r.stdout) {
        Some(a) if a.contains(expected) => {}
        Some(a) => o.fail("answer", format!("the agent ended with {a:?}, not the scripted final answer")),
        None => o.fail("answer", format!("no final answer in the agent's output:\n{}", tail(&r.stdout, 10))),
    }
    if e.long {
        return;
    }
    match scenario::edited_file(e.repo) {
        Ok(text) if text.lines().any(|l| l == scenario::NEW_LINE) && !text.contains(scenario::OLD_LINE) => {}
        Ok(_) => o.fail("edit", format!("{} on disk does not have `{}`", scenario::FILE, scenario::NEW_LINE)),
        Err(err) => o.fail("edit", format!("{}: {err}", scenario::FILE)),
    }
}

/// The proxy answered every request the agent sent without an error of its own, and forwarded
/// each one that it did not answer itself.
fn answered(e: &Evidence, all: &[Pair], o: &mut Outcome) {
    for x in e.exchanges {
        if let Some(err) = &x.error {
            o.fail("proxy", format!("request {} ({} {}): the proxy was unreachable: {err}", x.seq, x.method, x.path));
        } else if x.status >= 400 {
            let body = x.error_body.as_deref().unwrap_or("");
            o.fail(
                "proxy",
                format!("request {} ({} {}) got {} from the proxy: {body}", x.seq, x.method, x.path, x.status),
            );
        } else if !all.iter().any(|p| p.agent.seq == x.seq) {
            o.notes.push(format!("request {} ({} {}) was answered by the proxy itself", x.seq, x.method, x.path));
        }
    }
    let unmatched = e.seen.iter().filter(|s| s.seq.is_none()).count();
    if unmatched > 0 {
        o.fail("proxy", format!("{unmatched} request(s) reached the mock without the tap's sequence header"));
    }
}

/// Every step of the script was played, none aborted.
fn script(e: &Evidence, main: &[&Pair], o: &mut Outcome) {
    for s in e.seen.iter().filter_map(|s| s.abort.as_ref()) {
        o.fail("script", s.clone());
    }
    let played: BTreeSet<usize> = main.iter().filter_map(|p| p.mock.turn.as_ref().map(|t| t.results.len())).collect();
    let missing: Vec<Step> = STEPS.iter().enumerate().filter(|(i, _)| !played.contains(i)).map(|(_, s)| *s).collect();
    if !missing.is_empty() {
        o.fail("script", format!("the mock never answered steps {missing:?}"));
    }
    // Tools the agent offered that never reached the model (translation drops what the target
    // dialect cannot express): worth knowing, not a failure.
    let names = |t: Option<&Turn>| -> BTreeSet<String> {
        t.map(|t| t.tools.iter().map(|x| x.name.clone()).collect()).unwrap_or_default()
    };
    let dropped: BTreeSet<String> = main
        .iter()
        .flat_map(|p| {
            let upstream = names(p.mock.turn.as_ref());
            names(p.agent_turn.as_ref()).into_iter().filter(move |n| !upstream.contains(n))
        })
        .collect();
    if !dropped.is_empty() {
        let list: Vec<String> = dropped.into_iter().collect();
        o.notes.push(format!("tools the agent offered that the model was not shown: {}", list.join(", ")));
    }
    let side = e.seen.iter().filter(|s| !s.main).count();
    if side > 0 {
        o.notes.push(format!("{side} request(s) outside the task (title generation and the like) got a short answer"));
    }
}

/// Removes `cache_control` everywhere: clients move it to the newest turn on every request. A
/// content array of one text block then equals the plain string (Claude Code sends the block
/// while it carries `cache_control` and the string afterwards).
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out: serde_json::Map<String, Value> =
                m.iter().filter(|(k, _)| *k != "cache_control").map(|(k, v)| (k.clone(), normalized(v))).collect();
            if let Some(Value::Array(parts)) = out.get("content") {
                if let [Value::Object(p)] = &parts[..] {
                    if p.len() == 2 && p.get("type") == Some(&Value::from("text")) {
                        if let Some(text) = p.get("text").cloned() {
                            out.insert("content".into(), text);
                        }
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn first_difference(prev: &[Value], cur: &[Value]) -> Option<usize> {
    if cur.len() < prev.len() {
        return Some(cur.len());
    }
    prev.iter().zip(cur).position(|(a, b)| normalized(a) != normalized(b))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

/// Each task request the mock received extends the previous one: earlier items unchanged. Where
/// the agent itself changed an earlier item, that pair says nothing about folding and is skipped.
fn append_only(e: &Evidence, main: &[&Pair], o: &mut Outcome) {
    let same_dialect = e.agent.dialect() == e.upstream;
    let (mut checked, mut agent_rewrote) = (0, 0);
    for w in main.windows(2) {
        let (Some(mp), Some(mc)) = (&w[0].mock.turn, &w[1].mock.turn) else { continue };
        let (Some(ap), Some(ac)) = (&w[0].agent_turn, &w[1].agent_turn) else { continue };
        let agent_diff = first_difference(&ap.items, &ac.items);
        let mock_diff = first_difference(&mp.items, &mc.items);
        checked += 1;
        match (agent_diff, mock_diff) {
            (_, None) => {}
            (None, Some(i)) => {
                o.fail(
                    "append-only",
                    format!(
                        "request {} changed item {i} of request {} although the agent sent it unchanged:\nbefore: {}\nafter:  {}",
                        w[1].agent.seq,
                        w[0].agent.seq,
                        mp.items.get(i).map(short).unwrap_or_default(),
                        mc.items.get(i).map(short).unwrap_or_default()
                    ),
                );
            }
            (Some(a), Some(m)) if same_dialect && m < a => {
                o.fail(
                    "append-only",
                    format!(
                        "request {}: item {m} changed upstream while the agent's first change is item {a}",
                        w[1].agent.seq
                    ),
                );
            }
            (Some(a), Some(_)) => {
                agent_rewrote += 1;
                o.notes.push(format!(
                    "the agent itself rewrote item {a} between requests {} and {}",
                    w[0].agent.seq, w[1].agent.seq
                ));
            }
        }
    }
    let expected = STEPS.len() - 1;
    if checked < expected {
        o.fail("append-only", format!("only {checked} consecutive task requests to compare, expected {expected}"));
    }
    if agent_rewrote * 2 > checked {
        o.fail(
            "append-only",
            format!("the agent rewrote its history in {agent_rewrote} of {checked} turns: nothing left to check"),
        );
    }
    o.figures.push(format!("append-only over {checked} turns"));
}

/// The re-read after the edit shows the new line; the long output's error line arrived verbatim.
fn reread_and_error_line(main: &[&Pair], o: &mut Outcome) {
    let result = |n: usize| {
        main.iter().find_map(|p| p.mock.turn.as_ref().filter(|t| t.results.len() > n).map(|t| t.results[n].clone()))
    };
    let reread_index = STEPS.iter().position(|s| *s == Step::ReRead).unwrap_or(2);
    match result(reread_index) {
        Some(r) if r.contains(scenario::NEW_LINE) && !r.contains(scenario::OLD_LINE) => {}
        Some(r) => o.fail(
            "re-read",
            format!("the re-read as the model saw it lacks `{}`: {}", scenario::NEW_LINE, tail(&r, 8)),
        ),
        None => o.fail("re-read", "the mock never received the re-read's result"),
    }
    let run_index = STEPS.iter().position(|s| *s == Step::Run).unwrap_or(4);
    match result(run_index) {
        Some(r) if r.lines().any(|l| l.trim_end() == scenario::ERROR_LINE) => {
            let lines = r.lines().count();
            o.figures.push(format!("check.sh output reached the model as {lines} lines"));
        }
        Some(r) => o.fail(
            "error line",
            format!("`{}` is not a line of the output the model saw:\n{}", scenario::ERROR_LINE, tail(&r, 8)),
        ),
        None => o.fail("error line", "the mock never received check.sh's output"),
    }
}

/// The tool output text of a request item, if it is one (any dialect).
fn output_text(item: &Value) -> Option<String> {
    for part in item["content"].as_array().into_iter().flatten() {
        if part["type"] == "tool_result" {
            return Some(provider::text_of(&part["content"]));
        }
    }
    if item["role"] == "tool" {
        return Some(provider::text_of(&item["content"]));
    }
    // Gemini: a content whose parts answer calls.
    for part in item["parts"].as_array().into_iter().flatten() {
        if let Some(r) = part.get("functionResponse") {
            return Some(provider::text_of(&r["response"]["output"]));
        }
    }
    matches!(item["type"].as_str(), Some("function_call_output" | "custom_tool_call_output"))
        .then(|| provider::text_of(&item["output"]))
}

/// Gemini CLI escapes `<`, `>` and `&` of the tags it wraps shell output in when they appear in the
/// output itself (here: the stored original it cats back, which holds the tags of its first run).
fn unescape_tags(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The long session: a clearing step happened (old outputs became stubs, and nothing else changed
/// in what the agent had sent before), the agent read a stub's original back with the command
/// the stub gave, and the model received that original byte for byte (it is the agent's own
/// earlier tool output, as the agent sent it); the ledger counted the step and the recall.
fn long_session(e: &Evidence, main: &[&Pair], o: &mut Outcome) {
    for s in e.seen.iter().filter_map(|s| s.abort.as_ref()) {
        o.fail("script", s.clone());
    }
    let mut steps = 0;
    for w in main.windows(2) {
        let (Some(mp), Some(mc)) = (&w[0].mock.turn, &w[1].mock.turn) else { continue };
        let (Some(ap), Some(ac)) = (&w[0].agent_turn, &w[1].agent_turn) else { continue };
        if first_difference(&ap.items, &ac.items).is_some() {
            continue;
        }
        let changed: Vec<usize> = (0..mp.items.len().min(mc.items.len()))
            .filter(|&i| normalized(&mp.items[i]) != normalized(&mc.items[i]))
            .collect();
        if changed.is_empty() {
            continue;
        }
        steps += 1;
        for i in changed {
            if !output_text(&mc.items[i]).is_some_and(|t| long::is_stub(&t)) {
                o.fail(
                    "append-only",
                    format!(
                        "request {} changed item {i}, which is not a cleared tool output: {}",
                        w[1].agent.seq,
                        short(&mc.items[i])
                    ),
                );
            }
        }
    }
    o.figures.push(format!("{steps} clearing step(s) seen between requests"));
    if steps == 0 {
        o.fail("clearing", "no request cleared an earlier tool output");
    }
    // The request whose newest result is the read-back: the original as the agent sent it
    // earlier, a stub as the model last saw it, and the read-back holding the original whole.
    let recall = main.iter().find_map(|p| {
        let (mock, agent) = (p.mock.turn.as_ref()?, p.agent_turn.as_ref()?);
        let i = mock.results.len().checked_sub(1)?;
        let k = long::part_shown(&mock.results[i]).filter(|&k| k < i)?;
        Some((p.agent.seq, k, agent.results.get(k)?.clone(), mock.results[k].clone(), mock.results[i].clone()))
    });
    match recall {
        None => o.fail("recall", "the agent never read a cleared output's original back"),
        Some((seq, k, original, stub, read_back)) => {
            if !long::is_stub(&stub) {
                o.fail("recall", format!("request {seq}: part {k} reached the model whole, not as a stub"));
            }
            if long::is_stub(&original) || !original.contains(&long::first_line(k)) {
                o.fail("recall", format!("request {seq}: the agent's own part {k} is not the original output"));
            }
            if !read_back.contains(&original) && !unescape_tags(&read_back).contains(&original) {
                o.fail("recall", format!("request {seq}: the read-back of part {k} is not the original byte for byte"));
            }
            o.figures.push(format!(
                "part {k} cleared to a {}-byte stub, its {}-byte original read back whole",
                stub.len(),
                original.len()
            ));
        }
    }
    match &e.ledger {
        Ok(l) if l.clear_steps == 0 || l.clear_recalls == 0 => o.fail(
            "ledger",
            format!("clear shows {} steps and {} recalls, expected both", l.clear_steps, l.clear_recalls),
        ),
        Ok(l) => o.figures.push(format!("ledger clear: {} steps, {} recalls", l.clear_steps, l.clear_recalls)),
        Err(_) => {}
    }
}

fn tool_tokens(t: Option<&Turn>) -> u64 {
    t.map(|t| t.results.iter().map(|r| tokenfold::tokens::count(r)).sum()).unwrap_or(0)
}

/// Folding happened and was reported: the mock saw fewer tokens than the agent sent, by about what
/// `x-tokenfold-saved-tokens` said; the ledger agrees with the headers; nothing unfolded changed.
fn folding(e: &Evidence, all: &[Pair], o: &mut Outcome) {
    let same_dialect = e.agent.dialect() == e.upstream;
    let (mut header_sum, mut body_diff, mut folded_requests) = (0u64, 0i64, 0);
    for p in all {
        let saved = match p.agent.response_header(SAVED_HEADER).map(|v| v.parse::<u64>()) {
            Some(Ok(n)) => n,
            Some(Err(_)) | None => {
                o.fail(
                    "header",
                    format!("the response to request {} ({}) has no valid {SAVED_HEADER}", p.agent.seq, p.agent.path),
                );
                continue;
            }
        };
        header_sum += saved;
        let (sent, seen) = (tool_tokens(p.agent_turn.as_ref()), tool_tokens(p.mock.turn.as_ref()));
        if seen > sent {
            o.fail("folding", format!("request {}: tool results grew from {sent} to {seen} tokens", p.agent.seq));
        }
        if saved > 0 {
            folded_requests += 1;
            if seen >= sent {
                o.fail(
                    "folding",
                    format!(
                        "request {}: the header says {saved} saved but tool results went {sent} -> {seen} tokens",
                        p.agent.seq
                    ),
                );
            }
        } else if same_dialect && p.agent.body != p.mock.body && !only_breakpoints_added(e, p) {
            o.fail(
                "passthrough",
                format!("request {}: nothing folded, yet the body the mock got differs from the agent's", p.agent.seq),
            );
        }
        if same_dialect {
            let agent_tokens = tokenfold::tokens::count(&String::from_utf8_lossy(&p.agent.body)) as i64;
            let mock_tokens = tokenfold::tokens::count(&String::from_utf8_lossy(&p.mock.body)) as i64;
            body_diff += agent_tokens - mock_tokens;
        }
    }
    if header_sum == 0 {
        o.fail(
            "folding",
            "no response said any token was saved: neither the re-read nor the long command output folded",
        );
    }
    if same_dialect && header_sum > 0 {
        // The header is an estimate (4 bytes a token of text, 2 of a marker); o200k counts differ.
        let ratio = body_diff as f64 / header_sum as f64;
        if !(0.25..=4.0).contains(&ratio) {
            o.fail(
                "folding",
                format!("the mock saw {body_diff} fewer tokens than the agent sent, the headers said {header_sum}"),
            );
        }
        o.figures.push(format!("mock saw {body_diff} fewer o200k tokens than the agent sent"));
    }
    o.figures.push(format!("{SAVED_HEADER} summed {header_sum} over {folded_requests} folded requests"));
    match &e.ledger {
        Ok(l) => {
            if l.saved != header_sum {
                o.fail(
                    "ledger",
                    format!("the ledger says {} tokens saved, the response headers {header_sum}", l.saved),
                );
            }
            let proxied = all.len() as u64;
            if l.requests < proxied {
                o.fail("ledger", format!("the ledger has {} requests, the mock received {proxied}", l.requests));
            }
            o.figures.push(format!(
                "ledger: {} requests, {} tokens saved ({})",
                l.requests,
                l.saved,
                l.by_mechanism.join(", ")
            ));
        }
        Err(err) => o.fail("ledger", err.clone()),
    }
}

/// An Anthropic request without breakpoints of its own reaches the provider with the proxy's:
/// the same request once `cache_control` is set aside.
fn only_breakpoints_added(e: &Evidence, p: &Pair) -> bool {
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).ok();
    e.upstream == Dialect::Anthropic
        && !String::from_utf8_lossy(&p.agent.body).contains("\"cache_control\"")
        && parse(&p.agent.body).map(|v| normalized(&v)) == parse(&p.mock.body).map(|v| normalized(&v))
}

fn network(e: &Evidence, o: &mut Outcome) {
    let Some(trace) = e.trace else {
        o.fail("network", "no strace log");
        return;
    };
    let attempts = sandbox::non_loopback_attempts(trace);
    if !attempts.is_empty() {
        o.fail("network", format!("the agent tried non-loopback addresses:\n{}", attempts.join("\n")));
    }
    let calls = sandbox::inet_calls(trace);
    if calls == 0 {
        o.fail("network", "strace recorded no inet call at all (not even to the proxy): the trace is not working");
    }
    o.figures.push(format!("{calls} traced inet socket calls"));
}

/// Self-checks of the history comparison, run before the cases (a comparator that finds nothing
/// would pass any proxy).
pub fn self_check() -> Result<(), String> {
    let v = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    let a = v(r#"{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}"#);
    let a_moved = v(r#"{"role":"user","content":"hi"}"#);
    let b = v(
        r#"{"role":"assistant","content":[{"type":"text","text":"ok"},{"type":"tool_use","id":"t","name":"Read","input":{}}]}"#,
    );
    let b_changed = v(
        r#"{"role":"assistant","content":[{"type":"text","text":"ok!"},{"type":"tool_use","id":"t","name":"Read","input":{}}]}"#,
    );
    let c = v(r#"{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"x"}]}"#);
    let cases = [
        (vec![a.clone(), b.clone()], vec![a_moved.clone(), b.clone(), c.clone()], None),
        (vec![a.clone(), b.clone()], vec![a.clone(), b_changed, c.clone()], Some(1)),
        (vec![a.clone(), b.clone()], vec![a.clone()], Some(1)),
        (vec![a, b], vec![c.clone(), c], Some(0)),
    ];
    for (i, (prev, cur, want)) in cases.iter().enumerate() {
        let got = first_difference(prev, cur);
        if got != *want {
            return Err(format!("the history comparison is broken (case {i}: {got:?}, expected {want:?})"));
        }
    }
    Ok(())
}
