//! TLS on every door (docs/operations.md §2.1): the native protocol, IRC
//! and the web door over TLS with a generated certificate, chatting with
//! plain users; plain bytes and garbage on a TLS port; bad certificate
//! files; a renewed certificate taken in by a reload.

use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use testkit::tls::{cert_dir, client_config, connect, start_tls, use_certs, TlsStream};
use testkit::web::WsPeer;
use testkit::{start_with, Peer, DEADLINE};

/// Line-by-line over a TLS stream.
struct Lines(BufReader<TlsStream>);

impl Lines {
    fn send(&mut self, s: &str) {
        self.0.get_mut().write_all(s.as_bytes()).unwrap();
        self.0.get_mut().flush().unwrap();
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        let n = self.0.read_line(&mut s).unwrap();
        assert!(n > 0, "the broker closed the TLS connection");
        s.trim_end_matches(['\r', '\n']).to_string()
    }

    fn until(&mut self, needle: &str) -> String {
        loop {
            let l = self.line();
            if l.contains(needle) {
                return l;
            }
        }
    }
}

#[test]
fn native_irc_and_web_over_tls_chat_with_plain_users() {
    let (b, dir) = start_tls();
    let config = client_config(&dir);
    let mut plain = Peer::named(b.local_addr(), "plain");

    let mut native = Lines(BufReader::new(connect(b.tls_addr().unwrap(), &config)));
    assert!(native.line().starts_with("HELLO chat 1 "));
    native.send("NAME secure\n");
    assert_eq!(native.line(), "OK NAME secure");
    plain.expect("JOINED secure");
    native.send("SEND plain :over TLS\n");
    assert!(native.line().starts_with("ACK "));
    assert_eq!(plain.next_msg().body_str(), "over TLS");
    plain.send("SEND secure 5\nhello\n");
    plain.expect_prefix("ACK ");
    assert!(native.line().starts_with("MSG "));
    assert_eq!(native.line(), "hello");

    let mut irc = Lines(BufReader::new(connect(b.irc_tls_addr().unwrap(), &config)));
    irc.send("NICK ircs\r\nUSER ircs 0 * :TLS user\r\n");
    irc.until(" 001 ircs ");
    plain.expect("JOINED ircs");
    plain.send("SEND ircs :to irc\n");
    plain.expect_prefix("ACK ");
    irc.until(":plain!plain@chat PRIVMSG ircs :to irc");

    let mut wss = WsPeer::connect_tls(b.https_addr().unwrap(), &config);
    assert_eq!(wss.next()["type"], "hello");
    wss.send(&json!({"op":"name","name":"webs"}));
    assert_eq!(wss.next()["type"], "ok");
    plain.expect("JOINED webs");
    wss.send(&json!({"op":"send","to":["plain","secure","ircs"],"text":"from wss"}));
    assert_eq!(wss.skip_until("ack")["queued"], 3);
    assert_eq!(plain.next_msg().body_str(), "from wss");
    native.until("from wss");
    irc.until(":webs!webs@chat PRIVMSG ircs :from wss");

    // The page over https.
    let mut page = connect(b.https_addr().unwrap(), &config);
    page.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut body = Vec::new();
    let _ = page.read_to_end(&mut body);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("<html"),
        "{text}"
    );

    native.send("QUIT\n");
    assert_eq!(native.line(), "BYE");
    plain.expect("LEFT secure quit");
}

/// Reads until the broker closes; returns what came.
fn read_to_close(mut s: TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("expected the broker to close, got {e}"),
        }
    }
}

#[test]
fn plain_text_and_garbage_on_a_tls_port_get_only_a_close() {
    let (b, dir) = start_tls();
    let mut bystander = Peer::named(b.local_addr(), "bystander");
    for addr in [b.tls_addr(), b.irc_tls_addr(), b.https_addr()] {
        let mut s = TcpStream::connect(addr.unwrap()).unwrap();
        s.write_all(b"NAME alice\nSEND * :hi\n").unwrap();
        let got = read_to_close(s);
        // At most a TLS alert record (content type 21), never chat.
        assert!(got.is_empty() || got[0] == 21, "{got:?}");
        let mut s = TcpStream::connect(addr.unwrap()).unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
            .unwrap();
        let got = read_to_close(s);
        assert!(got.is_empty() || got[0] == 21, "{got:?}");
    }
    // Nobody joined; the broker and its users are fine.
    bystander.send("LIST\n");
    bystander.expect("USERS 1 :bystander");
    let mut again = Lines(BufReader::new(connect(
        b.tls_addr().unwrap(),
        &client_config(&dir),
    )));
    assert!(again.line().starts_with("HELLO "));
}

#[test]
fn a_handshake_that_never_finishes_is_closed_by_the_name_timeout() {
    let dir = cert_dir();
    let b = start_with(|c| {
        use_certs(c, &dir);
        c.name_timeout_secs = 1;
    });
    let mut s = TcpStream::connect(b.tls_addr().unwrap()).unwrap();
    // Half a ClientHello record header, then silence: closed, not held.
    s.write_all(&[0x16, 0x03]).unwrap();
    let _ = read_to_close(s);
}

#[test]
fn bad_certificate_files_are_named() {
    let dir = cert_dir();
    let start = |cert: &str, key: &str| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = broker::Config {
            irc_listen: String::new(),
            http_listen: String::new(),
            ..broker::Config::default()
        };
        use_certs(&mut c, &dir);
        c.tls_cert = cert.to_string();
        c.tls_key = key.to_string();
        broker::start(l, c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let missing = start("/nonexistent/cert.pem", &key);
    assert!(
        missing.contains("cannot read tls_cert /nonexistent/cert.pem"),
        "{missing}"
    );
    let swapped = start(&key, &key);
    assert!(swapped.contains("no CERTIFICATE"), "{swapped}");
    let other = cert_dir();
    let mismatched = start(&cert, &other.join("key.pem").display().to_string());
    assert!(mismatched.contains("do not go together"), "{mismatched}");
    let no_key = start(&cert, &cert);
    assert!(no_key.contains("tls_key"), "{no_key}");
}

#[test]
fn a_reload_takes_in_a_renewed_certificate_without_dropping_anyone() {
    let (b, old) = start_tls();
    let old_config = client_config(&old);
    let mut kept = Lines(BufReader::new(connect(b.tls_addr().unwrap(), &old_config)));
    assert!(kept.line().starts_with("HELLO "));
    kept.send("NAME kept\n");
    assert_eq!(kept.line(), "OK NAME kept");
    // Renew: new files at the same paths, then a reload.
    let new = cert_dir();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(new.join(f), old.join(f)).unwrap();
    }
    let mut c = broker::Config::default();
    use_certs(&mut c, &old);
    b.reload_handle().reload(c).unwrap();
    // New connections get the new certificate: a client that trusts only
    // the old one refuses it, one that trusts the new one talks.
    let mut stale = connect(b.tls_addr().unwrap(), &old_config);
    let mut byte = [0u8; 1];
    assert!(stale.read(&mut byte).is_err());
    let mut fresh = Lines(BufReader::new(connect(
        b.tls_addr().unwrap(),
        &client_config(&new),
    )));
    assert!(fresh.line().starts_with("HELLO "));
    // The old connection goes on.
    kept.send("PING x\n");
    assert_eq!(kept.line(), "PONG x");
}
