"""Drives a routemesh gateway whose only upstream speaks Anthropic's Messages
API with the official `openai` SDK: chat completions and the Responses API,
streaming and not, and a tool round trip on each.

Usage: python openai_via_anthropic.py BASE_URL
Prints one JSON object with what the SDK saw; the Rust test checks it.
"""

import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1].rstrip("/") + "/v1", api_key="sk-client", max_retries=0)

raw = client.chat.completions.with_raw_response.create(
    model="auto", messages=[{"role": "user", "content": "Hello there"}],
)
chat = raw.parse()
chunks = list(client.chat.completions.create(
    model="auto", messages=[{"role": "user", "content": "Hello again"}], stream=True,
    stream_options={"include_usage": True},
))
chat_stream_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
chat_stream_usage = next((c.usage.completion_tokens for c in chunks if c.usage), None)

fn = {"type": "function", "function": {
    "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}}
ask = [{"role": "user", "content": "Find the population of Paris."}]
called = client.chat.completions.create(model="auto", messages=ask, tools=[fn])
call = called.choices[0].message.tool_calls[0]
answered = client.chat.completions.create(model="auto", tools=[fn], messages=ask + [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
    {"role": "tool", "tool_call_id": call.id, "content": "2.1 million"},
])

response = client.responses.create(model="auto", instructions="Be terse.", input="What is 2+2?")
types = []
with client.responses.stream(model="auto", input="Good morning!") as stream:
    for event in stream:
        types.append(event.type)
    streamed = stream.get_final_response()
tools = [{
    "type": "function", "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}]
r_call = client.responses.create(model="auto", tools=tools, input=ask)
fc = next(o for o in r_call.output if o.type == "function_call")
r_answer = client.responses.create(model="auto", tools=tools, input=ask + [
    {"type": "function_call", "call_id": fc.call_id, "name": fc.name, "arguments": fc.arguments},
    {"type": "function_call_output", "call_id": fc.call_id, "output": "2.1 million"},
])

print(json.dumps({
    "chat": {
        "text": chat.choices[0].message.content,
        "finish": chat.choices[0].finish_reason,
        "completion_tokens": chat.usage.completion_tokens,
        "model": raw.headers.get("x-routemesh-model"),
    },
    "chat_stream": {"text": chat_stream_text, "completion_tokens": chat_stream_usage},
    "chat_tools": {
        "finish": called.choices[0].finish_reason,
        "name": call.function.name,
        "arguments": json.loads(call.function.arguments),
        "answer": answered.choices[0].message.content,
    },
    "responses": {"text": response.output_text, "status": response.status},
    "responses_stream": {"first": types[0], "last": types[-1], "text": streamed.output_text},
    "responses_tools": {
        "name": fc.name,
        "arguments": json.loads(fc.arguments),
        "answer": r_answer.output_text,
    },
}))
