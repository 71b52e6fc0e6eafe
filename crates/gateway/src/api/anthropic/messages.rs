//! Anthropic Messages requests, translated into the chat-completions
//! request every upstream speaks: `system`, `messages` with text, image,
//! `tool_use` and `tool_result` blocks, `tools`, `tool_choice`,
//! `max_tokens`, `stop_sequences`, sampling, `thinking`, `metadata`.
//!
//! The translation is exact or refused: a field or block that has no
//! chat-completions counterpart is a 400 naming it, never dropped, except
//! `thinking` blocks of earlier assistant turns, which chat completions
//! cannot carry back and which upstreams do not need (documented).

use serde_json::{Map, Value, json};

use crate::api::openai::{ApiError, ChatRequest, parse_chat};

/// A Messages request, as chat completions.
#[derive(Debug)]
pub struct MessagesRequest {
    /// The translated request (its codec edits and encodes it).
    pub chat: ChatRequest,
    /// Whether the client asked for an event stream.
    pub stream: bool,
    /// The model the client named (echoed in the answer).
    pub model: String,
}

/// Top-level fields read here; any other is refused by name.
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "service_tier",
];

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message, Some(param.to_owned()))
}

/// Parses a Messages body and translates it.
/// Removes Anthropic's own headers (`anthropic-version`, `anthropic-beta`,
/// …): they mean nothing to the pipeline or a chat-completions upstream.
pub fn strip_headers(headers: &mut http::HeaderMap) {
    let theirs: Vec<_> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("anthropic-"))
        .cloned()
        .collect();
    for name in theirs {
        headers.remove(name);
    }
}

pub fn parse_messages(bytes: &[u8]) -> Result<MessagesRequest, ApiError> {
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
            format!("`{unknown}` is not supported by this gateway's Messages API"),
        ));
    }
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => return Err(bad("model", "model: a non-empty string is required")),
    };
    let max_tokens = match body.get("max_tokens") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => n.clone(),
        _ => {
            return Err(bad(
                "max_tokens",
                "max_tokens: a positive integer is required",
            ));
        }
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream", "stream: a boolean")),
    };

    let mut chat = Map::new();
    chat.insert("model".into(), Value::String(model.clone()));
    chat.insert("max_tokens".into(), Value::Number(max_tokens));
    let mut messages = Vec::new();
    if let Some(system) = body.get("system") {
        messages.push(json!({ "role": "system", "content": system_text(system)? }));
    }
    match body.get("messages") {
        Some(Value::Array(turns)) if !turns.is_empty() => {
            for (i, turn) in turns.iter().enumerate() {
                translate_turn(turn, i, &mut messages)?;
            }
        }
        _ => {
            return Err(bad(
                "messages",
                "messages: a non-empty array of messages is required",
            ));
        }
    }
    chat.insert("messages".into(), Value::Array(messages));
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
    ] {
        match body.get(from) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                chat.insert(to.into(), v.clone());
            }
            Some(_) => return Err(bad(from, format!("{from}: a number"))),
        }
    }
    match body.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(s)) if s.iter().all(Value::is_string) => {
            if !s.is_empty() {
                chat.insert("stop".into(), Value::Array(s.clone()));
            }
        }
        Some(_) => {
            return Err(bad("stop_sequences", "stop_sequences: an array of strings"));
        }
    }
    if let Some(tools) = body.get("tools") {
        chat.insert("tools".into(), translate_tools(tools)?);
    }
    if let Some(choice) = body.get("tool_choice") {
        let (choice, parallel) = translate_tool_choice(choice)?;
        chat.insert("tool_choice".into(), choice);
        if let Some(p) = parallel {
            chat.insert("parallel_tool_calls".into(), Value::Bool(p));
        }
    }
    if let Some(thinking) = body.get("thinking")
        && let Some(effort) = thinking_effort(thinking)?
    {
        chat.insert("reasoning_effort".into(), Value::String(effort.into()));
    }
    match body.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            if let Some(user) = m.get("user_id").and_then(Value::as_str) {
                chat.insert("user".into(), Value::String(user.to_owned()));
            }
        }
        Some(_) => return Err(bad("metadata", "metadata: an object")),
    }
    if stream {
        chat.insert("stream".into(), Value::Bool(true));
        // The usage for `message_delta` comes in a last chunk.
        chat.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    let bytes = serde_json::to_vec(&Value::Object(chat))
        .map_err(|e| ApiError::bad_request(format!("cannot translate the request: {e}"), None))?;
    let chat = parse_chat(&bytes)?;
    Ok(MessagesRequest {
        chat,
        stream,
        model,
    })
}

