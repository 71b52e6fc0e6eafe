//! Chat-completions answers as Anthropic Messages answers: a whole JSON
//! completion as one `message`, and a chunk stream as Messages events,
//! translated event by event as chunks arrive (nothing is held back past
//! the end of an SSE event).

use serde_json::{Value, json};

use crate::api::sse::Events;
pub use crate::api::sse::emit;

/// A Messages id for the upstream's completion id.
fn message_id(chat_id: Option<&str>) -> String {
    match chat_id {
        Some(id) if id.starts_with("msg_") => id.to_owned(),
        Some(id) if !id.is_empty() => format!("msg_{id}"),
        _ => format!("msg_{}", uuid::Uuid::new_v4().simple()),
    }
}

/// `finish_reason` as a Messages `stop_reason`.
fn stop_reason(finish: Option<&str>) -> Option<&'static str> {
    Some(match finish? {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    })
}

/// Reasoning text a chat message carries (vLLM's `reasoning_content`,
/// others' `reasoning`).
fn reasoning_of(m: &Value) -> Option<&str> {
    m.get("reasoning_content")
        .or_else(|| m.get("reasoning"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A whole chat completion as a Messages `message`, naming `model` (what
/// the client asked for).
pub fn message(chat: &Value, model: &str) -> Value {
    let choice = &chat["choices"][0];
    let m = &choice["message"];
    let mut content = Vec::new();
    if let Some(r) = reasoning_of(m) {
        content.push(json!({ "type": "thinking", "thinking": r, "signature": "" }));
    }
    if let Some(text) = m.get("content").and_then(Value::as_str)
        && !text.is_empty()
    {
        content.push(json!({ "type": "text", "text": text }));
    }
    for call in m["tool_calls"].as_array().into_iter().flatten() {
        let args = call["function"]["arguments"].as_str().unwrap_or("{}");
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        content.push(json!({
            "type": "tool_use",
            "id": call["id"].as_str().unwrap_or_default(),
            "name": call["function"]["name"].as_str().unwrap_or_default(),
            "input": input,
        }));
    }
    json!({
        "id": message_id(chat["id"].as_str()),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str()),
        "stop_sequence": null,
        "usage": usage(&chat["usage"]),
    })
}

fn usage(u: &Value) -> Value {
    json!({
        "input_tokens": u["prompt_tokens"].as_u64().unwrap_or(0),
        "output_tokens": u["completion_tokens"].as_u64().unwrap_or(0),
    })
}

/// The open content block of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    /// A tool call, by its index in the chunks' `tool_calls`.
    Tool(u64),
}

/// Translates a chat-completions SSE stream into Messages events, one
/// input event at a time.
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    events: Events,
    started: bool,
    /// The open block and its index.
    open: Option<(Block, usize)>,
    next_index: usize,
    stop_reason: Option<&'static str>,
    input_tokens: u64,
    output_tokens: u64,
    finished: bool,
}

impl StreamTranslator {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            events: Events::default(),
            started: false,
            open: None,
            next_index: 0,
            stop_reason: None,
            input_tokens: 0,
            output_tokens: 0,
            finished: false,
        }
    }

    /// The Messages events for the next bytes of the upstream's stream.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for data in self.events.feed(bytes) {
            if data == "[DONE]" {
                self.finish(&mut out);
            } else if let Ok(chunk) = serde_json::from_str::<Value>(&data) {
                self.chunk(&chunk, &mut out);
            } else {
                tracing::debug!("an unreadable chunk in an upstream stream");
            }
        }
        out
    }

    /// The closing events when the upstream's stream ended without
    /// `[DONE]` (nothing if it did).
    pub fn end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish(&mut out);
        out
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        emit(
            out,
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": message_id(id),
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": { "input_tokens": self.input_tokens, "output_tokens": 0 },
                },
            }),
        );
    }

    /// Opens `block` (closing another first) and returns its index.
    fn open(&mut self, block: Block, start: impl FnOnce() -> Value, out: &mut Vec<u8>) -> usize {
        if let Some((open, index)) = &self.open
            && *open == block
        {
            return *index;
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        emit(
            out,
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": start() }),
        );
        self.open = Some((block, index));
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            emit(
                out,
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": index }),
            );
        }
    }

    fn delta(out: &mut Vec<u8>, index: usize, delta: Value) {
        emit(
            out,
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        );
    }

    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.input_tokens = u["prompt_tokens"].as_u64().unwrap_or(self.input_tokens);
            self.output_tokens = u["completion_tokens"]
                .as_u64()
                .unwrap_or(self.output_tokens);
        }
        self.start(chunk["id"].as_str(), out);
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else {
            return;
        };
        let d = &choice["delta"];
        if let Some(r) = reasoning_of(d) {
            let i = self.open(
                Block::Thinking,
                || json!({ "type": "thinking", "thinking": "" }),
                out,
            );
            Self::delta(out, i, json!({ "type": "thinking_delta", "thinking": r }));
        }
        if let Some(text) = d.get("content").and_then(Value::as_str)
            && !text.is_empty()
        {
            let i = self.open(Block::Text, || json!({ "type": "text", "text": "" }), out);
            Self::delta(out, i, json!({ "type": "text_delta", "text": text }));
        }
        for call in d["tool_calls"].as_array().into_iter().flatten() {
            let k = call["index"].as_u64().unwrap_or(0);
            let start = || {
                json!({
                    "type": "tool_use",
                    "id": call["id"].as_str().unwrap_or_default(),
                    "name": call["function"]["name"].as_str().unwrap_or_default(),
                    "input": {},
                })
            };
            let i = self.open(Block::Tool(k), start, out);
            if let Some(args) = call["function"]["arguments"].as_str()
                && !args.is_empty()
            {
                Self::delta(
                    out,
                    i,
                    json!({ "type": "input_json_delta", "partial_json": args }),
                );
            }
        }
        if let Some(reason) = stop_reason(choice["finish_reason"].as_str()) {
            self.stop_reason = Some(reason);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.start(None, out);
        self.close(out);
        emit(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": { "stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null },
                "usage": { "input_tokens": self.input_tokens, "output_tokens": self.output_tokens },
            }),
        );
        emit(out, "message_stop", &json!({ "type": "message_stop" }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events of `sse` as (name, data) pairs.
    fn events(sse: &[u8]) -> Vec<(String, Value)> {
        let text = String::from_utf8_lossy(sse);
        text.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let mut lines = e.lines();
                let name = lines
                    .next()
                    .and_then(|l| l.strip_prefix("event: "))
                    .expect("a name");
                let data = lines
                    .next()
                    .and_then(|l| l.strip_prefix("data: "))
                    .expect("data");
                (
                    name.to_owned(),
                    serde_json::from_str(data).expect("json data"),
                )
            })
            .collect()
    }

    #[test]
    fn a_whole_completion_becomes_a_message() {
        let chat = json!({
            "id": "chatcmpl-1",
            "choices": [{ "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me check.",
                "tool_calls": [{ "id": "call_1", "type": "function",
                    "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } }]
            }}],
            "usage": { "prompt_tokens": 12, "completion_tokens": 7 }
        });
        let m = message(&chat, "auto");
        assert_eq!(m["id"], "msg_chatcmpl-1");
        assert_eq!(m["model"], "auto");
        assert_eq!(
            m["content"][0],
            json!({ "type": "text", "text": "Let me check." })
        );
        assert_eq!(m["content"][1]["input"], json!({ "city": "Paris" }));
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["usage"],
            json!({ "input_tokens": 12, "output_tokens": 7 })
        );
    }

    #[test]
    fn a_chunk_stream_becomes_messages_events_even_split_mid_event() {
        let upstream = concat!(
            "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n",
            "data: [DONE]\n\n",
        );
        let mut t = StreamTranslator::new("auto");
        let mut out = Vec::new();
        // Fed in 7-byte pieces: events are only read once complete.
        for piece in upstream.as_bytes().chunks(7) {
            out.extend(t.feed(piece));
        }
        out.extend(t.end());
        let names: Vec<String> = events(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        let ev = events(&out);
        assert_eq!(ev[0].1["message"]["id"], "msg_c1");
        assert_eq!(
            ev[2].1["delta"],
            json!({ "type": "text_delta", "text": "Hel" })
        );
        assert_eq!(ev[5].1["content_block"]["id"], "call_9");
        let json: String = [&ev[6].1, &ev[7].1]
            .iter()
            .map(|e| e["delta"]["partial_json"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(json, "{\"a\":1}");
        assert_eq!(ev[9].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[9].1["usage"]["output_tokens"], 3);
    }

    #[test]
    fn a_stream_cut_short_still_ends_the_message() {
        let mut t = StreamTranslator::new("m");
        let mut out =
            t.feed(b"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n");
        out.extend(t.end());
        let names: Vec<String> = events(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.last().map(String::as_str), Some("message_stop"));
        assert!(t.end().is_empty(), "ended once");
    }
}
