//! One run of the suite: start everything, measure every column in the same rounds, report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::bodies::{self, Dialect};
use crate::client::{self, Call};
use crate::measure::{self, Cell, Conns, Counts, FailoverPlan, RowSpec, Target, Throughput};
use crate::mock::{self, Mock};
use crate::peers::{self, Dirs, Running, CLIENT_KEY};
use crate::procs;
use crate::report::{Column, FailoverRow, LatencyRow, Results};

pub struct Settings {
    pub quick: bool,
    pub bin: PathBuf,
    pub peers: Option<PathBuf>,
    pub run_dir: PathBuf,
    pub out_dir: PathBuf,
}

/// How much work each phase does.
struct Plan {
    starts: usize,
    latency: Counts,
    latency_large: Counts,
    concurrency: usize,
    tput_warmup: Duration,
    tput_fast_rounds: usize,
    tput_fast_round: Duration,
    tput_slow_round: Duration,
    failover_fast: FailoverPlan,
    failover_litellm: FailoverPlan,
    failover_ninerouter: FailoverPlan,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        let spacing = Duration::from_millis(3);
        let fo = |warmup, samples, straight| FailoverPlan { warmup, samples, straight, spacing };
        if quick {
            return Plan {
                starts: 3,
                latency: Counts { warmup_fast: 20, warmup_slow: 5, fast: 200, slow: 20 },
                latency_large: Counts { warmup_fast: 5, warmup_slow: 2, fast: 50, slow: 10 },
                concurrency: 32,
                tput_warmup: Duration::from_millis(100),
                tput_fast_rounds: 1,
                tput_fast_round: Duration::from_millis(300),
                tput_slow_round: Duration::from_millis(500),
                failover_fast: fo(5, 50, 50),
                failover_litellm: fo(2, 10, 10),
                failover_ninerouter: fo(0, 1, 5),
            };
        }
        Plan {
            starts: 7,
            latency: Counts { warmup_fast: 200, warmup_slow: 20, fast: 3000, slow: 300 },
            latency_large: Counts { warmup_fast: 30, warmup_slow: 5, fast: 600, slow: 100 },
            concurrency: 32,
            tput_warmup: Duration::from_millis(300),
            tput_fast_rounds: 2,
            tput_fast_round: Duration::from_millis(1500),
            tput_slow_round: Duration::from_secs(3),
            failover_fast: fo(20, 300, 300),
            failover_litellm: fo(5, 100, 100),
            // 9Router retries a 503 three times, 2 s apart, then locks the account for 30 s:
            // one cold sample per failure kind is all a bounded run can take.
            failover_ninerouter: fo(0, 1, 20),
        }
    }
}

