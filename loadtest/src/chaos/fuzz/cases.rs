//! The fuzzer's fixed-seed generator. Case `i` of lane `L` is drawn from its own RNG seeded with
//! (seed, L, i), so any case can be made again from the report's seed and index.
//!
//! - **Structured** cases are well-formed HTTP/1.1 (correct framing, `Content-Length` or
//!   chunks) with everything else drawn: method, path, credentials, headers (spoofed
//!   `x-routemesh-*` ones too) and a body that is a valid chat request with JSON-level mutations
//!   (wrong types, missing fields, odd roles, content parts, huge numbers, unicode), textual JSON
//!   damage (truncation, lone surrogates, deep nesting), oversize bodies, feedback and admin
//!   bodies.
//! - **Byte-level** cases take a cheap structured request (`Connection: close`) and damage its
//!   bytes: bit flips, odd bytes, inserted tokens (CR/LF, obs-fold, duplicate or malformed
//!   `Content-Length` / `Transfer-Encoding`, HTTP/2 preface), deletions, duplications,
//!   truncation, weird request lines, too many or too large headers, too long URIs.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Which lane a case runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Structured,
    Bytes,
}

impl Lane {
    pub fn name(self) -> &'static str {
        match self {
            Self::Structured => "structured",
            Self::Bytes => "bytes",
        }
    }
}

/// One fuzzed request.
#[derive(Debug, Clone)]
pub struct Case {
    pub lane: Lane,
    pub index: u64,
    /// The generator branch that made it (counted in the report).
    pub kind: &'static str,
    pub bytes: Vec<u8>,
    /// A HEAD request: its response has no body.
    pub head: bool,
}

/// What the generator needs to know about the gateway.
#[derive(Debug, Clone)]
pub struct Keys {
    pub api_key: String,
    pub other_tenant_key: String,
    pub admin_token: String,
    /// Configured models (passthrough).
    pub models: Vec<String>,
    /// A word the config blocks.
    pub blocked_word: String,
    pub max_body_bytes: usize,
}

/// Seeds the RNG of case `index` in `lane`.
fn rng_for(seed: u64, lane: Lane, index: u64) -> StdRng {
    let lane_bits = match lane {
        Lane::Structured => 0x5eed_0001u64,
        Lane::Bytes => 0x5eed_0002u64,
    };
    let mut x = seed ^ lane_bits.rotate_left(32) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finaliser, so neighbouring indices get unrelated streams
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    StdRng::seed_from_u64(x ^ (x >> 31))
}

/// An HTTP request before serialisation.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: Option<Vec<usize>>,
}

impl Req {
    fn new(method: &str, target: &str) -> Self {
        Self {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: vec![("Host".to_owned(), "127.0.0.1".to_owned())],
            body: Vec::new(),
            chunked: None,
        }
    }

    fn header(&mut self, k: &str, v: &str) {
        self.headers.push((k.to_owned(), v.to_owned()));
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        match &self.chunked {
            Some(sizes) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &self.body[..];
                let mut sizes = sizes.iter().cycle();
                while !rest.is_empty() {
                    let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
                    out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            None => {
                if !self.body.is_empty() || self.method == "POST" || self.method == "PUT" {
                    out.extend_from_slice(
                        format!("Content-Length: {}\r\n", self.body.len()).as_bytes(),
                    );
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&self.body);
            }
        }
        out
    }
}

const PATHS: &[&str] = &[
    "/",
    "/v1",
    "/v1/",
    "/v1/chat/completions/",
    "/v1/chat/completions?stream=true",
    "/V1/CHAT/COMPLETIONS",
    "/v1/../admin/cache",
    "/v1/%2e%2e/admin/cache",
    "//v1/models",
    "/v1/models/model-a",
    "/v1/completions",
    "/v1/embeddings",
    "/admin",
    "/admin/",
    "/admin/cache/invalidate/x",
    "/healthz?x=1",
    "/readyz/",
    "/%00",
    "/%ff%fe",
    "/v1/chat/completions#frag",
    "/metrics",
    "*",
];

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "get", "FOO",
    "P0ST",
];

