//! The measuring loops: interleaved latency rounds at concurrency 1, fixed-time throughput at
//! concurrency 32, and failover pairs. A target that fails keeps its error; the others go on.

use std::net::SocketAddr;
use std::time::Duration;

use crate::client::{self, Blast, Call, Conn, Reply};
use crate::procs;

/// One column of the table: the mock itself (index 0) or a proxy in front of it.
pub struct Target {
    pub label: String,
    pub addr: SocketAddr,
    /// Fast targets (direct, tokenfold) take every round; slow ones every `stride`-th.
    pub fast: bool,
    /// The process group to read CPU time from (None: the suite's own process).
    pub pgid: Option<u32>,
}

/// Latency samples of one target in one row, with the direct samples of the same rounds.
#[derive(Default)]
pub struct Samples {
    pub values: Vec<Duration>,
    pub baseline: Vec<Duration>,
}

pub type Cell<T> = Result<T, String>;

/// Pause after each peer round (see `latency_row`).
pub const PEER_SETTLE: Duration = Duration::from_millis(10);

pub struct RowSpec {
    pub title: String,
    /// Time to the first body bytes instead of to the end of the answer.
    pub first_byte: bool,
    /// The request per target (None: that target cannot take it; the reason is in the table).
    pub calls: Vec<Cell<Call>>,
}

pub struct Counts {
    pub warmup_fast: usize,
    pub warmup_slow: usize,
    pub fast: usize,
    pub slow: usize,
}

/// Checks that an answer is what a client of that dialect expects, with usage.
pub fn check_answer(reply: &Reply, call: &Call) -> Result<(), String> {
    let text = String::from_utf8_lossy(&reply.body);
    let stream = memchr::memmem::find(&call.body, b"\"stream\":true").is_some();
    let anthropic = call.path.ends_with("/messages");
    let ok = match (stream, anthropic) {
        (false, true) => {
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text:.120}"))?;
            v["content"].is_array() && v["usage"]["input_tokens"].is_u64()
        }
        (false, false) => {
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text:.120}"))?;
            v["choices"].is_array() && v["usage"]["prompt_tokens"].is_u64()
        }
        (true, true) => {
            text.contains("event: message_start") && text.contains("message_stop") && text.contains("usage")
        }
        (true, false) => text.starts_with("data:") && text.contains("[DONE]") && text.contains("usage"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected answer (stream {stream}): {}", text.chars().take(160).collect::<String>()))
    }
}

/// Keep-alive connections per target, opened once and reused by every row.
pub struct Conns(pub Vec<Cell<Conn>>);

