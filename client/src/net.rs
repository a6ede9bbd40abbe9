//! The only code that touches the socket: connecting (over TLS with
//! `--tls`), reading broker frames with the shared codec, and writing
//! requests (one lock, so a receipt sent by the link thread never
//! interleaves with a message typed meanwhile).
//!
//! **TLS and two threads.** The link thread reads while the main thread
//! writes, and a rustls session is one state machine for both directions.
//! So the session sits behind a small lock that neither side holds while
//! it waits on the network: the reader blocks on the TCP socket
//! *unlocked*, then locks to hand the bytes to rustls and take the
//! plaintext out; the writer locks to encrypt a request and take the
//! records out, and writes them to the socket unlocked (a second lock
//! keeps the records in order). So a write stalled by a broker that reads
//! slowly never stops us from reading what it sends. The handshake is
//! done in [`Dialer::connect`], before the threads share the connection,
//! so a certificate that doesn't verify is an error at connect time, in
//! words ([`ConnectError::Tls`]).
//!
//! **Whose certificates.** `--ca FILE` trusts exactly the certificates in
//! that PEM file (the broker's own from `broker gen-cert`, or a private
//! CA). Without it the client trusts the system's roots, read with
//! `rustls-native-certs` rather than compiled in from `webpki-roots`: a
//! chat broker is often run inside an organisation whose own CA is
//! installed on its machines, and the system store (with `SSL_CERT_FILE`
//! and `SSL_CERT_DIR`) is where that CA is, and where root updates and
//! removals arrive without rebuilding the client.

use protocol::{Decoded, Event, Limits, ProtoError, Request};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long to try to reach the broker before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// How to reach the broker: its address and, with `--tls`, whom to trust.
/// Made once at start; every reconnect dials the same way.
#[derive(Clone)]
pub struct Dialer {
    addr: String,
    tls: Option<Tls>,
}

#[derive(Clone)]
struct Tls {
    config: Arc<ClientConfig>,
    /// The host of the address, checked against the certificate.
    server: ServerName<'static>,
}

/// Why no connection could be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The broker could not be reached.
    Io(io::Error),
    /// The TLS handshake failed; why, in one sentence for people.
    Tls(String),
}

impl Dialer {
    /// Plain TCP to `addr`.
    pub fn plain(addr: &str) -> Dialer {
        Dialer {
            addr: addr.to_string(),
            tls: None,
        }
    }

    /// TLS to `addr`, trusting the certificates in the PEM file `ca`, or
    /// the system's roots. The error is a sentence naming the problem.
    pub fn tls(addr: &str, ca: Option<&Path>) -> Result<Dialer, String> {
        let host = host_of(addr);
        let server = ServerName::try_from(host.to_string()).map_err(|_| {
            format!("--tls: {host:?} (the host of --addr) is not a host name or an IP address")
        })?;
        let roots = match ca {
            Some(file) => roots_from(file)?,
            None => system_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("--tls: cannot set up TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Dialer {
            addr: addr.to_string(),
            tls: Some(Tls {
                config: Arc::new(config),
                server,
            }),
        })
    }

    /// The broker's address, as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects (and, with TLS, completes the handshake): the reader and
    /// the stream to write on.
    pub fn connect(&self) -> Result<(Reader, Stream), ConnectError> {
        let mut tcp = connect(&self.addr).map_err(ConnectError::Io)?;
        let inner = match &self.tls {
            None => Inner::Plain(tcp),
            Some(tls) => {
                let mut conn = ClientConnection::new(Arc::clone(&tls.config), tls.server.clone())
                    .map_err(|e| ConnectError::Tls(format!("cannot start TLS: {e}")))?;
                let handshake = |conn: &mut ClientConnection, tcp: &mut TcpStream| {
                    tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
                    while conn.is_handshaking() {
                        conn.complete_io(tcp)?;
                    }
                    tcp.set_read_timeout(None)
                };
                handshake(&mut conn, &mut tcp)
                    .map_err(|e| ConnectError::Tls(handshake_failure(&e, host_of(&self.addr))))?;
                Inner::Tls(Box::new(TlsStream {
                    tcp,
                    session: Mutex::new(conn),
                    order: Mutex::new(()),
                }))
            }
        };
        let stream = Stream(Arc::new(inner));
        Ok((Reader::new(stream.clone()), stream))
    }
}

