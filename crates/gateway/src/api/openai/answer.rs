//! Reading chat-completions answers as they pass: the usage an answer
//! reports and whether a collected answer is complete.

use routemesh_cache::AnswerKind;

use crate::pipeline::AnswerFormat;

/// Chat-completions answers: a JSON body, or an SSE stream of chunks
/// ending in `data: [DONE]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatAnswers;

/// The codec's one instance.
pub static CHAT_ANSWERS: ChatAnswers = ChatAnswers;

impl AnswerFormat for ChatAnswers {
    fn completion_tokens(&self, tail: &[u8]) -> Option<u32> {
        completion_tokens(tail)
    }

    /// Valid JSON, or an event stream that ended with `data: [DONE]`.
    fn is_complete(&self, kind: AnswerKind, body: &[u8]) -> bool {
        match kind {
            AnswerKind::Sse => body.trim_ascii_end().ends_with(b"data: [DONE]"),
            AnswerKind::Json => serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok(),
        }
    }
}

/// The last `"completion_tokens": N` in a JSON body or SSE stream.
pub fn completion_tokens(tail: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"\"completion_tokens\"";
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let rest = &tail[at + KEY.len()..];
    let rest = rest
        .iter()
        .position(|b| !(b.is_ascii_whitespace() || *b == b':'))
        .map(|i| &rest[i..])?;
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_found_at_the_end_of_json_and_sse_bodies() {
        let json = br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens": 42,"total_tokens":47}}"#;
        assert_eq!(completion_tokens(json), Some(42));
        let sse = b"data: {\"usage\":{\"completion_tokens\":7}}\n\ndata: [DONE]\n\n";
        assert_eq!(completion_tokens(sse), Some(7));
        assert_eq!(completion_tokens(b"data: {\"choices\":[]}"), None);
    }

    #[test]
    fn only_finished_answers_are_complete() {
        let f = CHAT_ANSWERS;
        assert!(f.is_complete(AnswerKind::Sse, b"data: {}\n\ndata: [DONE]\n\n"));
        assert!(!f.is_complete(AnswerKind::Sse, b"data: {}\n\n"));
        assert!(f.is_complete(AnswerKind::Json, br#"{"choices":[]}"#));
        assert!(!f.is_complete(AnswerKind::Json, br#"{"choices":["#));
    }
}
