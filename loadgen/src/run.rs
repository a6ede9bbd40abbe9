//! The monitor: starts the broker if needed, spawns the network threads,
//! drives the phases (register → warm-up → measure → drain), samples CPU and
//! memory (of every `--broker-pid` process, summed), shows progress and
//! assembles the report.

use crate::args::{Door, Settings};
use crate::console::{self, Console, Phase, Reading, Style};
use crate::error::Error;
use crate::procfs;
use crate::report::{BrokerSource, Latency, Report};
use crate::shared::{Shared, ThreadLive};
use crate::tls::{self, RunCert};
use crate::worker::{latency_histogram, Node, ThreadResult, Worker, WAKE};
use hdrhistogram::Histogram;
use mio::{Poll, Waker};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

/// How often the monitor looks at the counters.
const TICK: Duration = Duration::from_millis(5);
/// Longest wait, after every client registered on several nodes, for each
/// node to list them all.
const SETTLE_LIMIT_NS: u64 = 10_000_000_000;
/// How often broker memory is sampled during the measured window.
const RSS_EVERY_NS: u64 = 100_000_000;

/// Runs one load test as `settings` describe and reports what happened.
pub fn run(settings: Settings) -> Result<Report, Error> {
    let in_process = settings.addrs.is_empty();
    // One descriptor per client, twice when the broker's end is ours too.
    let per_client = if in_process { 2 } else { 1 };
    let needed = (settings.clients as u64) * per_client + 64 + 4 * settings.threads as u64;
    crate::rlimit::raise_nofile(needed).map_err(Error::Usage)?;

    // --tls with the in-process broker: a certificate for this run (its
    // directory goes when `cert` is dropped, after the broker stopped).
    let cert = match (&settings.tls, in_process) {
        (Some(_), true) => Some(RunCert::generate().map_err(Error::Usage)?),
        _ => None,
    };
    // One client configuration, named for each node's host as given.
    let clients: Vec<Option<tls::Client>> = match &settings.tls {
        Some(t) => {
            let ca = t.ca.as_deref().or(cert.as_ref().map(|c| c.cert.as_path()));
            let ca = ca.ok_or_else(|| Error::Usage("--tls needs --ca".into()))?;
            let mut names = t.server_names.iter().map(|n| tls::server_name(n));
            let first = names
                .next()
                .ok_or_else(|| Error::Usage("--tls: no server name".into()))?
                .map_err(Error::Usage)?;
            let base = tls::Client::from_pem(ca, first).map_err(Error::Usage)?;
            let mut clients = vec![Some(base.clone())];
            for name in names {
                clients.push(Some(base.for_name(name.map_err(Error::Usage)?)));
            }
            clients
        }
        None => Vec::new(),
    };
    let broker = if in_process {
        Some(start_broker(&settings, cert.as_ref())?)
    } else {
        None
    };
    let addrs = match &broker {
        Some(b) => vec![door_addr(b, settings.door, cert.is_some())?],
        None => settings.addrs.clone(),
    };
    let nodes: Vec<Node> = addrs
        .iter()
        .enumerate()
        .map(|(i, &addr)| Node {
            addr,
            tls: clients.get(i).cloned().flatten(),
        })
        .collect();
    if nodes.is_empty() || (settings.tls.is_some() && nodes.iter().any(|n| n.tls.is_none())) {
        return Err(Error::Usage("no broker address".into()));
    }
    let source = match (settings.broker_pids.is_empty(), in_process) {
        (false, _) => BrokerSource::Pids(settings.broker_pids.clone()),
        (true, true) => BrokerSource::InProcess,
        (true, false) => BrokerSource::None,
    };

    let mut polls = Vec::with_capacity(settings.threads);
    let mut wakers = Vec::with_capacity(settings.threads);
    for _ in 0..settings.threads {
        let poll = Poll::new().map_err(|e| Error::io("create poller", e))?;
        let waker = Waker::new(poll.registry(), WAKE).map_err(|e| Error::io("create waker", e))?;
        polls.push(poll);
        wakers.push(waker);
    }
    let shared = Arc::new(Shared::new(settings.senders, wakers));
    let settings = Arc::new(settings);
    // What will run comes first, before any client connects or any
    // progress is shown.
    let scenario = console::scenario(&settings, &addrs, in_process);
    let mut console = Console::new(Style::for_stderr());
    console.header(&scenario);
    let hist = latency_histogram().map_err(|e| Error::Usage(format!("latency histogram: {e}")))?;

    // All threads leave their loops before any closes its sockets, so no
    // receiver mistakes the end of the run for clients leaving.
    let barrier = Arc::new(Barrier::new(settings.threads));
    let connect_start = shared.now_ns();
    let mut handles = Vec::with_capacity(settings.threads);
    for (id, poll) in polls.into_iter().enumerate() {
        let (shared2, settings2, barrier2) = (shared.clone(), settings.clone(), barrier.clone());
        let (hist2, nodes2) = (hist.clone(), nodes.clone());
        let h = thread::Builder::new()
            .name(format!("lg-net-{id}"))
            .spawn(move || {
                let mut w = Worker::new(id, poll, shared2, settings2, nodes2, hist2);
                let result = w.run();
                barrier2.wait();
                drop(w);
                result
            })
            .map_err(|e| Error::io("spawn a network thread", e))?;
        handles.push(h);
    }

    let mut mon = Monitor {
        shared: &shared,
        settings: &settings,
        console,
        last_draw: 0,
        last_received: 0,
        source: source.clone(),
        clk: procfs::clock_ticks_per_sec() as f64,
        main_tid: procfs::current_tid(),
        peak_rss_kib: None,
        last_rss: 0,
    };

    // Register everyone, bounded.
    let reg_deadline = connect_start + 30_000_000_000 + settings.clients as u64 * 5_000_000;
    let registered_all = mon.wait_until(reg_deadline, |m| {
        let r = m.shared.registered.load(Ordering::Acquire);
        r >= m.settings.clients || m.shared.failed.load(Ordering::Acquire) > 0
    });
    let registered = shared.registered.load(Ordering::Acquire);
    let mut failure = None;
    let mut connect_ms = None;
    let mut settle_ms = None;
    let mut window = None;
    if registered_all && registered >= settings.clients {
        let last = shared.last_registered_ns.load(Ordering::Acquire);
        connect_ms = Some(last.saturating_sub(connect_start) as f64 / 1e6);
        match mon.settle(last) {
            Ok(ms) => {
                settle_ms = ms;
                window = Some(mon.measure());
            }
            Err(why) => failure = Some(why),
        }
    } else if shared.failed.load(Ordering::Acquire) == 0 {
        failure = Some(format!(
            "registration timed out: {registered} of {} clients registered",
            settings.clients
        ));
    }
    shared.stop.store(true, Ordering::Release);
    shared.wake_all();
    mon.console.clear();

    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        match h.join() {
            Ok(r) => results.push(r),
            Err(_) => failure = Some("a network thread panicked".into()),
        }
    }
    if failure.is_none() {
        failure = shared.failure.lock().ok().and_then(|f| f.clone());
    }
    let broker_counters = broker.map(|b| {
        let st = b.stats();
        let _ = b.shutdown();
        (st.messages, st.deliveries, st.slow_consumers)
    });
    Ok(build_report(
        &settings,
        scenario,
        &results,
        registered,
        connect_ms,
        settle_ms,
        window,
        source,
        broker_counters,
        failure,
    ))
}

