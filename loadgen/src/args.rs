//! The command line and the checked settings a run uses.

use crate::irc::MAX_SIZE as IRC_MAX_SIZE;
use crate::payload::{MAX_CLIENTS, MIN_SIZE};
use clap::{Parser, ValueEnum};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// How senders address their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every message to every other client (`SEND *`; over IRC, the
    /// broker's #all channel).
    All,
    /// Every message to one random other client (`SEND <name>`).
    Direct,
    /// Every message to --targets random other clients (`SEND <a>,<b>,...`;
    /// not over IRC).
    Multi,
    /// Every client joins the room #load and sends to it, so every other
    /// member gets every message.
    Room,
}

impl Mode {
    /// The mode as written on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::All => "all",
            Mode::Direct => "direct",
            Mode::Multi => "multi",
            Mode::Room => "room",
        }
    }
}

/// The room every client joins in `room` mode (a channel over IRC).
pub const ROOM: &str = "#load";

/// Which door of the server the clients come through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Door {
    /// The broker's own protocol (`NAME`, `SEND`, `MSG`, `ACK`).
    Native,
    /// Plain RFC 2812 IRC (`NICK`/`USER`, `PRIVMSG`), for the broker's IRC
    /// door or any other IRC server. IRC has no `ACK`, so every message
    /// written is taken to be owed to its whole fan-out.
    Irc,
    /// WebSocket clients (`GET /ws`) speaking the broker's web door JSON.
    Web,
}

impl Door {
    /// The door as written on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Native => "native",
            Door::Irc => "irc",
            Door::Web => "web",
        }
    }
}

