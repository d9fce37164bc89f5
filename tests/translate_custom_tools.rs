//! Codex's freeform (`custom`) tools such as apply_patch on a Chat or Anthropic target: the
//! target sees a function with one string parameter, and the model's call to it goes back to
//! Codex as a `custom_tool_call` item carrying the raw `input`, streamed or not.

#[path = "translate_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::{
    anthropic_sse, assert_responses_sequence, call, chat_sse, chunk, events, fixture, golden_sse, json, run,
};
use tokenfold::dialect::translate::{
    translate_request_for_reply, translate_response_with, ReplyContext, RequestOptions, StreamTranslator,
};
use tokenfold::dialect::Dialect::{Anthropic, OpenaiChat, OpenaiResponses};

const PATCH: &str = "*** Begin Patch\n*** Update File: a.rs\n-old \"q\"\n+new\n*** End Patch\n";

fn reply() -> ReplyContext {
    let body = fixture("responses_request.json");
    translate_request_for_reply(OpenaiResponses, OpenaiChat, &body, &RequestOptions::default()).unwrap().reply
}

fn patch_args() -> String {
    json!({ "input": PATCH }).to_string()
}

#[test]
fn whole_chat_answer_gives_a_custom_tool_call() {
    let chat = json!({
        "id": "chatcmpl-c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [
                {"id": "call_p", "type": "function", "function": {"name": "apply_patch", "arguments": patch_args()}},
                {"id": "call_s", "type": "function", "function": {"name": "shell", "arguments": "{\"command\":[\"ls\"]}"}}
            ]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    });
    let v = json(&translate_response_with(OpenaiChat, OpenaiResponses, chat.to_string().as_bytes(), &reply()).unwrap());
    let out = v["output"].as_array().unwrap();
    assert_eq!(
        out[0],
        json!({"id": "ctc_chatcmpl-c_0", "type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": PATCH})
    );
    assert_eq!(out[1]["type"], "function_call", "other tools stay function calls");
    // Without the request's context the same answer is a plain function call.
    let v = json(
        &translate_response_with(OpenaiChat, OpenaiResponses, chat.to_string().as_bytes(), &ReplyContext::default())
            .unwrap(),
    );
    assert_eq!(v["output"][0]["type"], "function_call");
}

#[test]
fn whole_anthropic_answer_gives_a_custom_tool_call() {
    let anthropic = json!({
        "id": "msg_c", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "tool_use", "id": "toolu_p", "name": "apply_patch", "input": {"input": PATCH}}],
        "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 2}
    });
    let v =
        json(&translate_response_with(Anthropic, OpenaiResponses, anthropic.to_string().as_bytes(), &reply()).unwrap());
    assert_eq!(v["output"][0]["type"], "custom_tool_call");
    assert_eq!(v["output"][0]["input"], PATCH);
    assert_eq!(v["output"][0]["call_id"], "toolu_p");
}

fn custom_items(evs: &[support::Ev]) -> Vec<Value> {
    let resp = &evs.last().unwrap().data["response"];
    resp["output"].as_array().unwrap().iter().filter(|i| i["type"] == "custom_tool_call").cloned().collect()
}

#[test]
fn streamed_chat_answer_gives_a_custom_tool_call() {
    let args = patch_args();
    let (a, b) = args.split_at(17);
    let input = chat_sse(
        &[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Patching."}), None),
            chunk(call(0, Some("call_p"), Some("apply_patch"), a), None),
            chunk(call(0, None, None, b), None),
            chunk(call(1, Some("call_s"), Some("shell"), "{\"command\":[\"ls\"]}"), None),
            chunk(json!({}), Some("tool_calls")),
        ],
        true,
    );
    let t = StreamTranslator::with_reply(OpenaiChat, OpenaiResponses, "gpt-5-codex", &reply());
    let (out, _) = run(t, &[&input]);
    golden_sse("stream_chat_to_responses_custom_tool.sse", &out);
    let evs = events(&out);
    assert_responses_sequence(&evs);
    let added = evs.iter().find(|e| e.ty() == "response.output_item.added" && e.data["output_index"] == 1).unwrap();
    assert_eq!(added.data["item"]["type"], "custom_tool_call");
    assert_eq!(added.data["item"]["input"], "");
    let deltas: String = evs
        .iter()
        .filter(|e| e.ty() == "response.custom_tool_call_input.delta")
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, PATCH);
    let done = evs.iter().find(|e| e.ty() == "response.custom_tool_call_input.done").unwrap();
    assert_eq!(done.data["input"], PATCH);
    let item_done = evs.iter().find(|e| e.ty() == "response.output_item.done" && e.data["output_index"] == 1).unwrap();
    assert_eq!(item_done.data["item"]["input"], PATCH);
    assert!(
        !evs.iter().any(|e| e.ty().starts_with("response.function_call_arguments") && e.data["output_index"] == 1),
        "no function-call events for the freeform call"
    );
    assert_eq!(custom_items(&evs).len(), 1);
    let resp = &evs.last().unwrap().data["response"];
    assert_eq!(resp["output"][2]["type"], "function_call");
}

#[test]
fn streamed_anthropic_answer_gives_a_custom_tool_call() {
    let args = patch_args();
    let input = anthropic_sse(&[
        json!({"type": "message_start", "message": {"id": "msg_p", "type": "message", "role": "assistant", "model": "c",
               "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_p", "name": "apply_patch", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": &args[..9]}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": &args[9..]}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ]);
    let t = StreamTranslator::with_reply(Anthropic, OpenaiResponses, "gpt-5-codex", &reply());
    let (out, _) = run(t, &[&input]);
    let evs = events(&out);
    assert_responses_sequence(&evs);
    let items = custom_items(&evs);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["input"], PATCH);
    assert_eq!(items[0]["call_id"], "toolu_p");
}

#[test]
fn a_model_that_ignores_the_schema_still_gets_its_text_through() {
    // Arguments that are not `{"input": "..."}` are passed as the raw input.
    let chat = json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_p", "type": "function", "function": {"name": "apply_patch", "arguments": "*** Begin Patch"}}]}}]
    });
    let v = json(&translate_response_with(OpenaiChat, OpenaiResponses, chat.to_string().as_bytes(), &reply()).unwrap());
    assert_eq!(v["output"][0]["input"], "*** Begin Patch");
}
