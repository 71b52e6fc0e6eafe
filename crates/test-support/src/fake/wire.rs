//! The OpenAI chat-completions wire format as the fake upstream speaks it: request parsing,
//! reply "tokens", and the JSON bodies of completions, stream chunks and errors.

use serde::Deserialize;
use serde_json::{Value, json};

/// The parts of an OpenAI chat-completions request the fake looks at; other fields are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<Message>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) max_completion_tokens: Option<u64>,
    /// Function tools: the fake calls the first one (see [`ChatRequest::tool_to_call`]).
    #[serde(default)]
    pub(crate) tools: Vec<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    #[serde(default)]
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) content: Option<Content>,
}

/// Message content: a plain string or an array of parts (`{"type":"text","text":...}`, images…).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Value>),
}

impl Message {
    /// The message's text: the string, or its text parts joined by newlines.
    pub(crate) fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(text)) => text.clone(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

impl ChatRequest {
    pub(crate) fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub(crate) fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|options| options.include_usage)
            .unwrap_or(false)
    }

    /// The tightest of `max_tokens` and `max_completion_tokens`, if either is given.
    pub(crate) fn token_limit(&self) -> Option<u64> {
        match (self.max_tokens, self.max_completion_tokens) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `ceil(characters of all message text / 4)`: a stand-in for a tokenizer.
    pub(crate) fn prompt_tokens(&self) -> u64 {
        let chars: usize = self.messages.iter().map(|m| m.text().chars().count()).sum();
        (chars as u64).div_ceil(4)
    }

    /// With tools and a last message that is not a tool's result: the name of the first tool,
    /// which the fake then calls (with `{"query": <last user text>}`) instead of answering.
    pub(crate) fn tool_to_call(&self) -> Option<String> {
        if self.messages.last().is_some_and(|m| m.role == "tool") {
            return None;
        }
        self.tools
            .first()
            .and_then(|t| t["function"]["name"].as_str())
            .map(str::to_owned)
    }

    /// The last tool result's text, when the last message is one.
    pub(crate) fn tool_result(&self) -> Option<String> {
        self.messages
            .last()
            .filter(|m| m.role == "tool")
            .map(Message::text)
    }

    /// The text of the last message whose role is `user` (empty if there is none).
    pub(crate) fn last_user_text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(Message::text)
            .unwrap_or_default()
    }
}

/// Why a request body was refused with HTTP 400.
pub(crate) fn parse_request(body: &[u8]) -> Result<ChatRequest, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("We could not parse the JSON body of your request: {e}"))?;
    if !value.is_object() {
        return Err("The request body must be a JSON object.".to_owned());
    }
    let request: ChatRequest =
        serde_json::from_value(value).map_err(|e| format!("Invalid request: {e}"))?;
    if request.model.is_empty() {
        return Err("Invalid request: `model` must be a non-empty string".to_owned());
    }
    if request.messages.is_empty() {
        return Err("Invalid request: `messages` must be a non-empty array".to_owned());
    }
    Ok(request)
}

/// Splits text into "tokens": each piece is optional leading whitespace followed by a word, so
/// concatenating the pieces gives back the text exactly.
pub(crate) fn split_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut seen_word = false;
    // Where the whitespace run after the current piece's word began.
    let mut gap: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if seen_word && gap.is_none() {
                gap = Some(i);
            }
        } else {
            if let Some(at) = gap.take() {
                pieces.push(text[start..at].to_owned());
                start = at;
            }
            seen_word = true;
        }
    }
    if start < text.len() {
        pieces.push(text[start..].to_owned());
    }
    pieces
}

/// The canned reply: `[NAME] token1 token2 …`, `count` pieces in all.
pub(crate) fn canned_pieces(name: &str, count: u32) -> Vec<String> {
    (0..count)
        .map(|i| match i {
            0 => format!("[{name}]"),
            _ => format!(" token{i}"),
        })
        .collect()
}

/// An OpenAI-style error body: `{"error":{"message","type","param","code"}}`.
pub(crate) fn error_body(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
}

/// Identity fields shared by a completion and all chunks of one stream.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
}

