//! An upstream that serves Anthropic's Messages API (`upstreams[].api:
//! anthropic`): the chat-completions request every routed request becomes
//! is translated into a Messages request, and the answer back into chat
//! completions — a whole message, or its events one by one as chunks — so
//! everything above the pool (cache, outcomes, every front door) reads
//! chat completions whatever the upstream speaks.

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};

use super::BodyStream;

/// The Messages API version the gateway speaks.
pub(crate) const VERSION: &str = "2023-06-01";

/// Chat-completions fields the translation reads; any other is refused
/// by name (a silent drop would change what the client asked for).
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stream",
    "stream_options",
    "reasoning_effort",
    "user",
    "n",
];

/// Without a client `max_tokens` (required by Messages).
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A chat-completions body as a Messages body; `Err` names what cannot be
/// translated.
pub(crate) fn request(chat: &[u8]) -> Result<Vec<u8>, String> {
    let Ok(Value::Object(c)) = serde_json::from_slice::<Value>(chat) else {
        return Err("the request is not a JSON object".into());
    };
    if let Some(k) = c.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "`{k}` cannot be sent to an Anthropic upstream (no Messages counterpart)"
        ));
    }
    if c.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err("`n` other than 1 cannot be sent to an Anthropic upstream".into());
    }
    let mut m = Map::new();
    m.insert(
        "model".into(),
        c.get("model").cloned().unwrap_or(Value::Null),
    );
    let mut max_tokens = c
        .get("max_completion_tokens")
        .or_else(|| c.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let (system, messages) = messages(c.get("messages").unwrap_or(&Value::Null))?;
    if !system.is_empty() {
        m.insert("system".into(), Value::String(system.join("\n\n")));
    }
    m.insert("messages".into(), Value::Array(messages));
    for key in ["temperature", "top_p", "top_k"] {
        if let Some(v) = c.get(key).filter(|v| !v.is_null()) {
            m.insert(key.into(), v.clone());
        }
    }
    match c.get("stop") {
        Some(Value::String(s)) => {
            m.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            m.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(Value::Array(tools)) = c.get("tools") {
        let mut out = Vec::new();
        for t in tools {
            let f = &t["function"];
            let mut tool = json!({
                "name": f["name"],
                "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({ "type": "object" })),
            });
            if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                tool["description"] = d.clone();
            }
            out.push(tool);
        }
        m.insert("tools".into(), Value::Array(out));
    }
    let parallel_off = c.get("parallel_tool_calls") == Some(&Value::Bool(false));
    let choice = match c.get("tool_choice") {
        None | Some(Value::Null) => parallel_off.then(|| json!({ "type": "auto" })),
        Some(Value::String(s)) => Some(match s.as_str() {
            "required" => json!({ "type": "any" }),
            "none" => json!({ "type": "none" }),
            _ => json!({ "type": "auto" }),
        }),
        Some(v) => match v["function"]["name"].as_str() {
            Some(name) => Some(json!({ "type": "tool", "name": name })),
            None => return Err("tool_choice: unreadable".into()),
        },
    };
    if let Some(mut choice) = choice {
        if parallel_off {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
        m.insert("tool_choice".into(), choice);
    }
    let budget = match c.get("reasoning_effort").and_then(Value::as_str) {
        Some("low") => Some(2048),
        Some("medium") => Some(8192),
        Some("high") => Some(16384),
        _ => None,
    };
    if let Some(budget) = budget {
        // The answer's tokens come on top of the thinking budget.
        if max_tokens <= budget {
            max_tokens += budget;
        }
        m.insert(
            "thinking".into(),
            json!({ "type": "enabled", "budget_tokens": budget }),
        );
    }
    m.insert("max_tokens".into(), json!(max_tokens));
    if let Some(user) = c.get("user").and_then(Value::as_str) {
        m.insert("metadata".into(), json!({ "user_id": user }));
    }
    if c.get("stream") == Some(&Value::Bool(true)) {
        m.insert("stream".into(), Value::Bool(true));
    }
    serde_json::to_vec(&Value::Object(m)).map_err(|e| e.to_string())
}

/// The system texts and the Messages turns of chat `messages`: tool
/// results join one user turn, an assistant's tool calls become
/// `tool_use` blocks.
fn messages(chat: &Value) -> Result<(Vec<String>, Vec<Value>), String> {
    let Value::Array(list) = chat else {
        return Err("messages: not an array".into());
    };
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for (i, msg) in list.iter().enumerate() {
        let role = msg["role"].as_str().unwrap_or_default();
        match role {
            "system" | "developer" => system.push(text_of(&msg["content"])),
            "user" => {
                let blocks = user_blocks(&msg["content"], i)?;
                push(&mut out, "user", blocks);
            }
            "assistant" => {
                let mut blocks = Vec::new();
                let text = text_of(&msg["content"]);
                if !text.is_empty() {
                    blocks.push(json!({ "type": "text", "text": text }));
                }
                for call in msg["tool_calls"].as_array().into_iter().flatten() {
                    let args = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({
                        "type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input,
                    }));
                }
                push(&mut out, "assistant", blocks);
            }
            "tool" => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": msg["tool_call_id"],
                    "content": text_of(&msg["content"]),
                });
                push(&mut out, "user", vec![block]);
            }
            other => {
                return Err(format!(
                    "messages[{i}].role `{other}` has no Messages counterpart"
                ));
            }
        }
    }
    Ok((system, out))
}

