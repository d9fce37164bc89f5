//! The official Python SDKs (`anthropic`, `openai`) as real clients through the proxy, streaming
//! and not, each with a tool-call round trip. `.ci/run` installs them; without them the test says
//! so and skips.

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

async fn run_case(case: &str) {
    let Some(python) = python_with_sdks() else {
        eprintln!("SKIPPED {case}: python3 with the `anthropic` and `openai` packages is not installed (pip install anthropic openai)");
        return;
    };
    let mock = mock::start(common::scripted::reply).await;
    let cfg = temp_file("sdk.toml", &config_for(&mock.base(), "", "auth = \"client\""));
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[]);
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
