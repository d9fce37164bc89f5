//! The strict mode of the raw-JSON scanner: walks a document checking it as serde would (escapes,
//! numbers, control characters, nesting) without building a tree. `None` everywhere means "not
//! sure: let serde decide". The envelope reader (`envelope.rs`) drives it over a request body,
//! and `members` reads a few fields out of a large document.

use crate::dialect::text::hex4;

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
            if !s.item_end(b'}')? {
                break;
            }
        }
    }
    s.ws();
    (s.i == doc.len()).then_some(out)
}

/// Nesting beyond this is left to serde.
pub(in crate::dialect) const MAX_DEPTH: usize = 120;

/// The walker; `has_images` is noted as it goes (a request's image parts, for the envelope).
pub(in crate::dialect) struct Scanner<'a> {
    pub(in crate::dialect) b: &'a [u8],
    pub(in crate::dialect) i: usize,
    pub(in crate::dialect) has_images: bool,
}

/// `None` everywhere below means "not sure: let serde decide".
pub(in crate::dialect) type Maybe<T> = Option<T>;

impl<'a> Scanner<'a> {
    pub(in crate::dialect) fn new(b: &'a [u8]) -> Self {
        Scanner { b, i: 0, has_images: false }
    }

    pub(in crate::dialect) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    pub(in crate::dialect) fn peek(&self) -> Maybe<u8> {
        self.b.get(self.i).copied()
    }

    pub(in crate::dialect) fn eat(&mut self, c: u8) -> Maybe<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// After a member or element: `,` (another follows: `true`) or `close` (the container ends:
    /// `false`); anything else is malformed.
    pub(in crate::dialect) fn item_end(&mut self, close: u8) -> Maybe<bool> {
        self.ws();
        let c = self.peek()?;
        (c == b',' || c == close).then(|| {
            self.i += 1;
            c == b','
        })
    }

    /// One value of any kind; `depth` counts the containers around it.
    pub(in crate::dialect) fn value(&mut self, depth: usize) -> Maybe<()> {
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
                    if !self.item_end(b'}')? {
                        return Some(());
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
                    if !self.item_end(b']')? {
                        return Some(());
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
    pub(in crate::dialect) fn string(&mut self) -> Maybe<&'a [u8]> {
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
    fn control_characters_are_found_in_long_strings() {
        for at in [0, 7, 8, 31, 32, 63, 64, 100] {
            let mut text = vec![b'x'; 101];
            text[at] = 0x07;
            let body = [b"{\"a\":\"".as_slice(), &text, b"\"}"].concat();
            assert!(Scanner::new(&body).value(1).is_none(), "{at}");
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
