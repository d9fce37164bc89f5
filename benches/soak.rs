//! Soak: mixed traffic through the release binary for 30 minutes, the proxy's RSS sampled each
//! minute; it must end within 10% of its value after minute 5 (no leak, no unbounded growth).
//!
//! ```text
//! cargo bench --bench soak                    # 30 minutes (TOKENFOLD_SOAK_MINUTES=N for N)
//! cargo bench --bench soak -- --quick         # a 30-second smoke run (what .ci/run does)
//! ```
//!
//! Traffic (40 requests/s, six clients on loopback): agent sessions in all three dialects that
//! grow turn by turn and fold (re-reads, test logs) and start over after 24 turns; each request
//! to a same-dialect target, a translated one, a fallback route whose first provider fails every
//! third request (503, 429 with Retry-After, reset before the first byte), or a model no config
//! lists; half streamed, one stream in twenty dropped by the client midway; twenty callers' own
//! keys (`auth = "client"`). The ledger, the pool store and the originals store are on, in
//! target/soak/. Every request not dropped on purpose must get a 200. The curve and the verdict
//! are printed and written to target/bench-soak.json. The smoke run checks the traffic and
//! prints the curve; its RSS verdict is only informative (memory is still warming up).
//!
//! The fold cache is set to 8 MB (`TOKENFOLD_SOAK_CACHE_MB` sets another size): a bounded LRU,
//! it is full within the warm-up, so what grows after minute 5 is what does not stop growing.
//! At the default 64 MB it takes ~15 minutes of this traffic to fill (RSS 62 MB at minute 5,
//! 69 MB from minute 17 on, flat after). `TOKENFOLD_SOAK_DIR` puts the run's files elsewhere.

#[path = "soak/mock.rs"]
mod mock;
#[allow(dead_code)]
mod support;
#[path = "soak/traffic.rs"]
mod traffic;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use traffic::{Dialect, Session, MODELS};

const RATE_PER_S: f64 = 40.0;
const CLIENTS: usize = 6;
const SESSIONS_PER_CLIENT: usize = 6;
const CALLERS: usize = 20;
/// The RSS at the end may differ from the RSS after the warm-up by this much.
const TOLERANCE: f64 = 0.10;

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    ok: AtomicU64,
    /// Streams the client dropped on purpose after the first chunk.
    dropped: AtomicU64,
    unexpected: AtomicU64,
    examples: Mutex<Vec<String>>,
}

