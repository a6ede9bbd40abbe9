//! A fake IRC server, thread per connection, that talks like a small
//! RFC 2812 server that is not our broker (tilde users, IP hosts, a MOTD
//! numeric, its own PING after the welcome, no `#all`) and can misbehave
//! once.

use protocol::irc::{decode, IrcDecoded};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the fake IRC server does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrcFault {
    /// Nothing.
    None,
    /// Never relays the 50th delivery.
    Drop,
    /// Answers every 20th PRIVMSG with `401` and relays it to nobody.
    NoSuchNick,
    /// Answers `433` to the first two `NICK lg-1`.
    NickTakenTwice,
    /// Answers `432` to every `NICK lg-1`.
    BadNick,
}

struct State {
    fault: IrcFault,
    /// Writers by nick.
    nicks: Mutex<HashMap<String, Arc<Mutex<TcpStream>>>>,
    /// Members of `#load`.
    room: Mutex<HashSet<String>>,
    deliveries: AtomicU64,
    privmsgs: AtomicU64,
    nick_tries: AtomicU64,
    /// PONGs that answered our PING.
    pongs: AtomicU64,
}

/// The server; its threads live as long as the test process.
pub struct FakeIrc {
    addr: SocketAddr,
    state: Arc<State>,
}

impl FakeIrc {
    pub fn start(fault: IrcFault) -> FakeIrc {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            fault,
            nicks: Mutex::new(HashMap::new()),
            room: Mutex::new(HashSet::new()),
            deliveries: AtomicU64::new(0),
            privmsgs: AtomicU64::new(0),
            nick_tries: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
        });
        let s = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let s = s.clone();
                thread::spawn(move || serve(stream, &s));
            }
        });
        FakeIrc { addr, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Clients that answered the server's PING.
    pub fn pongs(&self) -> u64 {
        self.state.pongs.load(Ordering::SeqCst)
    }
}

fn send(w: &Mutex<TcpStream>, line: &str) {
    let _ = w
        .lock()
        .unwrap()
        .write_all(format!("{line}\r\n").as_bytes());
}

fn serve(stream: TcpStream, state: &State) {
    stream.set_nodelay(true).unwrap();
    let me = Arc::new(Mutex::new(stream.try_clone().unwrap()));
    let mut reader = stream;
    send(&me, ":fake NOTICE * :*** Looking up your hostname");
    let mut nick = String::new();
    let mut registered = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    loop {
        let n = match reader.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        len += n;
        let mut pos = 0;
        loop {
            let (msg, consumed) = match decode(&buf[pos..len]) {
                IrcDecoded::Incomplete => break,
                IrcDecoded::Message { msg, consumed } => (msg, consumed),
                IrcDecoded::Fatal => return,
                IrcDecoded::Empty { consumed }
                | IrcDecoded::TooLong { consumed }
                | IrcDecoded::Invalid { consumed } => {
                    pos += consumed;
                    continue;
                }
            };
            pos += consumed;
            let p = |i| msg.param_str(i).unwrap_or_default().to_string();
            match msg.command {
                "NICK" => {
                    let want = p(0);
                    if want == "lg-1" {
                        let k = state.nick_tries.fetch_add(1, Ordering::SeqCst);
                        let refusal = match state.fault {
                            IrcFault::NickTakenTwice if k < 2 => "433",
                            IrcFault::BadNick => "432",
                            _ => "",
                        };
                        if !refusal.is_empty() {
                            send(&me, &format!(":fake {refusal} * {want} :no"));
                            continue;
                        }
                    }
                    nick = want;
                }
                "USER" => {}
                "JOIN" if registered => {
                    let room = p(0);
                    let mut members = state.room.lock().unwrap();
                    members.insert(nick.clone());
                    let nicks = state.nicks.lock().unwrap();
                    for m in members.iter() {
                        if let Some(w) = nicks.get(m) {
                            send(w, &format!(":{nick}!~{nick}@127.0.0.1 JOIN {room}"));
                        }
                    }
                    send(&me, &format!(":fake 353 {nick} = {room} :{nick}"));
                    send(
                        &me,
                        &format!(":fake 366 {nick} {room} :End of /NAMES list."),
                    );
                }
                "PING" => send(&me, &format!(":fake PONG fake :{}", p(0))),
                "PONG" if p(0) == format!("check-{nick}") => {
                    state.pongs.fetch_add(1, Ordering::SeqCst);
                }
                "PRIVMSG" if registered => {
                    let k = state.privmsgs.fetch_add(1, Ordering::SeqCst) + 1;
                    let (target, text) = (p(0), p(1));
                    if state.fault == IrcFault::NoSuchNick && k.is_multiple_of(20) {
                        send(&me, &format!(":fake 401 {nick} {target} :No such nick"));
                        continue;
                    }
                    let line = format!(":{nick}!~{nick}@127.0.0.1 PRIVMSG {target} :{text}");
                    let to: Vec<String> = if target.starts_with('#') {
                        let members = state.room.lock().unwrap();
                        members.iter().filter(|m| **m != nick).cloned().collect()
                    } else {
                        vec![target]
                    };
                    let nicks = state.nicks.lock().unwrap();
                    for t in to {
                        let d = state.deliveries.fetch_add(1, Ordering::SeqCst) + 1;
                        if state.fault == IrcFault::Drop && d == 50 {
                            continue;
                        }
                        if let Some(w) = nicks.get(&t) {
                            send(w, &line);
                        }
                    }
                }
                _ => {}
            }
            if !registered && !nick.is_empty() {
                registered = true;
                state.nicks.lock().unwrap().insert(nick.clone(), me.clone());
                send(
                    &me,
                    &format!(":fake 001 {nick} :Welcome {nick}!~{nick}@127.0.0.1"),
                );
                send(&me, &format!(":fake 422 {nick} :MOTD File is missing"));
                send(&me, &format!("PING :check-{nick}"));
            }
        }
        buf.copy_within(pos..len, 0);
        len -= pos;
    }
    state.nicks.lock().unwrap().remove(&nick);
    state.room.lock().unwrap().remove(&nick);
}
