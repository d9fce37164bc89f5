//! The dashboard: its JSON matches the ledger and the pool, access is loopback-only unless api
//! keys are set, and the page renders its charts and quota bars in headless Chromium (installed
//! by .ci/run; without it the browser check says SKIPPED, and fails under CI=true).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mock::{self, Reply};
use common::{spawn_proxy, temp_file};
use tokenfold::dialect::usage::Usage;
use tokenfold::ledger::{Ledger, Record, RequestOutcome};
use tokenfold::price::Price;

fn chromium() -> Option<String> {
    let candidates =
        [std::env::var("CHROMIUM").unwrap_or_default(), "/usr/bin/chromium".into(), "/usr/bin/chromium-browser".into()];
    candidates.into_iter().find(|c| !c.is_empty() && Path::new(c).exists())
}

fn config(base: &str, server: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}
[pool]
store = "memory"
[[providers]]
name = "mock-openai"
kind = "openai"
base_url = "{base}/v1"
accounts = [{{ label = "team", api_key = "${{TF_DASH_KEY}}" }}]
limits = {{ rpm = 20, rpd = 200, tpm = 60000 }}
models = [{{ name = "gpt-test", price = {{ input = 2.0, output = 8.0, cached_input = 0.5 }}, limits = {{ rpd = 50 }} }}]
[[providers]]
name = "gemini-like"
kind = "openai"
base_url = "{base}/v1"
api_key = "${{TF_UNSET_KEY}}"
free_tier = true
[default_upstream]
openai-chat = "mock-openai"
"#
    )
}

/// A Chat request that shows the same file twice, so folding replaces the second copy.
fn reread_chat(tag: &str) -> String {
    let file: String = (1..=60).map(|i| format!("{i:>6}\tlet value_{i} = compute({i}, \"{tag}\");\n")).collect();
    let call = |id: &str| serde_json::json!({"id": id, "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"src/lib.rs\"}"}});
    serde_json::json!({
        "model": "gpt-test",
        "messages": [
            {"role": "user", "content": format!("read lib.rs ({tag})")},
            {"role": "assistant", "content": null, "tool_calls": [call("call_1")]},
            {"role": "tool", "tool_call_id": "call_1", "content": file},
            {"role": "assistant", "content": null, "tool_calls": [call("call_2")]},
            {"role": "tool", "tool_call_id": "call_2", "content": file}
        ]
    })
    .to_string()
}

/// Earlier days for the charts, written through the library into the file the proxy will use.
fn seed_history(db: &Path) {
    let ledger = Ledger::open(db, Duration::from_secs(365 * 86_400));
    let now = tokenfold::ledger::now_ms();
    for day in 1..=6i64 {
        for i in 0..(2 + day as u64) {
            let mut r = Record::empty();
            r.ts_ms = now - day * 86_400_000;
            r.client = "Claude Code";
            r.dialect = "anthropic";
            r.status = 200;
            r.outcome = RequestOutcome::Completed;
            r.overhead_us = 40 + i;
            if i % 3 == 1 {
                // A free tier, reached after a rate-limited one.
                (r.route, r.provider, r.account, r.model) =
                    ("free-coder".into(), "gemini".into(), "default".into(), "gemini-2.5-flash".into());
                r.fallbacks.push("groq/default: rate_limited".into());
                r.free_tier = true;
                r.prices = Price { input: 0.3, output: 2.5, cached_input: 0.03, cache_write: 0.3, cache_write_1h: 0.6 };
            } else {
                (r.route, r.provider, r.account, r.model) =
                    ("claude-sonnet-4-5".into(), "anthropic".into(), "client".into(), "claude-sonnet-4-5".into());
                r.prices =
                    Price { input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6.0 };
            }
            r.add_saving("whole-output", |s| (s.tokens, s.turn_tokens, s.elisions) = (3_000 * day as u64, 800, 1));
            r.add_saving("span", |s| (s.tokens, s.elisions, s.recalls) = (1_000 + 300 * i, 2, u64::from(i == 0)));
            r.settle(Usage { input: 2_000, output: 500, cache_read: 40_000, cache_write: 3_000, cache_write_1h: 0 });
            ledger.record(r);
        }
    }
    drop(ledger);
    let expected: i64 = (1..=6).map(|d| 2 + d).sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = rusqlite::Connection::open(db)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0)))
            .unwrap_or(0);
        if n == expected {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "seeded {n} of {expected}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `target/artifacts`, where CI collects the screenshot.
fn artifacts() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("artifacts")
}

