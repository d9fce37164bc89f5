//! `tokenfold pool`: the pool's state per provider, account and model, read live from the
//! running proxy (`GET /pool`) or, when no proxy answers, from the saved store; as a table or
//! JSON. The first line always says which of the two it shows.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, StoreLocation};

use super::state::Clock;
use super::status::{PoolStatus, WindowStatus, Windows};
use super::Pool;
use crate::table::{clip, Align, Keep, Table};

pub struct Options {
    pub config: Option<PathBuf>,
    /// Ask this proxy (`http://HOST:PORT`) instead of the config's `server.listen`.
    pub url: Option<String>,
    pub json: bool,
}

/// How long to wait for the proxy before reading the saved state instead.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the command; returns the process exit code.
pub fn run(opts: Options) -> u8 {
    let cfg = match Config::load(opts.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let url = opts.url.map(|u| u.trim_end_matches('/').to_string()).or_else(|| proxy_url(cfg.listen));
    let key = cfg.api_keys.first().map(|k| k.expose().to_string());
    let live = match &url {
        Some(u) => ask_proxy(u, key.as_deref()),
        None => Err(format!("server.listen is {} (port 0): no fixed address to ask", cfg.listen)),
    };
    let status = match live {
        Ok(mut s) => {
            s.source = format!("live from the proxy at {}", url.unwrap_or_default());
            s
        }
        Err(why) => match saved_state(&cfg) {
            Ok(mut s) => {
                s.source = format!("{} ({why})", s.source);
                s
            }
            Err(e) => {
                eprintln!("error: {why}, and the saved state cannot be read: {e}");
                return 1;
            }
        },
    };
    if opts.json {
        match serde_json::to_string_pretty(&status) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    } else {
        print!("{}", render_table(&status));
    }
    0
}

/// The proxy's address from `server.listen`: an unspecified address (0.0.0.0) is asked on
/// loopback; port 0 has no fixed address.
fn proxy_url(listen: SocketAddr) -> Option<String> {
    if listen.port() == 0 {
        return None;
    }
    let host = match listen {
        SocketAddr::V4(a) if a.ip().is_unspecified() => "127.0.0.1".to_string(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => "[::1]".to_string(),
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    Some(format!("http://{host}:{}", listen.port()))
}

/// `GET {url}/pool`; the error says why the saved state is shown instead.
fn ask_proxy(url: &str, key: Option<&str>) -> Result<PoolStatus, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(ASK_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut req = client.get(format!("{url}/pool"));
        if let Some(k) = key {
            req = req.header(crate::dialect::headers::TOKENFOLD_KEY, k);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                format!("no proxy answers at {url}")
            } else {
                format!("the proxy at {url} did not answer: {e}")
            }
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("the proxy at {url} broke off its answer: {e}"))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(format!("the proxy at {url} answered HTTP {}: {}", status.as_u16(), text.trim()));
        }
        serde_json::from_slice(&body)
            .map_err(|e| format!("the proxy at {url} sent a status this version cannot read: {e}"))
    })
}

/// The state saved in the store the config names, without a proxy.
fn saved_state(cfg: &Config) -> Result<PoolStatus, String> {
    let (location, what) = match cfg.pool.store.path() {
        None => {
            (StoreLocation::Memory, "configured limits only: pool.store is \"memory\", nothing is saved".to_string())
        }
        Some(p) if !p.exists() => {
            (StoreLocation::Memory, format!("configured limits only: nothing saved yet at {}", p.display()))
        }
        Some(p) => (StoreLocation::Path(p.clone()), format!("saved state from {}", p.display())),
    };
    let pool = Pool::with_store(cfg, Clock::system(), &location).map_err(|e| e.to_string())?;
    let mut status = pool.pool_status();
    status.source = what;
    Ok(status)
}

