"""Drives a routemesh gateway with the official `openai` Python client.

Usage: python openai_client.py BASE_URL
Prints one JSON object with what the client saw; the Rust test checks it.
"""

import json
import sys

import openai

base = sys.argv[1].rstrip("/") + "/v1"
client = openai.OpenAI(base_url=base, api_key="not-needed", max_retries=0)

raw = client.chat.completions.with_raw_response.create(
    model="auto",
    messages=[{"role": "user", "content": "What is the derivative of x^3?"}],
)
completion = raw.parse()

chunks = []
stream = client.chat.completions.create(
    model="auto",
    stream=True,
    stream_options={"include_usage": True},
    messages=[{"role": "user", "content": "Hello, good morning!"}],
)
for chunk in stream:
    chunks.append(chunk)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
usage = next((c.usage for c in chunks if c.usage), None)

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    not_found = None
except openai.NotFoundError as e:
    not_found = {"status": e.status_code, "code": e.code}

print(json.dumps({
    "openai_version": openai.__version__,
    "plain": {
        "model": completion.model,
        "content": completion.choices[0].message.content,
        "decision": raw.headers.get("x-routemesh-decision"),
        "routed_model": raw.headers.get("x-routemesh-model"),
    },
    "stream": {
        "chunks": len(chunks),
        "model": chunks[0].model if chunks else None,
        "text": text,
        "completion_tokens": usage.completion_tokens if usage else None,
    },
    "not_found": not_found,
}))
