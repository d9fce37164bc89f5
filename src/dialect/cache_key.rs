//! OpenAI's `prompt_cache_key` on the wire: requests that share a key are routed to the same
//! cache, which makes prefix cache hits more likely (Chat Completions and Responses alike).

/// The top-level member name.
pub const FIELD: &str = "prompt_cache_key";

/// `body` (a Chat or Responses request) with `"prompt_cache_key":"<key>"` added as its first
/// member; the rest stays byte for byte. `None` when the body is not an object or the key would
/// need escaping (derived keys never do).
pub fn add(body: &[u8], key: &str) -> Option<Vec<u8>> {
    if !key.bytes().all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\') {
        return None;
    }
    let open = super::json::skip_ws(body, 0);
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let empty = body.get(super::json::skip_ws(body, open + 1)) == Some(&b'}');
    let mut out = Vec::with_capacity(body.len() + key.len() + FIELD.len() + 8);
    out.extend_from_slice(&body[..=open]);
    out.push(b'"');
    out.extend_from_slice(FIELD.as_bytes());
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(key.as_bytes());
    out.push(b'"');
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&body[open + 1..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_goes_first_and_nothing_else_moves() {
        let body = b" {\"model\":\"gpt-5\", \"temperature\":1.0,\"input\":[]}";
        let out = add(body, "tokenfold-0123").unwrap();
        assert_eq!(
            out,
            b" {\"prompt_cache_key\":\"tokenfold-0123\",\"model\":\"gpt-5\", \"temperature\":1.0,\"input\":[]}"
        );
        assert_eq!(add(b"{ }", "k").unwrap(), b"{\"prompt_cache_key\":\"k\" }");
        assert!(add(b"[1]", "k").is_none());
        assert!(add(b"{}", "a\"b").is_none());
    }
}
