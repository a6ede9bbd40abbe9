//! WebSocket framing (RFC 6455) over a byte buffer: headers are parsed and
//! written by `tungstenite`'s frame types; this module adds the limits and
//! the rules a server applies to what a browser sends.

use std::io::Cursor;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsOp {
    /// A text message (or its first fragment).
    Text,
    /// A binary message (or its first fragment).
    Binary,
    /// A later fragment of a message.
    Continue,
    /// The peer is closing.
    Close,
    /// Asks for a `Pong`.
    Ping,
    /// Answers a `Ping`.
    Pong,
}

impl WsOp {
    fn from_opcode(op: OpCode) -> Option<WsOp> {
        Some(match op {
            OpCode::Data(Data::Text) => WsOp::Text,
            OpCode::Data(Data::Binary) => WsOp::Binary,
            OpCode::Data(Data::Continue) => WsOp::Continue,
            OpCode::Control(Control::Close) => WsOp::Close,
            OpCode::Control(Control::Ping) => WsOp::Ping,
            OpCode::Control(Control::Pong) => WsOp::Pong,
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => return None,
        })
    }

    fn opcode(self) -> OpCode {
        match self {
            WsOp::Text => OpCode::Data(Data::Text),
            WsOp::Binary => OpCode::Data(Data::Binary),
            WsOp::Continue => OpCode::Data(Data::Continue),
            WsOp::Close => OpCode::Control(Control::Close),
            WsOp::Ping => OpCode::Control(Control::Ping),
            WsOp::Pong => OpCode::Control(Control::Pong),
        }
    }

    /// True for `Close`, `Ping` and `Pong`.
    pub fn is_control(self) -> bool {
        matches!(self, WsOp::Close | WsOp::Ping | WsOp::Pong)
    }
}

/// Close codes the broker sends (RFC 6455, 7.4.1).
pub mod close {
    /// Normal closure (after `quit`).
    pub const NORMAL: u16 = 1000;
    /// The broker is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the framing rules.
    pub const PROTOCOL: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const BAD_DATA: u16 = 1007;
    /// Closed by policy: flooding, not reading, a timeout.
    pub const POLICY: u16 = 1008;
    /// A message over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The broker is full; try later.
    pub const TRY_LATER: u16 = 1013;
}

/// The result of decoding one frame from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum WsDecoded<'a> {
    /// More bytes are needed.
    Incomplete,
    /// One whole frame.
    Frame {
        /// Its kind.
        op: WsOp,
        /// The last frame of its message.
        fin: bool,
        /// The payload as sent (still masked if `mask` is set).
        payload: &'a [u8],
        /// The client's mask, if the frame was masked.
        mask: Option<[u8; 4]>,
        /// Bytes the frame took.
        consumed: usize,
    },
    /// The frame's payload is over the limit (close with 1009); nothing
    /// of it needs to be read.
    TooBig,
    /// The bytes break the framing rules (close with 1002).
    Bad(&'static str),
}

/// Decodes one frame from the front of `buf`, allowing payloads of up to
/// `max_payload` bytes. Reserved bits and opcodes, and control frames that
/// are fragmented or over 125 bytes, are `Bad`.
pub fn decode(buf: &[u8], max_payload: usize) -> WsDecoded<'_> {
    let mut cursor = Cursor::new(buf);
    let (header, len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(found)) => found,
        Ok(None) => return WsDecoded::Incomplete,
        Err(_) => return WsDecoded::Bad("reserved opcode"),
    };
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return WsDecoded::Bad("reserved bits set (no extension was agreed)");
    }
    let Some(op) = WsOp::from_opcode(header.opcode) else {
        return WsDecoded::Bad("reserved opcode");
    };
    if op.is_control() && (!header.is_final || len > 125) {
        return WsDecoded::Bad("control frames are short and whole");
    }
    if len > max_payload as u64 {
        return WsDecoded::TooBig;
    }
    let start = cursor.position() as usize;
    // `len <= max_payload`, a usize: no overflow.
    let end = start.saturating_add(len as usize);
    match buf.get(start..end) {
        Some(payload) => WsDecoded::Frame {
            op,
            fin: header.is_final,
            payload,
            mask: header.mask,
            consumed: end,
        },
        None => WsDecoded::Incomplete,
    }
}

