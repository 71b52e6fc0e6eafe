//! Reading chat-completions answers as they pass: the usage an answer
//! reports and whether a collected answer is complete.

use routemesh_cache::AnswerKind;

use crate::pipeline::AnswerFormat;

/// Chat-completions answers: a JSON body, or an SSE stream of chunks
/// ending in `data: [DONE]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatAnswers;

/// [`AnswerFormat::stream_events`]'s state inside a line that is not an
/// event's start.
const MID_LINE: u8 = u8::MAX;

/// The codec's one instance.
pub static CHAT_ANSWERS: ChatAnswers = ChatAnswers;

impl AnswerFormat for ChatAnswers {
    fn completion_tokens(&self, tail: &[u8]) -> Option<u32> {
        completion_tokens(tail)
    }

    /// `data:` lines. `state`: how much of `data:` the current line has
    /// matched (0..=4), or `MID_LINE`.
    fn stream_events(&self, chunk: &[u8], state: &mut u8) -> u32 {
        const PREFIX: &[u8] = b"data:";
        let mut events = 0;
        for &b in chunk {
            *state = match *state {
                _ if b == b'\n' => 0,
                MID_LINE => MID_LINE,
                k if PREFIX[usize::from(k)] == b => {
                    if usize::from(k) + 1 == PREFIX.len() {
                        events += 1;
                        MID_LINE
                    } else {
                        k + 1
                    }
                }
                _ => MID_LINE,
            };
        }
        events
    }

    /// One chunk per token, as llama.cpp and vLLM stream them, less the
    /// opening (role) and closing (finish reason) chunks and `[DONE]`.
    fn tokens_of_events(&self, events: u32) -> Option<u32> {
        (events > 0).then(|| events.saturating_sub(3).max(1))
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
    fn a_stream_without_usage_is_estimated_from_its_events() {
        let f = CHAT_ANSWERS;
        let stream = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                      data: {\"choices\":[{\"delta\":{\"content\":\"Red\"}}]}\n\n\
                      data: {\"choices\":[{\"delta\":{\"content\":\", blue\"}}]}\n\n\
                      data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
                      data: [DONE]\n\n";
        // However the bytes are cut, the same events are counted.
        for cut in [1, 3, 7, 40, stream.len()] {
            let mut state = 0;
            let events: u32 = stream
                .as_bytes()
                .chunks(cut)
                .map(|c| f.stream_events(c, &mut state))
                .sum();
            assert_eq!(events, 5, "cut every {cut} bytes");
        }
        assert_eq!(f.tokens_of_events(5), Some(2), "two content chunks");
        assert_eq!(f.tokens_of_events(0), None);
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
