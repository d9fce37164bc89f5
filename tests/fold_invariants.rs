//! The fold invariants (DESIGN.md) on hand-built conversations: each test can fail.

mod fold_support;

use bytes::Bytes;
use fold_support::{claude_code, strip_numbers, swe_agent, texts, Convo};
use tokenfold::dialect::blocks::Kind;
use tokenfold::dialect::Dialect;
use tokenfold::fold::{Folded, Folder, Mechanism};

fn run(folder: &Folder, c: &Convo) -> Vec<(Bytes, Option<Folded>)> {
    c.bodies().into_iter().map(|b| (b.clone(), folder.fold(c.dialect, &b))).collect()
}

fn out(body: &Bytes, f: &Option<Folded>) -> Bytes {
    f.as_ref().map(|f| f.body.clone()).unwrap_or_else(|| body.clone())
}

fn convos() -> Vec<Convo> {
    (1..=4).flat_map(|s| [claude_code(s * 7919), swe_agent(s * 104_729)]).collect()
}

#[test]
fn something_folds_in_every_fixture() {
    for c in convos() {
        let res = run(&Folder::new(true), &c);
        let (_, last) = res.last().unwrap();
        let f = last.as_ref().expect("the last turn folds");
        assert!(f.saved_tokens > 0);
        assert!(f.edits.iter().any(|e| e.mechanism == Mechanism::Span), "span dedup fires");
        if c.dialect == Dialect::Anthropic {
            assert!(f.edits.iter().any(|e| e.mechanism == Mechanism::Reminder), "reminder dedup fires");
        }
    }
}

#[test]
fn prefix_is_stable_on_every_turn() {
    for c in convos() {
        let res = run(&Folder::new(true), &c);
        let mut prev: Option<Vec<(Option<String>, Option<String>)>> = None;
        for (body, f) in &res {
            let o = out(body, f);
            let tin = texts(c.dialect, body);
            let tout = texts(c.dialect, &o);
            assert_eq!(tin.len(), tout.len(), "folding keeps the block structure");
            let cur: Vec<_> = tin.into_iter().zip(tout).map(|((_, a), (_, b))| (a, b)).collect();
            if let Some(p) = &prev {
                // Every block re-sent unchanged (the whole history) is forwarded exactly as before.
                for (i, (pb, cb)) in p.iter().zip(&cur).enumerate() {
                    if pb.0 != cb.0 {
                        break;
                    }
                    assert_eq!(pb.1, cb.1, "block {i} changed between turns");
                }
            }
            prev = Some(cur);
        }
    }
}

#[test]
fn deterministic_across_fresh_folders_and_cold_starts() {
    for c in convos() {
        let a = run(&Folder::new(true), &c);
        let b = run(&Folder::new(true), &c);
        for ((ba, fa), (_, fb)) in a.iter().zip(&b) {
            assert_eq!(out(ba, fa), out(ba, fb));
        }
        // A cold fold of each turn (no cached state) equals the incremental result.
        for (body, f) in &a {
            let cold = Folder::new(true).fold(c.dialect, body);
            assert_eq!(out(body, f), out(body, &cold));
        }
        // Processing turns out of order gives the same bytes too.
        let folder = Folder::new(true);
        for (body, f) in a.iter().rev() {
            assert_eq!(out(body, f), out(body, &folder.fold(c.dialect, body)));
        }
    }
}

#[test]
fn only_text_contents_change() {
    for c in convos() {
        for (body, f) in run(&Folder::new(true), &c) {
            let Some(f) = f else { continue };
            // Put the original strings back into the folded body: it must equal the input.
            let bin = texts(c.dialect, &body);
            let bout = texts(c.dialect, &f.body);
            let mut rebuilt = Vec::new();
            let mut at = 0;
            let mut pairs: Vec<_> = bin.iter().zip(&bout).collect();
            pairs.sort_by_key(|(_, (o, _))| o.range.start);
            for ((i, _), (o, _)) in pairs {
                rebuilt.extend_from_slice(&f.body[at..o.range.start]);
                rebuilt.extend_from_slice(&body[i.range.clone()]);
                at = o.range.end;
            }
            rebuilt.extend_from_slice(&f.body[at..]);
            assert_eq!(rebuilt, body.to_vec());
            assert!(serde_json::from_slice::<serde_json::Value>(&f.body).is_ok());
        }
    }
}

