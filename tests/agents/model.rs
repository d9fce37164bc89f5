//! The scripted model: decides each turn from what the agent sent (the tools it offers, the tool
//! results so far), logs every request it receives, and stops the script with a `MOCK-ABORT`
//! answer when a tool result is not what the step needs (e.g. folding hid the edited line).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use super::common::gemini;
use super::common::mock::{Recorded, Reply};
use super::common::prompt_cache::{self, Billed, PromptCache};
use super::provider::{self, Answer, Dialect, Turn};
use super::scenario::{self, long, long::Parts, Kit, Step};

/// Header the tap adds to each request so the mock's copy can be matched with the agent's.
pub const SEQ_HEADER: &str = "x-agents-tap-seq";

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub seq: Option<u64>,
    pub dialect: Option<Dialect>,
    pub body: Vec<u8>,
    pub turn: Option<Turn>,
    /// The agent's task (it offers a known tool kit), as opposed to title generation and the like.
    pub main: bool,
    /// The step answered, for the task's requests.
    pub step: Option<Step>,
    pub abort: Option<String>,
    /// What the simulated Anthropic prompt cache billed (Anthropic requests only).
    pub billed: Option<Billed>,
}

pub struct Script {
    pub repo: PathBuf,
    log_path: PathBuf,
    pub seen: Mutex<Vec<Seen>>,
    /// Anthropic requests are billed as the real prompt cache would bill them.
    cache: std::sync::Arc<PromptCache>,
    /// The long session (`scenario::long`) instead of the five-step task, with how its parts
    /// are shown.
    long: Option<Parts>,
}