pub fn run(s: &Settings) -> Result<(), String> {
    let plan = Plan::new(s.quick);
    let _ = std::fs::remove_dir_all(&s.run_dir);
    std::fs::create_dir_all(&s.run_dir).map_err(|e| format!("create {}: {e}", s.run_dir.display()))?;
    let dirs =
        Dirs { peers: if s.quick && s.peers.is_none() { None } else { s.peers.clone() }, run: s.run_dir.clone() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    let load_before = loadavg();
    eprintln!(
        "suite: {} run of {} (load average {load_before})",
        if s.quick { "quick" } else { "full" },
        s.bin.display()
    );
    let mock = mock::start()?;
    // A port nothing listens on, for the "connection refused" failover target.
    let refused = procs::free_port()?;

    let results = rt.block_on(async {
        eprintln!("suite: starting tokenfold ({} starts)", plan.starts);
        let tokenfold = peers::start_tokenfold(&s.bin, mock.addr, refused, &dirs, plan.starts).await?;
        let mut running: Vec<Result<Running, String>> = vec![Ok(tokenfold)];
        if s.quick && s.peers.is_none() {
            running.push(Err("not run in --quick (the CI smoke run)".into()));
            running.push(Err("not run in --quick (the CI smoke run)".into()));
        } else {
            eprintln!("suite: starting LiteLLM");
            running.push(peers::start_litellm(mock.addr, refused, &dirs).await);
            eprintln!("suite: starting 9Router");
            running.push(peers::start_ninerouter(mock.addr, refused, &dirs).await);
        }
        for r in &running {
            if let Err(e) = r {
                eprintln!("suite: a peer is not measured: {e}");
            }
        }
        measure_all(&plan, &mock, running, s.quick, load_before).await
    })?;

    let table = results.markdown();
    let verdicts = results.verdict_lines();
    let notes: String = results.notes.iter().map(|n| format!("- {n}\n")).collect();
    let text = format!(
        "Measured {} on {}, load average {} before and {} after (the machine is shared); {} run.\n\n{table}\n{verdicts}\n{notes}",
        results.date,
        results.machine,
        results.load_before,
        results.load_after,
        if s.quick { "quick (smoke)" } else { "full" }
    );
    println!("{text}");
    std::fs::create_dir_all(&s.out_dir).map_err(|e| format!("create {}: {e}", s.out_dir.display()))?;
    let json = serde_json::to_string_pretty(&results.json()).map_err(|e| e.to_string())?;
    let name = if s.quick { "suite-quick" } else { "suite" };
    for (ext, body) in [("json", json + "\n"), ("md", text)] {
        let path = s.out_dir.join(format!("{name}.{ext}"));
        std::fs::write(&path, body).map_err(|e| format!("write {}: {e}", path.display()))?;
        eprintln!("suite: wrote {}", path.display());
    }
    if results.latency.iter().all(|r| r.cells.get(1).is_some_and(|c| c.is_err())) {
        return Err("tokenfold answered no latency row; see the table".into());
    }
    Ok(())
}

/// The requests of one row for every column: direct gets the plain model names.
fn calls(running: &[Result<Running, String>], dialect: Dialect, size: usize, stream: bool) -> Vec<Cell<Call>> {
    let mut v = vec![direct_call(dialect, size, stream)];
    for r in running {
        v.push(match r {
            Ok(p) => p.call(dialect, p.model(dialect), size, stream),
            Err(e) => Err(e.clone()),
        });
    }
    v
}

fn direct_call(dialect: Dialect, size: usize, stream: bool) -> Cell<Call> {
    let model = if dialect == Dialect::Anthropic { "claude-sonnet-4-5" } else { "gpt-5" };
    Ok(Call {
        path: dialect.path(),
        body: bodies::body(dialect, model, size, stream)?,
        headers: client::client_headers(dialect, CLIENT_KEY)?,
    })
}

async fn measure_all(
    plan: &Plan,
    mock: &Mock,
    running: Vec<Result<Running, String>>,
    quick: bool,
    load_before: String,
) -> Result<Results, String> {
    let unreachable = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut targets = vec![Target { label: "direct (mock alone)".into(), addr: mock.addr, fast: true, pgid: None }];
    for (i, r) in running.iter().enumerate() {
        targets.push(match r {
            Ok(p) => Target { label: label(p), addr: p.addr, fast: i == 0, pgid: Some(p.process.pgid()) },
            Err(_) => Target {
                label: ["tokenfold", "LiteLLM", "9Router"][i].into(),
                addr: unreachable,
                fast: false,
                pgid: None,
            },
        });
    }
    let mut conns = Conns(Vec::new());
    for (i, t) in targets.iter().enumerate() {
        conns.0.push(match i.checked_sub(1).map(|j| &running[j]) {
            Some(Err(e)) => Err(e.clone()),
            _ => client::Conn::open(t.addr).await,
        });
    }
    const KB: usize = 1024;
    let rows = [
        ("1 KB `/v1/messages`, c=1: added p50 / p99", "messages_1k", Dialect::Anthropic, KB, false, &plan.latency),
        ("1 KB `/v1/chat/completions`, c=1: added p50 / p99", "chat_1k", Dialect::OpenaiChat, KB, false, &plan.latency),
        (
            "200 KB `/v1/messages`, c=1: added p50 / p99",
            "messages_200k",
            Dialect::Anthropic,
            200 * KB,
            false,
            &plan.latency_large,
        ),
        (
            "stream, 1 KB `/v1/messages`: added time to first token p50 / p99",
            "stream_ttft_messages_1k",
            Dialect::Anthropic,
            KB,
            true,
            &plan.latency,
        ),
        (
            "stream, 1 KB `/v1/chat/completions`: added time to first token p50 / p99",
            "stream_ttft_chat_1k",
            Dialect::OpenaiChat,
            KB,
            true,
            &plan.latency,
        ),
    ];
    let mut latency = Vec::new();
    for (title, key, dialect, size, stream, counts) in rows {
        eprintln!("suite: latency row {key}");
        let spec = RowSpec { title: title.into(), first_byte: stream, calls: calls(&running, dialect, size, stream) };
        let cells = measure::latency_row(&targets, &mut conns, &spec, counts).await;
        latency.push(LatencyRow { title: spec.title, key, cells });
    }
    drop(conns);

    eprintln!("suite: throughput at c={}", plan.concurrency);
    let tput_calls = calls(&running, Dialect::Anthropic, KB, false);
    // Fast columns alternate in rounds (machine noise hits both alike); peers get one longer round.
    let mut throughput: Vec<Cell<Throughput>> = Vec::new();
    let mut rounds: Vec<Vec<Cell<Throughput>>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..plan.tput_fast_rounds {
        for (i, t) in targets.iter().enumerate() {
            if let (Ok(call), true) = (&tput_calls[i], t.fast) {
                rounds[i]
                    .push(measure::throughput(t, call, plan.concurrency, plan.tput_warmup, plan.tput_fast_round).await);
            }
        }
    }
    for (i, t) in targets.iter().enumerate() {
        throughput.push(match &tput_calls[i] {
            Err(e) => Err(e.clone()),
            Ok(_) if t.fast => {
                std::mem::take(&mut rounds[i]).into_iter().reduce(merge).unwrap_or_else(|| Err("no round ran".into()))
            }
            Ok(call) => measure::throughput(t, call, plan.concurrency, plan.tput_warmup, plan.tput_slow_round).await,
        });
    }

    eprintln!("suite: failover");
    let mut failover = Vec::new();
    for (title, key, refused) in [
        ("failover hop, first target 503s: added p50 / p99", "failover_503", false),
        ("failover hop, first target refuses the connection: added p50 / p99", "failover_refused", true),
    ] {
        let mut cells: Vec<Cell<measure::Failover>> = vec![Err("n/a: no second target to fall back to".into())];
        for (i, r) in running.iter().enumerate() {
            cells.push(match r {
                Err(e) => Err(e.clone()),
                Ok(p) => {
                    let fo_plan = [&plan.failover_fast, &plan.failover_litellm, &plan.failover_ninerouter][i];
                    let name = if refused { &p.models.failover_refused } else { &p.models.failover_503 };
                    match name {
                        None => Err(format!("{} has no fallback between targets", p.name)),
                        Some(model) => {
                            let straight = p.call(Dialect::OpenaiChat, &p.models.openai, KB, false);
                            let via = p.call(Dialect::OpenaiChat, model, KB, false);
                            match (straight, via) {
                                (Ok(straight), Ok(via)) => {
                                    measure::failover(p.addr, &straight, &via, fo_plan, &|| mock.failed_503(), !refused)
                                        .await
                                }
                                (Err(e), _) | (_, Err(e)) => Err(e),
                            }
                        }
                    }
                }
            });
        }
        failover.push(FailoverRow { title: title.into(), key, cells });
    }

    let mut columns = vec![Column {
        label: targets[0].label.clone(),
        unavailable: None,
        setup: "in-process Rust mock (hyper, one thread)".into(),
        start: None,
        idle_rss: None,
        peak_rss: None,
        processes: 0,
    }];
    for (i, r) in running.iter().enumerate() {
        columns.push(match r {
            Ok(p) => Column {
                label: targets[i + 1].label.clone(),
                unavailable: None,
                setup: p.setup.clone(),
                start: Some(p.start.clone()),
                idle_rss: Some(p.idle.rss),
                peak_rss: Some(p.sampler.peak(p.process.pgid())),
                processes: procs::group_rss(p.process.pgid()).processes,
            },
            Err(e) => Column {
                label: targets[i + 1].label.clone(),
                unavailable: Some(e.clone()),
                setup: String::new(),
                start: None,
                idle_rss: None,
                peak_rss: None,
                processes: 0,
            },
        });
    }
    let notes = notes(plan, &running, &latency, &throughput, &failover, &columns);
    drop(running);
    Ok(Results {
        quick,
        date: today(),
        machine: machine(),
        load_before,
        load_after: loadavg(),
        concurrency: plan.concurrency,
        columns,
        latency,
        throughput_title: format!("throughput, 1 KB `/v1/messages`, c={}", plan.concurrency),
        throughput,
        failover,
        notes,
    })
}

fn label(p: &Running) -> String {
    format!("{} {}", p.name, p.version)
}

/// Adds a round's counts to the ones before (an error in any round wins).
fn merge(acc: Cell<Throughput>, round: Cell<Throughput>) -> Cell<Throughput> {
    let (mut a, b) = (acc?, round?);
    let cpu = |t: &Throughput| t.cpu_per_request.map(|c| c.mul_f64(t.blast.ok as f64));
    let total_cpu = cpu(&a).zip(cpu(&b)).map(|(x, y)| x + y);
    a.blast.ok += b.blast.ok;
    a.blast.errors += b.blast.errors;
    a.blast.elapsed += b.blast.elapsed;
    a.blast.first_error = a.blast.first_error.or(b.blast.first_error);
    a.cpu_per_request = total_cpu.filter(|_| a.blast.ok > 0).map(|c| c.div_f64(a.blast.ok as f64));
    Ok(a)
}

fn notes(
    plan: &Plan,
    running: &[Result<Running, String>],
    latency: &[LatencyRow],
    throughput: &[Cell<Throughput>],
    failover: &[FailoverRow],
    columns: &[Column],
) -> Vec<String> {
    let mut n = Vec::new();
    n.push(format!(
        "Latency rows: each round sends the row's request to every column in turn (order rotating); \
         direct and tokenfold take {} rounds ({} for 200 KB, after {} warm-up); \
         after every {} of them one round goes to direct and the peers ({} samples, {} for 200 KB). \
         The peers are paused (SIGSTOP) outside their own rounds and resumed {} ms before each, with the same pause after it, \
         so one column's background work (GC, timers) never lands in another's samples. \
         \"Added\" is the column's percentile minus direct's over the same rounds. Streams: the mock sends its first event at once and the rest 1 ms later.",
        plan.latency.fast,
        plan.latency_large.fast,
        plan.latency.warmup_fast,
        plan.latency.fast / plan.latency.slow.max(1),
        plan.latency.slow,
        plan.latency_large.slow,
        measure::PEER_SETTLE.as_millis()
    ));
    if let Some(Ok(d)) = throughput.first() {
        let cpu = d
            .cpu_per_request
            .map(|c| format!(", load client + mock CPU {:.1} µs per request", c.as_secs_f64() * 1e6))
            .unwrap_or_default();
        n.push(format!(
            "Throughput: {} keep-alive connections for {:.1} s per fast column ({} rounds, alternating) and {:.1} s per peer; \
             the mock alone (same client) did {:.0} req/s{cpu}, the headroom above every proxy.",
            plan.concurrency,
            plan.tput_fast_round.as_secs_f64() * plan.tput_fast_rounds as f64,
            plan.tput_fast_rounds,
            plan.tput_slow_round.as_secs_f64(),
            d.blast.rps()
        ));
    }
    for (i, t) in throughput.iter().enumerate().skip(1) {
        if let (Ok(t), Some(c)) = (t, columns.get(i)) {
            if let Some(cpu) = t.cpu_per_request {
                n.push(format!(
                    "{}: {:.1} µs CPU per request at c={} (all its processes).",
                    c.label,
                    cpu.as_secs_f64() * 1e6,
                    plan.concurrency
                ));
            }
        }
    }
    for row in failover {
        for (i, cell) in row.cells.iter().enumerate().skip(1) {
            if let (Ok(f), Some(c)) = (cell, columns.get(i)) {
                let crossed = match f.crossings {
                    Some((served, sent)) => format!("the mock served {served} 503s for {sent} failover requests"),
                    None => "a refused connection never reaches the mock".into(),
                };
                n.push(format!(
                    "{} `{}`: {} sample(s); hop = failover request minus a request straight to the healthy target, same peer, interleaved; {crossed}.",
                    c.label,
                    row.key,
                    f.via_failover.len()
                ));
            }
        }
    }
    for p in running.iter().flatten() {
        n.push(format!("{}: {}.", label(p), p.setup));
        if let Some(l) = p.start.to_listening {
            n.push(format!(
                "{}: start-up {:.1} ms to the listening line, {:.1} ms to the first proxied 200 (median; min {:.1}, max {:.1} ms).",
                p.name,
                l.as_secs_f64() * 1e3,
                p.start.median.as_secs_f64() * 1e3,
                p.start.min.as_secs_f64() * 1e3,
                p.start.max.as_secs_f64() * 1e3
            ));
        }
    }
    if latency.iter().any(|r| r.cells.iter().skip(2).any(|c| c.is_ok())) {
        n.push("Peers run with their defaults apart from what the mock needs: no tuning either way.".into());
    }
    n
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// "2 CPUs (AMD EPYC), 23.5 GiB RAM", from nproc, /proc/cpuinfo and /proc/meminfo.
fn machine() -> String {
    let cpus = std::process::Command::new("nproc")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map(|n| n.get().to_string()).unwrap_or_else(|_| "?".into())
        });
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB RAM", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "? RAM".into());
    format!("{cpus} CPUs ({model}), {ram}")
}

/// Today's date in UTC, YYYY-MM-DD.
fn today() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%d").to_string()
}