/// `system`: a string, or text blocks (joined by blank lines).
fn system_text(system: &Value) -> Result<String, ApiError> {
    match system {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                match (block_type(b), b.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => out.push(t),
                    _ => {
                        return Err(bad(
                            &format!("system[{i}]"),
                            "system blocks must be text blocks",
                        ));
                    }
                }
            }
            Ok(out.join("\n\n"))
        }
        _ => Err(bad("system", "system: a string or an array of text blocks")),
    }
}

fn block_type(b: &Value) -> Option<&str> {
    b.get("type").and_then(Value::as_str)
}

/// One Messages turn as one or more chat messages: a user turn's
/// `tool_result` blocks become `tool` messages (before its other content),
/// an assistant turn's `tool_use` blocks its `tool_calls`.
fn translate_turn(turn: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let at = format!("messages[{i}]");
    let role = match turn.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "assistant")) => r,
        _ => return Err(bad(&format!("{at}.role"), "role: `user` or `assistant`")),
    };
    let blocks = match turn.get("content") {
        Some(Value::String(s)) => {
            out.push(json!({ "role": role, "content": s }));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(bad(
                &format!("{at}.content"),
                "content: a string or an array of content blocks",
            ));
        }
    };
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let p = format!("{at}.content[{j}]");
        match (role, block_type(b)) {
            (_, Some("text")) => {
                let text = b.get("text").and_then(Value::as_str).ok_or_else(|| {
                    bad(&format!("{p}.text"), "a text block needs a string `text`")
                })?;
                parts.push(json!({ "type": "text", "text": text }));
            }
            ("user", Some("image")) => parts.push(image_part(b, &p)?),
            ("user", Some("tool_result")) => out.push(tool_result(b, &p)?),
            ("assistant", Some("tool_use")) => tool_calls.push(tool_call(b, &p)?),
            // Earlier reasoning: chat completions has no field to carry it
            // back, and upstreams do not need it.
            ("assistant", Some("thinking" | "redacted_thinking")) => {}
            (_, other) => {
                return Err(bad(
                    &format!("{p}.type"),
                    format!(
                        "a `{}` block in a {role} message is not supported",
                        other.unwrap_or("(missing)")
                    ),
                ));
            }
        }
    }
    if role == "assistant" {
        let text: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let mut m = json!({ "role": "assistant", "content": text.join("") });
        if !tool_calls.is_empty() {
            m["tool_calls"] = Value::Array(tool_calls);
            if text.is_empty() {
                m["content"] = Value::Null;
            }
        }
        out.push(m);
    } else if !parts.is_empty() {
        // Plain text stays a string (what every upstream reads).
        let all_text = parts.iter().all(|p| p["type"] == "text");
        let content = if all_text {
            let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
            Value::String(texts.join("\n"))
        } else {
            Value::Array(parts)
        };
        out.push(json!({ "role": "user", "content": content }));
    }
    Ok(())
}

fn image_part(b: &Value, p: &str) -> Result<Value, ApiError> {
    let source = b.get("source").unwrap_or(&Value::Null);
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str);
            let data = source.get("data").and_then(Value::as_str);
            match (media, data) {
                (Some(m), Some(d)) => format!("data:{m};base64,{d}"),
                _ => {
                    return Err(bad(
                        &format!("{p}.source"),
                        "a base64 image needs `media_type` and `data`",
                    ));
                }
            }
        }
        Some("url") => match source.get("url").and_then(Value::as_str) {
            Some(u) => u.to_owned(),
            None => return Err(bad(&format!("{p}.source.url"), "a URL image needs `url`")),
        },
        _ => {
            return Err(bad(
                &format!("{p}.source.type"),
                "image source: `base64` or `url`",
            ));
        }
    };
    Ok(json!({ "type": "image_url", "image_url": { "url": url } }))
}

