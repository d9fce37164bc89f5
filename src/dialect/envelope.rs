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

use super::text::{check_text, has_lone_surrogate, hex4};
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
    if let Some(scanned) = Scanner::new(body).document() {
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

/// The members of a JSON object as raw key and value bytes (keys not unescaped), in order;
/// `None` if `doc` is not one valid JSON object (or nests too deep to be sure). For reading a
/// few fields out of a large document without building a tree of the rest.
pub fn members(doc: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut s = Scanner::new(doc);
    let mut out = Vec::with_capacity(16);
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.eat(b'}').is_none() {
        loop {
            s.ws();
            let key = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let start = s.i;
            s.value(1)?;
            out.push((key, &doc[start..s.i]));
            s.ws();
            match s.peek()? {
                b',' => s.i += 1,
                b'}' => {
                    s.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == doc.len()).then_some(out)
}

/// Nesting beyond this is left to serde.
const MAX_DEPTH: usize = 120;

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    has_images: bool,
}

/// `None` everywhere below means "not sure: let serde decide".
type Maybe<T> = Option<T>;

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8]) -> Self {
        Scanner { b, i: 0, has_images: false }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Maybe<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Maybe<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// The top-level object, then nothing but whitespace.
    fn document(mut self) -> Maybe<Scanned> {
        let mut out = Scanned::default();
        // The envelope fields seen so far, in `ENVELOPE_FIELDS` order (serde refuses a repeat).
        let mut seen = [false; ENVELOPE_FIELDS.len()];
        self.ws();
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_none() {
            loop {
                self.ws();
                let key = self.string()?;
                // serde unescapes and validates keys it matches against field names.
                if key.contains(&b'\\') || std::str::from_utf8(key).is_err() {
                    return None;
                }
                self.ws();
                self.eat(b':')?;
                self.ws();
                let start = self.i;
                let field = ENVELOPE_FIELDS.iter().position(|f| f.as_bytes() == key);
                match key {
                    _ if field.is_some() => {
                        self.value(1)?;
                        let raw = &self.b[start..self.i];
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
                        self.value(1)?;
                    }
                    b"tools" => {
                        out.has_tools = self.b.get(self.i) == Some(&b'[') && {
                            let mut after = self.i + 1;
                            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(after) {
                                after += 1;
                            }
                            self.b.get(after) == Some(&b'{')
                        };
                        self.value(1)?;
                    }
                    b"context_management" => {
                        self.value(1)?;
                        out.clears_tool_uses |= clears_tool_uses(&self.b[start..self.i]);
                    }
                    _ => self.value(1)?,
                }
                self.ws();
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.ws();
        if self.i != self.b.len() {
            return None;
        }
        out.has_images = self.has_images;
        Some(out)
    }

    /// One value of any kind; `depth` counts the containers around it.
    fn value(&mut self, depth: usize) -> Maybe<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => {
                self.i += 1;
                self.ws();
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.note_string(key);
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    if (key == b"type" || key == b"mimeType") && self.peek() == Some(b'"') {
                        let v = self.string()?;
                        self.has_images |=
                            if key == b"type" { v.starts_with(b"image") } else { v.starts_with(b"image/") };
                        self.note_string(v);
                    } else {
                        self.value(depth + 1)?;
                    }
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => {
                let s = self.string()?;
                self.note_string(s);
                Some(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn note_string(&mut self, s: &[u8]) {
        self.has_images |= s == b"image_url" || s == b"input_image";
    }

    fn literal(&mut self, word: &[u8]) -> Maybe<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// serde's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Maybe<()> {
        let digits = |s: &mut Self| {
            let start = s.i;
            while let Some(b'0'..=b'9') = s.b.get(s.i) {
                s.i += 1;
            }
            s.i > start
        };
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return None;
                }
            }
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && !digits(self) {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        Some(())
    }

    /// A string starting at `"`; returns its raw contents (escapes not decoded). Like serde for
    /// strings it ignores: escapes must be valid, control characters are refused, UTF-8 is not
    /// checked (serde checks it only for strings it keeps, which go through serde here too).
    fn string(&mut self) -> Maybe<&'a [u8]> {
        self.eat(b'"')?;
        let b = self.b;
        let start = self.i;
        loop {
            self.i += special_at(b.get(self.i..)?)?;
            match b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(&b[start..self.i - 1]);
                }
                b'\\' => {}
                _ => return None, // a control character
            }
            // An escape: `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` or `\u` and four hex digits.
            match *b.get(self.i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                b'u' => {
                    let unit = hex4(b.get(self.i + 2..self.i + 6)?)?;
                    self.i += 6;
                    if (0xDC00..0xE000).contains(&unit) {
                        return None; // a low surrogate with no high one before it
                    }
                    if (0xD800..0xDC00).contains(&unit) {
                        // A high surrogate must be followed by an escaped low one.
                        let low = match b.get(self.i..self.i + 2)? {
                            b"\\u" => hex4(b.get(self.i + 2..self.i + 6)?)?,
                            _ => return None,
                        };
                        if !(0xDC00..0xE000).contains(&low) {
                            return None;
                        }
                        self.i += 6;
                    }
                }
                _ => return None,
            }
        }
    }
}

/// The index of the first `"`, `\\` or control character (below 0x20) in `s`: the bytes where a
/// string ends or needs a closer look. Eight bytes at a time (SWAR): strings in agent requests
/// are long runs of source text, and a call into a vector search per run cost more than it saved.
fn special_at(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `x` below `n`; exact for the lowest such byte, the only one used.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * n as u64) & !x & HIGH;
    let mut i = 0;
    while let Some(word) = s.get(i..i + 8) {
        let x = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        let hits = below(x ^ (ONES * b'"' as u64), 1) | below(x ^ (ONES * b'\\' as u64), 1) | below(x, 0x20);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|p| i + p)
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
        let fast = Scanner::new(body).document().filter(|_| simdutf8::basic::from_utf8(body).is_ok());
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
            assert!(Scanner::new(s.as_bytes()).document().is_some(), "fast path should take {s}");
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
        assert!(Scanner::new(ok.as_bytes()).document().is_some());
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
    fn members_are_the_raw_top_level_fields() {
        let doc = br#" {"a":1, "b" : {"c":[true]},"a":"x\"y"} "#;
        let got = members(doc).unwrap();
        let as_text: Vec<(&str, &str)> =
            got.iter().map(|(k, v)| (std::str::from_utf8(k).unwrap(), std::str::from_utf8(v).unwrap())).collect();
        assert_eq!(as_text, [("a", "1"), ("b", r#"{"c":[true]}"#), ("a", r#""x\"y""#)]);
        for bad in [&b"[1]"[..], b"{\"a\":}", b"{\"a\":1} 2", b"{\"a\":1,}"] {
            assert!(members(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(members(b"{}").unwrap().len(), 0);
    }

    #[test]
    fn a_top_level_array_is_left_to_serde() {
        // serde reads a struct from a sequence too: `[]` is an envelope with nothing set.
        assert!(Scanner::new(b"[]").document().is_none());
        agrees_with_serde(b"[]");
    }

    #[test]
    fn deep_nesting_is_left_to_serde() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(Scanner::new(deep.as_bytes()).document().is_none());
        agrees_with_serde(deep.as_bytes());
    }

    #[test]
    fn control_characters_are_found_in_long_strings() {
        for at in [0, 7, 8, 31, 32, 63, 64, 100] {
            let mut text = vec![b'x'; 101];
            text[at] = 0x07;
            let body = [b"{\"a\":\"".as_slice(), &text, b"\"}"].concat();
            assert!(Scanner::new(&body).document().is_none(), "{at}");
        }
    }

    /// The word-at-a-time search finds the same first special byte as a byte loop, for every
    /// byte value at every offset, also behind bytes with the high bit set.
    #[test]
    fn special_bytes_are_found_like_a_byte_loop() {
        let slow = |s: &[u8]| s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for byte in 0..=255u8 {
            for at in 0..20 {
                for filler in [b'a', 0x80, 0xff, 0x21, 0x5d, 0x23] {
                    let mut s = vec![filler; 20];
                    s[at] = byte;
                    assert_eq!(special_at(&s), slow(&s), "byte {byte:#x} at {at} after {filler:#x}");
                }
            }
        }
    }
}
