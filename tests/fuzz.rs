//! Fuzzing the parsers a hostile client or provider reaches, for a bounded time under
//! `cargo test` (`TOKENFOLD_FUZZ_SECS` per target, default 2; `.ci/run` gives each longer).
//! The corpus is in fuzz/corpus/TARGET/; see fuzz/README.md.
//!
//! - envelope: the request scanner reads what serde reads, and accepts nothing serde rejects;
//! - fold: folding (locate, dedup, filters, splice) keeps the request JSON, changes only the
//!   contents of text blocks (every other byte stays), and decides the same in a fresh process;
//! - sse: the event splitter gives the same events however the stream is cut, and loses nothing;
//! - translate: request translation never panics, is deterministic, and keeps every text.

#[path = "fold_support/mod.rs"]
mod fold_support;
mod fuzz_support;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use arbitrary::Unstructured;
use bytes::Bytes;
use fuzz_support::{gen, skeleton};
use serde_json::Value;
use tokenfold::dialect::blocks as locate;
use tokenfold::dialect::envelope;
use tokenfold::dialect::sse::{find_event_end, SseEvent, SseSplitter};
use tokenfold::dialect::translate::{self, RequestOptions, StreamTranslator};
use tokenfold::dialect::{gemini, Dialect, RequestEnvelope};
use tokenfold::fold::{Folder, Level};

const DIALECTS: [Dialect; 4] = [Dialect::Anthropic, Dialect::OpenaiChat, Dialect::OpenaiResponses, Dialect::Gemini];
/// The model a generated Gemini request names in its URL.
const GEMINI_MODEL: &str = "gemini-fuzz";

/// Inputs starting like JSON text are used as they are (the corpus and its mutations); others
/// are fuzz bytes a generator reads a structured request from.
fn is_raw(first: u8) -> bool {
    matches!(first, b'{' | b'[' | b'"' | b' ' | b'\t' | b'\r' | b'\n')
}

#[test]
fn envelope() {
    fuzz_support::run("envelope", |input| {
        // A generated request in random spelling, or the raw bytes (mutated seeds).
        let body = match input.first() {
            Some(b) if !is_raw(*b) => {
                let mut u = Unstructured::new(input);
                let d = *u.choose(&DIALECTS).map_err(|e| e.to_string())?;
                match gen::request(&mut u, d) {
                    Ok(v) => gen::write(&mut u, &v),
                    Err(_) => return Ok(()),
                }
            }
            _ => input.to_vec(),
        };
        check_envelope(&body)
    });
}

fn check_envelope(body: &[u8]) -> Result<(), String> {
    let scanned = envelope::scan(body);
    let serde: Result<RequestEnvelope, _> = serde_json::from_slice(body);
    match (&scanned, &serde) {
        (Ok(s), Ok(e)) => {
            let (a, b) = (&s.envelope, e);
            let same = a.model == b.model
                && a.stream == b.stream
                && a.stream_options.as_ref().map(|o| o.include_usage)
                    == b.stream_options.as_ref().map(|o| o.include_usage)
                && a.max_tokens == b.max_tokens
                && a.max_completion_tokens == b.max_completion_tokens
                && a.max_output_tokens == b.max_output_tokens;
            if !same {
                return Err(format!("the scanner read {a:?}, serde {b:?}"));
            }
            // Lone surrogates in other fields: the envelope reads, a `Value` does not (item 5).
            let Ok(doc) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
            let tools = doc["tools"].as_array().and_then(|t| t.first()).is_some_and(Value::is_object);
            if s.has_tools != tools {
                return Err(format!("has_tools is {}, the body says {tools}", s.has_tools));
            }
            Ok(())
        }
        // Text that is not UTF-8, or a lone surrogate escape anywhere: the proxy refuses it as
        // serde refuses it in any string it reads (issue 15 item 5), even where serde skips it
        // for the envelope's own fields.
        (Err(_), Ok(_)) if std::str::from_utf8(body).is_err() || has_lone_surrogate_escape(body) => Ok(()),
        (Err(_), Ok(_)) => Err("the scanner refused a body serde reads".into()),
        (Ok(_), Err(e)) => Err(format!("the scanner took a body serde refuses ({e})")),
        (Err(_), Err(_)) => Ok(()),
    }
}

