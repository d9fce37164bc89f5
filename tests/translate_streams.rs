//! Streaming translation, per direction: event sequences, block indexes, every split point,
//! errors mid-stream, usage only at the end.

#[path = "translate_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::{
    anthropic_parallel_stream, anthropic_sse, anthropic_stream, anthropic_text_stream, assert_anthropic_sequence,
    assert_responses_sequence, chat_interleaved_calls, chat_sse, chat_stream, chat_totals, chunk, events, normalized,
    run, Ev,
};
use tokenfold::dialect::translate::StreamTranslator;
use tokenfold::dialect::usage::Usage;
use tokenfold::dialect::Dialect::{self, Anthropic, OpenaiChat, OpenaiResponses};

/// Output for every way of cutting `input` in two, and byte by byte, equals the whole feed.
fn assert_split_invariant(upstream: Dialect, client: Dialect, input: &[u8]) -> Vec<u8> {
    let (whole, _) = run(StreamTranslator::new(upstream, client, "client-model"), &[input]);
    let want = normalized(&whole);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        let (out, _) = run(StreamTranslator::new(upstream, client, "client-model"), &[a, b]);
        assert_eq!(normalized(&out), want, "{upstream}->{client} cut at {cut}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let (out, _) = run(StreamTranslator::new(upstream, client, "client-model"), &bytes);
    assert_eq!(normalized(&out), want, "{upstream}->{client} byte by byte");
    whole
}

fn types(evs: &[Ev]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            let ty = e.ty().to_string();
            if let Some(name) = &e.name {
                assert_eq!(name, &ty, "event: line names the type");
            }
            match (ty.as_str(), e.data.get("index")) {
                ("", _) => e.data.as_str().unwrap_or("chunk").to_string(),
                (_, Some(i)) => format!("{ty}:{i}"),
                _ => ty,
            }
        })
        .collect()
}