#[tokio::test]
async fn dashboard_renders_the_seeded_ledger_and_quotas() {
    let mock = mock::start(|rec| {
        if String::from_utf8_lossy(&rec.body).contains("fail-me") {
            Reply::Json { status: 500, body: b"{}".to_vec(), headers: vec![] }
        } else {
            Reply::ok_json(mock::chat_completion("hi"))
        }
    })
    .await;
    let cfg = temp_file("dash.toml", &config(&mock.base(), ""));
    let db = temp_file("dash.db", "");
    std::fs::remove_file(&db).unwrap();
    seed_history(&db);
    let proxy = spawn_proxy(
        &["--config", cfg.to_str().unwrap()],
        &[("TOKENFOLD_LEDGER", db.to_str().unwrap()), ("TF_DASH_KEY", "k")],
    );
    let c = reqwest::Client::new();
    let bodies = [reread_chat("a"), reread_chat("b"), r#"{"model":"gpt-test","x":"fail-me"}"#.to_string()];
    for body in &bodies {
        c.post(proxy.url("/v1/chat/completions")).body(body.clone()).send().await.unwrap().bytes().await.unwrap();
    }
    let seeded: u64 = (1..=6).map(|d| 2 + d).sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let data = loop {
        let d: serde_json::Value = c.get(proxy.url("/dashboard/data")).send().await.unwrap().json().await.unwrap();
        if d["summary"]["total"]["requests"] == seeded + 3 {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "ledger never reached {} requests: {d}", seeded + 3);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(data["summary"]["total"]["errors"], 1);
    assert_eq!(data["recent"].as_array().unwrap().len(), 3 + seeded as usize);
    assert_eq!(data["by_day"]["rows"].as_array().unwrap().len(), 7, "six seeded days and today");
    let today = data["by_day"]["rows"].as_array().unwrap().last().unwrap().clone();
    assert!(
        today["tokens_before"].as_u64().unwrap() > today["tokens_after"].as_u64().unwrap(),
        "folded today: {today}"
    );
    let mechanisms: Vec<&str> =
        data["summary"]["mechanisms"].as_array().unwrap().iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert!(mechanisms.contains(&"span") && mechanisms.contains(&"whole-output"), "{mechanisms:?}");
    // Quotas: the account's windows with what the pool counted, and the unconfigured provider off.
    let quotas = data["quotas"].as_array().unwrap();
    let team = quotas.iter().find(|q| q["account"] == "team").unwrap_or_else(|| panic!("{quotas:?}"));
    let bar = |label: &str| team["bars"].as_array().unwrap().iter().find(|b| b["label"] == label).cloned();
    let rpm = bar("rpm").unwrap_or_else(|| panic!("{team}"));
    assert_eq!((rpm["used"].as_u64(), rpm["limit"].as_u64()), (Some(3), Some(20)), "{team}");
    // The rolling minute keeps 61 one-second buckets, so a request counts for 60-61 s.
    assert!(rpm["reset_in_s"].as_u64().is_some_and(|s| s <= 61), "{rpm}");
    assert_eq!(bar("rpd").unwrap()["limit"], 200);
    assert_eq!(bar("gpt-test rpd").unwrap()["limit"], 50, "{team}");
    assert!(bar("gpt-test rpm").is_none(), "no per-model bar where only the account is limited: {team}");
    let total = &data["summary"]["total"];
    assert_eq!((total["free_requests"].as_u64(), total["fallbacks"].as_u64()), (Some(11), Some(11)), "{total}");
    // Cache hit share per provider over time: daily points over the seeded week.
    assert_eq!(data["cache"]["bucket_ms"], 86_400_000, "{}", data["cache"]);
    let series = data["cache"]["series"].as_array().unwrap();
    let providers: Vec<&str> = series.iter().map(|s| s["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["anthropic", "gemini", "mock-openai"], "{}", data["cache"]);
    let anthropic = &series[0]["points"];
    assert_eq!(anthropic.as_array().unwrap().len(), 6, "one point per seeded day");
    assert!(
        anthropic.as_array().unwrap().iter().all(|p| p["input"].as_u64().unwrap() % 45_000 == 0
            && p["cache_read"].as_u64().unwrap() * 45_000 == p["input"].as_u64().unwrap() * 40_000),
        "{anthropic}"
    );
    let hit = total["cache_hit_pct"].as_f64().unwrap();
    assert!(hit > 80.0 && hit < 89.0, "{total}");
    let off = quotas.iter().find(|q| q["provider"] == "gemini-like").unwrap();
    assert!(off["off"].as_str().unwrap().contains("TF_UNSET_KEY"), "{off}");

    let page = c.get(proxy.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    for external in ["<script src", "<link", "url(", "@import", "https://"] {
        assert!(!html.contains(external), "the page must load nothing from outside: {external}");
    }

    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "CI=true but chromium is not installed: the dashboard must be checked in a browser under CI"
        );
        eprintln!("SKIPPED browser check: chromium is not installed (apt-get install chromium)");
        return;
    };
    let artifacts = artifacts();
    std::fs::create_dir_all(&artifacts).unwrap();
    let profile = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chromium-profile");
    let url = proxy.url("/dashboard");
    let run = move |extra: Vec<String>| {
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=4000",
            "--window-size=1280,1400",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra);
        args.push(url.clone());
        std::process::Command::new(&browser).args(args).output().unwrap()
    };
    let dom = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(vec!["--dump-dom".into()])
    })
    .await
    .unwrap();
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let console = String::from_utf8_lossy(&dom.stderr);
    let status = dom_text.split("id=\"updated\">").nth(1).and_then(|t| t.split('<').next()).unwrap_or("");
    assert!(status.starts_with("updated "), "the data did not load: `{status}`\n{console}");
    for chart in ["tokens-days", "cost-days"] {
        let svg =
            dom_text.split(&format!("id=\"{chart}\"")).nth(1).and_then(|t| t.split("</svg>").next()).unwrap_or("");
        assert_eq!(svg.matches("<rect").count(), 7, "{chart}: one bar per day:\n{svg}");
    }
    let cache_svg = dom_text.split("id=\"cache-hits\"").nth(1).and_then(|t| t.split("</svg>").next()).unwrap_or("");
    assert_eq!(cache_svg.matches("<polyline").count(), 3, "one line per provider:\n{cache_svg}");
    assert!(dom_text.contains("anthropic 88.9%"), "the legend gives each provider's hit share");
    assert!(dom_text.contains("mock-openai / team — "), "the quota panel names the account");
    assert!(dom_text.contains("rpm: 3 / 20") && dom_text.contains("resets in "), "quota bars with countdowns");
    assert!(dom_text.contains("recall "), "recall rates per mechanism");
    let rows = dom_text.split("id=\"recent\"").nth(1).unwrap_or("").split("</tbody>").next().unwrap_or("");
    assert_eq!(rows.matches("<tr").count(), 3 + seeded as usize, "recent requests");
    // Page errors reach stderr as `CONSOLE` lines with --enable-logging.
    let page_errors: Vec<&str> = console.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(page_errors.is_empty(), "console errors:\n{}", page_errors.join("\n"));
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || run(vec![format!("--screenshot={}", shot.display())])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot missing or empty");
    eprintln!("dashboard screenshot: {}", shot.display());
}

