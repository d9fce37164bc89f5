//! A mock Anthropic Messages API that simulates the prompt cache the way the real one behaves,
//! so that a test fails when breakpoints are missing, misplaced or too many:
//!
//! - the prefix is tools, then system, then messages, block by block; a block's content counts,
//!   its `cache_control` does not, and a string `content` equals one text block;
//! - a cache entry is written only at a breakpoint whose prefix reaches the model's minimum
//!   (1,024 tokens; 2,048 for Haiku); shorter ones are ignored, as the API ignores them;
//! - a breakpoint reads the longest entry found at it or up to 20 blocks before it, written by an
//!   earlier request with exactly that prefix and still alive (5 minutes, or 1 hour with
//!   `ttl: "1h"`, from its last use); the clock can be moved on with `advance`;
//! - the API's 400 `invalid_request_error` for more than 4 breakpoints, `cache_control` on empty
//!   text or thinking blocks, unknown TTLs, and a 1-hour breakpoint after a 5-minute one.
//!
//! Tokens are o200k counts of each block's canonical JSON (a stand-in for Anthropic's tokenizer).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::mock::{Recorded, Reply};

pub const LOOKBACK: usize = 20;
pub const MAX_BREAKPOINTS: usize = 4;
const FIVE_MINUTES: Duration = Duration::from_secs(300);
const ONE_HOUR: Duration = Duration::from_secs(3600);

/// What one request was billed, as the API reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billed {
    /// Input tokens after the last cached or written prefix.
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub cache_write_1h: u64,
    /// Breakpoints the request carried, and those ignored for being below the minimum.
    pub breakpoints: usize,
    pub ignored: usize,
}

impl Billed {
    pub fn total_input(&self) -> u64 {
        self.input + self.cache_read + self.cache_write
    }

    /// Input billed in input-token equivalents: reads 0.1x, 5-minute writes 1.25x, 1-hour 2x.
    pub fn billed_equivalent(&self) -> f64 {
        let write_5m = self.cache_write - self.cache_write_1h;
        self.input as f64 + 0.1 * self.cache_read as f64 + 1.25 * write_5m as f64 + 2.0 * self.cache_write_1h as f64
    }
}

struct Entry {
    expires: Instant,
    ttl: Duration,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    skew: Duration,
    billed: Vec<Billed>,
}

/// The simulated cache; `handler` makes a mock provider of it.
#[derive(Default)]
pub struct PromptCache {
    state: Mutex<State>,
}

/// One block of the prefix: its hash chained over everything before it, its prefix's tokens.
struct Block {
    chain: u64,
    prefix_tokens: u64,
    breakpoint: Option<Duration>,
}

fn invalid(message: String) -> Reply {
    let body = json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
    Reply::Json { status: 400, body: body.to_string().into_bytes(), headers: vec![] }
}

/// The minimum cacheable prefix of a model.
pub fn min_tokens(model: &str) -> u64 {
    if model.contains("haiku") {
        2048
    } else {
        1024
    }
}

impl PromptCache {
    pub fn new() -> Arc<PromptCache> {
        Arc::new(PromptCache::default())
    }

    /// Moves the cache's clock on (entries expire as if that much time had passed).
    pub fn advance(&self, by: Duration) {
        self.state.lock().unwrap().skew += by;
    }

    /// What each request answered so far was billed, in order.
    pub fn billed(&self) -> Vec<Billed> {
        self.state.lock().unwrap().billed.clone()
    }

    /// A mock provider: `/v1/messages` answered with a short text and the simulated usage
    /// (streamed when asked), `/v1/messages/count_tokens` with a count.
    pub fn handler(self: &Arc<Self>) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
        let cache = self.clone();
        move |rec: &Recorded| {
            if rec.path.ends_with("/count_tokens") {
                return Reply::ok_json(br#"{"input_tokens":10}"#.to_vec());
            }
            match cache.request(&rec.body) {
                Ok((billed, stream)) => answer(&billed, stream),
                Err(reply) => reply,
            }
        }
    }

    /// Judges one Messages request: what it is billed (recorded), or the API's 400 answer.
    pub fn request(&self, body: &[u8]) -> Result<(Billed, bool), Reply> {
        let v: Value = serde_json::from_slice(body).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
        let model = v["model"].as_str().unwrap_or("").to_string();
        let blocks = blocks(&v)?;
        let marks = blocks.iter().filter(|b| b.breakpoint.is_some()).count();
        if marks > MAX_BREAKPOINTS {
            return Err(invalid(format!("A maximum of 4 blocks with cache_control may be provided. Found {marks}.")));
        }
        let mut st = self.state.lock().unwrap();
        let now = Instant::now() + st.skew;
        st.entries.retain(|_, e| e.expires > now);
        let min = min_tokens(&model);
        let total = blocks.last().map_or(0, |b| b.prefix_tokens);
        let mut billed = Billed { breakpoints: marks, ..Billed::default() };
        // The longest live entry any breakpoint finds within its lookback.
        let mut read: Option<usize> = None;
        for (k, b) in blocks.iter().enumerate() {
            if b.breakpoint.is_none() {
                continue;
            }
            if b.prefix_tokens < min {
                billed.ignored += 1;
                continue;
            }
            let hit = (k.saturating_sub(LOOKBACK)..=k).rev().find(|&j| st.entries.contains_key(&blocks[j].chain));
            if let Some(j) = hit {
                if read.is_none_or(|r| blocks[j].prefix_tokens > blocks[r].prefix_tokens) {
                    read = Some(j);
                }
            }
        }
        let read_tokens = read.map_or(0, |j| blocks[j].prefix_tokens);
        if let Some(j) = read {
            let e = st.entries.get_mut(&blocks[j].chain).unwrap();
            e.expires = now + e.ttl;
        }
        // Every valid breakpoint's prefix is (re)written; tokens beyond the read are billed as
        // writes at the TTL of the breakpoint that covers them.
        let mut covered = read_tokens;
        for b in blocks.iter().filter(|b| b.prefix_tokens >= min) {
            let Some(ttl) = b.breakpoint else { continue };
            if b.prefix_tokens > covered {
                let written = b.prefix_tokens - covered;
                billed.cache_write += written;
                if ttl == ONE_HOUR {
                    billed.cache_write_1h += written;
                }
                covered = b.prefix_tokens;
            }
            let e = st.entries.entry(b.chain).or_insert(Entry { expires: now, ttl });
            e.ttl = ttl;
            e.expires = now + ttl;
        }
        billed.cache_read = read_tokens;
        billed.input = total - covered;
        st.billed.push(billed);
        Ok((billed, v["stream"] == true))
    }
}

