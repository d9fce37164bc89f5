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

/// Estimated tokens of a marker: ids, hex and numbers tokenize poorly (measured 2.0-2.6 bytes
/// per o200k token), so count one token per 2 bytes.
pub fn estimate_marker(marker: &str) -> u64 {
    estimate_marker_flat(marker)
}

/// The part-1 marker estimate: one token per 2 bytes.
pub fn estimate_marker_flat(marker: &str) -> u64 {
    (marker.len() as u64).div_ceil(2)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_tokens() {
        assert!(super::count("hello world") >= 2);
        assert_eq!(super::count(""), 0);
    }
}
