//! TLS for the load generator's clients (`--tls`): the rustls client side
//! that trusts the broker's certificate, and one connection's session
//! driven over a non-blocking socket.
//!
//! A [`Session`] sits between a connection's buffers and its socket, and
//! offers what the plain socket offers: [`Session::read`] gives decrypted
//! bytes (`Ok(0)` at the end, `WouldBlock` when the socket has nothing),
//! [`Session::write`] takes plaintext and writes records until the socket
//! would block. The worker keeps its model: edge-triggered readiness,
//! read and write until `WouldBlock`, ask for writable while bytes are
//! queued ([`Session::wants_write`] counts as queued).
//!
//! ```text
//! connect ─► ClientHello                         state Handshaking
//!        ◄── ServerHello … Finished              (read: records in, nothing out)
//!        ─► Finished                             handshake done: the door's
//!                                                first bytes follow (NAME, NICK, GET /ws)
//! run    ─► records of the SENDs a round wrote   (one record per write, up to 16 KiB)
//!        ◄── records of the broker's batches     decrypted in place of a plain read
//! ```
//!
//! Batching carries over: everything a sender writes in a round goes to
//! rustls in one call and out in one vectored write, so a round's SENDs
//! are one record, not one each. A read asks the socket for as much as
//! rustls takes at once (4 KiB or more) and decrypts it before the next
//! read; a short socket read means the socket is empty, as with a plain
//! one, and the read that would only say `WouldBlock` is skipped.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The name a certificate must be valid for, from the host of a
/// `HOST:PORT` as given (`localhost`, `127.0.0.1`, `[::1]`).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|e| format!("{host}: not a name a certificate can be for: {e}"))
}

/// The host part of `HOST:PORT` (`[::1]:7879` → `::1`).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// What every TLS connection of a run starts from: the client
/// configuration, trusting exactly the given certificates, and the name
/// the broker's certificate must carry.
#[derive(Debug, Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Client {
    /// Trusts the certificates in the PEM file `ca` (the broker's own,
    /// self-signed, or the authority that signed it) for `name`; the error
    /// names the file and says what is wrong with it.
    pub fn from_pem(ca: &Path, name: ServerName<'static>) -> Result<Client, String> {
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("cannot read --ca {}: {e}", ca.display()))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| format!("--ca {}: not a PEM certificate: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("--ca {}: no CERTIFICATE block in it", ca.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Each client is someone else connecting for the first time: a
        // full handshake, not one resumed from another client's ticket.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Client {
            config: Arc::new(config),
            name,
        })
    }

    /// The same trust for another name: a node of a cluster whose address
    /// is written with another host (the configuration is shared).
    pub fn for_name(&self, name: ServerName<'static>) -> Client {
        Client {
            config: Arc::clone(&self.config),
            name,
        }
    }

    /// A new session; its ClientHello waits in it for the socket.
    pub fn session(&self) -> Result<Session, rustls::Error> {
        let tls = ClientConnection::new(Arc::clone(&self.config), self.name.clone())?;
        Ok(Session {
            tls,
            drained: false,
        })
    }
}

/// One connection's TLS session. It holds no socket: each call is given
/// the connection's, so the worker keeps owning (and registering) it.
#[derive(Debug)]
pub struct Session {
    tls: ClientConnection,
    /// The last read emptied the socket (a socket read came back short)
    /// and left no plaintext behind.
    drained: bool,
}

/// A socket reader that notes whether a read filled what it was given: a
/// short read emptied the socket.
struct Probe<'a, S> {
    sock: &'a mut S,
    short: bool,
}

impl<S: Read> Read for Probe<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