/// Load generator for the chat broker.
///
/// Without --addr it starts a broker in-process on a free loopback port
/// (rate limiting off) and runs a standard scenario, so
/// `cargo run --release -p loadgen` alone is a demo. It only ever connects
/// to loopback addresses, stops by itself, and exits non-zero if any
/// message was lost, duplicated or reordered, or a client could not
/// register.
///
/// It prints what will run first (on stderr), then progress on stderr: one
/// line redrawn in place on a terminal, one line per second when stderr is
/// a file or a pipe. The summary (or the --json object) comes last, on
/// stdout.
//
// Every flag that has a default ends its first paragraph with
// `[default: …]`, written by hand (clap's own is hidden) so that defaults
// clap can't express, like --senders', read the same as the others; the
// `every_default_is_shown_the_same_way` test keeps them true.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", version, args_override_self = true)]
pub struct Args {
    /// The broker to load, at its native door (loopback only). A
    /// comma-separated list spreads the clients over several brokers, the
    /// nodes of one cluster: client i (lg-i) connects to address i mod N,
    /// and latency is also reported apart for deliveries within one node
    /// and across nodes. The same goes for --irc-addr and --web-addr.
    /// [default: a broker started in-process on a free port]
    #[arg(long, value_name = "HOST:PORT[,...]")]
    pub addr: Option<String>,
    /// Which door the clients use: native (the broker's own protocol), irc
    /// (IRC clients, for the broker's IRC door or any RFC 2812 server) or
    /// web (WebSocket clients for the broker's web door). [default: native]
    #[arg(
        long,
        value_enum,
        default_value_t = Door::Native,
        hide_default_value = true
    )]
    pub door: Door,
    /// The IRC server to load with --door irc (loopback only; the broker's
    /// IRC door is 127.0.0.1:6667 unless configured otherwise); a
    /// comma-separated list spreads the clients as --addr does.
    /// [default: the IRC door of a broker started in-process]
    #[arg(long, value_name = "HOST:PORT[,...]")]
    pub irc_addr: Option<String>,
    /// The web door to load with --door web (loopback only; the broker's web
    /// door, `http_listen`, is 127.0.0.1:7880 unless configured otherwise);
    /// a comma-separated list spreads the clients as --addr does.
    /// [default: the web door of a broker started in-process]
    #[arg(long, value_name = "HOST:PORT[,...]")]
    pub web_addr: Option<String>,
    /// Connect over TLS. The address flags then name the broker's TLS
    /// listeners (`tls_listen`, `irc_tls_listen`, `https_listen` for
    /// --door native, irc and web), and the in-process broker opens its
    /// TLS listeners with a certificate made for the run.
    #[arg(long)]
    pub tls: bool,
    /// With --tls against a broker at an address: the certificate to trust
    /// (PEM), e.g. the cert.pem `broker gen-cert` wrote. It must be valid
    /// for the host as the address flag gives it (localhost or 127.0.0.1
    /// for gen-cert's). [default: none; needed with --tls and an address]
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// How many clients connect (named lg-0, lg-1, ...). [default: 100]
    #[arg(
        long,
        default_value_t = 100,
        hide_default_value = true,
        value_name = "N"
    )]
    pub clients: usize,
    /// How many of the clients send (the first K); the others only
    /// receive. [default: 10, or --clients if fewer]
    #[arg(long, value_name = "K")]
    pub senders: Option<usize>,
    /// Whom each message goes to: all (every other client), direct (one
    /// random other client), multi (--targets random others; not over IRC)
    /// or room (everyone joins #load and sends to it). [default: all]
    #[arg(
        long,
        value_enum,
        default_value_t = Mode::All,
        hide_default_value = true
    )]
    pub mode: Mode,
    /// How many recipients each message names in multi mode. [default: 3]
    #[arg(long, default_value_t = 3, hide_default_value = true, value_name = "T")]
    pub targets: usize,
    /// Message body size in bytes (at most 400 with --door irc, so that a
    /// relayed line fits in IRC's 512 bytes). [default: 100]
    #[arg(
        long,
        default_value_t = 100,
        hide_default_value = true,
        value_name = "BYTES"
    )]
    pub size: usize,
    /// Seconds of sending that are measured. [default: 5]
    #[arg(
        long,
        default_value_t = 5.0,
        hide_default_value = true,
        value_name = "SECS"
    )]
    pub duration: f64,
    /// Seconds of sending before measuring starts (sent, not counted).
    /// [default: 1]
    #[arg(
        long,
        default_value_t = 1.0,
        hide_default_value = true,
        value_name = "SECS"
    )]
    pub warmup: f64,
    /// Send at a fixed pace instead of by --window: R messages a second per
    /// sender, whether or not earlier ones have arrived (latency then counts
    /// from when each message was due). [default: none, senders pace
    /// themselves by --window]
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// How many messages a sender may have sent and not yet seen arrive. A
    /// sender sends until W messages are on their way, then sends more as
    /// they reach their recipients (a message to many counts as arrived bit
    /// by bit, one recipient at a time). 1 means one message at a time;
    /// more keeps the broker busier. Not used with --rate. [default: 8]
    #[arg(long, default_value_t = 8, hide_default_value = true, value_name = "W")]
    pub window: u64,
    /// How much room a sender waits for before it sends again, in messages
    /// (1 to --window). 1 sends as soon as any message has arrived, keeping
    /// the window full; M = W waits until everything sent has arrived, then
    /// sends W messages in one write, as a pipelining client does
    /// (redis-benchmark's -P W). Not used with --rate. [default: 1]
    #[arg(long, default_value_t = 1, hide_default_value = true, value_name = "M")]
    pub refill: u64,
    /// Process id of a broker you started yourself, to report its CPU time
    /// and peak memory (an in-process broker's CPU time is reported without
    /// it). A comma-separated list (the nodes of a cluster) reports the sum
    /// over those processes, and each one's CPU time.
    /// [default: none, the broker's figures are not measured]
    #[arg(long, value_name = "PID[,...]")]
    pub broker_pid: Option<String>,
    /// Print exactly one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Network threads of the load generator, each running one poller over
    /// its share of the clients. [default: 2]
    #[arg(long, default_value_t = 2, hide_default_value = true, value_name = "N")]
    pub threads: usize,
    /// At most this many seconds to wait, once sending stops, for messages
    /// still on their way. [default: 5]
    #[arg(
        long,
        default_value_t = 5.0,
        hide_default_value = true,
        value_name = "SECS"
    )]
    pub drain: f64,
    /// How many clients each network thread connects and registers at
    /// once. Lower it for a server with a short accept backlog (ngIRCd
    /// listens with 10): an overflowing backlog costs retransmits of a
    /// second and more. [default: 128]
    #[arg(
        long,
        default_value_t = 128,
        hide_default_value = true,
        value_name = "N"
    )]
    pub handshakes: usize,
}

