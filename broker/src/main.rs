//! The `broker` binary: parse flags, load the config, run until a signal.

use broker::log::{self, Level};
use broker::{log_error, log_info, log_warn, Config};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// A multi-client TCP chat broker (wire protocol v1).
///
/// Without flags it listens on 127.0.0.1:7878 (native), 127.0.0.1:6667
/// (IRC) and 127.0.0.1:7880 (the chat page in a browser) with built-in
/// defaults. Stop it with Ctrl-C or SIGTERM: queued messages are delivered,
/// every client gets a SHUTDOWN notice, and it exits 0. A second Ctrl-C or
/// SIGTERM during that grace time stops it at once with exit code 130.
/// SIGHUP reloads the config file.
#[derive(Parser, Debug)]
#[command(name = "broker", version, about, long_about)]
struct Args {
    /// Read settings from this TOML file (see config/broker.toml); keys it
    /// leaves out keep their built-in defaults.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Listen on this address instead of the config's `listen`
    /// (e.g. 127.0.0.1:7878).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Open the IRC door on this address instead of the config's
    /// `irc_listen` (e.g. 127.0.0.1:6667); "" turns it off.
    #[arg(long, value_name = "ADDR")]
    irc_listen: Option<String>,
    /// Open the web door (chat page, WebSocket, metrics) on this address
    /// instead of the config's `http_listen` (e.g. 127.0.0.1:7880); ""
    /// turns it off.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// Join a cluster of brokers over this Redis (e.g.
    /// redis://127.0.0.1:6379) instead of the config's `cluster`.
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// This node's name in the cluster instead of the config's `node`.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Log level instead of the config's `log_level`: error, warn, info or
    /// debug.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Check this config file (with the other flags applied) and exit: 0 if
    /// it is good, 2 with the reason if not. Nothing is opened.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What to do instead of running the broker.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Look after the accounts in `data_dir` (with --config FILE for a
    /// data_dir other than ./data). Run these while the broker is stopped.
    Account {
        #[command(subcommand)]
        op: AccountOp,
    },
    /// Write a self-signed TLS certificate for localhost and 127.0.0.1
    /// (DIR/cert.pem, DIR/key.pem) to try the TLS listeners with.
    GenCert {
        /// The directory to write to (made if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

impl Args {
    /// A validation message about a key that a flag set names the flag.
    fn name_flags(&self, message: &str) -> String {
        let flags = [
            ("listen", "--listen", self.listen.is_some()),
            ("irc_listen", "--irc-listen", self.irc_listen.is_some()),
            ("http_listen", "--http-listen", self.http_listen.is_some()),
            ("log_level", "--log-level", self.log_level.is_some()),
            ("cluster", "--cluster", self.cluster.is_some()),
        ];
        let mut out = message.to_string();
        for (key, flag, given) in flags {
            if given {
                out = out.replace(
                    &format!("bad value for `{key}`"),
                    &format!("bad value for {flag}"),
                );
            }
        }
        out
    }

    /// Puts the flags that override config keys over `config`.
    fn apply_flags(&self, config: &mut Config) {
        if let Some(addr) = &self.listen {
            config.listen.clone_from(addr);
        }
        if let Some(irc) = &self.irc_listen {
            config.irc_listen.clone_from(irc);
        }
        if let Some(http) = &self.http_listen {
            config.http_listen.clone_from(http);
        }
        if let Some(level) = &self.log_level {
            config.log_level.clone_from(level);
        }
        if let Some(url) = &self.cluster {
            config.cluster.clone_from(url);
        }
        if let Some(node) = &self.node {
            config.node.clone_from(node);
        }
    }
}

/// `broker account …`.
#[derive(clap::Subcommand, Debug)]
enum AccountOp {
    /// List the accounts.
    List,
    /// Delete an account and the messages stored for it.
    Delete {
        /// The account's name (any case).
        name: String,
    },
    /// Set a new password: read from stdin (one line), so it appears in no
    /// process list or shell history.
    ResetPassword {
        /// The account's name (any case).
        name: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::GenCert { out }) = &args.command {
        return gen_cert(out);
    }
    if let Some(Command::Account { op }) = &args.command {
        return account(&args, op);
    }
    let checking = args.check_config.is_some();
    let mut config = match args.check_config.as_ref().or(args.config.as_ref()) {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("broker: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    args.apply_flags(&mut config);
    if let Err(e) = config.validate() {
        eprintln!("broker: {}", args.name_flags(&e.0));
        return ExitCode::from(2);
    }
    if let Err(e) = broker::tls_config(&config) {
        eprintln!("broker: {e}");
        return ExitCode::from(2);
    }
    if checking {
        println!("broker: config OK");
        return ExitCode::SUCCESS;
    }
    log::set_level(Level::parse(&config.log_level).unwrap_or(Level::Info));
    run(config, args)
}

fn run(config: Config, args: Args) -> ExitCode {
    match broker::sys::raise_nofile_limit() {
        Ok((before, after)) => log_info!("open-file limit {after} (was {before})"),
        Err(e) => log_warn!("cannot raise the open-file limit: {e}"),
    }
    let Ok(addr) = config.listen.parse::<SocketAddr>() else {
        eprintln!("broker: bad value for `listen`: {}", config.listen);
        return ExitCode::from(2);
    };
    let listener = match broker::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log_error!("cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let summary = format!(
        "workers={} writers={} max_connections={} max_line={} max_body={} max_targets={} queue_bytes={} slow_after_secs={} rate_per_sec={} rate_burst={} rate_bytes_per_sec={} conn_rate_per_sec={} frame_timeout_secs={}",
        config.worker_threads(),
        config.writer_threads(),
        config.max_connections,
        config.max_line,
        config.max_body,
        config.max_targets,
        config.queue_bytes,
        config.slow_after_secs,
        config.rate_per_sec,
        config.rate_burst,
        config.rate_bytes_per_sec,
        config.conn_rate_per_sec,
        config.frame_timeout_secs,
    );
    let config_grace = config.shutdown_grace_secs;
    let broker = match broker::start(listener, config) {
        Ok(b) => b,
        Err(e) => {
            log_error!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    log_info!("listening on {}", broker.local_addr());
    if let Some(irc) = broker.irc_addr() {
        log_info!("IRC door on {irc}");
    }
    if let Some(web) = broker.http_addr() {
        log_info!("web door on {web}: the chat page is http://{web}/");
    }
    if let Some(a) = broker.tls_addr() {
        log_info!("TLS on {a}");
    }
    if let Some(a) = broker.irc_tls_addr() {
        log_info!("IRC over TLS on {a}");
    }
    if let Some(a) = broker.https_addr() {
        log_info!("web door over TLS on {a}: https://{a}/");
    }
    log_info!("{summary}");
    handle_signals(&broker, config_grace, args);
    let report = broker.wait();
    log_info!(
        "shut down: {} clients notified, {} cut off at the end of the grace time",
        report.notified,
        report.cut_off
    );
    ExitCode::SUCCESS
}

/// Watches signals on a thread of its own. SIGINT (Ctrl-C) and SIGTERM
/// start the graceful shutdown; a second one means the operator will not
/// wait for it (a client that never reads would hold it for the whole grace
/// time), so the process ends at once with 130. SIGHUP reloads the config
/// file: what can change live applies at once, what can't is named in a
/// warning and kept, and a file that doesn't load changes nothing.
///
/// signal-hook rather than ctrlc here: ctrlc's SIGTERM support comes with
/// SIGHUP as a third way to stop, and SIGHUP must reload.
fn handle_signals(broker: &broker::Broker, grace: u64, args: Args) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            log_warn!("cannot catch signals ({e}); stop with SIGKILL");
            return;
        }
    };
    let stop = broker.shutdown_handle();
    let reloader = broker.reload_handle();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    reload(&reloader, &args);
                } else if stopping {
                    log_warn!("second signal: stopping now without waiting for slow readers");
                    std::process::exit(130);
                } else {
                    stopping = true;
                    log_info!("signal received: shutting down (grace {grace} s)");
                    stop.trigger();
                }
            }
        });
    if let Err(e) = spawned {
        log_warn!("cannot start the signal thread ({e}); stop with SIGKILL");
    }
}

