//! Broker configuration: built-in defaults, the TOML file and its checks.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Every setting of the broker. `Config::default()` is the built-in
/// defaults, and `config/broker.toml` spells out the same values.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the native door.
    pub listen: String,
    /// Address of the IRC door; empty turns it off.
    pub irc_listen: String,
    /// Join every IRC user to `#all` (everyone) at registration.
    pub irc_join_all: bool,
    /// Address of the web door (chat page, WebSocket, metrics); empty turns
    /// it off.
    pub http_listen: String,
    /// Address of the native door over TLS; empty (the default) turns it off.
    pub tls_listen: String,
    /// Address of the IRC door over TLS; empty (the default) turns it off.
    pub irc_tls_listen: String,
    /// Address of the web door over TLS (https, wss); empty (the default)
    /// turns it off.
    pub https_listen: String,
    /// The TLS certificate chain, PEM (`broker gen-cert` makes one).
    pub tls_cert: String,
    /// The TLS private key, PEM.
    pub tls_key: String,
    /// Where accounts, stored messages and room history live (an embedded
    /// database); empty turns them off.
    pub data_dir: String,
    /// Messages each room keeps and replays on `JOIN`.
    pub room_history: usize,
    /// Stored messages per account; past it the oldest is dropped.
    pub mailbox_max: usize,
    /// Days a stored message is kept.
    pub mailbox_days: u64,
    /// The cluster's Redis (`redis://…`); empty: a single node.
    pub cluster: String,
    /// This node's name in the cluster; empty: the host name and the
    /// native door's port.
    pub node: String,
    /// Seconds between a node's heartbeats.
    pub cluster_heartbeat_secs: u64,
    /// Seconds after which a silent node is taken for dead.
    pub cluster_node_timeout_secs: u64,
    /// Name sent in `HELLO`.
    pub server_name: String,
    /// Worker (reader) threads; 0 means one per CPU core.
    pub workers: usize,
    /// Writer threads; 0 means one per CPU core.
    pub writers: usize,
    /// Most connections at once; one more gets `ERR SERVER_FULL`.
    pub max_connections: usize,
    /// Most connections from one IP address; 0 means no limit.
    pub max_connections_per_ip: usize,
    /// Longest header line in bytes (without CR LF).
    pub max_line: usize,
    /// Longest message body in bytes.
    pub max_body: usize,
    /// Most names in one `SEND`.
    pub max_targets: usize,
    /// Most rooms one connection may be in at once.
    pub max_rooms_per_user: usize,
    /// Bytes of frames that may wait for one connection, queued or taken
    /// by its writer but not yet written, before it is closed as a slow
    /// consumer.
    pub queue_bytes: usize,
    /// Seconds a reader may go without taking a byte while its queue is
    /// over `queue_bytes` before it is closed as a slow consumer.
    pub slow_after_secs: u64,
    /// Seconds a connection may stay without a name; 0 means forever.
    pub name_timeout_secs: u64,
    /// Seconds a started frame (header or body) may take to finish; 0
    /// means forever.
    pub frame_timeout_secs: u64,
    /// Idle seconds before TCP keepalive probes start; 0 turns keepalive off.
    pub keepalive_secs: u64,
    /// Frames per second a connection may send; 0 turns rate limiting off.
    pub rate_per_sec: u32,
    /// Frames a connection may send in a burst above the rate.
    pub rate_burst: u32,
    /// `RATE_LIMITED` errors after which a connection is kicked; 0 = never.
    pub rate_kick_after: u32,
    /// Bytes per second of output one connection's messages may cause,
    /// counted over every recipient; 0 turns the byte budget off.
    pub rate_bytes_per_sec: u64,
    /// Bytes of output one connection may cause in a burst.
    pub rate_bytes_burst: u64,
    /// New connections per second from one IP address; 0 means no limit.
    pub conn_rate_per_sec: u32,
    /// New connections one IP address may open in a burst.
    pub conn_rate_burst: u32,
    /// Seconds shutdown may take before remaining readers are cut off.
    pub shutdown_grace_secs: u64,
    /// Seconds between stats lines in the log; 0 turns them off.
    pub stats_interval_secs: u64,
    /// `error`, `warn`, `info` or `debug`.
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7878".to_string(),
            irc_listen: "127.0.0.1:6667".to_string(),
            irc_join_all: true,
            http_listen: "127.0.0.1:7880".to_string(),
            tls_listen: String::new(),
            irc_tls_listen: String::new(),
            https_listen: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            data_dir: "./data".to_string(),
            room_history: 100,
            mailbox_max: 1000,
            mailbox_days: 30,
            cluster: String::new(),
            node: String::new(),
            cluster_heartbeat_secs: 2,
            cluster_node_timeout_secs: 6,
            server_name: "chat".to_string(),
            workers: 0,
            writers: 0,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_line: 1024,
            max_body: 65_536,
            max_targets: 100,
            max_rooms_per_user: 50,
            queue_bytes: 8 * 1024 * 1024,
            slow_after_secs: 5,
            name_timeout_secs: 30,
            frame_timeout_secs: 15,
            keepalive_secs: 60,
            rate_per_sec: 100,
            rate_burst: 500,
            rate_kick_after: 20,
            rate_bytes_per_sec: 32 * 1024 * 1024,
            rate_bytes_burst: 64 * 1024 * 1024,
            conn_rate_per_sec: 100,
            conn_rate_burst: 1000,
            shutdown_grace_secs: 5,
            stats_interval_secs: 10,
            log_level: "info".to_string(),
        }
    }
}