/// The table `tokenfold pool` prints.
pub fn render_table(s: &PoolStatus) -> String {
    let mut out = format!("Pool: {}, at {}\n", s.source, utc_time(s.now_ms));
    out.push_str("Windows are used/limit (left); `-` is not limited. Minute windows roll; day windows reset at midnight in the provider's zone.\n\n");
    let columns = ["TARGET", "HEALTH", "RPM", "TPM", "RPD", "TPD", "IN FLIGHT", "RESETS IN", "COOLDOWN", "LAST ERROR"];
    let mut table = Table::new(&columns.map(|c| (c, Align::Left)));
    for p in &s.providers {
        let off = p.off.as_ref().map(|o| format!(" - off: {o}")).unwrap_or_default();
        table.text(format!(
            "{} ({}, {}, days start at midnight {}){off}",
            p.name, p.dialect, p.base_url, p.day_reset_tz
        ));
        for a in &p.accounts {
            let ago = a.last_error_ago_s.map(|s| format!(" ({} ago)", duration(s))).unwrap_or_default();
            let who = match &a.caller {
                Some(c) => format!("  {} caller {c}", a.label),
                None => format!("  {}", a.label),
            };
            table.row(row(
                who,
                &a.health,
                &a.windows,
                in_flight(a.in_flight, a.concurrent_limit),
                a.cooldown.as_ref().map(|c| (c.kind.as_str(), c.remaining_s, c.reason.as_str())),
                a.last_error.as_ref().map(|e| format!("{e}{ago}")),
            ));
            for m in &a.models {
                table.row(row(
                    format!("    {}", m.name),
                    &m.health,
                    &m.windows,
                    in_flight(m.in_flight, m.concurrent_limit),
                    m.cooldown.as_ref().map(|c| (c.kind.as_str(), c.remaining_s, c.reason.as_str())),
                    m.last_error.clone(),
                ));
            }
        }
    }
    out.push_str(&table.render());
    if !s.routes.is_empty() {
        out.push_str("\nRoutes:\n");
        for r in &s.routes {
            out.push_str(&format!("  {} ({}): {}\n", r.name, r.strategy, r.targets.join(", ")));
        }
    }
    out
}

fn row(
    target: String,
    health: &str,
    w: &Windows,
    in_flight: String,
    cooldown: Option<(&str, u64, &str)>,
    last_error: Option<String>,
) -> [String; 10] {
    let minute = [&w.rpm, &w.tpm].into_iter().filter(|x| x.used > 0).filter_map(|x| x.resets_in_s).max();
    let day =
        [&w.rpd, &w.tpd].into_iter().filter(|x| x.limit.is_some() || x.used > 0).filter_map(|x| x.resets_in_s).max();
    let resets = match (minute, day) {
        (Some(m), Some(d)) => format!("minute {}, day {}", duration(m), duration(d)),
        (None, Some(d)) => format!("day {}", duration(d)),
        (Some(m), None) => format!("minute {}", duration(m)),
        (None, None) => String::new(),
    };
    let cooldown = cooldown
        .map(|(kind, left, why)| clip(&format!("{kind} {}: {why}", duration(left)), 48, Keep::Start))
        .unwrap_or_default();
    [
        target,
        health.to_string(),
        window(&w.rpm),
        window(&w.tpm),
        window(&w.rpd),
        window(&w.tpd),
        in_flight,
        resets,
        cooldown,
        last_error.map(|e| clip(&e, 60, Keep::Start)).unwrap_or_default(),
    ]
}

fn window(w: &WindowStatus) -> String {
    match (w.limit, w.left) {
        (Some(l), Some(left)) => format!("{}/{} ({})", short(w.used), short(l), short(left)),
        _ if w.used > 0 => format!("{}/-", short(w.used)),
        _ => "-".to_string(),
    }
}

fn in_flight(n: u32, limit: Option<u32>) -> String {
    match limit {
        Some(l) => format!("{n}/{l}"),
        None => n.to_string(),
    }
}

/// 1234 -> 1.2k, 250000 -> 250k, 1048576 -> 1.0M.
fn short(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{}k", n / 1000),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// Seconds as `41s`, `3m05s`, `7h12m`, `2d3h`.
fn duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn utc_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| format!("@{ms}ms"), |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_at_a_glance() {
        assert_eq!(short(250_000), "250k");
        assert_eq!(short(1_048_576), "1.0M");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(26_000), "7h13m");
        let w = WindowStatus { used: 3, limit: Some(30), left: Some(27), resets_in_s: Some(41) };
        assert_eq!(window(&w), "3/30 (27)");
        assert_eq!(utc_time(1_751_371_200_000), "2025-07-01 12:00:00 UTC");
        assert_eq!(proxy_url("0.0.0.0:8411".parse().unwrap()).as_deref(), Some("http://127.0.0.1:8411"));
        assert_eq!(proxy_url("127.0.0.1:0".parse().unwrap()), None);
    }
}