/// Checked, ready-to-use settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Addresses of the door to load, one per broker node (client `i`
    /// connects to `addrs[i % addrs.len()]`, see [`node_of`]); empty to
    /// start a broker in-process and use its door.
    pub addrs: Vec<SocketAddr>,
    /// The door the clients use.
    pub door: Door,
    /// `--tls`: what the clients connect with, or `None` for plain TCP.
    pub tls: Option<TlsTarget>,
    /// Clients to connect.
    pub clients: usize,
    /// Senders among them.
    pub senders: usize,
    /// Addressing mode.
    pub mode: Mode,
    /// Targets per message (multi mode).
    pub targets: usize,
    /// Body size in bytes.
    pub size: usize,
    /// Measured time.
    pub duration: Duration,
    /// Warm-up time.
    pub warmup: Duration,
    /// Messages/s per sender, open loop; `None` for closed loop.
    pub rate: Option<f64>,
    /// Closed-loop window in messages.
    pub window: u64,
    /// Closed loop: fewest messages a sender writes at once.
    pub refill: u64,
    /// Broker processes to measure (their figures are summed); empty for
    /// none.
    pub broker_pids: Vec<u32>,
    /// JSON output.
    pub json: bool,
    /// Network threads.
    pub threads: usize,
    /// Bound on the final wait for outstanding deliveries.
    pub drain: Duration,
    /// Clients per thread connecting or registering at once.
    pub handshakes: usize,
}

/// What `--tls` connects with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsTarget {
    /// The certificate to trust (`--ca`), or `None` for the in-process
    /// broker's, made for the run.
    pub ca: Option<PathBuf>,
    /// Per address, the name the broker's certificate must be valid for:
    /// its host as the address flag gives it (`localhost` for the
    /// in-process broker).
    pub server_names: Vec<String>,
}

/// The node (index into the address list) client `client` connects to,
/// out of `nodes`: `client mod nodes`. Receivers use it to tell a
/// cross-node delivery from the sender index in the payload, without a
/// lookup.
pub fn node_of(client: u32, nodes: u32) -> u32 {
    client.checked_rem(nodes).unwrap_or(0)
}

impl Settings {
    /// How many broker nodes the clients are spread over (1 for the
    /// in-process broker).
    pub fn nodes(&self) -> usize {
        self.addrs.len().max(1)
    }

    /// In `all` mode over several nodes, an acknowledged `SEND *` is owed
    /// to every other client: each node delivers it to all of its own
    /// users, while the ACK's `<queued>` counts the other nodes' users as
    /// the sender's node knows them at that moment, which may be behind
    /// (a user who joined elsewhere a moment ago) or ahead (one who just
    /// left). With one node the ACK is exact and is what is owed.
    pub fn ack_owes_fanout(&self) -> bool {
        self.mode == Mode::All && self.door != Door::Irc && self.addrs.len() > 1
    }

    /// Recipients one message is meant for, with every client online.
    pub fn fanout(&self) -> u64 {
        match self.mode {
            Mode::All | Mode::Room => self.clients.saturating_sub(1) as u64,
            Mode::Direct => 1,
            Mode::Multi => self.targets as u64,
        }
    }
}

/// Most addresses in one address flag.
pub const MAX_NODES: usize = 64;

/// Most names in one `SEND` (the broker's default `max_targets`).
const MAX_TARGETS: usize = 100;
/// Largest body the broker accepts by default.
const MAX_SIZE: usize = 65_536;

fn secs(name: &str, v: f64, min: f64, max: f64) -> Result<Duration, String> {
    if v.is_finite() && v >= min && v <= max {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("--{name} must be between {min} and {max} seconds"))
    }
}

