//! Filters inside `serve`: command output reaches the provider compressed with a marker that
//! names the stored original, `GET /o/<id>` serves that original (to key holders only when keys
//! are set), and `x-tokenfold-level` picks the level per request without going upstream.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::mock::{self, Reply};
use common::{config_for, spawn_proxy, temp_file};

fn fixture(name: &str) -> (String, String) {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/filters");
    let read = |ext: &str| std::fs::read_to_string(d.join(format!("{name}.{ext}"))).unwrap();
    (read("cmd"), read("out"))
}

fn bash_request(command: &str, output: &str) -> String {
    serde_json::json!({"model": "claude-test", "max_tokens": 100, "stream": false, "messages": [
        {"role": "user", "content": "install the deps"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": command}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": output}]}]})
    .to_string()
}

fn store_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tokenfold-filters-proxy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The tool result text the provider received.
fn forwarded_output(body: &serde_json::Value) -> String {
    body["messages"][2]["content"][0]["content"].as_str().unwrap().to_string()
}

/// The 12-hex id at the end of the footer's recall command.
fn marker_id(text: &str) -> String {
    let k = text.rfind("full output: ").expect("a footer");
    let tail = &text[k..];
    let end = tail.find(".txt]").or_else(|| tail.find(']')).unwrap();
    tail[..end].chars().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect()
}

fn wait_for(path: &Path) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(b) = std::fs::read(path) {
            return b;
        }
        assert!(Instant::now() < deadline, "{} never written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn command_output_is_filtered_and_its_original_served() {
    let mock = mock::start(|_| Reply::ok_json(mock::anthropic_message("ok"))).await;
    let dir = store_dir("local");
    let cfg = format!(
        "{}\n[fold]\noriginals_dir = \"{}\"\n",
        config_for(&mock.base(), "", "auth = \"client\""),
        dir.display()
    );
    let proxy = spawn_proxy(&["--config", temp_file("filters.toml", &cfg).to_str().unwrap()], &[]);
    let (cmd, out) = fixture("npm_install");
    let body = bash_request(&cmd, &out);
    let c = reqwest::Client::new();
    let r = c.post(proxy.url("/v1/messages")).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let saved: u64 = r.headers()["x-tokenfold-saved-tokens"].to_str().unwrap().parse().unwrap();
    assert!(saved > 500, "saved {saved}");
    r.bytes().await.unwrap();
    let sent = forwarded_output(&mock.last().json());
    assert!(sent.contains("added 48 packages"), "the final status stays");
    assert!(sent.contains("progress lines: npm http"), "{sent}");
    let id = marker_id(&sent);
    assert!(sent.contains(&format!("full output: cat {}/{id}.txt]", dir.display())), "{sent}");
    // Stored off the request path, byte for byte; and served by the proxy.
    assert_eq!(wait_for(&dir.join(format!("{id}.txt"))), out.as_bytes());
    let got = c.get(proxy.url(&format!("/o/{id}"))).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(got.bytes().await.unwrap(), out.as_bytes());
    for bad in ["/o/000000000000", "/o/..%2F..%2Fetc%2Fpasswd", "/o/ABC"] {
        assert_eq!(c.get(proxy.url(bad)).send().await.unwrap().status(), 404, "{bad}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_level_header_picks_the_level_and_never_goes_upstream() {
    let mock = mock::start(|_| Reply::ok_json(mock::anthropic_message("ok"))).await;
    let dir = store_dir("levels");
    // Cache breakpoints would be added to this long request: off, to compare bytes.
    let cfg = format!(
        "{}\n[fold]\nlevel = \"lossless\"\noriginals_dir = \"{}\"\n[cache]\nauto_breakpoints = false\n",
        config_for(&mock.base(), "", "auth = \"client\""),
        dir.display()
    );
    let proxy = spawn_proxy(&["--config", temp_file("levels.toml", &cfg).to_str().unwrap()], &[]);
    let (cmd, out) = fixture("app_log");
    let body = bash_request(&cmd, &out);
    let c = reqwest::Client::new();
    // The config says lossless: nothing to dedup here, so the provider gets the original bytes.
    c.post(proxy.url("/v1/messages")).body(body.clone()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(mock.last().body, body.as_bytes());
    // One request asks for balanced: its log is folded; the header stays with the proxy.
    let r = c.post(proxy.url("/v1/messages")).header("x-tokenfold-level", "balanced").body(body.clone()).send().await;
    r.unwrap().bytes().await.unwrap();
    let last = mock.last();
    assert!(last.header("x-tokenfold-level").is_none());
    assert!(forwarded_output(&last.json()).contains("more of 2 shapes above"));
    // A level that does not exist is a clear client error in the caller's dialect.
    let r = c.post(proxy.url("/v1/messages")).header("x-tokenfold-level", "max").body(body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["type"], "error");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("x-tokenfold-level") && msg.contains("lossless, balanced, aggressive"), "{msg}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_shared_proxy_gives_url_markers_and_serves_originals_to_key_holders_only() {
    let mock = mock::start(|_| Reply::ok_json(mock::anthropic_message("ok"))).await;
    let dir = store_dir("shared");
    let cfg = format!(
        "{}\n[fold]\noriginals_dir = \"{}\"\npublic_url = \"http://proxy.team.example:8411\"\n",
        config_for(&mock.base(), "api_keys = [\"${TEAM_KEY}\"]", "auth = \"client\""),
        dir.display()
    );
    let proxy =
        spawn_proxy(&["--config", temp_file("shared.toml", &cfg).to_str().unwrap()], &[("TEAM_KEY", "s3cret-team")]);
    let (cmd, out) = fixture("git_status");
    let c = reqwest::Client::new();
    let r = c
        .post(proxy.url("/v1/messages"))
        .header("x-tokenfold-key", "s3cret-team")
        .body(bash_request(&cmd, &out))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let sent = forwarded_output(&mock.last().json());
    let k = sent.rfind("full output: ").unwrap();
    let id: String =
        sent[k..].trim_end_matches([']', '\n']).chars().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
    let expect = format!("curl -s -H \"x-tokenfold-key: $TOKENFOLD_API_KEY\" http://proxy.team.example:8411/o/{id}]");
    assert!(sent.contains(&expect), "{sent}");
    wait_for(&dir.join(format!("{id}.txt")));
    let url = proxy.url(&format!("/o/{id}"));
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401, "no key, no original");
    assert_eq!(c.get(&url).header("x-tokenfold-key", "wrong").send().await.unwrap().status(), 401);
    let got = c.get(&url).header("x-tokenfold-key", "s3cret-team").send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), out.as_bytes());
    let _ = std::fs::remove_dir_all(dir);
}