fn pick<'a, T: ?Sized>(rng: &mut StdRng, items: &'a [&'a T]) -> &'a T {
    items[rng.random_range(0..items.len())]
}

/// A prompt: plain, unicode, long, with personal data, blocked, or with control characters.
fn prompt(rng: &mut StdRng, keys: &Keys) -> String {
    match rng.random_range(0..10) {
        0 => "Hi there!".to_owned(),
        1 => "What is the integral of x^2 from 0 to 3?".to_owned(),
        2 => "Ünïcödé ✓ 日本語のテキスト مرحبا 👩‍👩‍👧 \u{200f}rtl\u{202e}".to_owned(),
        3 => format!(
            "mail me at sam{}@example.org, card 4111 1111 1111 1111",
            rng.random::<u16>()
        ),
        4 => format!("please {} this", keys.blocked_word),
        5 => "x".repeat(rng.random_range(1000..6000)),
        6 => "\u{0}\u{1b}[31m\u{7f}\u{feff}".to_owned(),
        7 => String::new(),
        _ => format!("fuzz question {} about rust", rng.random::<u32>()),
    }
}

/// A JSON value of a random type (for type confusion).
fn odd_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..9) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1e300),
        4 => json!([]),
        5 => json!({}),
        6 => json!(["a", 1]),
        7 => json!({"nested": {"deeper": [null]}}),
        _ => json!("string"),
    }
}