/// A configuration that can't be used; the message names the file or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Keys a running broker can't change: a reload that changes them is
/// warned about and keeps the running value until a restart.
pub const RESTART_KEYS: [&str; 20] = [
    "cluster",
    "node",
    "cluster_heartbeat_secs",
    "cluster_node_timeout_secs",
    "data_dir",
    "room_history",
    "mailbox_max",
    "mailbox_days",
    "listen",
    "irc_listen",
    "http_listen",
    "tls_listen",
    "irc_tls_listen",
    "https_listen",
    "workers",
    "writers",
    "server_name",
    "max_line",
    "max_body",
    "max_targets",
];

/// One key whose value differs between two configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: String,
    /// Its value before, as TOML.
    pub from: String,
    /// Its value after, as TOML.
    pub to: String,
}

impl Config {
    /// The keys whose values differ from `other`'s, by key.
    pub fn changes(&self, other: &Config) -> Vec<Change> {
        let (Ok(toml::Value::Table(a)), Ok(toml::Value::Table(b))) =
            (toml::Value::try_from(self), toml::Value::try_from(other))
        else {
            return Vec::new();
        };
        a.iter()
            .filter_map(|(key, from)| {
                let to = b.get(key)?;
                (from != to).then(|| Change {
                    key: key.clone(),
                    from: from.to_string(),
                    to: to.to_string(),
                })
            })
            .collect()
    }

    /// This configuration with the [`RESTART_KEYS`] of `running` put back:
    /// what a reload can apply.
    pub fn keeping_restart_keys(mut self, running: &Config) -> Config {
        self.listen.clone_from(&running.listen);
        self.irc_listen.clone_from(&running.irc_listen);
        self.http_listen.clone_from(&running.http_listen);
        self.tls_listen.clone_from(&running.tls_listen);
        self.irc_tls_listen.clone_from(&running.irc_tls_listen);
        self.https_listen.clone_from(&running.https_listen);
        self.workers = running.workers;
        self.writers = running.writers;
        self.server_name.clone_from(&running.server_name);
        self.max_line = running.max_line;
        self.max_body = running.max_body;
        self.max_targets = running.max_targets;
        self.data_dir.clone_from(&running.data_dir);
        self.room_history = running.room_history;
        self.mailbox_max = running.mailbox_max;
        self.mailbox_days = running.mailbox_days;
        self.cluster.clone_from(&running.cluster);
        self.node.clone_from(&running.node);
        self.cluster_heartbeat_secs = running.cluster_heartbeat_secs;
        self.cluster_node_timeout_secs = running.cluster_node_timeout_secs;
        self
    }

