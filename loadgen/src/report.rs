//! The outcome of a run: the numbers, the verdict, the readable summary and
//! the one-object JSON form.

use std::fmt::Write as _;

/// End-to-end latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Deliveries measured.
    pub samples: u64,
}

/// Where broker CPU and memory figures come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerSource {
    /// Nothing measured (external broker without `--broker-pid`).
    None,
    /// The in-process broker: CPU is this process minus the loadgen threads;
    /// RSS can't be separated and is not reported.
    InProcess,
    /// `/proc/<pid>` of each broker given with `--broker-pid` (one or
    /// more; CPU and memory are their sums).
    Pids(Vec<u32>),
}

/// Everything a run found out.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The scenario header printed before the run (see
    /// [`crate::console::scenario`]); the summary opens with it.
    pub scenario: String,
    /// Clients asked for.
    pub clients: usize,
    /// Senders asked for.
    pub senders: usize,
    /// `all`, `direct`, `multi` or `room`.
    pub mode: &'static str,
    /// `native`, `irc` or `web`.
    pub door: &'static str,
    /// The clients connected over TLS (`--tls`).
    pub tls: bool,
    /// Targets per message (multi mode).
    pub targets: usize,
    /// Body size.
    pub size: usize,
    /// Measured window in seconds.
    pub duration_s: f64,
    /// Warm-up in seconds.
    pub warmup_s: f64,
    /// Offered rate per sender, open loop.
    pub rate: Option<f64>,
    /// Closed-loop window (messages per sender).
    pub window: u64,
    /// Closed loop: fewest messages a sender writes at once.
    pub refill: u64,
    /// Network threads.
    pub threads: usize,
    /// Broker nodes the clients were spread over (addresses given; 1 for
    /// the in-process broker).
    pub nodes: usize,
    /// Clients that registered.
    pub registered: usize,
    /// Messages sent (whole run, warm-up included).
    pub sent: u64,
    /// Deliveries the broker promised to our clients (sum of ACK `<queued>`,
    /// each capped at the fan-out: extra recipients are not ours).
    pub expected: u64,
    /// Loadgen messages received (duplicates included).
    pub received: u64,
    /// Expected deliveries that never arrived within the drain time.
    pub lost: u64,
    /// A sender's message seen twice in a row by one receiver.
    pub duplicates: u64,
    /// A sender's message older than one already seen by that receiver.
    pub reordered: u64,
    /// SENDs that got no ACK or ERR before the drain deadline.
    pub unacked: u64,
    /// `ERR` replies to SEND.
    pub send_errors: u64,
    /// The first of them, as the broker put it (one thread's first).
    pub first_send_error: Option<String>,
    /// Connections the broker closed or that failed during the run.
    pub disconnects: u64,
    /// `LEFT` naming an `lg-` client after sending started. Reported, not a
    /// failure by itself: a lost connection of ours shows up (reliably) as a
    /// disconnect, while a LEFT may be the tail of a previous run's exit.
    pub left: u64,
    /// Malformed frames from the broker.
    pub protocol_errors: u64,
    /// ACKs whose `<queued>` differed from the expected fan-out (other
    /// users online, or one of ours left).
    pub ack_mismatches: u64,
    /// `MSG`s whose body was not a loadgen payload.
    pub foreign: u64,
    /// Deliveries per second during the measured window.
    pub deliveries_per_sec: f64,
    /// Payload megabytes (10^6 bytes) per second delivered in the window.
    pub mb_per_sec: f64,
    /// Latency of deliveries of messages sent in the measured window.
    pub latency: Option<Latency>,
    /// Several nodes: the part of `latency` where sender and receiver were
    /// connected to the same node.
    pub latency_same: Option<Latency>,
    /// Several nodes: the part where they were on different nodes.
    pub latency_cross: Option<Latency>,
    /// Time to connect and register all clients.
    pub connect_ms: Option<f64>,
    /// Several nodes: time from the last registration until every node
    /// listed every client (see [`crate::shared::Shared::settle`]).
    pub settle_ms: Option<f64>,
    /// CPU seconds of the loadgen's own threads over the measured window.
    pub loadgen_cpu_s: Option<f64>,
    /// Broker CPU seconds over the measured window (the sum over
    /// `--broker-pid`'s processes).
    pub broker_cpu_s: Option<f64>,
    /// With `--broker-pid`: each process's share of `broker_cpu_s`, in
    /// the order given.
    pub broker_cpu_s_per_pid: Option<Vec<f64>>,
    /// Broker peak RSS sampled over the measured window (of the sum over
    /// `--broker-pid`'s processes).
    pub broker_rss_mib: Option<f64>,
    /// Broker RSS once every client had registered, before sending
    /// (compare with its RSS before the run for the cost of a connection).
    pub broker_rss_connected_mib: Option<f64>,
    /// Where the broker figures come from.
    pub broker_source: BrokerSource,
    /// The in-process broker's own counters at the end, if it was ours:
    /// `(messages, deliveries, slow_consumers)`.
    pub broker_counters: Option<(u64, u64, u64)>,
    /// Why the run was cut short, if it was.
    pub failure: Option<String>,
}

