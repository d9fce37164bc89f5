//! The dashboard: its JSON matches the ledger, and the page renders in headless Chromium
//! (installed by .ci/run; skipped with a printed reason where it is missing).

mod common;

use std::time::Duration;

use common::mock::{self, Reply};
use common::{config_for, spawn_proxy, temp_file};

fn chromium() -> Option<String> {
    let candidates =
        [std::env::var("CHROMIUM").unwrap_or_default(), "/usr/bin/chromium".into(), "/usr/bin/chromium-browser".into()];
    candidates.into_iter().find(|c| !c.is_empty() && std::path::Path::new(c).exists())
}

#[tokio::test]
async fn dashboard_renders_the_seeded_ledger() {
    let mock = mock::start(|rec| {
        if rec.body.starts_with(b"{\"fail") {
            Reply::Json { status: 500, body: b"{}".to_vec(), headers: vec![] }
        } else {
            Reply::ok_json(mock::chat_completion("hi"))
        }
    })
    .await;
    let cfg = temp_file("dash.toml", &config_for(&mock.base(), "", "auth = \"client\""));
    let db = temp_file("dash.db", "");
    std::fs::remove_file(&db).unwrap();
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", db.to_str().unwrap())]);
    let c = reqwest::Client::new();
    for body in [r#"{"model":"gpt-test"}"#, r#"{"model":"gpt-test"}"#, r#"{"fail":1}"#] {
        c.post(proxy.url("/v1/chat/completions")).body(body).send().await.unwrap().bytes().await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let data = loop {
        let d: serde_json::Value = c.get(proxy.url("/dashboard/data")).send().await.unwrap().json().await.unwrap();
        if d["summary"]["total"]["requests"] == 3 {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "ledger never reached 3 requests: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(data["summary"]["total"]["errors"], 1);
    assert_eq!(data["recent"].as_array().unwrap().len(), 3);
    assert_eq!(data["by_day"]["rows"].as_array().unwrap().len(), 1);

    let page = c.get(proxy.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    for external in ["<script src", "<link", "url(", "@import", "https://"] {
        assert!(!html.contains(external), "the page must load nothing from outside: {external}");
    }

    let Some(browser) = chromium() else {
        eprintln!("SKIPPED browser check: chromium is not installed (apt-get install chromium)");
        return;
    };
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let profile = artifacts.join("chromium-profile");
    let url = proxy.url("/dashboard");
    let run = move |extra: Vec<String>| {
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=4000",
            "--window-size=1200,1000",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra);
        args.push(url.clone());
        std::process::Command::new(&browser).args(args).output().unwrap()
    };
    let shot = artifacts.join("dashboard.png");
    let dom = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(vec!["--dump-dom".into()])
    })
    .await
    .unwrap();
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let console = String::from_utf8_lossy(&dom.stderr);
    assert!(dom_text.contains("<rect"), "the daily chart did not render:\n{dom_text}");
    let status = dom_text.split("id=\"updated\">").nth(1).and_then(|t| t.split('<').next()).unwrap_or("");
    assert!(status.starts_with("updated "), "the data did not load: `{status}`");
    assert_eq!(dom_text.matches("<tr class=").count() + dom_text.matches("<tr>").count() - 1, 3, "{dom_text}");
    // Page errors reach stderr as `CONSOLE` lines with --enable-logging.
    let page_errors: Vec<&str> = console.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(page_errors.is_empty(), "console errors:\n{}", page_errors.join("\n"));
    let out = tokio::task::spawn_blocking(move || run(vec![format!("--screenshot={}", shot.display())])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(artifacts.join("dashboard.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot missing or empty");
    eprintln!("dashboard screenshot: {}", artifacts.join("dashboard.png").display());
}
