//! The one raw-JSON scanner. Hand-made because splicing must be byte-exact: it finds the byte
//! ranges of values in the original buffer, so that only rewritten string contents are spliced
//! and everything else stays byte-identical. `strict` walks a document checking it as serde would.

pub mod strict;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;

/// The body is not the JSON shape this scanner can walk; folding gives up (fail open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

pub type Res<T> = Result<T, Malformed>;

fn at(b: &[u8], i: usize) -> Res<u8> {
    b.get(i).copied().ok_or(Malformed)
}

pub fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(c) = b.get(i) {
        if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        i += 1;
    }
    i
}

/// `i` is at an opening quote; returns the index just past the closing quote.
pub fn string_end(b: &[u8], i: usize) -> Res<usize> {
    if at(b, i)? != b'"' {
        return Err(Malformed);
    }
    let mut j = i + 1;
    loop {
        // Jump quote to quote (text is full of `\n` escapes; quotes are rarer), then check the
        // quote is not escaped: an even run of backslashes before it.
        let rest = b.get(j..).ok_or(Malformed)?;
        let k = memchr::memchr(b'"', rest).ok_or(Malformed)?;
        let q = j + k;
        let slashes = b[i + 1..q].iter().rev().take_while(|&&c| c == b'\\').count();
        if slashes % 2 == 0 {
            return Ok(q + 1);
        }
        j = q + 1;
    }
}

/// Ends of the containers and long strings of one buffer, found in a single pass, so that the
/// nested walk of `locate` (each level asks where its children end) does not rescan them.
struct EndIndex {
    /// Address and length of the indexed buffer: the index answers for that buffer only.
    buffer: (usize, usize),
    ends: HashMap<usize, usize>,
}

thread_local! {
    static INDEX: RefCell<Option<EndIndex>> = const { RefCell::new(None) };
}

/// Strings shorter than this are cheaper to rescan than to index.
const INDEXED_STRING: usize = 64;

fn build_index(b: &[u8]) -> Res<EndIndex> {
    let mut ends = HashMap::new();
    let mut stack = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let e = string_end(b, i)?;
                if e - i >= INDEXED_STRING {
                    ends.insert(i, e);
                }
                i = e;
                continue;
            }
            b'{' | b'[' => stack.push(i),
            b'}' | b']' => {
                ends.insert(stack.pop().ok_or(Malformed)?, i + 1);
            }
            _ => {}
        }
        i += 1;
    }
    Ok(EndIndex { buffer: (b.as_ptr() as usize, b.len()), ends })
}

/// Runs `f` with the value ends of `b` indexed (one scan instead of one per nesting level).
pub fn with_index<R>(b: &[u8], f: impl FnOnce() -> Res<R>) -> Res<R> {
    let index = build_index(b)?;
    INDEX.with(|x| *x.borrow_mut() = Some(index));
    let out = f();
    INDEX.with(|x| *x.borrow_mut() = None);
    out
}

fn indexed_end(b: &[u8], i: usize) -> Option<usize> {
    INDEX.with(|x| {
        let x = x.borrow();
        let idx = x.as_ref()?;
        (idx.buffer == (b.as_ptr() as usize, b.len())).then(|| idx.ends.get(&i).copied()).flatten()
    })
}

/// `i` is at the first byte of a value; returns the index just past it.
pub fn value_end(b: &[u8], i: usize) -> Res<usize> {
    if let Some(e) = indexed_end(b, i) {
        return Ok(e);
    }
    match at(b, i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            // Iterative so that deep nesting cannot overflow the stack.
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match at(b, j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1).ok_or(Malformed)?;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                    break;
                }
                j += 1;
            }
            if j == i {
                Err(Malformed)
            } else {
                Ok(j)
            }
        }
    }
}

/// Key (raw bytes between the quotes) and value range of each member of the object at `r.start`.
pub fn members(b: &[u8], r: Range<usize>) -> Res<Vec<(Range<usize>, Range<usize>)>> {
    let mut out = Vec::new();
    if at(b, r.start)? != b'{' {
        return Err(Malformed);
    }
    let mut i = skip_ws(b, r.start + 1);
    if at(b, i)? == b'}' {
        return Ok(out);
    }
    loop {
        let kend = string_end(b, i)?;
        let key = i + 1..kend - 1;
        i = skip_ws(b, kend);
        if at(b, i)? != b':' {
            return Err(Malformed);
        }
        i = skip_ws(b, i + 1);
        let vend = value_end(b, i)?;
        out.push((key, i..vend));
        i = skip_ws(b, vend);
        match at(b, i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return Ok(out),
            _ => return Err(Malformed),
        }
    }
}

/// Value ranges of the items of the array at `r.start`.
pub fn items(b: &[u8], r: Range<usize>) -> Res<Vec<Range<usize>>> {
    let mut out = Vec::new();
    if at(b, r.start)? != b'[' {
        return Err(Malformed);
    }
    let mut i = skip_ws(b, r.start + 1);
    if at(b, i)? == b']' {
        return Ok(out);
    }
    loop {
        let vend = value_end(b, i)?;
        out.push(i..vend);
        i = skip_ws(b, vend);
        match at(b, i)? {
            b',' => i = skip_ws(b, i + 1),
            b']' => return Ok(out),
            _ => return Err(Malformed),
        }
    }
}

