#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    dead_code
)]
//! Test helpers: a minimal JSON parser (so the tests check that the output
//! really is one valid JSON object, without a JSON dependency), a fake
//! broker that can misbehave once, a fake IRC server ([`irc`]) and a fake
//! web door ([`web`]).

pub mod irc;
pub mod json;
pub mod web;

use protocol::{encode_msg, Decoded, Kind, Limits, Request, Targets};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

pub use json::Json;

/// What the fake broker does wrong, once, at the 50th delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: a correct (tiny, slow) broker.
    None,
    /// Never delivers one message to one recipient (but counts it in ACK).
    Drop,
    /// Delivers one message twice to one recipient.
    Duplicate,
    /// Holds one delivery back and sends it after the next one to the same
    /// recipient.
    Swap,
    /// Answers `ERR BAD_NAME` to every `NAME lg-1`.
    RefuseName,
    /// Answers `ERR NAME_TAKEN` to the first two `NAME lg-1`, as a broker
    /// still removing a previous run's `lg-1` would.
    TakenTwice,
}

const FAULT_AT: u64 = 50;

struct Peer {
    stream: TcpStream,
    held: Option<Vec<u8>>,
}

struct State {
    fault: Fault,
    peers: Mutex<HashMap<String, Arc<Mutex<Peer>>>>,
    deliveries: AtomicU64,
    ids: AtomicU64,
    names: AtomicU64,
}

/// A thread-per-connection broker speaking just enough of the protocol for
/// loadgen in `all` mode: NAME, SEND *, MSG, ACK.
pub struct FakeBroker {
    addr: SocketAddr,
}

impl FakeBroker {
    pub fn start(fault: Fault) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            fault,
            peers: Mutex::new(HashMap::new()),
            deliveries: AtomicU64::new(0),
            ids: AtomicU64::new(1),
            names: AtomicU64::new(0),
        });
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let state = state.clone();
                thread::spawn(move || serve(stream, &state));
            }
        });
        FakeBroker { addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(mut stream: TcpStream, state: &State) {
    stream.set_nodelay(true).unwrap();
    let _ = stream.write_all(b"HELLO fake 1 :hi\n");
    let me = Arc::new(Mutex::new(Peer {
        stream: stream.try_clone().unwrap(),
        held: None,
    }));
    let mut name = String::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0;
    let limits = Limits::default();
    let mut out = Vec::new();
    loop {
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        len += n;
        let mut pos = 0;
        loop {
            match Request::decode(&buf[pos..len], &limits) {
                Decoded::Incomplete => break,
                Decoded::Frame { frame, consumed } => {
                    pos += consumed;
                    match frame {
                        Request::Name { name: n } => {
                            let mut p = me.lock().unwrap();
                            if n == "lg-1" {
                                let k = state.names.fetch_add(1, Ordering::SeqCst);
                                let refusal: &[u8] = match state.fault {
                                    Fault::RefuseName => b"ERR BAD_NAME :no\n",
                                    Fault::TakenTwice if k < 2 => b"ERR NAME_TAKEN :taken\n",
                                    _ => b"",
                                };
                                if !refusal.is_empty() {
                                    let _ = p.stream.write_all(refusal);
                                    continue;
                                }
                            }
                            name = n.to_string();
                            let _ = p.stream.write_all(format!("OK NAME {n}\n").as_bytes());
                            drop(p);
                            state.peers.lock().unwrap().insert(name.clone(), me.clone());
                        }
                        Request::Send {
                            targets: Targets::All,
                            body,
                        } => {
                            let id = state.ids.fetch_add(1, Ordering::SeqCst);
                            out.clear();
                            encode_msg(&mut out, id, &name, Kind::All, 0, body);
                            let others: Vec<Arc<Mutex<Peer>>> = state
                                .peers
                                .lock()
                                .unwrap()
                                .iter()
                                .filter(|(k, _)| **k != name)
                                .map(|(_, v)| v.clone())
                                .collect();
                            for peer in &others {
                                deliver(state, peer, &out);
                            }
                            let ack = format!("ACK {id} {}\n", others.len());
                            let _ = me.lock().unwrap().stream.write_all(ack.as_bytes());
                        }
                        _ => {
                            let _ = me
                                .lock()
                                .unwrap()
                                .stream
                                .write_all(b"ERR UNKNOWN_COMMAND :fake\n");
                        }
                    }
                }
                Decoded::Invalid { consumed, .. } => pos += consumed,
                Decoded::Fatal(_) => return,
            }
        }
        buf.copy_within(pos..len, 0);
        len -= pos;
    }
    state.peers.lock().unwrap().remove(&name);
}

fn deliver(state: &State, peer: &Mutex<Peer>, frame: &[u8]) {
    let k = state.deliveries.fetch_add(1, Ordering::SeqCst) + 1;
    let mut p = peer.lock().unwrap();
    let fault = if k == FAULT_AT {
        state.fault
    } else {
        Fault::None
    };
    match fault {
        Fault::Drop => {}
        Fault::Duplicate => {
            let _ = p.stream.write_all(frame);
            let _ = p.stream.write_all(frame);
        }
        Fault::Swap => p.held = Some(frame.to_vec()),
        Fault::None | Fault::RefuseName | Fault::TakenTwice => {
            let _ = p.stream.write_all(frame);
            if let Some(held) = p.held.take() {
                let _ = p.stream.write_all(&held);
            }
        }
    }
}
