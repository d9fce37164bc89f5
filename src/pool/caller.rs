//! Who is calling, for accounts that forward the caller's own key (`auth = "client"`): a short
//! hash of the request's credential headers. Each caller's health, cooldowns and learned limits
//! are kept under it, so one caller's 429 or broken key never blocks another. Only the hash is
//! kept (in memory, in the store, on `/pool`), never the key.

use http::{HeaderMap, HeaderName};

use crate::dialect::headers;

/// Headers that carry a provider credential and are forwarded as they are.
const CREDENTIAL_HEADERS: [&str; 4] = [headers::AUTHORIZATION, headers::X_API_KEY, "x-goog-api-key", "api-key"];

/// Domain separation: the same key hashed elsewhere gives another value.
const CONTEXT: &str = "tokenfold pool caller credential v1";

/// The first 8 bytes of a keyed hash of one caller's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller([u8; 8]);

impl Caller {
    /// The caller of a request with these headers: `None` when it carries no credential (the
    /// provider refuses it; such requests share the account's own state). The header that
    /// carried the proxy's own key is not the caller's credential. The same key sent as
    /// `Authorization: Bearer` or `x-api-key` is the same caller.
    pub fn from_headers(hdrs: &HeaderMap, proxy_key_header: Option<&HeaderName>) -> Option<Caller> {
        let mut values: Vec<&[u8]> = Vec::new();
        for name in CREDENTIAL_HEADERS {
            if proxy_key_header.is_some_and(|h| h.as_str() == name) {
                continue;
            }
            for v in hdrs.get_all(name) {
                let v = v.as_bytes();
                let v = match v.get(..7) {
                    Some(p) if p.eq_ignore_ascii_case(b"bearer ") => &v[7..],
                    _ => v,
                };
                let v = v.trim_ascii();
                if !v.is_empty() {
                    values.push(v);
                }
            }
        }
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        values.dedup();
        let mut h = blake3::Hasher::new_derive_key(CONTEXT);
        for v in values {
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.finalize().as_bytes()[..8]);
        Some(Caller(id))
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn hdrs(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn one_key_is_one_caller_however_it_is_sent_and_the_key_is_not_in_it() {
        let bearer = Caller::from_headers(&hdrs(&[("authorization", "Bearer sk-one")]), None).unwrap();
        let x_api = Caller::from_headers(&hdrs(&[("x-api-key", "sk-one")]), None).unwrap();
        let lower = Caller::from_headers(&hdrs(&[("authorization", "bearer sk-one ")]), None).unwrap();
        assert_eq!(bearer, x_api);
        assert_eq!(bearer, lower);
        let other = Caller::from_headers(&hdrs(&[("authorization", "Bearer sk-two")]), None).unwrap();
        assert_ne!(bearer, other);
        let shown = bearer.to_string();
        assert_eq!(shown.len(), 16);
        assert!(!shown.contains("sk-one"));
        assert_eq!(Caller::from_headers(&hdrs(&[("content-type", "application/json")]), None), None);
    }

    #[test]
    fn the_proxy_key_is_not_the_callers_credential() {
        let h = hdrs(&[("authorization", "Bearer proxy-key"), ("x-api-key", "sk-one")]);
        let with_proxy_key = Caller::from_headers(&h, Some(&HeaderName::from_static("authorization")));
        assert_eq!(with_proxy_key, Caller::from_headers(&hdrs(&[("x-api-key", "sk-one")]), None));
        let only_proxy_key = hdrs(&[("authorization", "Bearer proxy-key")]);
        assert_eq!(Caller::from_headers(&only_proxy_key, Some(&HeaderName::from_static("authorization"))), None);
    }
}