/// A `\uD800`-`\uDFFF` escape that is not a high surrogate followed by a low one.
fn has_lone_surrogate_escape(b: &[u8]) -> bool {
    let hex = |w: &[u8]| std::str::from_utf8(w).ok().and_then(|h| u16::from_str_radix(h, 16).ok());
    let mut i = 0;
    while i + 6 <= b.len() {
        if b[i] == b'\\' && b[i + 1] != b'u' {
            i += 2; // an escape pair such as `\\` or `\"`
            continue;
        }
        if b[i] == b'\\' {
            if let Some(u) = hex(&b[i + 2..i + 6]) {
                if (0xDC00..=0xDFFF).contains(&u) {
                    return true;
                }
                if (0xD800..=0xDBFF).contains(&u) {
                    let low =
                        b.get(i + 6..i + 12).filter(|w| w[0] == b'\\' && w[1] == b'u').and_then(|w| hex(&w[2..6]));
                    if !low.is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) {
                        return true;
                    }
                    i += 12;
                    continue;
                }
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    false
}

/// Bodies that folded: a run where nothing folds would check nothing.
static FOLDED: AtomicU64 = AtomicU64::new(0);

#[test]
fn fold() {
    fuzz_support::run("fold", |input| {
        let mut u = Unstructured::new(input);
        // Mutated seeds: the raw bytes of one request, folded as each dialect.
        if input.first().is_some_and(|b| is_raw(*b)) {
            for d in DIALECTS {
                check_fold(d, &[Bytes::copy_from_slice(input)], Level::Aggressive)?;
            }
            return Ok(());
        }
        let level = *u.choose(&[Level::Lossless, Level::Balanced, Level::Aggressive]).map_err(|e| e.to_string())?;
        // A conversation in the shapes agents send (turn by turn), spelled at random.
        let seed: u64 = u.arbitrary().map_err(|e| e.to_string())?;
        let (dialect, values) = match u.int_in_range(0..=3u8).map_err(|e| e.to_string())? {
            0 => convo(fold_support::claude_code(seed)),
            1 => convo(fold_support::swe_agent(seed)),
            _ => {
                let d = *u.choose(&DIALECTS).map_err(|e| e.to_string())?;
                match gen::request(&mut u, d) {
                    Ok(v) => (d, vec![v]),
                    Err(_) => return Ok(()),
                }
            }
        };
        let bodies: Vec<Bytes> = values.iter().map(|v| Bytes::from(gen::write(&mut u, v))).collect();
        check_fold(dialect, &bodies, level)
    });
    assert!(FOLDED.load(Relaxed) > 0, "no input folded: the splice was never checked");
}

fn convo(c: fold_support::Convo) -> (Dialect, Vec<Value>) {
    let values = c.bodies().iter().filter_map(|b| serde_json::from_slice(b).ok()).collect();
    (c.dialect, values)
}

/// Folds the turns in order with one folder, as a proxy does, and checks each answer.
fn check_fold(d: Dialect, bodies: &[Bytes], level: Level) -> Result<(), String> {
    let folder = Folder::new(true);
    let mut last = None;
    for body in bodies {
        let folded = folder.fold_at(d, body, level);
        if let Some(f) = &folded {
            FOLDED.fetch_add(1, Relaxed);
            check_splice(d, body, &f.body)?;
        }
        last = folded.map(|f| f.body);
    }
    // In-memory state is only a cache: a fresh process folds the last turn alone the same.
    if let Some(body) = bodies.last() {
        let fresh = Folder::new(true).fold_at(d, body, level).map(|f| f.body);
        if fresh != last {
            return Err(format!("a fresh folder folds the last turn differently ({d:?})"));
        }
    }
    Ok(())
}

/// The folded body of a JSON request is JSON, and differs from the original only inside text
/// blocks' strings. (A body that is no JSON never reaches folding: the server refuses it.)
fn check_splice(d: Dialect, before: &[u8], after: &[u8]) -> Result<(), String> {
    if serde_json::from_slice::<Value>(before).is_err() {
        return Ok(());
    }
    if serde_json::from_slice::<Value>(after).is_err() {
        return Err("the folded body is not JSON".into());
    }
    let (a, b) = (skeleton::of(before), skeleton::of(after));
    if a.bytes != b.bytes {
        return Err("folding changed bytes outside strings (key order, whitespace, numbers or escapes)".into());
    }
    let texts: Vec<std::ops::Range<usize>> = locate::locate(d, before)
        .map_err(|e| format!("{e:?}"))?
        .into_iter()
        .filter(|b| b.is_text())
        .map(|b| b.range)
        .collect();
    for (x, y) in a.strings.iter().zip(&b.strings) {
        if before[x.clone()] != after[y.clone()] && !texts.contains(x) {
            let shown = String::from_utf8_lossy(&before[x.clone()]);
            return Err(format!(
                "folding rewrote a string that is no text block: {}",
                shown.chars().take(80).collect::<String>()
            ));
        }
    }
    Ok(())
}

#[test]
fn sse() {
    fuzz_support::run("sse", |input| {
        // The stream, cut into chunks at positions the first bytes choose.
        let (cuts, stream) = input.split_at(input.len().min(4));
        let whole = split(&[stream]);
        let mut chunks = Vec::new();
        let mut at = 0;
        for (i, c) in cuts.iter().cycle().take(64).enumerate() {
            if at >= stream.len() {
                break;
            }
            let n = (*c as usize % 7 + 1) * (i % 3 + 1);
            chunks.push(&stream[at..(at + n).min(stream.len())]);
            at += n;
        }
        if at < stream.len() {
            chunks.push(&stream[at..]);
        }
        let cut = split(&chunks);
        if whole != cut {
            return Err(format!("cut into {} chunks the stream splits differently", chunks.len()));
        }
        let (events, rest) = whole;
        let joined: Vec<u8> = events.iter().flatten().chain(&rest).copied().collect();
        if joined != stream {
            return Err("events and remainder do not add up to the stream".into());
        }
        for e in &events {
            if find_event_end(e) != Some(e.len()) {
                return Err(format!("an event does not end at its first blank line: {:?}", String::from_utf8_lossy(e)));
            }
            let _ = SseEvent::parse(e);
        }
        if find_event_end(&rest).is_some() {
            return Err("the remainder holds a whole event".into());
        }
        // Every stream translation takes the same bytes without panicking.
        for (from, to) in pairs() {
            let mut t = StreamTranslator::new(from, to, "m");
            for c in &chunks {
                t.push(c);
            }
            t.finish();
        }
        Ok(())
    });
}

fn split(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut s = SseSplitter::new();
    let mut events = Vec::new();
    for c in chunks {
        s.push(c);
        while let Some(e) = s.next_event() {
            events.push(e.to_vec());
        }
    }
    (events, s.remainder().to_vec())
}

fn pairs() -> impl Iterator<Item = (Dialect, Dialect)> {
    DIALECTS.into_iter().flat_map(|a| DIALECTS.into_iter().map(move |b| (a, b))).filter(|(a, b)| a != b)
}

#[test]
fn translate() {
    fuzz_support::run("translate", |input| {
        if input.first().is_some_and(|b| is_raw(*b)) {
            // Raw bytes: no panic; an answer is a JSON object, the same every time.
            for (from, to) in pairs() {
                translate_twice(from, to, input, None)?;
            }
            return Ok(());
        }
        let mut u = Unstructured::new(input);
        let from = *u.choose(&DIALECTS).map_err(|e| e.to_string())?;
        let Ok(v) = gen::request(&mut u, from) else { return Ok(()) };
        let body = gen::write(&mut u, &v);
        let model = u.ratio(1, 3).unwrap_or(false).then_some("override-model");
        for to in DIALECTS.into_iter().filter(|&to| to != from) {
            let Some(out) = translate_twice(from, to, &body, model)? else {
                // Gemini refuses a request with nothing to send besides its system prompt.
                if to == Dialect::Gemini && texts(from, &without_system(&v)).is_empty() {
                    continue;
                }
                let why = translate::translate_request(from, to, &body, None).err().map(|e| e.to_string());
                return Err(format!(
                    "{from:?} -> {to:?} refused a valid request ({why:?}): {}",
                    String::from_utf8_lossy(&body)
                ));
            };
            // Every text the conversation holds reaches the target.
            let sent = strings(&out);
            for t in texts(from, &v) {
                if !sent.iter().any(|s| s.contains(t.as_str())) {
                    return Err(format!("{from:?} -> {to:?} lost the text {t:?}"));
                }
            }
            // A Gemini request names its model in the URL, and a Gemini target takes it there.
            let named = if from == Dialect::Gemini { Some(GEMINI_MODEL) } else { v["model"].as_str() };
            let want = model.or(named).map(str::to_string);
            if to != Dialect::Gemini && out["model"].as_str().map(str::to_string) != want {
                return Err(format!("{from:?} -> {to:?} sent model {} for {want:?}", out["model"]));
            }
        }
        Ok(())
    });
}

/// Translates twice; `Some` with the parsed answer when it translated.
fn translate_twice(from: Dialect, to: Dialect, body: &[u8], model: Option<&str>) -> Result<Option<Value>, String> {
    let call = gemini::Call::parse(&format!("/v1beta/models/{GEMINI_MODEL}:generateContent"), None);
    let opts = RequestOptions {
        model,
        target_reasoning: false,
        drop_prompt_cache_key: false,
        gemini: call.as_ref().filter(|_| from == Dialect::Gemini),
    };
    let one = translate::translate_request_with(from, to, body, &opts);
    let two = translate::translate_request_with(from, to, body, &opts);
    match (one, two) {
        (Ok(a), Ok(b)) if a == b => match serde_json::from_slice::<Value>(&a) {
            Ok(v) if v.is_object() => Ok(Some(v)),
            _ => Err(format!("{from:?} -> {to:?} answered with no JSON object")),
        },
        (Ok(_), Ok(_)) => Err(format!("{from:?} -> {to:?} is not deterministic")),
        (Err(_), Err(_)) => Ok(None),
        _ => Err(format!("{from:?} -> {to:?} answered once and refused once")),
    }
}

/// A generated request without its system prompt.
fn without_system(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["system", "instructions", "systemInstruction"] {
            o.remove(k);
        }
        // Chat's system prompt is its first message.
        if let Some(Value::Array(m)) = o.get_mut("messages") {
            m.retain(|x| !matches!(x["role"].as_str(), Some("system" | "developer")));
        }
    }
    v
}

/// Every string value in `v`, at any depth.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The texts of a generated request that must survive translation: what the user typed, what
/// the assistant said, tool outputs and the system prompt (trimmed, non-empty).
fn texts(d: Dialect, v: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let keys: &[&str] = match d {
        Dialect::Anthropic => &["text", "content"],
        Dialect::OpenaiChat => &["content"],
        Dialect::OpenaiResponses => &["text", "output", "content", "instructions"],
        Dialect::Gemini => &["text", "output"],
    };
    collect_texts(v, keys, &mut out);
    out.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

fn collect_texts(v: &Value, keys: &[&str], out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match x {
                    Value::String(s) if keys.contains(&k.as_str()) || k == "system" => out.push(s.clone()),
                    _ => collect_texts(x, keys, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_texts(x, keys, out)),
        _ => {}
    }
}
