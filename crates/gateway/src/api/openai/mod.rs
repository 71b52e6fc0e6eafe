//! The OpenAI chat-completions API: requests ([`chat`]), answers
//! ([`answer`]: usage, completeness), the Responses API over chat
//! completions ([`responses`]) and errors ([`error`]: the one mapping
//! of a gateway error to a status and OpenAI's error body).

pub mod answer;
pub mod chat;
pub mod error;
pub mod responses;

pub use chat::{ChatRequest, parse_chat};
pub use error::ApiError;
