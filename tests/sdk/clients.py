"""Drives the official Python SDKs through tokenfold: a tool-call round trip per dialect,
streaming and not. Run by tests/sdk_clients.rs with TOKENFOLD_URL set; exits non-zero on failure."""

import os
import sys

FINAL = "It is sunny in Paris."
BASE = os.environ["TOKENFOLD_URL"]


def anthropic_case():
    import anthropic

    client = anthropic.Anthropic(base_url=BASE, api_key="client-key", max_retries=0)
    tools = [{
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }]
    first = [{"role": "user", "content": "Weather in Paris?"}]

    for streaming in (False, True):
        if streaming:
            with client.messages.stream(model="claude-test", max_tokens=100, messages=first, tools=tools) as s:
                msg = s.get_final_message()
        else:
            msg = client.messages.create(model="claude-test", max_tokens=100, messages=first, tools=tools)
        assert msg.stop_reason == "tool_use", msg
        call = [b for b in msg.content if b.type == "tool_use"][0]
        assert call.name == "get_weather" and call.input == {"city": "Paris"}, call
        follow = first + [
            {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ]
        if streaming:
            with client.messages.stream(model="claude-test", max_tokens=100, messages=follow, tools=tools) as s:
                text = "".join(s.text_stream)
        else:
            done = client.messages.create(model="claude-test", max_tokens=100, messages=follow, tools=tools)
            text = done.content[0].text
        assert text == FINAL, text


def chat_case():
    import openai

    client = openai.OpenAI(base_url=BASE + "/v1", api_key="client-key", max_retries=0)
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    first = [{"role": "user", "content": "Weather in Paris?"}]
    for streaming in (False, True):
        if streaming:
            name, args, call_id = "", "", None
            for chunk in client.chat.completions.create(model="gpt-test", messages=first, tools=tools, stream=True):
                for tc in chunk.choices[0].delta.tool_calls or []:
                    call_id = tc.id or call_id
                    name += tc.function.name or ""
                    args += tc.function.arguments or ""
        else:
            r = client.chat.completions.create(model="gpt-test", messages=first, tools=tools)
            assert r.choices[0].finish_reason == "tool_calls"
            tc = r.choices[0].message.tool_calls[0]
            name, args, call_id = tc.function.name, tc.function.arguments, tc.id
        assert name == "get_weather" and args == '{"city":"Paris"}', (name, args)
        follow = first + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        ]
        if streaming:
            text = "".join(c.choices[0].delta.content or "" for c in
                           client.chat.completions.create(model="gpt-test", messages=follow, stream=True))
        else:
            text = client.chat.completions.create(model="gpt-test", messages=follow).choices[0].message.content
        assert text == FINAL, text


def responses_case():
    import openai

    client = openai.OpenAI(base_url=BASE + "/v1", api_key="client-key", max_retries=0)
    tools = [{"type": "function", "name": "get_weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    for streaming in (False, True):
        if streaming:
            calls = []
            for ev in client.responses.create(model="gpt-test", input="Weather in Paris?", tools=tools, stream=True):
                if ev.type == "response.output_item.done" and ev.item.type == "function_call":
                    calls.append(ev.item)
            call = calls[0]
        else:
            r = client.responses.create(model="gpt-test", input="Weather in Paris?", tools=tools)
            call = [item for item in r.output if item.type == "function_call"][0]
        assert call.name == "get_weather" and call.arguments == '{"city":"Paris"}', call
        follow = [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ]
        if streaming:
            text = "".join(ev.delta for ev in client.responses.create(model="gpt-test", input=follow, stream=True)
                           if ev.type == "response.output_text.delta")
        else:
            text = client.responses.create(model="gpt-test", input=follow).output_text
        assert text == FINAL, text


CASES = {"anthropic": anthropic_case, "openai-chat": chat_case, "openai-responses": responses_case}

if __name__ == "__main__":
    CASES[sys.argv[1]]()
    print("ok", sys.argv[1])