/// Appends `payload` to `out`, unmasked with `mask`.
pub fn unmask_into(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    out.extend(
        payload
            .iter()
            .zip(mask.iter().cycle())
            .map(|(byte, key)| byte ^ key),
    );
}

/// Appends one whole, unmasked frame (the server's form).
pub fn push_frame(out: &mut Vec<u8>, op: WsOp, payload: &[u8]) {
    let header = FrameHeader {
        is_final: true,
        opcode: op.opcode(),
        ..FrameHeader::default()
    };
    // Writing to a Vec can't fail.
    let _ = header.format(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// Appends a masked frame (the client's form), for tests and tools.
pub fn push_client_frame(out: &mut Vec<u8>, op: WsOp, fin: bool, payload: &[u8], mask: [u8; 4]) {
    let header = FrameHeader {
        is_final: fin,
        opcode: op.opcode(),
        mask: Some(mask),
        ..FrameHeader::default()
    };
    let _ = header.format(payload.len() as u64, out);
    unmask_into(out, payload, mask);
}

/// Appends a `Close` frame with `code` and a reason (cut to fit the 125
/// bytes a control frame may carry, at a character boundary).
pub fn push_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes().get(..cut).unwrap_or_default());
    push_frame(out, WsOp::Close, &payload);
}

/// The close code at the front of a `Close` payload, if any.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    match payload {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn one(buf: &[u8]) -> (WsOp, bool, Vec<u8>, usize) {
        match decode(buf, 1 << 16) {
            WsDecoded::Frame {
                op,
                fin,
                payload,
                mask,
                consumed,
            } => {
                let mut plain = Vec::new();
                match mask {
                    Some(m) => unmask_into(&mut plain, payload, m),
                    None => plain.extend_from_slice(payload),
                }
                (op, fin, plain, consumed)
            }
            other => panic!("not a frame: {other:?}"),
        }
    }

    #[test]
    fn masked_round_trip_in_every_length_form() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = Vec::new();
            push_client_frame(&mut buf, WsOp::Text, true, &payload, [1, 2, 3, 4]);
            let (op, fin, plain, consumed) = one(&buf);
            assert_eq!((op, fin, consumed), (WsOp::Text, true, buf.len()));
            assert_eq!(plain, payload);
            // Every proper prefix is incomplete.
            for cut in [0, 1, buf.len() / 2, buf.len() - 1] {
                if cut < buf.len() {
                    assert_eq!(decode(&buf[..cut], 1 << 20), WsDecoded::Incomplete);
                }
            }
        }
    }

    #[test]
    fn server_frames_are_unmasked() {
        let mut buf = Vec::new();
        push_frame(&mut buf, WsOp::Text, b"{}");
        assert_eq!(buf, [0x81, 2, b'{', b'}']);
        let mut close = Vec::new();
        push_close(&mut close, close::TOO_BIG, "too big");
        let (op, _, payload, _) = one(&close);
        assert_eq!(op, WsOp::Close);
        assert_eq!(close_code(&payload), Some(1009));
        assert_eq!(&payload[2..], b"too big");
    }

    #[test]
    fn limits_and_rules() {
        // Over the limit is known from the header alone.
        let mut buf = Vec::new();
        push_client_frame(&mut buf, WsOp::Text, true, &[b'x'; 200], [0; 4]);
        assert_eq!(decode(&buf[..8], 100), WsDecoded::TooBig);
        // A fragmented ping, a long ping, reserved bits, reserved opcodes.
        let mut ping = Vec::new();
        push_client_frame(&mut ping, WsOp::Ping, false, b"", [0; 4]);
        assert!(matches!(decode(&ping, 100), WsDecoded::Bad(_)));
        let mut long = Vec::new();
        push_client_frame(&mut long, WsOp::Ping, true, &[0; 126], [0; 4]);
        assert!(matches!(decode(&long, 1000), WsDecoded::Bad(_)));
        assert!(matches!(
            decode(&[0xC1, 0x80, 0, 0, 0, 0], 100),
            WsDecoded::Bad(_)
        ));
        assert!(matches!(
            decode(&[0x83, 0x80, 0, 0, 0, 0], 100),
            WsDecoded::Bad(_)
        ));
        // A close reason is cut to fit, at a character boundary.
        let mut c = Vec::new();
        push_close(&mut c, 1000, &"é".repeat(100));
        let (_, _, payload, _) = one(&c);
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
