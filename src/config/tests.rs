//! Tests of config loading and validation.

use super::*;

fn env_with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
}

#[test]
fn shipped_config_loads_without_any_key() {
    let cfg = Config::parse(SHIPPED_CONFIG, "shipped", &|_| None).unwrap();
    for d in Dialect::ALL {
        assert!(cfg.upstream_for(d).is_some(), "{d} has no upstream");
    }
    assert!(cfg.listen.ip().is_loopback());
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err =
        Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.starts_with("t.toml:3:"), "{err}");
    assert!(err.contains("lisen"), "{err}");
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let err = Config::parse("[server]\nmax_body_bytes = \"big\"\n", "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.starts_with("t.toml:2:18: `server.max_body_bytes`: invalid type: string"), "{err}");

    // In the second of two array tables, and inside an inline table of an array.
    let text = "[[providers]]\nname = \"a\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nauth = \"client\"\n\
                [[providers]]\nname = 7\n";
    let err = Config::parse(text, "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.starts_with("t.toml:7:8: `providers[1].name`: invalid type: integer"), "{err}");
    let text = "[timeouts]\nconnect_ms = 5\nidle_ms = [1]\n";
    let err = Config::parse(text, "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.starts_with("t.toml:3:11: `timeouts.idle_ms`:"), "{err}");
}

#[test]
fn key_path_reaches_into_arrays_and_inline_tables() {
    let text = "[a]\nlist = [1, { inner = \"x\", deep = [true] }]\n";
    let at = |needle: &str| key_path_at(text, text.find(needle).unwrap());
    assert_eq!(at("\"x\"").as_deref(), Some("a.list[1].inner"));
    assert_eq!(at("true").as_deref(), Some("a.list[1].deep[0]"));
    assert_eq!(at("inner").as_deref(), Some("a.list[1].inner"));
    assert_eq!(at("1,").as_deref(), Some("a.list[0]"));
    assert_eq!(at("[a]").as_deref(), Some("a"));
}

#[test]
fn missing_env_var_names_file_line_and_key() {
    let text = "[server]\napi_keys = [\"${TF_KEY}\"]\n";
    let err = Config::parse(text, "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.contains("t.toml:2:") && err.contains("server.api_keys") && err.contains("TF_KEY"), "{err}");

    let text = "[[providers]]\nname = \"g\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\napi_key = \"${G_KEY}\"\n";
    let cfg = Config::parse(text, "t.toml", &|_| None).unwrap();
    let notice = cfg.notices().join("\n");
    assert!(notice.contains("set G_KEY") && notice.contains("`api_key` at t.toml:5:11"), "{notice}");
}

#[test]
fn literal_secret_is_refused_and_resolved_secret_is_masked() {
    let text = "[[providers]]\nname = \"g\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\napi_key = \"sk-live\"\n";
    let err = Config::parse(text, "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.contains("environment variable reference"), "{err}");
    assert!(!err.contains("sk-live"));

    let text = text.replace("sk-live", "${G_KEY}");
    let cfg = Config::parse(&text, "t.toml", &env_with(&[("G_KEY", "sk-secret-123")])).unwrap();
    let shown = format!("{}\n{:?}", cfg.render_masked(), cfg);
    assert!(!shown.contains("sk-secret-123"), "{shown}");
    assert!(shown.contains("****"));
}

#[test]
fn default_upstream_must_exist_and_match_dialect() {
    let text = "[[providers]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nauth = \"client\"\n[default_upstream]\nanthropic = \"o\"\n";
    let err = Config::parse(text, "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.contains("t.toml:7:") && err.contains("speaks openai-chat"), "{err}");
}

#[test]
fn single_upstream_adds_v1_once() {
    let a = Config::single_upstream("http://127.0.0.1:9/", None).unwrap();
    let b = Config::single_upstream("http://127.0.0.1:9/v1", None).unwrap();
    let c = Config::upstreams(&["http://127.0.0.1:9", "http://127.0.0.1:10"], Some(Dialect::OpenaiChat)).unwrap();
    assert_eq!(c.upstream_for(Dialect::Anthropic).unwrap().dialect, Dialect::OpenaiChat);
    assert_eq!(c.default_fallbacks[&Dialect::OpenaiResponses].len(), 1);
    assert_eq!(a.upstream_for(Dialect::Anthropic).unwrap().base_url, "http://127.0.0.1:9/v1");
    assert_eq!(b.upstream_for(Dialect::OpenaiChat).unwrap().base_url, "http://127.0.0.1:9/v1");
}
