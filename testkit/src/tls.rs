//! TLS for tests: a broker with every TLS listener on a fresh self-signed
//! certificate, and a client that trusts exactly that certificate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::DEADLINE;
use broker::{Broker, Config};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A TLS stream to the broker.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A fresh directory with `cert.pem` and `key.pem` for localhost.
pub fn cert_dir() -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "broker-tls-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    broker::gen_cert(&dir).unwrap();
    dir
}

/// Points the TLS keys of `c` at the pair in `dir`, with every TLS
/// listener on a free loopback port.
pub fn use_certs(c: &mut Config, dir: &Path) {
    c.tls_listen = "127.0.0.1:0".into();
    c.irc_tls_listen = "127.0.0.1:0".into();
    c.https_listen = "127.0.0.1:0".into();
    c.tls_cert = dir.join("cert.pem").display().to_string();
    c.tls_key = dir.join("key.pem").display().to_string();
}

/// A broker with TLS on every door, and the directory of its certificate.
pub fn start_tls() -> (Broker, PathBuf) {
    let dir = cert_dir();
    let b = crate::start_with(|c| use_certs(c, &dir));
    (b, dir)
}

/// A client configuration that trusts only the certificate in `dir`.
pub fn client_config(dir: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Connects to `addr` as `localhost` with `config`; the handshake happens
/// on the first read or write.
pub fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).unwrap();
    StreamOwned::new(conn, tcp)
}
