//! The web door (docs/web.md): HTTP pages, metrics and health, and the
//! WebSocket chat with native and IRC users, over real sockets.

use super::irc::Irc;
use protocol::web::ws::WsOp;
use serde_json::{json, Value};
use testkit::web::{get, http_raw, Got, WsPeer};
use testkit::{start_with, wait_for, Peer};

fn broker() -> broker::Broker {
    start_with(|_| {})
}

#[test]
fn the_page_health_and_errors_over_http() {
    let b = broker();
    let web = b.http_addr().unwrap();
    let page = get(web, "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .header("content-security-policy")
        .is_some_and(|c| c.contains("default-src 'self'")));
    assert!(page.text().contains("<html"));
    assert_eq!(
        page.header("content-length"),
        Some(page.body.len().to_string().as_str())
    );
    for (path, kind) in [("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let r = get(web, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(kind));
        assert!(!r.body.is_empty());
    }
    let health = get(web, "/healthz");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!(get(web, "/nope").status, 404);
    assert_eq!(get(web, "/index.html?x=1").status, 200);
    let post = http_raw(web, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // HEAD: the head of GET, without its body.
    let head = http_raw(web, b"HEAD /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("3"))
    );
    assert!(head.body.is_empty());
    // A head over 8 KiB: 431, whether or not it ever ends.
    let mut big = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    assert_eq!(http_raw(web, &big).status, 431);
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(http_raw(web, &big).status, 431);
    assert_eq!(http_raw(web, b"NAME alice\r\n\r\n").status, 400);
    // The WebSocket endpoint wants a WebSocket.
    let plain = get(web, "/ws");
    assert_eq!(plain.status, 426);
    assert_eq!(plain.header("sec-websocket-version"), Some("13"));
    // Every request was answered and its connection closed, counted.
    wait_for("the HTTP connections to close", || {
        b.stats().closed(broker::CloseReason::Served) == 12
    });
}

#[test]
fn web_and_native_users_chat_with_every_op() {
    let b = broker();
    let (web, native) = (b.http_addr().unwrap(), b.local_addr());
    let mut bob = Peer::named(native, "bob");
    let mut alice = WsPeer::named(web, "alice");
    bob.expect("JOINED alice");
    let mut carol = WsPeer::named(web, "carol");
    bob.expect("JOINED carol");
    assert_eq!(alice.next(), json!({"type":"joined","name":"carol"}));

    // list, with a ref (any JSON) copied onto the reply.
    alice.send(&json!({"op":"list","ref":{"n":[1,2]}}));
    assert_eq!(
        alice.next(),
        json!({"type":"users","count":3,"names":["alice","bob","carol"],"ref":{"n":[1,2]}})
    );

    // direct, web → native: ack with its ref; the native reader sees MSG.
    alice.send(&json!({"op":"send","to":"bob","text":"hi bob","ref":7}));
    let ack = alice.next();
    assert_eq!(
        (ack["type"].as_str(), ack["ref"].as_i64()),
        (Some("ack"), Some(7))
    );
    assert_eq!(
        (ack["queued"].as_u64(), &ack["missing"]),
        (Some(1), &json!([]))
    );
    let id = ack["id"].as_u64().unwrap();
    let m = bob.next_msg();
    assert_eq!(m.body_str(), "hi bob");
    assert_eq!(m.line, format!("MSG {id} alice direct {} 6", m.field(4)));
    // The native reader's receipt reaches the web sender.
    bob.send(&format!("RECV {id} alice\n"));
    assert_eq!(alice.next(), json!({"type":"rcpt","id":id,"by":"bob"}));

    // multi with a missing name, native → web, and the web reader's receipt.
    bob.send("SEND alice,carol,zed :two of you\n");
    let ack = bob.expect_prefix("ACK ");
    assert!(ack.ends_with(" 2 zed"), "{ack}");
    let id: u64 = ack.split(' ').nth(1).unwrap().parse().unwrap();
    for w in [&mut alice, &mut carol] {
        let m = w.next();
        assert_eq!(m["type"], "msg");
        assert_eq!(
            (m["id"].as_u64(), &m["from"], &m["kind"]),
            (Some(id), &json!("bob"), &json!("multi"))
        );
        assert_eq!(m["text"], "two of you");
        assert!(m["ts"].as_u64().unwrap() > 1_700_000_000_000);
    }
    carol.send(&json!({"op":"recv","id":id,"from":"bob"}));
    bob.expect(&format!("RCPT {id} carol"));

    // multi from the web, as a list, and everyone.
    alice.send(&json!({"op":"send","to":["bob","carol","nobody"],"text":"a\nb"}));
    let ack = alice.next();
    assert_eq!(
        (ack["queued"].as_u64(), &ack["missing"]),
        (Some(2), &json!(["nobody"]))
    );
    assert_eq!(bob.next_msg().body_str(), "a\nb");
    assert_eq!(carol.next()["text"], "a\nb");
    alice.send(&json!({"op":"send","to":"*","text":"hello all"}));
    assert_eq!(alice.next()["queued"], 2);
    let m = bob.next_msg();
    assert!(m.line.contains(" alice all "), "{}", m.line);
    assert_eq!(carol.next()["kind"], "all");

    // Rooms: join, the room's messages, list, rooms, part.
    alice.send(&json!({"op":"join","room":"#lobby"}));
    assert_eq!(
        alice.next(),
        json!({"type":"ok","op":"join","room":"#lobby","members":1})
    );
    bob.send("JOIN #Lobby\n");
    bob.expect("OK JOIN #lobby 2");
    assert_eq!(
        alice.next(),
        json!({"type":"joined","name":"bob","room":"#lobby"})
    );
    alice.send(&json!({"op":"send","to":"#lobby","text":"in the room"}));
    assert_eq!(alice.next()["queued"], 1);
    let m = bob.next_msg();
    assert!(m.line.contains(" alice #lobby "), "{}", m.line);
    bob.send("SEND #lobby :back at you\n");
    bob.expect_prefix("ACK ");
    let m = alice.next();
    assert_eq!(
        (&m["kind"], &m["text"]),
        (&json!("#lobby"), &json!("back at you"))
    );
    alice.send(&json!({"op":"list","room":"#lobby"}));
    assert_eq!(
        alice.next(),
        json!({"type":"users","count":2,"names":["alice","bob"],"room":"#lobby"})
    );
    alice.send(&json!({"op":"rooms"}));
    assert_eq!(alice.next(), json!({"type":"rooms","rooms":["#lobby"]}));
    carol.send(&json!({"op":"send","to":"#lobby","text":"x"}));
    assert_eq!(
        carol.next(),
        json!({"type":"error","code":"NOT_IN_ROOM","text":"you are not in that room","args":"#lobby"})
    );
    bob.send("PART #lobby\n");
    bob.expect("OK PART #lobby");
    assert_eq!(
        alice.next(),
        json!({"type":"parted","name":"bob","room":"#lobby"})
    );
    alice.send(&json!({"op":"part","room":"#lobby"}));
    assert_eq!(
        alice.next(),
        json!({"type":"ok","op":"part","room":"#lobby"})
    );

    // ping, help.
    alice.send(&json!({"op":"ping","token":"t1"}));
    assert_eq!(alice.next(), json!({"type":"pong","token":"t1"}));
    alice.send(&json!({"op":"help"}));
    assert_eq!(alice.next()["type"], "info");

    // quit: bye, a normal close, and the others see LEFT quit.
    carol.send(&json!({"op":"quit","reason":"lunch"}));
    assert_eq!(carol.next(), json!({"type":"bye"}));
    assert_eq!(carol.expect_close(), Some(1000));
    bob.expect("LEFT carol quit");
    assert_eq!(
        alice.next(),
        json!({"type":"left","name":"carol","reason":"quit"})
    );
}

#[test]
fn names_are_one_namespace_across_doors() {
    let b = broker();
    let (web, native) = (b.http_addr().unwrap(), b.local_addr());
    let _bob = Peer::named(native, "Bob");
    let mut w = WsPeer::connect(web);
    w.send(&json!({"op":"name","name":"bob"}));
    assert_eq!(w.next()["code"], "NAME_TAKEN");
    w.send(&json!({"op":"name","name":"all"}));
    assert_eq!(w.next()["code"], "BAD_NAME");
    w.send(&json!({"op":"send","to":"Bob","text":"before a name"}));
    assert_eq!(w.next()["code"], "NOT_REGISTERED");
    w.send(&json!({"op":"name","name":"web1"}));
    assert_eq!(w.next()["type"], "ok");
    let mut n = Peer::connect(native);
    n.send("NAME WEB1\n");
    n.expect_prefix("ERR NAME_TAKEN");
}

#[test]
fn bad_json_gets_an_error_and_the_connection_goes_on() {
    let b = broker();
    let web = b.http_addr().unwrap();
    let mut w = WsPeer::named(web, "alice");
    for bad in [
        "{",
        "[1,2]",
        "\"op\"",
        r#"{"op":5}"#,
        r#"{"op":"send","to":"bob"}"#,
    ] {
        w.send_text(bad);
        let e = w.next();
        assert_eq!(
            (&e["type"], &e["code"]),
            (&json!("error"), &json!("BAD_FRAME")),
            "{bad}"
        );
    }
    w.send(&json!({"op":"fly","ref":"r1"}));
    let e = w.next();
    assert_eq!(
        (&e["code"], &e["ref"]),
        (&json!("UNKNOWN_COMMAND"), &json!("r1"))
    );
    w.send(&json!({"op":"send","to":"nobody","text":"x","ref":2}));
    let e = w.next();
    assert_eq!(
        (&e["code"], &e["args"], &e["ref"]),
        (&json!("NO_SUCH_USER"), &json!("nobody"), &json!(2))
    );
    w.send_frame(WsOp::Binary, true, b"{\"op\":\"ping\"}");
    assert_eq!(w.next()["code"], "BAD_FRAME");
    // A message in fragments, with a ping between them.
    w.send_frame(WsOp::Text, false, b"{\"op\":");
    w.send_frame(WsOp::Ping, true, b"p");
    w.send_frame(WsOp::Continue, true, b"\"ping\"}");
    match w.frame() {
        Got::Other(WsOp::Pong, p) => assert_eq!(p, b"p"),
        other => panic!("expected a pong, got {other:?}"),
    }
    assert_eq!(w.next(), json!({"type":"pong"}));
    // Text over the body limit is an error; the connection goes on.
    w.send(&json!({"op":"send","to":"*","text":"x".repeat(65537)}));
    assert_eq!(w.next()["code"], "TOO_LONG");
    w.send(&json!({"op":"ping"}));
    assert_eq!(w.next()["type"], "pong");
}

#[test]
fn broken_frames_close_with_their_codes() {
    let b = broker();
    let (web, native) = (b.http_addr().unwrap(), b.local_addr());
    let mut bob = Peer::named(native, "bob");
    type Case<'a> = (&'a str, &'a dyn Fn(&mut WsPeer), u16);
    let cases: [Case<'_>; 4] = [
        (
            "oversize",
            &|w| w.send_frame(WsOp::Text, true, &vec![b' '; 65536 + 4097]),
            1009,
        ),
        (
            "unmasked",
            &|w| {
                use std::io::Write;
                w.stream.write_all(&[0x81, 2, b'{', b'}']).unwrap();
            },
            1002,
        ),
        (
            "not UTF-8",
            &|w| w.send_frame(WsOp::Text, true, b"\xff\xfe"),
            1007,
        ),
        (
            "continuation without a start",
            &|w| w.send_frame(WsOp::Continue, true, b"{}"),
            1002,
        ),
    ];
    for (i, (what, send, code)) in cases.iter().enumerate() {
        let name = format!("w{i}");
        let mut w = WsPeer::named(web, &name);
        bob.expect(&format!("JOINED {name}"));
        send(&mut w);
        match w.frame() {
            Got::Json(e) if e["type"] == "error" => {
                assert_eq!(w.expect_close(), Some(*code), "{what}")
            }
            Got::Close(c) => assert_eq!(c, Some(*code), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        bob.expect(&format!("LEFT {name} error"));
    }
    // The broker is fine: a new web user chats.
    let mut w = WsPeer::named(web, "after");
    w.send(&json!({"op":"send","to":"bob","text":"still here"}));
    assert_eq!(w.skip_until("ack")["queued"], 1);
}

#[test]
fn a_closed_tab_is_a_disconnect_and_bad_bytes_reach_the_web_as_replacement_characters() {
    let b = broker();
    let (web, native) = (b.http_addr().unwrap(), b.local_addr());
    let mut bob = Peer::named(native, "bob");
    let mut w = WsPeer::named(web, "alice");
    bob.expect("JOINED alice");
    bob.send_bytes(b"SEND alice 3\na\xffb\n");
    bob.expect_prefix("ACK ");
    assert_eq!(w.next()["text"], "a\u{fffd}b");
    // An HTML-looking text is just text in JSON (the page shows it as such).
    bob.send("SEND alice :<img src=x onerror=alert(1)>\n");
    bob.expect_prefix("ACK ");
    assert_eq!(w.next()["text"], "<img src=x onerror=alert(1)>");
    w.send_frame(WsOp::Close, true, &1001u16.to_be_bytes());
    assert_eq!(w.expect_close(), Some(1000));
    bob.expect("LEFT alice disconnect");
}

#[test]
fn web_and_irc_users_chat_directly_and_in_rooms() {
    let b = broker();
    let (web, irc) = (b.http_addr().unwrap(), b.irc_addr().unwrap());
    let mut i = Irc::registered(irc, "ian", "");
    let mut w = WsPeer::named(web, "wes");
    i.until(":wes!wes@chat JOIN #all");
    w.send(&json!({"op":"send","to":"ian","text":"hi ian"}));
    assert_eq!(w.next()["queued"], 1);
    i.until(":wes!wes@chat PRIVMSG ian :hi ian");
    i.send("PRIVMSG wes :hi wes");
    let m = w.next();
    assert_eq!(
        (&m["from"], &m["kind"], &m["text"]),
        (&json!("ian"), &json!("direct"), &json!("hi wes"))
    );
    i.send("JOIN #r");
    i.until(" 366 ian #r ");
    w.send(&json!({"op":"join","room":"#r"}));
    assert_eq!(w.next()["members"], 2);
    i.until(":wes!wes@chat JOIN #r");
    i.send("PRIVMSG #r :room talk");
    assert_eq!(w.next()["kind"], "#r");
    w.send(&json!({"op":"send","to":"#r","text":"line one\nline two"}));
    w.next();
    i.until(":wes!wes@chat PRIVMSG #r :line one");
    i.until(":wes!wes@chat PRIVMSG #r :line two");
    i.send("QUIT :bye");
    assert_eq!(
        w.next(),
        json!({"type":"left","name":"ian","reason":"quit"})
    );
}

#[test]
fn shutdown_reaches_web_users_after_their_messages() {
    let b = broker();
    let (web, native) = (b.http_addr().unwrap(), b.local_addr());
    let mut bob = Peer::named(native, "bob");
    let mut w = WsPeer::named(web, "alice");
    bob.expect("JOINED alice");
    bob.send("SEND alice :last words\n");
    bob.expect_prefix("ACK ");
    let handle = b.shutdown_handle();
    handle.trigger();
    assert_eq!(w.next()["text"], "last words");
    assert_eq!(
        w.next(),
        json!({"type":"shutdown","text":"server is shutting down"})
    );
    assert_eq!(w.expect_close(), Some(1001));
    drop(b);
}

/// The scrape as `name{labels}` → value.
fn scrape(addr: std::net::SocketAddr) -> std::collections::HashMap<String, f64> {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    parsed
        .samples
        .iter()
        .map(|s| {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let key = format!("{}{{{}}}", s.metric, labels.join(","));
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (key, v)
        })
        .collect()
}

#[test]
fn metrics_parse_and_move_when_messages_move() {
    let b = broker();
    let (web, native) = (b.http_addr().unwrap(), b.local_addr());
    let before = scrape(web);
    for name in [
        "chat_connections{door=native}",
        "chat_connections{door=irc}",
        "chat_users{}",
        "chat_rooms{}",
        "chat_messages_total{kind=direct}",
        "chat_deliveries_total{}",
        "chat_closed_total{reason=slow}",
        "chat_errors_total{code=RATE_LIMITED}",
        "chat_queue_bytes{}",
        "chat_stored_messages{}",
        "chat_uptime_seconds{}",
    ] {
        assert!(before.contains_key(name), "{name} missing: {before:?}");
    }
    let mut bob = Peer::named(native, "bob");
    let mut w = WsPeer::named(web, "alice");
    bob.expect("JOINED alice");
    w.send(&json!({"op":"join","room":"#m"}));
    w.next();
    for _ in 0..3 {
        w.send(&json!({"op":"send","to":"bob","text":"x"}));
        w.next();
    }
    w.send(&json!({"op":"send","to":"*","text":"y"}));
    w.next();
    w.send(&json!({"op":"send","to":"zed","text":"z"}));
    w.next();
    let after = scrape(web);
    let moved = |k: &str| after[k] - before.get(k).copied().unwrap_or(0.0);
    assert_eq!(moved("chat_messages_total{kind=direct}"), 3.0);
    assert_eq!(moved("chat_messages_total{kind=all}"), 1.0);
    assert_eq!(moved("chat_deliveries_total{}"), 4.0);
    assert_eq!(moved("chat_errors_total{code=NO_SUCH_USER}"), 1.0);
    assert_eq!(after["chat_users{}"], 2.0);
    assert_eq!(after["chat_rooms{}"], 1.0);
    assert_eq!(after["chat_connections{door=native}"], 1.0);
    // The web user, and the scrape's own connection.
    assert!(after["chat_connections{door=web}"] >= 1.0);
    drop(bob);
    wait_for("bob's close to be counted", || {
        scrape(web)["chat_closed_total{reason=disconnect}"] >= 1.0
    });
}

#[test]
fn a_broker_without_a_web_door() {
    let b = start_with(|c| c.http_listen = String::new());
    assert_eq!(b.http_addr(), None);
    let _ = Value::Null;
}

#[test]
fn a_web_reader_that_does_not_read_is_dropped_with_1008() {
    let b = start_with(|c| {
        c.queue_bytes = 64 * 1024;
        c.slow_after_secs = 1;
        c.rate_per_sec = 0;
        c.rate_bytes_per_sec = 0;
    });
    let (web, native) = (b.http_addr().unwrap(), b.local_addr());
    let mut slow = WsPeer::named(web, "slow");
    let mut bob = Peer::named(native, "bob");
    // slow reads nothing from here on; bob sends until it is dropped.
    super::abuse::send_until_dropped(&mut bob, "slow", &"x".repeat(30_000));
    loop {
        match slow.frame() {
            Got::Json(v) if v["type"] == "msg" || v["type"] == "joined" => {}
            Got::Json(v) => {
                assert_eq!(v["code"], "SLOW_CONSUMER", "{v}");
                break;
            }
            other => panic!("expected the error before the close: {other:?}"),
        }
    }
    assert_eq!(slow.expect_close(), Some(1008));
}

#[test]
fn fragments_count_against_the_rate() {
    let b = start_with(|c| {
        c.rate_per_sec = 1;
        c.rate_burst = 5;
        c.rate_kick_after = 3;
    });
    let mut w = WsPeer::named(b.http_addr().unwrap(), "frag");
    w.send_frame(WsOp::Text, false, b"{");
    for _ in 0..50 {
        w.send_frame(WsOp::Continue, false, b" ");
    }
    let e = w.skip_until("error");
    assert_eq!(e["code"], "RATE_LIMITED");
}
