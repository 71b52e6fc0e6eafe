//! The client's API, for a front door that does not forward requests
//! itself (ext_proc): which API a request path is, its body parsed into
//! the pipeline's [`Request`], and the chat-completions answers the
//! pipeline deals in — whole, chunk by chunk, or from the cache — and the
//! gateway's errors, in that API's shape. Both front doors use it: the
//! HTTP handlers of `/v1/messages` and `/v1/responses`, and ext_proc.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use routemesh_cache::AnswerKind;
use serde_json::Value;

use crate::api::anthropic::answer::{self as messages_answer, StreamTranslator};
use crate::api::anthropic::{self, error as anthropic_error};
use crate::api::openai::responses::{self, Echo, ResponsesStream};
use crate::api::openai::{self, ApiError};
use crate::auth::Tenant;
use crate::pipeline::Request;

/// An API routed like chat completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI's `POST /v1/chat/completions`.
    ChatCompletions,
    /// Anthropic's `POST /v1/messages`.
    Messages,
    /// OpenAI's `POST /v1/responses`.
    Responses,
}

impl Api {
    const ALL: [Self; 3] = [Self::ChatCompletions, Self::Messages, Self::Responses];

    /// The API a request path names, and the path before its endpoint
    /// (`/openai/v1/messages?beta=true` → `Messages`, `/openai/v1`); any
    /// prefix works, the query is ignored.
    pub fn of_path(path: &str) -> Option<(Self, &str)> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        Self::ALL.into_iter().find_map(|api| {
            path.strip_suffix(api.endpoint())
                .filter(|prefix| !prefix.ends_with('/'))
                .map(|prefix| (api, prefix))
        })
    }

    /// The endpoint's path (after `/v1`).
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Messages => "/messages",
            Self::Responses => "/responses",
        }
    }

    /// The `api` label of the request metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat_completions",
            Self::Messages => "messages",
            Self::Responses => "responses",
        }
    }

    /// The request, translated into chat completions, and what its
    /// answers need.
    pub fn parse(
        self,
        body: &[u8],
        tenant: Tenant,
        mut headers: HeaderMap,
    ) -> Result<(Request, Client), ApiError> {
        match self {
            Self::ChatCompletions => {
                let chat = openai::parse_chat(body)?;
                Ok((chat.into_request(tenant, headers), Client::ChatCompletions))
            }
            Self::Messages => {
                let m = anthropic::parse_messages(body)?;
                anthropic::strip_headers(&mut headers);
                let client = Client::Messages { model: m.model };
                Ok((m.chat.into_request(tenant, headers), client))
            }
            Self::Responses => {
                let r = responses::parse_responses(body)?;
                let client = Client::Responses {
                    model: r.model,
                    echo: Box::new(r.echo),
                };
                Ok((r.chat.into_request(tenant, headers), client))
            }
        }
    }

    /// A gateway error as this API's error response.
    pub fn render_error(self, e: &ApiError) -> (StatusCode, HeaderMap, Bytes) {
        match self {
            Self::Messages => anthropic_error::render(e),
            Self::ChatCompletions | Self::Responses => e.render(),
        }
    }
}

/// A client of one API, as its answers are written.
#[derive(Debug, Clone)]
pub enum Client {
    ChatCompletions,
    /// `model`: what the client asked for (answers name the model that
    /// answered when it is known).
    Messages {
        model: String,
    },
    Responses {
        model: String,
        echo: Box<Echo>,
    },
}

impl Client {
    fn model<'a>(&'a self, answered: Option<&'a str>) -> &'a str {
        match self {
            Self::ChatCompletions => answered.unwrap_or_default(),
            Self::Messages { model } | Self::Responses { model, .. } => answered.unwrap_or(model),
        }
    }

    /// A whole answer (a chat completion, or the upstream's error body) as
    /// this client's status and body: a 2xx that is no chat completion is a
    /// 502 (a front door that has sent its status already keeps that one).
    pub fn whole(
        &self,
        status: StatusCode,
        chat: &[u8],
        answered: Option<&str>,
    ) -> (StatusCode, Bytes) {
        let model = self.model(answered);
        let parsed = serde_json::from_slice::<Value>(chat)
            .ok()
            .filter(|v| v["choices"].is_array());
        let body = match (self, &parsed) {
            (Self::ChatCompletions, _) => Bytes::copy_from_slice(chat),
            (Self::Messages { .. }, _) if !status.is_success() => {
                Bytes::from(anthropic_error::from_upstream(status, chat).to_string())
            }
            // Upstream errors are in OpenAI's shape already.
            (Self::Responses { .. }, _) if !status.is_success() => Bytes::copy_from_slice(chat),
            (_, None) => {
                let status = StatusCode::BAD_GATEWAY;
                return (
                    status,
                    self.failed("the upstream's answer is not a chat completion"),
                );
            }
            (Self::Messages { .. }, Some(v)) => {
                Bytes::from(messages_answer::message(v, model).to_string())
            }
            (Self::Responses { echo, .. }, Some(v)) => {
                Bytes::from(responses::response(v, model, echo).to_string())
            }
        };
        (status, body)
    }

