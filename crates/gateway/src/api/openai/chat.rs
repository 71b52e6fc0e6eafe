//! OpenAI chat-completions requests: parsing and validating them, and the
//! [`Payload`] codec the pipeline edits them through (redaction, system
//! prompt, reasoning in each upstream's dialect, the model's upstream name,
//! the cache's keys).
//!
//! The request is kept as the JSON object the client sent, so every field we
//! do not interpret (tools, sampling parameters, vendor extensions) reaches
//! the upstream untouched; a typed view checks the fields we rely on.

use bytes::Bytes;
use http::HeaderMap;
use routemesh_common::config::{Reasoning, SystemPrompt, UpstreamFamily};
use serde::Deserialize;
use serde_json::{Map, Value};
use xxhash_rust::xxh3::xxh3_128;

use super::answer::CHAT_ANSWERS;
use super::error::ApiError;
use crate::auth::Tenant;
use crate::cache::RequestKeys;
use crate::pipeline::{AnswerFormat, EncodeError, Payload, Request};

/// A validated chat-completions request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The request as sent; forwarded with `model` rewritten.
    pub body: Map<String, Value>,
    /// The model the client asked for: an alias or a configured model.
    pub model: String,
    pub stream: bool,
    /// The text the router classifies: the last user message (or, without
    /// one, the last message with content).
    pub prompt: String,
    /// Where that message is in `messages`.
    prompt_at: Option<usize>,
}

impl ChatRequest {
    /// The pipeline's view of this request, sent by `tenant` with `headers`.
    pub fn into_request(mut self, tenant: Tenant, headers: HeaderMap) -> Request {
        Request {
            tenant,
            headers,
            model: std::mem::take(&mut self.model),
            // The codec keeps where the prompt is, not a copy of it.
            prompt: std::mem::take(&mut self.prompt),
            payload: Box::new(self),
        }
    }

    /// The body to send upstream, asking for `upstream_model`.
    pub fn upstream_body(mut self, upstream_model: &str) -> Result<Vec<u8>, serde_json::Error> {
        self.body
            .insert("model".into(), Value::String(upstream_model.to_owned()));
        serde_json::to_vec(&self.body)
    }
}

impl ChatRequest {
    /// Puts the decision's system prompt in: first in `messages`
    /// (`Insert`), or instead of every `system`/`developer` message the
    /// client sent (`Replace`).
    pub fn set_system_prompt(&mut self, sp: &SystemPrompt) {
        let Some(Value::Array(messages)) = self.body.get_mut("messages") else {
            return;
        };
        let text = match sp {
            SystemPrompt::Insert(t) => t,
            SystemPrompt::Replace(t) => {
                messages.retain(|m| {
                    !matches!(
                        m.get("role").and_then(Value::as_str),
                        Some("system" | "developer")
                    )
                });
                t
            }
        };
        messages.insert(0, serde_json::json!({ "role": "system", "content": text }));
    }

    /// Asks for `reasoning` in the dialect of `family`, replacing what the
    /// client asked: OpenAI-style APIs get `reasoning_effort` (`off` →
    /// `minimal`, `on` → `medium`); vLLM gets
    /// `chat_template_kwargs.enable_thinking` (and `reasoning_effort` too
    /// for an effort level, which vLLM passes to models that read it).
    pub fn set_reasoning(&mut self, reasoning: Reasoning, family: UpstreamFamily) {
        let effort = match reasoning {
            Reasoning::Off => "minimal",
            Reasoning::On | Reasoning::Medium => "medium",
            Reasoning::Low => "low",
            Reasoning::High => "high",
        };
        match family {
            UpstreamFamily::OpenAi => {
                self.body
                    .insert("reasoning_effort".into(), Value::String(effort.into()));
            }
            UpstreamFamily::Vllm => {
                let kwargs = self
                    .body
                    .entry("chat_template_kwargs")
                    .or_insert_with(|| Value::Object(Map::new()));
                if !kwargs.is_object() {
                    *kwargs = Value::Object(Map::new());
                }
                if let Value::Object(k) = kwargs {
                    k.insert(
                        "enable_thinking".into(),
                        Value::Bool(reasoning != Reasoning::Off),
                    );
                }
                match reasoning {
                    Reasoning::Low | Reasoning::Medium | Reasoning::High => {
                        self.body
                            .insert("reasoning_effort".into(), Value::String(effort.into()));
                    }
                    Reasoning::On | Reasoning::Off => {
                        self.body.remove("reasoning_effort");
                    }
                }
            }
        }
    }

