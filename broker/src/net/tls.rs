//! TLS on every door, with rustls: the certificate files, the server
//! configuration, and a connection's TLS session, which its worker (reads,
//! the handshake) and its writer (writes) share under a lock.
//!
//! TLS sits below the doors: a TLS listener's connections are the same
//! native, IRC or web connections, with bytes decrypted before the door's
//! codec sees them and encrypted after its frames are queued. Fan-out still
//! shares one encoded frame among recipients; only the encryption is per
//! connection, as it must be.
//!
//! The handshake runs on the worker that owns the socket, non-blocking, a
//! record at a time as bytes arrive: a slow or bogus handshake costs its
//! own connection a little CPU and nothing else, and the name timeout ends
//! one that never finishes. Bytes that are not TLS fail the handshake and
//! the connection is closed without a word (a plain client on a TLS port
//! sees its connection close).

use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A connection's TLS session.
pub(crate) type Session = Mutex<ServerConnection>;

/// Plaintext the writer hands rustls at a time: what it encrypts and
/// writes before it looks at the queue again. Bytes inside rustls no longer
/// count against `queue_bytes`, so this bounds what a slow reader holds
/// there.
pub(crate) const PLAINTEXT_BATCH: usize = 64 * 1024;

/// Reads the certificate chain and key (PEM) and builds the server side;
/// the error names the file and says what is wrong with it.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read tls_cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert {}: not a PEM certificate: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_cert {}: no CERTIFICATE block in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "cannot read a private key from tls_key {}: {e}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "tls_cert {} and tls_key do not go together: {e}",
                cert.display()
            )
        })?;
    Ok(Arc::new(config))
}

/// Writes a self-signed certificate for `localhost` and `127.0.0.1`
/// (`cert.pem`, `key.pem`) into `dir`; returns their paths.
pub(crate) fn generate(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot make a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    Ok((cert, key))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Reads decrypted bytes into `buf`, as `Read::read` would from a plain
/// socket: `Ok(0)` at the end of the stream, `WouldBlock` when the socket
/// has nothing more. Records that complete the handshake are taken on
/// the way; the caller asks [`wants_write`] afterwards and wakes the
/// writer if it does. A peer that breaks TLS gets `InvalidData`.
pub(crate) fn read(session: &Session, stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut tls = session.lock();
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // The peer closed without close_notify: the end, all the same.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        let mut from: &TcpStream = stream;
        if tls.read_tls(&mut from)? == 0 {
            return Ok(0);
        }
        if let Err(e) = tls.process_new_packets() {
            // Send the alert rustls prepared, if the socket takes it.
            let mut to: &TcpStream = stream;
            let _ = tls.write_tls(&mut to);
            return Err(io::Error::new(ErrorKind::InvalidData, e));
        }
    }
}

/// True if rustls holds bytes for the socket (handshake records, alerts,
/// encrypted frames).
pub(crate) fn wants_write(session: &Session) -> bool {
    session.lock().wants_write()
}