fn message(rng: &mut StdRng, keys: &Keys) -> Value {
    let role = match rng.random_range(0..12) {
        0 => json!("system"),
        1 => json!("assistant"),
        2 => json!("tool"),
        3 => json!("developer"),
        4 => json!("wizard"),
        5 => odd_value(rng),
        _ => json!("user"),
    };
    let content = match rng.random_range(0..12) {
        0 => json!([{ "type": "text", "text": prompt(rng, keys) }]),
        1 => json!([{ "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } }]),
        2 => json!([{ "type": "text" }]),
        3 => odd_value(rng),
        _ => json!(prompt(rng, keys)),
    };
    let mut m = json!({ "role": role, "content": content });
    if rng.random_bool(0.05) {
        m.as_object_mut().map(|o| o.remove("content"));
    }
    if rng.random_bool(0.05) {
        m.as_object_mut().map(|o| o.remove("role"));
    }
    m
}

/// A chat body; `routed` allows `model: auto` (which costs an embedding).
fn chat_value(rng: &mut StdRng, keys: &Keys, routed: bool) -> Value {
    let model = match rng.random_range(0..100) {
        0..=59 => json!(pick(
            rng,
            &keys.models.iter().map(String::as_str).collect::<Vec<_>>()
        )),
        60..=69 if routed => json!("auto"),
        60..=79 => json!(format!("no-such-model-{}", rng.random::<u16>())),
        80..=87 => odd_value(rng),
        88..=91 => json!(""),
        92..=94 => json!("m".repeat(5000)),
        _ => Value::Null,
    };
    let messages = match rng.random_range(0..10) {
        0 => json!([]),
        1 => odd_value(rng),
        _ => Value::Array(
            (0..rng.random_range(1..4))
                .map(|_| message(rng, keys))
                .collect(),
        ),
    };
    let mut body = json!({ "model": model, "messages": messages });
    let o = match body.as_object_mut() {
        Some(o) => o,
        None => return body,
    };
    if o["model"].is_null() && rng.random_bool(0.5) {
        o.remove("model");
    }
    match rng.random_range(0..8) {
        0 => {
            o.insert("stream".into(), json!(true));
        }
        1 => {
            o.insert("stream".into(), json!(false));
        }
        2 => {
            o.insert("stream".into(), odd_value(rng));
        }
        _ => {}
    }
    for _ in 0..rng.random_range(0..3) {
        let (k, v) = match rng.random_range(0..8) {
            0 => ("max_tokens", json!(rng.random_range(-5i64..50))),
            1 => ("max_tokens", json!(u64::MAX)),
            2 => ("temperature", json!(rng.random::<f64>() * 3.0)),
            3 => ("stream_options", json!({ "include_usage": true })),
            4 => (
                "tools",
                json!([{ "type": "function", "function": { "name": "f" } }]),
            ),
            5 => ("n", odd_value(rng)),
            6 => ("reasoning_effort", json!("high")),
            _ => ("x-unknown-field", odd_value(rng)),
        };
        o.insert(k.into(), v);
    }
    body
}

/// Textual damage to serialised JSON.
fn damage_json(rng: &mut StdRng, mut text: Vec<u8>) -> (Vec<u8>, &'static str) {
    match rng.random_range(0..9) {
        0 => {
            let cut = rng.random_range(0..text.len().max(1));
            text.truncate(cut);
            (text, "json-truncated")
        }
        1 => (
            br#"{"model":"model-a","messages":[{"role":"user","content":"\ud800"}]}"#.to_vec(),
            "json-lone-surrogate",
        ),
        2 => {
            let depth = rng.random_range(100..20_000);
            let mut t = b"{\"model\":\"model-a\",\"messages\":".to_vec();
            t.extend(std::iter::repeat_n(b'[', depth));
            t.extend(std::iter::repeat_n(b']', depth));
            t.push(b'}');
            (t, "json-deep")
        }
        3 => (
            b"\xef\xbb\xbf".iter().copied().chain(text).collect(),
            "json-bom",
        ),
        4 => {
            let at = rng.random_range(0..text.len().max(1));
            text.insert(at.min(text.len()), 0xff);
            (text, "json-invalid-utf8")
        }
        5 => (
            br#"{"model":"model-a","model":"auto","messages":[{"role":"user","content":"dup"}]}"#
                .to_vec(),
            "json-duplicate-key",
        ),
        6 => (
            b"{\"model\": NaN, \"messages\": Infinity}".to_vec(),
            "json-nan",
        ),
        7 => {
            text.extend_from_slice(b" trailing garbage");
            (text, "json-trailing")
        }
        _ => (b"not json at all".to_vec(), "json-garbage"),
    }
}

/// Credentials: mostly the right key for the path, sometimes none, another tenant's or junk.
fn auth(rng: &mut StdRng, keys: &Keys, admin_path: bool, req: &mut Req) {
    let right = if admin_path {
        &keys.admin_token
    } else {
        &keys.api_key
    };
    let value = match rng.random_range(0..100) {
        0..=79 => Some(format!("Bearer {right}")),
        80..=84 => None,
        85..=87 => Some(format!("Bearer {}", keys.other_tenant_key)),
        88..=90 => Some("Bearer".to_owned()),
        91..=92 => Some(format!("Basic {right}")),
        93..=94 => Some(format!("bearer {right}")),
        95..=96 => Some(format!("Bearer {}", "k".repeat(4000))),
        _ => Some(format!(
            "Bearer {}",
            if admin_path {
                &keys.api_key
            } else {
                &keys.admin_token
            }
        )),
    };
    if let Some(v) = value {
        req.header("Authorization", &v);
    }
}

fn extra_headers(rng: &mut StdRng, req: &mut Req) {
    for _ in 0..rng.random_range(0..4) {
        match rng.random_range(0..9) {
            0 => req.header("x-routemesh-model", "spoofed"),
            1 => req.header("X-RouteMesh-Decision", "spoofed"),
            2 => req.header(
                "Cache-Control",
                pick(
                    rng,
                    &["no-cache", "no-store", "max-age=0, no-cache", "garbage"],
                ),
            ),
            3 => req.header("Accept-Encoding", "gzip, br"),
            4 => req.header("x-fuzz", &"v".repeat(rng.random_range(1..2000))),
            5 => req.header("Expect", "100-continue"),
            6 => req.header("Connection", pick(rng, &["keep-alive", "upgrade", "te"])),
            7 => req.header("Content-Encoding", "gzip"),
            _ => req.header("Accept", "text/event-stream"),
        }
    }
}

fn content_type(rng: &mut StdRng, req: &mut Req) {
    match rng.random_range(0..20) {
        0 => req.header("Content-Type", "text/plain"),
        1 => {}
        2 => req.header("Content-Type", "application/json; charset=utf-16"),
        3 => req.header("Content-Type", "multipart/form-data; boundary=x"),
        _ => req.header("Content-Type", "application/json"),
    }
}

/// A structured (well-formed) case.
pub fn structured(seed: u64, index: u64, keys: &Keys, seen_ids: &[String]) -> Case {
    let rng = &mut rng_for(seed, Lane::Structured, index);
    let (mut req, kind) = match rng.random_range(0..100) {
        0..=34 => chat_req(rng, keys, "/v1/chat/completions", true),
        35..=40 => {
            let routed = rng.random_bool(0.2);
            chat_req(rng, keys, "/v1/route", routed)
        }
        41..=52 => (feedback_req(rng, keys, seen_ids), "feedback"),
        53..=57 => (invalidate_req(rng, keys), "admin-invalidate"),
        58..=61 => {
            let path = pick(
                rng,
                &[
                    "/admin/cache",
                    "/admin/learning",
                    "/v1/models",
                    "/healthz",
                    "/readyz",
                ],
            );
            let mut r = Req::new("GET", path);
            auth(rng, keys, path.starts_with("/admin"), &mut r);
            (r, "get-known")
        }
        62..=71 => {
            let (method, path) = (pick(rng, METHODS), pick(rng, PATHS));
            let mut r = Req::new(method, path);
            let admin = rng.random_bool(0.3);
            auth(rng, keys, admin, &mut r);
            if rng.random_bool(0.5) {
                r.body = b"{}".to_vec();
            }
            (r, "odd-path")
        }
        72..=77 => {
            let path = pick(
                rng,
                &[
                    "/v1/chat/completions",
                    "/v1/feedback",
                    "/v1/models",
                    "/admin/cache/flush",
                    "/healthz",
                ],
            );
            let mut r = Req::new(
                pick(rng, &["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
                path,
            );
            auth(rng, keys, path.starts_with("/admin"), &mut r);
            (r, "wrong-method")
        }
        78..=80 => {
            let path = pick(
                rng,
                &[
                    "/v1/chat/completions",
                    "/v1/route",
                    "/v1/feedback",
                    "/admin/cache/invalidate",
                ],
            );
            let mut r = Req::new("POST", path);
            auth(rng, keys, path.starts_with("/admin"), &mut r);
            let n = keys.max_body_bytes + rng.random_range(1..100_000);
            let mut body = br#"{"model":"model-a","messages":[{"role":"user","content":""#.to_vec();
            body.extend(std::iter::repeat_n(b'a', n));
            body.extend_from_slice(br#""}]}"#);
            r.body = body;
            (r, "oversize")
        }
        81..=92 => {
            let path = pick(
                rng,
                &[
                    "/v1/chat/completions",
                    "/v1/route",
                    "/v1/feedback",
                    "/admin/cache/invalidate",
                ],
            );
            let mut r = Req::new("POST", path);
            auth(rng, keys, path.starts_with("/admin"), &mut r);
            let base = serde_json::to_vec(&chat_value(rng, keys, false)).unwrap_or_default();
            let (body, kind) = damage_json(rng, base);
            r.body = body;
            (r, kind)
        }
        93..=94 => {
            let mut r = Req::new("POST", "/admin/cache/flush");
            auth(rng, keys, true, &mut r);
            (r, "admin-flush")
        }
        _ => {
            let mut r = Req::new(
                "GET",
                &format!("/v1/{}", "p".repeat(rng.random_range(1000..8000))),
            );
            auth(rng, keys, false, &mut r);
            (r, "long-path")
        }
    };
    content_type(rng, &mut req);
    extra_headers(rng, &mut req);
    if !req.body.is_empty() && rng.random_bool(0.1) {
        req.chunked = Some((0..3).map(|_| rng.random_range(1..300)).collect());
    }
    let head = req.method == "HEAD";
    Case {
        lane: Lane::Structured,
        index,
        kind,
        bytes: req.bytes(),
        head,
    }
}

fn chat_req(rng: &mut StdRng, keys: &Keys, path: &str, routed: bool) -> (Req, &'static str) {
    let mut r = Req::new("POST", path);
    auth(rng, keys, false, &mut r);
    r.body = serde_json::to_vec(&chat_value(rng, keys, routed)).unwrap_or_default();
    (r, if path == "/v1/route" { "route" } else { "chat" })
}

fn feedback_req(rng: &mut StdRng, keys: &Keys, seen_ids: &[String]) -> Req {
    let mut r = Req::new("POST", "/v1/feedback");
    auth(rng, keys, false, &mut r);
    let id = match rng.random_range(0..10) {
        0..=3 if !seen_ids.is_empty() => json!(seen_ids[rng.random_range(0..seen_ids.len())]),
        4 => odd_value(rng),
        5 => json!(""),
        _ => json!(format!("{:032x}", rng.random::<u128>())),
    };
    let reward = match rng.random_range(0..10) {
        0 => json!("up"),
        1 => json!("down"),
        2 => json!("sideways"),
        3 => json!(2.5),
        4 => json!(-0.1),
        5 => odd_value(rng),
        _ => json!(rng.random::<f64>()),
    };
    let mut body = json!({ "request_id": id, "reward": reward });
    if rng.random_bool(0.1) {
        body["extra"] = json!(1);
    }
    r.body = serde_json::to_vec(&body).unwrap_or_default();
    r
}

fn invalidate_req(rng: &mut StdRng, keys: &Keys) -> Req {
    let mut r = Req::new("POST", "/admin/cache/invalidate");
    auth(rng, keys, true, &mut r);
    let body = match rng.random_range(0..6) {
        0 => json!({}),
        1 => json!({ "tenant": "fuzz" }),
        2 => json!({ "decision": odd_value(rng) }),
        3 => json!({ "model": "model-a", "tenant": "nobody" }),
        4 => json!({ "unknown": true }),
        _ => odd_value(rng),
    };
    r.body = serde_json::to_vec(&body).unwrap_or_default();
    r
}

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b"\0",
    b"\x7f",
    b"\xff",
    b"\r\n\r\n",
    b"\r\n x-folded: y",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: chunked, identity\r\n",
    b"Transfer-Encoding: xchunked\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 18446744073709551616\r\n",
    b"Content-Length: 1, 2\r\n",
    b"Content-Length: +5\r\n",
    b"Expect: 100-continue\r\n",
    b"Host: a\r\nHost: b\r\n",
    b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
    b"%",
    b"\xc3\x28",
];

const REQUEST_LINES: &[&[u8]] = &[
    b"GET  / HTTP/1.1\r\n",
    b"GET / HTTP/1.0\r\n",
    b"GET / HTTP/2.0\r\n",
    b"GET / HTTP/9.9\r\n",
    b"GET /\r\n",
    b"get / http/1.1\r\n",
    b"GET http://evil.example/v1/models HTTP/1.1\r\n",
    b"GET /v1/models?\xff HTTP/1.1\r\n",
    b" GET / HTTP/1.1\r\n",
    b"\r\n\r\nGET /healthz HTTP/1.1\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
];

/// A byte-level case.
pub fn bytes(seed: u64, index: u64, keys: &Keys) -> Case {
    let rng = &mut rng_for(seed, Lane::Bytes, index);
    let mut req = match rng.random_range(0..5) {
        0 => Req::new("GET", "/healthz"),
        1 => Req::new("GET", "/v1/models"),
        2 => {
            let mut r = Req::new("POST", "/v1/feedback");
            r.body = br#"{"request_id":"nope","reward":1}"#.to_vec();
            r
        }
        3 => {
            let mut r = Req::new("POST", "/v1/chat/completions");
            r.body = br#"{"model":"model-a","messages":[{"role":"user","content":"hi"}]}"#.to_vec();
            r
        }
        _ => {
            let mut r = Req::new("POST", "/v1/route");
            r.body = b"{".to_vec();
            r
        }
    };
    auth(rng, keys, false, &mut req);
    req.header("Content-Type", "application/json");
    req.header("Connection", "close");
    let mut b = req.bytes();
    let head_len = b
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(b.len(), |p| p + 4);
    let kind = match rng.random_range(0..100) {
        0..=14 => {
            for _ in 0..rng.random_range(1..4) {
                let at = biased_pos(rng, head_len, b.len());
                b[at] ^= 1 << rng.random_range(0..8);
            }
            "bytes-bitflip"
        }
        15..=29 => {
            let at = biased_pos(rng, head_len, b.len());
            b[at] = *pick(
                rng,
                &[
                    &0u8, &b'\r', &b'\n', &b' ', &b':', &0x7f, &0xff, &b'\t', &0x80,
                ],
            );
            "bytes-odd-byte"
        }
        30..=54 => {
            // at a line start in the head, mostly: where a header would go
            let lines: Vec<usize> = b[..head_len]
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w == b"\r\n")
                .map(|(i, _)| i + 2)
                .collect();
            let at = if rng.random_bool(0.7) && !lines.is_empty() {
                lines[rng.random_range(0..lines.len())].min(b.len())
            } else {
                biased_pos(rng, head_len, b.len())
            };
            let tok = pick(rng, TOKENS);
            b.splice(at..at, tok.iter().copied());
            "bytes-insert-token"
        }
        55..=64 => {
            let at = biased_pos(rng, head_len, b.len());
            let n = rng.random_range(1..16).min(b.len() - at);
            b.drain(at..at + n);
            "bytes-delete"
        }
        65..=69 => {
            let at = biased_pos(rng, head_len, b.len());
            let n = rng.random_range(1..32).min(b.len() - at);
            let piece: Vec<u8> = b[at..at + n].to_vec();
            b.splice(at..at, piece);
            "bytes-duplicate"
        }
        70..=73 => {
            let at = rng.random_range(1..b.len());
            b.truncate(at);
            "bytes-truncate"
        }
        74..=81 => {
            let end = b.windows(2).position(|w| w == b"\r\n").map_or(0, |p| p + 2);
            b.splice(..end, pick(rng, REQUEST_LINES).iter().copied());
            "bytes-request-line"
        }
        82..=85 => {
            let many: Vec<u8> = (0..rng.random_range(101..400))
                .flat_map(|i| format!("x-h{i}: v\r\n").into_bytes())
                .collect();
            b.splice(head_len - 2..head_len - 2, many);
            "bytes-many-headers"
        }
        86..=89 => {
            let big = format!(
                "x-big: {}\r\n",
                "b".repeat(rng.random_range(20_000..200_000))
            );
            b.splice(head_len - 2..head_len - 2, big.into_bytes());
            "bytes-huge-header"
        }
        90..=93 => {
            let path = format!(
                "/v1/models?q={}",
                "u".repeat(rng.random_range(10_000..120_000))
            );
            let first = b.iter().position(|&c| c == b' ').unwrap_or(0) + 1;
            let second = first + b[first..].iter().position(|&c| c == b' ').unwrap_or(0);
            b.splice(first..second, path.into_bytes());
            "bytes-long-uri"
        }
        94..=96 => {
            let head = String::from_utf8_lossy(&b[..head_len]).replace("\r\n", "\n");
            let body = b[head_len..].to_vec();
            b = head.into_bytes();
            b.extend(body);
            "bytes-bare-lf"
        }
        _ => {
            let mut junk: Vec<u8> = (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
            junk.extend_from_slice(&b);
            b = junk;
            "bytes-leading-junk"
        }
    };
    Case {
        lane: Lane::Bytes,
        index,
        kind,
        bytes: b,
        head: false,
    }
}

/// A position, three times in four inside the head (where parsers live).
fn biased_pos(rng: &mut StdRng, head_len: usize, len: usize) -> usize {
    if rng.random_bool(0.75) || head_len >= len {
        rng.random_range(0..head_len.min(len).max(1))
    } else {
        rng.random_range(head_len..len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys {
            api_key: "k".repeat(20),
            other_tenant_key: "o".repeat(20),
            admin_token: "a".repeat(20),
            models: vec!["model-a".into()],
            blocked_word: "forbidden".into(),
            max_body_bytes: 1024,
        }
    }

    #[test]
    fn a_case_is_the_same_for_the_same_seed_and_index() {
        let k = keys();
        assert_eq!(
            structured(7, 3, &k, &[]).bytes,
            structured(7, 3, &k, &[]).bytes
        );
        assert_eq!(bytes(7, 3, &k).bytes, bytes(7, 3, &k).bytes);
        assert_ne!(
            structured(7, 3, &k, &[]).bytes,
            structured(7, 4, &k, &[]).bytes
        );
    }

    #[test]
    fn structured_cases_are_framed() {
        let k = keys();
        for i in 0..500 {
            let c = structured(1, i, &k, &[]);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let parsed = req.parse(&c.bytes);
            assert!(
                matches!(parsed, Ok(httparse::Status::Complete(_))),
                "case {i} ({}) does not parse: {parsed:?}",
                c.kind
            );
        }
    }
}