    /// Rewrites every text in `messages` (string contents and `text` parts)
    /// for which `f` returns a replacement; returns the sum of the counts `f`
    /// reported.
    pub fn redact_text(&mut self, mut f: impl FnMut(&str) -> Option<(String, usize)>) -> usize {
        let mut total = 0;
        let mut apply = |v: &mut Value| {
            if let Some((new, n)) = v.as_str().and_then(&mut f) {
                *v = Value::String(new);
                total += n;
            }
        };
        let Some(Value::Array(messages)) = self.body.get_mut("messages") else {
            return 0;
        };
        for message in messages {
            match message.get_mut("content") {
                Some(v @ Value::String(_)) => apply(v),
                Some(Value::Array(parts)) => {
                    for part in parts {
                        if part.get("type").and_then(Value::as_str) == Some("text")
                            && let Some(text) = part.get_mut("text")
                        {
                            apply(text);
                        }
                    }
                }
                _ => {}
            }
        }
        total
    }
}

#[derive(Deserialize)]
struct ChatView {
    model: String,
    messages: Vec<MessageView>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Deserialize)]
struct MessageView {
    role: Role,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or an array of content parts")]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl Content {
    fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Parses and validates a chat-completions body.
pub fn parse_chat(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("the request body is not valid JSON: {e}"), None)
    })?;
    let not_object = || ApiError::bad_request("the request body must be a JSON object", None);
    if !value.is_object() {
        return Err(not_object());
    }
    let view = serde_path_to_error::deserialize::<_, ChatView>(&value).map_err(|e| {
        let path = e.path().to_string();
        let param = (path != ".").then_some(path);
        let message = match &param {
            Some(p) => format!("{p}: {}", e.inner()),
            None => e.inner().to_string(),
        };
        ApiError::bad_request(message, param)
    })?;
    match value {
        Value::Object(body) => finish(view, body),
        _ => Err(not_object()),
    }
}

fn finish(view: ChatView, body: Map<String, Value>) -> Result<ChatRequest, ApiError> {
    if view.model.trim().is_empty() {
        return Err(ApiError::bad_request(
            "model must not be empty",
            Some("model".into()),
        ));
    }
    if view.messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages must not be empty",
            Some("messages".into()),
        ));
    }
    let m = &view.messages;
    let prompt_at = m
        .iter()
        .rposition(|m| m.role == Role::User)
        .or_else(|| m.iter().rposition(|m| m.content.is_some()));
    let prompt = prompt_at
        .and_then(|i| m[i].content.as_ref())
        .map(Content::text)
        .unwrap_or_default();
    Ok(ChatRequest {
        body,
        model: view.model,
        stream: view.stream.unwrap_or(false),
        prompt,
        prompt_at,
    })
}

impl Payload for ChatRequest {
    fn redact(&mut self, f: &mut dyn FnMut(&str) -> Option<(String, usize)>) -> usize {
        self.redact_text(f)
    }

    fn set_system_prompt(&mut self, sp: &SystemPrompt) {
        ChatRequest::set_system_prompt(self, sp);
    }

    fn encode(
        &self,
        upstream_model: &str,
        reasoning: Option<Reasoning>,
        family: UpstreamFamily,
    ) -> Result<Bytes, EncodeError> {
        let mut req = self.clone();
        if let Some(r) = reasoning {
            req.set_reasoning(r, family);
        }
        req.upstream_body(upstream_model)
            .map(Bytes::from)
            .map_err(|e| EncodeError(e.to_string()))
    }

    /// The prompt message's content is the key (whitespace-normalised
    /// text, or its exact JSON when it has non-text parts, which also turns
    /// the semantic tier off); everything else — system prompt, earlier
    /// turns, sampling parameters, tools, `stream`, the requested alias —
    /// is the context.
    fn cache_keys(&self) -> RequestKeys {
        let mut body = self.body.clone();
        let mut prompt = Value::Null;
        if let (Some(Value::Array(messages)), Some(at)) = (body.get_mut("messages"), self.prompt_at)
            && let Some(Value::Object(m)) = messages.get_mut(at)
            && let Some(c) = m.get_mut("content")
        {
            prompt = c.take();
        }
        // serde_json's map is ordered by key, so equal requests serialise alike.
        let context = xxh3_128(&serde_json::to_vec(&body).unwrap_or_default());
        let (key, text_only) = match &prompt {
            Value::String(s) => (xxh3_128(normalized(s).as_bytes()), true),
            other => {
                let parts_are_text = other.as_array().is_some_and(|parts| {
                    parts
                        .iter()
                        .all(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                });
                if let (true, Some(parts)) = (parts_are_text, other.as_array()) {
                    let text: Vec<&str> = parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect();
                    (xxh3_128(normalized(&text.join(" ")).as_bytes()), true)
                } else {
                    (
                        xxh3_128(&serde_json::to_vec(other).unwrap_or_default()),
                        false,
                    )
                }
            }
        };
        RequestKeys {
            context,
            key,
            text_only,
        }
    }

    fn answers(&self) -> &'static dyn AnswerFormat {
        &CHAT_ANSWERS
    }
}

