//! The OpenAI Responses API over chat completions: a `POST /v1/responses`
//! request translated into the chat-completions request every upstream
//! speaks, and chat-completions answers translated back into a `response`
//! object or its typed stream events (`response.created` …
//! `response.completed`), one upstream event at a time.
//!
//! The gateway keeps no responses: `previous_response_id` is refused (send
//! the conversation in `input`), and `store` changes nothing. What has no
//! chat-completions counterpart is a 400 naming it.

use serde_json::{Map, Value, json};

use super::{ApiError, ChatRequest, parse_chat};
use crate::api::sse::{Events, emit};

/// A Responses request, as chat completions.
#[derive(Debug)]
pub struct ResponsesRequest {
    pub chat: ChatRequest,
    pub stream: bool,
    pub model: String,
    /// Echoed in the `response` object.
    pub echo: Echo,
}

/// Request fields the `response` object repeats.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    pub instructions: Option<String>,
    pub tools: Value,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub max_output_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
}

const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "reasoning",
    "stream",
    "text",
    "user",
    "store",
    "metadata",
    "truncation",
    "previous_response_id",
];

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message, Some(param.to_owned()))
}

/// Parses a Responses body and translates it.
pub fn parse_responses(bytes: &[u8]) -> Result<ResponsesRequest, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("the request body is not valid JSON: {e}"), None)
    })?;
    let Value::Object(body) = value else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
            None,
        ));
    };
    if let Some(unknown) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(
            unknown,
            format!("`{unknown}` is not supported by this gateway's Responses API"),
        ));
    }
    if body
        .get("previous_response_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err(bad(
            "previous_response_id",
            "this gateway keeps no responses: send the whole conversation in `input` instead of previous_response_id",
        ));
    }
    match body.get("truncation").and_then(Value::as_str) {
        None | Some("disabled") => {}
        Some(other) => {
            return Err(bad(
                "truncation",
                format!("truncation `{other}` is not supported (only `disabled`)"),
            ));
        }
    }
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => return Err(bad("model", "model: a non-empty string is required")),
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut chat = Map::new();
    chat.insert("model".into(), Value::String(model.clone()));
    let mut messages = Vec::new();
    let instructions = match body.get("instructions") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            messages.push(json!({ "role": "system", "content": s }));
            Some(s.clone())
        }
        Some(_) => return Err(bad("instructions", "instructions: a string")),
    };
    match body.get("input") {
        Some(Value::String(s)) => messages.push(json!({ "role": "user", "content": s })),
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                translate_item(item, i, &mut messages)?;
            }
        }
        _ => {
            return Err(bad(
                "input",
                "input: a string or a non-empty array of input items",
            ));
        }
    }
    chat.insert("messages".into(), Value::Array(messages));
    let mut echo = Echo {
        instructions,
        tools: json!([]),
        tool_choice: json!("auto"),
        parallel_tool_calls: true,
        ..Echo::default()
    };
    if let Some(tools) = body.get("tools") {
        chat.insert("tools".into(), translate_tools(tools)?);
        echo.tools = tools.clone();
    }
    if let Some(choice) = body.get("tool_choice") {
        chat.insert("tool_choice".into(), translate_tool_choice(choice)?);
        echo.tool_choice = choice.clone();
    }
    if let Some(p) = body.get("parallel_tool_calls").and_then(Value::as_bool) {
        chat.insert("parallel_tool_calls".into(), Value::Bool(p));
        echo.parallel_tool_calls = p;
    }
    match body.get("max_output_tokens") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {
            chat.insert("max_tokens".into(), Value::Number(n.clone()));
            echo.max_output_tokens = n.as_u64();
        }
        Some(_) => {
            return Err(bad(
                "max_output_tokens",
                "max_output_tokens: a positive integer",
            ));
        }
    }
    for key in ["temperature", "top_p"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(n)) => {
                chat.insert(key.into(), v.clone());
                if key == "temperature" {
                    echo.temperature = n.as_f64();
                } else {
                    echo.top_p = n.as_f64();
                }
            }
            Some(_) => return Err(bad(key, format!("{key}: a number"))),
        }
    }
    if let Some(effort) = body
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .and_then(Value::as_str)
    {
        chat.insert("reasoning_effort".into(), Value::String(effort.to_owned()));
    }
    if let Some(text) = body.get("text")
        && let Some(format) = response_format(text)?
    {
        chat.insert("response_format".into(), format);
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        chat.insert("user".into(), Value::String(user.to_owned()));
    }
    if stream {
        chat.insert("stream".into(), Value::Bool(true));
        chat.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    let bytes = serde_json::to_vec(&Value::Object(chat))
        .map_err(|e| ApiError::bad_request(format!("cannot translate the request: {e}"), None))?;
    Ok(ResponsesRequest {
        chat: parse_chat(&bytes)?,
        stream,
        model,
        echo,
    })
}