    /// Reads and checks a TOML file; keys it doesn't set keep their defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Config::parse(&text)
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        if let Ok(table) = text.parse::<toml::Table>() {
            if let Some((section, _)) = table.iter().find(|(_, v)| v.is_table()) {
                return Err(ConfigError(format!(
                    "[{section}]: the file is a flat list of `key = value` lines, \
                     without [sections]; move the keys under [{section}] to the top"
                )));
            }
        }
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError(for_people(e.to_string().trim_end())))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("bad value for `{key}`: {why}")));
        check_addr("listen", &self.listen, "127.0.0.1:7878", None)?;
        check_addr(
            "irc_listen",
            &self.irc_listen,
            "127.0.0.1:6667",
            Some("no IRC door"),
        )?;
        check_addr(
            "http_listen",
            &self.http_listen,
            "127.0.0.1:7880",
            Some("no web door"),
        )?;
        for (key, example) in [
            ("tls_listen", "127.0.0.1:7879"),
            ("irc_tls_listen", "127.0.0.1:6697"),
            ("https_listen", "127.0.0.1:7443"),
        ] {
            let value = match key {
                "tls_listen" => &self.tls_listen,
                "irc_tls_listen" => &self.irc_tls_listen,
                _ => &self.https_listen,
            };
            check_addr(key, value, example, Some("no TLS on that door"))?;
            if !value.is_empty() && (self.tls_cert.is_empty() || self.tls_key.is_empty()) {
                return bad(
                    key,
                    "a TLS listener needs `tls_cert` and `tls_key` (PEM files); \
                     `broker gen-cert --out DIR` makes a self-signed pair to try it",
                );
            }
        }
        let redis_url =
            self.cluster.starts_with("redis://") || self.cluster.starts_with("rediss://");
        if !(self.cluster.is_empty() || redis_url) {
            return bad(
                "cluster",
                "a redis:// or rediss:// URL, or \"\" for a single node",
            );
        }
        let node_ok = self.node.len() <= 64
            && self
                .node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !node_ok {
            return bad(
                "node",
                "1 to 64 of A-Z a-z 0-9 _ - . : (or \"\" for the host name and port)",
            );
        }
        if self.cluster_heartbeat_secs == 0
            || self.cluster_node_timeout_secs < 2 * self.cluster_heartbeat_secs
        {
            return bad(
                "cluster_node_timeout_secs",
                "at least two heartbeats (cluster_heartbeat_secs, at least 1)",
            );
        }
        if self.mailbox_max == 0 {
            return bad("mailbox_max", "must be at least 1");
        }
        if self.mailbox_days == 0 {
            return bad("mailbox_days", "must be at least 1");
        }
        if self.server_name.is_empty() || !self.server_name.bytes().all(|b| b.is_ascii_graphic()) {
            return bad("server_name", "one word of printable ASCII");
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        if self.max_line < 64 {
            return bad("max_line", "must be at least 64 bytes");
        }
        if self.max_body == 0 {
            return bad("max_body", "must be at least 1 byte");
        }
        if self.max_targets == 0 {
            return bad("max_targets", "must be at least 1");
        }
        if self.max_rooms_per_user == 0 {
            return bad("max_rooms_per_user", "must be at least 1");
        }
        if self.queue_bytes < 1024 {
            return bad("queue_bytes", "must be at least 1024 bytes");
        }
        if self.slow_after_secs == 0 {
            return bad("slow_after_secs", "must be at least 1");
        }
        if self.rate_bytes_per_sec > 0 && self.rate_bytes_burst < self.max_body as u64 {
            return bad("rate_bytes_burst", "must be at least max_body");
        }
        if self.conn_rate_per_sec > 0 && self.conn_rate_burst == 0 {
            return bad("conn_rate_burst", "must be at least 1");
        }
        if self.workers > 1024 {
            return bad("workers", "at most 1024");
        }
        if self.writers > 1024 {
            return bad("writers", "at most 1024");
        }
        if crate::log::Level::parse(&self.log_level).is_none() {
            return bad("log_level", "one of error, warn, info, debug");
        }
        Ok(())
    }

    /// Worker threads after resolving 0 to the number of cores.
    pub fn worker_threads(&self) -> usize {
        resolve_threads(self.workers)
    }

    /// Writer threads after resolving 0 to the number of cores.
    pub fn writer_threads(&self) -> usize {
        resolve_threads(self.writers)
    }

    /// True if any TLS listener is set.
    pub fn wants_tls(&self) -> bool {
        !(self.tls_listen.is_empty()
            && self.irc_tls_listen.is_empty()
            && self.https_listen.is_empty())
    }

    /// The codec limits these settings imply.
    pub fn limits(&self) -> protocol::Limits {
        protocol::Limits {
            max_line: self.max_line,
            max_body: self.max_body,
            max_targets: self.max_targets,
        }
    }
}