/// Appends `blocks` as a `role` turn, merged into the last turn when it has
/// the same role (Messages alternates user and assistant).
fn push(out: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = out.last_mut()
        && last["role"] == role
        && let Some(content) = last["content"].as_array_mut()
    {
        content.extend(blocks);
        return;
    }
    out.push(json!({ "role": role, "content": blocks }));
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, String> {
    match content {
        Value::String(s) => Ok(vec![json!({ "type": "text", "text": s })]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| match p["type"].as_str() {
                Some("text") => Ok(json!({ "type": "text", "text": p["text"] })),
                Some("image_url") => {
                    let url = p["image_url"]["url"].as_str().unwrap_or_default();
                    Ok(image(url))
                }
                other => Err(format!(
                    "messages[{i}].content[{j}]: a `{}` part has no Messages counterpart",
                    other.unwrap_or("(missing)")
                )),
            })
            .collect(),
        _ => Ok(Vec::new()),
    }
}

fn image(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((media, data)) = rest.split_once(";base64,")
    {
        return json!({ "type": "image", "source": { "type": "base64", "media_type": media, "data": data } });
    }
    json!({ "type": "image", "source": { "type": "url", "url": url } })
}

fn finish_reason(stop: Option<&str>) -> Option<&'static str> {
    Some(match stop? {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    })
}

/// A whole Messages answer as a chat completion.
fn completion(message: &Value) -> Value {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    for b in message["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
            Some("thinking") => thinking.push_str(b["thinking"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": b["id"], "type": "function",
                "function": { "name": b["name"], "arguments": b["input"].to_string() },
            })),
            _ => {}
        }
    }
    let mut msg = json!({ "role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) } });
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    if !thinking.is_empty() {
        msg["reasoning_content"] = Value::String(thinking);
    }
    let (i, o) = (
        message["usage"]["input_tokens"].as_u64().unwrap_or(0),
        message["usage"]["output_tokens"].as_u64().unwrap_or(0),
    );
    json!({
        "id": message["id"],
        "object": "chat.completion",
        "created": now(),
        "model": message["model"],
        "choices": [{ "index": 0, "message": msg, "finish_reason": finish_reason(message["stop_reason"].as_str()) }],
        "usage": { "prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o },
    })
}

/// A whole Messages answer of `status` as chat completions: a completion,
/// or an error in OpenAI's shape.
pub(crate) fn whole(status: http::StatusCode, body: &[u8]) -> Value {
    if !status.is_success() {
        return error(body);
    }
    serde_json::from_slice(body)
        .map(|m| completion(&m))
        .unwrap_or_else(|_| error(body))
}

/// An Anthropic error body in OpenAI's error shape.
pub(super) fn error(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(2000).collect());
    json!({ "error": {
        "message": message,
        "type": v["error"]["type"].as_str().unwrap_or("upstream_error"),
        "param": null,
        "code": null,
    }})
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Messages stream events → chat-completions chunks.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    events: crate::api::sse::Events,
    id: String,
    model: Value,
    input_tokens: u64,
    output_tokens: u64,
    /// Content-block index → tool-call index, for tool blocks.
    tools: Vec<(u64, usize)>,
    done: bool,
}

impl Chunks {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        let c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": now(), "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        format!("data: {c}\n\n")
    }

    /// The chunks for the next bytes of a Messages event stream.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> String {
        let mut out = String::new();
        for data in self.events.feed(bytes) {
            let Ok(e) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            match e["type"].as_str() {
                Some("message_start") => {
                    let m = &e["message"];
                    self.id = m["id"].as_str().unwrap_or_default().to_owned();
                    self.model = m["model"].clone();
                    self.input_tokens = m["usage"]["input_tokens"].as_u64().unwrap_or(0);
                    out.push_str(&self.chunk(json!({ "role": "assistant", "content": "" }), None));
                }
                Some("content_block_start") if e["content_block"]["type"] == "tool_use" => {
                    let k = self.tools.len();
                    self.tools.push((e["index"].as_u64().unwrap_or(0), k));
                    let b = &e["content_block"];
                    out.push_str(&self.chunk(
                        json!({ "tool_calls": [{ "index": k, "id": b["id"], "type": "function",
                                                 "function": { "name": b["name"], "arguments": "" } }] }),
                        None,
                    ));
                }
                Some("content_block_delta") => {
                    let d = &e["delta"];
                    match d["type"].as_str() {
                        Some("text_delta") => {
                            out.push_str(&self.chunk(json!({ "content": d["text"] }), None));
                        }
                        Some("thinking_delta") => {
                            out.push_str(
                                &self.chunk(json!({ "reasoning_content": d["thinking"] }), None),
                            );
                        }
                        Some("input_json_delta") => {
                            let block = e["index"].as_u64().unwrap_or(0);
                            if let Some(&(_, k)) = self.tools.iter().find(|(b, _)| *b == block) {
                                out.push_str(&self.chunk(
                                    json!({ "tool_calls": [{ "index": k, "function": { "arguments": d["partial_json"] } }] }),
                                    None,
                                ));
                            }
                        }
                        _ => {}
                    }
                }
                Some("message_delta") => {
                    self.output_tokens = e["usage"]["output_tokens"]
                        .as_u64()
                        .unwrap_or(self.output_tokens);
                    let finish = finish_reason(e["delta"]["stop_reason"].as_str());
                    out.push_str(&self.chunk(json!({}), finish.or(Some("stop"))));
                }
                Some("message_stop") => {
                    let usage = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": now(),
                        "model": self.model, "choices": [],
                        "usage": { "prompt_tokens": self.input_tokens, "completion_tokens": self.output_tokens,
                                   "total_tokens": self.input_tokens + self.output_tokens },
                    });
                    out.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
                    self.done = true;
                }
                Some("error") => {
                    out.push_str(&format!("data: {}\n\n", error(data.as_bytes())));
                    self.done = true;
                }
                _ => {}
            }
        }
        out
    }
}