#[test]
fn chat_to_anthropic_full_sequence() {
    let out = assert_split_invariant(OpenaiChat, Anthropic, &chat_stream());
    let evs = events(&out);
    assert_eq!(
        types(&evs),
        [
            "message_start",
            "content_block_start:0",
            "content_block_delta:0",
            "content_block_stop:0",
            "content_block_start:1",
            "content_block_delta:1",
            "content_block_delta:1",
            "content_block_stop:1",
            "content_block_start:2",
            "content_block_delta:2",
            "content_block_delta:2",
            "content_block_stop:2",
            "content_block_start:3",
            "content_block_delta:3",
            "content_block_stop:3",
            "content_block_start:4",
            "content_block_delta:4",
            "content_block_delta:4",
            "content_block_stop:4",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &evs[0].data["message"];
    assert_eq!(start["model"], "client-model");
    assert_eq!(start["id"], "msg_chatcmpl-1");
    assert_eq!(evs[1].data["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
    assert_eq!(evs[2].data["delta"], json!({"type": "thinking_delta", "thinking": "Think ü"}));
    assert_eq!(evs[5].data["delta"]["text"], "Héllo ");
    assert_eq!(evs[6].data["delta"]["text"], "wörld 🚀");
    assert_eq!(evs[8].data["content_block"], json!({"type": "tool_use", "id": "call_A", "name": "Read", "input": {}}));
    let args: String = evs[9..11].iter().map(|e| e.data["delta"]["partial_json"].as_str().unwrap()).collect();
    assert_eq!(args, "{\"path\":\"ä.rs\"}");
    assert_eq!(evs[13].data["delta"]["text"], "and ");
    assert_eq!(evs[15].data["content_block"]["name"], "Bash");
    let delta = &evs[19].data;
    assert_eq!(delta["delta"], json!({"stop_reason": "tool_use", "stop_sequence": null}));
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 40, "output_tokens": 20, "cache_read_input_tokens": 60,
               "cache_creation_input_tokens": 0})
    );
}

#[test]
fn chat_to_anthropic_usage_and_stop_reasons() {
    let cases = [
        (json!({}), Some("length"), "max_tokens", Value::Null),
        (json!({"stop_reason": "</end>"}), Some("stop"), "stop_sequence", json!("</end>")),
        (json!({}), Some("stop"), "end_turn", Value::Null),
        (json!({}), Some("content_filter"), "refusal", Value::Null),
    ];
    for (extra, finish, want, seq) in cases {
        let mut last = chunk(json!({}), finish);
        for (k, v) in extra.as_object().unwrap() {
            last["choices"][0][k] = v.clone();
        }
        last["usage"] = json!({"prompt_tokens": 5, "completion_tokens": 7});
        let input = chat_sse(&[chunk(json!({"content": "hi"}), None), last], true);
        let (out, t) = run(StreamTranslator::new(OpenaiChat, Anthropic, "m"), &[&input]);
        let evs = events(&out);
        let md = evs.iter().find(|e| e.ty() == "message_delta").unwrap();
        assert_eq!(md.data["delta"]["stop_reason"], want);
        assert_eq!(md.data["delta"]["stop_sequence"], seq);
        assert_eq!(t.usage(), Usage { input: 5, output: 7, ..Usage::default() });
    }
}

#[test]
fn chat_upstream_error_mid_stream() {
    let mut input = chat_sse(&[chunk(json!({"content": "par"}), None)], false);
    input.extend_from_slice(
        b"data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"rate_limit_exceeded\"}}\n\n",
    );
    input.extend(chat_sse(&[chunk(json!({"content": "ignored"}), None)], true));
    let (out, _) = run(StreamTranslator::new(OpenaiChat, Anthropic, "m"), &[&input]);
    let evs = events(&out);
    let last = evs.last().unwrap();
    assert_eq!(last.ty(), "error");
    assert_eq!(last.data["error"], json!({"type": "rate_limit_error", "message": "Rate limit reached"}));
    assert!(!String::from_utf8_lossy(&out).contains("ignored"));

    let (out, _) = run(StreamTranslator::new(OpenaiChat, OpenaiResponses, "m"), &[&input]);
    let last = events(&out).pop().unwrap();
    assert_eq!(last.ty(), "response.failed");
    assert_eq!(last.data["response"]["error"]["message"], "Rate limit reached");
    assert_eq!(last.data["response"]["output"][0]["content"][0]["text"], "par");
}

#[test]
fn cut_before_terminal_event_is_an_error() {
    let input = chat_sse(&[chunk(json!({"content": "half"}), None)], false);
    for client in [Anthropic, OpenaiResponses, OpenaiChat] {
        let mut t = StreamTranslator::new(OpenaiChat, client, "m");
        let first = t.push(&input);
        let end = t.finish();
        let last = events(&end).pop().unwrap_or_else(|| panic!("{client}: no error event"));
        let text = last.data.to_string();
        assert!(text.contains("ended before"), "{client}: {text}");
        assert!(t.finish().is_empty(), "finish is idempotent");
        if client == OpenaiChat {
            assert_eq!(first, input, "same dialect passes bytes through");
        }
    }
    // Cut after finish_reason: only usage/[DONE] lost, so the message completes.
    let input = chat_sse(&[chunk(json!({"content": "x"}), None), chunk(json!({}), Some("stop"))], false);
    let (out, _) = run(StreamTranslator::new(OpenaiChat, Anthropic, "m"), &[&input]);
    assert_eq!(events(&out).last().unwrap().ty(), "message_stop");
}

#[test]
fn anthropic_to_chat_full_sequence() {
    let out = assert_split_invariant(Anthropic, OpenaiChat, &anthropic_stream());
    let evs = events(&out);
    assert!(evs.iter().all(|e| e.name.is_none()), "Chat streams have no event: lines");
    let deltas: Vec<&Value> = evs.iter().filter_map(|e| e.data.get("choices")?.get(0)).map(|c| &c["delta"]).collect();
    assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
    assert_eq!(deltas[1], &json!({"reasoning_content": "hmm"}));
    assert_eq!(deltas[2], &json!({"content": "Zwei Aufrufe: "}));
    assert_eq!(
        deltas[3],
        &json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                                "function": {"name": "Read", "arguments": ""}}]})
    );
    assert_eq!(deltas[4]["tool_calls"][0]["function"]["arguments"], "{\"p\":");
    assert_eq!(deltas[6]["tool_calls"][0]["index"], 1);
    let finish: Vec<&Value> = evs
        .iter()
        .filter_map(|e| e.data.get("choices")?.get(0)?.get("finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    let usage = &evs[evs.len() - 2].data;
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 45, "completion_tokens": 42, "total_tokens": 87,
               "prompt_tokens_details": {"cached_tokens": 30}})
    );
    assert_eq!(evs.last().unwrap().data, "[DONE]");
    let (_, t) = run(StreamTranslator::new(Anthropic, OpenaiChat, "m"), &[&anthropic_stream()]);
    assert_eq!(t.usage(), Usage { input: 10, output: 42, cache_read: 30, cache_write: 5, cache_write_1h: 0 });
}

