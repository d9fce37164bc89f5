//! The results of one run: a markdown table with ratios and a verdict per target, and the same
//! figures as JSON.

use std::time::Duration;

use serde_json::{json, Value};

use crate::measure::{percentile, Cell, Failover, Samples, Throughput};
use crate::peers::StartUp;

const MB: f64 = 1024.0 * 1024.0;

/// One column: the mock alone (index 0), tokenfold (index 1), then the peers.
pub struct Column {
    pub label: String,
    /// Why the column is empty, when it is.
    pub unavailable: Option<String>,
    pub setup: String,
    pub start: Option<StartUp>,
    pub idle_rss: Option<u64>,
    pub peak_rss: Option<u64>,
    pub processes: usize,
}

pub struct LatencyRow {
    pub title: String,
    pub key: &'static str,
    pub cells: Vec<Cell<Samples>>,
}

pub struct FailoverRow {
    pub title: String,
    pub key: &'static str,
    pub cells: Vec<Cell<Failover>>,
}

pub struct Results {
    pub quick: bool,
    pub date: String,
    pub machine: String,
    pub load_before: String,
    pub load_after: String,
    pub concurrency: usize,
    pub columns: Vec<Column>,
    pub latency: Vec<LatencyRow>,
    pub throughput_title: String,
    pub throughput: Vec<Cell<Throughput>>,
    pub failover: Vec<FailoverRow>,
    pub notes: Vec<String>,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// 85 µs, 12.3 ms, 6.02 s.
fn human(micros: f64) -> String {
    let a = micros.abs();
    if a < 10_000.0 {
        format!("{micros:.0} µs")
    } else if a < 10_000_000.0 {
        format!("{:.1} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

fn signed(micros: f64) -> String {
    if micros >= 0.0 {
        format!("+{}", human(micros))
    } else {
        format!("−{}", human(-micros))
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Added time at quantile q: the target's percentile minus the direct one of the same rounds.
pub fn added(s: &Samples, q: f64) -> f64 {
    us(percentile(&s.values, q)) - us(percentile(&s.baseline, q))
}

fn ratio(peer: f64, ours: f64) -> String {
    if ours <= 0.5 || peer <= 0.0 {
        return "—".into();
    }
    let r = peer / ours;
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.1}×")
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn short(e: &str) -> String {
    let one_line = e.replace('\n', " ").replace('|', "/");
    if one_line.chars().count() > 90 {
        format!("{}…", one_line.chars().take(90).collect::<String>())
    } else {
        one_line
    }
}

impl Results {
    fn peers(&self) -> std::ops::Range<usize> {
        2..self.columns.len()
    }

    fn header(&self) -> String {
        let mut h = String::from("| measure |");
        let mut sep = String::from("|---|");
        for c in &self.columns {
            h.push_str(&format!(" {} |", c.label));
            sep.push_str("---:|");
        }
        for i in self.peers() {
            h.push_str(&format!(" tokenfold vs {} |", self.columns[i].label.split(' ').next().unwrap_or("")));
            sep.push_str("---:|");
        }
        format!("{h}\n{sep}\n")
    }

    fn row(&self, title: &str, cells: Vec<String>, ratios: Vec<String>) -> String {
        let mut r = format!("| {title} |");
        for c in cells {
            r.push_str(&format!(" {c} |"));
        }
        for c in ratios {
            r.push_str(&format!(" {c} |"));
        }
        r.push('\n');
        r
    }

    fn unavailable(&self, i: usize) -> Option<String> {
        self.columns[i].unavailable.as_ref().map(|e| format!("n/a: {}", short(e)))
    }

    pub fn markdown(&self) -> String {
        let mut s = self.header();
        let n = self.columns.len();
        let peers: Vec<usize> = self.peers().collect();
        for row in &self.latency {
            let mut cells = Vec::with_capacity(n);
            for (i, cell) in row.cells.iter().enumerate() {
                cells.push(match (self.unavailable(i), cell) {
                    (Some(u), _) => u,
                    (None, Err(e)) => format!("error: {}", short(e)),
                    (None, Ok(samples)) if i == 0 => format!(
                        "{} / {}",
                        human(us(percentile(&samples.values, 0.5))),
                        human(us(percentile(&samples.values, 0.99)))
                    ),
                    (None, Ok(samples)) => {
                        format!("{} / {}", signed(added(samples, 0.5)), signed(added(samples, 0.99)))
                    }
                });
            }
            let ratios = peers
                .iter()
                .map(|&p| match (&row.cells[1], &row.cells[p], self.columns[p].unavailable.is_some()) {
                    (Ok(ours), Ok(theirs), false) => format!(
                        "{} / {}",
                        ratio(added(theirs, 0.5), added(ours, 0.5)),
                        ratio(added(theirs, 0.99), added(ours, 0.99))
                    ),
                    _ => "—".into(),
                })
                .collect();
            s.push_str(&self.row(&row.title, cells, ratios));
        }
        let direct_rps = self.throughput.first().and_then(|c| c.as_ref().ok()).map(|t| t.blast.rps());
        let cells = (0..n)
            .map(|i| match (self.unavailable(i), &self.throughput[i]) {
                (Some(u), _) => u,
                (None, Err(e)) => format!("error: {}", short(e)),
                (None, Ok(t)) => {
                    let errors =
                        if t.blast.errors > 0 { format!(", {} errors", t.blast.errors) } else { String::new() };
                    match direct_rps {
                        Some(d) if i > 0 => format!(
                            "{} req/s ({:.0}% of direct{errors})",
                            thousands(t.blast.rps()),
                            100.0 * t.blast.rps() / d
                        ),
                        _ => format!("{} req/s{errors}", thousands(t.blast.rps())),
                    }
                }
            })
            .collect();
        let ratios = peers
            .iter()
            .map(|&p| match (&self.throughput[1], &self.throughput[p], self.columns[p].unavailable.is_some()) {
                (Ok(ours), Ok(theirs), false) => ratio(ours.blast.rps(), theirs.blast.rps()),
                _ => "—".into(),
            })
            .collect();
        s.push_str(&self.row(&self.throughput_title, cells, ratios));
        // CPU per request does not depend on how much of the shared machine a column got.
        let cpu =
            |i: usize| self.throughput.get(i).and_then(|c| c.as_ref().ok()).and_then(|t| t.cpu_per_request).map(us);
        let cells = (0..n)
            .map(|i| match (self.unavailable(i), &self.throughput[i], cpu(i)) {
                (Some(u), _, _) => u,
                (None, Err(e), _) => format!("error: {}", short(e)),
                (None, Ok(_), Some(c)) if i == 0 => format!("{} (load client + mock)", human(c)),
                (None, Ok(_), Some(c)) => human(c),
                (None, Ok(_), None) => "?".into(),
            })
            .collect();
        let ratios = peers
            .iter()
            .map(|&p| match (cpu(1), cpu(p), self.columns[p].unavailable.is_some()) {
                (Some(ours), Some(theirs), false) => ratio(theirs, ours),
                _ => "—".into(),
            })
            .collect();
        s.push_str(&self.row(
            &format!("CPU per request at c={} (all the column's processes)", self.concurrency),
            cells,
            ratios,
        ));
        for row in &self.failover {
            let hop = |f: &Failover, q: f64| us(percentile(&f.via_failover, q)) - us(percentile(&f.straight, q));
            let cells = (0..n)
                .map(|i| match (i, self.unavailable(i), &row.cells[i]) {
                    (0, _, _) => "—".into(),
                    (_, Some(u), _) => u,
                    (_, None, Err(e)) => format!("n/a: {}", short(e)),
                    (_, None, Ok(f)) if f.via_failover.len() == 1 => format!("{} (1 sample)", signed(hop(f, 0.5))),
                    (_, None, Ok(f)) => format!("{} / {}", signed(hop(f, 0.5)), signed(hop(f, 0.99))),
                })
                .collect();
            let ratios = peers
                .iter()
                .map(|&p| match (&row.cells[1], &row.cells[p], self.columns[p].unavailable.is_some()) {
                    (Ok(ours), Ok(theirs), false) => ratio(hop(theirs, 0.5), hop(ours, 0.5)),
                    _ => "—".into(),
                })
                .collect();
            s.push_str(&self.row(&row.title, cells, ratios));
        }
        let mb = |b: u64| format!("{:.1} MB", b as f64 / MB);
        for (title, pick) in
            [("idle RSS (all processes, after start-up)", 0usize), ("peak RSS (all processes, whole run)", 1)]
        {
            let value = |c: &Column| if pick == 0 { c.idle_rss } else { c.peak_rss };
            let cells = (0..n)
                .map(|i| match (i, self.unavailable(i), value(&self.columns[i])) {
                    (0, _, _) => "—".into(),
                    (_, Some(u), _) => u,
                    (_, None, Some(b)) if self.columns[i].processes > 1 => {
                        format!("{} ({} processes)", mb(b), self.columns[i].processes)
                    }
                    (_, None, Some(b)) => mb(b),
                    (_, None, None) => "?".into(),
                })
                .collect();
            let ours = value(&self.columns[1]);
            let ratios = peers
                .iter()
                .map(|&p| match (ours, value(&self.columns[p]), self.columns[p].unavailable.is_some()) {
                    (Some(o), Some(t), false) => ratio(t as f64, o as f64),
                    _ => "—".into(),
                })
                .collect();
            s.push_str(&self.row(title, cells, ratios));
        }
        let cells = (0..n)
            .map(|i| match (i, self.unavailable(i), &self.columns[i].start) {
                (0, _, _) => "—".into(),
                (_, Some(u), _) => u,
                (_, None, Some(st)) if st.runs > 1 => format!("{} (median of {})", human(us(st.median)), st.runs),
                (_, None, Some(st)) => human(us(st.median)),
                (_, None, None) => "?".into(),
            })
            .collect();
        let ours = self.columns[1].start.as_ref().map(|s| us(s.median));
        let ratios = peers
            .iter()
            .map(|&p| match (ours, &self.columns[p].start, self.columns[p].unavailable.is_some()) {
                (Some(o), Some(t), false) => ratio(us(t.median), o),
                _ => "—".into(),
            })
            .collect();
        s.push_str(&self.row("start-up: process start to first 200 (a proxied chat request)", cells, ratios));
        s
    }

    /// (target, measured, met) for the targets; None measured = could not be measured.
    pub fn verdicts(&self) -> Vec<(String, String, Option<bool>)> {
        let mut v = Vec::new();
        let first = self.latency.first().and_then(|r| r.cells.get(1)).and_then(|c| c.as_ref().ok());
        for (q, limit, name) in [(0.5, 100.0, "p50"), (0.99, 250.0, "p99")] {
            let measured = first.map(|s| added(s, q));
            v.push((
                format!("added {name} at 1 KB ≤ {limit:.0} µs"),
                measured.map(|m| format!("{m:.0} µs")).unwrap_or_else(|| "not measured".into()),
                measured.map(|m| m <= limit),
            ));
        }
        let ours = self.throughput.get(1).and_then(|c| c.as_ref().ok()).map(|t| t.blast.rps());
        v.push((
            format!("throughput at c={} ≥ 10,000 req/s", self.concurrency),
            ours.map(|r| format!("{} req/s", thousands(r))).unwrap_or_else(|| "not measured".into()),
            ours.map(|r| r >= 10_000.0),
        ));
        let idle = self.columns.get(1).and_then(|c| c.idle_rss);
        v.push((
            "idle RSS ≤ 15 MB".into(),
            idle.map(|b| format!("{:.1} MB", b as f64 / MB)).unwrap_or_else(|| "not measured".into()),
            idle.map(|b| b as f64 <= 15.0 * MB),
        ));
        let start = self.columns.get(1).and_then(|c| c.start.as_ref()).map(|s| us(s.median) / 1e3);
        v.push((
            "start-up ≤ 50 ms".into(),
            start.map(|ms| format!("{ms:.1} ms")).unwrap_or_else(|| "not measured".into()),
            start.map(|ms| ms <= 50.0),
        ));
        for p in self.peers() {
            let name = self.columns[p].label.split(' ').next().unwrap_or("").to_string();
            let theirs = self.throughput.get(p).and_then(|c| c.as_ref().ok()).map(|t| t.blast.rps());
            let (measured, met) = match (&self.columns[p].unavailable, ours, theirs, &self.throughput[p]) {
                (Some(why), _, _, _) => (format!("not measured ({})", short(why)), None),
                (None, Some(o), Some(t), _) if t > 0.0 => (format!("{:.0}×", o / t), Some(o / t >= 20.0)),
                (None, _, _, Err(e)) => (format!("not measured ({})", short(e)), None),
                _ => ("not measured".into(), None),
            };
            v.push((format!("throughput ≥ 20× {name}'s"), measured, met));
        }
        v
    }

    pub fn verdict_lines(&self) -> String {
        let mut s = String::from("| target (2 cores) | measured | verdict |\n|---|---:|---|\n");
        for (target, measured, met) in self.verdicts() {
            let word = match met {
                Some(m) => verdict(m),
                None => "not measured",
            };
            s.push_str(&format!("| {target} | {measured} | {word} |\n"));
        }
        s
    }

    pub fn json(&self) -> Value {
        let lat = |s: &Samples| {
            json!({
                "samples": s.values.len(),
                "p50_us": us(percentile(&s.values, 0.5)), "p99_us": us(percentile(&s.values, 0.99)),
                "direct_p50_us": us(percentile(&s.baseline, 0.5)), "direct_p99_us": us(percentile(&s.baseline, 0.99)),
                "added_p50_us": added(s, 0.5), "added_p99_us": added(s, 0.99),
            })
        };
        let cell = |c: Result<Value, &String>| match c {
            Ok(v) => v,
            Err(e) => json!({"error": e}),
        };
        let columns: Vec<Value> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut latency = serde_json::Map::new();
                for row in &self.latency {
                    latency.insert(row.key.into(), cell(row.cells[i].as_ref().map(lat)));
                }
                let mut failover = serde_json::Map::new();
                for row in &self.failover {
                    let f = row.cells[i].as_ref().map(|f| {
                        json!({
                            "samples": f.via_failover.len(),
                            "failover_p50_us": us(percentile(&f.via_failover, 0.5)),
                            "failover_p99_us": us(percentile(&f.via_failover, 0.99)),
                            "straight_p50_us": us(percentile(&f.straight, 0.5)),
                            "straight_p99_us": us(percentile(&f.straight, 0.99)),
                            "hop_p50_us": us(percentile(&f.via_failover, 0.5)) - us(percentile(&f.straight, 0.5)),
                            "hop_p99_us": us(percentile(&f.via_failover, 0.99)) - us(percentile(&f.straight, 0.99)),
                            "mock_503s_served": f.crossings.map(|c| c.0),
                            "failover_requests_sent": f.crossings.map(|c| c.1),
                        })
                    });
                    failover.insert(row.key.into(), cell(f));
                }
                let tput = self.throughput[i].as_ref().map(|t| {
                    json!({
                        "concurrency": self.concurrency, "rps": t.blast.rps(), "ok": t.blast.ok, "errors": t.blast.errors,
                        "seconds": t.blast.elapsed.as_secs_f64(), "first_error": t.blast.first_error,
                        "cpu_us_per_request": t.cpu_per_request.map(us),
                    })
                });
                json!({
                    "label": c.label,
                    "unavailable": c.unavailable,
                    "setup": c.setup,
                    "latency_c1": latency,
                    "throughput": cell(tput),
                    "failover": failover,
                    "idle_rss_bytes": c.idle_rss,
                    "peak_rss_bytes": c.peak_rss,
                    "processes": c.processes,
                    "start_to_first_200_ms": c.start.as_ref().map(|s| json!({
                        "median": us(s.median) / 1e3, "min": us(s.min) / 1e3, "max": us(s.max) / 1e3, "runs": s.runs,
                        "to_listening_line_median": s.to_listening.map(|d| us(d) / 1e3)})),
                })
            })
            .collect();
        let verdicts: Vec<Value> = self
            .verdicts()
            .into_iter()
            .map(|(target, measured, met)| json!({"target": target, "measured": measured, "met": met}))
            .collect();
        json!({
            "mode": if self.quick { "quick" } else { "full" },
            "date": self.date,
            "machine": self.machine,
            "load_average": {"before": self.load_before, "after": self.load_after},
            "columns": columns,
            "targets": verdicts,
            "notes": self.notes,
        })
    }
}
