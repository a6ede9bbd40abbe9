//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! what `GET /metrics` on the web door answers. Pure: it turns names,
//! help texts, label sets and numbers into one scrape's text, and knows
//! nothing of sockets or of the broker's counters.
//!
//! Format reference: <https://prometheus.io/docs/instrumenting/exposition_formats/>.

use std::fmt::Write as _;

/// The `Content-Type` of a scrape in this format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One sample's labels: `(name, value)` pairs, in the order written.
/// Names are trusted constants; values may be anything and are escaped.
pub(crate) type Labels<'a> = &'a [(&'a str, &'a str)];

/// Builds one scrape in the Prometheus text format (version 0.0.4).
///
/// Each call writes one metric family: `# HELP`, `# TYPE`, then one line
/// per sample. A family must be written once per scrape (Prometheus
/// rejects a scrape that repeats a `# TYPE`), with all its samples in the
/// one call.
///
/// A family with no samples still gets its `# HELP` and `# TYPE` lines:
/// the format allows it, a reader of the scrape sees every metric the
/// broker has, and the output's shape does not depend on the state.
/// Prometheus stores no series for it, though, so a caller that wants
/// `rate()` to see the first event should write explicit zeros for the
/// label values it knows (every close reason, every error code).
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty scrape.
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter family: `name` should end in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, u64)]) {
        self.family(name, help, "counter");
        for &(labels, value) in samples {
            self.sample_head(name, labels);
            let _ = writeln!(self.out, "{value}");
        }
    }

    /// A gauge family. Whole values print without a decimal point;
    /// infinities and NaN as `+Inf`, `-Inf`, `NaN`.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, f64)]) {
        self.family(name, help, "gauge");
        for &(labels, value) in samples {
            self.sample_head(name, labels);
            write_float(&mut self.out, value);
            self.out.push('\n');
        }
    }

    /// The scrape's text; every line, the last included, ends in `\n`.
    pub fn finish(self) -> String {
        self.out
    }

    /// The `# HELP` and `# TYPE` lines.
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        debug_assert!(is_metric_name(name), "bad metric name {name:?}");
        debug_assert!(
            !self
                .out
                .lines()
                .any(|l| l.strip_prefix("# TYPE ").and_then(|r| r.split(' ').next()) == Some(name)),
            "metric {name} written twice"
        );
        let _ = write!(self.out, "# HELP {name} ");
        escape(&mut self.out, help, false);
        let _ = writeln!(self.out, "\n# TYPE {name} {kind}");
    }

    /// `name` or `name{a="x",b="y"}`, then the space before the value.
    fn sample_head(&mut self, name: &str, labels: Labels<'_>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, &(label, value)) in labels.iter().enumerate() {
                debug_assert!(is_label_name(label), "bad label name {label:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape(&mut self.out, value, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }
}

/// Escapes `\` and line feeds, and `"` too in a label value (a HELP text
/// keeps its quotes as they are, as the format says).
fn escape(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A float as Go's `ParseFloat` (Prometheus's reader) takes it. Rust's
/// `Display` already prints whole numbers without a point and never uses
/// an exponent; past 1e15 the exponent form is shorter and as exact.
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.abs() >= 1e15 {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    !s.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn counter_with_and_without_labels() {
        let mut e = Exposition::new();
        e.counter(
            "chat_messages_total",
            "Messages accepted, by kind.",
            &[(&[("kind", "direct")], 3), (&[("kind", "room")], 0)],
        );
        e.counter(
            "chat_deliveries_total",
            "Message copies queued to recipients.",
            &[(&[], 18_446_744_073_709_551_615)],
        );
        assert_eq!(
            e.finish(),
            "# HELP chat_messages_total Messages accepted, by kind.\n\
             # TYPE chat_messages_total counter\n\
             chat_messages_total{kind=\"direct\"} 3\n\
             chat_messages_total{kind=\"room\"} 0\n\
             # HELP chat_deliveries_total Message copies queued to recipients.\n\
             # TYPE chat_deliveries_total counter\n\
             chat_deliveries_total 18446744073709551615\n"
        );
    }

    #[test]
    fn several_labels_and_no_samples() {
        let mut e = Exposition::new();
        e.gauge("g", "h", &[(&[("a", "1"), ("b", "2")], 1.0)]);
        e.counter("c_total", "none yet", &[]);
        assert_eq!(
            e.finish(),
            "# HELP g h\n# TYPE g gauge\ng{a=\"1\",b=\"2\"} 1\n\
             # HELP c_total none yet\n# TYPE c_total counter\n"
        );
    }

    #[test]
    fn gauge_values() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (42.0, "42"),
            (-3.0, "-3"),
            (0.5, "0.5"),
            (1234.125, "1234.125"),
            (1e-7, "0.0000001"),
            (1e15, "1e15"),
            (2.5e300, "2.5e300"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for &(v, want) in cases {
            let mut e = Exposition::new();
            e.gauge("x", "y", &[(&[], v)]);
            assert_eq!(
                e.finish(),
                format!("# HELP x y\n# TYPE x gauge\nx {want}\n")
            );
        }
    }

    #[test]
    fn escaping() {
        let mut e = Exposition::new();
        e.counter(
            "x_total",
            "a \\ b\nc \"q\"",
            &[(&[("v", "a\\b\"c\nd}e,f=g")], 1)],
        );
        assert_eq!(
            e.finish(),
            "# HELP x_total a \\\\ b\\nc \"q\"\n\
             # TYPE x_total counter\n\
             x_total{v=\"a\\\\b\\\"c\\nd}e,f=g\"} 1\n"
        );
    }

    #[test]
    fn names() {
        assert!(is_metric_name("chat_closed_total"));
        assert!(is_metric_name("job:rate5m"));
        assert!(is_metric_name("_x9"));
        assert!(!is_metric_name(""));
        assert!(!is_metric_name("9x"));
        assert!(!is_metric_name("a-b"));
        assert!(is_label_name("door"));
        assert!(!is_label_name("__name__"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name(""));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "written twice")]
    fn a_family_twice_is_a_bug() {
        let mut e = Exposition::new();
        e.gauge("chat_users", "h", &[]);
        e.gauge("chat_users", "h", &[]);
    }

    /// What a real parser reads back. `prometheus-parse` is naive about
    /// label values (it neither unescapes nor allows `,` `=` `}` in them),
    /// so this scrape keeps them plain; `escaping` covers the rest.
    #[test]
    fn round_trip_through_a_parser() {
        use prometheus_parse::{Scrape, Value};
        let mut e = Exposition::new();
        e.gauge(
            "chat_connections",
            "Open connections, by door.",
            &[
                (&[("door", "native")], 7.0),
                (&[("door", "irc")], 2.0),
                (&[("door", "web")], 0.0),
            ],
        );
        e.gauge(
            "chat_uptime_seconds",
            "Seconds since start.",
            &[(&[], 12.5)],
        );
        e.gauge("chat_queue_bytes", "Bytes queued.", &[(&[], f64::INFINITY)]);
        e.counter(
            "chat_closed_total",
            "Connections closed, by reason.",
            &[(&[("reason", "slow"), ("door", "web")], 4)],
        );
        e.counter("chat_accepted_total", "Connections accepted.", &[(&[], 9)]);
        let text = e.finish();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();

        assert_eq!(
            scrape.docs["chat_connections"],
            "Open connections, by door."
        );
        assert_eq!(scrape.docs.len(), 5);
        // `Labels` displays as `k="v",...` sorted by name.
        let got: Vec<(String, String, Value)> = scrape
            .samples
            .into_iter()
            .map(|s| (s.metric, s.labels.to_string(), s.value))
            .collect();
        let row = |m: &str, l: &str, v| (m.to_owned(), l.to_owned(), v);
        let want = vec![
            row("chat_connections", r#"door="native""#, Value::Gauge(7.0)),
            row("chat_connections", r#"door="irc""#, Value::Gauge(2.0)),
            row("chat_connections", r#"door="web""#, Value::Gauge(0.0)),
            row("chat_uptime_seconds", "", Value::Gauge(12.5)),
            row("chat_queue_bytes", "", Value::Gauge(f64::INFINITY)),
            row(
                "chat_closed_total",
                r#"door="web",reason="slow""#,
                Value::Counter(4.0),
            ),
            row("chat_accepted_total", "", Value::Counter(9.0)),
        ];
        assert_eq!(got, want);
    }
}