impl Session {
    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Whether rustls holds records for the socket (the handshake's, or
    /// encrypted plaintext the socket did not take yet): output is queued.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// Whether the last [`Session::read`] left the socket and the session
    /// empty: the next read would only say `WouldBlock`.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Reads decrypted bytes into `buf` (not empty), as `Read::read` would
    /// from a plain socket: `Ok(0)` at the end of the stream (`close_notify`
    /// or the peer's FIN), `WouldBlock` when there is nothing more.
    /// Handshake records are taken on the way; afterwards the caller asks
    /// [`Session::wants_write`] and writes what they called for. A peer
    /// that breaks TLS (or a certificate that is not trusted) is
    /// `InvalidData`, after the alert is offered to the socket.
    /// `peer_closed`: the poller saw the peer's FIN, so reading goes on to
    /// the end even after a short read.
    pub fn read<S: Read + Write>(
        &mut self,
        sock: &mut S,
        buf: &mut [u8],
        peer_closed: bool,
    ) -> io::Result<usize> {
        let mut short = false;
        self.drained = false;
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => {
                    // Plaintext comes out whole up to `buf`'s size: a
                    // shorter read left none behind.
                    self.drained = short && n < buf.len();
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: the end all the same.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if short && !peer_closed {
                // Only part of a record came: the rest brings a new event.
                self.drained = true;
                return Err(ErrorKind::WouldBlock.into());
            }
            let mut probe = Probe { sock, short: false };
            let n = self.tls.read_tls(&mut probe)?;
            short = probe.short;
            if n == 0 {
                return Ok(0);
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Offer the alert rustls prepared, if the socket takes it.
                let _ = self.tls.write_tls(sock);
                return Err(io::Error::new(ErrorKind::InvalidData, e));
            }
        }
    }

    /// Encrypts as much of `data` as rustls takes and writes records until
    /// everything is out or the socket would block. Returns the plaintext
    /// bytes taken, as `Write::write` would (`WouldBlock` if none of a
    /// non-empty `data`); what the socket did not take stays in the
    /// session ([`Session::wants_write`]) for the next call, which may pass
    /// an empty `data` just to push it. Before the handshake is done
    /// rustls keeps the plaintext and sends it right after.
    pub fn write<S: Write>(&mut self, sock: &mut S, data: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        loop {
            if let Some(rest) = data.get(taken..).filter(|r| !r.is_empty()) {
                taken += self.tls.writer().write(rest)?;
            }
            if !self.tls.wants_write() {
                // All out, or rustls holds the rest until the handshake
                // is done (the plaintext it buffers is bounded).
                break;
            }
            match self.tls.write_tls(sock) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if taken == 0 && !data.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }
}

/// A certificate made for one run's in-process broker (`--tls` without an
/// address), in a directory of its own that goes away with it.
#[derive(Debug)]
pub struct RunCert {
    dir: PathBuf,
    /// `cert.pem`: the broker's `tls_cert`, and what the clients trust.
    pub cert: PathBuf,
    /// `key.pem`: the broker's `tls_key`, readable by its owner only.
    pub key: PathBuf,
}

impl RunCert {
    /// A fresh self-signed certificate for `localhost` and `127.0.0.1`
    /// (`broker::gen_cert`) in a new directory under the system's
    /// temporary directory.
    pub fn generate() -> Result<RunCert, String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "loadgen-tls-{}-{nanos:09}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let (cert, key) = broker::gen_cert(&dir)?;
        Ok(RunCert { dir, cert, key })
    }
}

impl Drop for RunCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{ServerConfig, ServerConnection};
    use std::collections::VecDeque;

    /// One direction of an in-memory non-blocking socket pair: reads give
    /// `WouldBlock` when it is empty, writes take at most `room` bytes a
    /// call and `WouldBlock` when that is 0, and `max_read` caps a read so
    /// records arrive cut anywhere.
    #[derive(Default)]
    struct Pipe {
        bytes: VecDeque<u8>,
        closed: bool,
    }

