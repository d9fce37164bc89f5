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
    let text = "[[providers]]\nname = \"a\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\n\
                models = [\"m\", { name = \"n\", context = \"big\" }]\n";
    let err = Config::parse(text, "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.starts_with("t.toml:5:"), "{err}");
    assert!(err.contains("`providers[0].models[1].context`: invalid type: string"), "{err}");
    let err = Config::parse("[server]\nlisen = 3\n", "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.starts_with("t.toml:2:1: `server"), "{err}");
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

#[test]
fn prices_free_tiers_and_ledger_retention() {
    let text = r#"
[ledger]
retention_days = 7
[[providers]]
name = "a"
kind = "anthropic"
base_url = "http://a/v1"
auth = "client"
models = [{ name = "m", price = { input = 3.0, output = 15.0, cached_input = 0.3 } }]
[[providers]]
name = "o"
kind = "openai"
base_url = "http://o/v1"
free_tier = true
accounts = [{ label = "free", api_key = "${K}" }, { label = "paid", api_key = "${K}", free_tier = false }]
models = [{ name = "n", price = { input = 2.0, output = 8.0 } }, { name = "w", price = { input = 2.0, cache_write = 2.5 } }]
"#;
    let cfg = Config::parse(text, "t.toml", &env_with(&[("K", "k")])).unwrap();
    let (a, o) = (&cfg.providers[0], &cfg.providers[1]);
    assert_eq!(a.model_spec("m").unwrap().price.cache_write, 3.75, "Anthropic writes cost 1.25x input by default");
    assert_eq!(o.model_spec("n").unwrap().price.cache_write, 2.0, "automatic caching costs input");
    assert_eq!(o.model_spec("w").unwrap().price.cache_write, 2.5, "a given price wins");
    assert!(!a.accounts[0].free_tier);
    let free: Vec<(&str, bool)> = o.accounts.iter().map(|x| (x.label.as_str(), x.free_tier)).collect();
    assert_eq!(free, [("free", true), ("paid", false)]);
    assert_eq!(cfg.ledger_retention, Duration::from_secs(7 * 86_400));
    assert!(cfg.render_masked().contains("retention_days = 7"));

    let err = Config::parse("[ledger]\nretention_days = 0\n", "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.starts_with("t.toml:2:") && err.contains("ledger.retention_days"), "{err}");
    assert_eq!(Config::parse("", "t", &|_| None).unwrap().ledger_retention, Duration::from_secs(30 * 86_400));
}

#[test]
fn shipped_free_providers_are_free_tiers_with_list_prices_where_published() {
    let cfg = Config::parse(SHIPPED_CONFIG, "shipped", &|_| None).unwrap();
    for p in &cfg.providers {
        let paid_api = ["anthropic", "openai", "openai-responses", "gemini-client"].contains(&p.name.as_str());
        assert!(p.accounts.iter().all(|a| a.free_tier != paid_api), "{}: free_tier", p.name);
        // Models without a published paid price (named in the config's comments).
        let unpublished = ["gemini-3.7-flash"];
        let priced = p
            .model_specs
            .iter()
            .filter(|s| !unpublished.contains(&s.name.as_str()))
            .all(|s| s.price.input > 0.0 && s.price.output > 0.0);
        // OpenRouter's free routes and NVIDIA's trial have no single list price.
        assert_eq!(priced, !["openrouter", "nvidia"].contains(&p.name.as_str()), "{}: prices", p.name);
    }
    let sonnet = cfg.providers[0].model_spec("claude-sonnet-4-5").unwrap().price;
    assert_eq!((sonnet.input, sonnet.cached_input, sonnet.cache_write, sonnet.output), (3.0, 0.3, 3.75, 15.0));
}

#[test]
fn cache_settings_and_what_providers_take() {
    let text = r#"
[cache]
auto_breakpoints = false
anthropic_ttl = "1h"
[[providers]]
name = "a"
kind = "anthropic"
base_url = "http://a/v1"
auth = "client"
models = [{ name = "claude-haiku-4-5", cache_min_tokens = 4096, price = { input = 1.0 } }]
[[providers]]
name = "openai"
kind = "openai"
base_url = "https://api.openai.com/v1"
auth = "client"
[[providers]]
name = "groq"
kind = "openai"
base_url = "https://api.groq.com/openai/v1"
auth = "client"
[[providers]]
name = "local"
kind = "openai-responses"
base_url = "http://127.0.0.1:8000/v1"
auth = "client"
prompt_cache_key = true
"#;
    let cfg = Config::parse(text, "t.toml", &|_| None).unwrap();
    assert_eq!(cfg.cache, CacheSettings { auto_breakpoints: false, anthropic_ttl: CacheTtl::OneHour });
    let takes: Vec<bool> = cfg.providers.iter().map(|p| p.takes_prompt_cache_key).collect();
    assert_eq!(takes, [false, true, false, true], "OpenAI's own API, or where the config says so");
    let haiku = cfg.providers[0].model_spec("claude-haiku-4-5").unwrap();
    assert_eq!((haiku.cache_min_tokens, haiku.price.cache_write_1h), (Some(4096), 2.0));
    assert!(cfg.render_masked().contains("[cache]\nauto_breakpoints = false\nanthropic_ttl = \"1h\""));
    assert_eq!(Config::parse("", "t", &|_| None).unwrap().cache, CacheSettings::default());

    let err = Config::parse("[cache]\nanthropic_ttl = \"2h\"\n", "t.toml", &|_| None).unwrap_err().to_string();
    assert!(err.starts_with("t.toml:2:") && err.contains("cache.anthropic_ttl") && err.contains("\"1h\""), "{err}");
    let shipped = Config::parse(SHIPPED_CONFIG, "shipped", &|_| None).unwrap();
    let openai = shipped.providers.iter().find(|p| p.name == "openai").unwrap();
    let groq = shipped.providers.iter().find(|p| p.name == "groq").unwrap();
    assert!(openai.takes_prompt_cache_key && !groq.takes_prompt_cache_key);
}