/// The agent runs the marker's own `cat` command on a later turn: the ledger records the elision
/// on the first turn and the recall on the second, and `tokenfold report --by mechanism` shows
/// the filter's recall rate.
#[tokio::test]
async fn reading_an_original_back_is_a_recall_in_the_report() {
    let mock = mock::start(|_| Reply::ok_json(mock::anthropic_message("ok"))).await;
    let dir = store_dir("recall");
    let ledger = dir.with_extension("ledger.db");
    let _ = std::fs::remove_file(&ledger);
    let cfg = format!(
        "{}\n[fold]\noriginals_dir = \"{}\"\n",
        config_for(&mock.base(), "", "auth = \"client\""),
        dir.display()
    );
    let cfg = temp_file("recall.toml", &cfg);
    let proxy = spawn_proxy(&["--config", cfg.to_str().unwrap()], &[("TOKENFOLD_LEDGER", ledger.to_str().unwrap())]);
    let (cmd, out) = fixture("npm_install");
    let c = reqwest::Client::new();
    c.post(proxy.url("/v1/messages")).body(bash_request(&cmd, &out)).send().await.unwrap().bytes().await.unwrap();
    let sent = forwarded_output(&mock.last().json());
    let k = sent.rfind("full output: ").unwrap() + "full output: ".len();
    let recall_cmd = sent[k..].trim_end().trim_end_matches(']').to_string();
    assert!(recall_cmd.starts_with("cat "), "{recall_cmd}");
    // Turn 2: the agent reads the original back with the command the marker gave.
    let mut body: serde_json::Value = serde_json::from_str(&bash_request(&cmd, &out)).unwrap();
    let msgs = body["messages"].as_array_mut().unwrap();
    msgs.push(serde_json::json!({"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_02", "name": "Bash", "input": {"command": recall_cmd}}]}));
    msgs.push(serde_json::json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_02", "content": out.clone()}]}));
    let r = c.post(proxy.url("/v1/messages")).body(body.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    // The ledger is written off the request path: wait for both records.
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
            .args(["report", "--json", "--by", "mechanism", "--ledger"])
            .arg(&ledger)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let filtered = v["mechanisms"].as_array().into_iter().flatten().find(|m| m["elisions"].as_u64() > Some(0));
        if let Some(m) = filtered.filter(|m| m["recalls"].as_u64() > Some(0)) {
            break m.clone();
        }
        assert!(Instant::now() < deadline, "no recall reached the report: {}", String::from_utf8_lossy(&o.stdout));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(row["key"].as_str().unwrap().starts_with("filter:"), "{row}");
    assert_eq!((row["elisions"].as_u64(), row["recalls"].as_u64()), (Some(1), Some(1)), "{row}");
    assert_eq!(row["recall_pct"].as_f64(), Some(100.0));
    // The table a person reads says it too.
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_tokenfold"))
        .args(["report", "--by", "mechanism", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    let line = table.lines().find(|l| l.starts_with(row["key"].as_str().unwrap())).unwrap_or_default();
    assert!(line.contains("100.0%"), "{table}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(ledger);
}
