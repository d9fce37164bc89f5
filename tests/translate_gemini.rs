//! Gemini to and from each other dialect: requests, whole answers and streams against golden
//! files (fixtures/translate/golden/*gemini*, built from the shapes in fixtures/translate/GEMINI.md),
//! what the bytes mean, and thought signatures that go out to a client and come back unchanged.
//! `TOKENFOLD_BLESS=1 cargo test --test translate_gemini` rewrites the goldens.

#[path = "translate_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::{
    anthropic_stream, assert_anthropic_sequence, assert_responses_sequence, chat_stream, events, fixture, golden,
    golden_sse, json, run,
};
use tokenfold::dialect::gemini::Call;
use tokenfold::dialect::translate::{
    translate_request_for_reply, translate_request_with, translate_response, translate_response_with, RequestOptions,
    StreamTranslator,
};
use tokenfold::dialect::Dialect::{self, Anthropic, Gemini, OpenaiChat, OpenaiResponses};

const SIG: &str = "CiQBcsjafNq2Yv+3xL0c0mA8o7P9kR1u/OJ9ZcM2gN8vR3Kq0AKbQ==";

fn from_gemini(to: Dialect, call: &Call, reasoning: bool) -> Vec<u8> {
    let opts = RequestOptions { target_reasoning: reasoning, gemini: Some(call), ..Default::default() };
    translate_request_with(Gemini, to, &fixture("gemini_request.json"), &opts).unwrap()
}

fn streaming_call() -> Call {
    Call::parse("/v1beta/models/gemini-cli-model:streamGenerateContent", Some("alt=sse")).unwrap()
}

#[test]
fn gemini_requests_to_each_dialect() {
    let call = streaming_call();
    for (to, name) in [
        (OpenaiChat, "request_gemini_to_chat.json"),
        (Anthropic, "request_gemini_to_anthropic.json"),
        (OpenaiResponses, "request_gemini_to_responses.json"),
    ] {
        golden(name, &from_gemini(to, &call, false));
    }
    let v = json(&from_gemini(OpenaiChat, &call, false));
    assert_eq!((v["model"].as_str(), v["stream"].as_bool()), (Some("gemini-cli-model"), Some(true)));
    let roles: Vec<&str> = v["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        ["system", "user", "user", "assistant", "tool", "tool", "assistant", "tool", "assistant", "user"]
    );
    let m = &v["messages"];
    assert_eq!(
        m[0]["content"],
        "You are Gemini CLI, an interactive CLI agent specializing in software engineering tasks.\n\nBe concise."
    );
    assert_eq!(m[2]["content"][1]["image_url"]["url"], "data:image/png;base64,iVBORw0KGgo=");
    assert_eq!(m[2]["content"][2]["file"]["file_data"], "https://example.com/spec.pdf");
    // The thought stays behind; calls without ids get ids from their place, and the responses
    // (whose ids name no call) find them by name, in order.
    assert_eq!(m[3]["content"], "Let me look.");
    let calls = m[3]["tool_calls"].as_array().unwrap();
    assert_eq!((calls[0]["id"].as_str(), calls[1]["id"].as_str()), (Some("call_2_2"), Some("call_2_3")));
    assert_eq!(
        json(calls[1]["function"]["arguments"].as_str().unwrap().as_bytes()),
        json!({"command": "ls src", "description": "List src"})
    );
    assert_eq!((m[4]["tool_call_id"].as_str(), m[5]["tool_call_id"].as_str()), (Some("call_2_2"), Some("call_2_3")));
    assert_eq!(m[5]["content"], "Error: ls: cannot access 'src': No such file or directory");
    assert_eq!((m[6]["tool_calls"][0]["id"].as_str(), m[7]["tool_call_id"].as_str()), (Some("c9x7"), Some("c9x7")));
    // Tools: the OpenAPI schema's upper-case types in JSON Schema's spelling; Google Search dropped.
    let tools = v["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 3);
    assert_eq!(tools[1]["function"]["parameters"]["properties"]["command"]["type"], "string");
    assert_eq!(v["tool_choice"], "required");
    assert_eq!(
        (v["max_tokens"].as_u64(), v["top_p"].as_f64(), &v["stop"]),
        (Some(4096), Some(0.95), &json!(["</done>"]))
    );
    assert!(v.get("reasoning_effort").is_none() && v.get("top_k").is_none());
    // Thinking goes along only to a target that reasons.
    let v = json(&from_gemini(OpenaiChat, &call, true));
    assert_eq!(v["reasoning_effort"], "medium");
    let a = json(&from_gemini(Anthropic, &call, true));
    assert_eq!(a["thinking"], json!({"type": "enabled", "budget_tokens": 8192}));
}

#[test]
fn a_stream_without_sse_is_one_whole_answer_as_an_array() {
    let call = Call::parse("/v1beta/models/m:streamGenerateContent", None).unwrap();
    let opts = RequestOptions { gemini: Some(&call), ..Default::default() };
    let t = translate_request_for_reply(Gemini, OpenaiChat, &fixture("gemini_request.json"), &opts).unwrap();
    assert!(json(&t.body).get("stream").is_none());
    assert!(t.reply.gemini_array);
    let out = translate_response_with(OpenaiChat, Gemini, &fixture("upstream/chat_response.json"), &t.reply).unwrap();
    let v = json(&out);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["candidates"][0]["finishReason"], "STOP");
}