/// The in-process broker's address for `door`, its TLS listener's with
/// `tls`.
fn door_addr(b: &broker::Broker, door: Door, tls: bool) -> Result<std::net::SocketAddr, Error> {
    let (addr, name) = match (door, tls) {
        (Door::Native, false) => (Some(b.local_addr()), "native door"),
        (Door::Native, true) => (b.tls_addr(), "native TLS listener"),
        (Door::Irc, false) => (b.irc_addr(), "IRC door"),
        (Door::Irc, true) => (b.irc_tls_addr(), "IRC TLS listener"),
        (Door::Web, false) => (b.http_addr(), "web door"),
        (Door::Web, true) => (b.https_addr(), "https listener"),
    };
    addr.ok_or_else(|| Error::Usage(format!("the in-process broker has no {name}")))
}

/// Starts the broker in-process on free loopback ports, with its TLS
/// listeners open on `cert` if there is one.
fn start_broker(settings: &Settings, cert: Option<&RunCert>) -> Result<broker::Broker, Error> {
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let listener = broker::bind(any).map_err(Error::Broker)?;
    // Keep the broker's per-connection log lines out of the report.
    broker::log::set_level(broker::log::Level::Warn);
    // Flood control off, as in benches/broker-perf.toml: the load is the
    // point, and it comes from one address.
    let mut config = broker::Config {
        rate_per_sec: 0,
        rate_bytes_per_sec: 0,
        conn_rate_per_sec: 0,
        // Every door on a free port: never the configured defaults (6667,
        // 7880), which a broker of the machine's own may hold.
        irc_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        // Nothing to keep: no database in the working directory.
        data_dir: String::new(),
        stats_interval_secs: 0,
        log_level: "warn".into(),
        ..broker::Config::default()
    };
    if let Some(cert) = cert {
        config.tls_listen = "127.0.0.1:0".into();
        config.irc_tls_listen = "127.0.0.1:0".into();
        config.https_listen = "127.0.0.1:0".into();
        config.tls_cert = cert.cert.display().to_string();
        config.tls_key = cert.key.display().to_string();
    }
    config.max_connections = config.max_connections.max(settings.clients + 16);
    if let Ok(a) = listener.local_addr() {
        config.listen = a.to_string();
    }
    broker::start(listener, config).map_err(Error::Broker)
}

