//! Reading a request's envelope in one pass over the raw bytes: the fields the proxy needs
//! (`model`, `stream`, `stream_options`, Gemini's `generationConfig`), whether it offers tools or
//! carries images, and that the body is JSON at all.
//!
//! A scanner instead of `serde_json::from_slice::<RequestEnvelope>` because that parse, and the
//! substring searches that used to find tools and images, were most of the proxy's own time on
//! large (200 KB) requests. The scanner accepts exactly what serde accepts or less: whatever it
//! is unsure of (escapes in top-level keys, unusual field types, duplicate known fields) is
//! handed to serde, which then gives the verdict and the error message (with line and column).

use serde_json::Value;

use super::json::strict::{Maybe, Scanner};
use super::text::{check_text, has_lone_surrogate};
use super::RequestEnvelope;

/// The top-level fields `RequestEnvelope` reads (the scanner reads them as serde would).
const ENVELOPE_FIELDS: [&str; 7] = [
    "model",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "generationConfig",
];

/// What the proxy knows about a request body before forwarding it.
#[derive(Debug, Default)]
pub struct Scanned {
    pub envelope: RequestEnvelope,
    /// A top-level `tools` array with at least one object in it.
    pub has_tools: bool,
    /// An image part anywhere: `"type": "image..."`, `image_url`, `input_image` or (Gemini)
    /// `"mimeType": "image/..."`.
    pub has_images: bool,
    /// A top-level `prompt_cache_key` (OpenAI dialects): the client routes its own cache.
    pub has_prompt_cache_key: bool,
    /// The client asks the provider to clear old tool uses itself (an Anthropic
    /// `context_management` edit of type `clear_tool_uses_*`): the proxy then leaves clearing to it.
    pub clears_tool_uses: bool,
}

/// Reads `body`; the error is serde's, so it says where the JSON went wrong.
///
/// Every string must be text: invalid UTF-8 and lone surrogate escapes (`"\ud800"`) are refused
/// wherever they are, as serde refuses them in any string it reads and as providers do. serde
/// skips over the fields the envelope does not name without checking them, so a body the
/// scanner cannot vouch for is also read by `check_text`.
pub fn scan(body: &[u8]) -> Result<Scanned, serde_json::Error> {
    if let Some(scanned) = document(Scanner::new(body)) {
        // The scanner checked the escapes; the bytes are checked here. simdutf8, not std: on
        // 220 KB of source text with some non-ASCII it took 44 µs where std took 189 µs (on
        // plain ASCII 6.5 and 11 µs), and this runs on every request.
        if simdutf8::basic::from_utf8(body).is_ok() {
            return Ok(scanned);
        }
    }
    let envelope: RequestEnvelope = serde_json::from_slice(body)?;
    if std::str::from_utf8(body).is_err() || has_lone_surrogate(body) {
        check_text(body)?;
    }
    // Rare (escaped or repeated top-level keys): the same facts from the parsed document. A
    // substring search here missed `"tools": [ {` spelled with other whitespace.
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let has_tools = doc.get("tools").and_then(Value::as_array).and_then(|t| t.first()).is_some_and(Value::is_object);
    let has_prompt_cache_key = doc.get(super::cache_key::FIELD).is_some();
    let clears_tool_uses = doc.get("context_management").is_some_and(clears_tool_uses_value);
    Ok(Scanned { envelope, has_tools, has_images: has_image(&doc), has_prompt_cache_key, clears_tool_uses })
}

fn is_cache_key(key: &[u8]) -> bool {
    key == super::cache_key::FIELD.as_bytes()
}

/// Whether a `context_management` value asks for an edit of type `clear_tool_uses_*`.
fn clears_tool_uses(raw: &[u8]) -> bool {
    serde_json::from_slice::<Value>(raw).is_ok_and(|v| clears_tool_uses_value(&v))
}

