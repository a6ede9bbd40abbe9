//! The shared driver of the fuzz targets: each target decodes a whole
//! buffer frame by frame the way a reader would, with one of the two
//! decoders (`Request` for the broker's side, `Event` for a client's).
//!
//! Checked on every step (docs/protocol.md, section 1):
//! - no panic;
//! - `consumed` is > 0 and <= the bytes left;
//! - the answer depends only on the frame's own bytes: decoding exactly the
//!   consumed bytes gives the same answer, and so does decoding any longer
//!   buffer (a reader cut anywhere sees the same frames);
//! - `Incomplete` never holds more than one frame's worth of bytes past any
//!   leading blank lines (limits are checked before anything is buffered);
//! - a decoded frame, encoded again, decodes to the same frame.

/// Defines `mod driver` with `drive(data, limits)` for the decoder type
/// `$ty` (`Request` or `Event`). A macro rather than a generic function: the
/// frames borrow from the buffer they were decoded from, and the round trip
/// decodes a second, local buffer.
#[macro_export]
macro_rules! fuzz_driver {
    ($ty:ident) => {
        mod driver {
            use protocol::{Decoded, ErrorCode, Limits, $ty};

        pub fn drive(data: &[u8], limits: &Limits) {
            let mut pos = 0;
            while pos < data.len() {
                let rest = &data[pos..];
                let got = $ty::decode(rest, limits);
                match &got {
                    Decoded::Incomplete => {
                        let blanks = protocol::leading_blank_lines(rest);
                        assert!(
                            rest.len() - blanks <= limits.max_frame(),
                            "Incomplete with {} bytes buffered past blank lines",
                            rest.len() - blanks
                        );
                        // Every shorter prefix needs more bytes too.
                        for cut in [0, rest.len() / 2, rest.len().saturating_sub(1)] {
                            assert_eq!($ty::decode(&rest[..cut], limits), Decoded::Incomplete);
                        }
                        return;
                    }
                    Decoded::Frame { frame, consumed } => {
                        let consumed = *consumed;
                        assert!(consumed > 0 && consumed <= rest.len());
                        assert_eq!($ty::decode(&rest[..consumed], limits), got);
                        if consumed > 1 {
                            assert_eq!(
                                $ty::decode(&rest[..consumed - 1], limits),
                                Decoded::Incomplete
                            );
                        }
                        round_trip(frame, &rest[..consumed], limits);
                        pos += consumed;
                    }
                    Decoded::Invalid { error, consumed } => {
                        let consumed = *consumed;
                        assert!(consumed > 0 && consumed <= rest.len());
                        assert!(!matches!(error.code, ErrorCode::TooLong));
                        assert_eq!($ty::decode(&rest[..consumed], limits), got);
                        if consumed > 1 {
                            assert_eq!(
                                $ty::decode(&rest[..consumed - 1], limits),
                                Decoded::Incomplete
                            );
                        }
                        pos += consumed;
                    }
                    Decoded::Fatal(error) => {
                        assert!(matches!(
                            error.code,
                            ErrorCode::TooLong | ErrorCode::BadFrame
                        ));
                        return;
                    }
                }
            }
        }

        /// Canonical re-encoding decodes to the same frame. A CR inside a header is
        /// the one thing that can't survive: a field that ends in CR is re-read as
        /// the CR of a CR LF (and the encoder turns CR in `:<text>` into a space), so
        /// such frames are only re-decoded, not compared.
        pub fn round_trip(frame: &$ty<'_>, original: &[u8], limits: &Limits) {
            let mut out = Vec::new();
            frame.encode(&mut out);
            let again = $ty::decode(&out, limits);
            if header_has_cr(original) {
                return;
            }
            match again {
                Decoded::Frame {
                    frame: again,
                    consumed,
                } => {
                    assert_eq!(consumed, out.len());
                    assert_eq!(&again, frame);
                }
                other => panic!("re-encoded {frame:?} as {out:?}, which decodes to {other:?}"),
            }
        }

        pub fn header_has_cr(frame: &[u8]) -> bool {
            let header = &frame[protocol::leading_blank_lines(frame)..];
            let end = header
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(header.len());
            header[..end]
                .strip_suffix(b"\r")
                .unwrap_or(&header[..end])
                .contains(&b'\r')
        }
        }

        libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            driver::drive(data, &protocol::Limits::default());
            // Tiny limits reach the edges with short inputs.
            driver::drive(
                data,
                &protocol::Limits {
                    max_line: 16,
                    max_body: 24,
                    max_targets: 3,
                },
            );
        });
    };
}