/// The host part of `host:port` (`[::1]:7879` gives `::1`).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The certificates in the PEM file `file`, as trust anchors.
fn roots_from(file: &Path) -> Result<RootCertStore, String> {
    let shown = file.display();
    let bad = |e: &dyn std::fmt::Display| format!("--ca {shown}: {e}");
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(file).map_err(|e| match e {
        rustls::pki_types::pem::Error::Io(e) => bad(&e),
        e => bad(&format!("not a PEM file ({e:?})")),
    })?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(&format!("not a PEM file ({e:?})")))?;
        roots
            .add(cert)
            .map_err(|e| bad(&format!("a certificate in it can't be used: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(
            &"no certificate in it (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(roots)
}

/// The system's trusted roots (see the module docs for why these).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(e) => format!(" ({e})"),
            None => String::new(),
        };
        return Err(format!(
            "--tls: this system has no trusted root certificates{why}; give the broker's certificate with --ca FILE"
        ));
    }
    Ok(roots)
}

/// A failed handshake in one sentence: what is wrong and what to do.
fn handshake_failure(e: &io::Error, host: &str) -> String {
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "the server's certificate is not signed by anyone this client trusts; if it is the broker's own (broker gen-cert), pass it with --ca FILE".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("the server's certificate is not made out to {host}; use the host name it is for in --addr")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (is this machine's clock right?)".to_string()
            }
            other => format!("the server's certificate was refused: {other:?}"),
        },
        Some(
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. },
        ) => "the server did not answer in TLS; is this its plain port? (leave out --tls there)"
            .to_string(),
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the server refused the TLS handshake ({alert:?})")
        }
        Some(other) => format!("the TLS handshake failed: {other}"),
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => {
                "the server closed the connection during the TLS handshake; is this its TLS port?"
                    .to_string()
            }
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
                "no TLS answer within {} s; is this its TLS port?",
                HANDSHAKE_TIMEOUT.as_secs()
            ),
            _ => format!("the TLS handshake failed: {e}"),
        },
    }
}

/// One connection to the broker, plain or TLS; cheap to clone, and shared
/// by the [`Reader`] (the link thread) and the [`Writer`] (both threads).
#[derive(Clone)]
pub struct Stream(Arc<Inner>);

enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// A TLS connection shared by two threads (see the module docs).
struct TlsStream {
    tcp: TcpStream,
    /// Locked only to feed the session bytes, take plaintext out or put
    /// plaintext in and take its records: never across a blocking read or
    /// write.
    session: Mutex<ClientConnection>,
    /// Held from taking records out of the session until they are on the
    /// socket, so records leave in the order they were made (each carries
    /// its sequence number). Taken before `session`, never after.
    order: Mutex<()>,
}