fn clears_tool_uses_value(v: &Value) -> bool {
    let edits = v.get("edits").and_then(|e| e.as_array()).map(Vec::as_slice).unwrap_or_default();
    edits.iter().any(|e| e.get("type").and_then(|t| t.as_str()).is_some_and(|t| t.starts_with("clear_tool_uses_")))
}

/// What the scanner counts as an image part, on a parsed value (Gemini's inline data counts by
/// its `mimeType`).
fn has_image(v: &Value) -> bool {
    let marker = |s: &str| s == "image_url" || s == "input_image";
    match v {
        Value::String(s) => marker(s),
        Value::Array(items) => items.iter().any(has_image),
        Value::Object(o) => o.iter().any(|(k, x)| {
            marker(k)
                || (k == "type" && x.as_str().is_some_and(|t| t.starts_with("image")))
                || (k == "mimeType" && x.as_str().is_some_and(|t| t.starts_with("image/")))
                || has_image(x)
        }),
        _ => false,
    }
}

/// The top-level object, then nothing but whitespace: the envelope's fields and facts, or `None`
/// when serde must decide.
fn document(mut s: Scanner<'_>) -> Maybe<Scanned> {
    let mut out = Scanned::default();
    // The envelope fields seen so far, in `ENVELOPE_FIELDS` order (serde refuses a repeat).
    let mut seen = [false; ENVELOPE_FIELDS.len()];
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.eat(b'}').is_none() {
        loop {
            s.ws();
            let key = s.string()?;
            // serde unescapes and validates keys it matches against field names.
            if key.contains(&b'\\') || std::str::from_utf8(key).is_err() {
                return None;
            }
            s.ws();
            s.eat(b':')?;
            s.ws();
            let start = s.i;
            let field = ENVELOPE_FIELDS.iter().position(|f| f.as_bytes() == key);
            match key {
                _ if field.is_some() => {
                    s.value(1)?;
                    let raw = &s.b[start..s.i];
                    if std::mem::replace(&mut seen[field.unwrap_or(0)], true) {
                        return None; // serde: duplicate field
                    }
                    let e = &mut out.envelope;
                    match key {
                        b"model" => e.model = serde_json::from_slice(raw).ok()?,
                        b"stream" => e.stream = serde_json::from_slice(raw).ok()?,
                        b"stream_options" => e.stream_options = serde_json::from_slice(raw).ok()?,
                        b"max_tokens" => e.max_tokens = serde_json::from_slice(raw).ok()?,
                        b"max_completion_tokens" => e.max_completion_tokens = serde_json::from_slice(raw).ok()?,
                        b"generationConfig" => e.generation_config = serde_json::from_slice(raw).ok()?,
                        _ => e.max_output_tokens = serde_json::from_slice(raw).ok()?,
                    }
                }
                k if is_cache_key(k) => {
                    out.has_prompt_cache_key = true;
                    s.value(1)?;
                }
                b"tools" => {
                    out.has_tools = s.b.get(s.i) == Some(&b'[') && {
                        let mut after = s.i + 1;
                        while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.b.get(after) {
                            after += 1;
                        }
                        s.b.get(after) == Some(&b'{')
                    };
                    s.value(1)?;
                }
                b"context_management" => {
                    s.value(1)?;
                    out.clears_tool_uses |= clears_tool_uses(&s.b[start..s.i]);
                }
                _ => s.value(1)?,
            }
            if !s.item_end(b'}')? {
                break;
            }
        }
    }
    s.ws();
    if s.i != s.b.len() {
        return None;
    }
    out.has_images = s.has_images;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    type View = (Option<String>, Option<bool>, Option<bool>, Option<Value>, Option<Value>, Option<Value>);

    fn view(e: RequestEnvelope) -> View {
        let usage = e.stream_options.map(|o| o.include_usage);
        (e.model, e.stream, usage, e.max_tokens, e.max_completion_tokens, e.max_output_tokens)
    }

    /// serde's verdict, reading every string (see `scan`).
    fn serde_view(body: &[u8]) -> Option<View> {
        // serde checks every string of a `Value` (its other verdicts, on numbers and depth,
        // are not the envelope's business).
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(body) {
            let m = e.to_string();
            if m.contains("unicode") || m.contains("surrogate") || m.contains("hex escape") {
                return None;
            }
        }
        serde_json::from_slice(body).ok().map(view)
    }

    /// Whatever the scanner accepts, serde accepts with the same envelope.
    fn agrees_with_serde(body: &[u8]) {
        // `scan`'s fast path: the scanner, and the bytes checked as UTF-8.
        let fast = document(Scanner::new(body)).filter(|_| simdutf8::basic::from_utf8(body).is_ok());
        let slow = serde_view(body);
        if let Some(f) = fast {
            assert_eq!(Some(view(f.envelope)), slow, "scanner accepted {:?}", String::from_utf8_lossy(body));
        }
        assert_eq!(scan(body).is_ok(), slow.is_some(), "{:?}", String::from_utf8_lossy(body));
    }

    const SAMPLES: &[&str] = &[
        r#"{"model":"claude-x","stream":true,"max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"hi \"there\" \u00e9\n"},{"type":"image","source":{"data":"AAA="}}]}],"tools":[{"name":"t","input_schema":{}}]}"#,
        "{ \"temperature\" : 1.0, \"model\":\"m\",\"big\": 123456789012345678901234567890,\n  \"s\": \"a\\u00e9\\n\\\"q\\\" \\/ \u{1F600} ü\", \"z\":1e5, \"a\":[ ], \"stream\": false,\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}] }",
        r#"{"model":null,"stream":null,"stream_options":{"include_usage":true,"x":[1,-0.5e-3,{}]},"input":[{"type":"input_image","image_url":"http://x"}]}"#,
        r#"{"stream_options":null,"n":[0,-1,2.50,3E+2,true,false,null,"",{"a":{"b":[[]]}}]}"#,
        r#"{}"#,
        "  {\"model\":\"mo\\u0064el\\ud83d\\ude00\"}  \n",
    ];

    #[test]
    fn samples_read_like_serde() {
        for s in SAMPLES {
            agrees_with_serde(s.as_bytes());
            assert!(document(Scanner::new(s.as_bytes())).is_some(), "fast path should take {s}");
        }
        let first = scan(SAMPLES[0].as_bytes()).unwrap();
        assert_eq!(first.envelope.model.as_deref(), Some("claude-x"));
        assert_eq!(first.envelope.max_output(), Some(5), "the output the request allows is read");
        assert!(first.has_tools && first.has_images);
        assert!(!first.has_prompt_cache_key);
        let keyed = scan(br#"{"model":"m","prompt_cache_key":"conv-1","input":[{"prompt_cache_key":1}]}"#).unwrap();
        assert!(keyed.has_prompt_cache_key);
        let nested = scan(br#"{"model":"m","input":[{"prompt_cache_key":"x"}]}"#).unwrap();
        assert!(!nested.has_prompt_cache_key, "only a top-level member counts");
        let third = scan(SAMPLES[2].as_bytes()).unwrap();
        assert!(!third.has_tools && third.has_images);
        assert!(third.envelope.stream_options.is_some_and(|o| o.include_usage));
        let fourth = scan(SAMPLES[3].as_bytes()).unwrap();
        assert!(!fourth.has_tools && !fourth.has_images);
        assert_eq!(scan(SAMPLES[5].as_bytes()).unwrap().envelope.model.as_deref(), Some("model😀"));
    }

    #[test]
    fn a_clients_own_tool_use_clearing_is_noticed() {
        let own = r#"{"model":"m","context_management":{"edits":[{"type":"clear_tool_uses_20250919","keep":{"type":"tool_uses","value":3}}]},"messages":[]}"#;
        assert!(scan(own.as_bytes()).unwrap().clears_tool_uses);
        // Claude Code's own edit clears thinking only: the proxy still clears tool output.
        let thinking =
            r#"{"model":"m","context_management":{"edits":[{"type":"clear_thinking_20251015"}]},"messages":[]}"#;
        assert!(!scan(thinking.as_bytes()).unwrap().clears_tool_uses);
        // A tool result that mentions the edit's name is not the client asking for it.
        let quoted = r#"{"model":"m","messages":[{"role":"user","content":"see clear_tool_uses_20250919"}]}"#;
        assert!(!scan(quoted.as_bytes()).unwrap().clears_tool_uses);
    }

    #[test]
    fn invalid_json_is_refused_with_serdes_message() {
        for bad in [
            "",
            "{",
            "[1]",
            "{\"a\":1,}",
            "{\"a\":[1,]}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":\"tab\there\"}",
            "{\"a\":tru}",
            "{\"a\":1} x",
            "{\"model\":5}",
            "{\"stream\":\"yes\"}",
            "{\"stream_options\":{\"include_usage\":1}}",
            "{\"model\":\"a\",\"model\":\"b\"}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":1 \"b\":2}",
            "{\"model\":\"\\ud800\"}",
            // Strings the envelope does not keep are text too.
            "{\"model\":\"m\",\"messages\":[{\"content\":\"\\ud800\"}]}",
            "{\"model\":\"m\",\"x\":\"\\udc00\\ud800\"}",
            "{\"model\":\"m\",\"x\":\"\\ud83d\\u0041\"}",
            "{\"model\":\"m\",\"x\":{\"\\ud800\":1}}",
        ] {
            agrees_with_serde(bad.as_bytes());
            let err = scan(bad.as_bytes()).expect_err(bad).to_string();
            assert!(err.contains("line") && err.contains("column"), "{bad}: {err}");
        }
    }

    #[test]
    fn invalid_utf8_anywhere_is_refused_with_serdes_message() {
        for bad in
            [&b"{\"model\":\"m\",\"messages\":[{\"content\":\"a\xff\"}]}"[..], b"{\"x\":\"\xc3\"}", b"{\"\xe2\x82\":1}"]
        {
            let err = scan(bad).expect_err(&String::from_utf8_lossy(bad)).to_string();
            assert!(err.contains("line") && err.contains("column"), "{err}");
        }
        // Text outside the first 128 code points, and surrogate pairs, are fine.
        let ok = "{\"model\":\"m\",\"s\":\"é 😀 \\ud83d\\ude00\"}";
        assert!(document(Scanner::new(ok.as_bytes())).is_some());
        assert!(scan(ok.as_bytes()).is_ok());
    }

    /// Random byte edits of valid bodies: the scanner never accepts what serde refuses.
    #[test]
    fn mutations_never_pass_the_scanner_alone() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const BYTES: &[u8] = b"{}[]\",:\\ 0123456789.-+eEtrufalsn\x01\x1fa\xc3\xa9";
        for s in SAMPLES {
            for _ in 0..2000 {
                let mut b = s.as_bytes().to_vec();
                for _ in 0..1 + next() % 3 {
                    let at = (next() as usize) % (b.len() + 1);
                    match next() % 3 {
                        0 if at < b.len() => {
                            b.remove(at);
                        }
                        1 => b.insert(at, BYTES[(next() as usize) % BYTES.len()]),
                        _ if at < b.len() => b[at] = BYTES[(next() as usize) % BYTES.len()],
                        _ => {}
                    }
                }
                agrees_with_serde(&b);
            }
        }
    }

    #[test]
    fn a_top_level_array_is_left_to_serde() {
        // serde reads a struct from a sequence too: `[]` is an envelope with nothing set.
        assert!(document(Scanner::new(b"[]")).is_none());
        agrees_with_serde(b"[]");
    }

    #[test]
    fn deep_nesting_is_left_to_serde() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(document(Scanner::new(deep.as_bytes())).is_none());
        agrees_with_serde(deep.as_bytes());
    }
}
