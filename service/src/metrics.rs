//! Prometheus text exposition format 0.0.4, written by hand: the daemons
//! render their own state into it at scrape time (pull, no registry of
//! callbacks), so a metric is never stale and costs nothing between scrapes.
//!
//! Format rules kept here (checked by `promtool check metrics` in the
//! end-to-end tests): one `# HELP` and `# TYPE` per family before its
//! samples; label values escape `\`, `"` and newline; help text escapes `\`
//! and newline; values are Go-style floats (`NaN`, `+Inf`, `-Inf`);
//! histograms have cumulative `_bucket{le=...}` lines ending in `+Inf`, then
//! `_sum` and `_count`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// The `Content-Type` of what [`Encoder::finish`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds one exposition.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Start a family: its `# HELP` and `# TYPE` lines. Names must match
    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` (checked in debug builds: they are
    /// literals in the daemons, not input).
    pub fn family(&mut self, name: &'static str, help: &str, kind: Kind) -> Family<'_> {
        debug_assert!(valid_name(name), "bad metric name {name:?}");
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Family {
            out: &mut self.out,
            name,
        }
    }

    /// Shorthand for a family with one unlabelled sample.
    pub fn single(&mut self, name: &'static str, help: &str, kind: Kind, value: f64) {
        self.family(name, help, kind).sample(&[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Samples of one family; see [`Encoder::family`].
#[derive(Debug)]
pub struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    /// One sample with these labels (names are literals, values any text).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        write_sample(self.out, self.name, "", labels, None, value);
        self
    }

    /// A histogram's bucket, sum and count lines.
    pub fn histogram(&mut self, labels: &[(&str, &str)], h: &HistogramSnapshot) -> &mut Self {
        let mut cumulative = 0u64;
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            write_sample(
                self.out,
                self.name,
                "_bucket",
                labels,
                Some(&format_value(*bound)),
                as_f64(cumulative),
            );
        }
        write_sample(
            self.out,
            self.name,
            "_bucket",
            labels,
            Some("+Inf"),
            as_f64(h.count),
        );
        write_sample(self.out, self.name, "_sum", labels, None, h.sum);
        write_sample(self.out, self.name, "_count", labels, None, as_f64(h.count));
        self
    }
}

/// Counters in the exposition are floats; exact up to 2^53.
#[allow(clippy::cast_precision_loss)]
pub fn as_f64(n: u64) -> f64 {
    n as f64
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            debug_assert!(valid_label_name(k), "bad label name {k:?}");
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            escape_label_into(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(value));
    out.push('\n');
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` spellings for the specials;
/// Rust's shortest round-trip form otherwise (Prometheus parses both).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    valid_name(n) && !n.contains(':') && !n.starts_with("__")
}

/// Latency buckets (seconds) for device polls: a local hwmon read takes
/// microseconds, a BMC over a busy LAN seconds.
pub const POLL_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fixed-bucket histogram, cheap to observe (one short lock).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<HistogramSnapshot>,
}

/// A histogram's counts at one moment (per bucket, not cumulative).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// `bounds` ascending and finite (the `+Inf` bucket is implied).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            inner: Mutex::new(HistogramSnapshot {
                bounds,
                counts: vec![0; bounds.len()],
                sum: 0.0,
                count: 0,
            }),
        }
    }

    pub fn observe(&self, v: f64) {
        let mut h = self.inner.lock().expect("poisoned");
        // NaN lands in +Inf only (counted, not summed: one NaN would make
        // the sum NaN forever).
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            h.counts[i] += 1;
        }
        if !v.is_nan() {
            h.sum += v;
        }
        h.count += 1;
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        self.inner.lock().expect("poisoned").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Encoder::new();
        e.family("umbra_x_total", "Things.\nTwo lines \\ here", Kind::Counter)
            .sample(&[("host", "a\"b\\c\nd")], 3.0)
            .sample(&[], 1.5);
        e.single("umbra_up", "Up.", Kind::Gauge, f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP umbra_x_total Things.\\nTwo lines \\\\ here\n\
             # TYPE umbra_x_total counter\n\
             umbra_x_total{host=\"a\\\"b\\\\c\\nd\"} 3\n\
             umbra_x_total 1.5\n\
             # HELP umbra_up Up.\n\
             # TYPE umbra_up gauge\n\
             umbra_up NaN\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        static B: &[f64] = &[0.1, 1.0];
        let h = Histogram::new(B);
        for v in [0.05, 0.1, 0.5, 7.0, f64::NAN] {
            h.observe(v);
        }
        let mut e = Encoder::new();
        e.family("lat_seconds", "L.", Kind::Histogram)
            .histogram(&[("dev", "bmc")], &h.snapshot());
        assert_eq!(
            e.finish(),
            "# HELP lat_seconds L.\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{dev=\"bmc\",le=\"0.1\"} 2\n\
             lat_seconds_bucket{dev=\"bmc\",le=\"1\"} 3\n\
             lat_seconds_bucket{dev=\"bmc\",le=\"+Inf\"} 5\n\
             lat_seconds_sum{dev=\"bmc\"} 7.65\n\
             lat_seconds_count{dev=\"bmc\"} 5\n"
        );
    }

    #[test]
    fn special_values() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(-0.25), "-0.25");
        assert_eq!(format_value(1e21), "1000000000000000000000");
    }

    /// Undo the label escaping the way Prometheus' lexer does.
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut it = s.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => out.push('\n'),
                    Some(c) => out.push(c),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    proptest! {
        /// Any label value (device names come from configs and devices)
        /// stays on one line, inside its quotes, and reads back unchanged.
        #[test]
        fn any_label_value_round_trips(v in ".*") {
            let mut e = Encoder::new();
            e.family("m", "h", Kind::Gauge).sample(&[("l", &v)], 1.0);
            let text = e.finish();
            let line = text.lines().nth(2).unwrap();
            prop_assert_eq!(text.lines().count(), 3);
            let inner = line.strip_prefix("m{l=\"").unwrap().strip_suffix("\"} 1").unwrap();
            prop_assert_eq!(unescape(inner), v);
        }
    }
}