impl Report {
    /// Deliveries per broker CPU-second, when both are known.
    pub fn deliveries_per_broker_cpu_s(&self) -> Option<f64> {
        let cpu = self.broker_cpu_s.filter(|&c| c > 0.0)?;
        Some(self.deliveries_per_sec * self.duration_s / cpu)
    }

    /// Every reason this run counts as failed; empty means success.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(f) = &self.failure {
            p.push(f.clone());
        }
        if self.registered < self.clients {
            p.push(format!(
                "only {} of {} clients registered",
                self.registered, self.clients
            ));
        }
        let counts = [
            (self.lost, "lost"),
            (self.duplicates, "duplicated"),
            (self.reordered, "reordered"),
            (self.unacked, "never acknowledged"),
            (
                self.send_errors,
                "SENDs refused with ERR (rate limited? run the broker with rate_per_sec = 0)",
            ),
            (self.disconnects, "connections dropped"),
            (self.protocol_errors, "malformed broker frames"),
        ];
        for (n, what) in counts {
            if n > 0 {
                p.push(format!("{n} {what}"));
            }
        }
        if let (true, Some(e)) = (self.send_errors > 0, &self.first_send_error) {
            p.push(format!("the first refusal: {e}"));
        }
        if self.failure.is_none() && self.registered == self.clients && self.sent == 0 {
            p.push("nothing was sent".into());
        }
        p
    }

    /// True when nothing was lost, duplicated or reordered and every client
    /// registered and stayed.
    pub fn ok(&self) -> bool {
        self.problems().is_empty()
    }

    /// The one JSON object printed with `--json`.
    pub fn to_json(&self) -> String {
        let mut j = String::with_capacity(1024);
        j.push('{');
        let mut first = true;
        let mut key = |j: &mut String, k: &str| {
            if !first {
                j.push_str(", ");
            }
            first = false;
            let _ = write!(j, "\"{k}\": ");
        };
        macro_rules! int {
            ($k:expr, $v:expr) => {{
                key(&mut j, $k);
                let _ = write!(j, "{}", $v);
            }};
        }
        macro_rules! num {
            ($k:expr, $v:expr) => {{
                key(&mut j, $k);
                push_f64(&mut j, $v);
            }};
        }
        macro_rules! opt {
            ($k:expr, $v:expr) => {{
                key(&mut j, $k);
                match $v {
                    Some(v) => push_f64(&mut j, v),
                    None => j.push_str("null"),
                }
            }};
        }
        int!("clients", self.clients);
        int!("senders", self.senders);
        key(&mut j, "mode");
        push_str(&mut j, self.mode);
        key(&mut j, "door");
        push_str(&mut j, self.door);
        key(&mut j, "tls");
        j.push_str(if self.tls { "true" } else { "false" });
        int!("targets", self.targets);
        int!("size", self.size);
        num!("duration_s", self.duration_s);
        num!("warmup_s", self.warmup_s);
        opt!("rate", self.rate);
        int!("window", self.window);
        int!("refill", self.refill);
        int!("threads", self.threads);
        int!("nodes", self.nodes);
        int!("registered", self.registered);
        int!("sent", self.sent);
        int!("expected", self.expected);
        int!("received", self.received);
        int!("lost", self.lost);
        int!("duplicates", self.duplicates);
        int!("reordered", self.reordered);
        int!("unacked", self.unacked);
        int!("send_errors", self.send_errors);
        key(&mut j, "first_send_error");
        match &self.first_send_error {
            Some(e) => push_str(&mut j, e),
            None => j.push_str("null"),
        }
        int!("disconnects", self.disconnects);
        int!("left", self.left);
        int!("protocol_errors", self.protocol_errors);
        int!("ack_mismatches", self.ack_mismatches);
        int!("foreign", self.foreign);
        num!("deliveries_per_sec", self.deliveries_per_sec);
        num!("mb_per_sec", self.mb_per_sec);
        key(&mut j, "latency_us");
        push_latency(&mut j, self.latency.as_ref());
        if self.nodes > 1 {
            key(&mut j, "latency_same_us");
            push_latency(&mut j, self.latency_same.as_ref());
            key(&mut j, "latency_cross_us");
            push_latency(&mut j, self.latency_cross.as_ref());
        }
        opt!("connect_ms", self.connect_ms);
        opt!("settle_ms", self.settle_ms);
        opt!("loadgen_cpu_s", self.loadgen_cpu_s);
        opt!("broker_cpu_s", self.broker_cpu_s);
        key(&mut j, "broker_cpu_s_per_pid");
        match &self.broker_cpu_s_per_pid {
            Some(each) => {
                j.push('[');
                for (i, v) in each.iter().enumerate() {
                    if i > 0 {
                        j.push_str(", ");
                    }
                    push_f64(&mut j, *v);
                }
                j.push(']');
            }
            None => j.push_str("null"),
        }
        opt!("broker_rss_mib", self.broker_rss_mib);
        opt!("broker_rss_connected_mib", self.broker_rss_connected_mib);
        opt!(
            "deliveries_per_broker_cpu_s",
            self.deliveries_per_broker_cpu_s()
        );
        key(&mut j, "broker_source");
        match self.broker_source {
            BrokerSource::None => j.push_str("null"),
            BrokerSource::InProcess => push_str(&mut j, "in-process"),
            BrokerSource::Pids(_) => push_str(&mut j, "pid"),
        }
        key(&mut j, "ok");
        j.push_str(if self.ok() { "true" } else { "false" });
        key(&mut j, "problems");
        j.push('[');
        for (i, p) in self.problems().iter().enumerate() {
            if i > 0 {
                j.push_str(", ");
            }
            push_str(&mut j, p);
        }
        j.push(']');
        j.push('}');
        j
    }

    /// The readable summary printed at the end: the scenario header, then
    /// the results.
    pub fn summary(&self) -> String {
        let mut s = self.scenario.clone();
        s.push_str(&self.results());
        s
    }

    /// The results alone, for when the scenario header printed at the start
    /// is right above them (stdout and stderr are the same terminal or file).
    pub fn results(&self) -> String {
        let mut s = String::with_capacity(2048);
        let connect = self
            .connect_ms
            .map_or("not done".to_string(), |ms| format!("{ms:.1} ms"));
        let _ = write!(
            s,
            "  connect+register  {}/{} clients in {}",
            self.registered, self.clients, connect
        );
        if let Some(ms) = self.settle_ms {
            let _ = write!(s, "; every node listed them all {ms:.1} ms later");
        }
        s.push('\n');
        let _ = writeln!(
            s,
            "  messages          sent {}  deliveries expected {}  received {}",
            self.sent, self.expected, self.received
        );
        let _ = writeln!(
            s,
            "  integrity         lost {}  duplicated {}  reordered {}  unacked {}  send errors {}",
            self.lost, self.duplicates, self.reordered, self.unacked, self.send_errors
        );
        if self.disconnects + self.left + self.protocol_errors + self.ack_mismatches + self.foreign
            > 0
        {
            let _ = writeln!(
                s,
                "  anomalies         disconnects {}  LEFT {}  bad frames {}  ACK fan-out mismatches {}  foreign MSGs {}",
                self.disconnects, self.left, self.protocol_errors, self.ack_mismatches, self.foreign
            );
            if self.ack_mismatches > 0 {
                s.push_str(
                    "                    (ACK <queued> differed from the fan-out: other users on this broker?)\n",
                );
            }
        }
        let _ = writeln!(
            s,
            "  throughput        {:.0} deliveries/s  {:.2} MB/s of payload",
            self.deliveries_per_sec, self.mb_per_sec
        );
        match &self.latency {
            Some(l) => {
                let _ = writeln!(
                    s,
                    "  latency (us)      p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} samples)",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.samples
                );
            }
            None => {
                let _ = writeln!(s, "  latency           no samples");
            }
        }
        if self.nodes > 1 {
            for (what, l) in [
                ("same node", &self.latency_same),
                ("cross-node", &self.latency_cross),
            ] {
                let _ = match l {
                    Some(l) => writeln!(
                        s,
                        "  {:<16}  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} samples)",
                        format!("{what} (us)"),
                        l.p50,
                        l.p90,
                        l.p99,
                        l.p999,
                        l.max,
                        l.samples
                    ),
                    None => writeln!(s, "  {what:<16}  no samples"),
                };
            }
        }
        let cpu = |v: Option<f64>| v.map_or("n/a".to_string(), |c| format!("{c:.2} s"));
        let _ = write!(
            s,
            "  cpu (window)      loadgen {}  broker {}",
            cpu(self.loadgen_cpu_s),
            cpu(self.broker_cpu_s)
        );
        match &self.broker_source {
            BrokerSource::None => s.push_str(" (pass --broker-pid to measure the broker)"),
            BrokerSource::InProcess => s.push_str(" (in-process: process minus loadgen threads)"),
            BrokerSource::Pids(pids) => match (pids.as_slice(), &self.broker_cpu_s_per_pid) {
                ([pid], _) => {
                    let _ = write!(s, " (pid {pid})");
                }
                (_, Some(each)) if each.len() == pids.len() => {
                    let each: Vec<String> = each.iter().map(|c| format!("{c:.2}")).collect();
                    let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
                    let _ = write!(s, " (pids {}: {} s)", pids.join(" + "), each.join(" + "));
                }
                _ => {
                    let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
                    let _ = write!(s, " (pids {}, summed)", pids.join(" + "));
                }
            },
        }
        s.push('\n');
        if let Some(rss) = self.broker_rss_mib {
            let _ = write!(s, "  broker peak RSS   {rss:.1} MiB");
            if let Some(c) = self.broker_rss_connected_mib {
                let _ = write!(
                    s,
                    " ({c:.1} MiB with all clients registered, before sending)"
                );
            }
            s.push('\n');
        }
        if let Some(d) = self.deliveries_per_broker_cpu_s() {
            let _ = writeln!(
                s,
                "  efficiency        {d:.0} deliveries per broker CPU-second"
            );
        }
        if let Some((m, d, slow)) = self.broker_counters {
            let _ = writeln!(
                s,
                "  broker counters   messages {m}  deliveries {d}  slow consumers {slow}"
            );
        }
        let problems = self.problems();
        if problems.is_empty() {
            s.push_str("  result            OK\n");
        } else {
            let _ = writeln!(s, "  result            FAILED: {}", problems.join("; "));
        }
        s
    }
}

