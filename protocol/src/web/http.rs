//! HTTP/1.1 request heads (parsed by `httparse`) and the few responses the
//! web door writes: whole files, small texts, and the WebSocket upgrade.

/// The longest request head the broker reads; a longer one gets `431`.
pub const MAX_HEAD: usize = 8 * 1024;

/// Most header fields in one request head.
const MAX_HEADERS: usize = 64;

/// A request head, borrowing from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path without its query string.
    pub path: &'a str,
    /// `Sec-WebSocket-Key`, if sent.
    pub ws_key: Option<&'a str>,
    /// `Upgrade: websocket` and `Connection: upgrade` were both sent.
    pub upgrade: bool,
    /// `Sec-WebSocket-Version` was `13`.
    pub ws_version_13: bool,
    /// Bytes the head took, its blank line included.
    pub consumed: usize,
}

/// What the front of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole head yet (and under `MAX_HEAD`).
    Incomplete,
    /// A whole head.
    Head(Head<'a>),
    /// Over `MAX_HEAD` bytes or `MAX_HEADERS` fields: answer `431`.
    TooLarge,
    /// Not an HTTP/1.x request: answer `400`.
    Bad,
}

/// Parses a request head from the front of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Parsed::TooLarge,
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => return Parsed::TooLarge,
        Err(_) => return Parsed::Bad,
    };
    if consumed > MAX_HEAD {
        return Parsed::TooLarge;
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Parsed::Bad;
    };
    let path = target.split('?').next().unwrap_or(target);
    let mut head = Head {
        method,
        path,
        ws_key: None,
        upgrade: false,
        ws_version_13: false,
        consumed,
    };
    let (mut upgrade, mut connection) = (false, false);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(value, "websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection |= has_token(value, "upgrade");
        } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            head.ws_key = Some(value);
        } else if h.name.eq_ignore_ascii_case("sec-websocket-version") {
            head.ws_version_13 = value == "13";
        }
    }
    head.upgrade = upgrade && connection;
    Parsed::Head(head)
}

/// True if the comma-separated `list` holds `token` (any case).
fn has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Appends a whole response that ends the connection: status line,
/// `Content-Type`, `Content-Length`, `Connection: close`, any `extra`
/// header lines (each ending in CRLF), and the body.
pub fn push_response(out: &mut Vec<u8>, status: u16, content_type: &str, extra: &str, body: &[u8]) {
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\nCache-Control: no-store\r\n\
             X-Content-Type-Options: nosniff\r\n{extra}\r\n",
            reason(status),
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

/// Appends a short plain-text response (`text` and a newline).
pub fn push_text(out: &mut Vec<u8>, status: u16, text: &str) {
    push_response(
        out,
        status,
        "text/plain; charset=utf-8",
        "",
        format!("{text}\n").as_bytes(),
    );
}

/// Appends `101 Switching Protocols` for the client's `Sec-WebSocket-Key`.
pub fn push_upgrade(out: &mut Vec<u8>, key: &str) {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    );
}

/// The reason phrase of the statuses the broker uses.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    const UPGRADE: &[u8] = b"GET /ws?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n{\"op\"";

    #[test]
    fn an_upgrade_head() {
        let Parsed::Head(h) = parse(UPGRADE) else {
            panic!("not a head")
        };
        assert_eq!((h.method, h.path), ("GET", "/ws"));
        assert!(h.upgrade && h.ws_version_13);
        assert_eq!(h.ws_key, Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(&UPGRADE[h.consumed..], b"{\"op\"");
        let mut out = Vec::new();
        push_upgrade(&mut out, h.ws_key.unwrap());
        // RFC 6455, section 1.3's example.
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn partial_large_and_bad_heads() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Incomplete);
        let mut big = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(parse(&big), Parsed::TooLarge);
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&big), Parsed::TooLarge);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Parsed::TooLarge);
        assert_eq!(parse(b"NAME alice\n\r\n\r\n"), Parsed::Bad);
        let Parsed::Head(h) = parse(b"GET / HTTP/1.1\r\n\r\n") else {
            panic!()
        };
        assert!(!h.upgrade && h.ws_key.is_none());
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        push_text(&mut out, 404, "no such page");
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.contains("Content-Length: 13\r\n"));
        assert!(s.ends_with("\r\n\r\nno such page\n"));
    }
}
