//! A raw HTTP/1.1 client over TCP for the fuzzer and the slow connections: it sends exactly the
//! bytes it is given (malformed ones included) and reads one response — status, headers, body
//! framed by `Content-Length`, chunks or the connection's end — with a deadline.
//!
//! Client sockets bind to varying loopback source addresses (127.0.0.2 …) so that a run of
//! 10⁵ connections never exhausts one address's ephemeral ports, and close with RST (zero
//! linger) so that no TIME_WAIT piles up.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// Most response bytes read (a bigger response is a finding in itself).
const MAX_RESPONSE: usize = 4 << 20;

/// Opens a connection to `addr` from loopback source address `127.0.0.(2 + n % 200)`.
pub async fn connect(addr: SocketAddr, n: u64, within: Duration) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_zero_linger()?;
    let src = Ipv4Addr::new(127, 0, 0, 2 + (n % 200) as u8);
    socket.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))?;
    match tokio::time::timeout(within, socket.connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

/// One response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server said `Connection: close`, or the body ran to the connection's end.
    pub closes: bool,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What reading a response gave.
#[derive(Debug, Clone)]
pub enum Read {
    Response(RawResponse),
    /// The connection ended before any byte of a response.
    Closed,
    /// The connection was reset before any byte of a response.
    Reset,
    /// The connection ended (or broke) in the middle of a response.
    Truncated {
        bytes: usize,
    },
    /// Nothing complete within the deadline (`bytes` of a response had arrived).
    TimedOut {
        bytes: usize,
    },
    /// Bytes that do not parse as an HTTP/1.x response.
    Garbage {
        bytes: usize,
    },
}

/// Reads one final response (1xx responses are skipped). `head` is true for a HEAD request
/// (no body follows the headers). `buf` keeps bytes read past the response for the next one.
pub async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: bool,
    deadline: Instant,
) -> Read {
    loop {
        let (status, headers, head_len) = match read_head(stream, buf, deadline).await {
            Ok(h) => h,
            Err(r) => return r,
        };
        buf.drain(..head_len);
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let says_close = find("connection").is_some_and(|v| v.contains("close"));
        let chunked = find("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length = find("content-length").and_then(|v| v.trim().parse::<usize>().ok());
        let no_body = head || status == 204 || status == 304 || status == 101;
        let (body, to_end) = if no_body {
            (Vec::new(), false)
        } else if chunked {
            match read_chunked(stream, buf, deadline).await {
                Ok(b) => (b, false),
                Err(r) => return r,
            }
        } else if let Some(n) = length {
            match fill(stream, buf, n, deadline).await {
                Ok(()) => (buf.drain(..n).collect(), false),
                Err(r) => return r,
            }
        } else {
            match read_to_end(stream, buf, deadline).await {
                Ok(()) => (std::mem::take(buf), true),
                Err(r) => return r,
            }
        };
        return Read::Response(RawResponse {
            status,
            headers,
            body,
            closes: says_close || to_end,
        });
    }
}

type Head = (u16, Vec<(String, String)>, usize);

async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Head, Read> {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = resp.code.unwrap_or(0);
                    let headers = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    return Ok((status, headers, len));
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Err(Read::Garbage { bytes: buf.len() }),
            }
        }
        let had = buf.len();
        match read_some(stream, buf, deadline).await {
            Ok(0) if had == 0 => return Err(Read::Closed),
            Ok(0) => return Err(Read::Truncated { bytes: had }),
            Ok(_) => {}
            Err(ReadErr::Reset) if had == 0 => return Err(Read::Reset),
            Err(ReadErr::Reset) => return Err(Read::Truncated { bytes: had }),
            Err(ReadErr::Timeout) => return Err(Read::TimedOut { bytes: had }),
        }
        if buf.len() > MAX_RESPONSE {
            return Err(Read::Garbage { bytes: buf.len() });
        }
    }
}

enum ReadErr {
    Reset,
    Timeout,
}

async fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, ReadErr> {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Ok(Err(_)) => Err(ReadErr::Reset),
        Err(_) => Err(ReadErr::Timeout),
    }
}

/// Reads until `buf` holds at least `n` bytes.
async fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
    deadline: Instant,
) -> Result<(), Read> {
    if n > MAX_RESPONSE {
        return Err(Read::Garbage { bytes: buf.len() });
    }
    while buf.len() < n {
        match read_some(stream, buf, deadline).await {
            Ok(0) | Err(ReadErr::Reset) => return Err(Read::Truncated { bytes: buf.len() }),
            Ok(_) => {}
            Err(ReadErr::Timeout) => return Err(Read::TimedOut { bytes: buf.len() }),
        }
    }
    Ok(())
}

async fn read_to_end(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), Read> {
    loop {
        match read_some(stream, buf, deadline).await {
            Ok(0) => return Ok(()),
            Ok(_) if buf.len() > MAX_RESPONSE => return Err(Read::Garbage { bytes: buf.len() }),
            Ok(_) => {}
            Err(ReadErr::Reset) => return Err(Read::Truncated { bytes: buf.len() }),
            Err(ReadErr::Timeout) => return Err(Read::TimedOut { bytes: buf.len() }),
        }
    }
}

/// Decodes a chunked body (trailers skipped).
async fn read_chunked(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Vec<u8>, Read> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buf, deadline).await?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Err(Read::Garbage { bytes: body.len() });
        };
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                if read_line(stream, buf, deadline).await?.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_RESPONSE {
            return Err(Read::Garbage { bytes: body.len() });
        }
        fill(stream, buf, size + 2, deadline).await?;
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

async fn read_line(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<String, Read> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Ok(line);
        }
        if buf.len() > 64 * 1024 {
            return Err(Read::Garbage { bytes: buf.len() });
        }
        match read_some(stream, buf, deadline).await {
            Ok(0) | Err(ReadErr::Reset) => return Err(Read::Truncated { bytes: buf.len() }),
            Ok(_) => {}
            Err(ReadErr::Timeout) => return Err(Read::TimedOut { bytes: buf.len() }),
        }
    }
}

/// Whether `body` is OpenAI's error shape: `{"error": {"message": string, "type": string,
/// "param": string|null, "code": string|null}}`. Returns what is wrong, if anything.
pub fn error_shape_problem(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return Some("empty body".to_owned());
    }
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Some("not JSON".to_owned()),
    };
    let Some(e) = v.get("error").and_then(|e| e.as_object()) else {
        return Some("no `error` object".to_owned());
    };
    let string = |k: &str| e.get(k).is_some_and(|x| x.is_string());
    let string_or_null = |k: &str| e.get(k).is_some_and(|x| x.is_string() || x.is_null());
    if !string("message") {
        return Some("`error.message` is not a string".to_owned());
    }
    if !string("type") {
        return Some("`error.type` is not a string".to_owned());
    }
    if !string_or_null("param") {
        return Some("`error.param` missing (string or null)".to_owned());
    }
    if !string_or_null("code") {
        return Some("`error.code` missing (string or null)".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_shape_needs_all_four_fields() {
        let ok = br#"{"error":{"message":"m","type":"t","param":null,"code":"c"}}"#;
        assert_eq!(error_shape_problem(ok), None);
        let no_param = br#"{"error":{"message":"m","type":"t","code":"c"}}"#;
        assert!(error_shape_problem(no_param).is_some());
        assert!(error_shape_problem(b"").is_some());
        assert!(error_shape_problem(b"<html>").is_some());
    }
}
