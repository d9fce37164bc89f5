//! A client's own key (`auth = "client"`) moved to where the target dialect expects it, when the
//! request is translated between Gemini and another dialect: Gemini takes `x-goog-api-key` (or
//! `?key=`), Anthropic `x-api-key`, OpenAI `Authorization: Bearer`. Google reads a bearer token
//! as an OAuth token, so a key must not reach it that way.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::dialect::{gemini, headers, Dialect};

/// Moves the caller's key in `out` (the headers going upstream) to `target`'s header. `query` is
/// the client's query string (Gemini clients may send `key=` there). Requests between two
/// non-Gemini dialects are left as they are.
pub fn carry_client_key(out: &mut HeaderMap, query: Option<&str>, target: Dialect) {
    let bearer = || {
        out.get(headers::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|k| k.trim().to_string())
    };
    let named = |h: &str| out.get(h).and_then(|v| v.to_str().ok()).map(|k| k.trim().to_string());
    if target == Dialect::Gemini {
        if out.contains_key(headers::X_GOOG_API_KEY) || gemini::query_param(query, "key").is_some() {
            return;
        }
        let Some(key) = named(headers::X_API_KEY).or_else(bearer) else { return };
        out.remove(headers::X_API_KEY);
        out.remove(headers::AUTHORIZATION);
        insert(out, headers::X_GOOG_API_KEY, &key);
        return;
    }
    let from_query = gemini::query_param(query, "key").map(str::to_string);
    let Some(key) = named(headers::X_GOOG_API_KEY).or(from_query) else { return };
    out.remove(headers::X_GOOG_API_KEY);
    match target {
        Dialect::Anthropic if !out.contains_key(headers::X_API_KEY) => insert(out, headers::X_API_KEY, &key),
        Dialect::OpenaiChat | Dialect::OpenaiResponses if !out.contains_key(headers::AUTHORIZATION) => {
            insert(out, headers::AUTHORIZATION, &format!("Bearer {key}"))
        }
        _ => {}
    }
}

fn insert(out: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(mut v) = HeaderValue::from_str(value) {
        v.set_sensitive(true);
        out.insert(HeaderName::from_static(name), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn get<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
        h.get(k).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn keys_move_to_the_targets_header() {
        let mut h = map(&[("authorization", "Bearer sk-1"), ("x-other", "1")]);
        carry_client_key(&mut h, None, Dialect::Gemini);
        assert_eq!((get(&h, "x-goog-api-key"), get(&h, "authorization")), (Some("sk-1"), None));

        let mut h = map(&[("x-goog-api-key", "g-1")]);
        carry_client_key(&mut h, Some("alt=sse"), Dialect::Anthropic);
        assert_eq!((get(&h, "x-api-key"), get(&h, "x-goog-api-key")), (Some("g-1"), None));

        let mut h = map(&[]);
        carry_client_key(&mut h, Some("alt=sse&key=g-2"), Dialect::OpenaiChat);
        assert_eq!(get(&h, "authorization"), Some("Bearer g-2"));
    }

    #[test]
    fn a_key_already_in_place_stays() {
        let mut h = map(&[("x-goog-api-key", "g-1"), ("authorization", "Bearer other")]);
        carry_client_key(&mut h, None, Dialect::Gemini);
        assert_eq!((get(&h, "x-goog-api-key"), get(&h, "authorization")), (Some("g-1"), Some("Bearer other")));
        let mut h = map(&[("x-api-key", "a-1")]);
        carry_client_key(&mut h, Some("key=q"), Dialect::Gemini);
        assert_eq!(get(&h, "x-api-key"), Some("a-1"), "the query carries the key to Gemini");
        let mut h = map(&[("x-api-key", "a-1")]);
        carry_client_key(&mut h, None, Dialect::OpenaiChat);
        assert_eq!((get(&h, "x-api-key"), get(&h, "authorization")), (Some("a-1"), None));
    }
}
