//! The soak's clients: agent sessions in all three dialects that grow turn by turn (file reads,
//! re-reads of the same file, long command output: what folding works on), each request picked
//! at random among same-dialect, translated, fallback and invented-model targets, streamed or
//! not, under one of several callers' keys; some streams are dropped by the client midway.

use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dialect {
    Anthropic,
    Chat,
    Responses,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::Anthropic, Dialect::Chat, Dialect::Responses];

    pub fn path(self) -> &'static str {
        match self {
            Dialect::Anthropic => "/v1/messages",
            Dialect::Chat => "/v1/chat/completions",
            Dialect::Responses => "/v1/responses",
        }
    }
}

/// Models the soak config routes: each provider's own (same dialect or translated), the route
/// whose first target is flaky, and a model no config lists (passthrough).
pub const MODELS: [&str; 4] = ["claude-soak", "gpt-soak", "codex-soak", "fallback-chat"];

/// One step of a session, neutral of dialect.
enum Step {
    Call { id: String, name: &'static str, arg: String },
    Output { id: String, text: String },
    Said(String),
}

/// An agent session: turns are added until it is long, then it starts over as a new session
/// (new content), so the proxy keeps meeting new conversations as well as growing ones.
pub struct Session {
    pub dialect: Dialect,
    seed: u64,
    generation: u64,
    steps: Vec<Step>,
}

/// Turns before a session starts over.
const SESSION_TURNS: usize = 24;

impl Session {
    pub fn new(dialect: Dialect, seed: u64) -> Session {
        Session { dialect, seed, generation: 0, steps: Vec::new() }
    }

    /// Adds the next turn (a tool call and its output) and returns the request body for it.
    pub fn next_body(&mut self, rng: &mut fastrand::Rng, model: &str, stream: bool) -> Vec<u8> {
        if self.steps.len() >= SESSION_TURNS * 2 {
            self.steps.clear();
            self.generation += 1;
        }
        let turn = self.steps.len() / 2;
        let id = format!("call_{}_{}_{turn}", self.seed, self.generation);
        let file = rng.usize(..4);
        let (name, arg, text) = if rng.u8(..4) == 0 {
            ("Bash", "./run-tests.sh".to_string(), log(self.seed + self.generation, turn))
        } else {
            // Four files per session: most reads are re-reads.
            let path = format!("src/part_{file}.rs");
            ("Read", path, source(self.seed + self.generation + file as u64))
        };
        self.steps.push(Step::Call { id: id.clone(), name, arg });
        self.steps.push(Step::Output { id, text });
        if rng.u8(..3) == 0 {
            self.steps.push(Step::Said(format!("Turn {turn}: looking further.")));
        }
        let body = self.render(model, stream);
        serde_json::to_vec(&body).unwrap_or_default()
    }

    fn render(&self, model: &str, stream: bool) -> Value {
        let ask = format!("Session {} ({}): fix the failing parser test.", self.seed, self.generation);
        let system = "You are a coding agent. Read before you edit; keep changes small.";
        let mut items: Vec<Value> = Vec::new();
        match self.dialect {
            Dialect::Anthropic => {
                items.push(json!({"role": "user", "content": ask}));
                for s in &self.steps {
                    items.push(match s {
                        Step::Call { id, name, arg } => json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": {"arg": arg}}]}),
                        Step::Output { id, text } => json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": text}]}),
                        Step::Said(t) => json!({"role": "assistant", "content": t}),
                    });
                }
                // Anthropic wants turns to alternate and to end with the user.
                items.retain(|m| m["role"] != "assistant" || m["content"].is_array());
                json!({"model": model, "max_tokens": 1024, "stream": stream, "system": system, "messages": items})
            }
            Dialect::Chat => {
                items.push(json!({"role": "system", "content": system}));
                items.push(json!({"role": "user", "content": ask}));
                for s in &self.steps {
                    items.push(match s {
                        Step::Call { id, name, arg } => json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": json!({"arg": arg}).to_string()}}]}),
                        Step::Output { id, text } => json!({"role": "tool", "tool_call_id": id, "content": text}),
                        Step::Said(t) => json!({"role": "assistant", "content": t}),
                    });
                }
                json!({"model": model, "max_tokens": 1024, "stream": stream, "messages": items})
            }
            Dialect::Responses => {
                items.push(json!({"role": "user", "content": [{"type": "input_text", "text": ask}]}));
                for s in &self.steps {
                    items.push(match s {
                        Step::Call { id, name, arg } => json!({"type": "function_call", "call_id": id, "name": name, "arguments": json!({"arg": arg}).to_string()}),
                        Step::Output { id, text } => json!({"type": "function_call_output", "call_id": id, "output": text}),
                        Step::Said(t) => json!({"role": "assistant", "content": [{"type": "output_text", "text": t}]}),
                    });
                }
                json!({"model": model, "max_output_tokens": 1024, "stream": stream, "instructions": system, "input": items})
            }
        }
    }
}

/// A source file of 80 numbered lines, the same for the same seed.
fn source(seed: u64) -> String {
    (1..=80)
        .map(|l| {
            format!(
                "{l:>6}\u{2192}    let v{l} = table_{}.get(\"k{}\").copied().unwrap_or({});\n",
                seed % 13,
                l * 7 % 31,
                seed % 97 + l
            )
        })
        .collect()
}

/// A test run's log: many passing lines, one failure, a summary (filters fold it).
fn log(seed: u64, turn: usize) -> String {
    let mut s: String = (0..200).map(|i| format!("test parser::case_{i:03} ... ok\n")).collect();
    s.push_str(&format!(
        "test parser::case_{} ... FAILED\nerror: seed {seed} turn {turn}: expected 3, got 4 at src/parser.rs:{}\n",
        200,
        40 + turn
    ));
    s.push_str("test result: FAILED. 200 passed; 1 failed; 0 ignored\n");
    s
}