fn to_gemini(from: Dialect, fixture_name: &str, reasoning: bool) -> Vec<u8> {
    let opts = RequestOptions { target_reasoning: reasoning, ..Default::default() };
    translate_request_with(from, Gemini, &fixture(fixture_name), &opts).unwrap()
}

#[test]
fn each_dialect_to_gemini_requests() {
    for (from, input, name) in [
        (OpenaiChat, "chat_request.json", "request_chat_to_gemini.json"),
        (Anthropic, "anthropic_request.json", "request_anthropic_to_gemini.json"),
        (OpenaiResponses, "responses_request.json", "request_responses_to_gemini.json"),
    ] {
        golden(name, &to_gemini(from, input, false));
    }
    let v = json(&to_gemini(OpenaiChat, "chat_request.json", false));
    assert!(v.get("model").is_none() && v.get("stream").is_none(), "the URL carries them: {v}");
    assert_eq!(
        v["systemInstruction"],
        json!({"parts": [{"text": "You are a coding assistant.\n\nAnswer in English."}]})
    );
    let roles: Vec<&str> = v["contents"].as_array().unwrap().iter().map(|c| c["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "model", "user", "model", "user"], "roles alternate");
    let c = &v["contents"];
    assert_eq!(c[0]["parts"][1], json!({"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}));
    assert_eq!(
        c[0]["parts"][2],
        json!({"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/dog.png"}})
    );
    // A history from another model: its first call gets Google's documented stand-in signature.
    assert_eq!(c[1]["parts"][1]["thoughtSignature"], "skip_thought_signature_validator");
    assert!(c[1]["parts"][2].get("thoughtSignature").is_none());
    assert_eq!(
        c[1]["parts"][1]["functionCall"],
        json!({"id": "call_a", "name": "read_file", "args": {"path": "a.rs"}})
    );
    // Responses together, with their function's name; later user and system text after them.
    let parts = c[2]["parts"].as_array().unwrap();
    assert_eq!(
        parts[0]["functionResponse"],
        json!({"id": "call_a", "name": "read_file", "response": {"output": "fn a() {}"}})
    );
    assert_eq!(parts[1]["functionResponse"]["name"], "shell");
    assert_eq!(
        (parts[2]["text"].as_str(), parts[3]["text"].as_str()),
        (Some("Now summarize."), Some("Keep it short."))
    );
    assert_eq!(c[3]["parts"][0]["functionCall"]["args"], json!({"raw_arguments": "not json"}));
    let decl = &v["tools"][0]["functionDeclarations"];
    assert_eq!(decl[0]["parametersJsonSchema"]["properties"]["path"]["type"], "string");
    assert_eq!(v["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
    let g = &v["generationConfig"];
    assert_eq!(
        (g["temperature"].as_f64(), g["topP"].as_f64(), &g["stopSequences"]),
        (Some(1.5), Some(1.0), &json!(["</end>"]))
    );
    assert!(g.get("thinkingConfig").is_none());
    let v = json(&to_gemini(OpenaiChat, "chat_request.json", true));
    assert_eq!(v["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": 8192, "includeThoughts": true}));
    // Anthropic: thinking blocks stay behind; the error result says so in its text.
    let a = json(&to_gemini(Anthropic, "anthropic_request.json", false));
    let text = a.to_string();
    assert!(!text.contains("Two reads at once") && !text.contains("cache_control"), "{text}");
    assert!(text.contains("Error: ls: cannot access 'src': No such file"));
    assert_eq!(a["generationConfig"]["maxOutputTokens"], 4096);
}

#[test]
fn whole_answers_both_ways() {
    for (upstream, client, input, name) in [
        (Gemini, OpenaiChat, "gemini_response.json", "response_gemini_to_chat.json"),
        (Gemini, Anthropic, "gemini_response.json", "response_gemini_to_anthropic.json"),
        (Gemini, OpenaiResponses, "gemini_response.json", "response_gemini_to_responses.json"),
        (Gemini, OpenaiChat, "gemini_response_max_tokens.json", "response_gemini_to_chat_max_tokens.json"),
        (OpenaiChat, Gemini, "chat_response.json", "response_chat_to_gemini.json"),
        (Anthropic, Gemini, "anthropic_response.json", "response_anthropic_to_gemini.json"),
        (OpenaiResponses, Gemini, "responses_response.json", "response_responses_to_gemini.json"),
        (OpenaiChat, Gemini, "chat_response_max_tokens.json", "response_chat_to_gemini_max_tokens.json"),
    ] {
        golden(name, &translate_response(upstream, client, &fixture(&format!("upstream/{input}"))).unwrap());
    }
    let v = json(&translate_response(Gemini, OpenaiChat, &fixture("upstream/gemini_response.json")).unwrap());
    let msg = &v["choices"][0]["message"];
    assert_eq!(
        (msg["content"].as_str(), msg["reasoning_content"].as_str()),
        (Some("Zwei Aufrufe: ü 🚀"), Some("**Planning the reads** Two files, read both at once."))
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    // 50 prompt tokens of which 20 cached; output counts the thoughts.
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 50, "completion_tokens": 21, "total_tokens": 71, "prompt_tokens_details": {"cached_tokens": 20}})
    );
    let a = json(&translate_response(Gemini, Anthropic, &fixture("upstream/gemini_response.json")).unwrap());
    assert_eq!(a["usage"]["cache_read_input_tokens"], 20);
    assert_eq!(a["stop_reason"], "tool_use");
    let m =
        json(&translate_response(Gemini, OpenaiChat, &fixture("upstream/gemini_response_max_tokens.json")).unwrap());
    assert_eq!(m["choices"][0]["finish_reason"], "length");

    let g = json(&translate_response(OpenaiChat, Gemini, &fixture("upstream/chat_response.json")).unwrap());
    let parts = g["candidates"][0]["content"]["parts"].as_array().unwrap();
    assert_eq!(parts[0], json!({"text": "plan first", "thought": true}));
    assert_eq!(parts[2]["functionCall"], json!({"id": "call_1", "name": "Read", "args": {"path": "a.rs"}}));
    assert_eq!(g["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        g["usageMetadata"],
        json!({"promptTokenCount": 50, "candidatesTokenCount": 9, "totalTokenCount": 59, "cachedContentTokenCount": 20})
    );
    let g = json(&translate_response(OpenaiChat, Gemini, &fixture("upstream/chat_response_max_tokens.json")).unwrap());
    assert_eq!(g["candidates"][0]["finishReason"], "MAX_TOKENS");
}

fn stream(upstream: Dialect, client: Dialect, input: &[u8]) -> Vec<u8> {
    run(StreamTranslator::new(upstream, client, "client-model"), &[input]).0
}

/// Gemini events as a client reads them: the parts of every event in order, the last finish
/// reason and usage.
fn gemini_events(bytes: &[u8]) -> (Vec<Value>, Option<String>, Value) {
    let mut parts = Vec::new();
    let (mut finish, mut usage) = (None, Value::Null);
    for e in events(bytes) {
        assert!(e.name.is_none(), "Gemini events have no names");
        let c = &e.data["candidates"][0];
        parts.extend(c["content"]["parts"].as_array().cloned().unwrap_or_default());
        if let Some(f) = c["finishReason"].as_str() {
            finish = Some(f.to_string());
            usage = e.data["usageMetadata"].clone();
        }
    }
    (parts, finish, usage)
}

#[test]
fn streams_both_ways() {
    let gemini = fixture("upstream/gemini_stream.sse");
    let responses = fixture("upstream/responses_stream.sse");
    for (upstream, client, input, name) in [
        (Gemini, OpenaiChat, gemini.clone(), "stream_gemini_to_chat.sse"),
        (Gemini, Anthropic, gemini.clone(), "stream_gemini_to_anthropic.sse"),
        (Gemini, OpenaiResponses, gemini.clone(), "stream_gemini_to_responses.sse"),
        (OpenaiChat, Gemini, chat_stream(), "stream_chat_to_gemini.sse"),
        (Anthropic, Gemini, anthropic_stream(), "stream_anthropic_to_gemini.sse"),
        (OpenaiResponses, Gemini, responses, "stream_responses_to_gemini.sse"),
    ] {
        golden_sse(name, &stream(upstream, client, &input));
    }
    assert_anthropic_sequence(&events(&stream(Gemini, Anthropic, &gemini)));
    assert_responses_sequence(&events(&stream(Gemini, OpenaiResponses, &gemini)));
    // Chat -> Gemini: text and thoughts as they come, calls whole, the finish and usage last.
    let (parts, finish, usage) = gemini_events(&stream(OpenaiChat, Gemini, &chat_stream()));
    let text: String = parts.iter().filter(|p| p["thought"] != true).filter_map(|p| p["text"].as_str()).collect();
    assert_eq!(text, "Héllo wörld 🚀and ");
    let calls: Vec<&Value> = parts.iter().filter_map(|p| p.get("functionCall")).collect();
    assert_eq!(calls[0], &json!({"id": "call_A", "name": "Read", "args": {"path": "ä.rs"}}));
    assert_eq!(calls[1], &json!({"id": "call_B", "name": "Bash", "args": {"cmd": "ls"}}));
    assert_eq!(finish.as_deref(), Some("STOP"));
    assert_eq!(
        usage,
        json!({"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120, "cachedContentTokenCount": 60})
    );
}

#[test]
fn a_gemini_stream_cut_before_its_finish_ends_in_an_error_for_the_client() {
    let gemini = fixture("upstream/gemini_stream.sse");
    let text = String::from_utf8(gemini).unwrap();
    let cut = &text[..text.rfind("data: ").unwrap()];
    let out = String::from_utf8(stream(Gemini, OpenaiChat, cut.as_bytes())).unwrap();
    assert!(out.contains("\"error\"") && !out.contains("[DONE]"), "{out}");
    // And a Chat stream cut short reaches a Gemini client as a Gemini error event.
    let chat = String::from_utf8(chat_stream()).unwrap();
    let cut = &chat[..chat.find("\"finish_reason\":\"tool_calls\"").unwrap()];
    let cut = &cut[..cut.rfind("data: ").unwrap()];
    let out = stream(OpenaiChat, Gemini, cut.as_bytes());
    let last = events(&out).pop().unwrap();
    assert_eq!(last.data["error"]["status"], "INTERNAL", "{:?}", last.data);
}

/// The client's next request after `answer`: the user's question, the assistant turn as the
/// client keeps it, and one result per call.
fn next_request(client: Dialect, answer: &Value) -> Value {
    match client {
        OpenaiChat => {
            let msg = answer["choices"][0]["message"].clone();
            let mut messages = vec![json!({"role": "user", "content": "go"}), msg.clone()];
            for c in msg["tool_calls"].as_array().unwrap() {
                messages.push(json!({"role": "tool", "tool_call_id": c["id"], "content": "ok"}));
            }
            json!({"model": "m", "messages": messages})
        }
        Anthropic => {
            let content = answer["content"].clone();
            let results: Vec<Value> = content
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| json!({"type": "tool_result", "tool_use_id": b["id"], "content": "ok"}))
                .collect();
            json!({"model": "m", "max_tokens": 100, "messages": [
                {"role": "user", "content": "go"}, {"role": "assistant", "content": content}, {"role": "user", "content": results}]})
        }
        _ => {
            // The output items as they came, then the results (as Codex sends them).
            let output = answer["output"].as_array().unwrap();
            let mut input = vec![json!({"role": "user", "content": "go"})];
            input.extend(output.iter().cloned());
            for item in output.iter().filter(|i| i["type"] == "function_call") {
                input.push(json!({"type": "function_call_output", "call_id": item["call_id"], "output": "ok"}));
            }
            json!({"model": "m", "input": input})
        }
    }
}

/// The function call parts of the Gemini request a client's next turn becomes.
fn calls_sent_back(client: Dialect, answer: &Value) -> Vec<Value> {
    let body = serde_json::to_vec(&next_request(client, answer)).unwrap();
    let v = json(&translate_request_with(client, Gemini, &body, &RequestOptions::default()).unwrap());
    v["contents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["parts"].as_array().unwrap().clone())
        .filter(|p| p.get("functionCall").is_some())
        .collect()
}

#[test]
fn thought_signatures_come_back_unchanged_from_every_client() {
    for client in [OpenaiChat, Anthropic, OpenaiResponses] {
        // A whole answer, and the same turn streamed (read back into a whole answer).
        let whole = json(&translate_response(Gemini, client, &fixture("upstream/gemini_response.json")).unwrap());
        let streamed = stream(Gemini, client, &fixture("upstream/gemini_stream.sse"));
        for answer in [whole, collect(client, &streamed)] {
            let calls = calls_sent_back(client, &answer);
            assert_eq!(calls.len(), 2, "{client}: {calls:?}");
            assert_eq!(calls[0]["thoughtSignature"], SIG, "{client}: the first call's signature, byte for byte");
            assert!(calls[1].get("thoughtSignature").is_none(), "{client}: none was given to the second");
            // Gemini gave no ids: none are made up on the way back.
            assert_eq!(
                calls[0]["functionCall"],
                json!({"name": "read_file", "args": {"file_path": "a.rs"}}),
                "{client}"
            );
        }
    }
}

/// A client's stream read into the whole answer its SDK would build (enough for the history).
fn collect(client: Dialect, bytes: &[u8]) -> Value {
    let evs = events(bytes);
    match client {
        OpenaiChat => {
            let mut calls: Vec<Value> = Vec::new();
            for e in &evs {
                for c in e.data["choices"][0]["delta"]["tool_calls"].as_array().into_iter().flatten() {
                    let i = c["index"].as_u64().unwrap() as usize;
                    if i == calls.len() {
                        calls.push(json!({"id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": ""}}));
                    }
                    let args = calls[i]["function"]["arguments"].as_str().unwrap().to_string()
                        + c["function"]["arguments"].as_str().unwrap_or("");
                    calls[i]["function"]["arguments"] = json!(args);
                }
            }
            json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": calls}}]})
        }
        Anthropic => {
            let mut content: Vec<Value> = Vec::new();
            for e in &evs {
                match e.ty() {
                    "content_block_start" => content.push(e.data["content_block"].clone()),
                    "content_block_delta" if e.data["delta"]["type"] == "input_json_delta" => {
                        let last = content.last_mut().unwrap();
                        let so_far = last.get("partial").and_then(Value::as_str).unwrap_or("").to_string();
                        last["partial"] = json!(so_far + e.data["delta"]["partial_json"].as_str().unwrap());
                    }
                    _ => {}
                }
            }
            for b in &mut content {
                if let Some(p) = b.as_object_mut().and_then(|o| o.remove("partial")) {
                    b["input"] = json(p.as_str().unwrap().as_bytes());
                }
            }
            json!({"content": content})
        }
        _ => {
            let done = evs.iter().rev().find(|e| e.ty() == "response.completed").unwrap();
            done.data["response"].clone()
        }
    }
}

#[test]
fn translations_are_deterministic() {
    let call = streaming_call();
    assert_eq!(from_gemini(Anthropic, &call, true), from_gemini(Anthropic, &call, true));
    assert_eq!(
        to_gemini(OpenaiResponses, "responses_request.json", true),
        to_gemini(OpenaiResponses, "responses_request.json", true)
    );
}

#[test]
fn bad_gemini_bodies_are_refused_with_the_field_named() {
    let call = streaming_call();
    let opts = RequestOptions { gemini: Some(&call), ..Default::default() };
    for (body, field) in [
        (r#"{"contents": {"role": "user"}}"#, "contents"),
        (r#"{"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}"#, "contents"),
        (r#"[1]"#, "object"),
    ] {
        let err = translate_request_with(Gemini, OpenaiChat, body.as_bytes(), &opts).unwrap_err();
        assert!(err.is_client_error());
        assert!(err.to_string().contains(field), "{body}: {err}");
    }
    let no_model = translate_request_with(Gemini, Anthropic, br#"{"contents": []}"#, &RequestOptions::default());
    assert!(no_model.unwrap_err().to_string().contains("model"));
}
