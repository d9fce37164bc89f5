//! A JSON document's bytes outside its string literals (the skeleton) and the ranges of those
//! literals, for checking that a raw splice changed string contents only: key order,
//! whitespace, numbers as written and everything else byte for byte.

use std::ops::Range;

pub struct Skeleton {
    /// The document with every string literal emptied to `""`.
    pub bytes: Vec<u8>,
    /// Each string literal's range in the document, quotes included, in order.
    pub strings: Vec<Range<usize>>,
}

/// Splits a valid JSON document (the caller has parsed it) into skeleton and strings.
pub fn of(doc: &[u8]) -> Skeleton {
    let mut out = Skeleton { bytes: Vec::with_capacity(doc.len()), strings: Vec::new() };
    let mut i = 0;
    while i < doc.len() {
        if doc[i] != b'"' {
            out.bytes.push(doc[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < doc.len() && doc[i] != b'"' {
            i += if doc[i] == b'\\' { 2 } else { 1 };
        }
        i = (i + 1).min(doc.len());
        out.strings.push(start..i);
        out.bytes.extend_from_slice(b"\"\"");
    }
    out
}