/// One input item as chat messages. Consecutive function calls join one
/// assistant message's `tool_calls`.
fn translate_item(item: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let at = format!("input[{i}]");
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some(r @ ("user" | "assistant" | "system" | "developer")) => r,
                _ => {
                    return Err(bad(
                        &format!("{at}.role"),
                        "role: user, assistant, system or developer",
                    ));
                }
            };
            let content = match item.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) => {
                    let mut out_parts = Vec::new();
                    for (j, p) in parts.iter().enumerate() {
                        out_parts.push(content_part(p, &format!("{at}.content[{j}]"))?);
                    }
                    if out_parts.iter().all(|p| p["type"] == "text") {
                        let texts: Vec<&str> = out_parts
                            .iter()
                            .filter_map(|p| p["text"].as_str())
                            .collect();
                        Value::String(texts.join("\n"))
                    } else {
                        Value::Array(out_parts)
                    }
                }
                _ => {
                    return Err(bad(
                        &format!("{at}.content"),
                        "content: a string or an array of content parts",
                    ));
                }
            };
            out.push(json!({ "role": role, "content": content }));
        }
        "function_call" => {
            let call_id = item.get("call_id").and_then(Value::as_str);
            let name = item.get("name").and_then(Value::as_str);
            let (Some(call_id), Some(name)) = (call_id, name) else {
                return Err(bad(&at, "a function_call needs `call_id` and `name`"));
            };
            let arguments = item
                .get("arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let call = json!({
                "id": call_id, "type": "function",
                "function": { "name": name, "arguments": arguments },
            });
            match out.last_mut() {
                Some(m) if m["role"] == "assistant" && m["tool_calls"].is_array() => {
                    if let Some(calls) = m["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => {
                    out.push(json!({ "role": "assistant", "content": null, "tool_calls": [call] }))
                }
            }
        }
        "function_call_output" => {
            let Some(call_id) = item.get("call_id").and_then(Value::as_str) else {
                return Err(bad(
                    &format!("{at}.call_id"),
                    "a function_call_output needs `call_id`",
                ));
            };
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            out.push(json!({ "role": "tool", "tool_call_id": call_id, "content": output }));
        }
        // Earlier reasoning: chat completions has no field to carry it back.
        "reasoning" => {}
        other => {
            return Err(bad(
                &format!("{at}.type"),
                format!("input items of type `{other}` are not supported"),
            ));
        }
    }
    Ok(())
}

fn content_part(p: &Value, at: &str) -> Result<Value, ApiError> {
    match p.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => {
            match p.get("text").and_then(Value::as_str) {
                Some(t) => Ok(json!({ "type": "text", "text": t })),
                None => Err(bad(&format!("{at}.text"), "a text part needs `text`")),
            }
        }
        Some("input_image") => match p.get("image_url").and_then(Value::as_str) {
            Some(url) => Ok(json!({ "type": "image_url", "image_url": { "url": url } })),
            None => Err(bad(
                &format!("{at}.image_url"),
                "an input_image needs `image_url` (file ids are not supported)",
            )),
        },
        other => Err(bad(
            &format!("{at}.type"),
            format!(
                "content parts of type `{}` are not supported",
                other.unwrap_or("(missing)")
            ),
        )),
    }
}