/// Token counts reported in `usage`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
}

impl Usage {
    fn to_json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// A non-streaming `chat.completion` object.
pub(crate) fn completion(env: &Envelope, content: &str, finish: &str, usage: Usage) -> Value {
    json!({
        "id": env.id,
        "object": "chat.completion",
        "created": env.created,
        "model": env.model,
        "system_fingerprint": null,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null },
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": usage.to_json(),
    })
}

/// A non-streaming `chat.completion` that calls tool `name`.
pub(crate) fn tool_call_completion(
    env: &Envelope,
    name: &str,
    arguments: &str,
    usage: Usage,
) -> Value {
    json!({
        "id": env.id,
        "object": "chat.completion",
        "created": env.created,
        "model": env.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": null, "tool_calls": [tool_call(env, name, arguments)] },
            "finish_reason": "tool_calls",
        }],
        "usage": usage.to_json(),
    })
}

/// The one tool call of a fake answer, with an id derived from the answer's.
pub(crate) fn tool_call(env: &Envelope, name: &str, arguments: &str) -> Value {
    json!({
        "id": format!("call_{}", env.id),
        "type": "function",
        "function": { "name": name, "arguments": arguments },
    })
}

/// One `chat.completion.chunk` with a single choice.
pub(crate) fn chunk(env: &Envelope, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": env.id,
        "object": "chat.completion.chunk",
        "created": env.created,
        "model": env.model,
        "system_fingerprint": null,
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
    })
}

/// The trailing usage chunk sent when `stream_options.include_usage` is true: no choices.
pub(crate) fn usage_chunk(env: &Envelope, usage: Usage) -> Value {
    json!({
        "id": env.id,
        "object": "chat.completion.chunk",
        "created": env.created,
        "model": env.model,
        "system_fingerprint": null,
        "choices": [],
        "usage": usage.to_json(),
    })
}

/// A server-sent event carrying `payload` as its data line.
pub(crate) fn sse_event(payload: &str) -> String {
    format!("data: {payload}\n\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check_pieces(text: &str, expected: &[&str]) {
        let pieces = split_pieces(text);
        assert_eq!(pieces, expected, "pieces of {text:?}");
        assert_eq!(
            pieces.concat(),
            text,
            "pieces of {text:?} must concatenate to the text"
        );
    }

    #[test]
    fn pieces_keep_whitespace_and_concatenate_to_the_text() {
        check_pieces("", &[]);
        check_pieces("hello", &["hello"]);
        check_pieces("hello world", &["hello", " world"]);
        check_pieces("  lead  and trail \n", &["  lead", "  and", " trail \n"]);
        check_pieces("   ", &["   "]);
        check_pieces("über 日本 x", &["über", " 日本", " x"]);
    }

    #[test]
    fn canned_reply_names_the_fake_first() {
        assert_eq!(canned_pieces("a", 3).concat(), "[a] token1 token2");
        assert!(canned_pieces("a", 0).is_empty());
    }

    #[test]
    fn parts_content_joins_text_parts_only() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":[
            {"type":"text","text":"one"},{"type":"image_url","image_url":{"url":"x"}},
            {"type":"text","text":"two"}]}]}"#;
        let request = parse_request(body).unwrap();
        assert_eq!(request.last_user_text(), "one\ntwo");
        assert_eq!(request.prompt_tokens(), 2); // 7 chars
    }

    #[test]
    fn token_limit_takes_the_tightest() {
        let request = parse_request(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],
                "max_tokens":9,"max_completion_tokens":4}"#,
        )
        .unwrap();
        assert_eq!(request.token_limit(), Some(4));
    }

    #[test]
    fn refuses_bad_requests_with_a_reason() {
        let cases: [(&[u8], &str); 5] = [
            (b"{", "could not parse"),
            (b"[1]", "JSON object"),
            (br#"{"messages":[]}"#, "model"),
            (br#"{"model":"m"}"#, "messages"),
            (br#"{"model":"m","messages":[]}"#, "non-empty"),
        ];
        for (body, needle) in cases {
            let err = parse_request(body).unwrap_err();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