impl Args {
    /// Checks the arguments and resolves `--addr`.
    pub fn settings(&self) -> Result<Settings, String> {
        // Each door has its own address flag, so a script can't load one
        // door while believing it loads another.
        if self.irc_addr.is_some() && self.door != Door::Irc {
            return Err("--irc-addr needs --door irc".into());
        }
        if self.web_addr.is_some() && self.door != Door::Web {
            return Err("--web-addr needs --door web".into());
        }
        let addr = match self.door {
            Door::Native => self.addr.as_deref(),
            _ if self.addr.is_some() => {
                let flag = match self.door {
                    Door::Web => "web-addr",
                    _ => "irc-addr",
                };
                return Err(format!(
                    "--addr is the native door; with --door {} give the server as --{flag}",
                    self.door.as_str()
                ));
            }
            Door::Irc => self.irc_addr.as_deref(),
            Door::Web => self.web_addr.as_deref(),
        };
        let flag = match self.door {
            Door::Native => "addr",
            Door::Irc => "irc-addr",
            Door::Web => "web-addr",
        };
        let given = addr.map(|a| split_list(flag, a)).transpose()?;
        let tls = self.tls_target(given.as_deref())?;
        let addrs = resolve_list(flag, given.as_deref().unwrap_or_default())?;
        if self.clients < 2 || self.clients > MAX_CLIENTS {
            return Err(format!("--clients must be 2 to {MAX_CLIENTS}"));
        }
        if self.clients < addrs.len() {
            return Err(format!(
                "--clients must be at least the number of addresses in --{flag} ({}), so that \
                 every node gets a client",
                addrs.len()
            ));
        }
        let broker_pids = match &self.broker_pid {
            Some(list) => parse_pids(list)?,
            None => Vec::new(),
        };
        let senders = self.senders.unwrap_or(self.clients.min(10));
        if senders < 1 || senders > self.clients {
            return Err("--senders must be 1 to --clients".into());
        }
        if self.mode == Mode::Multi {
            let most = MAX_TARGETS.min(self.clients - 1);
            if most < 2 || self.targets < 2 || self.targets > most {
                return Err(format!(
                    "--targets must be 2 to {most} in multi mode (distinct other clients, \
                     at most {MAX_TARGETS})"
                ));
            }
        }
        if self.size < MIN_SIZE || self.size > MAX_SIZE {
            return Err(format!("--size must be {MIN_SIZE} to {MAX_SIZE} bytes"));
        }
        if self.door == Door::Irc {
            if self.mode == Mode::Multi {
                return Err("--mode multi is for the native door; with --door irc use \
                            all, direct or room"
                    .into());
            }
            if self.size > IRC_MAX_SIZE {
                return Err(format!(
                    "--size must be at most {IRC_MAX_SIZE} bytes with --door irc (one \
                     IRC line, prefix included, is at most 512 bytes)"
                ));
            }
        }
        let duration = secs("duration", self.duration, 0.001, 3600.0)?;
        let warmup = secs("warmup", self.warmup, 0.0, 600.0)?;
        let drain = secs("drain", self.drain, 0.0, 600.0)?;
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0 && r <= 10_000_000.0) {
                return Err("--rate must be above 0 and at most 10000000 messages/s".into());
            }
        }
        if self.window < 1 || self.window > 1_000_000 {
            return Err("--window must be 1 to 1000000".into());
        }
        let refill = self.refill;
        if refill < 1 || refill > self.window {
            return Err("--refill must be 1 to --window".into());
        }
        if self.threads < 1 || self.threads > 16 {
            return Err("--threads must be 1 to 16".into());
        }
        if self.handshakes < 1 || self.handshakes > 10_000 {
            return Err("--handshakes must be 1 to 10000".into());
        }
        Ok(Settings {
            addrs,
            door: self.door,
            tls,
            clients: self.clients,
            senders,
            mode: self.mode,
            targets: self.targets,
            size: self.size,
            duration,
            warmup,
            rate: self.rate,
            window: self.window,
            refill,
            broker_pids,
            json: self.json,
            threads: self.threads.min(self.clients),
            drain,
            handshakes: self.handshakes,
        })
    }

    /// `--tls` and `--ca` against the door's address flag (`addrs`, its
    /// list as given).
    fn tls_target(&self, addrs: Option<&[&str]>) -> Result<Option<TlsTarget>, String> {
        if !self.tls {
            return match self.ca {
                Some(_) => Err("--ca needs --tls".into()),
                None => Ok(None),
            };
        }
        const IN_PROCESS: &str = "--ca is for a broker at an address; the in-process \
                                  broker's certificate is made for the run and trusted";
        const NO_CA: &str = "--tls against a broker at an address needs --ca FILE, the \
                             certificate to trust (PEM; e.g. the cert.pem of `broker gen-cert`)";
        let server_names: Vec<String> = match (addrs, &self.ca) {
            (None, None) => vec!["localhost".to_string()],
            (None, Some(_)) => return Err(IN_PROCESS.into()),
            (Some(_), None) => return Err(NO_CA.into()),
            (Some(list), Some(_)) => list
                .iter()
                .map(|a| crate::tls::host_of(a).to_string())
                .collect(),
        };
        for name in &server_names {
            crate::tls::server_name(name)?;
        }
        Ok(Some(TlsTarget {
            ca: self.ca.clone(),
            server_names,
        }))
    }
}

