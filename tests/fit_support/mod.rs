//! Mock free tiers that refuse what the real ones refuse, in their own error shapes: GitHub
//! Models' 413 over its input cap, Groq's 413 (one request over the TPM) and 429 (the window
//! spent, with its rate-limit headers), Cerebras' 400 over its context window. Each speaks
//! OpenAI Chat, checks tool-call pairing, counts input as o200k tokens of what the model reads,
//! and remembers every refusal, so a test fails when the pool or the fit is wrong.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::{json, Value};

use super::clear_support::{tool_ids_pair, Dialect};
use super::common::mock::{self, Mock, Recorded, Reply};

#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// GitHub Models: a per-request input cap.
    GitHub,
    /// Groq: tokens per minute, input plus `max_tokens`.
    Groq,
    /// Cerebras: a context window, input plus `max_tokens`.
    Cerebras,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub shape: Shape,
    pub input_cap: Option<u64>,
    pub tpm: Option<u64>,
    pub context: Option<u64>,
    /// How long the TPM window is: a minute, or a few seconds for a tier whose headers report
    /// a short window (as Groq's token bucket does right after a burst).
    pub window: Duration,
}

const MINUTE: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Seen {
    /// (input tokens, max_tokens) of every request answered.
    pub served: Vec<(u64, u64)>,
    /// When each answered request arrived.
    pub arrived: Vec<Instant>,
    /// Why each refused request was refused.
    pub refused: Vec<String>,
    window: Vec<(Instant, u64)>,
}

pub struct Tier {
    pub mock: Mock,
    pub seen: Arc<Mutex<Seen>>,
    pub limits: Limits,
}

impl Tier {
    pub fn served(&self) -> usize {
        self.seen.lock().unwrap().served.len()
    }
    pub fn refused(&self) -> Vec<String> {
        self.seen.lock().unwrap().refused.clone()
    }
}

/// What the provider counts of a request: o200k tokens of what the model reads.
pub fn input_tokens(body: &[u8]) -> u64 {
    tokenfold::tokens::estimate_request(body, 1.0).unwrap_or(u64::MAX)
}

pub async fn start(limits: Limits) -> Tier {
    start_with(limits, |rec: &Recorded, input: u64| ok_reply(rec, input)).await
}

/// A tier whose admitted requests `inner` answers (given the input tokens counted).
pub async fn start_with(limits: Limits, inner: impl Fn(&Recorded, u64) -> Reply + Send + Sync + 'static) -> Tier {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let mock = mock::start(move |rec: &Recorded| {
        let checked = admit(&limits, &mut s.lock().unwrap(), rec);
        match checked {
            Err(refusal) => refusal,
            Ok((input, headers)) => match inner(rec, input) {
                Reply::Json { status, body, headers: mut h } => {
                    h.extend(headers);
                    Reply::Json { status, body, headers: h }
                }
                other => other,
            },
        }
    })
    .await;
    Tier { mock, seen, limits }
}

fn ok_reply(rec: &Recorded, input: u64) -> Reply {
    let body: Value = serde_json::from_slice(&rec.body).unwrap_or_default();
    let reply = json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": input, "completion_tokens": 5, "total_tokens": input + 5}
    });
    json_reply(200, reply, vec![])
}