fn tool_result(b: &Value, p: &str) -> Result<Value, ApiError> {
    let id = b
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad(
                &format!("{p}.tool_use_id"),
                "a tool_result needs `tool_use_id`",
            )
        })?;
    let content = match b.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for (k, c) in blocks.iter().enumerate() {
                match (block_type(c), c.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => texts.push(t),
                    _ => {
                        return Err(bad(
                            &format!("{p}.content[{k}]"),
                            "only text blocks can be sent back in a tool_result to a chat-completions model",
                        ));
                    }
                }
            }
            texts.join("\n")
        }
        Some(_) => return Err(bad(&format!("{p}.content"), "a string or text blocks")),
    };
    let content = if b.get("is_error").and_then(Value::as_bool) == Some(true) {
        format!("Error: {content}")
    } else {
        content
    };
    Ok(json!({ "role": "tool", "tool_call_id": id, "content": content }))
}

fn tool_call(b: &Value, p: &str) -> Result<Value, ApiError> {
    let id = b.get("id").and_then(Value::as_str);
    let name = b.get("name").and_then(Value::as_str);
    let (Some(id), Some(name)) = (id, name) else {
        return Err(bad(p, "a tool_use block needs `id` and `name`"));
    };
    let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
    Ok(json!({
        "id": id,
        "type": "function",
        "function": { "name": name, "arguments": input.to_string() },
    }))
}

fn translate_tools(tools: &Value) -> Result<Value, ApiError> {
    let Value::Array(tools) = tools else {
        return Err(bad("tools", "tools: an array"));
    };
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let p = format!("tools[{i}]");
        if let Some(kind) = t.get("type").and_then(Value::as_str)
            && kind != "custom"
        {
            return Err(bad(
                &format!("{p}.type"),
                format!(
                    "server tool `{kind}` is not supported: only client tools (name, description, input_schema)"
                ),
            ));
        }
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("{p}.name"), "a tool needs a `name`"))?;
        let schema = t.get("input_schema").cloned().ok_or_else(|| {
            bad(
                &format!("{p}.input_schema"),
                "a tool needs an `input_schema`",
            )
        })?;
        let mut function = json!({ "name": name, "parameters": schema });
        if let Some(d) = t.get("description").and_then(Value::as_str) {
            function["description"] = Value::String(d.to_owned());
        }
        out.push(json!({ "type": "function", "function": function }));
    }
    Ok(Value::Array(out))
}

/// `tool_choice` and, from `disable_parallel_tool_use`, `parallel_tool_calls`.
fn translate_tool_choice(choice: &Value) -> Result<(Value, Option<bool>), ApiError> {
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|d| !d);
    let c = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match choice.get("name").and_then(Value::as_str) {
            Some(name) => json!({ "type": "function", "function": { "name": name } }),
            None => return Err(bad("tool_choice.name", "tool_choice `tool` needs a `name`")),
        },
        _ => {
            return Err(bad(
                "tool_choice.type",
                "tool_choice: `auto`, `any`, `tool` or `none`",
            ));
        }
    };
    Ok((c, parallel))
}