/// The whole body's top-level value range.
pub fn root(b: &[u8]) -> Res<Range<usize>> {
    let s = skip_ws(b, 0);
    let e = value_end(b, s)?;
    Ok(s..e)
}

/// An object viewed as a small lookup table.
pub struct Obj<'a> {
    pub b: &'a [u8],
    pub members: Vec<(Range<usize>, Range<usize>)>,
}

impl<'a> Obj<'a> {
    pub fn parse(b: &'a [u8], r: Range<usize>) -> Res<Obj<'a>> {
        Ok(Obj { b, members: members(b, r)? })
    }

    /// First member with this (unescaped) key.
    pub fn get(&self, key: &str) -> Option<Range<usize>> {
        self.members.iter().find(|(k, _)| &self.b[k.clone()] == key.as_bytes()).map(|(_, v)| v.clone())
    }

    /// A string member decoded, or None when absent or not a string.
    pub fn str(&self, key: &str) -> Option<Cow<'a, str>> {
        let r = self.get(key)?;
        decode(self.b, r).ok()
    }
}

pub fn is_string(b: &[u8], r: &Range<usize>) -> bool {
    b.get(r.start) == Some(&b'"')
}

pub fn is_object(b: &[u8], r: &Range<usize>) -> bool {
    b.get(r.start) == Some(&b'{')
}

pub fn is_array(b: &[u8], r: &Range<usize>) -> bool {
    b.get(r.start) == Some(&b'[')
}

/// A tool call's arguments at `r`: an object, or a string holding one (OpenAI dialects); JSON
/// that does not parse gives `Null`. `Err` only when the range itself is not readable.
pub fn call_args(b: &[u8], r: &Range<usize>) -> Res<serde_json::Value> {
    if is_string(b, r) {
        return Ok(serde_json::from_str(&decode(b, r.clone())?).unwrap_or_default());
    }
    Ok(serde_json::from_slice(b.get(r.clone()).ok_or(Malformed)?).unwrap_or_default())
}

/// Decodes the JSON string whose full range (quotes included) is `r`.
pub fn decode(b: &[u8], r: Range<usize>) -> Res<Cow<'_, str>> {
    let raw = b.get(r.clone()).ok_or(Malformed)?;
    if raw.first() != Some(&b'"') {
        return Err(Malformed);
    }
    let inner = raw.get(1..raw.len().saturating_sub(1)).ok_or(Malformed)?;
    if memchr::memchr(b'\\', inner).is_none() {
        return std::str::from_utf8(inner).map(Cow::Borrowed).map_err(|_| Malformed);
    }
    serde_json::from_slice::<String>(raw).map(Cow::Owned).map_err(|_| Malformed)
}

/// Appends `s` JSON-escaped (without quotes).
pub fn encode_into(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match c {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match esc {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_objects_and_arrays() {
        let b = br#" {"a" : [1, {"b":"x\"y"}, 1.0e5], "c":null} "#;
        let r = root(b).unwrap();
        let o = Obj::parse(b, r).unwrap();
        let a = o.get("a").unwrap();
        let it = items(b, a).unwrap();
        assert_eq!(it.len(), 3);
        assert_eq!(&b[it[2].clone()], b"1.0e5");
        let inner = Obj::parse(b, it[1].clone()).unwrap();
        assert_eq!(inner.str("b").unwrap(), "x\"y");
        assert_eq!(&b[o.get("c").unwrap()], b"null");
    }

    #[test]
    fn encode_round_trips() {
        let s = "a\"b\\c\nd\u{1}é→\u{7f}";
        let mut out = vec![b'"'];
        encode_into(s, &mut out);
        out.push(b'"');
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        for b in [&b"{\"a\":"[..], b"[1,", b"\"abc", b"{\"a\" 1}", b"}", b""] {
            let _ = root(b).and_then(|r| members(b, r));
        }
    }

    /// The one-pass index gives the same value ends as scanning, and refuses malformed bodies.
    #[test]
    fn indexed_ends_equal_scanned_ends() {
        let long = "x\\\"y ".repeat(40);
        let body = format!(r#"{{"a":[{{"t":"{long}"}},"{long}",[1,[2,{{"u":"\\"}}]]],"b":{{"c":"{long}"}}}}"#);
        let b = body.as_bytes();
        let starts: Vec<usize> = (0..b.len()).filter(|&i| matches!(b[i], b'{' | b'[')).collect();
        let scanned: Vec<usize> = starts.iter().map(|&i| value_end(b, i).unwrap()).collect();
        let indexed = with_index(b, || starts.iter().map(|&i| value_end(b, i)).collect::<Res<Vec<usize>>>()).unwrap();
        assert_eq!(scanned, indexed);
        assert!(indexed_end(b, 0).is_none(), "the index is gone afterwards");
        assert!(with_index(b"{\"a\":1}}", || Ok(())).is_err());
        assert!(with_index(b"{\"a\":\"open", || Ok(())).is_err());
    }
}
