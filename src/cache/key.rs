//! The `prompt_cache_key` tokenfold sends for a client that sends none: one per conversation and
//! account, so every turn of a conversation reaches the same OpenAI cache. Made from the
//! conversation id the ledger records (the client's session id, or a hash of the conversation's
//! opening) and the account's label, never from a key; a hash, so it says neither.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Distinguishes these hashes from the ledger's own.
const SEED: u64 = 0x6361_6368_655f_6b65;

pub fn derive(provider: &str, account: &str, conversation: &str) -> String {
    let account_seed = xxh3_64_with_seed(format!("{provider}/{account}").as_bytes(), SEED);
    format!("tokenfold-{:016x}", xxh3_64_with_seed(conversation.as_bytes(), account_seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_conversation_and_account() {
        let k = derive("openai", "client", "h0123456789abcdef");
        assert_eq!(k, derive("openai", "client", "h0123456789abcdef"), "stable across calls and processes");
        assert!(k.starts_with("tokenfold-") && k.len() == "tokenfold-".len() + 16, "{k}");
        assert_ne!(k, derive("openai", "client", "h0123456789abcdee"));
        assert_ne!(k, derive("openai", "team", "h0123456789abcdef"));
        assert_ne!(k, derive("openai2", "client", "h0123456789abcdef"));
        assert!(!k.contains("h0123456789abcdef"));
    }
}