/// Trimmed, with every run of whitespace made one space.
fn normalized(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(body: &str) -> (String, Option<String>) {
        match parse_chat(body.as_bytes()) {
            Err(ApiError::BadRequest { message, param }) => (message, param),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    fn body(r: ChatRequest) -> Value {
        serde_json::from_slice(&r.upstream_body("m").unwrap_or_default()).unwrap_or_default()
    }

    fn chat(extra: &str) -> ChatRequest {
        parse_chat(
            format!(
                r#"{{"model":"auto",{extra}"messages":[
                {{"role":"system","content":"client one"}},
                {{"role":"user","content":"hi"}},
                {{"role":"developer","content":"client two"}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_system_prompt_is_inserted_first_or_replaces_the_clients() {
        let mut r = chat("");
        r.set_system_prompt(&SystemPrompt::Insert("ours".into()));
        let roles: Vec<_> = body(r)["messages"]
            .as_array()
            .map(|m| m.iter().map(|x| x["content"].to_string()).collect())
            .unwrap_or_default();
        assert_eq!(
            roles,
            [r#""ours""#, r#""client one""#, r#""hi""#, r#""client two""#]
        );
        let mut r = chat("");
        r.set_system_prompt(&SystemPrompt::Replace("ours".into()));
        let b = body(r);
        assert_eq!(b["messages"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            b["messages"][0],
            serde_json::json!({"role": "system", "content": "ours"})
        );
        assert_eq!(b["messages"][1]["content"], "hi");
    }

    #[test]
    fn reasoning_is_written_in_each_upstream_dialect() {
        let mut r = chat(r#""reasoning_effort":"high","#);
        r.set_reasoning(Reasoning::Off, UpstreamFamily::OpenAi);
        assert_eq!(body(r)["reasoning_effort"], "minimal");
        let mut r = chat(r#""chat_template_kwargs":{"foo":1},"#);
        r.set_reasoning(Reasoning::Off, UpstreamFamily::Vllm);
        let b = body(r);
        assert_eq!(
            b["chat_template_kwargs"],
            serde_json::json!({"foo": 1, "enable_thinking": false})
        );
        assert!(b.get("reasoning_effort").is_none());
        let mut r = chat("");
        r.set_reasoning(Reasoning::High, UpstreamFamily::Vllm);
        let b = body(r);
        assert_eq!(b["chat_template_kwargs"]["enable_thinking"], true);
        assert_eq!(b["reasoning_effort"], "high");
        let mut r = chat("");
        r.set_reasoning(Reasoning::On, UpstreamFamily::OpenAi);
        assert_eq!(body(r)["reasoning_effort"], "medium");
    }

    #[test]
    fn routes_on_the_last_user_message_and_keeps_other_fields() {
        let r = parse_chat(
            br#"{"model":"auto","temperature":0.2,"tools":[],"messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":"first"},
                {"role":"assistant","content":null,"tool_calls":[]},
                {"role":"user","content":[{"type":"text","text":"second"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"part"}]}
            ]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.prompt, "second\npart");
        assert!(!r.stream);
        let out: Value = serde_json::from_slice(&r.upstream_body("org/m").unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(out["model"], "org/m");
        assert_eq!(out["temperature"], 0.2);
        assert_eq!(out["messages"][2]["tool_calls"], serde_json::json!([]));
    }

    #[test]
    fn errors_name_the_offending_field() {
        assert_eq!(err(r#"{"model":"auto"}"#).1, None);
        assert!(err(r#"{"model":"auto"}"#).0.contains("messages"));
        assert_eq!(
            err(r#"{"model":7,"messages":[]}"#).1.as_deref(),
            Some("model")
        );
        assert_eq!(
            err(r#"{"model":"a","messages":[{"role":"robot","content":"x"}]}"#)
                .1
                .as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            err(r#"{"model":"a","messages":[{"role":"user","content":5}]}"#)
                .1
                .as_deref(),
            Some("messages[0].content")
        );
        assert_eq!(
            err(r#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#)
                .1
                .as_deref(),
            Some("stream")
        );
        assert_eq!(
            err(r#"{"model":"a","messages":[]}"#).1.as_deref(),
            Some("messages")
        );
        assert_eq!(
            err(r#"{"model":" ","messages":[{"role":"user","content":"x"}]}"#)
                .1
                .as_deref(),
            Some("model")
        );
    }

    #[test]
    fn redaction_reaches_every_text_of_every_message() {
        let mut r = parse_chat(
            br#"{"model":"auto","messages":[
                {"role":"system","content":"secret is S"},
                {"role":"assistant","content":null},
                {"role":"user","content":[{"type":"text","text":"S and S"},{"type":"image_url","image_url":{"url":"S"}}]}
            ]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let n = r.redact_text(|t| {
            t.contains('S')
                .then(|| (t.replace('S', "[X]"), t.matches('S').count()))
        });
        assert_eq!(n, 3);
        let out: Value =
            serde_json::from_slice(&r.upstream_body("m").unwrap_or_default()).unwrap_or_default();
        assert_eq!(out["messages"][0]["content"], "secret is [X]");
        assert_eq!(out["messages"][2]["content"][0]["text"], "[X] and [X]");
        assert_eq!(
            out["messages"][2]["content"][1]["image_url"]["url"], "S",
            "only text is rewritten"
        );
    }

    #[test]
    fn malformed_json_and_non_objects_are_bad_requests() {
        assert!(
            err(r#"{"model": "auto", "messages": [}"#)
                .0
                .contains("not valid JSON")
        );
        assert!(err("[1,2]").0.contains("JSON object"));
        assert!(err("").0.contains("not valid JSON"));
    }

    fn keys(body: Value) -> RequestKeys {
        let req = parse_chat(body.to_string().as_bytes()).expect("valid request");
        req.cache_keys()
    }

    fn user(text: &str) -> Value {
        json!({ "role": "user", "content": text })
    }

    #[test]
    fn the_last_user_message_is_the_key_and_the_rest_the_context() {
        let a = keys(json!({ "model": "auto", "messages": [user("What is  Rust?")] }));
        let b = keys(json!({ "model": "auto", "messages": [user(" What is Rust? ")] }));
        let c = keys(json!({ "model": "auto", "messages": [user("What is Go?")] }));
        assert_eq!(a, b, "whitespace does not change the key");
        assert_eq!(a.context, c.context);
        assert_ne!(a.key, c.key);
        assert!(a.text_only);
    }

    #[test]
    fn system_prompts_turns_and_parameters_change_the_context() {
        let base = keys(json!({ "model": "auto", "messages": [user("hi")] }));
        let variants = [
            json!({ "model": "auto", "messages": [{ "role": "system", "content": "Be terse." }, user("hi")] }),
            json!({ "model": "auto", "messages": [user("earlier"), { "role": "assistant", "content": "ok" }, user("hi")] }),
            json!({ "model": "auto", "messages": [user("hi")], "temperature": 0.2 }),
            json!({ "model": "auto", "messages": [user("hi")], "stream": true }),
            json!({ "model": "auto", "messages": [user("hi")], "tools": [{ "type": "function", "function": { "name": "f" } }] }),
            json!({ "model": "other", "messages": [user("hi")] }),
        ];
        for v in variants {
            let k = keys(v.clone());
            assert_eq!(k.key, base.key, "{v}");
            assert_ne!(k.context, base.context, "{v}");
        }
    }

    #[test]
    fn non_text_parts_key_on_the_whole_content_and_skip_the_semantic_tier() {
        let image = |url: &str| {
            json!({ "model": "auto", "messages": [{ "role": "user", "content": [
                { "type": "text", "text": "What is this?" },
                { "type": "image_url", "image_url": { "url": url } },
            ] }] })
        };
        let a = keys(image("https://a.example/1.png"));
        let b = keys(image("https://a.example/2.png"));
        assert_ne!(a.key, b.key);
        assert!(!a.text_only);
        let parts = keys(
            json!({ "model": "auto", "messages": [{ "role": "user", "content": [
            { "type": "text", "text": "What is Rust?" } ] }] }),
        );
        let plain = keys(json!({ "model": "auto", "messages": [user("What is Rust?")] }));
        assert!(parts.text_only);
        assert_eq!(parts.key, plain.key);
    }

    #[test]
    fn the_key_is_the_message_the_router_reads() {
        // No user message: the last message with content is both.
        let r = parse_chat(
            br#"{"model":"auto","messages":[{"role":"system","content":"only this"},{"role":"assistant","content":null}]}"#,
        )
        .expect("valid");
        assert_eq!(r.prompt, "only this");
        let k = r.cache_keys();
        let same = keys(json!({ "model": "auto", "messages": [user("only this")] }));
        assert_eq!(k.key, same.key);
    }
}
