//! Golden files for translated answers, whole and streamed, per direction
//! (fixtures/translate/golden/response_* and stream_*; requests have theirs in
//! translate_requests.rs and translate_to_responses.rs). Any byte of difference fails;
//! `TOKENFOLD_BLESS=1 cargo test --test translate_golden` rewrites them after a deliberate change.
//! The structural tests next to these say *why* the bytes are right; these say they did not move.

#[path = "translate_support/mod.rs"]
mod support;

use support::{
    anthropic_parallel_stream, anthropic_stream, anthropic_text_stream, chat_interleaved_calls, chat_sse, chat_stream,
    chunk, fixture, golden, golden_sse, json, run,
};
use tokenfold::dialect::translate::{translate_response, StreamTranslator};
use tokenfold::dialect::Dialect::{self, Anthropic, OpenaiChat, OpenaiResponses};

fn answer(upstream: Dialect, client: Dialect, input: &str) -> Vec<u8> {
    translate_response(upstream, client, &fixture(&format!("upstream/{input}"))).unwrap()
}

fn stream(upstream: Dialect, client: Dialect, input: &[u8]) -> Vec<u8> {
    run(StreamTranslator::new(upstream, client, "client-model"), &[input]).0
}

#[test]
fn whole_answers_per_direction() {
    let cases = [
        (OpenaiChat, Anthropic, "chat_response.json", "response_chat_to_anthropic.json"),
        (OpenaiChat, Anthropic, "chat_response_stop_sequence.json", "response_chat_to_anthropic_stop_sequence.json"),
        (OpenaiChat, Anthropic, "chat_response_max_tokens.json", "response_chat_to_anthropic_max_tokens.json"),
        (Anthropic, OpenaiChat, "anthropic_response.json", "response_anthropic_to_chat.json"),
        (OpenaiChat, OpenaiResponses, "chat_response.json", "response_chat_to_responses.json"),
        (OpenaiChat, OpenaiResponses, "chat_response_max_tokens.json", "response_chat_to_responses_max_tokens.json"),
        (Anthropic, OpenaiResponses, "anthropic_response.json", "response_anthropic_to_responses.json"),
        (OpenaiResponses, OpenaiChat, "responses_incomplete.json", "response_responses_to_chat_max_tokens.json"),
    ];
    for (upstream, client, input, name) in cases {
        golden(name, &answer(upstream, client, input));
    }
}

#[test]
fn stop_sequence_and_max_tokens_on_whole_chat_answers_for_anthropic() {
    let v = json(&answer(OpenaiChat, Anthropic, "chat_response_stop_sequence.json"));
    assert_eq!((&v["stop_reason"], &v["stop_sequence"]), (&"stop_sequence".into(), &"</answer>".into()));
    let v = json(&answer(OpenaiChat, Anthropic, "chat_response_max_tokens.json"));
    assert_eq!((&v["stop_reason"], &v["stop_sequence"]), (&"max_tokens".into(), &serde_json::Value::Null));
    assert_eq!(v["content"][0]["text"], "The answer is");
}

#[test]
fn streams_per_direction() {
    let responses = fixture("upstream/responses_stream.sse");
    let long = chat_sse(
        &[chunk(serde_json::json!({"content": "cut"}), None), chunk(serde_json::json!({}), Some("length"))],
        true,
    );
    let cases: [(Dialect, Dialect, Vec<u8>, &str); 13] = [
        (OpenaiChat, Anthropic, chat_stream(), "stream_chat_to_anthropic.sse"),
        (OpenaiChat, Anthropic, chat_interleaved_calls(), "stream_chat_to_anthropic_interleaved_calls.sse"),
        (OpenaiChat, Anthropic, long.clone(), "stream_chat_to_anthropic_max_tokens.sse"),
        (Anthropic, OpenaiChat, anthropic_stream(), "stream_anthropic_to_chat.sse"),
        (
            Anthropic,
            OpenaiChat,
            anthropic_parallel_stream("tool_use", None),
            "stream_anthropic_to_chat_parallel_calls_text_between.sse",
        ),
        (
            Anthropic,
            OpenaiChat,
            anthropic_text_stream("Done.", "stop_sequence", Some("</end>")),
            "stream_anthropic_to_chat_stop_sequence.sse",
        ),
        (
            Anthropic,
            OpenaiChat,
            anthropic_text_stream("The answer is", "max_tokens", None),
            "stream_anthropic_to_chat_max_tokens.sse",
        ),
        (OpenaiChat, OpenaiResponses, chat_stream(), "stream_chat_to_responses.sse"),
        (OpenaiChat, OpenaiResponses, chat_interleaved_calls(), "stream_chat_to_responses_interleaved_calls.sse"),
        (OpenaiChat, OpenaiResponses, long, "stream_chat_to_responses_max_tokens.sse"),
        (Anthropic, OpenaiResponses, anthropic_stream(), "stream_anthropic_to_responses.sse"),
        (OpenaiResponses, OpenaiChat, responses.clone(), "stream_responses_to_chat.sse"),
        (OpenaiResponses, Anthropic, responses, "stream_responses_to_anthropic.sse"),
    ];
    for (upstream, client, input, name) in cases {
        golden_sse(name, &stream(upstream, client, &input));
    }
}

#[test]
fn a_changed_byte_fails() {
    // The comparison itself: one byte off in either form is a difference.
    if std::env::var(support::BLESS).is_ok_and(|v| v == "1") {
        return;
    }
    let out = answer(OpenaiChat, Anthropic, "chat_response.json");
    let mut other = out.clone();
    let at = other.iter().position(|&b| b == b'Z').unwrap();
    other[at] = b'z';
    let result = std::panic::catch_unwind(|| golden("response_chat_to_anthropic.json", &other));
    assert!(result.is_err(), "a changed character must fail the golden");
    let spaced = String::from_utf8(out).unwrap().replacen(":", ": ", 1);
    let result = std::panic::catch_unwind(|| golden("response_chat_to_anthropic.json", spaced.as_bytes()));
    assert!(result.is_err(), "non-canonical bytes must fail even when the value is equal");
}