fn translate_tools(tools: &Value) -> Result<Value, ApiError> {
    let Value::Array(tools) = tools else {
        return Err(bad("tools", "tools: an array"));
    };
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            other => {
                return Err(bad(
                    &format!("{at}.type"),
                    format!(
                        "tool type `{}` is not supported: only `function` tools",
                        other.unwrap_or("(missing)")
                    ),
                ));
            }
        }
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("{at}.name"), "a function tool needs a `name`"))?;
        let mut function = json!({
            "name": name,
            "parameters": t.get("parameters").cloned().unwrap_or_else(|| json!({ "type": "object" })),
        });
        for key in ["description", "strict"] {
            if let Some(v) = t.get(key).filter(|v| !v.is_null()) {
                function[key] = v.clone();
            }
        }
        out.push(json!({ "type": "function", "function": function }));
    }
    Ok(Value::Array(out))
}

fn translate_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            match o.get("name").and_then(Value::as_str) {
                Some(name) => Ok(json!({ "type": "function", "function": { "name": name } })),
                None => Err(bad(
                    "tool_choice.name",
                    "a function tool_choice needs `name`",
                )),
            }
        }
        _ => Err(bad(
            "tool_choice",
            "tool_choice: auto, none, required or {\"type\": \"function\", \"name\": ...}",
        )),
    }
}

/// `text.format` as chat completions' `response_format`.
fn response_format(text: &Value) -> Result<Option<Value>, ApiError> {
    let Some(format) = text.get("format") else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({ "type": "json_object" }))),
        Some("json_schema") => {
            let mut schema = json!({
                "name": format.get("name").cloned().unwrap_or_else(|| json!("response")),
                "schema": format.get("schema").cloned().unwrap_or_else(|| json!({})),
            });
            if let Some(strict) = format.get("strict") {
                schema["strict"] = strict.clone();
            }
            Ok(Some(
                json!({ "type": "json_schema", "json_schema": schema }),
            ))
        }
        _ => Err(bad(
            "text.format.type",
            "text.format: text, json_object or json_schema",
        )),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn response_id(chat_id: Option<&str>) -> String {
    match chat_id {
        Some(id) if !id.is_empty() => format!("resp_{id}"),
        _ => format!("resp_{}", uuid::Uuid::new_v4().simple()),
    }
}

/// The `response` object around `output`.
#[allow(clippy::too_many_arguments)] // one call per status; a builder would only rename them
fn envelope(
    id: &str,
    created: u64,
    model: &str,
    echo: &Echo,
    status: &str,
    output: Vec<Value>,
    usage: Option<(u64, u64)>,
    incomplete: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": output,
        "error": null,
        "incomplete_details": incomplete.map(|r| json!({ "reason": r })),
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "metadata": {},
        "parallel_tool_calls": echo.parallel_tool_calls,
        "temperature": echo.temperature,
        "top_p": echo.top_p,
        "tool_choice": echo.tool_choice,
        "tools": echo.tools,
        "text": { "format": { "type": "text" } },
        "truncation": "disabled",
        "usage": usage.map(|(i, o)| json!({
            "input_tokens": i,
            "input_tokens_details": { "cached_tokens": 0 },
            "output_tokens": o,
            "output_tokens_details": { "reasoning_tokens": 0 },
            "total_tokens": i + o,
        })),
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{ "type": "output_text", "text": text, "annotations": [] }],
    })
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status,
    })
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({
        "type": "reasoning", "id": id, "summary": [],
        "content": [{ "type": "reasoning_text", "text": text }],
    })
}