/// Cuts the value of an address flag (`--addr`, `--irc-addr`,
/// `--web-addr`) at its commas: one `HOST:PORT` per node, blanks around
/// each ignored, none empty, at most [`MAX_NODES`].
pub fn split_list<'a>(flag: &str, list: &'a str) -> Result<Vec<&'a str>, String> {
    let items: Vec<&str> = list.split(',').map(str::trim).collect();
    if items.iter().any(|a| a.is_empty()) {
        return Err(format!(
            "--{flag} {list:?}: an empty address (give HOST:PORT or HOST:PORT,HOST:PORT,...)"
        ));
    }
    if items.len() > MAX_NODES {
        return Err(format!("--{flag}: at most {MAX_NODES} addresses"));
    }
    Ok(items)
}

/// Resolves each address of a list (see [`resolve_loopback`]); the same
/// broker twice is refused, since two "nodes" would then be one.
fn resolve_list(flag: &str, items: &[&str]) -> Result<Vec<SocketAddr>, String> {
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(items.len());
    for item in items {
        let a = resolve_loopback(item)?;
        if addrs.contains(&a) {
            return Err(format!("--{flag}: {item} ({a}) is in the list twice"));
        }
        addrs.push(a);
    }
    Ok(addrs)
}

/// Parses `--broker-pid`: one process id or a comma-separated list, each
/// once.
pub fn parse_pids(list: &str) -> Result<Vec<u32>, String> {
    let mut pids: Vec<u32> = Vec::new();
    for item in list.split(',').map(str::trim) {
        let pid: u32 = item
            .parse()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("--broker-pid {list:?}: {item:?} is not a process id"))?;
        if pids.contains(&pid) {
            return Err(format!("--broker-pid: {pid} is in the list twice"));
        }
        pids.push(pid);
    }
    Ok(pids)
}

