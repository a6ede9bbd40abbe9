//! Fuzzes the web door's codec (`protocol::web`) the way the broker drives
//! it: a request head, then WebSocket frames, then each text message as a
//! JSON request; and the JSON encoder with arbitrary texts.
//!
//! Checked:
//! - no panic anywhere;
//! - `http::parse`: a head's `consumed` is within the input and at most
//!   `MAX_HEAD`, and parsing exactly those bytes gives the same head;
//!   `Incomplete` only below `MAX_HEAD` bytes;
//! - `ws::decode`: `consumed` is > 0 and within the input, the payload is
//!   at most the limit and ends at `consumed`; one byte less is
//!   `Incomplete`; control frames are whole and at most 125 bytes;
//! - a JSON request that maps to a native request re-encodes (natively)
//!   and decodes back to the same request;
//! - `push_event` always writes one JSON object whose `text` is the body
//!   (with U+FFFD for bad UTF-8).

#![no_main]

use protocol::web::http::{self, Parsed, MAX_HEAD};
use protocol::web::ws::{self, WsDecoded};
use protocol::web::{push_msg, WebRequest};
use protocol::{Decoded, Kind, Limits, Request};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let rest = head(data);
    frames(rest);
    json(data);
});

fn head(data: &[u8]) -> &[u8] {
    match http::parse(data) {
        Parsed::Head(h) => {
            assert!(h.consumed <= data.len() && h.consumed <= MAX_HEAD);
            assert_eq!(http::parse(&data[..h.consumed]), Parsed::Head(h.clone()));
            &data[h.consumed..]
        }
        Parsed::Incomplete => {
            assert!(data.len() <= MAX_HEAD);
            data
        }
        Parsed::TooLarge | Parsed::Bad => data,
    }
}

fn frames(mut rest: &[u8]) {
    let max = 1000;
    while !rest.is_empty() {
        match ws::decode(rest, max) {
            WsDecoded::Frame {
                op,
                fin,
                payload,
                mask,
                consumed,
            } => {
                assert!(consumed > 0 && consumed <= rest.len());
                assert!(payload.len() <= max);
                assert_eq!(payload.as_ptr_range().end, rest[consumed..].as_ptr());
                if op.is_control() {
                    assert!(fin && payload.len() <= 125);
                }
                assert_eq!(ws::decode(&rest[..consumed - 1], max), WsDecoded::Incomplete);
                let mut plain = Vec::new();
                match mask {
                    Some(m) => ws::unmask_into(&mut plain, payload, m),
                    None => plain.extend_from_slice(payload),
                }
                json(&plain);
                rest = &rest[consumed..];
            }
            WsDecoded::Incomplete | WsDecoded::TooBig | WsDecoded::Bad(_) => return,
        }
    }
}

fn json(text: &[u8]) {
    let limits = Limits::default();
    if let Ok(req) = WebRequest::parse(text) {
        if let Ok(r) = req.request(&limits) {
            round_trip(&r, &limits);
        }
    }
    let mut out = Vec::new();
    push_msg(&mut out, 1, "n", Kind::All, 2, text);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["text"].as_str().unwrap(), String::from_utf8_lossy(text));
}

/// The native form of a request from the web decodes to the same request
/// (names and rooms are checked later, by the broker, on both doors).
fn round_trip(r: &Request<'_>, limits: &Limits) {
    let mut wire = Vec::new();
    r.encode(&mut wire);
    match Request::decode(&wire, limits) {
        Decoded::Frame { frame, consumed } => {
            assert_eq!(consumed, wire.len());
            assert_eq!(&frame, r);
        }
        // Fields the native wire can't carry (a name with a space, a
        // room with a comma) are refused there instead; never a panic.
        Decoded::Invalid { .. } | Decoded::Fatal(_) => {}
        Decoded::Incomplete => panic!("{r:?} encodes to an incomplete frame: {wire:?}"),
    }
}
