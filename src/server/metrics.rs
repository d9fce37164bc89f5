//! Process counters, rendered as Prometheus text on `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::dialect::usage::Usage;
use crate::dialect::Dialect;

/// Upper bounds (seconds) of the upstream latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

#[derive(Default)]
pub struct Metrics {
    /// [dialect][status class 2xx..5xx]
    requests: [[AtomicU64; 4]; 4],
    errors: Mutex<Vec<(&'static str, u64)>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_upstream: AtomicU64,
    pub bytes_out: AtomicU64,
    pub cancelled: AtomicU64,
    pub in_flight: AtomicU64,
    pub saved_tokens: AtomicU64,
    usage_input: AtomicU64,
    usage_output: AtomicU64,
    usage_cache_read: AtomicU64,
    usage_cache_write: AtomicU64,
}

fn dialect_index(d: Dialect) -> usize {
    match d {
        Dialect::Anthropic => 0,
        Dialect::OpenaiChat => 1,
        Dialect::OpenaiResponses => 2,
        Dialect::Gemini => 3,
    }
}

impl Metrics {
    pub fn request(&self, dialect: Dialect, status: u16) {
        let class = (status / 100).clamp(2, 5) as usize - 2;
        self.requests[dialect_index(dialect)][class].fetch_add(1, Relaxed);
    }

    pub fn error(&self, kind: &'static str) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        match errors.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => errors.push((kind, 1)),
        }
    }

    pub fn upstream_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Adds what a provider reported for one response.
    pub fn usage(&self, u: &Usage) {
        self.usage_input.fetch_add(u.input, Relaxed);
        self.usage_output.fetch_add(u.output, Relaxed);
        self.usage_cache_read.fetch_add(u.cache_read, Relaxed);
        self.usage_cache_write.fetch_add(u.cache_write, Relaxed);
    }

    /// Prometheus text. `ledger_lost` counts records the ledger could not write.
    pub fn render(&self, ledger_lost: u64) -> String {
        let mut s = String::with_capacity(2048);
        s.push_str("# HELP tokenfold_requests_total Requests answered, by ingress dialect and status class.\n");
        s.push_str("# TYPE tokenfold_requests_total counter\n");
        for d in Dialect::ALL {
            for (i, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let n = self.requests[dialect_index(d)][i].load(Relaxed);
                let _ = writeln!(s, "tokenfold_requests_total{{dialect=\"{d}\",status=\"{class}\"}} {n}");
            }
        }
        s.push_str("# HELP tokenfold_errors_total Errors by kind.\n# TYPE tokenfold_errors_total counter\n");
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (kind, n) in errors {
            let _ = writeln!(s, "tokenfold_errors_total{{kind=\"{kind}\"}} {n}");
        }
        s.push_str("# HELP tokenfold_upstream_latency_seconds Time until the upstream's response headers.\n");
        s.push_str("# TYPE tokenfold_upstream_latency_seconds histogram\n");
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let n = self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(s, "tokenfold_upstream_latency_seconds_bucket{{le=\"{bound}\"}} {n}");
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(s, "tokenfold_upstream_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "tokenfold_upstream_latency_seconds_sum {sum}");
        let _ = writeln!(s, "tokenfold_upstream_latency_seconds_count {count}");
        for (name, help, v) in [
            ("tokenfold_bytes_received_total", "Request body bytes received from clients.", &self.bytes_in),
            ("tokenfold_bytes_upstream_total", "Request body bytes forwarded to providers.", &self.bytes_upstream),
            ("tokenfold_bytes_sent_total", "Response body bytes relayed to clients.", &self.bytes_out),
            ("tokenfold_requests_cancelled_total", "Requests whose client went away before the end.", &self.cancelled),
            ("tokenfold_saved_tokens_total", "Tokens removed by folding (estimate).", &self.saved_tokens),
            ("tokenfold_provider_input_tokens_total", "Input tokens providers billed at full rate.", &self.usage_input),
            ("tokenfold_provider_output_tokens_total", "Output tokens providers reported.", &self.usage_output),
            (
                "tokenfold_provider_cache_read_tokens_total",
                "Input tokens read from provider caches.",
                &self.usage_cache_read,
            ),
            (
                "tokenfold_provider_cache_write_tokens_total",
                "Input tokens written to provider caches.",
                &self.usage_cache_write,
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Relaxed));
        }
        let _ = writeln!(
            s,
            "# HELP tokenfold_ledger_records_lost_total Ledger records that could not be written.\n# TYPE tokenfold_ledger_records_lost_total counter\ntokenfold_ledger_records_lost_total {ledger_lost}"
        );
        let _ = writeln!(
            s,
            "# HELP tokenfold_in_flight Requests being served.\n# TYPE tokenfold_in_flight gauge\ntokenfold_in_flight {}",
            self.in_flight.load(Relaxed)
        );
        s
    }
}