    /// The body of a 502 that says `message`, in this client's shape.
    pub fn failed(&self, message: &str) -> Bytes {
        let v = match self {
            Self::Messages { .. } => anthropic_error::body(StatusCode::BAD_GATEWAY, message),
            Self::ChatCompletions | Self::Responses { .. } => serde_json::json!({ "error": {
                "message": message, "type": "upstream_error", "param": null, "code": "upstream_invalid",
            }}),
        };
        Bytes::from(v.to_string())
    }

    /// A translator of a chat-completions stream into this client's
    /// events; `None` when the client reads chat completions.
    pub fn stream(&self, answered: Option<&str>) -> Option<ClientStream> {
        let model = self.model(answered);
        match self {
            Self::ChatCompletions => None,
            Self::Messages { .. } => Some(ClientStream::Messages(StreamTranslator::new(model))),
            Self::Responses { echo, .. } => Some(ClientStream::Responses(Box::new(
                ResponsesStream::new(model, echo),
            ))),
        }
    }

    /// A stored answer (chat completions, whole or a stream) as this
    /// client's content type and body.
    pub fn cached(
        &self,
        answer: &routemesh_cache::Answer,
        answered: Option<&str>,
    ) -> (HeaderValue, Bytes) {
        let sse = HeaderValue::from_static("text/event-stream");
        let json = HeaderValue::from_static("application/json");
        match (answer.kind, self.stream(answered)) {
            (AnswerKind::Sse, Some(mut s)) => {
                let mut events = s.feed(&answer.body);
                events.extend(s.end());
                (sse, Bytes::from(events))
            }
            (AnswerKind::Sse, None) => (sse, answer.body.clone()),
            (AnswerKind::Json, _) => (json, self.whole(StatusCode::OK, &answer.body, answered).1),
        }
    }
}

/// A chat-completions stream on its way to a client of another API.
#[derive(Debug)]
pub enum ClientStream {
    Messages(StreamTranslator),
    Responses(Box<ResponsesStream>),
}

impl ClientStream {
    /// The client's events for the next bytes of the chunk stream.
    pub fn feed(&mut self, chunks: &[u8]) -> Vec<u8> {
        match self {
            Self::Messages(t) => t.feed(chunks),
            Self::Responses(t) => t.feed(chunks),
        }
    }

    /// The closing events, when the chunk stream has ended.
    pub fn end(&mut self) -> Vec<u8> {
        match self {
            Self::Messages(t) => t.end(),
            Self::Responses(t) => t.end(),
        }
    }

    /// What tells the client its stream broke.
    pub fn broken(&self, message: &str) -> Vec<u8> {
        match self {
            Self::Messages(_) => {
                let mut out = Vec::new();
                messages_answer::emit(
                    &mut out,
                    "error",
                    &anthropic_error::body(StatusCode::BAD_GATEWAY, message),
                );
                out
            }
            Self::Responses(_) => responses::failed_event(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_api_under_any_prefix() {
        assert_eq!(
            Api::of_path("/v1/chat/completions"),
            Some((Api::ChatCompletions, "/v1"))
        );
        assert_eq!(
            Api::of_path("/anthropic/v1/messages?beta=true"),
            Some((Api::Messages, "/anthropic/v1"))
        );
        assert_eq!(Api::of_path("/v1/responses"), Some((Api::Responses, "/v1")));
        assert_eq!(Api::of_path("/v1/messages/count_tokens"), None);
        assert_eq!(Api::of_path("/v1/completions"), None);
        assert_eq!(Api::of_path("/v1//messages"), None);
    }

    #[test]
    fn a_chat_completion_is_written_in_each_clients_shape() {
        let chat = serde_json::json!({
            "id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{ "index": 0, "finish_reason": "stop",
                          "message": { "role": "assistant", "content": "hi there" } }],
            "usage": { "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5 },
        })
        .to_string();
        let m = Client::Messages {
            model: "auto".into(),
        };
        let (status, body) = m.whole(StatusCode::OK, chat.as_bytes(), Some("fast"));
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["model"], "fast");
        assert_eq!(v["content"][0]["text"], "hi there");
        assert_eq!(v["usage"]["output_tokens"], 2);

        let r = Client::Responses {
            model: "auto".into(),
            echo: Box::default(),
        };
        let v: Value =
            serde_json::from_slice(&r.whole(StatusCode::OK, chat.as_bytes(), None).1).unwrap();
        assert_eq!(v["object"], "response");
        assert_eq!(v["model"], "auto");

        let err =
            br#"{"error":{"message":"slow down","type":"rate_limit","param":null,"code":null}}"#;
        let (status, body) = m.whole(StatusCode::TOO_MANY_REQUESTS, err, None);
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "slow down");
        assert_eq!(
            &r.whole(StatusCode::TOO_MANY_REQUESTS, err, None).1[..],
            err
        );

        // A 2xx that is no chat completion is the upstream failing.
        let (status, body) = m.whole(StatusCode::OK, b"<html>", None);
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "api_error", "{v}");
    }
}