/// What the monitor measured over the measured window.
#[derive(Debug, Clone)]
struct Window {
    broker_rss_connected_mib: Option<f64>,
    loadgen_cpu_s: Option<f64>,
    broker_cpu_s: Option<f64>,
    /// Each `--broker-pid` process's CPU seconds (all of them, or none).
    broker_cpu_s_per_pid: Option<Vec<f64>>,
    broker_rss_mib: Option<f64>,
}

/// CPU readings at one instant, in clock ticks.
#[derive(Debug, Clone)]
struct CpuSample {
    loadgen: Option<u64>,
    process: Option<u64>,
    /// Per `--broker-pid` process, in order.
    brokers: Vec<Option<u64>>,
}

struct Monitor<'a> {
    shared: &'a Shared,
    settings: &'a Settings,
    console: Console,
    last_draw: u64,
    last_received: u64,
    source: BrokerSource,
    clk: f64,
    main_tid: Option<u32>,
    peak_rss_kib: Option<u64>,
    last_rss: u64,
}

impl Monitor<'_> {
    /// Ticks until `done` says so (true) or the deadline passes (false).
    fn wait_until(&mut self, deadline: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let now = self.shared.now_ns();
            if now >= deadline {
                return false;
            }
            self.tick(now);
            let left = Duration::from_nanos(deadline - now);
            thread::sleep(left.min(TICK));
        }
    }

    /// Several nodes (not over IRC): has one client per node ask for
    /// `LIST` until every node names every client, so that no message is
    /// sent to a name its sender's node hasn't heard of yet. Returns how
    /// long that took after the last registration (`last`, ns), `None`
    /// with one node.
    fn settle(&mut self, last: u64) -> Result<Option<f64>, String> {
        let nodes = self.settings.nodes();
        if nodes < 2 || self.settings.door == Door::Irc {
            return Ok(None);
        }
        self.shared.settle.store(true, Ordering::Release);
        self.shared.wake_all();
        let deadline = self.shared.now_ns() + SETTLE_LIMIT_NS;
        let all = self.wait_until(deadline, |m| {
            m.shared.settled.load(Ordering::Acquire) >= nodes
                || m.shared.failed.load(Ordering::Acquire) > 0
        });
        let settled = self.shared.settled.load(Ordering::Acquire);
        if all && settled >= nodes {
            let ms = self.shared.now_ns().saturating_sub(last) as f64 / 1e6;
            return Ok(Some(ms));
        }
        Err(format!(
            "{settled} of {nodes} nodes listed all {} clients within {} s (is every \
             address a node of one cluster?)",
            self.settings.clients,
            SETTLE_LIMIT_NS / 1_000_000_000
        ))
    }

    /// Starts the senders and watches warm-up, the measured window and the
    /// drain; returns the window's CPU and memory figures.
    fn measure(&mut self) -> Window {
        let s = self.settings;
        // Every client is connected and registered, nothing sent yet: the
        // broker's memory now, against its memory before the run, is what
        // the connections cost.
        let broker_rss_connected_mib = self.rss_kib().map(|k| k as f64 / 1024.0);
        let start = self.shared.now_ns();
        let warm_end = start + dur_ns(s.warmup);
        let send_end = warm_end + dur_ns(s.duration);
        self.shared.warm_end_ns.store(warm_end, Ordering::Release);
        self.shared.send_end_ns.store(send_end, Ordering::Release);
        self.shared.start_ns.store(start, Ordering::Release);
        self.shared.wake_all();

        self.wait_until(warm_end, |_| false);
        let a = self.cpu_sample();
        self.sample_rss();
        self.wait_until(send_end, |_| false);
        let b = self.cpu_sample();
        self.sample_rss();
        self.wait_until(send_end + dur_ns(s.drain), Monitor::drained);

        let ticks = |x: Option<u64>, y: Option<u64>| Some(y?.checked_sub(x?)? as f64 / self.clk);
        let loadgen = ticks(a.loadgen, b.loadgen);
        // Every process or none: a sum that leaves one out would flatter.
        let broker_cpu_s_per_pid = match self.source {
            BrokerSource::Pids(_) => (a.brokers.iter().zip(&b.brokers))
                .map(|(&x, &y)| ticks(x, y))
                .collect::<Option<Vec<f64>>>(),
            _ => None,
        };
        let broker_cpu_s = match self.source {
            BrokerSource::None => None,
            BrokerSource::Pids(_) => broker_cpu_s_per_pid.as_ref().map(|v| v.iter().sum()),
            BrokerSource::InProcess => {
                ticks(a.process, b.process).and_then(|p| Some((p - loadgen?).max(0.0)))
            }
        };
        let broker_rss_mib = match self.source {
            BrokerSource::Pids(_) => self.peak_rss_kib.map(|k| k as f64 / 1024.0),
            _ => None,
        };
        Window {
            broker_rss_connected_mib,
            loadgen_cpu_s: loadgen,
            broker_cpu_s,
            broker_cpu_s_per_pid,
            broker_rss_mib,
        }
    }

    /// True once every sender has stopped, every SEND has its reply and
    /// every promised delivery has arrived.
    fn drained(&self) -> bool {
        let live = || self.shared.threads.iter().map(|t| &t.0);
        if !live().all(|t| t.done_sending.load(Ordering::Acquire)) {
            return false;
        }
        // `replies` is stored after `expected` (Release): load it first.
        let replies: u64 = live().map(|t| t.replies.load(Ordering::Acquire)).sum();
        let sent: u64 = live().map(|t| t.sent.load(Ordering::Relaxed)).sum();
        let expected: u64 = live().map(|t| t.expected.load(Ordering::Relaxed)).sum();
        let unique: u64 = live().map(|t| t.unique.load(Ordering::Relaxed)).sum();
        replies == sent && unique >= expected
    }

    fn tick(&mut self, now: u64) {
        if now.saturating_sub(self.last_rss) >= RSS_EVERY_NS {
            self.last_rss = now;
            let start = self.shared.start_ns.load(Ordering::Acquire);
            let warm_end = self.shared.warm_end_ns.load(Ordering::Acquire);
            let send_end = self.shared.send_end_ns.load(Ordering::Acquire);
            if start != crate::shared::NOT_STARTED && now >= warm_end && now < send_end {
                self.sample_rss();
            }
        }
        if now.saturating_sub(self.last_draw) >= self.console.style().every_ns() {
            self.draw(now);
        }
    }

    fn sample_rss(&mut self) {
        if let Some(kib) = self.rss_kib() {
            self.peak_rss_kib = Some(self.peak_rss_kib.map_or(kib, |p| p.max(kib)));
        }
    }

    /// The brokers' resident memory now (summed), if they are processes
    /// of their own; `None` if one can't be read.
    fn rss_kib(&self) -> Option<u64> {
        match &self.source {
            BrokerSource::Pids(pids) => pids
                .iter()
                .map(|pid| procfs::rss_kib(&PathBuf::from(format!("/proc/{pid}/status"))))
                .sum(),
            _ => None,
        }
    }

    fn cpu_sample(&self) -> CpuSample {
        let mut tids: Vec<u32> = self
            .shared
            .threads
            .iter()
            .map(|t| t.0.tid.load(Ordering::Acquire))
            .collect();
        tids.extend(self.main_tid);
        let loadgen = if tids.contains(&0) {
            None
        } else {
            tids.iter()
                .map(|&t| procfs::cpu_ticks(&procfs::thread_stat_path(t)))
                .sum::<Option<u64>>()
        };
        let brokers = match &self.source {
            BrokerSource::Pids(pids) => pids
                .iter()
                .map(|pid| procfs::cpu_ticks(&PathBuf::from(format!("/proc/{pid}/stat"))))
                .collect(),
            _ => Vec::new(),
        };
        CpuSample {
            loadgen,
            process: procfs::cpu_ticks(&PathBuf::from("/proc/self/stat")),
            brokers,
        }
    }

    /// Shows the progress reading of `now` on stderr.
    fn draw(&mut self, now: u64) {
        let dt = now.saturating_sub(self.last_draw).max(1) as f64 / 1e9;
        self.last_draw = now;
        let sum = |f: fn(&ThreadLive) -> u64| -> u64 {
            self.shared.threads.iter().map(|t| f(&t.0)).sum()
        };
        let received = sum(|t| t.received.load(Ordering::Relaxed));
        let sent = sum(|t| t.sent.load(Ordering::Relaxed));
        let expected = sum(|t| t.expected.load(Ordering::Relaxed));
        let per_sec = received.saturating_sub(self.last_received) as f64 / dt;
        self.last_received = received;
        let start = self.shared.start_ns.load(Ordering::Acquire);
        let reading = if start == crate::shared::NOT_STARTED {
            Reading::Registering {
                registered: self.shared.registered.load(Ordering::Relaxed),
                clients: self.settings.clients,
            }
        } else {
            let warm_end = self.shared.warm_end_ns.load(Ordering::Acquire);
            let send_end = self.shared.send_end_ns.load(Ordering::Acquire);
            let phase = if now < warm_end {
                Phase::WarmUp
            } else if now < send_end {
                Phase::Measuring
            } else {
                Phase::Draining
            };
            Reading::Sending {
                phase,
                elapsed_s: now.saturating_sub(start) as f64 / 1e9,
                sent,
                delivered: received,
                expected,
                per_sec,
            }
        };
        self.console.show(&reading);
    }
}