#[tokio::test]
async fn with_api_keys_the_dashboard_takes_the_key_in_the_query() {
    let mock = mock::start(|_| Reply::ok_json(mock::chat_completion("hi"))).await;
    let cfg = temp_file("dash-keys.toml", &config(&mock.base(), "api_keys = [\"${TF_PROXY_KEY}\"]"));
    let proxy = spawn_proxy(
        &["--config", cfg.to_str().unwrap()],
        &[("TOKENFOLD_LEDGER", "off"), ("TF_DASH_KEY", "k"), ("TF_PROXY_KEY", "s3cret")],
    );
    let c = reqwest::Client::new();
    let status = |path: &'static str| {
        let (c, url) = (c.clone(), proxy.url(path));
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/dashboard").await, 401, "no key");
    assert_eq!(status("/dashboard?key=wrong").await, 401);
    assert_eq!(status("/dashboard?key=s3cret").await, 200);
    // The page passes its query on to the data it polls; with the ledger off that is a clear error.
    let r = c.get(proxy.url("/dashboard/data?key=s3cret")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert!(r.text().await.unwrap().contains("TOKENFOLD_LEDGER=off"));
    // `?key=` is for the dashboard only: the API still wants a header.
    let r = c.post(proxy.url("/v1/chat/completions?key=s3cret")).body(r#"{"model":"gpt-test"}"#).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
