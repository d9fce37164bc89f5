//! Tests of the pool's config: loading, file:line:key errors, the shipped pool.

mod tests {
    use crate::config::{Config, ProviderAuth, Strategy};

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, "t.toml", &|k| (k != "UNSET").then(|| format!("v-{k}"))).map_err(|e| e.to_string())
    }

    const P: &str = "[[providers]]\nname = \"g\"\nkind = \"openai\"\nbase_url = \"http://g/v1\"\n";

    #[test]
    fn models_accounts_limits_and_routes_load() {
        let text = format!(
            "{P}day_reset_tz = \"America/Los_Angeles\"\nrate_limit_scope = \"model\"\nlimits = {{ rpm = 5 }}\n\
             accounts = [{{ label = \"a\", api_key = \"${{K1}}\" }}, {{ label = \"b\", api_key = \"${{UNSET}}\", limits = {{ rpd = 9 }} }}]\n\
             models = [\"plain\", {{ name = \"gemini-2.5-flash\", aliases = [\"flash\"], context = 1048576, tools = true, images = false, price = {{ input = 0.3, output = 2.5 }}, limits = {{ rpd = 250 }} }}]\n\
             [routes.free-coder]\nstrategy = \"most-remaining\"\ntargets = [\"g/flash\", \"g/plain\"]\n"
        );
        let cfg = parse(&text).unwrap();
        let g = &cfg.providers[0];
        assert_eq!(g.models, ["plain", "gemini-2.5-flash"]);
        assert_eq!(g.accounts[0].limits.rpm, Some(5));
        assert_eq!((g.accounts[1].limits.rpm, g.accounts[1].limits.rpd), (None, Some(9)));
        assert!(matches!(g.accounts[1].auth, ProviderAuth::MissingKey { .. }));
        assert!(g.is_usable());
        let spec = g.model_spec("flash").unwrap();
        assert_eq!(
            (spec.context, spec.images, spec.limits.rpd, spec.price.output),
            (Some(1_048_576), false, Some(250), 2.5)
        );
        assert_eq!(g.day_zone.name(), "America/Los_Angeles");
        let r = &cfg.routes[0];
        assert_eq!((r.name.as_str(), r.strategy), ("free-coder", Strategy::MostRemaining));
        assert_eq!(r.targets[0].model, "gemini-2.5-flash");
        let notices = cfg.notices().join("\n");
        assert!(notices.contains("account `b` of provider `g` is off: set UNSET"), "{notices}");
    }

    #[test]
    fn route_errors_name_file_line_and_key() {
        let text = format!("{P}api_key = \"${{K}}\"\nmodels = [\"m\"]\n[routes.r]\ntargets = [\"g/m\", \"g/nope\"]\n");
        let err = parse(&text).unwrap_err();
        assert!(
            err.starts_with("t.toml:8:") && err.contains("routes.r.targets") && err.contains("no model `nope`"),
            "{err}"
        );
        let text = format!("{P}api_key = \"${{K}}\"\n[routes.r]\ntargets = [\"x/m\"]\n");
        let err = parse(&text).unwrap_err();
        assert!(err.starts_with("t.toml:7:") && err.contains("no provider is named `x`"), "{err}");
        let text = format!("{P}api_key = \"${{K}}\"\n[routes.r]\ntargets = [\"g/m\"]\nstrategy = \"random\"\n");
        let err = parse(&text).unwrap_err();
        assert!(err.starts_with("t.toml:8:") && err.contains("random"), "{err}");
    }

    #[test]
    fn pool_key_errors_name_file_line_and_key() {
        let err = parse(&format!("{P}api_key = \"${{K}}\"\nday_reset_tz = \"Mars/Base\"\n")).unwrap_err();
        assert!(err.starts_with("t.toml:6:") && err.contains("day_reset_tz") && err.contains("Mars/Base"), "{err}");
        let err = parse(&format!("{P}api_key = \"${{K}}\"\nmodels = [{{ name = \"m\", contxt = 5 }}]\n")).unwrap_err();
        assert!(err.starts_with("t.toml:6:") && err.contains("contxt"), "{err}");
        let err = parse(&format!("{P}api_key = \"${{K}}\"\nlimits = {{ rpm = 1, rph = 2 }}\n")).unwrap_err();
        assert!(err.starts_with("t.toml:6:") && err.contains("rph"), "{err}");
        let err = parse(&format!("{P}accounts = [{{ label = \"a\", api_key = \"sk-live\" }}]\n")).unwrap_err();
        assert!(err.starts_with("t.toml:5:") && err.contains("accounts.api_key") && !err.contains("sk-live"), "{err}");
        let err = parse(&format!("{P}auth = \"client\"\naccounts = [{{ label = \"a\", api_key = \"${{K}}\" }}]\n"))
            .unwrap_err();
        assert!(err.contains("t.toml:6:") && err.contains("accounts"), "{err}");
        let err = parse("[pool]\nstore = \"\"\n").unwrap_err();
        assert!(err.starts_with("t.toml:2:") && err.contains("pool.store"), "{err}");
    }
}

