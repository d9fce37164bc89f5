//! Token counting. Exact counts use tiktoken's o200k_base (an estimate for non-OpenAI models);
//! the hot path uses byte-count estimates so that folding never waits on a tokenizer.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// Exact o200k_base token count (falls back to the estimate if the vocabulary cannot load).
pub fn count(text: &str) -> u64 {
    match bpe() {
        Some(b) => b.encode_ordinary(text).len() as u64,
        None => estimate_text(text),
    }
}

/// Estimated tokens of ordinary text/code: o200k averages ~3.6 bytes per token on the removed spans
/// of the corpus (2.6 at worst), so 4 bytes per token under-counts savings (the safe side).
pub fn estimate_text(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// Estimated tokens of a marker, by what its characters are: random ids (a word of 8+ with
/// letters and digits) 0.85 tokens per byte, `#hex` content ids 0.9 per byte, a token per 3 digits
/// of a number, 0.3 per byte of other words, 0.4 per byte of spaces and punctuation, plus 2.
/// Fitted with margin on the distinct markers of the corpus replay and on o200k counts of marker
/// parts (a random `toolu_` id is 25 tokens for 30 bytes): never below the real count there.
pub fn estimate_marker(marker: &str) -> u64 {
    let b = marker.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut hundredths = 0u64;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if b[i] == b'#' && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) {
            i += 1;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
            hundredths += 90 * (i - start) as u64;
        } else if word(b[i]) {
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            let w = &b[start..i];
            let len = w.len() as u64;
            hundredths += if w.iter().all(u8::is_ascii_digit) {
                100 * len.div_ceil(3)
            } else if len >= 8 && w.iter().any(u8::is_ascii_digit) && w.iter().any(u8::is_ascii_alphabetic) {
                85 * len
            } else {
                30 * len
            };
        } else {
            i += 1;
            hundredths += 40;
        }
    }
    hundredths.div_ceil(100) + 2
}

/// What a provider counts of a request body (JSON), estimated: o200k_base tokens of every
/// string and key the model reads, plus 3 per object for the framing a chat template adds,
/// scaled by `factor` for a tokenizer family that splits text finer than o200k. Errs on the high
/// side, so a request fitted by it is not refused for being a few tokens over. `None`: not JSON.
pub fn estimate_request(body: &[u8], factor: f64) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut text = String::new();
    let mut long = 0;
    let objects = walk(&value, &mut text, Some(&mut long));
    let tokens = count(&text) + long + 3 * objects;
    Some((tokens as f64 * factor).ceil() as u64)
}

/// Strings at least this long are counted one by one and remembered: fitting measures the same
/// request several times, and each turn repeats the one before.
const MEMO_MIN_BYTES: usize = 512;
/// Entries remembered before the memo starts over (about 2 MB).
const MEMO_MAX: usize = 65_536;

/// o200k count of `s`, remembered by content hash (a cache: the count is the same either way).
fn count_memo(s: &str) -> u64 {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static MEMO: OnceLock<Mutex<HashMap<u64, u64>>> = OnceLock::new();
    let memo = MEMO.get_or_init(|| Mutex::new(HashMap::new()));
    let key = xxhash_rust::xxh3::xxh3_64(s.as_bytes());
    if let Some(&n) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return n;
    }
    let n = count(s);
    let mut m = memo.lock().unwrap_or_else(|e| e.into_inner());
    if m.len() >= MEMO_MAX {
        m.clear();
    }
    m.insert(key, n);
    n
}

/// Not text the model reads: names, cache hints, opaque signatures.
fn skipped_key(k: &str) -> bool {
    matches!(k, "model" | "cache_control" | "thoughtSignature" | "signature")
}

/// Appends every string value and object key of `v` a model reads to `out`; returns how many
/// objects it holds.
pub fn request_text(v: &serde_json::Value, out: &mut String) -> u64 {
    walk(v, out, None)
}