/// A Messages event stream as a chat-completions chunk stream, translated
/// as the events arrive. An `error` event ends it without `[DONE]` (an
/// incomplete answer, as a broken stream is).
pub(super) fn chunks(body: BodyStream) -> BodyStream {
    let state = Some((body, Chunks::default()));
    Box::pin(futures_util::stream::unfold(state, |state| async move {
        let (mut body, mut t) = state?;
        loop {
            match body.next().await {
                Some(Ok(bytes)) => {
                    let out = t.feed(&bytes);
                    let done = t.done;
                    if !out.is_empty() {
                        let next = (!done).then_some((body, t));
                        return Some((Ok(Bytes::from(out)), next));
                    }
                    if done {
                        return None;
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None => return None,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_request_becomes_a_messages_request() {
        let chat = json!({
            "model": "claude", "max_tokens": 100, "stream": true, "stream_options": { "include_usage": true },
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "Weather in Paris?" },
                { "role": "assistant", "content": null, "tool_calls": [
                    { "id": "t1", "type": "function", "function": { "name": "w", "arguments": "{\"city\":\"Paris\"}" } }] },
                { "role": "tool", "tool_call_id": "t1", "content": "18°C" },
            ],
            "tools": [{ "type": "function", "function": { "name": "w", "parameters": { "type": "object" } } }],
            "tool_choice": "required", "stop": "END", "reasoning_effort": "low",
        });
        let m: Value =
            serde_json::from_slice(&request(chat.to_string().as_bytes()).expect("translates"))
                .expect("json");
        assert_eq!(m["system"], "Be brief.");
        assert_eq!(
            m["messages"][1]["content"][0]["input"],
            json!({ "city": "Paris" })
        );
        assert_eq!(m["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(m["tools"][0]["input_schema"], json!({ "type": "object" }));
        assert_eq!(m["tool_choice"], json!({ "type": "any" }));
        assert_eq!(m["stop_sequences"], json!(["END"]));
        assert_eq!(m["thinking"]["budget_tokens"], 2048);
        assert_eq!(
            m["max_tokens"], 2148,
            "the answer's tokens on top of the budget"
        );
        assert_eq!(m["stream"], true);
        let refused = request(br#"{"model":"m","messages":[],"logprobs":true}"#);
        assert!(refused.is_err_and(|e| e.contains("logprobs")));
    }

    #[test]
    fn a_messages_stream_becomes_chat_chunks_ending_in_done() {
        let events = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":9}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut t = Chunks::default();
        let out: String = events.as_bytes().chunks(5).map(|p| t.feed(p)).collect();
        let datas: Vec<&str> = out
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .collect();
        assert_eq!(datas.last(), Some(&"[DONE]"));
        let chunks: Vec<Value> = datas[..datas.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).expect("json"))
            .collect();
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["usage"]["completion_tokens"], 3);
        assert_eq!(chunks[3]["usage"]["prompt_tokens"], 9);
    }
}
