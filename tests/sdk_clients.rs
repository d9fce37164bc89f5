//! The official Python SDKs (`anthropic`, `openai`) as real clients through the proxy, streaming
//! and not, each with a tool-call round trip. `.ci/run` installs them, so under CI (`CI=true`)
//! a missing SDK fails the test; elsewhere the test says why and skips.

mod common;

use common::mock;
use common::{config_for, spawn_proxy, temp_file};

fn python_with_sdks() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import anthropic, openai"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(python)
}

/// CI systems (GitHub Actions, GitLab, ...) set `CI=true`.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

async fn run_case(case: &str) {
    run_case_via(case, None).await;
}

/// Runs `case` with the mock speaking `upstream_dialect` (through translation) when given.
async fn run_case_via(case: &str, upstream_dialect: Option<&str>) {
    let Some(python) = python_with_sdks() else {
        let why = "python3 with the `anthropic` and `openai` packages is not installed (pip install anthropic openai)";
        assert!(!under_ci(), "{case}: {why}; CI must run the SDK tests (.ci/run installs them)");
        eprintln!("SKIPPED {case}: {why}");
        return;
    };
    let mock = mock::start(common::scripted::reply).await;
    let cfg = temp_file("sdk.toml", &config_for(&mock.base(), "", "auth = \"client\""));
    let base = mock.base();
    let proxy = match upstream_dialect {
        None => spawn_proxy(&["--config", cfg.to_str().unwrap()], &[]),
        Some(d) => spawn_proxy(&["--upstream", &base, "--upstream-dialect", d], &[]),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/clients.py");
    let (base, case_name) = (proxy.base.clone(), case.to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python).arg(script).arg(case_name).env("TOKENFOLD_URL", base).output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{case} SDK run failed:\n{}\n{}\nproxy:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        proxy.logs()
    );
    // 2 requests (tool call, then final answer) streaming and not.
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 4, "{case}");
    if let Some(d) = upstream_dialect {
        let expected = if d == "anthropic" { "/v1/messages" } else { "/v1/chat/completions" };
        assert!(
            reqs.iter().all(|r| r.path == expected),
            "{case} via {d}: {:?}",
            reqs.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
    }
    assert!(reqs.iter().all(|r| r.header("authorization").is_some() || r.header("x-api-key").is_some()));
}

#[tokio::test]
async fn anthropic_sdk_through_the_proxy() {
    run_case("anthropic").await;
}

#[tokio::test]
async fn openai_sdk_chat_through_the_proxy() {
    run_case("openai-chat").await;
}

#[tokio::test]
async fn openai_sdk_responses_through_the_proxy() {
    run_case("openai-responses").await;
}

#[tokio::test]
async fn anthropic_sdk_on_an_openai_chat_provider() {
    run_case_via("anthropic", Some("openai-chat")).await;
}

#[tokio::test]
async fn openai_sdk_chat_on_an_anthropic_provider() {
    run_case_via("openai-chat", Some("anthropic")).await;
}

#[tokio::test]
async fn openai_sdk_responses_on_a_chat_provider() {
    run_case_via("openai-responses", Some("openai-chat")).await;
}

#[tokio::test]
async fn openai_sdk_responses_on_an_anthropic_provider() {
    run_case_via("openai-responses", Some("anthropic")).await;
}