/// `request_text`, except that with `long`, strings of `MEMO_MIN_BYTES` or more are counted on
/// their own (memoized) into it instead of appended.
fn walk(v: &serde_json::Value, out: &mut String, mut long: Option<&mut u64>) -> u64 {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            match long {
                Some(n) if s.len() >= MEMO_MIN_BYTES => *n += count_memo(s),
                _ => {
                    out.push_str(s);
                    out.push('\n');
                }
            }
            0
        }
        Value::Array(items) => items.iter().map(|i| walk(i, out, long.as_deref_mut())).sum(),
        Value::Object(map) => {
            let mut n = 1;
            for (k, v) in map {
                if skipped_key(k) {
                    continue;
                }
                out.push_str(k);
                out.push(' ');
                n += walk(v, out, long.as_deref_mut());
            }
            n
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push(' ');
            0
        }
        _ => 0,
    }
}

/// The part-1 marker estimate: one token per 2 bytes.
pub fn estimate_marker_flat(marker: &str) -> u64 {
    (marker.len() as u64).div_ceil(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_estimate_counts_what_the_model_reads_and_memoizes_long_strings() {
        let long = "fn widget_handler(request: &Request) -> Response { todo!() }\n".repeat(40);
        let body = serde_json::json!({"model": "some-model-name", "messages": [
            {"role": "user", "content": long}, {"role": "assistant", "content": "ok"}]})
        .to_string();
        let direct = {
            let mut text = String::new();
            let objects = request_text(&serde_json::from_str(&body).unwrap(), &mut text);
            count(&text) + 3 * objects
        };
        let est = estimate_request(body.as_bytes(), 1.0).unwrap();
        // Counting a long string on its own differs from counting it joined by at most a token or two.
        assert!(est.abs_diff(direct) <= 2, "{est} vs {direct}");
        assert_eq!(estimate_request(body.as_bytes(), 1.0), Some(est), "the memo gives the same count");
        assert_eq!(estimate_request(body.as_bytes(), 1.2), Some((est as f64 * 1.2).ceil() as u64));
        assert_eq!(estimate_request(b"not json", 1.0), None);
    }

    #[test]
    fn counts_tokens() {
        assert!(count("hello world") >= 2);
        assert_eq!(count(""), 0);
    }

    /// The gate must not price a marker below what it really costs: markers in every wording the
    /// engine writes, with ids, numbers and content ids like the corpus ones.
    #[test]
    fn marker_estimate_is_not_below_o200k() {
        let markers = [
            "[tokenfold: lines 262-274 same as lines 207-219 of services/transcript_renderer.ex read toolu_013N7awX… #ae41]",
            "[tokenfold: 30 lines same as lines 1-30 of Bash output toolu_01P7X8r5kKnC… #1281]",
            "[tokenfold: lines 1-91 same as content of Write toolu_01KzY16LN9… #1a6f]",
            "[tokenfold: lines 536-564 same as lines 1-29 of new_string of Edit toolu_016FJENB… #fecb]",
            "[tokenfold: 9 lines same as lines 53-61 above #6bdd]",
            "[tokenfold: lines 1481-1524 same as lines 1481-1524 above #a748]",
            "[tokenfold: 26 lines same as lines 29-54 of the demonstration in message 1 #8c69]",
            "[tokenfold: lines 298-336 same as lines 297-335 of numpy_handler.py view in message 12 #d3df]",
            "[tokenfold: same as Bash output toolu_01Rw3cBf186n… #27a4]",
            "[tokenfold: same as tool output in message 11 #122c]",
            "[tokenfold: system-reminder same as in user text in message 0 #fba3]",
            "[tokenfold: lines 40-112 same as src/a.rs read in toolu_01P7X8r5kKnC1FfQZP5iTj6e (lines 40-112) #1281f0]",
            "[tokenfold: 6 lines same as Bash output in call_8hF3kQ2mZ9xW4 (lines 1-6) #27a4d6]",
        ];
        for m in markers {
            assert!(estimate_marker(m) >= count(m), "{m}: estimate {} < {}", estimate_marker(m), count(m));
            assert!(estimate_marker(m) <= estimate_marker_flat(m) + 6, "{m}: calibrated is not far above flat");
        }
    }
}