fn json_reply(status: u16, body: Value, headers: Vec<(&'static str, String)>) -> Reply {
    Reply::Json { status, body: body.to_string().into_bytes(), headers }
}

/// Response headers a tier adds (its rate-limit headers).
type Headers = Vec<(&'static str, String)>;

/// Admits a request within the tier's limits (its input tokens and rate-limit headers), or the
/// provider's refusal.
fn admit(l: &Limits, seen: &mut Seen, rec: &Recorded) -> Result<(u64, Headers), Reply> {
    let body: Value = serde_json::from_slice(&rec.body).unwrap_or_default();
    if let Err(why) = tool_ids_pair(Dialect::Chat, &body) {
        seen.refused.push(format!("pairing: {why}"));
        return Err(json_reply(
            400,
            json!({"error": {"message": why, "type": "invalid_request_error", "param": null, "code": null}}),
            vec![],
        ));
    }
    let input = input_tokens(&rec.body);
    let max_tokens = body.get("max_tokens").or(body.get("max_completion_tokens")).and_then(Value::as_u64).unwrap_or(0);
    let model = body["model"].as_str().unwrap_or("m").to_string();
    if let Some(cap) = l.input_cap.filter(|&c| input > c) {
        seen.refused.push(format!("input {input} > cap {cap}"));
        let msg = format!("Request body too large for {model} model. Max size: {cap} tokens.");
        return Err(json_reply(
            413,
            json!({"error": {"code": "tokens_limit_reached", "message": msg, "details": null}}),
            vec![],
        ));
    }
    if let Some(ctx) = l.context.filter(|&c| input + max_tokens > c) {
        seen.refused.push(format!("context {} > {ctx}", input + max_tokens));
        let msg = format!(
            "Please reduce the length of the messages or completion. Current length is {} while limit is {ctx}",
            input + max_tokens
        );
        return Err(json_reply(
            400,
            json!({"message": msg, "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}),
            vec![],
        ));
    }
    let now = Instant::now();
    seen.window.retain(|(t, _)| now.duration_since(*t) < l.window);
    let used: u64 = seen.window.iter().map(|(_, n)| n).sum();
    let mut headers = vec![];
    if let Some(tpm) = l.tpm {
        let requested = input + max_tokens;
        let org = "in organization `org_01mock` service tier `on_demand` on tokens per minute (TPM)";
        if requested > tpm {
            seen.refused.push(format!("request {requested} > TPM {tpm}"));
            let msg = format!("Request too large for model `{model}` {org}: Limit {tpm}, Requested {requested}, please reduce your message size and try again.");
            return Err(json_reply(
                413,
                json!({"error": {"message": msg, "type": "tokens", "code": "rate_limit_exceeded"}}),
                vec![],
            ));
        }
        let oldest_leaves =
            seen.window.first().map_or(Duration::ZERO, |(t, _)| l.window.saturating_sub(now.duration_since(*t)));
        let reset = |used: u64, oldest: Duration| {
            let mut h = vec![
                ("x-ratelimit-remaining-tokens", tpm.saturating_sub(used).to_string()),
                ("x-ratelimit-reset-tokens", format!("{:.2}s", oldest.as_secs_f64())),
            ];
            // A short window's limit is not a per-minute one, which is how the header reads.
            if l.window == MINUTE {
                h.push(("x-ratelimit-limit-tokens", tpm.to_string()));
            }
            h
        };
        if used + requested > tpm {
            seen.refused.push(format!("window {used} + {requested} > TPM {tpm}"));
            let wait = oldest_leaves.as_secs_f64();
            let msg = format!("Rate limit reached for model `{model}` {org}: Limit {tpm}, Used {used}, Requested {requested}. Please try again in {wait:.3}s.");
            let mut h = reset(used, oldest_leaves);
            h.push(("retry-after", format!("{}", wait.ceil() as u64)));
            return Err(json_reply(
                429,
                json!({"error": {"message": msg, "type": "tokens", "code": "rate_limit_exceeded"}}),
                h,
            ));
        }
        // This request is now the oldest when the window was empty.
        let oldest = if seen.window.is_empty() { l.window } else { oldest_leaves };
        headers = reset(used + input + 5, oldest);
    }
    seen.window.push((now, input + 5));
    seen.served.push((input, max_tokens));
    seen.arrived.push(now);
    Ok((input, headers))
}

/// The config of a route `route` over `tiers` (provider names `t0`, `t1`, ...), as each is
/// configured in the shipped config: the cap as `max_input_tokens`, the window as `context`, the
/// TPM as a limit.
pub fn config(tiers: &[&Tier], route: &str, strategy: &str, max_wait_ms: u64, originals: &std::path::Path) -> String {
    let mut s = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nconnect_ms = 2000\nfirst_byte_ms = 20000\nidle_ms = 20000\n[pool]\nstore = \"memory\"\n[fold]\noriginals_dir = \"{}\"\n",
        originals.display()
    );
    let mut targets = Vec::new();
    for (i, t) in tiers.iter().enumerate() {
        let l = t.limits;
        let mut model = "{ name = \"m\"".to_string();
        if let Some(c) = l.context {
            model.push_str(&format!(", context = {c}"));
        }
        if let Some(c) = l.input_cap {
            model.push_str(&format!(", max_input_tokens = {c}"));
        }
        // Configured per minute: a short window's limit as many times over as it fits in one.
        if let Some(t) = l.tpm.map(|t| t * MINUTE.as_millis() as u64 / l.window.as_millis() as u64) {
            model.push_str(&format!(", limits = {{ tpm = {t} }}"));
        }
        model.push_str(" }");
        s.push_str(&format!(
            "[[providers]]\nname = \"t{i}\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"${{T_KEY}}\"\nfree_tier = true\nmodels = [{model}]\n",
            t.mock.base()
        ));
        targets.push(format!("\"t{i}/m\""));
    }
    s.push_str(&format!(
        "[routes.\"{route}\"]\nstrategy = \"{strategy}\"\nmax_wait_ms = {max_wait_ms}\ntargets = [{}]\n",
        targets.join(", ")
    ));
    s
}

pub const GITHUB: Limits =
    Limits { shape: Shape::GitHub, input_cap: Some(8000), tpm: None, context: Some(128_000), window: MINUTE };
pub const GROQ: Limits =
    Limits { shape: Shape::Groq, input_cap: None, tpm: Some(12_000), context: Some(131_072), window: MINUTE };
pub const CEREBRAS: Limits =
    Limits { shape: Shape::Cerebras, input_cap: None, tpm: Some(1_000_000), context: Some(40_000), window: MINUTE };
/// Groq right after a burst: 20,000 tokens a 2-second window, its headers saying what is left
/// and when it resets (600,000 a minute in the config).
pub const GROQ_BURST: Limits =
    Limits { shape: Shape::Groq, input_cap: None, tpm: Some(20_000), context: Some(131_072), window: BURST_WINDOW };
pub const BURST_WINDOW: Duration = Duration::from_secs(2);