impl Script {
    pub fn new(repo: PathBuf, log_path: PathBuf, long: Option<Parts>) -> Script {
        Script { repo, log_path, seen: Mutex::new(Vec::new()), cache: PromptCache::new(), long }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn handle(&self, rec: &Recorded) -> Reply {
        self.log(rec);
        let seq = rec.header(SEQ_HEADER).and_then(|s| s.parse().ok());
        let mut seen = Seen {
            seq,
            dialect: Dialect::from_path(&rec.path),
            body: rec.body.clone(),
            turn: None,
            main: false,
            step: None,
            abort: None,
            billed: None,
        };
        let reply = self.answer(rec, &mut seen);
        if let Ok(mut s) = self.seen.lock() {
            s.push(seen);
        }
        reply
    }

    fn answer(&self, rec: &Recorded, seen: &mut Seen) -> Reply {
        let tokens = (rec.body.len() as u64).div_ceil(4);
        if rec.path.ends_with("/count_tokens") {
            return Reply::ok_json(format!("{{\"input_tokens\":{tokens}}}"));
        }
        if rec.path.ends_with(":countTokens") {
            return Reply::ok_json(format!("{{\"totalTokens\":{tokens}}}"));
        }
        let Some(dialect) = seen.dialect else { return provider::not_found(&rec.path) };
        // The Gemini mock refuses what the API refuses (unknown fields, roles, lost signatures).
        if dialect == Dialect::Gemini {
            if let Err(reply) = gemini::check(rec, &provider::SIGNATURES) {
                seen.abort = Some(format!("the Gemini mock refused the request: {}", reply_text(&reply)));
                return reply;
            }
        }
        if let Some(reply) = anthropic_refusal(dialect, rec) {
            seen.abort = Some(format!("the Anthropic mock refused the request: {}", reply_text(&reply)));
            return reply;
        }
        let mut usage = None;
        if dialect == Dialect::Anthropic {
            match self.cache.request(&rec.body) {
                Ok((billed, _)) => {
                    usage = Some(prompt_cache::usage_json(&billed));
                    seen.billed = Some(billed);
                }
                Err(refused) => {
                    seen.abort = Some(format!("the Anthropic API would refuse this request: {}", reply_text(&refused)));
                    return refused;
                }
            }
        }
        let turn = match provider::parse(dialect, &rec.path, &rec.body) {
            Ok(t) => t,
            Err(e) => {
                seen.abort = Some(e.clone());
                return Reply::Json {
                    status: 400,
                    body: format!("{{\"error\":{{\"message\":{e:?}}}}}").into(),
                    headers: vec![],
                };
            }
        };
        let model = serde_json::from_slice::<serde_json::Value>(&rec.body)
            .ok()
            .and_then(|v| v["model"].as_str().map(str::to_string))
            .or_else(|| gemini_model(&rec.path))
            .unwrap_or_else(|| "scripted".into());
        let answer = match Kit::detect(&turn.tools) {
            None => Answer::Text(scenario::SIDE_ANSWER.into()),
            Some(kit) if self.long.is_some() => {
                seen.main = true;
                let parts = self.long.unwrap_or(Parts::Run);
                match long::next(&turn.results, parts.lines()) {
                    long::Next::Run(k) => Answer::Call(parts.call(kit, &turn.tools, &self.repo, k)),
                    long::Next::Recall(c) => Answer::Call(long::shell(kit, &turn.tools, &c)),
                    long::Next::Final => Answer::Text(long::FINAL_ANSWER.into()),
                    long::Next::Abort(why) => {
                        seen.abort = Some(why.clone());
                        Answer::Text(format!("MOCK-ABORT: {why}"))
                    }
                }
            }
            Some(kit) => {
                seen.main = true;
                let done = turn.results.len();
                let step = Step::at(done);
                seen.step = Some(step);
                seen.abort = check_previous(&turn);
                match (&seen.abort, scenario::tool_call(kit, &turn.tools, step, &self.repo)) {
                    (Some(why), _) => Answer::Text(format!("MOCK-ABORT: {why}")),
                    (None, Some(call)) => Answer::Call(call),
                    (None, None) => Answer::Text(scenario::FINAL_ANSWER.into()),
                }
            }
        };
        let n = self.seen.lock().map(|s| s.len()).unwrap_or(0);
        let reply = provider::reply(dialect, turn.stream, &answer, &model, n, tokens, usage);
        seen.turn = Some(turn);
        reply
    }

    /// Appends the request to the mock's log (one JSON line per request).
    fn log(&self, rec: &Recorded) {
        let line = serde_json::json!({
            "method": rec.method, "path": rec.path, "query": rec.query,
            "headers": rec.headers, "body": String::from_utf8_lossy(&rec.body),
        });
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// What Anthropic's current models refuse that a translation could produce: `temperature` and
/// `top_p` together.
fn anthropic_refusal(dialect: Dialect, rec: &Recorded) -> Option<Reply> {
    let v: serde_json::Value = serde_json::from_slice(&rec.body).ok()?;
    let both = v.get("temperature").is_some() && v.get("top_p").is_some();
    (dialect == Dialect::Anthropic && both).then(|| Reply::Json {
        status: 400,
        body: br#"{"type":"error","error":{"type":"invalid_request_error","message":"`temperature` and `top_p` cannot both be specified for this model. Please use only one."}}"#.to_vec(),
        headers: vec![],
    })
}

/// The model a Gemini path names (`/v1beta/models/NAME:method`).
fn gemini_model(path: &str) -> Option<String> {
    let rest = path.split("/models/").nth(1)?;
    Some(rest.split(':').next()?.to_string())
}

/// The body of an error reply, for the log.
fn reply_text(reply: &Reply) -> String {
    match reply {
        Reply::Json { status, body, .. } => format!("HTTP {status} {}", String::from_utf8_lossy(body)),
        _ => "an error".into(),
    }
}

/// Whether the latest tool result shows what its step needed.
fn check_previous(turn: &Turn) -> Option<String> {
    let done = turn.results.len();
    let last = turn.results.last()?;
    let step = Step::at(done - 1);
    let expected = step.expect_in_result()?;
    if last.contains(expected) {
        return None;
    }
    let head: String = last.chars().take(400).collect();
    Some(format!("the result of step {step:?} does not contain `{expected}`; it starts: {head}"))
}