    /// The client's end: reads what the server wrote, writes to the server.
    struct End<'a> {
        from: &'a mut Pipe,
        to: &'a mut Pipe,
        max_read: usize,
        room: usize,
        reads: usize,
    }

    impl Read for End<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.from.bytes.is_empty() {
                if self.from.closed {
                    return Ok(0);
                }
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.max_read).min(self.from.bytes.len());
            for (b, x) in buf.iter_mut().zip(self.from.bytes.drain(..n)) {
                *b = x;
            }
            Ok(n)
        }
    }

    impl Write for End<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room);
            if n == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            self.to.bytes.extend(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn certs() -> RunCert {
        RunCert::generate().unwrap()
    }

    fn server(cert: &RunCert) -> ServerConnection {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&cert.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        ServerConnection::new(Arc::new(config)).unwrap()
    }

    fn client(cert: &RunCert) -> Session {
        Client::from_pem(&cert.cert, server_name("localhost").unwrap())
            .unwrap()
            .session()
            .unwrap()
    }

    /// The server side of the exchange: takes what the client wrote,
    /// answers, and queues `reply` once the handshake is done.
    fn serve(srv: &mut ServerConnection, c2s: &mut Pipe, s2c: &mut Pipe, got: &mut Vec<u8>) {
        let bytes: Vec<u8> = c2s.bytes.drain(..).collect();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            srv.read_tls(&mut rest).unwrap();
            srv.process_new_packets().unwrap();
            let _ = srv.reader().read_to_end(got);
        }
        while srv.wants_write() {
            let mut out = Vec::new();
            srv.write_tls(&mut out).unwrap();
            s2c.bytes.extend(out);
        }
    }

    /// Handshake and data both ways through the non-blocking calls alone,
    /// with the server's records cut into reads of every size from 1 byte
    /// up and the socket taking a few bytes at a time.
    #[test]
    fn handshake_and_data_over_a_nonblocking_socket() {
        const REPLY: &[u8] = b"MSG 1 lg-2 all 0 5\nhello\n";
        let cert = certs();
        for max_read in [1, 7, 100, 4096, usize::MAX] {
            let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
            let mut srv = server(&cert);
            let mut cli = client(&cert);
            let mut at_server = Vec::new();
            let mut at_client = Vec::new();
            let hello = b"NAME lg-1\n".repeat(50);
            let mut sent = 0;
            let mut buf = vec![0u8; 64 * 1024];
            let mut replied = false;
            for round in 0..10_000 {
                let mut end = End {
                    from: &mut s2c,
                    to: &mut c2s,
                    max_read,
                    room: 37,
                    reads: 0,
                };
                // Plaintext written while handshaking waits in the session.
                sent += cli.write(&mut end, &hello[sent..]).unwrap_or(0);
                loop {
                    match cli.read(&mut end, &mut buf, false) {
                        Ok(0) => panic!("end of stream"),
                        Ok(n) => at_client.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                while cli.wants_write() {
                    end.room = 37;
                    cli.write(&mut end, &[]).unwrap();
                }
                serve(&mut srv, &mut c2s, &mut s2c, &mut at_server);
                if !srv.is_handshaking() && !replied {
                    srv.writer().write_all(REPLY).unwrap();
                    replied = true;
                    serve(&mut srv, &mut c2s, &mut s2c, &mut at_server);
                }
                if at_server == hello && at_client.len() == REPLY.len() {
                    assert!(!cli.is_handshaking());
                    assert!(round > 0);
                    break;
                }
            }
            assert_eq!(at_server, hello, "max_read {max_read}");
            assert_eq!(at_client, REPLY, "max_read {max_read}");
        }
    }

    /// A short socket read marks the session drained, so the worker skips
    /// the read that would only say `WouldBlock`; with the peer's FIN seen
    /// it reads on to the end.
    #[test]
    fn a_short_read_drains_and_a_fin_is_the_end() {
        let cert = certs();
        let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
        let mut srv = server(&cert);
        let mut cli = client(&cert);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while cli.is_handshaking() || srv.is_handshaking() {
            let mut end = End {
                from: &mut s2c,
                to: &mut c2s,
                max_read: usize::MAX,
                room: usize::MAX,
                reads: 0,
            };
            cli.write(&mut end, &[]).unwrap();
            let _ = cli.read(&mut end, &mut buf, false);
            cli.write(&mut end, &[]).unwrap();
            serve(&mut srv, &mut c2s, &mut s2c, &mut got);
        }
        srv.writer().write_all(b"one\n").unwrap();
        serve(&mut srv, &mut c2s, &mut s2c, &mut got);
        let mut end = End {
            from: &mut s2c,
            to: &mut c2s,
            max_read: usize::MAX,
            room: usize::MAX,
            reads: 0,
        };
        // Whatever the handshake left (session tickets) and the data.
        let mut plain = Vec::new();
        while !cli.drained() || plain.is_empty() {
            let n = cli.read(&mut end, &mut buf, false).unwrap();
            plain.extend_from_slice(&buf[..n]);
        }
        assert_eq!(plain, b"one\n");
        let reads = end.reads;
        // Drained: a further read asks the socket once and says WouldBlock.
        let e = cli.read(&mut end, &mut buf, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert_eq!(end.reads, reads + 1);
        // The peer's FIN without close_notify: the end of the stream.
        end.from.closed = true;
        assert_eq!(cli.read(&mut end, &mut buf, true).unwrap(), 0);
    }

    /// A certificate the client was not told to trust fails the handshake
    /// with the reason; so do bytes that are not TLS.
    #[test]
    fn an_untrusted_certificate_or_garbage_is_invalid_data() {
        let (ours, theirs) = (certs(), certs());
        let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
        let mut srv = server(&theirs);
        let mut cli = client(&ours);
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = Vec::new();
        let err = loop {
            let mut end = End {
                from: &mut s2c,
                to: &mut c2s,
                max_read: usize::MAX,
                room: usize::MAX,
                reads: 0,
            };
            cli.write(&mut end, &[]).unwrap();
            match cli.read(&mut end, &mut buf, false) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => break e,
                Ok(n) => panic!("{n} bytes of plaintext from an untrusted server"),
            }
            serve(&mut srv, &mut c2s, &mut s2c, &mut got);
        };
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(err.to_string().contains("certificate"), "{err}");

        let mut cli = client(&ours);
        let mut s2c = Pipe::default();
        s2c.bytes.extend(b"HELLO chat 1 :welcome\n");
        let mut end = End {
            from: &mut s2c,
            to: &mut c2s,
            max_read: usize::MAX,
            room: usize::MAX,
            reads: 0,
        };
        cli.write(&mut end, &[]).unwrap();
        let err = cli.read(&mut end, &mut buf, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn names_and_hosts() {
        assert_eq!(host_of("127.0.0.1:7879"), "127.0.0.1");
        assert_eq!(host_of("localhost:7879"), "localhost");
        assert_eq!(host_of("[::1]:7879"), "::1");
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(server_name("not a name").is_err());
    }

    #[test]
    fn the_ca_file_is_checked() {
        let name = server_name("localhost").unwrap();
        let err = Client::from_pem(Path::new("/nonexistent/ca.pem"), name.clone()).unwrap_err();
        assert!(
            err.contains("cannot read --ca /nonexistent/ca.pem"),
            "{err}"
        );
        let cert = certs();
        // The key file holds no certificate.
        let err = Client::from_pem(&cert.key, name.clone()).unwrap_err();
        assert!(err.contains("no CERTIFICATE block"), "{err}");
        assert!(Client::from_pem(&cert.cert, name).is_ok());
        // The run's certificate goes away with it.
        let dir = cert.cert.parent().unwrap().to_path_buf();
        assert!(dir.exists());
        drop(cert);
        assert!(!dir.exists());
    }
}