mod shipped {
    use crate::config::{Config, SHIPPED_CONFIG};

    #[test]
    fn shipped_free_tiers_load_and_are_off_without_keys() {
        let cfg = Config::parse(SHIPPED_CONFIG, "shipped", &|_| None).unwrap();
        let route = cfg.routes.iter().find(|r| r.name == "free-coder").unwrap();
        assert!(route.targets.len() >= 7);
        for name in ["gemini", "groq", "cerebras", "openrouter", "mistral", "github-models", "nvidia"] {
            let p = cfg.providers.iter().find(|p| p.name == name).unwrap();
            assert!(!p.is_usable(), "{name}");
        }
        let notices = cfg.notices().join("\n");
        assert!(notices.contains("GEMINI_API_KEY") && notices.contains("GROQ_API_KEY"), "{notices}");
        let gemini = cfg.providers.iter().find(|p| p.name == "gemini").unwrap();
        assert_eq!(gemini.day_zone.name(), "America/Los_Angeles");
        // With one key set, the route is served by that provider.
        let cfg = Config::parse(SHIPPED_CONFIG, "shipped", &|k| (k == "GROQ_API_KEY").then(|| "k".into())).unwrap();
        assert!(cfg.providers.iter().find(|p| p.name == "groq").unwrap().is_usable());
    }

    #[test]
    fn each_shipped_free_tier_cites_its_own_provider() {
        // The comment block above each provider names at least one page of that provider's own.
        let own = [
            ("gemini", "https://ai.google.dev/"),
            ("groq", "https://console.groq.com/"),
            ("cerebras", "https://inference-docs.cerebras.ai/"),
            ("openrouter", "https://openrouter.ai/docs/"),
            ("mistral", "https://help.mistral.ai/"),
            ("github-models", "https://docs.github.com/"),
            ("nvidia", "https://docs.nvidia.com/"),
        ];
        for (name, site) in own {
            let at = SHIPPED_CONFIG.find(&format!("[[providers]]\nname = \"{name}\"")).unwrap();
            let block_start = SHIPPED_CONFIG[..at].rfind("\n\n").unwrap_or(0);
            let comment = &SHIPPED_CONFIG[block_start..at];
            assert!(comment.contains(site), "`{name}` cites no page of {site}:{comment}");
        }
    }
    #[test]
    fn max_input_tokens_max_wait_and_the_fit_strategy_are_read_and_checked() {
        let base =
            "[[providers]]\nname = \"g\"\nkind = \"openai\"\nbase_url = \"http://g.test/v1\"\napi_key = \"${G_KEY}\"\n";
        let ok = format!(
            "{base}models = [{{ name = \"m\", context = 128000, max_input_tokens = 8000 }}]\n[routes.r]\nstrategy = \"fit\"\nmax_wait_ms = 20000\ntargets = [\"g/m\"]\n"
        );
        let cfg = crate::config::Config::parse(&ok, "t.toml", &|_| Some("k".into())).unwrap();
        assert_eq!(cfg.providers[0].model_specs[0].max_input_tokens, Some(8000));
        let r = &cfg.routes[0];
        assert_eq!((r.strategy, r.max_wait_ms), (crate::config::Strategy::Fit, 20_000));
        assert!(cfg.render_masked().contains("strategy = \"fit\"\ntargets = [\"g/m\"]\nmax_wait_ms = 20000"));
        // A cap above the window, and a wait no TPM window needs, are refused with the key named.
        let over = format!("{base}models = [{{ name = \"m\", context = 4000, max_input_tokens = 8000 }}]\n");
        let e = crate::config::Config::parse(&over, "t.toml", &|_| Some("k".into())).unwrap_err().to_string();
        assert!(e.contains("max_input_tokens = 8000") && e.contains("within `context`"), "{e}");
        let long = format!("{base}models = [\"m\"]\n[routes.r]\nmax_wait_ms = 600000\ntargets = [\"g/m\"]\n");
        let e = crate::config::Config::parse(&long, "t.toml", &|_| Some("k".into())).unwrap_err().to_string();
        assert!(e.contains("routes.r.max_wait_ms"), "{e}");
    }
}