#[test]
fn anthropic_error_event_mid_stream() {
    let mut input = anthropic_stream();
    input.truncate(input.len() / 2);
    let cut = input.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    input.truncate(cut);
    input.extend(anthropic_sse(&[
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]));
    let (out, _) = run(StreamTranslator::new(Anthropic, OpenaiChat, "m"), &[&input]);
    let last = events(&out).pop().unwrap();
    assert_eq!(last.data["error"]["message"], "Overloaded");
    assert_eq!(last.data["error"]["type"], "api_error");
    let (out, _) = run(StreamTranslator::new(Anthropic, OpenaiResponses, "m"), &[&input]);
    let last = events(&out).pop().unwrap();
    assert_eq!(last.ty(), "response.failed");
    assert_eq!(last.data["response"]["error"]["message"], "Overloaded");
}

#[test]
fn chat_to_responses_full_sequence() {
    let out = assert_split_invariant(OpenaiChat, OpenaiResponses, &chat_stream());
    let evs = events(&out);
    let seqs: Vec<u64> = evs.iter().map(|e| e.data["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..evs.len() as u64).collect::<Vec<_>>());
    let tys: Vec<&str> = evs.iter().map(|e| e.ty()).collect();
    assert_eq!(&tys[..3], ["response.created", "response.in_progress", "response.output_item.added"]);
    assert_eq!(*tys.last().unwrap(), "response.completed");
    // Every item is added then done, at the same index with the same id.
    for e in evs.iter().filter(|e| e.ty() == "response.output_item.added") {
        let i = &e.data["output_index"];
        let id = &e.data["item"]["id"];
        let done = evs.iter().find(|d| d.ty() == "response.output_item.done" && &d.data["output_index"] == i).unwrap();
        assert_eq!(&done.data["item"]["id"], id);
        for d in evs.iter().filter(|d| d.data.get("item_id").is_some() && &d.data["output_index"] == i) {
            assert_eq!(&d.data["item_id"], id, "{}", d.ty());
        }
    }
    let resp = &evs.last().unwrap().data["response"];
    assert_eq!(resp["status"], "completed");
    assert_eq!(resp["id"], "resp_chatcmpl-1");
    let kinds: Vec<&str> = resp["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["reasoning", "message", "function_call", "message", "function_call"]);
    assert_eq!(resp["output"][1]["content"][0]["text"], "Héllo wörld 🚀");
    assert_eq!(resp["output"][2]["arguments"], "{\"path\":\"ä.rs\"}");
    assert_eq!(resp["output"][4]["call_id"], "call_B");
    assert_eq!(resp["output"][4]["name"], "Bash");
    assert_eq!(resp["usage"]["input_tokens"], 100);
    assert_eq!(resp["usage"]["input_tokens_details"]["cached_tokens"], 60);
    assert_eq!(resp["usage"]["output_tokens"], 20);
    let done = evs.iter().find(|e| e.ty() == "response.function_call_arguments.done").unwrap();
    assert_eq!(done.data["arguments"], "{\"path\":\"ä.rs\"}");
    assert_eq!(done.data["name"], "Read");
}

#[test]
fn chat_to_responses_max_tokens_is_incomplete() {
    let input = chat_sse(&[chunk(json!({"content": "cut"}), None), chunk(json!({}), Some("length"))], true);
    let (out, _) = run(StreamTranslator::new(OpenaiChat, OpenaiResponses, "m"), &[&input]);
    let last = events(&out).pop().unwrap();
    assert_eq!(last.ty(), "response.incomplete");
    assert_eq!(last.data["response"]["incomplete_details"]["reason"], "max_output_tokens");
}

#[test]
fn anthropic_to_responses_by_composition() {
    let out = assert_split_invariant(Anthropic, OpenaiResponses, &anthropic_stream());
    let evs = events(&out);
    let resp = &evs.last().unwrap().data["response"];
    assert_eq!(evs.last().unwrap().ty(), "response.completed");
    assert_eq!(resp["id"], "resp_msg_1");
    let kinds: Vec<&str> = resp["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["reasoning", "message", "function_call", "function_call"]);
    assert_eq!(resp["usage"]["input_tokens"], 45);
}

#[test]
fn passthrough_reads_usage_and_keeps_bytes() {
    let input = anthropic_stream();
    let (out, t) = run(StreamTranslator::new(Anthropic, Anthropic, "m"), &[&input[..7], &input[7..]]);
    assert_eq!(out, input);
    assert_eq!(t.usage().output, 42);
    let input = chat_stream();
    let (out, t) = run(StreamTranslator::new(OpenaiChat, OpenaiChat, "m"), &[&input]);
    assert_eq!(out, input);
    assert_eq!(t.usage().cache_read, 60);
}

#[test]
fn deterministic_stream_output() {
    let a = run(StreamTranslator::new(OpenaiChat, Anthropic, "m"), &[&chat_stream()]).0;
    let b = run(StreamTranslator::new(OpenaiChat, Anthropic, "m"), &[&chat_stream()]).0;
    assert_eq!(a, b);
}

#[test]
fn interleaved_tool_arguments_stay_inside_their_block_for_anthropic() {
    let out = assert_split_invariant(OpenaiChat, Anthropic, &chat_interleaved_calls());
    let evs = events(&out);
    assert_anthropic_sequence(&evs);
    let tools: Vec<(u64, String)> = evs
        .iter()
        .filter(|e| e.ty() == "content_block_start" && e.data["content_block"]["type"] == "tool_use")
        .map(|e| (e.data["index"].as_u64().unwrap(), e.data["content_block"]["id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(tools, [(1, "call_X".to_string()), (2, "call_Y".to_string())]);
    for (index, want) in [(1, "{\"path\":\"x.rs\"}"), (2, "{\"path\":\"y.rs\"}")] {
        let args: String = evs
            .iter()
            .filter(|e| e.ty() == "content_block_delta" && e.data["index"] == index)
            .map(|e| e.data["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(args, want, "block {index}");
    }
    let md = evs.iter().find(|e| e.ty() == "message_delta").unwrap();
    assert_eq!(md.data["delta"]["stop_reason"], "tool_use");
}

#[test]
fn interleaved_tool_arguments_stay_inside_their_item_for_responses() {
    let out = assert_split_invariant(OpenaiChat, OpenaiResponses, &chat_interleaved_calls());
    let evs = events(&out);
    assert_responses_sequence(&evs);
    let resp = &evs.last().unwrap().data["response"];
    let calls: Vec<(&str, &str)> = resp["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "function_call")
        .map(|i| (i["call_id"].as_str().unwrap(), i["arguments"].as_str().unwrap()))
        .collect();
    assert_eq!(calls, [("call_X", "{\"path\":\"x.rs\"}"), ("call_Y", "{\"path\":\"y.rs\"}")]);
    for e in evs.iter().filter(|e| e.ty() == "response.function_call_arguments.done") {
        let item = &resp["output"][e.data["output_index"].as_u64().unwrap() as usize];
        assert_eq!(e.data["arguments"], item["arguments"]);
    }
}

#[test]
fn calls_one_after_the_other_stream_without_waiting() {
    // The first call's block closes as soon as the second starts: nothing is held back.
    let input = chat_sse(
        &[
            chunk(support::call(0, Some("call_1"), Some("Read"), "{}"), None),
            chunk(support::call(1, Some("call_2"), Some("Read"), "{\"a\""), None),
        ],
        false,
    );
    let mut t = StreamTranslator::new(OpenaiChat, Anthropic, "m");
    let evs = events(&t.push(&input));
    let tys = types(&evs);
    assert_eq!(
        tys,
        [
            "message_start",
            "content_block_start:0",
            "content_block_delta:0",
            "content_block_stop:0",
            "content_block_start:1",
            "content_block_delta:1"
        ]
    );
}

#[test]
fn anthropic_to_chat_parallel_calls_with_text_between() {
    let out = assert_split_invariant(Anthropic, OpenaiChat, &anthropic_parallel_stream("tool_use", None));
    let evs = events(&out);
    let support::ChatTotals { text, calls, finish, .. } = chat_totals(&evs);
    assert_eq!(text, "Reading a.rs and b.rs");
    assert_eq!(
        calls,
        [
            ("toolu_a".to_string(), "Read".to_string(), "{\"path\":\"a.rs\"}".to_string()),
            ("toolu_b".to_string(), "Read".to_string(), "{\"path\":\"b.rs\"}".to_string()),
        ]
    );
    assert_eq!(finish, ["tool_calls"]);
}

#[test]
fn anthropic_to_chat_stop_sequence_and_max_tokens() {
    for (stop, seq, want) in
        [("stop_sequence", Some("</end>"), "stop"), ("max_tokens", None, "length"), ("end_turn", None, "stop")]
    {
        let (out, t) =
            run(StreamTranslator::new(Anthropic, OpenaiChat, "m"), &[&anthropic_text_stream("hi", stop, seq)]);
        let support::ChatTotals { text, finish, .. } = chat_totals(&events(&out));
        assert_eq!(text, "hi");
        assert_eq!(finish, [want], "{stop}");
        assert_eq!(t.usage().output, 4);
    }
}