/// The blocks of a request in cache order, with their chained hashes and prefix token counts;
/// a 400 for `cache_control` where the API refuses it.
fn blocks(v: &Value) -> Result<Vec<Block>, Reply> {
    let mut out = Vec::new();
    let mut chain = xxh3_64_with_seed(v["model"].as_str().unwrap_or("").as_bytes(), 7);
    let mut tokens = 0u64;
    let mut last_ttl: Option<Duration> = None;
    let mut push = |block: &Value, context: &str, path: String| -> Result<(), Reply> {
        let breakpoint = match block.get("cache_control") {
            None => None,
            Some(cc) => {
                let kind = block["type"].as_str().unwrap_or("");
                if kind == "thinking" || kind == "redacted_thinking" {
                    return Err(invalid(format!("{path}.{kind}.cache_control: Extra inputs are not permitted")));
                }
                if kind == "text" && block["text"].as_str().is_some_and(|t| t.trim().is_empty()) {
                    return Err(invalid(format!("{path}.text: cache_control cannot be set for empty text blocks")));
                }
                if cc["type"] != "ephemeral" {
                    return Err(invalid(format!("{path}.cache_control.type: Input should be 'ephemeral'")));
                }
                let ttl = match cc.get("ttl").and_then(Value::as_str) {
                    None | Some("5m") => FIVE_MINUTES,
                    Some("1h") => ONE_HOUR,
                    Some(other) => {
                        return Err(invalid(format!(
                            "{path}.cache_control.ttl: Input should be '5m' or '1h', not {other:?}"
                        )))
                    }
                };
                if ttl == ONE_HOUR && last_ttl == Some(FIVE_MINUTES) {
                    return Err(invalid(
                        "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block".into(),
                    ));
                }
                last_ttl = Some(ttl);
                Some(ttl)
            }
        };
        let canonical = without_cache_control(block).to_string();
        tokens += tokenfold::tokens::count(&canonical);
        chain = xxh3_64_with_seed(format!("{context}\u{0}{canonical}").as_bytes(), chain);
        out.push(Block { chain, prefix_tokens: tokens, breakpoint });
        Ok(())
    };
    for (i, t) in v["tools"].as_array().into_iter().flatten().enumerate() {
        push(t, "tool", format!("tools.{i}"))?;
    }
    for (j, b) in content(&v["system"]).iter().enumerate() {
        push(b, "system", format!("system.{j}"))?;
    }
    for (i, m) in v["messages"].as_array().into_iter().flatten().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        for (j, b) in content(&m["content"]).iter().enumerate() {
            push(b, &format!("message {i} {role}"), format!("messages.{i}.content.{j}"))?;
        }
    }
    Ok(out)
}

/// A `system` or `content` value as blocks: a string is one text block.
fn content(v: &Value) -> Vec<Value> {
    match v {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(blocks) => blocks.clone(),
        _ => Vec::new(),
    }
}

fn without_cache_control(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "cache_control")
                .map(|(k, v)| (k.clone(), without_cache_control(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_cache_control).collect()),
        other => other.clone(),
    }
}

/// The usage object of an answer.
pub fn usage_json(b: &Billed) -> Value {
    json!({
        "input_tokens": b.input,
        "cache_creation_input_tokens": b.cache_write,
        "cache_read_input_tokens": b.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": b.cache_write - b.cache_write_1h,
            "ephemeral_1h_input_tokens": b.cache_write_1h,
        },
        "output_tokens": 5,
    })
}

fn answer(b: &Billed, stream: bool) -> Reply {
    let usage = usage_json(b);
    if !stream {
        let body = json!({"id": "msg_cache", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": usage});
        return Reply::ok_json(body.to_string());
    }
    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_cache", "type": "message",
            "role": "assistant", "model": "claude-test", "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": start_usage}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 5}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    Reply::sse(
        events
            .iter()
            .map(|(name, data)| super::mock::Chunk::Bytes(format!("event: {name}\ndata: {data}\n\n").into_bytes()))
            .collect(),
    )
}
