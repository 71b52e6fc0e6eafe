"""Drives a routemesh gateway's Responses API with the official `openai` SDK.

Usage: python openai_responses.py BASE_URL
Prints one JSON object with what the SDK saw; the Rust test checks it.
"""

import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1].rstrip("/") + "/v1", api_key="not-needed", max_retries=0)

raw = client.responses.with_raw_response.create(
    model="auto", instructions="You are terse.", input="What is the derivative of x^3?",
)
plain = raw.parse()

types = []
with client.responses.stream(model="auto", input="Hello, good morning!") as stream:
    for event in stream:
        types.append(event.type)
    streamed = stream.get_final_response()

tools = [{
    "type": "function", "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}]
ask = [{"role": "user", "content": "Find the population of Paris."}]
call = client.responses.create(model="auto", tools=tools, input=ask)
fc = next(o for o in call.output if o.type == "function_call")
answer = client.responses.create(
    model="auto", tools=tools,
    input=ask + [
        {"type": "function_call", "call_id": fc.call_id, "name": fc.name, "arguments": fc.arguments},
        {"type": "function_call_output", "call_id": fc.call_id, "output": "2.1 million"},
    ],
)
with client.responses.stream(model="auto", tools=tools, input=ask) as stream:
    streamed_call = stream.get_final_response()
sfc = next((o for o in streamed_call.output if o.type == "function_call"), None)

try:
    client.responses.create(model="auto", input="x", previous_response_id="resp_123")
    refused = None
except openai.BadRequestError as e:
    refused = {"status": e.status_code, "param": e.param}

emb = client.embeddings.with_raw_response.create(model="llama-3.2-1b", input=["one", "two"])
embedded = emb.parse()
legacy = client.completions.create(model="qwen-coder-7b", prompt="def add(a, b):", max_tokens=8)
try:
    client.embeddings.create(model="auto", input="x")
    alias = None
except openai.BadRequestError as e:
    alias = {"status": e.status_code, "param": e.param}

print(json.dumps({
    "embeddings": {
        "count": len(embedded.data),
        "dim": len(embedded.data[0].embedding),
        "model": emb.headers.get("x-routemesh-model"),
        "upstream": emb.headers.get("x-fake-upstream"),
    },
    "completions": {"text": legacy.choices[0].text},
    "alias": alias,
    "plain": {
        "text": plain.output_text,
        "status": plain.status,
        "output_tokens": plain.usage.output_tokens if plain.usage else None,
        "decision": raw.headers.get("x-routemesh-decision"),
        "model": raw.headers.get("x-routemesh-model"),
    },
    "stream": {"types": types, "text": streamed.output_text},
    "tools": {
        "name": fc.name,
        "arguments": json.loads(fc.arguments),
        "answer": answer.output_text,
        "streamed_arguments": json.loads(sfc.arguments) if sfc else None,
    },
    "refused": refused,
}))