/// `thinking: {type: enabled, budget_tokens}` as a reasoning effort (a
/// budget under 4k tokens is `low`, under 16k `medium`, else `high`);
/// `disabled` asks for none.
fn thinking_effort(thinking: &Value) -> Result<Option<&'static str>, ApiError> {
    match thinking.get("type").and_then(Value::as_str) {
        Some("disabled") => Ok(None),
        Some("enabled") => {
            let budget = thinking
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    bad(
                        "thinking.budget_tokens",
                        "enabled thinking needs `budget_tokens`",
                    )
                })?;
            Ok(Some(match budget {
                0..4096 => "low",
                4096..16384 => "medium",
                _ => "high",
            }))
        }
        _ => Err(bad("thinking.type", "thinking: `enabled` or `disabled`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_of(body: Value) -> Value {
        let req = parse_messages(body.to_string().as_bytes()).expect("translates");
        Value::Object(req.chat.body)
    }

    #[test]
    fn system_text_images_and_sampling_become_chat_fields() {
        let chat = chat_of(json!({
            "model": "auto", "max_tokens": 100,
            "system": [{ "type": "text", "text": "Be brief." }],
            "messages": [{ "role": "user", "content": [
                { "type": "text", "text": "What is this?" },
                { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "AAAA" } }
            ]}],
            "stop_sequences": ["END"], "temperature": 0.2,
            "metadata": { "user_id": "u1" },
        }));
        assert_eq!(
            chat["messages"][0],
            json!({ "role": "system", "content": "Be brief." })
        );
        assert_eq!(
            chat["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(chat["stop"], json!(["END"]));
        assert_eq!(chat["temperature"], json!(0.2));
        assert_eq!(chat["user"], "u1");
        assert_eq!(chat["max_tokens"], 100);
    }

    #[test]
    fn a_tool_round_trip_becomes_tool_calls_and_a_tool_message() {
        let chat = chat_of(json!({
            "model": "auto", "max_tokens": 100,
            "tools": [{ "name": "get_weather", "description": "Weather", "input_schema": { "type": "object" } }],
            "tool_choice": { "type": "any", "disable_parallel_tool_use": true },
            "messages": [
                { "role": "user", "content": "Weather in Paris?" },
                { "role": "assistant", "content": [
                    { "type": "thinking", "thinking": "call the tool", "signature": "s" },
                    { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } }
                ]},
                { "role": "user", "content": [
                    { "type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C" }
                ]}
            ]
        }));
        assert_eq!(
            chat["tools"][0]["function"]["parameters"],
            json!({ "type": "object" })
        );
        assert_eq!(chat["tool_choice"], "required");
        assert_eq!(chat["parallel_tool_calls"], false);
        let call = &chat["messages"][1]["tool_calls"][0];
        assert_eq!(call["id"], "toolu_1");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("a string"))
                .expect("json arguments");
        assert_eq!(args, json!({ "city": "Paris" }));
        assert_eq!(
            chat["messages"][2],
            json!({ "role": "tool", "tool_call_id": "toolu_1", "content": "18°C" })
        );
    }

    #[test]
    fn what_has_no_counterpart_is_refused_by_name() {
        let refused = |body: Value| match parse_messages(body.to_string().as_bytes()) {
            Err(ApiError::BadRequest { param, .. }) => param,
            other => panic!("not refused: {other:?}"),
        };
        let base = |extra: (&str, Value)| {
            let mut b = json!({ "model": "auto", "max_tokens": 10, "messages": [{ "role": "user", "content": "hi" }] });
            b[extra.0] = extra.1;
            b
        };
        assert_eq!(
            refused(base(("container", json!("x")))).as_deref(),
            Some("container")
        );
        assert_eq!(
            refused(base((
                "tools",
                json!([{ "type": "web_search_20250305", "name": "web_search" }])
            )))
            .as_deref(),
            Some("tools[0].type")
        );
        assert_eq!(
            refused(json!({ "model": "auto", "messages": [{ "role": "user", "content": "hi" }] }))
                .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            refused(base((
                "messages",
                json!([{ "role": "user", "content": [{ "type": "document", "source": {} }] }])
            )))
            .as_deref(),
            Some("messages[0].content[0].type")
        );
    }

    #[test]
    fn thinking_budgets_become_reasoning_efforts_and_streams_ask_for_usage() {
        let chat = chat_of(json!({
            "model": "auto", "max_tokens": 20000, "stream": true,
            "thinking": { "type": "enabled", "budget_tokens": 8000 },
            "messages": [{ "role": "user", "content": "Prove it." }],
        }));
        assert_eq!(chat["reasoning_effort"], "medium");
        assert_eq!(chat["stream_options"]["include_usage"], true);
    }
}