#[test]
fn markers_point_at_verbatim_earlier_text() {
    for c in convos() {
        for (body, f) in run(&Folder::new(true), &c) {
            let Some(f) = f else { continue };
            let tin = texts(c.dialect, &body);
            let tout = texts(c.dialect, &f.body);
            for e in &f.edits {
                assert!(e.source <= e.block, "points backwards (or above, in the same block)");
                assert!(e.marker.starts_with("[tokenfold: "));
                let out_text = tout[e.block].1.as_deref().unwrap();
                assert!(out_text.contains(&*e.marker));
                assert!(!src_is_marker(&e.removed));
                // What it points at is forwarded verbatim (as text, or as a call's arguments).
                let (src_blk, src_out) = &tout[e.source];
                let (src_in, src_fwd): (String, String) = match (&tin[e.source].1, src_out) {
                    (Some(i), Some(o)) => (i.clone(), o.clone()),
                    _ => {
                        let raw = &f.body[src_blk.range.clone()];
                        let v: serde_json::Value = serde_json::from_slice(raw).unwrap();
                        let v = if let Some(s) = v.as_str() { serde_json::from_str(s).unwrap() } else { v };
                        let t = tokenfold::fold::shapes::call_content(&v).unwrap().1.to_string();
                        (t.clone(), t)
                    }
                };
                // And it says the same thing as what was removed, line numbers aside.
                let removed = strip_numbers(&e.removed);
                match &e.source_lines {
                    Some(r) => {
                        let src_lines: Vec<&str> = src_in.split('\n').collect();
                        let pointed = src_lines[r.clone()].join("\n");
                        assert!(src_fwd.contains(&pointed), "pointed lines not verbatim: {}", e.marker);
                        assert_eq!(removed, strip_numbers(&pointed), "marker {}", e.marker);
                    }
                    None if e.mechanism == Mechanism::Reminder => assert!(src_fwd.contains(&*e.removed)),
                    None => assert_eq!(&*e.removed, src_fwd),
                }
            }
        }
    }
}

fn src_is_marker(s: &str) -> bool {
    s.starts_with("[tokenfold:")
}

#[test]
fn edit_anchors_survive() {
    for c in convos().into_iter().filter(|c| c.dialect == Dialect::Anthropic) {
        for (body, f) in run(&Folder::new(true), &c) {
            let o = out(&body, &f);
            let tin = texts(c.dialect, &body);
            let tout = texts(c.dialect, &o);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for (m, msg) in v["messages"].as_array().unwrap().iter().enumerate() {
                for part in msg["content"].as_array().into_iter().flatten() {
                    let Some(old) = part["input"]["old_string"].as_str() else { continue };
                    let before = |t: &[(tokenfold::dialect::blocks::Block, Option<String>)]| {
                        t.iter()
                            .filter(
                                |(b, _)| matches!(b.loc, tokenfold::dialect::blocks::Loc::Message(i) if (i as usize) < m),
                            )
                            .filter_map(|(_, t)| t.as_deref().map(strip_numbers))
                            .collect::<Vec<_>>()
                            .join("\n")
                    };
                    if before(&tin).contains(old) {
                        assert!(before(&tout).contains(old), "Edit anchor lost in message {m}");
                    }
                }
            }
        }
    }
}

#[test]
fn blocks_never_grow_and_protected_text_is_untouched() {
    for c in convos() {
        for (body, f) in run(&Folder::new(true), &c) {
            let Some(f) = f else { continue };
            for ((bi, ti), (_, to)) in texts(c.dialect, &body).iter().zip(texts(c.dialect, &f.body)) {
                let (Some(ti), Some(to)) = (ti, to) else { continue };
                assert!(tokenfold::tokens::count(&to) <= tokenfold::tokens::count(ti));
                match bi.kind {
                    Kind::AssistantText => assert_eq!(ti, &to),
                    Kind::UserText if !ti.contains("<system-reminder>") => assert_eq!(ti, &to, "typed text untouched"),
                    _ => {}
                }
                if matches!(bi.loc, tokenfold::dialect::blocks::Loc::System(_)) {
                    assert_eq!(ti, &to, "the system prompt's first occurrence is untouched");
                }
            }
            for e in &f.edits {
                let saved = tokenfold::tokens::count(&e.removed) as i64 - tokenfold::tokens::count(&e.marker) as i64;
                assert!(saved >= 24, "gate: {} saves only {saved} tokens", e.marker);
            }
        }
    }
}