/// Resolves HOST:PORT (of `--addr`, `--irc-addr` or `--web-addr`) and
/// insists that it is a loopback address: this tool floods whatever it
/// points at, so it never leaves the machine.
pub fn resolve_loopback(s: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("{s}: {e}"))?
        .collect();
    match addrs.iter().find(|a| a.ip().is_loopback()) {
        Some(a) if addrs.iter().all(|a| a.ip().is_loopback()) => Ok(*a),
        _ => Err(format!(
            "{s}: refusing a non-loopback address (loadgen only targets this machine)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut v = vec!["loadgen"];
        v.extend_from_slice(args);
        Args::try_parse_from(v)
            .map_err(|e| e.to_string())?
            .settings()
    }

    #[test]
    fn defaults_are_a_runnable_scenario() {
        let s = parse(&[]).unwrap();
        assert!(s.addrs.is_empty());
        assert_eq!(s.nodes(), 1);
        assert!(s.broker_pids.is_empty());
        assert_eq!((s.clients, s.senders, s.mode), (100, 10, Mode::All));
        assert_eq!(s.fanout(), 99);
        assert!(s.rate.is_none());
        assert_eq!((s.window, s.refill), (8, 1));
    }

    #[test]
    fn loopback_only() {
        let s = parse(&["--addr", "127.0.0.1:7878"]).unwrap();
        assert_eq!(s.addrs.len(), 1);
        assert_eq!(s.addrs[0].port(), 7878);
        assert!(parse(&["--addr", "[::1]:7878"]).is_ok());
        assert!(parse(&["--addr", "localhost:7878"]).is_ok());
        let err = parse(&["--addr", "10.0.0.1:7878"]).unwrap_err();
        assert!(err.contains("non-loopback"), "{err}");
        assert!(parse(&["--addr", "0.0.0.0:7878"]).is_err());
        assert!(parse(&["--addr", "nonsense"]).is_err());
    }

    #[test]
    fn bounds_are_checked() {
        assert!(parse(&["--clients", "1"]).is_err());
        assert!(parse(&["--clients", "5", "--senders", "6"]).is_err());
        assert!(parse(&["--senders", "0"]).is_err());
        assert!(parse(&["--size", "47"]).is_err());
        assert!(parse(&["--size", "65537"]).is_err());
        assert!(parse(&["--duration", "0"]).is_err());
        assert!(parse(&["--duration", "nan"]).is_err());
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--window", "0"]).is_err());
        assert!(parse(&["--refill", "0"]).is_err());
        assert!(parse(&["--window", "8", "--refill", "9"]).is_err());
        assert_eq!(
            parse(&["--window", "8", "--refill", "8"]).unwrap().refill,
            8
        );
        assert!(parse(&["--mode", "multi", "--clients", "2"]).is_err());
        assert!(parse(&["--mode", "multi", "--clients", "3", "--targets", "2"]).is_ok());
        assert!(parse(&["--mode", "multi", "--targets", "101", "--clients", "500"]).is_err());
        assert!(parse(&["--mode", "bogus"]).is_err());
        assert!(parse(&["--handshakes", "0"]).is_err());
        assert_eq!(parse(&["--handshakes", "4"]).unwrap().handshakes, 4);
    }

    #[test]
    fn fanout_per_mode() {
        let s = parse(&["--mode", "direct", "--clients", "20"]).unwrap();
        assert_eq!(s.fanout(), 1);
        let s = parse(&["--mode", "multi", "--targets", "4"]).unwrap();
        assert_eq!(s.fanout(), 4);
    }

    #[test]
    fn room_mode_reaches_every_other_member() {
        let s = parse(&["--mode", "room", "--clients", "30"]).unwrap();
        assert_eq!((s.mode, s.door), (Mode::Room, Door::Native));
        assert_eq!(s.fanout(), 29);
        assert_eq!(s.mode.as_str(), "room");
    }

    #[test]
    fn irc_door_addresses_and_limits() {
        // No address: the in-process broker's IRC door.
        let s = parse(&["--door", "irc"]).unwrap();
        assert_eq!((s.door, s.addrs.len()), (Door::Irc, 0));
        let s = parse(&["--door", "irc", "--irc-addr", "127.0.0.1:6667"]).unwrap();
        assert_eq!(s.addrs[0].port(), 6667);
        assert!(parse(&["--door", "irc", "--irc-addr", "10.1.1.1:6667"]).is_err());
        // Each door has its own address flag.
        assert!(parse(&["--door", "irc", "--addr", "127.0.0.1:7878"]).is_err());
        assert!(parse(&["--irc-addr", "127.0.0.1:6667"]).is_err());
        // No multi over IRC, and a message fits in one IRC line.
        assert!(parse(&["--door", "irc", "--mode", "multi"]).is_err());
        for mode in ["all", "direct", "room"] {
            assert!(parse(&["--door", "irc", "--mode", mode]).is_ok(), "{mode}");
        }
        assert!(parse(&["--door", "irc", "--size", "400"]).is_ok());
        assert!(parse(&["--door", "irc", "--size", "401"]).is_err());
        assert!(parse(&["--size", "401"]).is_ok());
    }

    #[test]
    fn web_door_addresses_and_modes() {
        // No address: the in-process broker's web door.
        let s = parse(&["--door", "web"]).unwrap();
        assert_eq!((s.door, s.addrs.len()), (Door::Web, 0));
        assert_eq!(s.door.as_str(), "web");
        let s = parse(&["--door", "web", "--web-addr", "127.0.0.1:7880"]).unwrap();
        assert_eq!(s.addrs[0].port(), 7880);
        assert!(parse(&["--door", "web", "--web-addr", "192.168.1.1:7880"]).is_err());
        // Each door has its own address flag.
        let err = parse(&["--door", "web", "--addr", "127.0.0.1:7878"]).unwrap_err();
        assert!(err.contains("--web-addr"), "{err}");
        assert!(parse(&["--web-addr", "127.0.0.1:7880"]).is_err());
        assert!(parse(&["--door", "irc", "--web-addr", "127.0.0.1:7880"]).is_err());
        assert!(parse(&["--door", "web", "--irc-addr", "127.0.0.1:6667"]).is_err());
        // Every mode, multi included ("to" takes a list), and any size.
        for mode in ["all", "direct", "multi", "room"] {
            assert!(parse(&["--door", "web", "--mode", mode]).is_ok(), "{mode}");
        }
        assert!(parse(&["--door", "web", "--size", "65536"]).is_ok());
    }

    #[test]
    fn tls_flags() {
        // In-process: the run's own certificate, for localhost.
        let s = parse(&["--tls"]).unwrap();
        let tls = s.tls.unwrap();
        assert_eq!(
            (tls.ca, tls.server_names),
            (None, vec!["localhost".to_string()])
        );
        assert!(parse(&[]).unwrap().tls.is_none());
        for door in ["native", "irc", "web"] {
            assert!(parse(&["--tls", "--door", door]).is_ok(), "{door}");
        }
        // At an address: --ca, and the name is the host as given.
        let s = parse(&["--tls", "--addr", "127.0.0.1:7879", "--ca", "/x/cert.pem"]).unwrap();
        let tls = s.tls.unwrap();
        assert_eq!(tls.server_names, ["127.0.0.1"]);
        assert_eq!(tls.ca.unwrap(), PathBuf::from("/x/cert.pem"));
        let s = parse(&[
            "--tls",
            "--door",
            "web",
            "--web-addr",
            "localhost:7881",
            "--ca",
            "c.pem",
        ])
        .unwrap();
        assert_eq!(s.tls.unwrap().server_names, ["localhost"]);
        let s = parse(&[
            "--tls",
            "--door",
            "irc",
            "--irc-addr",
            "[::1]:6697",
            "--ca",
            "c",
        ]);
        assert_eq!(s.unwrap().tls.unwrap().server_names, ["::1"]);
        // What doesn't go together.
        let err = parse(&["--tls", "--addr", "127.0.0.1:7879"]).unwrap_err();
        assert!(err.contains("needs --ca"), "{err}");
        let err = parse(&["--ca", "c.pem"]).unwrap_err();
        assert!(err.contains("--ca needs --tls"), "{err}");
        let err = parse(&["--tls", "--ca", "c.pem"]).unwrap_err();
        assert!(err.contains("in-process"), "{err}");
        // Still loopback only.
        assert!(parse(&["--tls", "--addr", "10.0.0.1:7879", "--ca", "c"]).is_err());
    }

    #[test]
    fn every_default_is_shown_the_same_way() {
        use clap::CommandFactory;
        let cmd = Args::command();
        for arg in cmd.get_arguments() {
            let name = arg.get_id().as_str();
            if matches!(name, "help" | "version") {
                continue;
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            if !arg.get_action().takes_values() {
                assert!(!help.contains("[default:"), "--{name} is a switch: {help}");
                continue;
            }
            // Every flag that takes a value says what happens without it,
            // once, at the end, in clap's own words; clap's copy is hidden.
            assert_eq!(help.matches("[default: ").count(), 1, "--{name}: {help}");
            assert!(help.ends_with(']'), "--{name}: {help}");
            assert!(!help.contains("Default"), "--{name}: {help}");
            let defaults = arg.get_default_values();
            if let Some(v) = defaults.first() {
                assert!(arg.is_hide_default_value_set(), "--{name}");
                let shown = format!("[default: {}]", v.to_string_lossy());
                assert!(
                    help.ends_with(&shown),
                    "--{name} says {help}, clap has {shown}"
                );
            }
        }
    }

    #[test]
    fn an_address_list_spreads_the_clients_over_its_nodes() {
        let s = parse(&["--addr", "127.0.0.1:7831,127.0.0.1:7832, localhost:7833"]).unwrap();
        let ports: Vec<u16> = s.addrs.iter().map(|a| a.port()).collect();
        assert_eq!(ports, [7831, 7832, 7833]);
        assert_eq!(s.nodes(), 3);
        // lg-i on address i mod N: round robin, so every node gets its
        // share and, with senders the first K clients, its senders.
        let nodes: Vec<u32> = (0..7).map(|i| node_of(i, 3)).collect();
        assert_eq!(nodes, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(node_of(5, 1), 0);
        assert_eq!(node_of(5, 0), 0);
        // Every door's flag takes a list.
        let s = parse(&[
            "--door",
            "irc",
            "--irc-addr",
            "127.0.0.1:6671,127.0.0.1:6672",
        ])
        .unwrap();
        assert_eq!(s.nodes(), 2);
        let s = parse(&["--door", "web", "--web-addr", "[::1]:7881,127.0.0.1:7882"]).unwrap();
        assert_eq!(s.nodes(), 2);
        // One address is one node, as before.
        assert_eq!(parse(&["--addr", "127.0.0.1:7831"]).unwrap().nodes(), 1);
    }

    #[test]
    fn a_bad_address_list_is_refused() {
        for (list, says) in [
            ("127.0.0.1:7831,", "an empty address"),
            (",127.0.0.1:7831", "an empty address"),
            ("127.0.0.1:7831,,127.0.0.1:7832", "an empty address"),
            ("127.0.0.1:7831,10.0.0.1:7832", "non-loopback"),
            ("127.0.0.1:7831,nonsense", "nonsense"),
            ("127.0.0.1:7831,127.0.0.1:7831", "twice"),
        ] {
            let err = parse(&["--addr", list]).unwrap_err();
            assert!(err.contains(says), "{list}: {err}");
        }
        let long = vec!["127.0.0.1:1"; MAX_NODES + 1].join(",");
        assert!(parse(&["--addr", &long]).unwrap_err().contains("at most"));
        // Every node needs a client.
        let three = "127.0.0.1:7831,127.0.0.1:7832,127.0.0.1:7833";
        let err = parse(&["--addr", three, "--clients", "2"]).unwrap_err();
        assert!(err.contains("at least the number of addresses"), "{err}");
        assert!(parse(&["--addr", three, "--clients", "3"]).is_ok());
    }

    #[test]
    fn broker_pids_are_one_or_a_list() {
        assert_eq!(parse(&["--broker-pid", "77"]).unwrap().broker_pids, [77]);
        let s = parse(&["--broker-pid", "77,78, 79"]).unwrap();
        assert_eq!(s.broker_pids, [77, 78, 79]);
        for bad in ["", "x", "77,", "0", "-1", "77,77", "4294967296"] {
            assert!(parse(&["--broker-pid", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn all_mode_over_several_nodes_owes_the_whole_fanout() {
        let two = "127.0.0.1:7831,127.0.0.1:7832";
        assert!(parse(&["--addr", two]).unwrap().ack_owes_fanout());
        // One node: the ACK is exact. Other modes: the ACK names whom it
        // reached. IRC: every message is owed to its fan-out anyway.
        assert!(!parse(&["--addr", "127.0.0.1:7831"])
            .unwrap()
            .ack_owes_fanout());
        assert!(!parse(&[]).unwrap().ack_owes_fanout());
        for mode in ["direct", "multi", "room"] {
            let s = parse(&["--addr", two, "--mode", mode]).unwrap();
            assert!(!s.ack_owes_fanout(), "{mode}");
        }
        let irc = parse(&["--door", "irc", "--irc-addr", two]).unwrap();
        assert!(!irc.ack_owes_fanout());
    }

    #[test]
    fn tls_over_several_nodes_checks_each_name() {
        let s = parse(&[
            "--tls",
            "--addr",
            "127.0.0.1:7831,localhost:7832",
            "--ca",
            "c.pem",
        ])
        .unwrap();
        assert_eq!(s.tls.unwrap().server_names, ["127.0.0.1", "localhost"]);
    }

    #[test]
    fn threads_never_exceed_clients() {
        let s = parse(&["--clients", "2", "--threads", "8"]).unwrap();
        assert_eq!(s.threads, 2);
    }
}
