//! The only code that touches the socket: connecting, reading broker frames
//! with the shared codec, and writing requests (one lock, so a receipt sent
//! by the link thread never interleaves with a message typed meanwhile).

use protocol::{Decoded, Event, Limits, ProtoError, Request};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long to try to reach the broker before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the client accepts from the broker. Larger than the broker's own
/// input limits: a `USERS` line lists everyone online (10 000 names of up
/// to 32 characters is 330 kB), and the broker may be configured for
/// bodies larger than the default.
pub const LIMITS: Limits = Limits {
    max_line: 1 << 20,
    max_body: 16 << 20,
    max_targets: 100,
};

/// The most bytes of message text we send: the broker's default body limit.
/// Over it the broker would close the connection (`TOO_LONG`).
pub const MAX_TEXT: usize = 65_536;
/// The longest header line the broker accepts by default.
pub const MAX_LINE: usize = 1024;

/// Connects to `addr` (`host:port`), trying each address it resolves to.
pub fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                // Chat lines are small and should leave at once.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Why no event could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The broker closed the connection.
    Closed,
    /// The socket failed.
    Io(io::Error),
    /// The stream can't be trusted any more (a frame over our limits).
    Fatal(ProtoError),
    /// One frame we don't understand was skipped; reading can go on.
    Skipped(ProtoError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => f.write_str("the server closed the connection"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Fatal(e) => write!(f, "unreadable data from the server: {}", e.reason),
            ReadError::Skipped(e) => write!(f, "skipped a frame from the server: {}", e.reason),
        }
    }
}

/// Reads broker frames from a socket, one at a time.
pub struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out.
    pos: usize,
    /// Bytes of the frame handed out last, dropped on the next call.
    last: usize,
}

impl Reader {
    /// A reader on (a clone of) the connection.
    pub fn new(stream: TcpStream) -> Reader {
        Reader {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            pos: 0,
            last: 0,
        }
    }

    /// Blocks until the next frame, which borrows the reader's buffer.
    pub fn next_event(&mut self) -> Result<Event<'_>, ReadError> {
        self.pos = self.pos.saturating_add(self.last);
        self.last = 0;
        // First find a whole frame, then decode it again to hand it out: a
        // borrow returned from inside the read loop would pin the buffer.
        loop {
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            match Event::decode(rest, &LIMITS) {
                Decoded::Frame { consumed, .. } => {
                    self.last = consumed;
                    break;
                }
                Decoded::Invalid { error, consumed } => {
                    self.pos = self.pos.saturating_add(consumed);
                    return Err(ReadError::Skipped(error));
                }
                Decoded::Fatal(e) => return Err(ReadError::Fatal(e)),
                Decoded::Incomplete => self.fill()?,
            }
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match Event::decode(rest, &LIMITS) {
            Decoded::Frame { frame, .. } => Ok(frame),
            _ => Err(ReadError::Closed),
        }
    }

    /// Reads more bytes, first dropping the ones already used.
    fn fill(&mut self) -> Result<(), ReadError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos.min(self.buf.len()));
            self.pos = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    self.buf
                        .extend_from_slice(chunk.get(..n).unwrap_or_default());
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// Writes requests; cheap to clone and share between threads. The
/// connection inside can be dropped and replaced (see [`crate::link`]), so
/// every clone writes to the current connection, and a write while there is
/// none fails with [`io::ErrorKind::NotConnected`].
#[derive(Clone)]
pub struct Writer {
    stream: Arc<Mutex<Option<TcpStream>>>,
}

impl Writer {
    /// A writer on the connection.
    pub fn new(stream: TcpStream) -> Writer {
        Writer {
            stream: Arc::new(Mutex::new(Some(stream))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<TcpStream>> {
        self.stream.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encodes and writes one request (bodies in counted form).
    pub fn send(&self, request: &Request<'_>) -> io::Result<()> {
        let mut out = Vec::with_capacity(64);
        request.encode(&mut out);
        match self.lock().as_mut() {
            Some(stream) => stream.write_all(&out),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "not connected to the server",
            )),
        }
    }

    /// Closes our sending side: the broker sees end of input.
    pub fn close(&self) {
        if let Some(stream) = self.lock().as_ref() {
            let _ = stream.shutdown(Shutdown::Write);
        }
    }

    /// Drops the connection: later writes fail until [`Writer::install`].
    pub fn disconnect(&self) {
        if let Some(stream) = self.lock().take() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Writes to `stream` from now on (a new connection, signed in).
    pub fn install(&self, stream: TcpStream) {
        *self.lock() = Some(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn reads_frames_split_anywhere_and_skips_bad_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let wire: &[u8] = b"HELLO chat 1 :hi\nBOGUS x\nMSG 1 bob direct 5 3\na\nb\nBYE\n";
            for byte in wire {
                s.write_all(&[*byte]).unwrap();
            }
        });
        let stream = connect(&addr.to_string()).unwrap();
        let mut r = Reader::new(stream);
        assert!(matches!(
            r.next_event(),
            Ok(Event::Hello { server: "chat", .. })
        ));
        assert!(matches!(r.next_event(), Err(ReadError::Skipped(_))));
        match r.next_event() {
            Ok(Event::Msg { id: 1, body, .. }) => assert_eq!(body, b"a\nb"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.next_event(), Ok(Event::Bye)));
        assert!(matches!(r.next_event(), Err(ReadError::Closed)));
        server.join().unwrap();
    }
}
