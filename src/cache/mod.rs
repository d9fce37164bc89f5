//! Cache planning: every request leaves for its target prepared for the provider's prompt cache,
//! whatever dialect the agent speaks.
//!
//! - Anthropic targets (native or translated): breakpoints where the request has none
//!   (`plan`), spliced into the body about to be sent; a client's own are never touched.
//! - OpenAI targets that take it: a `prompt_cache_key` when the client sent none, derived from
//!   the conversation id the ledger records and the account (`key`). Translation carries a
//!   client's own key.
//!
//! Every decision is a pure function of the request bytes and the config.

pub mod key;
pub mod plan;

use bytes::Bytes;
use http::HeaderMap;

use crate::config::{CacheSettings, ModelSpec};
use crate::dialect::{breakpoints, cache_key, headers, Dialect};
use crate::pool::Attempt;

/// Anthropic's minimum cacheable prefix when the model table does not say: 2,048 tokens for
/// Haiku models, 1,024 for Sonnet and Opus (a shorter breakpoint is ignored, not refused).
pub fn min_cacheable_tokens(model: &str, spec: Option<&ModelSpec>) -> u64 {
    spec.and_then(|s| s.cache_min_tokens).unwrap_or(if model.contains("haiku") { 2048 } else { 1024 })
}

/// The per-request part, decided once before the attempts.
#[derive(Debug, Clone, Copy)]
pub struct RequestCache {
    settings: CacheSettings,
    /// `x-tokenfold-cache: off`.
    off: bool,
    /// The client sent a `prompt_cache_key` of its own (translation carries it where it goes).
    client_key: bool,
}

/// A value of `x-tokenfold-cache` other than `on`/`off`.
#[derive(Debug, thiserror::Error)]
#[error("{header}: `{value}` is not on or off", header = headers::TOKENFOLD_CACHE)]
pub struct BadCacheHeader {
    pub value: String,
}

impl RequestCache {
    pub fn new(
        settings: CacheSettings,
        hdrs: &HeaderMap,
        ingress: Dialect,
        has_prompt_cache_key: bool,
    ) -> Result<RequestCache, BadCacheHeader> {
        let off = match hdrs.get(headers::TOKENFOLD_CACHE).map(|v| v.as_bytes()) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case(b"off") => true,
            Some(v) if v.eq_ignore_ascii_case(b"on") => false,
            Some(v) => return Err(BadCacheHeader { value: String::from_utf8_lossy(v).into_owned() }),
        };
        let client_key = ingress != Dialect::Anthropic && has_prompt_cache_key;
        Ok(RequestCache { settings, off, client_key })
    }

    /// Nothing added to this request (`x-tokenfold: off` forwards the client's bytes as they are).
    pub fn switched_off(self) -> RequestCache {
        RequestCache { off: true, ..self }
    }

    /// `body`, about to go to `attempt`'s target in its dialect, prepared for its cache.
    /// `cleared_tool_use_id` is the first tool output clearing newly rewrote in this request.
    /// `session` gives the conversation id the ledger records (asked only for a target that
    /// takes a cache key: reading it from the body costs a scan).
    pub fn prepare(
        &self,
        attempt: &Attempt,
        body: Bytes,
        session: impl FnOnce() -> String,
        cleared_tool_use_id: Option<&str>,
    ) -> Bytes {
        if self.off {
            return body;
        }
        let provider = &attempt.target().provider;
        match attempt.dialect() {
            Dialect::Anthropic => {
                if !self.settings.auto_breakpoints || breakpoints::has_client_breakpoints(&body) {
                    return body;
                }
                let model = attempt.send_model().unwrap_or(attempt.model());
                let min = min_cacheable_tokens(model, provider.model_spec(attempt.model()));
                // Fail open: a body the scanner cannot walk (or a bug in it) goes as it is.
                let planned = std::panic::catch_unwind(|| {
                    let sites = breakpoints::sites(&body).ok()?;
                    let chosen = plan::place(&sites.sites, min, cleared_tool_use_id);
                    (!chosen.is_empty()).then(|| breakpoints::add(&body, &sites, &chosen, self.settings.anthropic_ttl))
                });
                match planned {
                    Ok(Some(with_breakpoints)) => Bytes::from(with_breakpoints),
                    _ => body,
                }
            }
            Dialect::OpenaiChat | Dialect::OpenaiResponses => {
                if self.client_key || !provider.takes_prompt_cache_key {
                    return body;
                }
                let session = session();
                if session.is_empty() {
                    return body;
                }
                let key = key::derive(attempt.provider(), attempt.account(), &session);
                cache_key::add(&body, &key).map(Bytes::from).unwrap_or(body)
            }
            // Gemini caches implicitly: nothing to add (the ledger measures its cached tokens).
            Dialect::Gemini => body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_lengths_per_model() {
        assert_eq!(min_cacheable_tokens("claude-sonnet-4-5", None), 1024);
        assert_eq!(min_cacheable_tokens("claude-opus-4-1", None), 1024);
        assert_eq!(min_cacheable_tokens("claude-3-5-haiku-latest", None), 2048);
        let spec = ModelSpec {
            name: "claude-haiku-4-5".into(),
            aliases: vec![],
            context: None,
            max_input_tokens: None,
            tools: true,
            images: true,
            reasoning: true,
            price: Default::default(),
            limits: Default::default(),
            cache_min_tokens: Some(4096),
        };
        assert_eq!(min_cacheable_tokens("claude-haiku-4-5", Some(&spec)), 4096);
    }

    #[test]
    fn the_header_turns_it_off_or_is_refused() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(headers::TOKENFOLD_CACHE, v.parse().unwrap());
            RequestCache::new(CacheSettings::default(), &h, Dialect::OpenaiChat, false)
        };
        assert!(with("OFF").unwrap().off);
        assert!(!with("on").unwrap().off);
        let err = with("maybe").unwrap_err().to_string();
        assert!(err.contains("x-tokenfold-cache") && err.contains("maybe"), "{err}");
        let keyed = RequestCache::new(CacheSettings::default(), &HeaderMap::new(), Dialect::OpenaiResponses, true);
        assert!(keyed.unwrap().client_key);
        let anthropic = RequestCache::new(CacheSettings::default(), &HeaderMap::new(), Dialect::Anthropic, true);
        assert!(!anthropic.unwrap().client_key, "Anthropic has no such field: it never survives translation");
    }
}