/// The percentiles of the threads' histograms together (`None` if no
/// thread has one, or none has samples).
fn percentiles<'a>(hists: impl Iterator<Item = Option<&'a Histogram<u64>>>) -> Option<Latency> {
    let mut all: Option<Histogram<u64>> = None;
    for h in hists.flatten() {
        match &mut all {
            None => all = Some(h.clone()),
            Some(a) => {
                let _ = a.add(h);
            }
        }
    }
    let h = all.filter(|h| !h.is_empty())?;
    let us = |ns: u64| ns as f64 / 1000.0;
    Some(Latency {
        p50: us(h.value_at_quantile(0.50)),
        p90: us(h.value_at_quantile(0.90)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        max: us(h.max()),
        samples: h.len(),
    })
}

fn dur_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 4)
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    s: &Settings,
    scenario: String,
    results: &[ThreadResult],
    registered: usize,
    connect_ms: Option<f64>,
    settle_ms: Option<f64>,
    window: Option<Window>,
    source: BrokerSource,
    broker_counters: Option<(u64, u64, u64)>,
    failure: Option<String>,
) -> Report {
    let sum = |f: fn(&ThreadResult) -> u64| -> u64 { results.iter().map(f).sum() };
    let sent = sum(|r| r.sent);
    let replies = sum(|r| r.replies);
    let expected = sum(|r| r.expected);
    let received = sum(|r| r.received);
    let duplicates = sum(|r| r.duplicates);
    let latency = percentiles(results.iter().map(|r| Some(&r.hist)));
    let latency_same = percentiles(results.iter().map(|r| r.hist_same.as_ref()));
    let latency_cross = percentiles(results.iter().map(|r| r.hist_cross.as_ref()));
    let secs = s.duration.as_secs_f64();
    let measured = window.is_some();
    let per_sec = |n: u64| if measured { n as f64 / secs } else { 0.0 };
    Report {
        scenario,
        clients: s.clients,
        senders: s.senders,
        mode: s.mode.as_str(),
        door: s.door.as_str(),
        tls: s.tls.is_some(),
        targets: s.targets,
        size: s.size,
        duration_s: secs,
        warmup_s: s.warmup.as_secs_f64(),
        rate: s.rate,
        window: s.window,
        refill: s.refill,
        threads: s.threads,
        nodes: s.nodes(),
        registered,
        sent,
        expected,
        received,
        lost: expected.saturating_sub(received - duplicates),
        duplicates,
        reordered: sum(|r| r.reordered),
        unacked: sent - replies.min(sent),
        send_errors: sum(|r| r.send_errors),
        first_send_error: results.iter().find_map(|r| r.first_send_error.clone()),
        disconnects: sum(|r| r.disconnects),
        left: sum(|r| r.left),
        protocol_errors: sum(|r| r.protocol_errors),
        ack_mismatches: sum(|r| r.ack_mismatches),
        foreign: sum(|r| r.foreign),
        deliveries_per_sec: per_sec(sum(|r| r.window_deliveries)),
        mb_per_sec: per_sec(sum(|r| r.window_bytes)) / 1e6,
        latency,
        latency_same,
        latency_cross,
        connect_ms,
        settle_ms,
        loadgen_cpu_s: window.as_ref().and_then(|w| w.loadgen_cpu_s),
        broker_cpu_s: window.as_ref().and_then(|w| w.broker_cpu_s),
        broker_cpu_s_per_pid: window.as_ref().and_then(|w| w.broker_cpu_s_per_pid.clone()),
        broker_rss_mib: window.as_ref().and_then(|w| w.broker_rss_mib),
        broker_rss_connected_mib: window.as_ref().and_then(|w| w.broker_rss_connected_mib),
        broker_source: source,
        broker_counters,
        failure,
    }
}