fn reload(handle: &broker::ReloadHandle, args: &Args) {
    let Some(path) = &args.config else {
        log_warn!(
            "SIGHUP: the broker runs on built-in defaults (no --config FILE); nothing to reload"
        );
        return;
    };
    let mut config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            log_error!("SIGHUP: {e}; keeping the running config");
            return;
        }
    };
    args.apply_flags(&mut config);
    match handle.reload(config) {
        Ok(r) => {
            for c in &r.kept {
                log_warn!(
                    "SIGHUP: `{}` changed ({} -> {}) but takes a restart; keeping {}",
                    c.key,
                    c.from,
                    c.to,
                    c.from
                );
            }
            let applied: Vec<String> = r
                .applied
                .iter()
                .map(|c| format!("{} {} -> {}", c.key, c.from, c.to))
                .collect();
            if applied.is_empty() {
                log_info!("SIGHUP: reloaded {}: nothing changed", path.display());
            } else {
                log_info!(
                    "SIGHUP: reloaded {}: {}",
                    path.display(),
                    applied.join(", ")
                );
            }
        }
        Err(e) => log_error!("SIGHUP: {e}; keeping the running config"),
    }
}

/// `broker gen-cert --out DIR`.
fn gen_cert(dir: &std::path::Path) -> ExitCode {
    match broker::gen_cert(dir) {
        Ok((cert, key)) => {
            println!("wrote {} and {}", cert.display(), key.display());
            println!("a self-signed certificate for localhost and 127.0.0.1; to use it, add to the config:");
            println!("  tls_listen = \"127.0.0.1:7879\"");
            println!("  tls_cert = \"{}\"", cert.display());
            println!("  tls_key = \"{}\"", key.display());
            println!(
                "and connect with: client --tls --ca {} --addr 127.0.0.1:7879",
                cert.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::from(1)
        }
    }
}

/// `broker account list|delete NAME|reset-password NAME`.
fn account(args: &Args, op: &AccountOp) -> ExitCode {
    let config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("broker: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let done = match op {
        AccountOp::List => broker::admin::list(&config),
        AccountOp::Delete { name } => broker::admin::delete(&config, name),
        AccountOp::ResetPassword { name } => {
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                Ok(_) => broker::admin::reset_password(
                    &config,
                    name,
                    line.trim_end_matches(['\r', '\n']),
                ),
                Err(e) => Err(format!("cannot read the new password from stdin: {e}")),
            }
        }
    };
    match done {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::from(1)
        }
    }
}