struct Sample {
    at: Duration,
    rss: u64,
    sent: u64,
    ok: u64,
    dropped: u64,
    unexpected: u64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let minutes: f64 = std::env::var("TOKENFOLD_SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(30.0);
    // (length, sampling interval, the sample the end is compared with)
    let (length, every, warm) = if quick {
        (Duration::from_secs(30), Duration::from_secs(3), 5)
    } else {
        (Duration::from_secs_f64(minutes * 60.0), Duration::from_secs(60), 5)
    };
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| manifest_dir.join("target"));
    let bin = support::proxy_binary(manifest_dir, &target_dir).expect("a tokenfold binary to soak");
    let dir = std::env::var_os("TOKENFOLD_SOAK_DIR").map(PathBuf::from).unwrap_or_else(|| target_dir.join("soak"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("target/soak");

    let (good, flaky) = (mock::start(0), mock::start(3));
    let config = dir.join("tokenfold.toml");
    let cache_mb = std::env::var("TOKENFOLD_SOAK_CACHE_MB").unwrap_or_else(|_| "8".into());
    let text = config_text(&format!("http://{good}"), &format!("http://{flaky}"), &dir, &cache_mb);
    std::fs::write(&config, text).expect("config");
    let args = ["--config".to_string(), config.display().to_string()];
    let xdg = [("XDG_DATA_HOME", dir.as_path()), ("XDG_CACHE_HOME", dir.as_path())];
    let proxy = support::spawn_serve(&bin, &args, &dir.join("ledger.db"), &xdg).expect("the proxy starts");
    let base = format!("http://{}", proxy.addr);
    println!(
        "soak: {} for {:.0} s, RSS every {} s, {RATE_PER_S} requests/s from {CLIENTS} clients",
        bin.display(),
        length.as_secs_f64(),
        every.as_secs()
    );

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let clients: Vec<_> =
        (0..CLIENTS).map(|c| runtime.spawn(client(c as u64, base.clone(), stats.clone(), stop.clone()))).collect();

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut died = None;
    while started.elapsed() < length {
        std::thread::sleep(every.min(length.saturating_sub(started.elapsed())));
        let Some((rss, _)) = support::rss(proxy.pid()) else {
            died = Some(format!("the proxy is gone:\n{}", proxy.log_tail()));
            break;
        };
        let s = Sample {
            at: started.elapsed(),
            rss,
            sent: stats.sent.load(Relaxed),
            ok: stats.ok.load(Relaxed),
            dropped: stats.dropped.load(Relaxed),
            unexpected: stats.unexpected.load(Relaxed),
        };
        println!(
            "soak: {:>6.0} s  RSS {:>6.1} MB  {} requests ({} ok, {} dropped by the client, {} unexpected)",
            s.at.as_secs_f64(),
            mb(s.rss),
            s.sent,
            s.ok,
            s.dropped,
            s.unexpected
        );
        samples.push(s);
    }
    stop.store(true, Relaxed);
    runtime.block_on(async {
        for c in clients {
            let _ = c.await;
        }
    });
    drop(proxy);

    let verdict = judge(&samples, warm, &stats, quick, died);
    print_curve(&samples, every);
    write_json(&target_dir.join("bench-soak.json"), &samples, &verdict, quick);
    match verdict {
        Ok(line) => println!("soak: PASS: {line}"),
        Err(line) => {
            println!("soak: FAIL: {line}");
            std::process::exit(1);
        }
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// PASS/FAIL and why: the proxy lived, every request not dropped on purpose got a 200, and (full
/// runs) the last RSS is within `TOLERANCE` of the warm-up sample.
fn judge(samples: &[Sample], warm: usize, stats: &Stats, quick: bool, died: Option<String>) -> Result<String, String> {
    if let Some(why) = died {
        return Err(why);
    }
    let examples = stats.examples.lock().map(|e| e.join("\n  ")).unwrap_or_default();
    let (sent, bad) = (stats.sent.load(Relaxed), stats.unexpected.load(Relaxed));
    if sent == 0 || bad > 0 {
        return Err(format!("{bad} of {sent} requests got an unexpected answer:\n  {examples}"));
    }
    let (Some(base), Some(last)) = (samples.get(warm - 1), samples.last()) else {
        return Err(format!("only {} RSS samples", samples.len()));
    };
    let change = (last.rss as f64 - base.rss as f64) / base.rss as f64;
    let line = format!(
        "RSS {:.1} MB after sample {warm}, {:.1} MB at the end ({:+.1}%, bound ±{:.0}%); {sent} requests, all answered",
        mb(base.rss),
        mb(last.rss),
        change * 100.0,
        TOLERANCE * 100.0
    );
    match (change.abs() <= TOLERANCE, quick) {
        (true, _) => Ok(line),
        (false, true) => Ok(format!("{line} (smoke run: the bound is judged on full runs)")),
        (false, false) => Err(line),
    }
}

fn print_curve(samples: &[Sample], every: Duration) {
    println!(
        "\n| {} | RSS (MB) | requests | dropped by client |",
        if every.as_secs() == 60 { "minute" } else { "second" }
    );
    println!("|---:|---:|---:|---:|");
    for s in samples {
        let at = if every.as_secs() == 60 { (s.at.as_secs_f64() / 60.0).round() } else { s.at.as_secs_f64().round() };
        println!("| {at:.0} | {:.1} | {} | {} |", mb(s.rss), s.sent, s.dropped);
    }
    println!();
}

fn write_json(path: &Path, samples: &[Sample], verdict: &Result<String, String>, quick: bool) {
    let rows: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| serde_json::json!({"at_s": s.at.as_secs(), "rss_bytes": s.rss, "requests": s.sent, "ok": s.ok, "dropped": s.dropped, "unexpected": s.unexpected}))
        .collect();
    let (pass, line) = match verdict {
        Ok(l) => (true, l),
        Err(l) => (false, l),
    };
    let doc = serde_json::json!({"quick": quick, "pass": pass, "verdict": line, "samples": rows});
    let _ = std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap_or_default());
}

/// One client: its own sessions, paced to its share of the rate, until told to stop.
async fn client(index: u64, base: String, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let mut rng = fastrand::Rng::with_seed(0x50a4 + index);
    let http = reqwest::Client::new();
    let mut sessions: Vec<Session> =
        (0..SESSIONS_PER_CLIENT).map(|s| Session::new(Dialect::ALL[s % 3], index * 1000 + s as u64)).collect();
    let gap = Duration::from_secs_f64(CLIENTS as f64 / RATE_PER_S);
    let mut next = tokio::time::Instant::now();
    let mut invented = 0u64;
    while !stop.load(Relaxed) {
        next += gap;
        tokio::time::sleep_until(next).await;
        let session = &mut sessions[rng.usize(..SESSIONS_PER_CLIENT)];
        let model = if rng.u8(..100) == 0 {
            invented += 1;
            format!("made-up-model-{index}-{invented}")
        } else {
            MODELS[rng.usize(..MODELS.len())].to_string()
        };
        let stream = rng.bool();
        let body = session.next_body(&mut rng, &model, stream);
        let key = format!("sk-soak-caller-{}", rng.usize(..CALLERS));
        let mut req = http.post(format!("{base}{}", session.dialect.path())).body(body);
        req = req.header("content-type", "application/json");
        req = match session.dialect {
            Dialect::Anthropic => req.header("x-api-key", key).header("anthropic-version", "2023-06-01"),
            _ => req.bearer_auth(key),
        };
        stats.sent.fetch_add(1, Relaxed);
        let drop_midway = stream && rng.u8(..20) == 0;
        match answer(req, drop_midway).await {
            Ok(true) => stats.dropped.fetch_add(1, Relaxed),
            Ok(false) => stats.ok.fetch_add(1, Relaxed),
            Err(why) => {
                if let Ok(mut e) = stats.examples.lock() {
                    if e.len() < 5 {
                        e.push(format!("{:?} {model} stream={stream}: {why}", session.dialect));
                    }
                }
                stats.unexpected.fetch_add(1, Relaxed)
            }
        };
    }
}

/// Sends and reads the answer; `Ok(true)` when the client dropped the stream on purpose.
async fn answer(req: reqwest::RequestBuilder, drop_midway: bool) -> Result<bool, String> {
    let mut resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if status != 200 {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {}", text.chars().take(300).collect::<String>()));
    }
    if drop_midway {
        resp.chunk().await.map_err(|e| e.to_string())?;
        return Ok(true);
    }
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    let has = |needle: &[u8]| memchr::memmem::find(&body, needle).is_some();
    if body.is_empty() || has(b"\"error\":{") || has(b"event: error") || has(b"\"type\":\"error\"") {
        return Err(format!("an error or empty answer: {}", String::from_utf8_lossy(&body[..body.len().min(300)])));
    }
    Ok(false)
}

fn config_text(good: &str, flaky: &str, dir: &Path, cache_mb: &str) -> String {
    format!(
        r#"# Written by benches/soak.rs.
[server]
listen = "127.0.0.1:0"
[timeouts]
connect_ms = 2000
first_byte_ms = 10000
idle_ms = 10000
[fold]
cache_mb = {cache_mb}
level = "balanced"
originals_dir = "{o}"
originals_max_mb = 32
[pool]
store = "{db}"
short_cooldown_ms = 500
breaker_open_ms = 2000
[[providers]]
name = "good-anthropic"
kind = "anthropic"
base_url = "{good}/v1"
auth = "client"
models = ["claude-soak"]
[[providers]]
name = "good-chat"
kind = "openai"
base_url = "{good}/v1"
auth = "client"
models = ["gpt-soak"]
[[providers]]
name = "good-responses"
kind = "openai-responses"
base_url = "{good}/v1"
auth = "client"
models = ["codex-soak"]
[[providers]]
name = "flaky-chat"
kind = "openai"
base_url = "{flaky}/v1"
auth = "client"
models = ["gpt-soak"]
[routes.fallback-chat]
targets = ["flaky-chat/gpt-soak", "good-chat/gpt-soak"]
[default_upstream]
anthropic = "good-anthropic"
openai-chat = "good-chat"
openai-responses = "good-responses"
"#,
        o = dir.join("originals").display(),
        db = dir.join("tokenfold.db").display(),
    )
}