#[test]
fn nothing_to_fold_is_byte_equal() {
    let bodies = [
        r#"{"model":"m","temperature":1.0,"seed":123456789012345678901234567890,"messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00 \"q\" \\ \/ tab\t é→"}],"z":1e5,"a":[]}"#,
        r#"{ "messages" : [ {"content":[{"type":"text","text":"x"},{"type":"image","source":{"data":"AAAA"}}],"role":"user"} ], "max_tokens" : 10 }"#,
    ];
    for d in Dialect::ALL {
        for b in bodies {
            assert!(Folder::new(true).fold(d, &Bytes::from_static(b.as_bytes())).is_none());
        }
    }
    // A body with folds keeps every other byte (number forms, escapes, key order).
    let c = claude_code(5);
    let body = c.bodies().pop().unwrap();
    let s = String::from_utf8(body.to_vec()).unwrap();
    let odd = s.replacen(
        "{\"max_tokens\":32000",
        "{\"temperature\":1.0,\"big\":123456789012345678901234567890,\"max_tokens\":32000",
        1,
    );
    let f = Folder::new(true).fold(Dialect::Anthropic, &Bytes::from(odd)).unwrap();
    let o = String::from_utf8(f.body.to_vec()).unwrap();
    assert!(o.contains("\"temperature\":1.0,\"big\":123456789012345678901234567890,"));
}

#[test]
fn malformed_bodies_fail_open() {
    let c = claude_code(9);
    let body = c.bodies().pop().unwrap();
    let folder = Folder::new(true);
    for cut in [1, 10, body.len() / 2, body.len() - 1] {
        let _ = folder.fold(Dialect::Anthropic, &body.slice(..cut));
    }
    for b in [&b"not json"[..], b"[]", b"{\"messages\":3}", b"{\"messages\":[1,\"x\",null]}", b""] {
        assert!(folder.fold(Dialect::Anthropic, &Bytes::from_static(b)).is_none());
        assert!(folder.fold(Dialect::OpenaiChat, &Bytes::from_static(b)).is_none());
    }
}

#[test]
fn typed_user_text_is_never_a_target() {
    // The same long text typed twice by a person stays twice.
    let long: String = (0..20).map(|i| format!("line {i} of a long request the user pasted twice\n")).collect();
    let body = serde_json::json!({"model": "m", "messages": [
        {"role": "user", "content": long}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": long}]});
    let b = Bytes::from(body.to_string());
    assert!(Folder::new(true).fold(Dialect::OpenaiChat, &b).is_none());
    // The same text as tool output folds.
    let body = serde_json::json!({"model": "m", "messages": [
        {"role": "user", "content": long},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "sh", "arguments": "{\"cmd\":\"cat x\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": long}]});
    let f = Folder::new(true).fold(Dialect::OpenaiChat, &Bytes::from(body.to_string())).unwrap();
    assert_eq!(f.edits[0].mechanism, Mechanism::WholeOutput);
}

#[test]
fn responses_dialect_folds_function_call_output() {
    let long: String = (0..30).map(|i| format!("{i}: output line {i} that repeats across calls\n")).collect();
    let body = serde_json::json!({"model": "m", "instructions": "be brief", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "run it"}]},
        {"type": "function_call", "call_id": "a", "name": "shell", "arguments": "{\"command\":[\"make\"]}"},
        {"type": "function_call_output", "call_id": "a", "output": long},
        {"type": "custom_tool_call", "call_id": "b", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "function_call", "call_id": "c", "name": "shell", "arguments": "{\"command\":[\"make\"]}"},
        {"type": "function_call_output", "call_id": "c", "output": long}]});
    let f = Folder::new(true).fold(Dialect::OpenaiResponses, &Bytes::from(body.to_string())).unwrap();
    assert_eq!(f.edits.len(), 1);
    assert!(f.edits[0].marker.contains("same as shell output a #"), "{}", f.edits[0].marker);
}