fn reasoning_of(m: &Value) -> Option<&str> {
    m.get("reasoning_content")
        .or_else(|| m.get("reasoning"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A whole chat completion as a `response`.
pub fn response(chat: &Value, model: &str, echo: &Echo) -> Value {
    let choice = &chat["choices"][0];
    let m = &choice["message"];
    let id = response_id(chat["id"].as_str());
    let mut output = Vec::new();
    if let Some(r) = reasoning_of(m) {
        output.push(reasoning_item(&format!("rs_{id}"), r));
    }
    if let Some(text) = m["content"].as_str().filter(|t| !t.is_empty()) {
        output.push(message_item(&format!("msg_{id}"), text, "completed"));
    }
    for (k, call) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
        output.push(call_item(
            &format!("fc_{id}_{k}"),
            call["id"].as_str().unwrap_or_default(),
            call["function"]["name"].as_str().unwrap_or_default(),
            call["function"]["arguments"].as_str().unwrap_or("{}"),
            "completed",
        ));
    }
    let u = &chat["usage"];
    let usage = (
        u["prompt_tokens"].as_u64().unwrap_or(0),
        u["completion_tokens"].as_u64().unwrap_or(0),
    );
    let incomplete = (choice["finish_reason"] == "length").then_some("max_output_tokens");
    let status = if incomplete.is_some() {
        "incomplete"
    } else {
        "completed"
    };
    let created = chat["created"].as_u64().unwrap_or_else(now);
    envelope(
        &id,
        created,
        model,
        echo,
        status,
        output,
        Some(usage),
        incomplete,
    )
}

/// An output item being streamed.
#[derive(Debug)]
enum Open {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    Call {
        /// The chunks' tool-call index.
        index: u64,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Translates a chat-completions SSE stream into Responses events.
#[derive(Debug)]
pub struct ResponsesStream {
    model: String,
    echo: Echo,
    events: Events,
    id: Option<String>,
    created: u64,
    sequence: u64,
    open: Option<Open>,
    /// Finished output items.
    done: Vec<Value>,
    usage: Option<(u64, u64)>,
    incomplete: Option<&'static str>,
    finished: bool,
}

impl ResponsesStream {
    pub fn new(model: &str, echo: &Echo) -> Self {
        Self {
            model: model.to_owned(),
            echo: echo.clone(),
            events: Events::default(),
            id: None,
            created: now(),
            sequence: 0,
            open: None,
            done: Vec::new(),
            usage: None,
            incomplete: None,
            finished: false,
        }
    }

    /// The Responses events for the next bytes of the upstream's stream.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for data in self.events.feed(bytes) {
            if data == "[DONE]" {
                self.finish(&mut out);
            } else if let Ok(chunk) = serde_json::from_str::<Value>(&data) {
                self.chunk(&chunk, &mut out);
            }
        }
        out
    }

    /// The closing events when the stream ended without `[DONE]`.
    pub fn end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish(&mut out);
        out
    }

    fn send(&mut self, out: &mut Vec<u8>, name: &str, mut data: Value) {
        data["type"] = Value::String(name.to_owned());
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        emit(out, name, &data);
    }

    fn id(&self) -> String {
        self.id.clone().unwrap_or_default()
    }

    fn start(&mut self, chat_id: Option<&str>, out: &mut Vec<u8>) {
        if self.id.is_some() {
            return;
        }
        let id = response_id(chat_id);
        self.id = Some(id.clone());
        let r = envelope(
            &id,
            self.created,
            &self.model,
            &self.echo,
            "in_progress",
            Vec::new(),
            None,
            None,
        );
        self.send(out, "response.created", json!({ "response": r }));
        let r = envelope(
            &id,
            self.created,
            &self.model,
            &self.echo,
            "in_progress",
            Vec::new(),
            None,
            None,
        );
        self.send(out, "response.in_progress", json!({ "response": r }));
    }

    fn output_index(&self) -> usize {
        self.done.len()
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let index = self.output_index();
        let item = match open {
            Open::Reasoning { id, text } => {
                self.send(
                    out,
                    "response.reasoning_text.done",
                    json!({ "item_id": id, "output_index": index, "content_index": 0, "text": text }),
                );
                self.send(
                    out,
                    "response.content_part.done",
                    json!({ "item_id": id, "output_index": index, "content_index": 0,
                            "part": { "type": "reasoning_text", "text": text } }),
                );
                reasoning_item(&id, &text)
            }
            Open::Message { id, text } => {
                self.send(
                    out,
                    "response.output_text.done",
                    json!({ "item_id": id, "output_index": index, "content_index": 0,
                            "text": text, "logprobs": [] }),
                );
                self.send(
                    out,
                    "response.content_part.done",
                    json!({ "item_id": id, "output_index": index, "content_index": 0,
                            "part": { "type": "output_text", "text": text, "annotations": [] } }),
                );
                message_item(&id, &text, "completed")
            }
            Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                self.send(
                    out,
                    "response.function_call_arguments.done",
                    json!({ "item_id": id, "output_index": index, "arguments": arguments, "name": name }),
                );
                call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.send(
            out,
            "response.output_item.done",
            json!({ "output_index": index, "item": item }),
        );
        self.done.push(item);
    }

    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some((
                u["prompt_tokens"].as_u64().unwrap_or(0),
                u["completion_tokens"].as_u64().unwrap_or(0),
            ));
        }
        self.start(chunk["id"].as_str(), out);
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else {
            return;
        };
        let d = &choice["delta"];
        if let Some(r) = reasoning_of(d) {
            if !matches!(self.open, Some(Open::Reasoning { .. })) {
                self.close(out);
                let id = format!("rs_{}_{}", self.id(), self.output_index());
                let index = self.output_index();
                self.send(
                    out,
                    "response.output_item.added",
                    json!({ "output_index": index,
                            "item": { "type": "reasoning", "id": id, "summary": [], "content": [] } }),
                );
                self.send(
                    out,
                    "response.content_part.added",
                    json!({ "item_id": id, "output_index": index, "content_index": 0,
                            "part": { "type": "reasoning_text", "text": "" } }),
                );
                self.open = Some(Open::Reasoning {
                    id,
                    text: String::new(),
                });
            }
            let index = self.output_index();
            if let Some(Open::Reasoning { id, text }) = &mut self.open {
                text.push_str(r);
                let data =
                    json!({ "item_id": id, "output_index": index, "content_index": 0, "delta": r });
                self.send(out, "response.reasoning_text.delta", data);
            }
        }
        if let Some(t) = d["content"].as_str().filter(|t| !t.is_empty()) {
            if !matches!(self.open, Some(Open::Message { .. })) {
                self.close(out);
                let id = format!("msg_{}_{}", self.id(), self.output_index());
                let index = self.output_index();
                self.send(
                    out,
                    "response.output_item.added",
                    json!({ "output_index": index,
                            "item": { "type": "message", "id": id, "status": "in_progress",
                                      "role": "assistant", "content": [] } }),
                );
                self.send(
                    out,
                    "response.content_part.added",
                    json!({ "item_id": id, "output_index": index, "content_index": 0,
                            "part": { "type": "output_text", "text": "", "annotations": [] } }),
                );
                self.open = Some(Open::Message {
                    id,
                    text: String::new(),
                });
            }
            let index = self.output_index();
            if let Some(Open::Message { id, text }) = &mut self.open {
                text.push_str(t);
                let data = json!({ "item_id": id, "output_index": index, "content_index": 0,
                                   "delta": t, "logprobs": [] });
                self.send(out, "response.output_text.delta", data);
            }
        }
        for call in d["tool_calls"].as_array().into_iter().flatten() {
            let k = call["index"].as_u64().unwrap_or(0);
            if !matches!(&self.open, Some(Open::Call { index, .. }) if *index == k) {
                self.close(out);
                let id = format!("fc_{}_{}", self.id(), self.output_index());
                let call_id = call["id"].as_str().unwrap_or_default().to_owned();
                let name = call["function"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let index = self.output_index();
                self.send(
                    out,
                    "response.output_item.added",
                    json!({ "output_index": index,
                            "item": call_item(&id, &call_id, &name, "", "in_progress") }),
                );
                self.open = Some(Open::Call {
                    index: k,
                    id,
                    call_id,
                    name,
                    arguments: String::new(),
                });
            }
            let index = self.output_index();
            if let Some(args) = call["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
                && let Some(Open::Call { id, arguments, .. }) = &mut self.open
            {
                arguments.push_str(args);
                let data = json!({ "item_id": id, "output_index": index, "delta": args });
                self.send(out, "response.function_call_arguments.delta", data);
            }
        }
        if choice["finish_reason"] == "length" {
            self.incomplete = Some("max_output_tokens");
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.start(None, out);
        self.close(out);
        let (status, name) = match self.incomplete {
            Some(_) => ("incomplete", "response.incomplete"),
            None => ("completed", "response.completed"),
        };
        let r = envelope(
            &self.id(),
            self.created,
            &self.model,
            &self.echo,
            status,
            self.done.clone(),
            Some(self.usage.unwrap_or((0, 0))),
            self.incomplete,
        );
        self.send(out, name, json!({ "response": r }));
    }
}

/// A `response.failed` stream event for a stream that broke.
pub fn failed_event(message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    emit(
        &mut out,
        "error",
        &json!({ "type": "error", "code": "upstream_error", "message": message, "param": null,
                 "sequence_number": 0 }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_of(body: Value) -> Value {
        let req = parse_responses(body.to_string().as_bytes()).expect("translates");
        Value::Object(req.chat.body)
    }

    #[test]
    fn input_items_become_messages_and_tool_calls() {
        let chat = chat_of(json!({
            "model": "auto", "instructions": "Be brief.", "max_output_tokens": 50,
            "reasoning": { "effort": "low" },
            "tools": [{ "type": "function", "name": "search", "parameters": { "type": "object" } }],
            "input": [
                { "role": "user", "content": [{ "type": "input_text", "text": "Find Paris." }] },
                { "type": "function_call", "call_id": "call_1", "name": "search", "arguments": "{\"q\":\"Paris\"}" },
                { "type": "function_call_output", "call_id": "call_1", "output": "2.1 million" },
            ],
        }));
        assert_eq!(
            chat["messages"][0],
            json!({ "role": "system", "content": "Be brief." })
        );
        assert_eq!(
            chat["messages"][1],
            json!({ "role": "user", "content": "Find Paris." })
        );
        assert_eq!(chat["messages"][2]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            chat["messages"][3],
            json!({ "role": "tool", "tool_call_id": "call_1", "content": "2.1 million" })
        );
        assert_eq!(chat["tools"][0]["function"]["name"], "search");
        assert_eq!(chat["max_tokens"], 50);
        assert_eq!(chat["reasoning_effort"], "low");
    }

    #[test]
    fn stored_responses_and_other_tools_are_refused_by_name() {
        let param = |body: Value| match parse_responses(body.to_string().as_bytes()) {
            Err(ApiError::BadRequest { param, .. }) => param,
            other => panic!("not refused: {other:?}"),
        };
        assert_eq!(
            param(json!({ "model": "auto", "input": "x", "previous_response_id": "resp_1" }))
                .as_deref(),
            Some("previous_response_id")
        );
        assert_eq!(
            param(json!({ "model": "auto", "input": "x", "tools": [{ "type": "web_search" }] }))
                .as_deref(),
            Some("tools[0].type")
        );
        assert_eq!(
            param(json!({ "model": "auto", "input": "x", "background": true })).as_deref(),
            Some("background")
        );
    }

    #[test]
    fn a_chunk_stream_becomes_typed_events_with_the_final_response() {
        let upstream = concat!(
            "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n",
        );
        let mut s = ResponsesStream::new("auto", &Echo::default());
        let out = s.feed(upstream.as_bytes());
        let text = String::from_utf8(out).expect("utf-8");
        let events: Vec<Value> = text
            .split("\n\n")
            .filter_map(|e| e.lines().nth(1)?.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).expect("json"))
            .collect();
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let seq: Vec<u64> = events
            .iter()
            .filter_map(|e| e["sequence_number"].as_u64())
            .collect();
        assert_eq!(seq, (0..10).collect::<Vec<u64>>());
        let done = &events[9]["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hi there");
        assert_eq!(done["usage"]["total_tokens"], 6);
        assert_eq!(done["status"], "completed");
    }
}
