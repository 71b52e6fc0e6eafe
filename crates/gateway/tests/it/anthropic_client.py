"""Drives a routemesh gateway with the official `anthropic` Python SDK.

Usage: python anthropic_client.py BASE_URL
Prints one JSON object with what the SDK saw; the Rust test checks it.
"""

import json
import sys

import anthropic

client = anthropic.Anthropic(base_url=sys.argv[1].rstrip("/"), api_key="sk-test", max_retries=0)

raw = client.messages.with_raw_response.create(
    model="auto",
    max_tokens=64,
    system="You are terse.",
    messages=[{"role": "user", "content": "What is the derivative of x^3?"}],
)
plain = raw.parse()

events = []
with client.messages.stream(
    model="auto",
    max_tokens=64,
    messages=[{"role": "user", "content": "Hello, good morning!"}],
) as stream:
    for event in stream:
        events.append(event.type)
    streamed = stream.get_final_message()

tools = [{
    "name": "search",
    "description": "Search the web.",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}]
ask = [{"role": "user", "content": "Find the population of Paris."}]
call = client.messages.create(model="auto", max_tokens=64, tools=tools, messages=ask)
use = next(b for b in call.content if b.type == "tool_use")
answer = client.messages.create(
    model="auto",
    max_tokens=64,
    tools=tools,
    messages=ask + [
        {"role": "assistant", "content": call.content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use.id, "content": "2.1 million"},
        ]},
    ],
)
with client.messages.stream(model="auto", max_tokens=64, tools=tools, messages=ask) as stream:
    streamed_call = stream.get_final_message()

try:
    client.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    not_found = None
except anthropic.NotFoundError as e:
    not_found = {"status": e.status_code, "type": e.body["error"]["type"]}

try:
    client.messages.create(model="auto", max_tokens=8, messages=[{"role": "user", "content": "x"}],
                           extra_body={"container": "c1"})
    unsupported = None
except anthropic.BadRequestError as e:
    unsupported = {"status": e.status_code, "message": e.body["error"]["message"]}

print(json.dumps({
    "anthropic_version": anthropic.__version__,
    "plain": {
        "text": plain.content[0].text,
        "stop_reason": plain.stop_reason,
        "output_tokens": plain.usage.output_tokens,
        "decision": raw.headers.get("x-routemesh-decision"),
        "model": raw.headers.get("x-routemesh-model"),
    },
    "stream": {
        "events": events,
        "text": "".join(b.text for b in streamed.content if b.type == "text"),
        "stop_reason": streamed.stop_reason,
    },
    "tools": {
        "stop_reason": call.stop_reason,
        "name": use.name,
        "input": use.input,
        "answer": "".join(b.text for b in answer.content if b.type == "text"),
        "streamed_input": next((b.input for b in streamed_call.content if b.type == "tool_use"), None),
        "streamed_stop_reason": streamed_call.stop_reason,
    },
    "not_found": not_found,
    "unsupported": unsupported,
}))