impl TlsStream {
    fn session(&self) -> MutexGuard<'_, ClientConnection> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Has the session take `plain` (if any) and writes out every record
    /// it has ready, the socket written without the session locked.
    fn send(&self, plain: &[u8]) -> io::Result<()> {
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let mut rest = plain;
        loop {
            let mut records = Vec::new();
            let took = {
                let mut session = self.session();
                // rustls takes what fits in its buffer; taking the records
                // out makes room for the rest.
                let took = match rest.is_empty() {
                    true => 0,
                    false => session.writer().write(rest)?,
                };
                while session.wants_write() {
                    session.write_tls(&mut records)?;
                }
                took
            };
            rest = rest.get(took..).unwrap_or_default();
            let mut tcp = &self.tcp;
            tcp.write_all(&records)?;
            if rest.is_empty() {
                return Ok(());
            }
            if took == 0 && records.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the TLS session takes no more data",
                ));
            }
        }
    }

    /// Reads plaintext into `out`; 0 when the broker has closed. `raw`
    /// holds what was read off the socket and not yet given to rustls.
    fn read(&self, raw: &mut Vec<u8>, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session().reader().read(out) {
                // 0: the broker said close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if raw.is_empty() {
                // Nothing buffered: wait for the network, the session
                // unlocked.
                let mut chunk = [0u8; 16 * 1024];
                let mut tcp = &self.tcp;
                let n = tcp.read(&mut chunk)?;
                if n == 0 {
                    // Closed without close_notify: closed all the same.
                    return Ok(0);
                }
                raw.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
            let (used, processed, answer) = {
                let mut session = self.session();
                let mut unread = raw.as_slice();
                let used = session.read_tls(&mut unread)?;
                let processed = session.process_new_packets();
                (used, processed, session.wants_write())
            };
            raw.drain(..used.min(raw.len()));
            // An alert, or an answer to the broker's post-handshake
            // messages (a key update).
            if answer {
                let _ = self.send(&[]);
            }
            processed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if used == 0 {
                // rustls takes nothing more (after close_notify).
                return Ok(0);
            }
        }
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match &*self.0 {
            Inner::Plain(tcp) => tcp,
            Inner::Tls(tls) => &tls.tcp,
        }
    }

    /// Writes all of `bytes` (encrypted with TLS).
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match &*self.0 {
            Inner::Plain(tcp) => {
                let mut tcp = tcp;
                tcp.write_all(bytes)
            }
            Inner::Tls(tls) => tls.send(bytes),
        }
    }

    /// Reads plaintext into `out`; 0 when the broker has closed.
    fn read(&self, raw: &mut Vec<u8>, out: &mut [u8]) -> io::Result<usize> {
        match &*self.0 {
            Inner::Plain(tcp) => {
                let mut tcp = tcp;
                tcp.read(out)
            }
            Inner::Tls(tls) => tls.read(raw, out),
        }
    }

    /// Closes our sending side (after TLS's close_notify): the broker sees
    /// end of input.
    fn close(&self) {
        if let Inner::Tls(tls) = &*self.0 {
            tls.session().send_close_notify();
            let _ = tls.send(&[]);
        }
        let _ = self.tcp().shutdown(Shutdown::Write);
    }

    /// Ends the connection both ways; a blocked read returns.
    fn disconnect(&self) {
        let _ = self.tcp().shutdown(Shutdown::Both);
    }
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

/// Reads broker frames from a connection, one at a time.
pub struct Reader {
    stream: Stream,
    /// TLS records read from the socket, not yet handed to rustls.
    raw: Vec<u8>,
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out.
    pos: usize,
    /// Bytes of the frame handed out last, dropped on the next call.
    last: usize,
}

impl Reader {
    /// A reader on the connection.
    pub fn new(stream: Stream) -> Reader {
        Reader {
            stream,
            raw: Vec::new(),
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
            match self.stream.read(&mut self.raw, &mut chunk) {
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
    stream: Arc<Mutex<Option<Stream>>>,
}

impl Writer {
    /// A writer on the connection.
    pub fn new(stream: Stream) -> Writer {
        Writer {
            stream: Arc::new(Mutex::new(Some(stream))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Stream>> {
        self.stream.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encodes and writes one request (bodies in counted form).
    pub fn send(&self, request: &Request<'_>) -> io::Result<()> {
        let mut out = Vec::with_capacity(64);
        request.encode(&mut out);
        match self.lock().as_ref() {
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
            stream.close();
        }
    }

    /// Drops the connection: later writes fail until [`Writer::install`].
    pub fn disconnect(&self) {
        if let Some(stream) = self.lock().take() {
            stream.disconnect();
        }
    }

    /// Writes to `stream` from now on (a new connection, signed in).
    pub fn install(&self, stream: Stream) {
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
        let (mut r, _stream) = Dialer::plain(&addr.to_string()).connect().unwrap();
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

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        assert_eq!(host_of("127.0.0.1:7879"), "127.0.0.1");
        assert_eq!(host_of("localhost:7879"), "localhost");
        assert_eq!(host_of("[::1]:7879"), "::1");
        assert_eq!(host_of("chat.example.org:7879"), "chat.example.org");
        assert!(
            Dialer::tls("127.0.0.1:1", Some(Path::new("/nonexistent/ca.pem")))
                .is_err_and(|e| e.starts_with("--ca /nonexistent/ca.pem: "))
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_named() {
        let file = std::env::temp_dir().join(format!("client-ca-{}.pem", std::process::id()));
        std::fs::write(&file, "not a certificate\n").unwrap();
        let e = Dialer::tls("127.0.0.1:1", Some(&file)).err().unwrap();
        assert!(e.contains("no certificate in it"), "{e}");
        let _ = std::fs::remove_file(&file);
    }
}
