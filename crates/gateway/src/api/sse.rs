//! Server-sent events, as the API translators read and write them: an
//! upstream stream cut into whole events (whatever the chunking), and one
//! named event written.

use serde_json::Value;

/// Splits an SSE byte stream into the `data` of its whole events.
#[derive(Debug, Default)]
pub struct Events {
    pending: Vec<u8>,
}

impl Events {
    /// Takes the next bytes; returns the `data` of every event they
    /// complete, in order (events without data are skipped).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some((text_end, end)) = event_end(&self.pending) {
            if let Some(data) = data_of(&self.pending[..text_end]) {
                out.push(data);
            }
            self.pending.drain(..end);
        }
        out
    }
}

/// Where the first complete event of `buf` ends: (end of its text, end
/// with the blank line).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The `data:` lines of one event, joined.
fn data_of(event: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(event);
    let mut data: Option<String> = None;
    for line in text.lines().filter_map(|l| l.strip_prefix("data:")) {
        let line = line.strip_prefix(' ').unwrap_or(line);
        match &mut data {
            None => data = Some(line.to_owned()),
            Some(d) => {
                d.push('\n');
                d.push_str(line);
            }
        }
    }
    data
}

/// Writes one event named `name` with JSON `data`.
pub fn emit(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // serialising a `Value` into memory cannot fail
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_whole_however_the_bytes_are_cut() {
        let stream =
            b"data: {\"a\":1}\n\n: a comment\n\ndata: one\ndata: two\r\n\r\ndata: [DONE]\n\n";
        let mut events = Events::default();
        let mut seen = Vec::new();
        for piece in stream.chunks(3) {
            seen.extend(events.feed(piece));
        }
        assert_eq!(seen, ["{\"a\":1}", "one\ntwo", "[DONE]"]);
    }
}
