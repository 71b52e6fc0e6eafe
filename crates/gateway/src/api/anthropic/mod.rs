//! The Anthropic Messages API (`POST /v1/messages`): requests translated
//! into chat completions ([`messages`]), chat-completions answers
//! translated back, whole or event by event ([`answer`]), and errors in
//! Anthropic's shape ([`error`]). Routing, caching and learning see the
//! translated request, so they work as for chat completions.

pub mod answer;
pub mod error;
pub mod messages;

pub use messages::{MessagesRequest, parse_messages, strip_headers};