/// Writes a latency object (`null` without samples).
fn push_latency(j: &mut String, l: Option<&Latency>) {
    let Some(l) = l else {
        j.push_str("null");
        return;
    };
    j.push('{');
    for (i, (k, v)) in [
        ("p50", l.p50),
        ("p90", l.p90),
        ("p99", l.p99),
        ("p999", l.p999),
        ("max", l.max),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            j.push_str(", ");
        }
        let _ = write!(j, "\"{k}\": ");
        push_f64(j, v);
    }
    let _ = write!(j, ", \"samples\": {}}}", l.samples);
}

/// A number as a person writes it: `5`, not `5.000`; `0.25` as `0.250`.
pub(crate) fn fmt_f(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Writes a finite number with up to 3 decimals; JSON has no NaN or
/// infinity, so those become `null`.
fn push_f64(j: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(j, "{}", (v * 1000.0).round() / 1000.0);
    } else {
        j.push_str("null");
    }
}

/// Writes a JSON string with the escapes RFC 8259 requires.
fn push_str(j: &mut String, s: &str) {
    j.push('"');
    for c in s.chars() {
        match c {
            '"' => j.push_str("\\\""),
            '\\' => j.push_str("\\\\"),
            '\n' => j.push_str("\\n"),
            '\r' => j.push_str("\\r"),
            '\t' => j.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(j, "\\u{:04x}", u32::from(c));
            }
            c => j.push(c),
        }
    }
    j.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            scenario: "loadgen: 20 clients (2 sending), mode all\n".into(),
            clients: 20,
            senders: 2,
            mode: "all",
            door: "native",
            tls: false,
            targets: 3,
            size: 100,
            duration_s: 1.0,
            warmup_s: 0.0,
            rate: None,
            window: 8,
            refill: 1,
            threads: 2,
            nodes: 1,
            registered: 20,
            sent: 100,
            expected: 1900,
            received: 1900,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            unacked: 0,
            send_errors: 0,
            first_send_error: None,
            disconnects: 0,
            left: 0,
            protocol_errors: 0,
            ack_mismatches: 0,
            foreign: 0,
            deliveries_per_sec: 1900.0,
            mb_per_sec: 0.19,
            latency: Some(Latency {
                p50: 50.5,
                p90: 80.0,
                p99: 120.25,
                p999: 300.0,
                max: 400.0,
                samples: 1900,
            }),
            latency_same: None,
            latency_cross: None,
            connect_ms: Some(12.5),
            settle_ms: None,
            loadgen_cpu_s: Some(0.2),
            broker_cpu_s: Some(0.5),
            broker_cpu_s_per_pid: None,
            broker_rss_mib: None,
            broker_rss_connected_mib: None,
            broker_source: BrokerSource::InProcess,
            broker_counters: Some((100, 1900, 0)),
            failure: None,
        }
    }

    #[test]
    fn json_has_every_required_key_once() {
        let j = sample().to_json();
        assert!(j.starts_with('{') && j.ends_with('}'));
        assert!(!j.contains('\n'));
        for k in [
            "clients",
            "senders",
            "mode",
            "size",
            "duration_s",
            "sent",
            "expected",
            "received",
            "lost",
            "duplicates",
            "reordered",
            "deliveries_per_sec",
            "mb_per_sec",
            "latency_us",
            "p50",
            "p90",
            "p99",
            "p999",
            "max",
            "connect_ms",
            "loadgen_cpu_s",
            "broker_cpu_s",
            "broker_rss_mib",
            "broker_rss_connected_mib",
            "door",
            "tls",
            "deliveries_per_broker_cpu_s",
        ] {
            assert_eq!(j.matches(&format!("\"{k}\":")).count(), 1, "{k} in {j}");
        }
        assert!(j.contains("\"mode\": \"all\""));
        assert!(j.contains("\"broker_rss_mib\": null"));
        assert!(j.contains("\"deliveries_per_broker_cpu_s\": 3800"));
        assert!(j.contains("\"p99\": 120.25"));
        assert!(j.contains("\"ok\": true"));
        assert!(j.contains("\"problems\": []"));
    }

    #[test]
    fn json_nulls_and_escapes() {
        let mut r = sample();
        r.latency = None;
        r.connect_ms = None;
        r.broker_cpu_s = None;
        r.deliveries_per_sec = f64::NAN;
        r.failure = Some("bad \"thing\"\n".into());
        let j = r.to_json();
        assert!(j.contains("\"latency_us\": null"));
        assert!(j.contains("\"connect_ms\": null"));
        assert!(j.contains("\"deliveries_per_broker_cpu_s\": null"));
        assert!(j.contains("\"deliveries_per_sec\": null"));
        assert!(j.contains("bad \\\"thing\\\"\\n"));
        assert!(j.contains("\"ok\": false"));
    }

    #[test]
    fn verdict_flags_every_integrity_problem() {
        assert!(sample().ok());
        let cases: [fn(&mut Report); 8] = [
            |r| r.lost = 1,
            |r| r.duplicates = 1,
            |r| r.reordered = 1,
            |r| r.registered = 19,
            |r| r.unacked = 1,
            |r| r.disconnects = 1,
            |r| r.sent = 0,
            |r| r.failure = Some("x".into()),
        ];
        for f in cases {
            let mut r = sample();
            f(&mut r);
            assert!(!r.ok(), "{r:?}");
            assert!(r.summary().contains("FAILED"));
        }
        // A refused message says how the broker refused it.
        let mut r = sample();
        r.send_errors = 2;
        r.first_send_error = Some("ERR UNAVAILABLE :try again".into());
        assert!(!r.ok());
        let j = r.to_json();
        assert!(j.contains("\"first_send_error\": \"ERR UNAVAILABLE :try again\""));
        assert!(
            j.contains("the first refusal: ERR UNAVAILABLE :try again"),
            "{j}"
        );
        assert!(sample().to_json().contains("\"first_send_error\": null"));
        // ACK mismatches and foreign messages are reported, not failures.
        let mut r = sample();
        r.ack_mismatches = 3;
        r.foreign = 2;
        assert!(r.ok());
        assert!(r.summary().contains("mismatches 3"));
    }

    #[test]
    fn the_irc_door_is_named() {
        let mut r = sample();
        r.door = "irc";
        r.mode = "room";
        r.broker_rss_mib = Some(20.0);
        r.broker_rss_connected_mib = Some(18.5);
        assert!(r.summary().contains("18.5 MiB with all clients registered"));
        let j = r.to_json();
        assert!(j.contains("\"door\": \"irc\""), "{j}");
        assert!(j.contains("\"broker_rss_connected_mib\": 18.5"), "{j}");
        assert!(sample().to_json().contains("\"door\": \"native\""));
        assert!(sample().to_json().contains("\"tls\": false"));
        r.tls = true;
        assert!(r.to_json().contains("\"tls\": true"));
    }

    #[test]
    fn several_nodes_report_same_and_cross_node_latency() {
        // One node: no split, the keys are not there.
        let j = sample().to_json();
        assert!(j.contains("\"nodes\": 1"), "{j}");
        assert!(!j.contains("latency_same_us") && !j.contains("latency_cross_us"));
        assert!(!sample().summary().contains("cross-node"));

        let mut r = sample();
        r.nodes = 3;
        let lat = |p99, samples| Latency {
            p50: 10.0,
            p90: 20.0,
            p99,
            p999: 40.0,
            max: 50.0,
            samples,
        };
        r.latency_same = Some(lat(30.5, 600));
        r.latency_cross = Some(lat(90.25, 1300));
        r.broker_source = BrokerSource::Pids(vec![11, 12, 13]);
        r.broker_cpu_s = Some(0.6);
        r.broker_cpu_s_per_pid = Some(vec![0.1, 0.2, 0.3]);
        r.settle_ms = Some(3.25);
        let j = r.to_json();
        assert!(j.contains("\"settle_ms\": 3.25"), "{j}");
        assert!(r
            .summary()
            .contains("every node listed them all 3.2 ms later"));
        for k in [
            "latency_us",
            "latency_same_us",
            "latency_cross_us",
            "nodes",
            "broker_cpu_s_per_pid",
        ] {
            assert_eq!(j.matches(&format!("\"{k}\":")).count(), 1, "{k} in {j}");
        }
        assert!(j.contains("\"latency_cross_us\": {\"p50\": 10, \"p90\": 20, \"p99\": 90.25, \"p999\": 40, \"max\": 50, \"samples\": 1300}"), "{j}");
        assert!(
            j.contains("\"latency_same_us\": {\"p50\": 10, \"p90\": 20, \"p99\": 30.5,"),
            "{j}"
        );
        assert!(
            j.contains("\"broker_cpu_s_per_pid\": [0.1, 0.2, 0.3]"),
            "{j}"
        );
        assert!(j.contains("\"broker_source\": \"pid\""), "{j}");
        // Deliveries per broker CPU-second use the sum.
        assert!(
            j.contains("\"deliveries_per_broker_cpu_s\": 3166.667"),
            "{j}"
        );
        let s = r.summary();
        assert!(
            s.contains("  same node (us)    p50 10.0  p90 20.0  p99 30.5"),
            "{s}"
        );
        assert!(
            s.contains("  cross-node (us)   p50 10.0  p90 20.0  p99 90.2"),
            "{s}"
        );
        assert!(
            s.contains("(pids 11 + 12 + 13: 0.10 + 0.20 + 0.30 s)"),
            "{s}"
        );
        // A side without samples says so (direct mode may have none).
        r.latency_same = None;
        assert!(r.to_json().contains("\"latency_same_us\": null"));
        assert!(r.summary().contains("  same node         no samples"));
    }

    #[test]
    fn summary_is_readable() {
        let s = sample().summary();
        assert!(s.starts_with("loadgen: 20 clients (2 sending)"), "{s}");
        assert!(s.ends_with(&sample().results()), "{s}");
        assert!(sample().results().starts_with("  connect+register"), "{s}");
        assert!(s.contains("p99.9 300.0"), "{s}");
        assert!(s.contains("result            OK"), "{s}");
        assert!(s.contains("3800 deliveries per broker CPU-second"), "{s}");
    }
}