/// The TOML parser's type names in words for people.
fn for_people(message: &str) -> String {
    message
        .replace("expected usize", "expected a whole number ≥ 0")
        .replace("expected u64", "expected a whole number ≥ 0")
        .replace("expected u32", "expected a whole number ≥ 0")
        .replace("expected a boolean", "expected true or false")
}

/// Checks an `IP:PORT` setting; `off` says what `""` means if it is
/// allowed. Host names are refused with a sentence rather than resolved:
/// which address `localhost` gives (127.0.0.1 or ::1) depends on the
/// machine, and a listener should say exactly where it listens.
fn check_addr(key: &str, value: &str, example: &str, off: Option<&str>) -> Result<(), ConfigError> {
    if value.parse::<std::net::SocketAddr>().is_ok() || (value.is_empty() && off.is_some()) {
        return Ok(());
    }
    let or_off = off.map_or(String::new(), |what| format!(", or \"\" for {what}"));
    let why = match value.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_err() && port.parse::<u64>().is_ok() => {
            format!("port {port} is out of range: a port is 0 to 65535")
        }
        Some((host, port))
            if port.parse::<u16>().is_ok()
                && host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_err() =>
        {
            format!(
                "`{host}` is a host name; use an IP address: 127.0.0.1 for this machine \
                 only, 0.0.0.0 for every interface (e.g. {example}{or_off})"
            )
        }
        _ => format!("expected IP:PORT, e.g. {example}{or_off}"),
    };
    Err(ConfigError(format!("bad value for `{key}`: {why}")))
}

fn resolve_threads(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_equals_defaults() {
        let text = include_str!("../../config/broker.toml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("listne = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.0.contains("listne"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::parse("queue_bytes = \"lots\"").unwrap_err();
        assert!(
            err.0.contains("queue_bytes") || err.0.contains("integer"),
            "{err}"
        );
        let err = Config::parse("listen = \"nowhere\"").unwrap_err();
        assert!(err.0.contains("listen"), "{err}");
        let err = Config::parse("log_level = \"loud\"").unwrap_err();
        assert!(err.0.contains("log_level"), "{err}");
        let err = Config::parse("node = \"my node\"").unwrap_err();
        assert!(err.0.contains("`node`"), "{err}");
        assert!(Config::parse("node = \"n1.eu-west:7801\"").is_ok());
    }

    #[test]
    fn messages_speak_to_people() {
        let msg = |text: &str| Config::parse(text).unwrap_err().0;
        assert!(msg("workers = \"x\"").contains("expected a whole number ≥ 0"));
        assert!(msg("workers = -1").contains("expected a whole number ≥ 0"));
        assert!(msg("irc_join_all = 3").contains("expected true or false"));
        assert!(msg("listen = \"127.0.0.1:70000\"")
            .contains("port 70000 is out of range: a port is 0 to 65535"));
        assert!(msg("listen = \"localhost:7878\"")
            .contains("`localhost` is a host name; use an IP address"));
        assert!(msg("irc_listen = \"[::1]\"").contains("expected IP:PORT"));
        assert!(msg("[server]\nlisten = \"127.0.0.1:1\"")
            .contains("the file is a flat list of `key = value` lines"));
        // An empty address turns a door off, but the native door is always on.
        assert!(Config::parse("irc_listen = \"\"\nhttp_listen = \"\"").is_ok());
        assert!(msg("listen = \"\"").contains("expected IP:PORT"));
        assert!(Config::parse("listen = \"[::1]:7878\"").is_ok());
    }
}