/// Runs one latency row: warm-up (checking every target's first answer), then rounds in which
/// direct and the fast targets, or direct and the slow ones, send the row's request in an order
/// that rotates each round.
pub async fn latency_row(targets: &[Target], conns: &mut Conns, row: &RowSpec, counts: &Counts) -> Vec<Cell<Samples>> {
    let n = targets.len();
    let mut cells: Vec<Cell<Samples>> = (0..n)
        .map(|i| match (&row.calls[i], &conns.0[i]) {
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
            _ => Ok(Samples::default()),
        })
        .collect();
    for i in 0..n {
        if cells[i].is_err() {
            continue;
        }
        let warm = if targets[i].fast { counts.warmup_fast } else { counts.warmup_slow };
        let (Ok(call), Ok(conn)) = (&row.calls[i], &mut conns.0[i]) else { continue };
        for w in 0..warm.max(1) {
            let checked = match conn.send(call).await {
                Ok(reply) if w == 0 => check_answer(&reply, call),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = checked {
                cells[i] = Err(e);
                break;
            }
        }
    }
    // Fast rounds (direct and tokenfold) and peer rounds (direct and the peers) alternate, one
    // peer round after every `stride` fast ones. The peers are paused (SIGSTOP) during fast
    // rounds and resumed a settle time before their own, so no column's background work (GC,
    // timers) lands in another column's samples; each column is compared with the direct
    // samples of its own rounds.
    let stride = (counts.fast / counts.slow.max(1)).max(1);
    let peer_groups: Vec<u32> =
        targets.iter().zip(&cells).filter(|(t, c)| !t.fast && c.is_ok()).filter_map(|(t, _)| t.pgid).collect();
    procs::pause_groups(&peer_groups, true);
    tokio::time::sleep(PEER_SETTLE).await;
    let (mut fast_done, mut slow_done) = (0usize, 0usize);
    loop {
        let slow_active = (1..n).any(|i| !targets[i].fast && cells[i].is_ok());
        let peer_round = slow_active
            && slow_done < counts.slow
            && (fast_done >= counts.fast || fast_done >= (slow_done + 1) * stride);
        if !peer_round && fast_done >= counts.fast {
            break;
        }
        let mut order: Vec<usize> =
            (0..n).filter(|&i| cells[i].is_ok() && (i == 0 || targets[i].fast != peer_round)).collect();
        let round = fast_done + slow_done;
        let shift = round % order.len().max(1);
        order.rotate_left(shift);
        if peer_round {
            procs::pause_groups(&peer_groups, false);
            tokio::time::sleep(PEER_SETTLE).await;
        }
        let mut taken: Vec<(usize, Duration)> = Vec::with_capacity(order.len());
        for i in order {
            let (Ok(call), Ok(conn)) = (&row.calls[i], &mut conns.0[i]) else { continue };
            match conn.send(call).await {
                Ok(r) => taken.push((i, if row.first_byte { r.first_byte } else { r.total })),
                Err(e) => cells[i] = Err(format!("after {round} rounds: {e}")),
            }
        }
        let direct = taken.iter().find(|(i, _)| *i == 0).map(|(_, d)| *d);
        for (i, d) in taken {
            // Direct's own column keeps only the fast rounds, the ones tokenfold is compared with.
            if i == 0 && peer_round {
                continue;
            }
            if let (Ok(s), Some(base)) = (&mut cells[i], direct) {
                s.values.push(d);
                s.baseline.push(base);
            }
        }
        if peer_round {
            slow_done += 1;
            procs::pause_groups(&peer_groups, true);
            tokio::time::sleep(PEER_SETTLE).await;
        } else {
            fast_done += 1;
        }
    }
    procs::pause_groups(&peer_groups, false);
    // The direct column's own baseline is itself; nothing else to do.
    cells
}

/// Throughput at `concurrency` for one target, with its CPU use per request.
pub struct Throughput {
    pub blast: Blast,
    pub cpu_per_request: Option<Duration>,
}

pub async fn throughput(
    target: &Target,
    call: &Call,
    concurrency: usize,
    warmup: Duration,
    run: Duration,
) -> Cell<Throughput> {
    let warm = client::blast(target.addr, call, concurrency, warmup).await?;
    if warm.ok == 0 {
        return Err(format!("no request succeeded in the warm-up: {}", warm.first_error.unwrap_or_default()));
    }
    let cpu = || match target.pgid {
        Some(pgid) => procs::group_cpu(pgid),
        None => self_cpu(),
    };
    let before = cpu();
    let blast = client::blast(target.addr, call, concurrency, run).await?;
    let used = cpu().saturating_sub(before);
    let cpu_per_request = (blast.ok > 0).then(|| used.div_f64(blast.ok as f64));
    Ok(Throughput { blast, cpu_per_request })
}

/// This process's CPU time: the load client and the mock together.
fn self_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    let Some(close) = stat.rfind(')') else { return Duration::ZERO };
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Failover: requests whose route's first target is down, each next to a request that goes
/// straight to the healthy target, on the same peer.
pub struct Failover {
    pub via_failover: Vec<Duration>,
    pub straight: Vec<Duration>,
    /// How many 503s the mock served while these requests ran, and how many failover requests
    /// were sent (None for a refused connection, which the mock never sees).
    pub crossings: Option<(u64, u64)>,
}

pub struct FailoverPlan {
    pub warmup: usize,
    pub samples: usize,
    pub straight: usize,
    /// Pause before each failover request, so a short demotion of the failed target (tokenfold:
    /// 1 ms as configured here) has passed and the request really tries it first.
    pub spacing: Duration,
}

pub async fn failover(
    addr: SocketAddr,
    straight: &Call,
    via: &Call,
    plan: &FailoverPlan,
    failed_503: &dyn Fn() -> u64,
    counts_503: bool,
) -> Cell<Failover> {
    let mut conn = Conn::open(addr).await?;
    let before = failed_503();
    let mut sent = 0u64;
    for _ in 0..plan.warmup {
        conn.send(straight).await?;
        tokio::time::sleep(plan.spacing).await;
        conn.send(via).await.map_err(|e| format!("failover request: {e}"))?;
        sent += 1;
    }
    let mut out = Failover { via_failover: Vec::new(), straight: Vec::new(), crossings: None };
    for i in 0..plan.samples.max(plan.straight) {
        out.straight.push(conn.send(straight).await?.total);
        if i < plan.samples {
            tokio::time::sleep(plan.spacing).await;
            let r = conn.send(via).await.map_err(|e| format!("failover request: {e}"))?;
            out.via_failover.push(r.total);
            sent += 1;
        }
    }
    if counts_503 {
        out.crossings = Some((failed_503() - before, sent));
    }
    Ok(out)
}

pub fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or_default()
}
